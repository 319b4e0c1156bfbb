"""edge-sr bench: measurement rows, Pareto front, device peak estimate, peers, CLI outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, textured_bgr

from edge_sr.errors import EdgeSRError

PEERS = Path(os.environ.get("EDGE_SR_PEERS", Path(__file__).resolve().parent.parent.parent / "shared" / "peers"))


@pytest.fixture(scope="module")
def onnx_model(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edge_sr.deploy.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("bench") / "tiny_compact_x2.onnx", residual=True).path


def test_pareto_front():
    from edge_sr.bench import pareto_front

    pts = [(10, 30.0), (100, 28.0), (50, 29.0), (40, 28.5), (100, 27.0), (5, 30.0)]
    assert pareto_front(pts) == [True, True, True, False, False, False]
    assert pareto_front([(1, 1)]) == [True]
    assert pareto_front([(2, 2), (2, 2)]) == [True, True]  # ties dominate nothing


def test_flops_per_cycle_from_flags():
    from edge_sr.bench import flops_per_cycle

    assert flops_per_cycle({"flags": "sse2 avx avx2 fma"}, "x86_64")[0] == 32
    assert flops_per_cycle({"flags": "avx2 fma avx512f", "vendor_id": "AuthenticAMD"}, "x86_64")[0] == 32  # Zen 4
    assert flops_per_cycle({"flags": "avx2 fma avx512f avx512_vp2intersect", "vendor_id": "AuthenticAMD"}, "x86_64")[0] == 64
    assert flops_per_cycle({"Features": "fp asimd evtstrm"}, "aarch64")[0] == 16
    assert flops_per_cycle({}, "riscv64")[0] is None


def test_device_info_from_a_fake_root(tmp_path):
    from edge_sr.bench import device_info

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\n"
                                           "cpu MHz\t\t: 2000.000\nflags\t\t: sse2 avx avx2 fma\n\n")
    d = device_info(1, root=tmp_path)
    assert d["cpu"] == "Test CPU" and d["threads"] == 1
    assert d["peak_gflops_estimate"] == pytest.approx(1 * 32 * 2.0)
    assert "estimate" in d["peak_note"]
    (tmp_path / "proc/cpuinfo").write_text("")
    assert device_info(1, root=tmp_path)["peak_gflops_estimate"] is None


def test_parse_size():
    from edge_sr.bench import parse_size

    assert parse_size("320x240") == (320, 240) and parse_size(" 64X48 ") == (64, 48)
    for bad in ("320", "x240", "4x4", "axb"):
        with pytest.raises(EdgeSRError, match="frame size"):
            parse_size(bad)


def test_measure_rows(onnx_model):
    from edge_sr.bench import Candidate, measure, model_candidate

    rows = measure(model_candidate(onnx_model, 2), [(40, 24)], threads=1, warmup=1, min_runs=3, seconds=0,
                   peak_gflops=100.0)
    (r,) = rows
    assert r.lr_size == (40, 24) and r.runs >= 3 and r.backend == "onnxruntime" and r.precision == "fp32"
    assert r.fps == pytest.approx(1e3 / r.median_ms) and r.p95_ms >= r.median_ms
    assert r.gflop_per_frame == pytest.approx(2 * 25830 * 40 * 24 / 1e9)
    assert r.gflops == pytest.approx(r.gflop_per_frame / r.median_ms * 1e3)
    assert r.model_median_ms is not None and r.peak_fraction == pytest.approx(r.gflops / 100.0)
    (b,) = measure(Candidate("bicubic", "bicubic", 2), [(40, 24)], warmup=1, min_runs=3, seconds=0)
    assert b.gflops is None and b.model_median_ms is None and b.fps > 0


def test_peer_candidates(tmp_path):
    from edge_sr.bench import peer_candidate

    with pytest.raises(EdgeSRError, match="unknown peer"):
        peer_candidate(f"srgan={tmp_path / 'x.pb'}", 2)
    with pytest.raises(EdgeSRError, match="not found"):
        peer_candidate(f"fsrcnn={tmp_path / 'FSRCNN_x2.pb'}", 2)
    (tmp_path / "FSRCNN_x3.pb").write_bytes(b"")
    with pytest.raises(EdgeSRError, match="is for x3"):
        peer_candidate(str(tmp_path / "FSRCNN_x3.pb"), 2)


@pytest.mark.skipif(not (PEERS / "FSRCNN_x2.pb").is_file(), reason="peer models absent ($EDGE_SR_PEERS)")
def test_real_peer_upscales():
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "dnn_superres"):
        pytest.skip("opencv-contrib (dnn_superres) not installed")
    from edge_sr.bench import _Runner, peer_candidate, peers_from_dir

    c = peer_candidate(f"fsrcnn={PEERS / 'FSRCNN_x2.pb'}", 2)
    out = _Runner(c, 1, None, {}).upscale(textured_bgr(20, 28))
    assert out.shape == (40, 56, 3) and out.dtype == np.uint8
    assert {p.peer_algo for p in peers_from_dir(PEERS, 2)} >= {"fsrcnn", "espcn"}


def test_cli_writes_table_json_plot_and_cache(onnx_model, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "rep"
    env = {"EDGE_SR_CACHE": str(tmp_path / "cache"), "EDGE_SR_PEERS": ""}  # no default peers here
    r = run_cli("bench", "--model", str(onnx_model), "--size", "40x24", "--size", "24x16", "--seconds", "0",
                "--runs", "2", "--warmup", "1", "--threads", "1", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "GFLOP/s" in r.stdout and "bicubic (OpenCV)" in r.stdout and "tiny_compact_x2.onnx" in r.stdout
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["format"] == "edge-sr-bench/1" and rep["command"][:2] == ["edge-sr", "bench"]
    assert len(rep["results"]) == 4 and {tuple(x["lr_size"]) for x in rep["results"]} == {(40, 24), (24, 16)}
    assert "tiny_compact_x2.onnx" in rep["ratios"]["40x24"]
    assert (tmp_path / "rep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cached = list((tmp_path / "cache").glob("bench-*.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())["results"]) == 4


def test_cli_quality_marks_the_front(onnx_model, tmp_path):
    pytest.importorskip("matplotlib")
    from edge_sr.imageio import write_image

    q = tmp_path / "set"
    q.mkdir()
    for i in range(2):
        write_image(q / f"im{i}.png", textured_bgr(36, 44, i))
    r = run_cli("bench", "--model", str(onnx_model), "--size", "24x16", "--seconds", "0", "--runs", "2",
                "--threads", "1", "--quality", str(q), "-o", str(tmp_path / "rep"),
                env={"EDGE_SR_CACHE": str(tmp_path / "cache"), "EDGE_SR_PEERS": ""})
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "rep.json").read_text())["results"]
    assert all(isinstance(x["psnr"], float) for x in rows)
    assert any(x["pareto"] for x in rows)
    assert max(rows, key=lambda x: x["fps"])["pareto"]  # the fastest is always on the front
    assert "PSNR" in r.stdout


def test_cli_default_peers_from_env(onnx_model, tmp_path):
    if not (PEERS / "ESPCN_x2.pb").is_file():
        pytest.skip("peer models absent ($EDGE_SR_PEERS)")
    r = run_cli("bench", "--model", str(onnx_model), "--size", "24x16", "--seconds", "0", "--runs", "1", "--warmup", "0",
                "--no-plot", "-o", str(tmp_path / "rep"),
                env={"EDGE_SR_CACHE": str(tmp_path / "cache"), "EDGE_SR_PEERS": str(PEERS)})
    assert r.returncode == 0, r.stderr
    kinds = [x["kind"] for x in json.loads((tmp_path / "rep.json").read_text())["results"]]
    assert kinds.count("peer") >= 2 and "bicubic" in kinds


def test_cli_bad_input_is_one_line(tmp_path):
    r = run_cli("bench", "--size", "big", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "frame size" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("bench", "--model", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_repeated_rounds_take_the_median():
    from edge_sr.bench import Row, combine_rounds

    def row(ms):
        return Row(name="m", kind="edge-sr", backend="onnxruntime", precision="fp32", scale=2, lr_size=(8, 8),
                   path=None, runs=5, median_ms=ms, p95_ms=ms + 1, fps=1e3 / ms, model_median_ms=ms / 2,
                   model_p95_ms=ms, gflop_per_frame=1.0)

    (r,) = combine_rounds([[row(10.0)], [row(30.0)], [row(12.0)]], peak_gflops=200.0)
    assert r.median_ms == 12.0 and r.median_ms_rounds == [10.0, 30.0, 12.0] and r.runs == 15
    assert r.fps == pytest.approx(1e3 / 12) and r.gflops == pytest.approx(1.0 / 12e-3)
    assert r.model_median_ms == 6.0 and r.peak_fraction == pytest.approx(r.gflops / 200)


def test_pareto_treats_equal_quality_as_equal():
    from edge_sr.bench import pareto_front

    # an exact rewrite (same PSNR up to float noise) that runs faster pushes the original off the front
    assert pareto_front([(16.0, 33.5800004), (31.0, 33.58)]) == [False, True]


def test_every_precision_of_the_shipped_models(onnx_model, tmp_path, monkeypatch):
    """Without --model, bench measures the FP32, the symmetric INT8 and the CPU INT8 file of each preset,
    and its report relates each INT8 file to its FP32 one (the report that settles a platform's INT8)."""
    import shutil

    import edge_sr.backends as backends
    from edge_sr.bench import default_candidates, run_bench

    w = tmp_path / "weights"
    w.mkdir()
    for kind in ("onnx", "int8.onnx", "cpu-int8.onnx"):  # the same graph under the three names: speed only
        shutil.copy(onnx_model, w / f"dcscn_compact_x2.{kind}")
    (w / "dcscn_normal_x2.safetensors").write_bytes(b"x")  # a checkpoint beside shipped ONNX of another preset
    monkeypatch.setattr(backends, "WEIGHTS_DIR", w)
    names = [c.name for c in default_candidates(2)]
    assert names[:3] == ["dcscn_compact_x2.onnx", "dcscn_compact_x2.int8.onnx", "dcscn_compact_x2.cpu-int8.onnx"]
    assert "dcscn_normal_x2.safetensors" in names  # no ONNX shipped for normal: its checkpoint
    assert [c.name for c in default_candidates(2, ("int8",))] == names[1:3]
    assert [c.name for c in default_candidates(2, ("fp32",))] == [names[0], "dcscn_normal_x2.safetensors"]
    rep = run_bench(default_candidates(2, ("fp32", "int8"))[:3], [(24, 16)], threads=1, warmup=1, min_runs=2, seconds=0)
    (e,) = rep["precision"]
    assert e["preset"] == "compact" and e["lr_size"] == [24, 16] and e["platform_int8_file"] in ("int8.onnx", "cpu-int8.onnx")
    fps = {r["name"]: r["fps"] for r in rep["results"]}
    assert e["int8.onnx_vs_fp32"] == pytest.approx(fps["dcscn_compact_x2.int8.onnx"] / fps["dcscn_compact_x2.onnx"])
    assert e["cpu-int8.onnx_vs_fp32"] == pytest.approx(fps["dcscn_compact_x2.cpu-int8.onnx"] / fps["dcscn_compact_x2.onnx"])
