"""Benchmarks: speed (and optionally quality) of upscalers on this device, side by side.

For every candidate (edge-sr models through their backend, OpenCV's bicubic, OpenCV dnn_superres
peers) and every LR frame size, after a warm-up: latency of the whole colour upscale of a frame
(luma, model, bicubic, merge: ``upscaler.upscale(frame)``) and of the model alone (median, p95),
FPS, GFLOP/s of the model arithmetic (MACs from the config) and its share of the device's peak
(an estimate from /proc/cpuinfo). With a quality folder, PSNR/SSIM by the protocol
(``edge_sr.quality``). Results are a table, a JSON report and a PNG plot (quality against FPS with
the Pareto front marked, or FPS bars without quality).

Torch-free: a .safetensors candidate imports torch through its own backend only.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import PRESET_NAMES, DCSCNConfig
from .errors import EdgeSRError
from .sizes import parse_size as _parse_size
from .lazy import require

log = logging.getLogger(__name__)

FORMAT = "edge-sr-bench/1"
DEFAULT_SIZES = ((320, 240), (640, 480), (1280, 720))  # LR width x height
PEER_KINDS = {"fsrcnn": "fsrcnn", "fsrcnn-small": "fsrcnn", "espcn": "espcn", "lapsrn": "lapsrn", "edsr": "edsr"}


# -- device ---------------------------------------------------------------------------------------
def _cpuinfo(root: str | os.PathLike = "/") -> dict:
    """First processor block of /proc/cpuinfo as a dict (empty when unreadable)."""
    try:
        text = (Path(root) / "proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        k, _, v = line.partition(":")
        out.setdefault(k.strip(), v.strip())
    return out


def _max_mhz(root: str | os.PathLike, info: dict) -> float | None:
    p = Path(root) / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
    try:
        return int(p.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        pass
    try:
        return float(info["cpu MHz"])
    except (KeyError, ValueError):
        return None


# AMD "cpu family" (decimal, as /proc/cpuinfo prints it) -> (FP32 FLOP/cycle/core, what the core has).
# FMA = 2 FLOP per lane. Zen 4 (family 25 with AVX-512) runs AVX-512 as two 256-bit halves: 2 x 256-bit
# FMA pipes = 32; Zen 5 (family 26) has full-width 512-bit datapaths (desktop/server parts): 2 x 512 = 64.
# Family 25 without AVX-512 is Zen 3 (2 x 256-bit FMA = 32); family 23 is Zen 1/2 (Zen 1 splits AVX2 into
# 128-bit halves: 16; Zen 2: 32; told apart by model number, Zen 2 from 0x30).
_AMD_FAMILIES = {26: (64, "Zen 5: 2 x 512-bit FMA")}


def flops_per_cycle(info: dict, machine: str) -> tuple[int | None, str]:
    """Peak FP32 FLOP per cycle per core from the CPU family/model and flags (FMA = 2 FLOP per lane); an estimate.

    The family decides where the flags mislead: an AMD core with AVX-512 is Zen 4 (256-bit halves, 32)
    or Zen 5 (64) by its family, not by which AVX-512 extensions it lists."""
    flags = set(info.get("flags", info.get("Features", "")).split())
    vendor = info.get("vendor_id", "")
    try:
        family = int(info.get("cpu family", ""))
    except ValueError:
        family = None
    try:
        model = int(info.get("model", ""))
    except ValueError:
        model = None
    if machine in ("aarch64", "arm64") or "asimd" in flags:
        return 16, "2 x 128-bit NEON FMA (Cortex-A76 class)"
    if vendor == "AuthenticAMD" and family is not None:
        if family in _AMD_FAMILIES:
            return _AMD_FAMILIES[family]
        if family == 25:
            if "avx512f" in flags:
                return 32, "Zen 4: AVX-512 on 2 x 256-bit FMA pipes"
            if "fma" in flags:
                return 32, "Zen 3: 2 x 256-bit FMA"
        if family == 23 and "fma" in flags:
            if model is not None and model < 0x30:
                return 16, "Zen 1: AVX2 on 2 x 128-bit FMA pipes"
            return 32, "Zen 2: 2 x 256-bit FMA"
    if "avx512f" in flags:
        if vendor == "AuthenticAMD":  # family unknown: guess from the flags (VP2INTERSECT came with Zen 5)
            if "avx512_vp2intersect" in flags:
                return 64, "2 x 512-bit FMA (AMD with VP2INTERSECT: Zen 5 class; family unknown)"
            return 32, "AVX-512 on 2 x 256-bit FMA pipes (Zen 4 class; family unknown)"
        return 64, "2 x 512-bit FMA (AVX-512)"
    if "avx2" in flags and "fma" in flags:
        return 32, "2 x 256-bit FMA (AVX2)"
    if "avx" in flags:
        return 16, "256-bit AVX, no FMA"
    if "sse2" in flags:
        return 8, "128-bit SSE2"
    return None, "unknown vector unit"


# the x86 extensions that change ONNX Runtime's INT8 kernels (and so INT8 results, slightly)
INT8_ISA_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2")
# those of them whose u8 x s8 dot products sum in int32 (VPDPBUSD): exact, and where INT8 can pay on x86
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def int8_isa(info: dict | None = None, root: str | os.PathLike = "/") -> str:
    """The best INT8 dot-product path of this CPU: 'avx512_vnni', 'avx_vnni', 'avx512bw', 'avx2',
    'neon' or 'other'. INT8 PSNR is reproducible to 0.01 dB only between CPUs of the same class."""
    info = _cpuinfo(root) if info is None else info
    flags = set(info.get("flags", info.get("Features", "")).split())
    for f in INT8_ISA_FLAGS:
        if f in flags:
            return f
    return "neon" if "asimd" in flags else "other"


def cpu_record(root: str | os.PathLike = "/") -> dict:
    """What a quality or speed report needs to say about the CPU it ran on."""
    info = _cpuinfo(root)
    return {"cpu": info.get("model name") or info.get("Model") or info.get("Hardware") or platform.machine(),
            "vendor": info.get("vendor_id"), "family": info.get("cpu family"), "model": info.get("model"),
            "machine": platform.machine(), "int8_isa": int8_isa(info)}


def device_info(threads: int, root: str | os.PathLike = "/") -> dict:
    """CPU model, cores, clock and the peak GFLOP/s estimate for ``threads`` cores."""
    from .backends.onnxruntime import physical_cores

    info = _cpuinfo(root)
    machine = platform.machine()
    cores = physical_cores()
    used = min(threads or cores, cores)
    mhz = _max_mhz(root, info)
    fpc, unit = flops_per_cycle(info, machine)
    peak = used * fpc * mhz / 1e3 if (fpc and mhz) else None
    return {
        "host": socket.gethostname(),
        "cpu": info.get("model name") or info.get("Model") or info.get("Hardware") or machine,
        "machine": machine,
        "physical_cores": cores,
        "threads": used,
        "clock_mhz": mhz,
        "flops_per_cycle_per_core": fpc,
        "vector_unit": unit,
        "peak_gflops_estimate": round(peak, 1) if peak else None,
        "peak_note": (f"estimate: {used} cores x {fpc} FLOP/cycle ({unit}) x {mhz:.0f} MHz from /proc/cpuinfo; "
                      "turbo clocks can exceed it") if peak else "unknown",
    }


def versions() -> dict:
    from . import __version__

    out = {"edge_sr": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("cv2", "onnxruntime", "tensorrt"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # provenance only
            pass
    return out


class CpuWatch:
    """CPU time other processes took while a measurement ran (in cores), from /proc/stat.

    A benchmark on a busy machine is not a benchmark: the report flags rows measured while something
    else used more than a tenth of a core."""

    def __init__(self, root: str | os.PathLike = "/"):
        self._stat = Path(root) / "proc/stat"
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy_s(self) -> float | None:
        try:
            f = self._stat.read_text().splitlines()[0].split()[1:]
            v = [int(x) for x in f]
        except (OSError, ValueError, IndexError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return (sum(v[:8]) - idle) / self._hz

    def __enter__(self):
        self._b0, self._t0, self._w0 = self._busy_s(), os.times(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        b1, t1, w1 = self._busy_s(), os.times(), time.perf_counter()
        if self._b0 is None or b1 is None:
            self.other_cores = None
            return
        own = (t1.user - self._t0.user) + (t1.system - self._t0.system)
        self.other_cores = max(0.0, (b1 - self._b0) - own) / max(w1 - self._w0, 1e-6)


def wait_for_idle(max_wait_s: float, threshold_cores: float = 0.15, window_s: float = 1.0) -> float | None:
    """Wait (up to ``max_wait_s``) for a ``window_s`` window in which other processes use less than
    ``threshold_cores``; returns the last window's load (cores), None when /proc/stat is unreadable."""
    t_end = time.perf_counter() + max_wait_s
    while True:
        with CpuWatch() as w:
            time.sleep(window_s)
        if w.other_cores is None or w.other_cores < threshold_cores or time.perf_counter() >= t_end:
            return w.other_cores
        log.info("waiting for the device to go idle (others use %.1f cores)", w.other_cores)


# -- candidates -----------------------------------------------------------------------------------
@dataclass
class Candidate:
    """Something that upscales a BGR frame: an edge-sr model, bicubic, or an OpenCV peer."""

    name: str
    kind: str  # "edge-sr" | "bicubic" | "peer"
    scale: int
    path: str | None = None
    backend: str = ""
    precision: str = "fp32"
    config: DCSCNConfig | None = None
    peer_algo: str | None = None

    def label(self) -> str:
        return self.name


def peer_candidate(spec: str, scale: int) -> Candidate:
    """``fsrcnn=PATH`` (or just PATH, the algorithm from the file name) -> an OpenCV dnn_superres peer."""
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, Path(spec).stem.split("_x")[0]
    algo = PEER_KINDS.get(name.strip().lower())
    if algo is None:
        stem = Path(path).stem.lower().split("_x")[0]
        algo = PEER_KINDS.get(stem)
    if algo is None:
        raise EdgeSRError(f"unknown peer {name!r}: give fsrcnn=PATH, espcn=PATH, lapsrn=PATH or edsr=PATH")
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        raise EdgeSRError(f"peer model not found: {p} (OpenCV dnn_superres .pb file, e.g. FSRCNN_x{scale}.pb)")
    m = re.search(r"_x(\d)", p.stem)
    if m and int(m.group(1)) != scale:
        raise EdgeSRError(f"peer {p.name} is for x{m.group(1)}, the benchmark runs x{scale}")
    return Candidate(name=f"{p.stem} (OpenCV)", kind="peer", scale=scale, path=str(p), backend="opencv-dnn",
                     peer_algo=algo)


def peers_from_dir(folder: str | os.PathLike, scale: int) -> list[Candidate]:
    """FSRCNN/ESPCN .pb files for ``scale`` in a folder ($EDGE_SR_PEERS)."""
    d = Path(folder)
    if not d.is_dir():
        raise EdgeSRError(f"peer folder not found: {d}")
    return [peer_candidate(str(p), scale) for p in sorted(d.glob(f"*_x{scale}.pb"))
            if p.stem.lower().split("_x")[0] in PEER_KINDS]


def model_candidate(path: str | os.PathLike, scale: int | None = None) -> Candidate:
    """A model file (.onnx / .int8.onnx / .engine / .safetensors) or a preset name."""
    from .backends import resolve_model

    p = resolve_model(str(path), scale).resolve()
    return Candidate(name=p.name, kind="edge-sr", scale=scale or 0, path=str(p))


def default_candidates(scale: int, precisions=("fp32", "int8")) -> list[Candidate]:
    """Every precision of the shipped presets that exist: the FP32 ONNX, the symmetric INT8 file
    (TensorRT's: Q/DQ on conv inputs, float arithmetic on a CPU) and the CPU INT8 file (uint8 activations);
    the checkpoint when no ONNX was shipped. ``precisions`` keeps only fp32 and/or int8 files."""
    from .backends import shipped_path

    kinds = (["onnx"] if "fp32" in precisions else []) + (["int8.onnx", "cpu-int8.onnx"] if "int8" in precisions else [])
    out = []
    for preset in PRESET_NAMES:
        found = [p for p in (shipped_path(preset, scale, k) for k in kinds) if p.is_file()]
        if not found and "fp32" in precisions and not shipped_path(preset, scale, "onnx").is_file() \
                and shipped_path(preset, scale, "safetensors").is_file():
            found = [shipped_path(preset, scale, "safetensors")]
        out += [Candidate(name=p.name, kind="edge-sr", scale=scale, path=str(p)) for p in found]
    return out


def precision_summary(rows: list, root: str | os.PathLike = "/") -> list[dict]:
    """Per shipped preset and frame size: FPS of each INT8 file relative to the FP32 one, and what
    ``--precision auto`` now picks on this device (the bench cache): the report that settles the INT8
    choice of a platform (docs/benchmarks/README.md)."""
    from .selection import platform_int8

    by = {}
    for r in rows:
        if r.kind != "edge-sr" or not r.path:
            continue
        name = Path(r.path).name
        m = re.match(r"dcscn_(\w+?)_x(\d)\.(onnx|int8\.onnx|cpu-int8\.onnx|safetensors)$", name)
        if not m:
            continue
        by.setdefault((m.group(1), int(m.group(2)), tuple(r.lr_size)), {})[m.group(3)] = r
    out = []
    for (preset, scale, size), files in sorted(by.items()):
        base = files.get("onnx")
        if base is None:
            continue
        kind, default_int8, why = platform_int8(root, preset=preset, scale=scale)
        entry = {"preset": preset, "scale": scale, "lr_size": list(size), "fp32_fps": base.fps,
                 "platform_int8_file": kind, "platform_default_int8": default_int8, "platform_reason": why}
        for k in ("int8.onnx", "cpu-int8.onnx"):
            if k in files:
                entry[f"{k}_fps"] = files[k].fps
                entry[f"{k}_vs_fp32"] = files[k].fps / base.fps
                if files[k].psnr is not None and base.psnr is not None:
                    entry[f"{k}_psnr_delta"] = files[k].psnr - base.psnr
        out.append(entry)
    return out


class _Runner:
    """Opened candidate: ``upscale(frame_bgr_u8)`` and ``model(y_lr_f32)`` (None for non-models)."""

    def __init__(self, cand: Candidate, threads: int, frame_shape: tuple[int, int] | None, options: dict):
        self.cand, self.up = cand, None
        cv2 = require("cv2", "benchmarks")
        if threads:
            cv2.setNumThreads(threads)
        if cand.kind == "edge-sr":
            from .backends import open_upscaler

            opts = dict(options)
            if cand.path.lower().endswith(".onnx"):
                opts.setdefault("threads", threads)
                if frame_shape:
                    opts["frame_shape"] = frame_shape
            elif cand.path.lower().endswith(".safetensors"):
                opts.setdefault("threads", threads)
            self.up = open_upscaler(cand.path, cand.scale or None, **opts)
            cand.scale = self.up.scale
            cand.backend = self.up.backend
            cand.precision = getattr(self.up, "precision", "fp32")
            cand.config = getattr(self.up, "config", None)
        elif cand.kind == "peer":
            if not hasattr(cv2, "dnn_superres"):
                raise EdgeSRError("OpenCV peers need cv2.dnn_superres: pip install opencv-contrib-python-headless")
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            try:
                sr.readModel(cand.path)
            except cv2.error as exc:
                raise EdgeSRError(f"OpenCV cannot read peer model {cand.path}: {str(exc).strip().splitlines()[-1]}") from None
            sr.setModel(cand.peer_algo, cand.scale)
            self.sr = sr

    def upscale(self, frame_bgr_u8: np.ndarray) -> np.ndarray:
        import cv2

        if self.cand.kind == "edge-sr":
            return self.up.upscale(frame_bgr_u8)
        if self.cand.kind == "peer":
            return self.sr.upsample(frame_bgr_u8)
        h, w = frame_bgr_u8.shape[:2]
        s = self.cand.scale
        return cv2.resize(frame_bgr_u8, (w * s, h * s), interpolation=cv2.INTER_CUBIC)

    @property
    def has_model(self) -> bool:
        return self.up is not None

    def model(self, y_lr_f32: np.ndarray) -> np.ndarray:
        return self.up.infer(y_lr_f32)

    def close(self):
        if self.up is not None:
            self.up.close()


# -- measurement ----------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    kind: str
    backend: str
    precision: str
    scale: int
    lr_size: tuple[int, int]  # width, height
    path: str | None
    runs: int
    median_ms: float
    p95_ms: float
    fps: float
    model_median_ms: float | None = None
    model_p95_ms: float | None = None
    gflop_per_frame: float | None = None
    gflops: float | None = None  # model arithmetic over the whole-frame time
    model_gflops: float | None = None
    peak_fraction: float | None = None
    other_cores: float | None = None  # CPU other processes took during the measurement
    preset: str | None = None
    file_mtime: float | None = None
    file_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    pareto: bool = False
    median_ms_rounds: list | None = None  # each round's median with --repeat


def _timed(fn, arg, warmup: int, min_runs: int, seconds: float) -> list[float]:
    for _ in range(warmup):
        fn(arg)
    lat, t_end = [], time.perf_counter() + seconds
    while len(lat) < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn(arg)
        lat.append((time.perf_counter() - t0) * 1e3)
        if len(lat) >= 10 * min_runs and time.perf_counter() >= t_end:
            break
    return lat


def test_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured BGR uint8 frame (edges, gradients, noise): content does not change the speed of
    these models, but a flat frame would flatter nothing and a real-looking one costs nothing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 40 * np.sign(np.sin(xx / 31.0 + yy / 17.0))
    img = np.stack([base, np.roll(base, 7, 1), np.roll(base, 11, 0)], -1) + rng.normal(0, 8, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def measure(cand: Candidate, sizes, *, threads: int = 0, warmup: int = 3, min_runs: int = 10,
            seconds: float = 2.0, peak_gflops: float | None = None, options: dict | None = None,
            progress=None) -> list[Row]:
    """Time one candidate at each LR size (width, height). Returns one Row per size."""
    from .color import y_from_bgr_u8

    rows = []
    for w, h in sizes:
        runner = _Runner(cand, threads, (h, w), options or {})
        try:
            frame = test_frame(w, h)
            with CpuWatch() as watch:
                lat = _timed(runner.upscale, frame, warmup, min_runs, seconds)
                mlat = None
                if runner.has_model:
                    y = np.ascontiguousarray(y_from_bgr_u8(frame) * np.float32(1 / 255.0))
                    mlat = _timed(runner.model, y, 1, min_runs, seconds / 2)
        finally:
            runner.close()
        med = float(np.median(lat))
        cfg = cand.config
        gflop = cfg.gflop_per_frame(h, w) if cfg is not None else None
        row = Row(name=cand.name, kind=cand.kind, backend=cand.backend or ("opencv" if cand.kind == "bicubic" else ""),
                  precision=cand.precision if cand.kind == "edge-sr" else "fp32", scale=cand.scale, lr_size=(w, h),
                  path=cand.path, runs=len(lat), median_ms=med, p95_ms=float(np.percentile(lat, 95)),
                  fps=1e3 / med, gflop_per_frame=gflop, other_cores=watch.other_cores,
                  preset=cfg.preset if cfg is not None else None)
        if mlat:
            row.model_median_ms = float(np.median(mlat))
            row.model_p95_ms = float(np.percentile(mlat, 95))
        if gflop:
            row.gflops = gflop / med * 1e3
            if row.model_median_ms:
                row.model_gflops = gflop / row.model_median_ms * 1e3
            if peak_gflops:
                row.peak_fraction = row.gflops / peak_gflops
        if cand.path and Path(cand.path).is_file():
            st = Path(cand.path).stat()
            row.file_mtime, row.file_bytes = st.st_mtime, st.st_size
        if watch.other_cores is not None and watch.other_cores > 0.1:
            log.warning("%s at %dx%d: other processes used %.1f cores during the measurement; the figures are "
                        "low (run through scripts/quiet.sh or on an idle device)", cand.name, w, h, watch.other_cores)
        rows.append(row)
        if progress:
            progress(row)
    return rows


# -- quality ----------------------------------------------------------------------------------------
def measure_quality(cands: list[Candidate], quality_dir, *, threads: int = 0, options: dict | None = None,
                    progress: bool = False) -> dict[str, dict]:
    """Protocol PSNR/SSIM (mean over the images of all sets in ``quality_dir``) per candidate name."""
    from .quality import discover_sets, evaluate

    sets = discover_sets(quality_dir)
    runners, methods = [], {}
    try:
        for c in cands:
            r = _Runner(c, threads, None, options or {})
            runners.append(r)
            methods[c.name] = (lambda run: (lambda lr_rgb: run.upscale(lr_rgb[..., ::-1].copy())[..., ::-1]))(r)
        res = evaluate(methods, sets, cands[0].scale if cands else 2, progress=progress)
    finally:
        for r in runners:
            r.close()
    out = {}
    for name, per_set in res.items():
        n = [len(s.per_image) for s in per_set]
        psnr = float(np.average([s.psnr for s in per_set], weights=n))
        ssim = float(np.average([s.ssim for s in per_set], weights=n)) if per_set[0].ssim is not None else None
        out[name] = {"psnr": psnr, "ssim": ssim, "sets": {s.name: {"psnr": s.psnr, "ssim": s.ssim, "images": len(s.per_image)}
                                                          for s in per_set}}
    return out


# -- analysis -------------------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float]], quality_tol: float = 0.005) -> list[bool]:
    """Which (fps, quality) points no other point beats on both (>=, one strictly). Qualities within
    ``quality_tol`` (dB) count as equal: an exact rewrite of a model is not "better" by 1e-6 dB."""
    flags = []
    for i, (f, q) in enumerate(points):
        dominated = any((f2 >= f and q2 >= q - quality_tol) and (f2 > f or q2 > q + quality_tol)
                        for j, (f2, q2) in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags


def mark_pareto(rows: list[Row]) -> None:
    """Set ``Row.pareto`` per frame size among rows that have a quality score."""
    by_size: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.psnr is not None:
            by_size.setdefault(tuple(r.lr_size), []).append(r)
    for group in by_size.values():
        for r, on in zip(group, pareto_front([(r.fps, r.psnr) for r in group])):
            r.pareto = on


def ratios(rows: list[Row]) -> dict:
    """Per size: each row's speed relative to bicubic and to each peer (FPS / their FPS)."""
    out: dict[str, dict] = {}
    for size in sorted({tuple(r.lr_size) for r in rows}):
        group = [r for r in rows if tuple(r.lr_size) == size]
        refs = [r for r in group if r.kind in ("bicubic", "peer")]
        key = f"{size[0]}x{size[1]}"
        out[key] = {r.name: {ref.name: r.fps / ref.fps for ref in refs} for r in group if r.kind == "edge-sr"}
    return out


def format_table(rows: list[Row]) -> str:
    has_q = any(r.psnr is not None for r in rows)
    head = ["model", "backend", "prec", "LR size", "median ms", "p95 ms", "FPS", "model ms", "GFLOP/s", "% peak"]
    if has_q:
        head += ["PSNR", "SSIM", "front"]
    lines = [head]
    for r in rows:
        cells = [r.name, r.backend, r.precision, f"{r.lr_size[0]}x{r.lr_size[1]}", f"{r.median_ms:.1f}",
                 f"{r.p95_ms:.1f}", f"{r.fps:.1f}", f"{r.model_median_ms:.1f}" if r.model_median_ms else "-",
                 f"{r.gflops:.0f}" if r.gflops else "-", f"{100 * r.peak_fraction:.0f}" if r.peak_fraction else "-"]
        if has_q:
            cells += [f"{r.psnr:.2f}" if r.psnr is not None else "-", f"{r.ssim:.4f}" if r.ssim is not None else "-",
                      "*" if r.pareto else ""]
        if r.other_cores is not None and r.other_cores > 0.1:
            cells[0] += " (busy!)"
        lines.append(cells)
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(lines[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in lines[1:]])


def report_dict(rows: list[Row], device: dict, settings: dict, command: list[str] | None = None,
                quality: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "device": device,
        "versions": versions(),
        "settings": settings,
        "results": [asdict(r) for r in rows],
        "ratios": ratios(rows),
        "precision": precision_summary(rows),
        "quality": quality,
    }


def write_json(report: dict, path: str | os.PathLike) -> None:
    from .imageio import atomic_path

    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")


def load_report(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        rep = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeSRError(f"cannot read benchmark report {p}: {exc}") from None
    if not isinstance(rep, dict) or rep.get("format") != FORMAT:
        raise EdgeSRError(f"{p} is not an edge-sr benchmark report ({FORMAT})")
    return rep


def rows_from_report(report: dict) -> list[Row]:
    rows = []
    for d in report.get("results", []):
        d = dict(d)
        d["lr_size"] = tuple(d["lr_size"])
        rows.append(Row(**{k: v for k, v in d.items() if k in Row.__dataclass_fields__}))
    return rows


def short_label(r: Row) -> str:
    name = r.name
    for cut in (".onnx", ".engine", ".safetensors", " (OpenCV)"):
        name = name.replace(cut, "")
    if name.startswith("dcscn_"):
        name = name[len("dcscn_"):]
    return name if r.kind != "edge-sr" or r.precision in name else f"{name} {r.precision}"


def plot(rows: list[Row], path: str | os.PathLike, title: str = "") -> None:
    """PNG: per LR size, PSNR against FPS (log) with the Pareto front; FPS bars without quality."""
    mpl = require("matplotlib", "the benchmark plot (pip install 'edge-sr[bench]')")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from .imageio import atomic_path

    sizes = sorted({tuple(r.lr_size) for r in rows}, key=lambda s: s[0] * s[1])
    has_q = any(r.psnr is not None for r in rows)
    width = 5.2 * len(sizes) + (3.2 if has_q else 0)
    fig, axes = plt.subplots(1, len(sizes), figsize=(width, 4.4), squeeze=False)
    colors = {"edge-sr": "tab:blue", "bicubic": "tab:gray", "peer": "tab:orange"}
    palette, markers = plt.get_cmap("tab10").colors, "oDs^vP*Xh<>p"
    names = list(dict.fromkeys(r.name for r in rows))
    style = {n: (palette[i % len(palette)], markers[i % len(markers)]) for i, n in enumerate(names)}
    labelled: set = set()
    for ax, size in zip(axes[0], sizes):
        group = [r for r in rows if tuple(r.lr_size) == size]
        ax.set_title(f"LR {size[0]}x{size[1]} -> x{group[0].scale}")
        if has_q:
            pts = [r for r in group if r.psnr is not None]
            for r in pts:
                color, marker = style[r.name]
                ax.scatter(r.fps, r.psnr, s=70 if r.pareto else 40, c=[color], marker=marker,
                           edgecolors="red" if r.pareto else "none", linewidths=1.5, zorder=3,
                           label=short_label(r) if r.name not in labelled else None)
                labelled.add(r.name)
            front = sorted((r for r in pts if r.pareto), key=lambda r: r.fps)
            if front:
                ax.step([r.fps for r in front], [r.psnr for r in front], where="pre", color="red", lw=1,
                        ls="--", label="Pareto front" if "front" not in labelled else None, zorder=2)
                labelled.add("front")
            ax.set_xscale("log")
            ax.set_xlabel("FPS (whole colour frame, log)")
            ax.set_ylabel("PSNR Y (dB)")
            ax.grid(True, which="both", alpha=0.3)
            ax.margins(x=0.25, y=0.12)
        else:
            group = sorted(group, key=lambda r: r.fps)
            ax.barh([r.name for r in group], [r.fps for r in group], color=[colors.get(r.kind, "k") for r in group])
            ax.set_xscale("log")
            ax.set_xlabel("FPS (whole colour frame, log)")
            for i, r in enumerate(group):
                ax.text(r.fps, i, f" {r.fps:.1f}", va="center", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
    if has_q:
        handles, labels = [], []
        for ax in axes[0]:
            h, lab = ax.get_legend_handles_labels()
            handles += h
            labels += lab
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.8 if has_q else 1, 1))
    with atomic_path(Path(path)) as tmp:
        fig.savefig(str(tmp), dpi=110, format="png")
    plt.close(fig)


def parse_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT of the LR frame -> (w, h)."""
    return _parse_size(text, "frame size")


def combine_rounds(rounds: list[list[Row]], peak_gflops: float | None = None) -> list[Row]:
    """Rows of repeated rounds -> one row per (candidate, size): the median of the rounds' medians
    (and of their p95s); ``median_ms_rounds`` keeps each round's median."""
    if len(rounds) == 1:
        return rounds[0]
    out = []
    for i, first in enumerate(rounds[0]):
        same = [r[i] for r in rounds]
        row = Row(**{k: getattr(first, k) for k in Row.__dataclass_fields__})
        row.median_ms = float(np.median([r.median_ms for r in same]))
        row.p95_ms = float(np.median([r.p95_ms for r in same]))
        row.runs = sum(r.runs for r in same)
        row.fps = 1e3 / row.median_ms
        row.median_ms_rounds = [round(r.median_ms, 3) for r in same]
        if first.model_median_ms is not None:
            row.model_median_ms = float(np.median([r.model_median_ms for r in same]))
            row.model_p95_ms = float(np.median([r.model_p95_ms for r in same]))
        if row.gflop_per_frame:
            row.gflops = row.gflop_per_frame / row.median_ms * 1e3
            row.model_gflops = row.gflop_per_frame / row.model_median_ms * 1e3 if row.model_median_ms else None
            row.peak_fraction = row.gflops / peak_gflops if peak_gflops else None
        busy = [r.other_cores for r in same if r.other_cores is not None]
        row.other_cores = max(busy) if busy else None
        out.append(row)
    return out


def run_bench(cands: list[Candidate], sizes, *, threads: int = 0, warmup: int = 3, min_runs: int = 10,
              seconds: float = 2.0, quality_dir=None, options: dict | None = None, progress=None,
              command: list[str] | None = None, repeat: int = 1, wait_idle_s: float = 0) -> dict:
    """Measure every candidate at every size, ``repeat`` rounds (and quality when asked); returns the
    report dict."""
    if not cands:
        raise EdgeSRError("nothing to benchmark")
    if repeat < 1:
        raise EdgeSRError(f"--repeat must be at least 1, not {repeat}")
    dev = device_info(threads)
    rounds: list[list[Row]] = []
    for _ in range(repeat):  # rounds interleave the candidates: a slow spell hits all of them alike
        rows = []
        for c in cands:
            if wait_idle_s:
                wait_for_idle(wait_idle_s)
            rows += measure(c, sizes, threads=threads, warmup=warmup, min_runs=min_runs, seconds=seconds,
                            peak_gflops=dev["peak_gflops_estimate"], options=options, progress=progress)
        rounds.append(rows)
    rows = combine_rounds(rounds, dev["peak_gflops_estimate"])
    quality = None
    if quality_dir:
        quality = measure_quality(cands, quality_dir, threads=threads, options=options)
        for r in rows:
            q = quality.get(r.name)
            if q:
                r.psnr, r.ssim = q["psnr"], q["ssim"]
        mark_pareto(rows)
    settings = {"threads": dev["threads"], "repeat": repeat, "wait_idle_s": wait_idle_s, "warmup": warmup, "min_runs": min_runs, "seconds_per_item": seconds,
                "sizes": [list(s) for s in sizes], "quality_dir": str(quality_dir) if quality_dir else None,
                "timed": "whole colour frame: upscaler.upscale(frame_bgr_u8); model: infer(y_lr_f32) alone"}
    return report_dict(rows, dev, settings, command, quality)

