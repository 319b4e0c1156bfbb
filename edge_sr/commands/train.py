"""edge-sr train: train DCSCN on a folder of HR images (also `torchrun ... -m edge_sr.train`).

Every option's default is shown in --help. Options are parsed with no argparse default so that
``--resume`` can tell what the user asked for from what they left out: a resumed run keeps its
own saved arguments (epochs, schedule, batch, patch, data...) for everything not given again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# the defaults of a new run (a resumed run takes its own saved values instead)
DEFAULTS = {
    "preset": "compact", "scale": 2, "epochs": 240, "steps_per_epoch": 500, "batch": 16, "patch": 48,
    "lr": 2e-3, "lr_min": 1e-5, "warmup_steps": 200, "schedule": "cosine", "loss": "l1", "grad_clip": 5.0,
    "weight_decay": 0.0, "seed": 0, "threads": 0, "device": "auto", "init": None, "teacher": None, "distill": 0.5,
    "activation": "prelu",
}
# the peak learning rate where a preset's differs from DEFAULTS["lr"]: measured on an H200 (README, "large x2"),
# large at 2e-3 left the bicubic start unstably (mean L1 0.044 over the first 500 steps, 37.12 dB on Set5 after
# 7,000 steps of 64 patches) where 1e-3 and 5e-4 gave 37.56 after 6,000
PRESET_LR = {"large": 5e-4}
# options that only quantization-aware fine-tuning (--qat, train/qat.py) takes
QAT_ONLY = ("calib_images", "calib_max_images", "keep_float", "qat_from", "learn_ranges", "qat_loss")


def _number(kind: type, low: float, above: bool):
    """An argparse type: ``kind`` (int or float), finite, > low (``above``) or >= low, one clear message."""
    what = "a whole number" if kind is int else "a number"
    bound = f"more than {low:g}" if above else f"{low:g} or more"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")) or (v <= low if above else v < low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return v

    return parse


_positive_int = _number(int, 0, above=True)
_non_negative_int = _number(int, 0, above=False)
_positive_float = _number(float, 0, above=True)
_non_negative_float = _number(float, 0, above=False)


def add_parser(sub) -> None:
    from ..config import PRESET_NAMES

    p = sub.add_parser(
        "train",
        help="train a DCSCN model",
        description="Train DCSCN on HR images (LR made with the protocol's MATLAB bicubic). "
        "Checkpoints (last.safetensors: end of the schedule so far; best.safetensors: best validation PSNR; "
        "state.pt for --resume) and log.jsonl go to --out. Ctrl-C or SIGTERM saves state.pt at the current "
        "step; --resume continues there with the run's own saved options (give an option again to change "
        "it: --epochs to lengthen or shorten, --data, --val, --threads, --device). Several processes: "
        "torchrun --nproc_per_node N -m edge_sr.train ...",
    )
    S = argparse.SUPPRESS
    d = DEFAULTS
    p.add_argument("--data", nargs="+", default=S,
                   help="HR image folder(s), searched recursively (default: $EDGE_SR_DATA/train, "
                   "else shared/data/train beside the repository)")
    p.add_argument("--val", default=S,
                   help="validation folder, PSNR each epoch; 'none' to skip (default: $EDGE_SR_DATA/val/set5)")
    p.add_argument("--out", required=True, help="run folder for checkpoints and the log")
    p.add_argument("--preset", choices=PRESET_NAMES, default=S, help=f"network size (default: {d['preset']})")
    p.add_argument("--activation", choices=("prelu", "relu"), default=S,
                   help=f"nonlinearity after each conv (default: {d['activation']}, the paper's; relu keeps a CPU INT8 "
                   "graph integer end to end, faster on ONNX Runtime)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=S, help=f"upscaling factor (default: {d['scale']})")
    p.add_argument("--epochs", type=_positive_int, default=S, help=f"epochs in the schedule (default: {d['epochs']})")
    p.add_argument("--steps-per-epoch", type=_positive_int, default=S,
                   help=f"optimizer steps per epoch (default: {d['steps_per_epoch']})")
    p.add_argument("--batch", type=_positive_int, default=S, help=f"patches per step (default: {d['batch']})")
    p.add_argument("--patch", type=_positive_int, default=S, help=f"LR patch side in pixels (default: {d['patch']})")
    p.add_argument("--lr", type=_positive_float, default=S, help=f"peak learning rate (default: {d['lr']:g}; "
                   + "; ".join(f"{k}: {v:g}" for k, v in PRESET_LR.items()) + ")")
    p.add_argument("--lr-min", type=_non_negative_float, default=S,
                   help=f"final learning rate of the cosine schedule (default: {d['lr_min']:g})")
    p.add_argument("--warmup-steps", type=_non_negative_int, default=S,
                   help=f"linear warm-up steps (default: {d['warmup_steps']})")
    p.add_argument("--schedule", choices=("cosine", "plateau"), default=S,
                   help=f"learning-rate schedule (default: {d['schedule']})")
    p.add_argument("--loss", choices=("l1", "mse"), default=S, help=f"training loss (default: {d['loss']})")
    p.add_argument("--grad-clip", type=_non_negative_float, default=S,
                   help=f"gradient norm clip, 0 for none (default: {d['grad_clip']:g})")
    p.add_argument("--weight-decay", type=_non_negative_float, default=S,
                   help=f"Adam weight decay (default: {d['weight_decay']:g})")
    p.add_argument("--seed", type=int, default=S, help=f"random seed (default: {d['seed']})")
    p.add_argument("--threads", type=_non_negative_int, default=S,
                   help="torch threads, 0: cores / local processes (default: 0)")
    p.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--init", default=S, metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights (same preset; another scale's checkpoint "
                   "gives all but the last conv, e.g. x2 weights to start x3/x4), new optimizer and schedule "
                   "(default: none, random He initialisation)")
    p.add_argument("--teacher", default=S, metavar="CKPT",
                   help="distillation: a trained checkpoint of any preset at this scale (e.g. the shipped normal or "
                   "large) whose output is a second target (default: none)")
    p.add_argument("--distill", type=_non_negative_float, default=S, metavar="W",
                   help=f"with --teacher: loss = (1 - W) x loss to the HR image + W x loss to the teacher's output "
                   f"(default: {d['distill']:g})")
    p.add_argument("--resume", action="store_true", help="continue from --out/state.pt with the run's saved options")
    p.add_argument("--max-steps", type=_positive_int, default=None,
                   help="stop after this many steps in this call, state saved (default: run to the end)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.add_argument("--qat", nargs="?", const="all", default=S, metavar="TARGET",
                   help="quantization-aware fine-tuning of --init's INT8 files (train/qat.py): cpu, tensorrt or "
                   "all (default); writes them and qat.json to --out; --max-steps = fine-tuning steps")
    p.add_argument("--calib-images", default=S, metavar="DIR",
                   help="--qat only: calibration images (default: the bsd200 training folder, else yang91, else the "
                   "first --data folder)")
    p.add_argument("--calib-max-images", type=_positive_int, default=S, metavar="N",
                   help="--qat only: calibration images used, 2 crops of 64x64 each (default: 40)")
    p.add_argument("--keep-float", default=S, metavar="GROUPS",
                   help="--qat only: node groups left float32, as edge-sr calibrate --keep-float (default: "
                   "first_conv,last_conv)")
    p.add_argument("--qat-from", default=S, metavar="FILE",
                   help="--qat only: fine-tune this INT8 file of --init (e.g. the shipped one, or the best "
                   "calibration) instead of a fresh calibration; its target only (default: calibrate)")
    p.add_argument("--learn-ranges", action="store_true", default=S,
                   help="--qat only: train the activation scales and zero points too (default: frozen)")
    p.add_argument("--qat-loss", choices=("l1", "distill"), default=S,
                   help="--qat only: l1 to the HR images, or distill: MSE to the FP32 model's output (default: l1)")
    p.set_defaults(func=run)


def _collect_folders(paths: list[str]) -> list[str]:
    """Each given folder plus its subfolders that hold images (T91 + BSD200 under one root)."""
    from ..errors import EdgeSRError
    from ..imageio import IMAGE_SUFFIXES

    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise EdgeSRError(f"training image folder not found: {p}")
        for d in [p, *sorted(x for x in p.rglob("*") if x.is_dir())]:
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir() if f.is_file()):
                out.append(str(d))
    if not out:
        raise EdgeSRError(f"no training images in {', '.join(paths)}")
    return out


def _given(args) -> dict:
    """The options the user typed (argparse left the others out)."""
    skip = {"func", "command", "verbose", "resume", "max_steps", "no_progress", "out"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def resolve_args(args):
    """TrainArgs for this call: a new run takes DEFAULTS under what was given; a resumed run takes
    its saved arguments under what was given (changes that would break exactness are refused)."""
    from edge_sr.train.loop import RESUMABLE_CHANGES, TrainArgs, saved_args

    from ..datasets import data_dir, not_found_message
    from ..errors import EdgeSRError

    given = _given(args)
    if "val" in given and str(given["val"]).lower() == "none":
        given["val"] = None
    if args.resume:
        saved = saved_args(args.out)
        merged = dict(saved)
        for k, v in given.items():
            if k == "data":
                v = _collect_folders(v)
            if k in saved and saved[k] != v:
                if k not in RESUMABLE_CHANGES:
                    raise EdgeSRError(
                        f"--resume: this run was trained with {k.replace('_', '-')}={saved[k]!r}; changing it "
                        f"({v!r}) would not continue the same run: start a new --out (with --init "
                        f"{Path(args.out) / 'last.safetensors'} to fine-tune from it)"
                    )
                merged[k] = v
        merged["out"] = args.out
        targs = TrainArgs(**merged)
        return targs, {k: (saved[k], merged[k]) for k in given if k in saved and saved[k] != merged[k]}
    merged = {**DEFAULTS, **given}
    if "lr" not in given:
        merged["lr"] = PRESET_LR.get(merged["preset"], DEFAULTS["lr"])
    if "data" not in merged:
        found = data_dir("train")
        if found is None:
            raise EdgeSRError(not_found_message("training images", "--data"))
        merged["data"] = [str(found)]
    if "val" not in merged:
        found = data_dir("val", "set5")
        merged["val"] = str(found) if found is not None else None
    if merged["patch"] < 8:
        raise EdgeSRError("--patch must be at least 8 LR pixels")
    merged["data"] = _collect_folders(merged["data"])
    return TrainArgs(out=args.out, **merged), {}


def run(args) -> int:
    import logging

    from ..errors import EdgeSRError
    from ..lazy import require

    require("torch", "training")
    if "qat" in vars(args):
        from edge_sr.train.qat import run_from_train_args

        return run_from_train_args(args)
    qat_only = [k for k in QAT_ONLY if k in vars(args)]
    if qat_only:
        raise EdgeSRError(f"--{qat_only[0].replace('_', '-')} is a --qat option: add --qat, or leave it out")
    from edge_sr.train.loop import train

    targs, changed = resolve_args(args)
    log = logging.getLogger("edge_sr.train")
    for k, (old, new) in changed.items():
        msg = f"resume: {k.replace('_', '-')} {old!r} -> {new!r} (as asked)"
        log.warning(msg)
    if targs.val and not Path(targs.val).is_dir():
        raise EdgeSRError(f"validation folder not found: {targs.val}")
    res = train(targs, resume=args.resume, progress=not args.no_progress, max_steps=args.max_steps)
    if res.get("interrupted"):
        print(f"stopped by {res['interrupted']} at step {res['step']} of {res['total']}; state saved: "
              f"continue with edge-sr train --out {res['out']} --resume")
        return 130 if res["interrupted"] == "SIGINT" else 143
    print(f"trained {res['step']} steps ({res['epoch']} epochs, {res['wall_s'] / 3600:.2f} h); "
          f"best val {res['best_psnr']:.3f} dB; checkpoints in {res['out']}")
    return 0
