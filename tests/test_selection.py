"""Model selection for a target FPS from a cached bench (measured when none is cached)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from edge_sr.errors import EdgeSRError


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("EDGE_SR_CACHE", str(d))
    return d


def _row(path: Path, fps: float, gflop: float, precision="fp32", psnr=None, size=(320, 240)):
    st = path.stat()
    return {"name": path.name, "kind": "edge-sr", "backend": "onnxruntime", "precision": precision, "scale": 2,
            "lr_size": list(size), "path": str(path.resolve()), "runs": 10, "median_ms": 1e3 / fps, "p95_ms": 1e3 / fps,
            "fps": fps, "gflop_per_frame": gflop, "file_mtime": st.st_mtime, "file_bytes": st.st_size,
            "psnr": psnr, "ssim": None}


def _cache(rows, quality=None):
    from edge_sr.bench import device_info, report_dict, rows_from_report
    from edge_sr.selection import update_cache

    dev = device_info(0)
    rep = report_dict(rows_from_report({"results": rows}), dev, {}, ["test"], quality)
    return update_cache(rep), dev


@pytest.fixture
def models(tmp_path):
    out = {}
    for n in ("small", "big", "big_int8"):
        p = tmp_path / f"{n}.onnx"
        p.write_bytes(n.encode())  # never opened: the cache answers
        out[n] = p
    return out


def test_picks_highest_quality_that_sustains_the_target(models, cache_dir):
    from edge_sr.selection import cache_path, pick_model

    path, _ = _cache([_row(models["small"], 60, 4, psnr=36.5), _row(models["big"], 8, 37, psnr=37.4),
                      _row(models["big_int8"], 12, 37, "int8", psnr=37.2)])
    assert path == cache_path() and path.parent == cache_dir
    ms = [str(m) for m in models.values()]
    chosen, why = pick_model(10, 320, 240, 2, models=ms)
    assert Path(chosen) == models["big_int8"].resolve()
    assert "big_int8.onnx" in why and "big.onnx" in why and "too slow" in why and "protocol PSNR" in why
    chosen, _ = pick_model(5, 320, 240, 2, models=ms)
    assert Path(chosen) == models["big"].resolve()
    chosen, _ = pick_model(30, 320, 240, 2, models=ms)
    assert Path(chosen) == models["small"].resolve()


def test_without_psnr_ranks_by_size_then_precision(models, cache_dir):
    from edge_sr.selection import pick_model

    _cache([_row(models["small"], 60, 4), _row(models["big"], 20, 37), _row(models["big_int8"], 25, 37, "int8")])
    chosen, why = pick_model(15, 320, 240, 2, models=[str(m) for m in models.values()])
    assert Path(chosen) == models["big"].resolve() and "GFLOP per frame" in why


def test_nothing_fast_enough_says_so(models, cache_dir):
    from edge_sr.selection import pick_model

    _cache([_row(models["small"], 60, 4), _row(models["big"], 8, 37)])
    with pytest.raises(EdgeSRError, match=r"no model sustains 100 FPS.*fastest: small.onnx"):
        pick_model(100, 320, 240, 2, models=[str(models["small"]), str(models["big"])])
    with pytest.raises(EdgeSRError, match="headroom"):  # 58 FPS needed with 10% headroom on 55
        pick_model(55, 320, 240, 2, models=[str(models["small"])])
    with pytest.raises(EdgeSRError, match="positive"):
        pick_model(0, 320, 240, 2, models=[str(models["small"])])


def test_measures_when_not_cached_or_stale(tiny_checkpoint, tmp_path, cache_dir):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from deploy.export import export_onnx
    from edge_sr.selection import cache_path, load_cache, pick_model

    m = export_onnx(tiny_checkpoint, tmp_path / "tiny_compact_x2.onnx", residual=True).path
    chosen, why = pick_model(0.5, 24, 16, 2, models=[str(m)], seconds=0)
    assert Path(chosen) == m.resolve() and "measured now" in why
    assert len(load_cache(cache_path())["results"]) == 1
    chosen, why = pick_model(0.5, 24, 16, 2, models=[str(m)], seconds=0)
    assert "cached bench" in why
    os.utime(m, (1, 1))  # a changed file invalidates its row
    _, why = pick_model(0.5, 24, 16, 2, models=[str(m)], seconds=0)
    assert "measured now" in why
    _, why = pick_model(0.5, 20, 16, 2, models=[str(m)], seconds=0)  # another size: measured too
    assert "measured now" in why and len(load_cache(cache_path())["results"]) == 2


def test_update_cache_merges_and_keeps_quality(models, cache_dir):
    from edge_sr.selection import cache_path, load_cache

    _cache([_row(models["small"], 60, 4, psnr=36.0)], quality={"small.onnx": {"psnr": 36.0}})
    _cache([_row(models["small"], 70, 4), _row(models["big"], 8, 37)])
    rows = {Path(r["path"]).name: r for r in load_cache(cache_path())["results"]}
    assert rows["small.onnx"]["fps"] == 70 and rows["small.onnx"]["psnr"] == 36.0 and "big.onnx" in rows
    cache_path().write_text("{broken")
    assert load_cache() is None


def test_cli_pick(models, cache_dir):
    _cache([_row(models["small"], 60, 4), _row(models["big"], 8, 37)])
    r = run_cli("bench", "--pick", "5", "--size", "320x240", "--model", str(models["small"]), "--model",
                str(models["big"]), env={"EDGE_SR_CACHE": str(cache_dir)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(models["big"].resolve()) and "chose big.onnx" in r.stdout
    r = run_cli("bench", "--pick", "500", "--model", str(models["small"]), env={"EDGE_SR_CACHE": str(cache_dir)})
    assert r.returncode == 2 and "no model sustains" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(next(cache_dir.glob("*.json")).read_text())["format"] == "edge-sr-bench/1"


def test_partial_psnr_falls_back_to_size(models, cache_dir):
    from edge_sr.selection import pick_model

    # PSNR known for the small model only: it must not outrank a bigger model that also sustains the target
    _cache([_row(models["small"], 60, 4, psnr=36.0), _row(models["big"], 20, 37)])
    chosen, why = pick_model(15, 320, 240, 2, models=[str(models["small"]), str(models["big"])])
    assert Path(chosen) == models["big"].resolve() and "not cached for every candidate" in why


def test_stream_target_fps_impossible_is_one_line(tmp_path):
    """--target-fps that nothing sustains: one clear line naming the fastest model, exit non-zero."""
    from conftest import run_cli

    r = run_cli("stream", "--source", "demo", "--width", "64", "--height", "48", "--target-fps", "1000000",
                "--no-output", "--duration", "1", env={"EDGE_SR_CACHE": str(tmp_path / "cache.json")}, timeout=300)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "fastest" in r.stderr.lower() or "no model" in r.stderr.lower() or "shipped" in r.stderr.lower()
