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

from .errors import EdgeSRError

log = logging.getLogger(__name__)

PRECISION_RANK = {"fp32": 3, "tf32": 3, "fp16": 2, "int8": 1}
DEFAULT_HEADROOM = 1.1  # the whole-frame FPS must beat the target by 10% (capture and output cost too)


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
    measured_now = []
    if missing:
        log.info("no cached benchmark at %dx%d on this device for %s: measuring now (about %.0f s)", lr_width,
                 lr_height, ", ".join(c.name for c in missing), len(missing) * seconds * 1.5)
        new = []
        for c in missing:
            new += measure(c, [(lr_width, lr_height)], threads=threads, min_runs=5, seconds=seconds,
                           peak_gflops=dev["peak_gflops_estimate"], options=options)
        rep = report_dict(new, dev, {"threads": used, "sizes": [[lr_width, lr_height]], "seconds_per_item": seconds,
                                     "by": "edge_sr.selection.pick_model"}, ["edge_sr.selection.pick_model"])
        update_cache(rep, cache_file)
        for r in new:
            d = dict(asdict(r), _threads=used)
            rows.append(d)
            measured_now.append(d["path"])
    need = target_fps * headroom
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
    if not ok:
        fastest = max(rows, key=lambda r: r["fps"])
        if fallback:
            log.warning("no model sustains %g FPS at %s on this device (needs %.1f FPS with %.2fx headroom): using the "
                        "fastest, %s", target_fps, size, need, headroom, desc(fastest))
            return fastest["path"], f"fell back to the fastest: {desc(fastest)} (below the target)"
        raise EdgeSRError(f"no model sustains {target_fps:g} FPS at {size} on this device (needs {need:.1f} FPS with "
                          f"{headroom:.2f}x headroom); fastest: {desc(fastest)}. Lower the target or the frame size")
    best = max(ok, key=key)
    better = [r for r in by_quality if key(r) > key(best)]
    why = f"chose {desc(best)}; target {target_fps:g} FPS at {size} (needs {need:.1f} with {headroom:.2f}x headroom), " \
          f"ranked by {basis}, {used} threads."
    if better:
        why += " Higher quality but too slow: " + "; ".join(desc(r) for r in better) + "."
    return best["path"], why
