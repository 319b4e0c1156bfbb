"""The training loop: Adam, L1/MSE loss, cosine or plateau schedule, clipping, validation,
checkpoints with exact resume, a JSONL log, and DistributedDataParallel under torchrun."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge_sr.checkpoint import save_checkpoint
from edge_sr.config import DCSCNConfig, preset
from edge_sr.errors import EdgeSRError
from edge_sr.model import DCSCN

from .data import PatchSampler, load_pairs, make_pair

log = logging.getLogger(__name__)

STATE_NAME = "state.pt"
LOG_NAME = "log.jsonl"


@dataclass
class TrainArgs:
    data: list[str]
    out: str
    preset: str = "compact"
    scale: int = 2
    val: str | None = None
    epochs: int = 100
    steps_per_epoch: int = 500
    batch: int = 16
    patch: int = 48  # LR patch side
    lr: float = 2e-3
    lr_min: float = 1e-5
    warmup_steps: int = 200
    schedule: str = "cosine"  # cosine | plateau
    loss: str = "l1"  # l1 | mse
    grad_clip: float = 5.0
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 0  # 0: all cores (divided among local processes)
    device: str = "auto"
    config: dict | None = field(default=None)  # a full DCSCNConfig dict instead of preset
    init: str | None = None  # start from these weights (fine-tuning): fresh optimizer and schedule
    teacher: str | None = None  # distillation: a trained checkpoint (any preset, this scale) whose output is a target
    distill: float = 0.5  # with a teacher: loss = (1 - distill) * loss(HR) + distill * loss(teacher's output)
    activation: str = "prelu"  # prelu (the paper's) | relu

    def model_config(self) -> DCSCNConfig:
        if self.config:
            return DCSCNConfig.from_dict({"activation": self.activation, **self.config, "scale": self.scale})
        return dataclasses.replace(preset(self.preset, self.scale), activation=self.activation)


# arguments that may change on --resume without breaking exactness of what already ran
RESUMABLE_CHANGES = {"epochs", "out", "threads", "device", "val", "data"}
_RESUMABLE_CHANGES = RESUMABLE_CHANGES


def saved_args(out: str | Path) -> dict:
    """The arguments a run folder was trained with (from its state.pt), for --resume."""
    state_path = Path(out) / STATE_NAME
    if not state_path.is_file():
        raise EdgeSRError(f"--resume: no {STATE_NAME} in {out} (nothing to continue; drop --resume to start a run)")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        args = dict(state["args"])
    except Exception as e:  # a truncated or foreign file
        raise EdgeSRError(f"--resume: {state_path} is not a readable edge-sr training state ({type(e).__name__})") from e
    known = {f.name for f in dataclasses.fields(TrainArgs)}
    return {k: v for k, v in args.items() if k in known}


class _StopSignals:
    """SIGINT/SIGTERM during training: finish the current step, save state.pt, return.
    A second signal is only remembered (the save is never cut half-way: it is atomic anyway)."""

    def __init__(self) -> None:
        self.caught: str | None = None
        self._old: dict = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        if self.caught is None:
            self.caught = signal.Signals(signum).name
            log.warning("%s: saving the state at the end of this step", self.caught)

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def lr_at(args: TrainArgs, step: int, total: int) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    t = (step - args.warmup_steps) / max(1, total - args.warmup_steps)
    return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def validate(model: DCSCN, pairs, device) -> float:
    """Mean PSNR (dB) on Y, shaved by scale, as the protocol (luma path, float output)."""
    model.eval()
    s = model.config.scale
    psnrs = []
    for p in pairs:
        x = torch.from_numpy(p.y_lr)[None, None].to(device)
        sr = model(x)[0, 0].clamp(0, 1).cpu().numpy().astype(np.float64) * 255
        hr = p.y_hr.astype(np.float64) * 255
        mse = np.mean((sr[s:-s, s:-s] - hr[s:-s, s:-s]) ** 2)
        psnrs.append(10 * np.log10(255**2 / mse) if mse > 0 else float("inf"))
    model.train()
    return float(np.mean(psnrs))


def _state_dict_numpy(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# the only tensors whose shape depends on the scale: the last conv makes scale**2 sub-pixel channels
SCALE_TENSORS = ("last.weight",)


def _load_teacher(path: str, config, device, mem_format):
    """The distillation teacher: a trained checkpoint of any preset at this run's scale, frozen, in eval mode."""
    from edge_sr.checkpoint import load_checkpoint

    cfg, weights, _ = load_checkpoint(path)
    if cfg.scale != config.scale:
        raise EdgeSRError(f"--teacher {path}: an x{cfg.scale} network, this run trains x{config.scale}")
    teacher = DCSCN(cfg)
    teacher.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    teacher = teacher.to(device, memory_format=mem_format).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("distilling from %s (%s x%d)", path, cfg.preset, cfg.scale)
    return teacher


def _load_init(model: DCSCN, config, path: str) -> None:
    """Fine-tuning start. The checkpoint's network must be this run's preset; at the same scale every
    tensor is loaded strictly. At another scale (x2 weights starting an x3/x4 run, the usual way to
    train the larger factors: the feature extractor and reconstruction carry over, Kim et al. 2016,
    Lim et al. 2017) every tensor but the last conv is loaded strictly and the last conv keeps its
    fresh initialisation."""
    import dataclasses

    from edge_sr.checkpoint import load_checkpoint

    cfg, weights, _ = load_checkpoint(path)
    if cfg.activation == "prelu" and config.activation == "relu":
        # a PReLU network starts a ReLU one: the convs carry over, the slopes are dropped (ReLU is PReLU with
        # slope 0, so the first steps undo the change)
        own = model.state_dict()
        prelu = {k for k, v in weights.items() if k not in own and v.ndim == 1}
        weights = {k: v for k, v in weights.items() if k not in prelu}
        cfg = dataclasses.replace(cfg, activation="relu")
        log.info("initialised PReLU -> ReLU: %d slope tensors dropped", len(prelu))
    cross = cfg != config and dataclasses.replace(cfg, scale=config.scale) == config
    if cfg != config and not cross:
        raise EdgeSRError(f"--init {path}: a {cfg.preset} x{cfg.scale} {cfg.activation} network, this run trains "
                          f"{config.preset} x{config.scale} {config.activation}")
    if cross:
        own = model.state_dict()
        weights = {k: v for k, v in weights.items() if k not in SCALE_TENSORS}
        weights.update({k: own[k].numpy() for k in SCALE_TENSORS})
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    except (RuntimeError, KeyError, ValueError) as e:  # missing/extra/misshapen tensors: one line, not torch's page
        why = " ".join(str(e).split()) or type(e).__name__
        raise EdgeSRError(f"--init {path}: its weights do not fit a {config.preset} x{config.scale} network: {why}") from e
    if cross:
        log.info("initialised from %s (x%d): all but the last conv, which starts fresh for x%d", path, cfg.scale, config.scale)
    else:
        log.info("initialised from %s", path)


def train(args: TrainArgs, resume: bool = False, progress: bool = True, max_steps: int | None = None) -> dict:
    """Run (or resume) training. ``max_steps`` stops early (for tests and time-boxed sessions)
    after that many optimizer steps in this call, at an epoch boundary or not; state is saved.
    SIGINT/SIGTERM (in the main thread) stop after the current step with the state saved; the
    result then says ``interrupted``."""
    with _StopSignals() as stop:
        return _train(args, resume, progress, max_steps, stop)


def _train(args: TrainArgs, resume: bool, progress: bool, max_steps: int | None, stop: _StopSignals) -> dict:
    world, rank, local_rank = _dist()
    out = Path(args.out)
    state_path = out / STATE_NAME
    state = None
    if resume:
        saved = saved_args(out)
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        for k, v in saved.items():
            cur = getattr(args, k)
            if k not in _RESUMABLE_CHANGES and cur != v:
                log.warning("resume: keeping the saved %s=%r (asked %r) so the run stays exact", k, v, cur)
                setattr(args, k, v)
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    device = _device(args.device, local_rank)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick the fastest kernels once
    torch.manual_seed(args.seed)

    config = args.model_config()
    # channels_last: oneDNN's fast convolution layout (measured 1.5x per step for normal on 2 CPU cores)
    mem_format = torch.channels_last
    model = DCSCN(config)
    if args.init and state is None:
        _load_init(model, config, args.init)
    model = model.to(device, memory_format=mem_format)
    if not 0.0 <= args.distill <= 1.0:
        raise EdgeSRError(f"--distill {args.distill}: a weight between 0 and 1")
    teacher = _load_teacher(args.teacher, config, device, mem_format) if args.teacher else None
    pairs = load_pairs(args.data, config.scale, min_lr_size=args.patch, progress=progress and rank == 0)
    sampler = PatchSampler(pairs, args.patch, config.scale, seed=args.seed + 1000 * rank)
    val_pairs = []
    if args.val and rank == 0:
        from edge_sr.imageio import list_images

        val_pairs = [make_pair(f, config.scale) for f in list_images(args.val, "validation folder")]

    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    plateau = None
    if args.schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=3, min_lr=args.lr_min)
    elif args.schedule != "cosine":
        raise EdgeSRError(f"unknown schedule {args.schedule!r}: cosine or plateau")
    if args.loss not in ("l1", "mse"):
        raise EdgeSRError(f"unknown loss {args.loss!r}: l1 or mse")

    step, epoch, best, best_epoch, wall = 0, 0, -1.0, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        if plateau is not None and state.get("plateau"):
            plateau.load_state_dict(state["plateau"])
        step, epoch, best, wall = state["step"], state["epoch"], state["best_psnr"], state["wall_s"]
        best_epoch = state.get("best_epoch", 0)
        sampler.set_state(state["sampler"][rank] if isinstance(state["sampler"], list) else state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed %s at epoch %d step %d (best %.3f dB)", out, epoch, step, best)

    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)

    total = args.epochs * args.steps_per_epoch
    loss_fn = F.l1_loss if args.loss == "l1" else F.mse_loss
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {config.preset} x{config.scale}", unit="step", dynamic_ncols=True)
    done_here = 0
    t_last = time.time()
    # the running loss stays on the device: a float() per step would wait for the GPU every step
    loss_acc, n_acc = torch.zeros((), device=device), 0
    model.train()
    while step < total and (max_steps is None or done_here < max_steps):
        lr_np, hr_np = sampler.batch(args.batch)
        lr_t = torch.from_numpy(lr_np).to(device).contiguous(memory_format=mem_format)
        hr_t = torch.from_numpy(hr_np).to(device)
        if plateau is None:
            for g in opt.param_groups:
                g["lr"] = lr_at(args, step, total)
        sr = ddp_model(lr_t)
        loss = loss_fn(sr, hr_t)
        if teacher is not None:
            with torch.no_grad():
                soft = teacher(lr_t)
            loss = (1.0 - args.distill) * loss + args.distill * loss_fn(sr, soft)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        done_here += 1
        loss_acc += loss.detach()
        n_acc += 1
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{float(loss_acc) / n_acc:.5f}", lr=f"{opt.param_groups[0]['lr']:.2e}",
                                best=f"{best:.2f}" if best > 0 else "-")
        end_of_epoch = step % args.steps_per_epoch == 0
        interrupted = stop.caught is not None and world == 1
        if end_of_epoch or step == total or (max_steps is not None and done_here >= max_steps) or interrupted:
            now = time.time()
            wall += now - t_last
            t_last = now
            if end_of_epoch:
                epoch += 1
            psnr = validate(model, val_pairs, device) if (val_pairs and end_of_epoch) else None
            if plateau is not None and psnr is not None:
                plateau.step(psnr)
            samplers = [sampler.state()]
            if world > 1:
                import torch.distributed as dist

                samplers = [None] * world
                dist.all_gather_object(samplers, sampler.state())
            if rank == 0:
                improved = psnr is not None and psnr > best
                if improved:
                    best, best_epoch = psnr, epoch
                rec = {
                    "epoch": epoch, "step": step, "loss": float(loss_acc) / max(1, n_acc), "val_psnr": psnr,
                    "best_psnr": best if best > 0 else None, "best_epoch": best_epoch or None,
                    "lr": opt.param_groups[0]["lr"], "wall_s": round(wall, 1), "patches": step * args.batch * world,
                }
                if end_of_epoch or step == total:
                    loss_acc, n_acc = torch.zeros((), device=device), 0
                info = {"args": dataclasses.asdict(args), "epoch": epoch, "step": step, "val_psnr": psnr,
                        "wall_s": round(wall, 1), "torch": torch.__version__, "world_size": world}
                save_checkpoint(out / "last.safetensors", config, _state_dict_numpy(model), info)
                if improved:
                    save_checkpoint(out / "best.safetensors", config, _state_dict_numpy(model), info)
                _atomic_torch_save(
                    {
                        "args": dataclasses.asdict(args), "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "plateau": plateau.state_dict() if plateau is not None else None,
                        "step": step, "epoch": epoch, "best_psnr": best, "best_epoch": best_epoch, "wall_s": wall,
                        "sampler": samplers if world > 1 else samplers[0], "torch_rng": torch.get_rng_state(),
                    },
                    state_path,
                )
                if end_of_epoch or step == total:
                    with open(out / LOG_NAME, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    if psnr is not None:
                        line = (f"epoch {epoch}: loss {rec['loss']:.5f} val {psnr:.3f} dB "
                                f"(best {best:.3f} at epoch {best_epoch}{', new best' if improved else ''}) "
                                f"lr {rec['lr']:.2e} ({wall / 3600:.2f} h)")
                        if bar is not None:
                            bar.write(line)
                        else:
                            log.info(line)
            if interrupted:
                break
    if bar is not None:
        bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "epoch": epoch, "best_psnr": best, "best_epoch": best_epoch, "wall_s": wall,
            "out": str(out), "total": total, "interrupted": stop.caught if step < total else None}
