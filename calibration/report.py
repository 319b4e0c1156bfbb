"""Quality (protocol PSNR) and speed of an INT8 model beside its float32 source."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edge_sr.errors import EdgeSRError


def protocol_psnr(models: dict[str, str | os.PathLike], val_folder: str | os.PathLike, threads: int = 0,
                  progress: bool = False) -> dict[str, float]:
    """Mean protocol PSNR (dB) on ``val_folder`` of each ONNX model, through the runtime's colour pipeline."""
    from edge_sr.backends.onnxruntime import OnnxUpscaler
    from edge_sr.quality import discover_sets, evaluate

    sets = discover_sets(val_folder)
    if len(sets) != 1:
        raise EdgeSRError(f"--val must be one folder of images (e.g. val/set5), found sets {[s for s, _ in sets]}")
    opened, methods = [], {}
    try:
        scale = None
        for label, path in models.items():
            up = OnnxUpscaler(path, threads=threads)
            opened.append(up)
            scale = scale or up.scale

            def fn(lr_rgb, up=up):
                bgr = lr_rgb if lr_rgb.ndim == 2 else lr_rgb[..., ::-1]
                out = up.upscale(bgr)
                return out if out.ndim == 2 else out[..., ::-1]

            methods[label] = fn
        res = evaluate(methods, sets, scale, with_ssim=False, progress=progress)
    finally:
        for up in opened:
            up.close()
    return {m: r[0].psnr for m, r in res.items()}


def latency_ms(path: str | os.PathLike, lr_shape: tuple[int, int], runs: int = 20, warmup: int = 3,
               threads: int = 0, spin: bool = True) -> dict:
    """Model-only latency (ms) of one LR luma frame with pre-allocated buffers: median, p95, min."""
    from edge_sr.backends.onnxruntime import OnnxUpscaler

    h, w = lr_shape
    y = np.random.default_rng(0).random((h, w), dtype=np.float32)
    with OnnxUpscaler(path, threads=threads, frame_shape=(h, w), spin=spin) as up:
        for _ in range(warmup):
            up.infer(y)
        t = []
        for _ in range(runs):
            t0 = time.perf_counter()
            up.infer(y)
            t.append((time.perf_counter() - t0) * 1e3)
    t = np.array(t)
    return {"median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)), "min_ms": float(t.min()),
            "runs": runs, "lr_shape": [h, w]}


def compare_latency(models: dict[str, str | os.PathLike], shapes: list[tuple[int, int]], runs: int = 20,
                    threads: int = 0, rounds: int = 3) -> dict[tuple[str, tuple[int, int]], dict]:
    """Latency of each model at each LR shape; models alternate over ``rounds`` so that drift in the
    machine's load hits them alike; the median is over all runs of all rounds."""
    out: dict = {}
    per = max(1, runs // rounds)
    for shape in shapes:
        samples: dict[str, list] = {m: [] for m in models}
        for _ in range(rounds):
            for label, path in models.items():
                r = latency_ms(path, shape, runs=per, threads=threads)
                samples[label].append(r)
        for label in models:
            meds = [r["median_ms"] for r in samples[label]]
            out[(label, shape)] = {"median_ms": float(np.median(meds)), "round_medians_ms": meds,
                                   "runs": per * rounds}
    return out


def parse_shape(text: str) -> tuple[int, int]:
    """'320x240' (width x height, the way frame sizes are written) -> (240, 320) as (h, w)."""
    from edge_sr.sizes import parse_size

    w, h = parse_size(text, "shape")
    return h, w


def model_label(path: Path) -> str:
    return path.name
