"""Quantization-aware fine-tuning: the PyTorch fake-quantized graph is the Q/DQ file ONNX Runtime runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli, textured_bgr
from edge_sr.train.qat import AGREE_MEAN_STEPS  # noqa: E402

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("qat_images")
    for i in range(8):
        cv2.imwrite(str(d / f"{i}.png"), textured_bgr(72, 88, seed=i))
    return d


@pytest.fixture(scope="module")
def ptq(images, tmp_path_factory):
    """(float export, calibrated Q/DQ file) for both targets, made as train.qat makes them, from the shipped
    compact x2 checkpoint: trained weights (random ones saturate layers, and a rounding tie decided
    differently by two float summation orders then spreads through the whole image)."""
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.backends import shipped_path
    from edge_sr.train.qat import prepare_target

    ckpt = shipped_path("compact", 2, "safetensors")
    if not ckpt.is_file():
        pytest.skip("no shipped compact x2 checkpoint")
    samples = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    out = {}
    for target in ("tensorrt", "cpu"):
        d = tmp_path_factory.mktemp(f"ptq_{target}")
        out[target] = prepare_target(ckpt, target, d, samples)  # the default: first and last conv float
        d = tmp_path_factory.mktemp(f"ptq_{target}_q_out")  # the last conv quantized: a quantized output
        out[target + ":first_conv"] = prepare_target(ckpt, target, d, samples, keep_float=["first_conv"])
    return out


def _y():
    from edge_sr.color import y_from_bgr_u8

    return (y_from_bgr_u8(textured_bgr(40, 52, seed=9)) / 255.0).astype(np.float32)


def _ref_level(target):
    """The ONNX Runtime session that is the reference for ``target``'s file. The CPU file: ONNX Runtime as it loads
    it (it fuses the integer convs and rounds their biases to int32 there). The TensorRT file, which ONNX Runtime runs
    in float: the graph as written, unoptimized; even the basic optimizations move its float conv outputs by ~3e-5,
    which flips a few roundings that the ReLU compact x2's wide ranges carry on (0.07 output steps on average, against
    0.0004 unoptimized; with the PReLU network both were ~0.001)."""
    return "ORT_DISABLE_ALL" if target.startswith("tensorrt") else "ORT_ENABLE_BASIC"


def _ort(path, x, level="ORT_ENABLE_BASIC"):
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x[None, None]})[0]


@pytest.mark.parametrize("target", ["tensorrt", "cpu", "tensorrt:first_conv", "cpu:first_conv"])
def test_fake_quant_graph_is_the_qdq_file(ptq, target):
    """ONNX Runtime evaluating the Q/DQ nodes (and quantizing float biases to int32 where it fuses a conv with
    a quantized output, as it does when it loads the graph) is the reference: the PyTorch graph must give the
    same output, within one quantization step at a few pixels where float summation order decides a rounding."""
    from edge_sr.train.qat import FakeQuantGraph, check_step, output_step

    fp32, qdq = ptq[target]
    fq = FakeQuantGraph(onnx.load(str(qdq)), onnx.load(str(fp32)))
    m = fq.module()
    y = _y()
    with torch.no_grad():
        got = m(torch.from_numpy(y)[None, None]).numpy()
    ref = _ort(qdq, y, _ref_level(target))
    step = check_step(fq)  # the output's Q step, or one 8-bit level where the last conv stays float
    # the default keeps the output float; with the last conv quantized the CPU file quantizes the output, the
    # TensorRT file (conv outputs float: TENSORRT_INT8) still does not
    assert (output_step(fq) is None) == (target != "cpu:first_conv")
    assert step > 0
    d = np.abs(got - ref) / step
    assert d.max() <= 2.01 and (d > 0.5).mean() < 0.01, (d.max(), (d > 0.5).mean())
    # and on average far closer: a bias rounded where ONNX Runtime keeps it float (a conv whose output is not
    # quantized, as in the TensorRT file) measured 0.08 steps on a Set5 image; agreeing graphs ~0.001
    assert d.mean() < 0.01, d.mean()
    # without fake quantization it is the float model
    m.quant = False
    with torch.no_grad():
        flt = m(torch.from_numpy(y)[None, None]).numpy()
    np.testing.assert_allclose(flt, _ort(fp32, y), atol=1e-5)
    assert np.abs(flt - ref).max() > 2 * step  # and quantization visibly changes it


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_unchanged_weights_write_back_the_same_file(ptq, target, tmp_path):
    """Writing the untrained weights back must reproduce ONNX Runtime's own quantization of them:
    same int8 weights and per-channel scales (max|w|/127), so the same output."""
    from onnx import numpy_helper

    from edge_sr.train.qat import FakeQuantGraph

    fp32, qdq = ptq[target]
    src = onnx.load(str(qdq))
    fq = FakeQuantGraph(src, onnx.load(str(fp32)))
    out = fq.to_qdq(fq.module().trained())
    a = {t.name: numpy_helper.to_array(t) for t in src.graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert a.keys() == b.keys()
    weights = [n for n in a if n.endswith("_quantized") and a[n].dtype == np.int8]
    assert weights
    for n in weights:
        assert np.abs(a[n].astype(int) - b[n].astype(int)).max() <= 1, n  # a tie may round the other way
        assert (a[n] != b[n]).mean() < 0.01, n
        np.testing.assert_allclose(a[n.replace("_quantized", "_scale")], b[n.replace("_quantized", "_scale")], rtol=1e-6)
    p = tmp_path / "rt.onnx"
    onnx.save(out, str(p))
    y = _y()
    np.testing.assert_allclose(_ort(p, y), _ort(qdq, y), atol=1e-6)


def test_gradients_reach_every_conv(ptq):
    from edge_sr.train.qat import FakeQuantGraph

    fp32, qdq = ptq["cpu"]
    fq = FakeQuantGraph(onnx.load(str(qdq)), onnx.load(str(fp32)))
    m = fq.module()
    m(torch.rand(2, 1, 16, 16)).abs().mean().backward()
    grads = {k: p.grad for k, p in zip(fq.params, m.p.values())}
    assert len(grads) >= 2 * 9  # weights and biases of the convs (the last conv has no bias)
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads.values())


@pytest.mark.slow
def test_qat_run_writes_checked_files(images, tmp_path):
    """A short run end to end through the CLI, from the shipped compact checkpoint (trained weights: see the
    ptq fixture): both files written and checked against the fake-quantized PyTorch graph, the report complete."""
    from edge_sr.backends import shipped_path

    ckpt = shipped_path("compact", 2, "safetensors")
    if not ckpt.is_file():
        pytest.skip("no shipped compact x2 checkpoint")
    out = tmp_path / "qat"
    r = run_cli("train", "--qat", "--init", str(ckpt), "--out", str(out), "--data", str(images),
                "--val", str(images), "--max-steps", "10", "--batch", "4", "--patch", "16", "--lr", "1e-5",
                "--threads", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "qat.json").read_text())
    for target, kind in (("tensorrt", "int8.onnx"), ("cpu", "cpu-int8.onnx")):
        t = rep["targets"][target]
        f = out / f"dcscn_compact_x2.{kind}"
        assert f.is_file() and str(f) == t["file"]
        assert t["agreement"]["over_1_step"] <= 0.01 and t["agreement"]["mean_steps"] <= AGREE_MEAN_STEPS
        assert {"val_psnr_fp32", "val_psnr_ptq", "val_psnr_qat"} <= set(t)
        meta = {p.key: p.value for p in onnx.load(str(f)).metadata_props}
        assert json.loads(meta["edge_sr.qat"])["target"] == target and meta["edge_sr.precision"] == "int8"
        assert json.loads(meta["edge_sr.int8"])["tensorrt_compatible"] is (target == "tensorrt")
    assert "ONNX Runtime vs fake-quantized PyTorch" in r.stdout


def test_qat_without_init_is_one_line(tmp_path):
    r = run_cli("train", "--qat", "--out", str(tmp_path / "o"), "--data", str(tmp_path))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--init" in r.stderr.strip().splitlines()[-1]


def test_calibrate_target_cpu_recipe(tiny_checkpoint, images, tmp_path):
    """calibrate --target cpu: uint8 activations, only Conv, Concat and Relu quantized (the PReLU's Mul/Max of the fast
    graph stay float), not TensorRT-compatible; --target cpu with --activations int8 is refused in one line."""
    from edge_sr.deploy.export import export_onnx

    fast = export_onnx(tiny_checkpoint, tmp_path / "fast.onnx", residual=True, fast=True, verify=False).path
    out = tmp_path / "m.cpu-int8.onnx"
    r = run_cli("calibrate", "--onnx", str(fast), "--target", "cpu", "--images", str(images), "-o", str(out),
                "--batch", "4", "--crop", "32x32", "--val", "none", "--bench", "none")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(out))
    q_inputs = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    # the PReLU's a*x (a Mul read only by the Max) stays float: ONNX Runtime would quantize it with all op types
    ax = {n.output[0] for n in m.graph.node if n.op_type == "Mul" and consumers.get(n.output[0]) == ["Max"]}
    assert ax and not (ax & q_inputs)
    assert any(n.op_type == "Conv" and n.input[1].endswith("DequantizeLinear_Output") for n in m.graph.node)
    act_zp = {n.input[2] for n in m.graph.node if n.op_type == "QuantizeLinear"}  # activations (weights are stored int8)
    zps = [t for t in m.graph.initializer if t.name in act_zp]
    assert zps and all(t.data_type == onnx.TensorProto.UINT8 for t in zps)
    meta = {p.key: p.value for p in m.metadata_props}
    info = json.loads(meta["edge_sr.int8"])
    assert info["activations"] == "uint8" and info["op_types"] == ["Conv", "Concat", "Relu"] and not info["tensorrt_compatible"]
    # and each Concat's inputs carry its own scale (tie_concat_inputs; the compact graph has two Concats)
    assert info["concat_inputs_tied"] >= 2 and f"tied {info['concat_inputs_tied']} Concat inputs" in r.stdout
    r = run_cli("calibrate", "--onnx", str(fast), "--target", "cpu", "--activations", "int8", "--images", str(images),
                "-o", str(tmp_path / "x.onnx"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--target cpu" in r.stderr


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_learned_ranges_are_written_as_trained(ptq, target, tmp_path):
    """--learn-ranges: with its activation scales and zero points moved, the written file is still the
    fake-quantized graph (ONNX Runtime the reference), the ranges really changed, and the TensorRT file's
    activations stay symmetric (zero point 0: TensorRT takes no other)."""
    from onnx import numpy_helper

    from edge_sr.train.qat import FakeQuantGraph, check_step

    fp32, qdq = ptq[target]
    fq = FakeQuantGraph(onnx.load(str(qdq)), onnx.load(str(fp32)))
    m = fq.module()
    scales, zps = m.learn_ranges()
    assert len(scales) >= 5 and (len(zps) == len(scales)) == (target == "cpu") and (target == "cpu" or not zps)
    m(torch.rand(2, 1, 16, 16)).abs().mean().backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in scales)  # LSQ gradients reach every scale, and the zero
    assert sum(float(p.grad.abs().sum()) > 0 for p in zps) >= len(zps) // 2  # points where values clip (LSQ)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in scales:
            p.add_(torch.empty(1).uniform_(-0.2, 0.2, generator=g))
        for p in zps:  # upwards: a ReLU network's zero points sit at 0, the bottom of uint8
            p.add_(torch.empty(1).uniform_(1.5, 4, generator=g))
    path = tmp_path / "learned.onnx"
    onnx.save(fq.to_qdq(m.trained(), m.learned_ranges()), str(path))
    y = _y()
    with torch.no_grad():
        got = m(torch.from_numpy(y)[None, None]).numpy()
    ref = _ort(path, y, _ref_level(target))
    step = check_step(fq)
    d = np.abs(got - ref) / step
    assert d.max() <= 2.01 and (d > 0.5).mean() < 0.01 and d.mean() < 0.01, (d.max(), (d > 0.5).mean(), d.mean())
    assert np.abs(ref - _ort(qdq, y)).max() > 2 * step  # new ranges, new output
    new = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    old = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(qdq)).graph.initializer}
    act = [(n.input[1], n.input[2]) for n in onnx.load(str(qdq)).graph.node if n.op_type == "QuantizeLinear"]
    assert all(not np.array_equal(new[sc], old[sc]) for sc, _ in act)
    moved = sum(int(new[zp].item()) != int(old[zp].item()) for _, zp in act)
    if target == "tensorrt":
        assert moved == 0 and all(int(new[zp].item()) == 0 for _, zp in act)
    else:
        assert moved > len(act) // 2


def test_qat_from_refuses_a_file_of_another_checkpoint(ptq, tiny_checkpoint, images, tmp_path):
    r = run_cli("train", "--qat", "cpu", "--init", str(tiny_checkpoint), "--qat-from", str(ptq["cpu"][1]),
                "--out", str(tmp_path / "o"), "--data", str(images), "--max-steps", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "another checkpoint" in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_qat_from_a_file_with_learned_ranges(ptq, images, tmp_path):
    """--qat-from FILE --learn-ranges --qat-loss distill through the CLI: FILE's target only, checked, recorded; FILE
    with its Concat inputs tied: the learned ranges move them apart, and the metadata counts what is still tied."""
    from edge_sr.backends import shipped_path
    from edge_sr.calibration.quantize import count_tied_concat_inputs, tie_concat_file

    start = tmp_path / ptq["cpu"][1].name
    n_tied = tie_concat_file(ptq["cpu"][1], start)
    assert n_tied >= 2 and count_tied_concat_inputs(onnx.load(str(start))) == n_tied
    assert count_tied_concat_inputs(onnx.load(str(ptq["cpu"][1]))) < n_tied  # calibrated ranges differ per input
    out = tmp_path / "qat"
    r = run_cli("train", "--qat", "--init", str(shipped_path("compact", 2, "safetensors")), "--out", str(out),
                "--qat-from", str(start), "--learn-ranges", "--qat-loss", "distill", "--data", str(images),
                "--val", str(images), "--max-steps", "6", "--batch", "4", "--patch", "16", "--threads", "2",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "qat.json").read_text())
    assert list(rep["targets"]) == ["cpu"] and rep["learn_ranges"] and rep["qat_loss"] == "distill"
    t = rep["targets"]["cpu"]
    assert t["agreement"]["over_1_step"] <= 0.01 and t["agreement"]["mean_steps"] <= AGREE_MEAN_STEPS
    assert t["ranges_changed"]["scale_ratio_min_max"] != [1.0, 1.0]
    meta = json.loads({p.key: p.value for p in onnx.load(t["file"]).metadata_props}["edge_sr.qat"])
    assert meta["learn_ranges"] and meta["start"] == ptq["cpu"][1].name
    assert not (out / "dcscn_compact_x2.int8.onnx").exists()
    written = onnx.load(t["file"])
    info = json.loads({p.key: p.value for p in written.metadata_props}["edge_sr.int8"])
    assert info["concat_inputs_tied"] == count_tied_concat_inputs(written)
