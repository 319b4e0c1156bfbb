"""Model selection for a target FPS from a cached bench (measured when none is cached)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli, textured_bgr

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
    from edge_sr.deploy.export import export_onnx
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


def test_models_far_beyond_one_too_slow_are_not_timed(tiny_checkpoint, tmp_path, cache_dir):
    """With no cache, a shipped model with 3x or more the arithmetic of one already below the target is not
    measured (large on a Pi would take minutes) and the reason says so; when the target is within reach every
    model is measured."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import shutil

    from edge_sr.deploy.export import export_onnx
    from edge_sr.selection import cache_path, load_cache, pick_model

    small = export_onnx(tiny_checkpoint, tmp_path / "dcscn_compact_x2.onnx", residual=True).path
    big = tmp_path / "dcscn_large_x2.onnx"  # named as the shipped large: its arithmetic is read from the name
    shutil.copy(small, big)
    chosen, why = pick_model(1e6, 24, 16, 2, models=[str(big), str(small)], seconds=0, fallback=True)
    assert Path(chosen) == small.resolve()
    assert "Not timed" in why and "dcscn_large_x2.onnx" in why
    assert [Path(r["path"]).name for r in load_cache(cache_path())["results"]] == ["dcscn_compact_x2.onnx"]
    _, why = pick_model(1e-3, 24, 16, 2, models=[str(big), str(small)], seconds=0)
    assert "Not timed" not in why and len(load_cache(cache_path())["results"]) == 2


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


def test_stream_target_fps_impossible_falls_back_to_the_fastest(tmp_path):
    """--target-fps that nothing sustains (1000 FPS at 160x120: the fastest, compact x2 CPU INT8, ran 1160 FPS at 64x48
    on a VNNI VM): the stream still comes up, on the fastest model, and says so."""
    from conftest import run_cli

    r = run_cli("stream", "--source", "demo", "--width", "160", "--height", "120", "--target-fps", "1000",
                "--no-output", "--duration", "1", env={"EDGE_SR_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "no model sustains 1000 FPS" in r.stderr and "fastest" in r.stderr


# -- precision of a preset: platform default, bench cache -------------------------------------------------
def _cpuinfo(root: Path, machine: str, flags: str) -> Path:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    key = "flags" if machine == "x86_64" else "Features"
    (root / "proc" / "cpuinfo").write_text(f"processor\t: 0\n{key}\t\t: {flags}\n\n")
    return root


@pytest.mark.parametrize("machine,flags,kind,default", [
    ("x86_64", "fpu sse2 avx2 fma avx512f avx512_vnni", "cpu-int8.onnx", True),
    ("x86_64", "fpu sse2 avx2 fma", "cpu-int8.onnx", False),
    ("aarch64", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
     "cpu-int8.onnx", True),  # Cortex-A76 (Raspberry Pi 5)
    ("aarch64", "fp asimd evtstrm crc32 cpuid", "cpu-int8.onnx", False),  # Cortex-A72 (Pi 4): no dot product
    ("riscv64", "", "cpu-int8.onnx", False),
])
def test_platform_int8_from_the_cpu(tmp_path, monkeypatch, machine, flags, kind, default):
    from edge_sr.selection import platform_int8

    monkeypatch.setattr("platform.machine", lambda: machine)
    k, d, why = platform_int8(_cpuinfo(tmp_path, machine, flags))
    assert (k, d) == (kind, default) and why
    assert platform_int8(tmp_path, providers="tensorrt,cuda,cpu")[:2] == ("int8.onnx", True)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A weights folder with the three compact x2 files (never opened: the cache or the platform decides)."""
    import edge_sr.backends as backends

    w = tmp_path / "weights"
    w.mkdir()
    files = {}
    for kind in ("onnx", "int8.onnx", "cpu-int8.onnx"):
        p = w / f"dcscn_compact_x2.{kind}"
        p.write_bytes(kind.encode())
        files[kind] = p
        (w / f"dcscn_normal_x2.{kind}").write_bytes(kind.encode())
    monkeypatch.setattr(backends, "WEIGHTS_DIR", w)
    return files


def _x86(tmp_path, monkeypatch, vnni=True):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    return _cpuinfo(tmp_path / "root", "x86_64", "avx2 fma avx512f" + (" avx512_vnni" if vnni else ""))


def test_explicit_precision(shipped, tmp_path, monkeypatch, cache_dir):
    from edge_sr.selection import choose_precision

    root = _x86(tmp_path, monkeypatch)
    assert choose_precision("compact", 2, "fp32", root=root)[0] == shipped["onnx"]
    assert choose_precision("compact", 2, "int8", root=root)[0] == shipped["cpu-int8.onnx"]
    shipped["cpu-int8.onnx"].unlink()
    with pytest.raises(EdgeSRError, match="no INT8 model dcscn_compact_x2.cpu-int8.onnx"):
        choose_precision("compact", 2, "int8", root=root)
    with pytest.raises(EdgeSRError, match="unknown precision"):
        choose_precision("compact", 2, "int4", root=root)


def test_auto_without_measurement_is_the_platform_default(shipped, tmp_path, monkeypatch, cache_dir):
    from edge_sr.selection import choose_precision

    w = shipped["onnx"].parent
    path, why = choose_precision("normal", 2, "auto", root=_x86(tmp_path, monkeypatch))
    assert path == w / "dcscn_normal_x2.cpu-int8.onnx" and "platform default" in why and "not measured" in why
    # compact x2 (a ReLU network since session 13) runs its CPU INT8 file; compact x3's (PReLU) measured slower than
    # FP32 on a VNNI x86 (docs/benchmarks): FP32 there until this device says otherwise
    path, why = choose_precision("compact", 2, "auto", root=_x86(tmp_path, monkeypatch))
    assert path == shipped["cpu-int8.onnx"] and "platform default" in why
    w3 = {k: w / f"dcscn_compact_x3.{k}" for k in ("onnx", "cpu-int8.onnx")}
    for p in w3.values():
        p.write_bytes(b"x")
    path, why = choose_precision("compact", 3, "auto", root=_x86(tmp_path, monkeypatch))
    assert path == w3["onnx"] and "platform default" in why and "compact x3's CPU INT8 file measured" in why
    for preset in ("compact", "normal"):
        path, why = choose_precision(preset, 2, "auto", root=_x86(tmp_path / "b", monkeypatch, vnni=False))
        assert path == w / f"dcscn_{preset}_x2.onnx" and "platform default" in why


def test_auto_follows_the_bench_cache(shipped, tmp_path, monkeypatch, cache_dir):
    from edge_sr.selection import choose_precision

    root = _x86(tmp_path, monkeypatch)
    # measured here: the symmetric file is the fastest, the CPU file slower than FP32
    _cache([_row(shipped["onnx"], 30, 4, psnr=34.0), _row(shipped["int8.onnx"], 45, 4, "int8", psnr=33.96),
            _row(shipped["cpu-int8.onnx"], 20, 4, "int8", psnr=33.99)])
    path, why = choose_precision("compact", 2, "auto", threads=0, root=root)
    assert path == shipped["int8.onnx"] and "1.50x" in why and "bench cache" in why
    # an INT8 file the cache says loses too much is never picked
    _cache([_row(shipped["int8.onnx"], 45, 4, "int8", psnr=33.5)])
    path, _ = choose_precision("compact", 2, "auto", threads=0, root=root)
    assert path == shipped["onnx"]
    # FP32 measured fastest: FP32, although the platform default would be INT8
    _cache([_row(shipped["int8.onnx"], 25, 4, "int8", psnr=33.99), _row(shipped["cpu-int8.onnx"], 28, 4, "int8")])
    path, why = choose_precision("compact", 2, "auto", threads=0, root=root)
    assert path == shipped["onnx"] and "no INT8 file measured at least 1.05x" in why
    # a tie within the bench's noise (1.03x here) is not worth INT8's loss: FP32 stays
    _cache([_row(shipped["onnx"], 30, 4, psnr=34.0), _row(shipped["int8.onnx"], 20, 4, "int8", psnr=33.99),
            _row(shipped["cpu-int8.onnx"], 30.9, 4, "int8", psnr=33.97)])
    path, why = choose_precision("compact", 2, "auto", threads=0, root=root)
    assert path == shipped["onnx"], why
    _cache([_row(shipped["cpu-int8.onnx"], 31.6, 4, "int8", psnr=33.97)])  # 1.053x: measurably faster
    path, why = choose_precision("compact", 2, "auto", threads=0, root=root)
    assert path == shipped["cpu-int8.onnx"] and "1.05x" in why
    # a file changed since it was measured: its rows no longer count (compact x2's platform default on a VNNI x86:
    # its CPU INT8 file)
    os.utime(shipped["onnx"], (1, 1))
    path, why = choose_precision("compact", 2, "auto", threads=0, root=root)
    assert path == shipped["cpu-int8.onnx"] and "platform default" in why


def test_resolve_model_with_precision(shipped, tmp_path, monkeypatch, cache_dir, caplog):
    import logging

    from edge_sr.backends import resolve_model

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    with caplog.at_level(logging.INFO):
        assert resolve_model("compact", 2, precision="fp32") == shipped["onnx"]
    assert "dcscn_compact_x2.onnx (FP32 asked for)" in caplog.text
    assert resolve_model("compact", 2) == shipped["onnx"]  # no precision: FP32 as before
    with pytest.raises(EdgeSRError, match="applies to presets"):
        resolve_model(str(shipped["onnx"]), 2, precision="int8")
    assert resolve_model(str(shipped["int8.onnx"]), 2, precision="int8") == shipped["int8.onnx"]


def test_cli_precision_is_logged(tmp_path, cache_dir):
    """upscale --precision int8 on a preset runs this platform's shipped INT8 file and says which."""
    import cv2

    from edge_sr.backends import shipped_path
    from edge_sr.selection import platform_int8

    kind = platform_int8()[0]
    if not shipped_path("compact", 2, kind).is_file():
        pytest.skip(f"no shipped dcscn_compact_x2.{kind}")
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_bgr(24, 32))
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", "compact", "--precision", "int8",
                env={"EDGE_SR_CACHE": str(cache_dir)})
    assert r.returncode == 0, r.stderr
    assert f"dcscn_compact_x2.{kind} (INT8 asked for" in r.stderr
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", "compact", "--precision", "int4")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_upscale_runs_an_int8_file_as_given(tmp_path, cache_dir):
    """A model file runs as it is: `upscale --model X.int8.onnx` with no --precision used to fail because the
    stills default (fp32) was applied to files too (found by the emulated-Pi check). An explicit --precision
    that contradicts the file is still one line."""
    import cv2

    from edge_sr.backends import shipped_path

    int8 = shipped_path("compact", 2, "int8.onnx")
    if not int8.is_file():
        pytest.skip("no shipped dcscn_compact_x2.int8.onnx")
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_bgr(24, 32))
    env = {"EDGE_SR_CACHE": str(cache_dir)}
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", str(int8), env=env)
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "o.png")).shape == (48, 64, 3)
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "p.png"), "--model", str(int8), "--precision", "fp32", env=env)
    assert r.returncode == 2 and "applies to presets" in r.stderr and "Traceback" not in r.stderr


def test_bench_report_names_the_same_platform_default(tmp_path, monkeypatch):
    """The bench report's per-model platform default is choose_precision's: compact x3 FP32 first on a VNNI x86."""
    from types import SimpleNamespace

    from edge_sr.bench import precision_summary

    root = _x86(tmp_path, monkeypatch)
    rows = [SimpleNamespace(kind="edge-sr", path=f"/w/dcscn_{p}_x{s}.{k}", lr_size=(320, 240), fps=10.0, psnr=None)
            for p in ("compact", "normal") for s in (2, 3) for k in ("onnx", "cpu-int8.onnx")]
    got = {(e["preset"], e["scale"]): e["platform_default_int8"] for e in precision_summary(rows, root)}
    assert got == {("compact", 2): True, ("compact", 3): False, ("normal", 2): True, ("normal", 3): True}
