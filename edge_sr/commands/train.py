"""edge-sr train: train DCSCN on a folder of HR images (also `torchrun ... -m train`)."""

from __future__ import annotations

import os
from pathlib import Path


def add_parser(sub) -> None:
    from ..config import PRESET_NAMES

    p = sub.add_parser(
        "train",
        help="train a DCSCN model",
        description="Train DCSCN on HR images (LR made with the protocol's MATLAB bicubic). "
        "Checkpoints (last/best .safetensors, state.pt for --resume) and log.jsonl go to --out. "
        "Several processes: torchrun --nproc_per_node N -m train ...",
    )
    default_data = os.environ.get("EDGE_SR_DATA")
    p.add_argument("--data", nargs="+", default=[str(Path(default_data) / "train")] if default_data else None,
                   help="HR image folder(s), searched recursively (default: $EDGE_SR_DATA/train)")
    p.add_argument("--val", default=str(Path(default_data) / "val" / "set5") if default_data else None,
                   help="validation folder, PSNR each epoch (default: $EDGE_SR_DATA/val/set5)")
    p.add_argument("--out", required=True, help="run folder for checkpoints and the log")
    p.add_argument("--preset", default="compact", choices=PRESET_NAMES)
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--epochs", type=int, default=240)
    p.add_argument("--steps-per-epoch", type=int, default=500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48, help="LR patch side in pixels")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--schedule", choices=("cosine", "plateau"), default="cosine")
    p.add_argument("--loss", choices=("l1", "mse"), default="l1")
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: cores / local processes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights (same preset and scale), new optimizer and schedule")
    p.add_argument("--resume", action="store_true", help="continue exactly from --out/state.pt")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    p.add_argument("--no-progress", action="store_true")
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


def run(args) -> int:
    from ..errors import EdgeSRError
    from ..lazy import require

    require("torch", "training")
    from train.loop import TrainArgs, train

    if not args.data:
        raise EdgeSRError("give --data FOLDER (or set EDGE_SR_DATA)")
    if args.patch < 8:
        raise EdgeSRError("--patch must be at least 8 LR pixels")
    targs = TrainArgs(
        data=_collect_folders(args.data), out=args.out, preset=args.preset, scale=args.scale, val=args.val,
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch=args.batch, patch=args.patch,
        lr=args.lr, lr_min=args.lr_min, warmup_steps=args.warmup_steps, schedule=args.schedule, loss=args.loss,
        grad_clip=args.grad_clip, weight_decay=args.weight_decay, seed=args.seed, threads=args.threads,
        device=args.device, init=args.init,
    )
    if targs.val and not Path(targs.val).is_dir():
        raise EdgeSRError(f"validation folder not found: {targs.val}")
    res = train(targs, resume=args.resume, progress=not args.no_progress, max_steps=args.max_steps)
    print(f"trained {res['step']} steps ({res['epoch']} epochs, {res['wall_s'] / 3600:.2f} h); "
          f"best val {res['best_psnr']:.3f} dB; checkpoints in {res['out']}")
    return 0
