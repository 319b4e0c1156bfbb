"""Pick the highest-quality model that sustains a target FPS on this device, from a cached bench.

The cache is the JSON of ``edge-sr bench`` (rows merged across runs) at
``$EDGE_SR_CACHE/bench-<host>.json`` or ``~/.cache/edge-sr/bench-<host>.json``. A candidate without a
row for this frame size, thread count and file (size and mtime) is measured now, briefly, and the
cache is updated. Quality ranks by protocol PSNR when the cache has it (``edge-sr bench --quality``),
otherwise by the model's arithmetic per frame (in the DCSCN family a bigger model is a sharper one),
FP32 before INT8 at equal size; the reason text says which.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import numpy as np

from .errors import EdgeSRError

log = logging.getLogger(__name__)

PRECISION_RANK = {"fp32": 3, "tf32": 3, "fp16": 2, "int8": 1}
DEFAULT_HEADROOM = 1.1  # the whole-frame FPS must beat the target by 10% (capture and output cost too)
PRECISIONS = ("auto", "fp32", "int8")
# the shipped INT8 files: symmetric signed INT8 on conv inputs (TensorRT's) and the CPU file (uint8
# activations, from the fast graph: what ONNX Runtime's CPU kernels run, x86 and ARM)
INT8_KINDS = {"tensorrt": "int8.onnx", "cpu": "cpu-int8.onnx"}
MAX_INT8_LOSS_DB = 0.15  # auto never picks an INT8 file that the cache says loses more than this
MIN_INT8_SPEEDUP = 1.05  # ... nor one less than 5% faster than FP32: within the noise of a bench, and INT8 costs
# some quality (measured 2026-11-26, compact x3 here: the CPU file 1.01x FP32 for -0.025 dB; not worth taking)
# (preset, scale) whose CPU INT8 file measured no real gain over FP32 on x86 even with VNNI: their unmeasured default
# there is FP32. The PReLU compact models: their thin layers gain less from integer convs than the float PReLU
# between them costs (AVX-512 VNNI EPYC, medians of three bench runs, 320x240 / 640x480, layers padded to 8 channels
# since session 14: compact x3 0.96x / 1.13x, x4 1.04x / 1.17x; docs/benchmarks/README.md). compact x2 is a ReLU
# network since session 13 and runs integer end to end: 1.84x / 1.69x its FP32; normal x2 2.28x / 2.37x.
X86_FP32_FIRST = {
    ("compact", 3): "compact x3's CPU INT8 file measured 0.96x / 1.13x FP32 (320x240 / 640x480) on an AVX-512 VNNI x86",
    ("compact", 4): "compact x4's CPU INT8 file measured 1.04x / 1.17x FP32 (320x240 / 640x480) on an AVX-512 VNNI x86",
}


def cache_path() -> Path:
    base = os.environ.get("EDGE_SR_CACHE")
    folder = Path(base).expanduser() if base else Path.home() / ".cache" / "edge-sr"
    return folder / f"bench-{socket.gethostname()}.json"


def load_cache(path: Path | None = None) -> dict | None:
    """The cached report, or None when absent; a broken cache is ignored with a warning."""
    from .bench import load_report

    p = path or cache_path()
    if not p.is_file():
        return None
    try:
        return load_report(p)
    except EdgeSRError as exc:
        log.warning("ignoring the benchmark cache: %s", exc)
        return None


def _row_key(r: dict) -> tuple:
    return (r.get("path") or r.get("name"), tuple(r["lr_size"]), r.get("_threads"))


def update_cache(report: dict, path: Path | None = None) -> Path:
    """Merge ``report``'s rows into the cache (a row replaces the one for the same file, size and
    thread count); quality scores are merged by model name. Returns the cache path."""
    from .bench import write_json

    p = path or cache_path()
    threads = report.get("device", {}).get("threads")
    old = load_cache(p)
    rows: dict[tuple, dict] = {}
    quality: dict = {}
    if old and old.get("device", {}).get("cpu") == report.get("device", {}).get("cpu"):
        for r in old.get("results", []):
            rows[_row_key(r)] = r
        quality.update(old.get("quality") or {})
    for r in report.get("results", []):
        r = dict(r, _threads=threads)
        if r.get("psnr") is None and _row_key(r) in rows:  # keep a quality score measured before
            prev = rows[_row_key(r)]
            if prev.get("file_mtime") == r.get("file_mtime"):
                r["psnr"], r["ssim"] = prev.get("psnr"), prev.get("ssim")
        rows[_row_key(r)] = r
    quality.update(report.get("quality") or {})
    merged = dict(report, results=list(rows.values()), quality=quality or None)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(merged, p)
    return p


def _cached_row(cache: dict | None, path: str, w: int, h: int, threads: int) -> dict | None:
    if not cache:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None
    for r in cache.get("results", []):
        if (r.get("path") == path and tuple(r["lr_size"]) == (w, h) and r.get("_threads") == threads
                and r.get("file_bytes") == st.st_size and r.get("file_mtime") == st.st_mtime):
            return r
    return None


def _quality_key(r: dict, by_psnr: bool) -> tuple:
    """Higher is better: PSNR when every candidate has one, else the model's GFLOP per frame, then
    precision (a PSNR known for some candidates only cannot rank them against the others)."""
    size_key = (r.get("gflop_per_frame") or 0.0, PRECISION_RANK.get(r.get("precision"), 0))
    return (r["psnr"],) + size_key if by_psnr else size_key


# a model with at least this many times the arithmetic of one already too slow is not measured: INT8 and
# backend differences between the shipped files are well below it (docs/benchmarks)
SKIP_ARITHMETIC_RATIO = 3.0


def _shipped_gflop(path: str, lr_width: int, lr_height: int) -> float | None:
    """GFLOP per frame of a shipped model file, from its name (dcscn_<preset>_x<scale>.*), without loading it;
    None for any other file."""
    import re

    from .config import PRESET_NAMES, preset

    m = re.match(r"dcscn_([a-z]+)_x(\d)\.", Path(path).name)
    if not m or m.group(1) not in PRESET_NAMES:
        return None
    return preset(m.group(1), int(m.group(2))).gflop_per_frame(lr_height, lr_width)


def pick_model(target_fps: float, lr_width: int, lr_height: int, scale: int, *, models=None, threads: int = 0,
               headroom: float = DEFAULT_HEADROOM, cache: Path | None = None, seconds: float = 1.0,
               options: dict | None = None, fallback: bool = False) -> tuple[str, str]:
    """The highest-quality model (path) that sustains ``target_fps`` for LR frames of
    ``lr_width`` x ``lr_height`` at ``scale`` on this device, and a one-paragraph reason.

    ``models``: paths or presets to choose from (default: the shipped models that exist). Raises
    EdgeSRError when no model reaches the target (the message names the fastest), or with
    ``fallback`` returns the fastest and logs a warning (a service must come up)."""
    from .bench import default_candidates, device_info, measure, model_candidate, report_dict
    from dataclasses import asdict

    if not target_fps or target_fps <= 0:
        raise EdgeSRError(f"target FPS must be positive, not {target_fps}")
    cands = [model_candidate(m, scale) for m in models] if models else default_candidates(scale)
    if not cands:
        raise EdgeSRError(f"no x{scale} models to choose from: none shipped; give models (--model PATH)")
    for c in cands:
        c.path = str(Path(c.path).resolve())
    dev = device_info(threads)
    used = dev["threads"]
    cache_file = cache or cache_path()
    cached = load_cache(cache_file)
    rows, missing = [], []
    for c in cands:
        r = _cached_row(cached, c.path, lr_width, lr_height, used)
        (rows.append(r) if r else missing.append(c))
    measured_now, skipped = [], []
    need = target_fps * headroom
    if missing:
        log.info("no cached benchmark at %dx%d on this device for %s: measuring now (about %.0f s)", lr_width,
                 lr_height, ", ".join(c.name for c in missing), len(missing) * seconds * 1.5)
        new = []
        gflop = {c.path: _shipped_gflop(c.path, lr_width, lr_height) for c in missing}
        for c in sorted(missing, key=lambda c: gflop[c.path] or 0.0):
            # a shipped model with several times the arithmetic of one already below the target cannot reach it:
            # not timed (large on a Raspberry Pi would take minutes)
            g = gflop[c.path]
            slow = [r for r in rows + [asdict(x) for x in new] if r.get("gflop_per_frame") and r["fps"] < need]
            if g and any(g >= SKIP_ARITHMETIC_RATIO * r["gflop_per_frame"] for r in slow):
                skipped.append(f"{c.name} ({g:.1f} GFLOP per frame)")
                continue
            new += measure(c, [(lr_width, lr_height)], threads=threads, min_runs=5, seconds=seconds,
                           peak_gflops=dev["peak_gflops_estimate"], options=options)
        rep = report_dict(new, dev, {"threads": used, "sizes": [[lr_width, lr_height]], "seconds_per_item": seconds,
                                     "by": "edge_sr.selection.pick_model"}, ["edge_sr.selection.pick_model"])
        if new:
            update_cache(rep, cache_file)
        for r in new:
            d = dict(asdict(r), _threads=used)
            rows.append(d)
            measured_now.append(d["path"])
    ok = [r for r in rows if r["fps"] >= need]
    by_psnr = all(r.get("psnr") is not None for r in rows)
    key = lambda r: _quality_key(r, by_psnr)  # noqa: E731
    by_quality = sorted(rows, key=key, reverse=True)
    basis = "protocol PSNR" if by_psnr else \
        "model size (GFLOP per frame; PSNR not cached for every candidate: run edge-sr bench --quality DIR), then precision"

    def desc(r):
        src = "measured now" if r["path"] in measured_now else "cached bench"
        q = f", PSNR {r['psnr']:.2f} dB" if r.get("psnr") is not None else ""
        return (f"{Path(r['path']).name} ({r['backend']} {r['precision']}): {r['fps']:.1f} FPS whole frame, "
                f"median {r['median_ms']:.1f} ms{q} ({src})")

    size = f"{lr_width}x{lr_height} LR x{scale}"
    not_timed = (f" Not timed, {SKIP_ARITHMETIC_RATIO:g}x or more the arithmetic of a model already too slow: "
                 + ", ".join(skipped) + ".") if skipped else ""
    if not ok:
        fastest = max(rows, key=lambda r: r["fps"])
        if fallback:
            log.warning("no model sustains %g FPS at %s on this device (needs %.1f FPS with %.2fx headroom): using the "
                        "fastest, %s", target_fps, size, need, headroom, desc(fastest))
            return fastest["path"], f"fell back to the fastest: {desc(fastest)} (below the target).{not_timed}"
        raise EdgeSRError(f"no model sustains {target_fps:g} FPS at {size} on this device (needs {need:.1f} FPS with "
                          f"{headroom:.2f}x headroom); fastest: {desc(fastest)}. Lower the target or the frame size")
    best = max(ok, key=key)
    better = [r for r in by_quality if key(r) > key(best)]
    why = f"chose {desc(best)}; target {target_fps:g} FPS at {size} (needs {need:.1f} with {headroom:.2f}x headroom), " \
          f"ranked by {basis}, {used} threads."
    if better:
        why += " Higher quality but too slow: " + "; ".join(desc(r) for r in better) + "."
    return best["path"], why + not_timed


# -- precision of a preset: platform default, then the bench cache ---------------------------------------
def cpu_features(root: str | os.PathLike = "/") -> tuple[str, set]:
    """(machine, CPU feature flags) of this device, from /proc/cpuinfo ('flags' on x86, 'Features' on ARM)."""
    import platform

    flags: set = set()
    try:
        for line in (Path(root) / "proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("flags", "Features"):
                flags = set(v.split())
                break
    except OSError:
        pass
    return platform.machine().lower(), flags


def platform_int8(root: str | os.PathLike = "/", providers=None, preset: str | None = None,
                  scale: int | None = None) -> tuple[str, bool, str]:
    """Which INT8 file suits this device, whether INT8 is the default here before anything is measured,
    and why. From ONNX Runtime's documentation (performance/model-optimizations/quantization):
    "x86-64 with VNNI, GPU with Tensor Core int8 support and ARM with dot-product instructions can get
    better performance in general". MLAS (ONNX Runtime's kernels) runs U8S8 and S8S8 with dot-product kernels
    on ARM64 (UDOT/SDOT, and symmetric-conv kernels for both); on x86 S8S8 goes through a slower path.
    ONNX Runtime fuses a conv into an integer kernel only with a quantize on its output, which the TensorRT file
    leaves out (TensorRT's placement, calibration.quantize.TENSORRT_INT8): on any CPU that file runs in float.

    * TensorRT (a TensorRT provider asked for): the symmetric file, INT8 default.
    * x86-64: the CPU file (uint8 activations; measured 2.28x / 2.37x FP32 for normal x2 on an AVX-512 VNNI
      EPYC, docs/benchmarks/); INT8 default only with VNNI (avx512_vnni or avx_vnni), and not for
      (``preset``, ``scale``) in X86_FP32_FIRST.
    * aarch64: the CPU file too (U8S8 on UDOT kernels); INT8 default only with the dot-product extension
      (asimddp: Cortex-A76, Raspberry Pi 5; not the Pi 4's A72). UNMEASURED on a Pi: `edge-sr bench` there
      measures both INT8 files and FP32, and `auto` follows that measurement from then on.
    * anything else: FP32."""
    names = [providers] if isinstance(providers, str) else list(providers or [])
    if any("tensorrt" in str(p).lower() or str(p).lower() == "trt" for n in names for p in str(n).split(",")):
        return INT8_KINDS["tensorrt"], True, "TensorRT runs symmetric INT8 Q/DQ"
    machine, flags = cpu_features(root)
    if machine in ("x86_64", "amd64"):
        from .bench import VNNI_FLAGS

        if not flags & set(VNNI_FLAGS):
            return INT8_KINDS["cpu"], False, "x86-64 without VNNI: INT8 is not expected to pay"
        why = "x86-64 with VNNI: ONNX Runtime's u8s8 kernels"
        if (preset, scale) in X86_FP32_FIRST:
            return INT8_KINDS["cpu"], False, f"{why}, but {X86_FP32_FIRST[(preset, scale)]}"
        return INT8_KINDS["cpu"], True, why
    if machine in ("aarch64", "arm64"):
        dot = "asimddp" in flags
        return INT8_KINDS["cpu"], dot, ("ARM64 with dot-product instructions: ONNX Runtime's U8S8 (UDOT) kernels; "
                                        "unmeasured here until edge-sr bench runs"
                                        if dot else "ARM64 without dot-product instructions: FP32")
    return INT8_KINDS["cpu"], False, f"{machine}: FP32"


def _measured(cache: dict | None, path: Path, threads: int) -> dict:
    """Cached rows of this exact file (size and mtime) at this thread count: {(w, h): row}."""
    out: dict = {}
    if not cache or not path.is_file():
        return out
    st = path.stat()
    for r in cache.get("results", []):
        if (r.get("path") == str(path) and r.get("_threads") == threads and r.get("file_bytes") == st.st_size
                and r.get("file_mtime") == st.st_mtime):
            out[tuple(r["lr_size"])] = r
    return out


def choose_precision(preset: str, scale: int, precision: str = "auto", *, lr_size: tuple[int, int] | None = None,
                     threads: int = 0, providers=None, cache: Path | None = None,
                     root: str | os.PathLike = "/") -> tuple[Path, str]:
    """The shipped file of ``preset`` x``scale`` for ``precision`` (auto | fp32 | int8) and why.

    int8: this platform's INT8 file (``platform_int8``); refused when it is not shipped.
    auto: when this device's bench cache (``edge-sr bench``) has the FP32 file and an INT8 file at this
    thread count, the fastest of them (at ``lr_size`` when measured there, else over the sizes measured for
    both), unless the cache says the INT8 one loses more than MAX_INT8_LOSS_DB; without a measurement, the
    platform default."""
    from .backends import shipped_path
    from .backends.onnxruntime import physical_cores

    if precision not in PRECISIONS:
        raise EdgeSRError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    fp32 = shipped_path(preset, scale, "onnx")
    kind, default_int8, why_platform = platform_int8(root, providers, preset, scale)
    int8 = shipped_path(preset, scale, kind)
    if precision == "fp32":
        return fp32, "FP32 asked for"
    if precision == "int8":
        if not int8.is_file():
            raise EdgeSRError(f"no INT8 model {int8.name} shipped for {preset} x{scale} ({why_platform}): "
                              "use --precision fp32, or make it with scripts/ship-weights.sh")
        return int8, f"INT8 asked for: {int8.name} ({why_platform})"
    if not fp32.is_file():
        if int8.is_file():
            return int8, f"only {int8.name} is shipped for {preset} x{scale}"
        return fp32, "FP32 (nothing else shipped)"  # resolve_model reports what is missing
    used = min(threads or physical_cores(), physical_cores())
    cached = load_cache(cache)
    rows = {p: _measured(cached, p.resolve(), used)
            for p in [fp32] + [shipped_path(preset, scale, k) for k in dict.fromkeys([kind, *INT8_KINDS.values()])]}
    base = rows[fp32]
    best, best_fps, basis = fp32, None, None
    for p, r in rows.items():
        if p == fp32 or not r or not base:
            continue
        sizes = [tuple(lr_size)] if lr_size and tuple(lr_size) in r and tuple(lr_size) in base else sorted(set(r) & set(base))
        if not sizes:
            continue
        q, q0 = next(iter(r.values())).get("psnr"), next(iter(base.values())).get("psnr")
        if q is not None and q0 is not None and q0 - q > MAX_INT8_LOSS_DB:
            continue
        ratio = float(np.mean([r[s]["fps"] / base[s]["fps"] for s in sizes]))
        if ratio >= MIN_INT8_SPEEDUP and (best_fps is None or ratio > best_fps):
            best, best_fps = p, ratio
            basis = ", ".join(f"{s[0]}x{s[1]}" for s in sizes)
    if best != fp32:
        return best, (f"auto: {best.name}, measured {best_fps:.2f}x FP32's FPS on this device at {basis} "
                      f"(bench cache, {used} threads)")
    if default_int8 and int8.is_file() and not rows.get(int8):
        return int8, f"auto: {int8.name}, the platform default ({why_platform}); not measured on this device yet (edge-sr bench)"
    if base and any(rows[p] for p in rows if p != fp32):
        if best == fp32:
            return fp32, (f"auto: FP32, no INT8 file measured at least {MIN_INT8_SPEEDUP:.2f}x its FPS on this device "
                          "(bench cache)")
        return best, (f"auto: {best.name}, measured {best_fps:.2f}x FP32's FPS on this device at {basis} "
                      f"(bench cache, {used} threads)")
    if default_int8 and int8.is_file():
        return int8, f"auto: {int8.name}, the platform default ({why_platform}); not measured on this device yet (edge-sr bench)"
    return fp32, f"auto: FP32, the platform default ({why_platform})"
