"""edge-sr calibrate: calibration data, symmetric INT8 Q/DQ, report, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, textured_bgr

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("torch")
    from edge_sr.deploy.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("cal") / "m.onnx", residual=True, verify=False).path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("calib_images")
    for i in range(8):
        cv2.imwrite(str(d / f"{i}.png"), textured_bgr(40, 56, seed=i))
    return d


def test_calibration_set_is_runtime_luma(images):
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.color import y_from_bgr_u8

    s = load_calibration_set(images, crop=(32, 48), crops_per_image=3)
    assert s.shape == (24, 1, 32, 48) and s.dtype == np.float32
    full = y_from_bgr_u8(textured_bgr(40, 56, seed=0)) / 255.0
    oy, ox = (40 - 32) // 2, (56 - 48) // 2  # first crop: the centre
    np.testing.assert_allclose(s[0, 0], full[oy : oy + 32, ox : ox + 48], atol=1e-6)


def test_symmetric_int8_qdq(fp32, images, tmp_path):
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8
    from onnx import numpy_helper

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    res = quantize_int8(fp32, tmp_path / "m.int8.onnx", s, method="minmax")
    mp = onnx.load(str(res.path))
    inits = {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}
    zps = [inits[n.input[2]] for n in mp.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    first_conv = next(n for n in mp.graph.node if n.op_type == "Conv")
    assert res.excluded == [] or first_conv.name in res.excluded
    meta = {p.key: p.value for p in mp.metadata_props}
    assert meta["edge_sr.precision"] == "int8" and meta["edge_sr.output"] == "residual"
    assert '"tensorrt_compatible": true' in meta["edge_sr.int8"]


@pytest.fixture(scope="module")
def shipped_fp32():
    from conftest import REPO

    p = REPO / "edge_sr" / "weights" / "dcscn_compact_x2.onnx"
    if not p.is_file():
        pytest.skip("the compact FP32 ONNX is not shipped")
    return p


def test_int8_output_close_to_fp32(shipped_fp32, images, tmp_path):
    """Trained weights (random ones have no realistic ranges). Not a max-error bound: ONNX Runtime's INT8
    kernels differ by CPU (AVX-512 VNNI / AVX2 / NEON), and on AVX2 single pixels move by up to 0.06."""
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8
    from edge_sr.backends.onnxruntime import OnnxUpscaler, u8s8_saturates

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    y = s[3, 0]
    outs = {}
    for act in ("int8", "uint8"):
        res = quantize_int8(shipped_fp32, tmp_path / f"{act}.onnx", s, method="percentile", activations=act,
                            keep_float=["first_conv"])
        with OnnxUpscaler(res.path) as q:
            outs[act] = q.infer(y).copy()
            assert q.precision == "int8" and q.output_is_residual
            # ONNX Runtime 1.32 refuses x64quantprecision on the S8S8 fast graph ("Attempt to replace the existing
            # tensor"): such a file loads without it (open_session's second try) instead of being refused
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.add_session_config_entry("session.x64quantprecision", "1")
            try:
                ort.InferenceSession(str(res.path), so, providers=["CPUExecutionProvider"])
                takes_it = True
            except Exception:
                takes_it = False
            assert q.exact_x86 == (takes_it and u8s8_saturates()), act
            if act == "uint8":
                assert takes_it  # the .cpu-int8.onnx recipe: the fix applies
    with OnnxUpscaler(shipped_fp32) as f:
        ref = f.infer(y)
    for act, out in outs.items():
        err = np.abs(out - ref)
        assert 0 < err.mean() < 0.25 * np.abs(ref).mean(), act  # measured on AVX2: 0.15 (int8), 0.12 (uint8)
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.97, act  # measured: 0.990, 0.995


def test_keep_float_unknown_name(fp32, images, tmp_path):
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8
    from edge_sr.errors import EdgeSRError

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=1)
    with pytest.raises(EdgeSRError, match="not a node group"):
        quantize_int8(fp32, tmp_path / "q.onnx", s, keep_float=["nope"])
    assert not (tmp_path / "q.onnx").exists()


def test_cli_calibrate_report(fp32, images, tmp_path):
    out = tmp_path / "m.int8.onnx"
    r = run_cli("calibrate", "--onnx", str(fp32), "--images", str(images), "-o", str(out), "--crop", "32x32",
                "--val", str(images), "--bench", "24x16", "--runs", "3")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "PSNR on" in r.stdout and "fp32/int8" in r.stdout and "TensorRT-compatible" in r.stdout
    r = run_cli("eval", "--data", str(images), "--model", str(out), "--no-ssim")
    assert r.returncode == 0, r.stderr


def _one_line_fail(r, words):
    assert r.returncode != 0 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_calibrate_bad_input(fp32, images, tmp_path):
    import cv2

    out = tmp_path / "q.onnx"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage")
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(fp32.read_bytes()[:200])
    empty = tmp_path / "empty"
    empty.mkdir()
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        cv2.imwrite(str(few / f"{i}.png"), textured_bgr(40, 40, seed=i))
    base = ["--val", "none", "--bench", "none", "--crop", "32x32", "-o", str(out)]
    _one_line_fail(run_cli("calibrate", "--onnx", str(junk), "--images", str(images), *base), "not a valid ONNX")
    _one_line_fail(run_cli("calibrate", "--onnx", str(trunc), "--images", str(images), *base), "not a valid ONNX")
    _one_line_fail(run_cli("calibrate", "--onnx", str(fp32), "--images", str(empty), *base), "has no images")
    _one_line_fail(run_cli("calibrate", "--onnx", str(fp32), "--images", str(tmp_path / "nope"), *base), "not found")
    _one_line_fail(run_cli("calibrate", "--onnx", str(fp32), "--images", str(few), "--batch", "8", *base),
                   "at least 8 image(s)")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.mkdir(mode=0)
        _one_line_fail(run_cli("calibrate", "--onnx", str(fp32), "--images", str(locked), *base), "not readable")
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


def test_set5_int8_within_bar(shipped_fp32, set5, tmp_path):
    """The shipped bar on Set5: the trained compact model calibrated the default way (percentile, first conv
    float) on Set5 crops loses less than 0.15 dB by the protocol (measured: -0.11 dB on an AVX2 CPU)."""
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8
    from edge_sr.calibration.report import protocol_psnr

    s = load_calibration_set(set5, crop=(64, 64), crops_per_image=4)
    q = quantize_int8(shipped_fp32, tmp_path / "q.onnx", s, method="percentile", keep_float=["first_conv"]).path
    ps = protocol_psnr({"fp32": shipped_fp32, "int8": q}, set5)
    from conftest import REPO

    report = json.loads((REPO / "docs" / "quality" / "compact_x2.json").read_text())["results"]
    assert ps["fp32"] == pytest.approx(report["edge_sr/weights/dcscn_compact_x2.onnx"]["set5"]["psnr"], abs=0.01)
    assert -0.15 < ps["int8"] - ps["fp32"] < 0.05


# -- what the report and the metadata claim, checked against independent measurements -------------
def _graph_facts(path):
    """Read from the graph itself, not from its metadata: for each Conv (in graph order), whether its weight
    is dequantized from int8 and, if so, whether per output channel (scale of one value per output channel
    along axis 0) or per tensor; and whether its data input comes from a DequantizeLinear."""
    from onnx import numpy_helper

    mp = onnx.load(str(path))
    inits = {i.name: i for i in mp.graph.initializer}
    producer = {o: n for n in mp.graph.node for o in n.output}
    facts = []
    for n in mp.graph.node:
        if n.op_type != "Conv":
            continue
        src = producer.get(n.input[1])
        data_dq = getattr(producer.get(n.input[0]), "op_type", None) == "DequantizeLinear"
        if src is None or src.op_type != "DequantizeLinear":
            assert n.input[1] in inits and numpy_helper.to_array(inits[n.input[1]]).dtype == np.float32
            facts.append({"name": n.name, "weight": "float", "data_dq": data_dq})
            continue
        q = numpy_helper.to_array(inits[src.input[0]])
        scale = numpy_helper.to_array(inits[src.input[1]])
        axis = next((a.i for a in src.attribute if a.name == "axis"), 1)  # ONNX's default axis is 1
        per_channel = scale.size == q.shape[0] > 1 and scale.ndim == 1 and axis == 0
        facts.append({"name": n.name, "weight": "int8 per-channel" if per_channel else
                      ("int8 per-tensor" if scale.size == 1 else "int8 other"), "dtype": q.dtype, "data_dq": data_dq})
    return facts


def _meta_int8(path):
    import json

    mp = onnx.load(str(path))
    return json.loads({p.key: p.value for p in mp.metadata_props}["edge_sr.int8"])


def _check_claims_match_graph(path):
    facts, meta = _graph_facts(path), _meta_int8(path)
    floats = [f["name"] for f in facts if f["weight"] == "float"]
    assert floats == meta["kept_float"], (floats, meta["kept_float"])
    for f in facts:
        if f["weight"] != "float":
            assert f["dtype"] == np.int8
            assert f["weight"] == ("int8 per-channel" if meta["per_channel"] else "int8 per-tensor"), f
            assert f["data_dq"], f  # a quantized conv reads quantized activations
    assert not facts[0]["data_dq"] or facts[0]["weight"] != "float"  # the first conv, kept float, reads the float input
    return facts


@pytest.mark.parametrize("keep", [["first_conv"], ["first_conv", "last_conv"], []])
def test_keep_float_and_per_channel_are_in_the_graph(fp32, images, tmp_path, keep):
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=1)
    res = quantize_int8(fp32, tmp_path / "q.onnx", s, method="minmax", keep_float=keep)
    facts = _check_claims_match_graph(res.path)
    floats = [f["name"] for f in facts if f["weight"] == "float"]
    convs = [f["name"] for f in facts]
    want = ([convs[0]] if "first_conv" in keep else []) + ([convs[-1]] if "last_conv" in keep else [])
    assert floats == want
    assert all(f["weight"] == "int8 per-channel" for f in facts if f["name"] not in want)


def test_per_tensor_is_said_and_done(fp32, images, tmp_path):
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=1)
    res = quantize_int8(fp32, tmp_path / "q.onnx", s, method="minmax", per_channel=False)
    facts = _check_claims_match_graph(res.path)
    assert _meta_int8(res.path)["per_channel"] is False
    assert all(f["weight"] == "int8 per-tensor" for f in facts if f["weight"] != "float")


@pytest.mark.parametrize("name", [f"dcscn_{p}_x{s}.int8.onnx" for p in ("compact", "normal") for s in (2, 3, 4)])
def test_shipped_int8_metadata_tells_the_truth(name):
    """What each shipped TensorRT INT8 file says it kept float is what its graph keeps float: the first conv, and
    the last one where the file was made with KEEP_FLOAT=first_conv,last_conv (scripts/ship-weights.sh); every
    other conv int8 per-channel."""
    from conftest import REPO

    path = REPO / "edge_sr" / "weights" / name
    if not path.is_file():
        pytest.skip(f"{name} not shipped")
    facts = _check_claims_match_graph(path)
    inner = facts[1:-1]
    assert facts[0]["weight"] == "float" and all(f["weight"] == "int8 per-channel" for f in inner)
    assert facts[-1]["weight"] in ("float", "int8 per-channel")
    assert len(inner) >= 8


def _report_line(stdout):
    import re

    m = re.search(r"fp32 (-?[\d.]+) dB, int8 (-?[\d.]+) dB, delta ([-+][\d.]+) dB \((within|OUTSIDE) the 0.15 dB bar\)",
                  stdout)
    assert m, stdout
    return float(m[1]), float(m[2]), float(m[3]), m[4]


def _eval_psnr(model, folder):
    """`edge-sr eval` of one model file on one folder, read from its JSON report."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = f"{d}/r.json"
        r = run_cli("eval", "--data", str(folder), "--model", str(model), "--no-ssim", "--json", out)
        assert r.returncode == 0, r.stderr
        res = json.load(open(out))["results"]
    (label,) = [k for k in res if k != "bicubic"]
    (only,) = res[label].values()
    return only["psnr"]


@pytest.mark.slow
def test_report_rows_equal_eval_and_the_verdict_follows_the_sign(images, tmp_path):
    """The calibrate report's fp32 row is `eval` of the FP32 file, its int8 row `eval` of the INT8 file, and
    the verdict says "within" exactly when int8 - fp32 >= -0.15 dB: once with a good calibration (measured
    -0.08 dB), once with a calibration on near-black images (ranges far too small: INT8 clips, -1.8 dB).
    The shipped compact FP32 model: trained weights, so that clipping costs quality."""
    import cv2

    from conftest import REPO

    fp32 = REPO / "edge_sr" / "weights" / "dcscn_compact_x2.onnx"

    dark = tmp_path / "dark"
    dark.mkdir()
    for i in range(8):
        cv2.imwrite(str(dark / f"{i}.png"), (textured_bgr(40, 56, seed=i) // 64).astype(np.uint8))
    verdicts = set()
    for name, calib in (("good", images), ("clipped", dark)):
        out = tmp_path / f"{name}.int8.onnx"
        r = run_cli("calibrate", "--onnx", str(fp32), "--images", str(calib), "-o", str(out), "--crop", "32x32",
                    "--method", "minmax", "--val", str(images), "--bench", "none")
        assert r.returncode == 0, r.stderr
        f, i, d, verdict = _report_line(r.stdout)
        assert f == pytest.approx(_eval_psnr(fp32, images), abs=0.0015)
        assert i == pytest.approx(_eval_psnr(out, images), abs=0.0015)
        assert d == pytest.approx(i - f, abs=0.0025)
        assert verdict == ("within" if i - f >= -0.15 else "OUTSIDE"), (name, f, i, verdict)
        verdicts.add(verdict)
    assert verdicts == {"within", "OUTSIDE"}, "the test needs one calibration on each side of the bar"


def _reference_mse(path, ref_path, samples):
    """Mean squared output difference of ``path`` against ``ref_path``, both run by ONNX Runtime with no graph
    optimization (each Q/DQ pair computed as the ONNX spec writes it): an arithmetic independent of ours."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    a = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(ref_path), so, providers=["CPUExecutionProvider"])
    tot = n = 0
    for x in samples:
        x = x[None]
        d = a.run(None, {a.get_inputs()[0].name: x})[0].astype(np.float64) - b.run(None, {b.get_inputs()[0].name: x})[0]
        tot, n = tot + float((d ** 2).sum()), n + d.size
    return tot / n


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_range_refinement_lowers_the_files_own_output_error(tiny_checkpoint, images, tmp_path, target):
    """calibration.refine: the written file (new Q and DQ scales; on the CPU file int32 biases re-quantized to the
    new input scales) must compute, in ONNX Runtime, the error the search measured in its fake-quantized graph,
    and less error than the file it started from."""
    pytest.importorskip("torch")
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import CPU_INT8, quantize_int8
    from edge_sr.calibration.refine import META_KEY, refine_file
    from edge_sr.deploy.export import export_onnx

    fast = target == "cpu"
    fp = export_onnx(tiny_checkpoint, tmp_path / "m.onnx", residual=True, fast=fast, verify=False).path
    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    kw = dict(activations=CPU_INT8["activations"], op_types=CPU_INT8["op_types"]) if fast else {}
    q = quantize_int8(fp, tmp_path / "m.q.onnx", s, method="minmax", keep_float=["first_conv"], **kw).path
    out = tmp_path / "m.refined.onnx"
    # one short pass on a few crops keeps the test quick; agreement with the integer kernels: the shipping check
    res, _ = refine_file(fp, q, out, s[:6], passes=((0.5, 0.8, 1.25),))
    assert res.mse_after < res.mse_before and any(f != 1.0 for f in res.factors.values())
    before, after = _reference_mse(q, fp, s[:6]), _reference_mse(out, fp, s[:6])
    assert before == pytest.approx(res.mse_before, rel=0.05)
    assert after == pytest.approx(res.mse_after, rel=0.05)
    assert after < before
    mp = onnx.load(str(out))
    assert META_KEY in {p.key for p in mp.metadata_props}
    assert sum(n.op_type == "QuantizeLinear" for n in mp.graph.node) == sum(
        n.op_type == "QuantizeLinear" for n in onnx.load(str(q)).graph.node)
    if fast:  # the CPU file has int32 biases: they must follow the new scales
        from onnx import numpy_helper

        assert any(numpy_helper.to_array(i).dtype == np.int32 for i in mp.graph.initializer)


def test_cli_calibrate_refine(fp32, images, tmp_path):
    out = tmp_path / "m.int8.onnx"
    r = run_cli("calibrate", "--onnx", str(fp32), "--images", str(images), "-o", str(out), "--crop", "16x16",
                "--crops-per-image", "1", "--refine", "--val", "none", "--bench", "none")
    assert r.returncode == 0, r.stderr
    import re

    assert re.search(r"refined \d+ activation ranges: output MSE .* -> ", r.stdout), r.stdout
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "edge_sr.range_refine" in meta and meta["edge_sr.precision"] == "int8"
    assert not list(tmp_path.glob(".m.int8.onnx*"))  # written in place, atomically


def test_tensorrt_file_quantizes_conv_inputs_only(fp32, images, tmp_path):
    """The TensorRT file (calibrate's default target) follows TensorRT's Q/DQ placement: every quantized conv
    reads DequantizeLinear outputs (data and weights), no conv output is quantized, zero points are int8 0;
    with fewer roundings its output is closer to FP32 than the every-op placement on the same calibration."""
    from onnx import numpy_helper

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import quantize_int8

    out = tmp_path / "m.int8.onnx"
    r = run_cli("calibrate", "--onnx", str(fp32), "--images", str(images), "-o", str(out), "--crop", "32x32",
                "--method", "minmax", "--val", "none", "--bench", "none")
    assert r.returncode == 0, r.stderr
    assert "inputs only" in r.stdout
    mp = onnx.load(str(out))
    producer = {o: n for n in mp.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}
    convs = [n for n in mp.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if producer.get(c.input[1]) is not None
                 and producer[c.input[1]].op_type == "DequantizeLinear"]
    assert len(quantized) == len(convs) - 2  # first and last conv float (the default --keep-float)
    for c in quantized:
        assert producer[c.input[0]].op_type == "DequantizeLinear", c.name
    conv_outputs = {o for c in convs for o in c.output}
    assert not [n.name for n in mp.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in conv_outputs]
    zps = [inits[n.input[2]] for n in mp.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    meta = {p.key: p.value for p in mp.metadata_props}
    assert '"float_outputs": ["Conv"]' in meta["edge_sr.int8"] and '"tensorrt_compatible": true' in meta["edge_sr.int8"]

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2, min_images=8)
    every_op = quantize_int8(fp32, tmp_path / "all.int8.onnx", s, method="minmax",
                             keep_float=["first_conv", "last_conv"]).path
    n_q = [sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(p)).graph.node) for p in (out, every_op)]
    assert n_q[0] < n_q[1]
    assert _reference_mse(out, fp32, s) < _reference_mse(every_op, fp32, s)


def _session_ops(path, workdir):
    """The op types of the graph ONNX Runtime actually runs for ``path`` (its optimized model, CPU provider)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(Path(workdir) / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(Path(workdir) / "opt.onnx")).graph.node]


def test_tied_concat_copies_and_keeps_the_arithmetic(shipped_fp32, images, tmp_path):
    """tie_concat_inputs: every quantized Concat input takes the Concat's scale and zero point (ONNX Runtime's
    QLinearConcat then copies), no integer conv is lost to a stale int32 bias scale (ONNX Runtime fuses
    QLinearConv only where bias scale = input scale x weight scale), and the kernels still compute the file's
    own Q/DQ arithmetic (ONNX's float reference, int8_arithmetic="reference")."""
    import onnx
    from onnx import numpy_helper as nh

    from edge_sr.backends.onnxruntime import OnnxUpscaler
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import CPU_INT8, quantize_int8, tie_concat_file

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    res = quantize_int8(shipped_fp32, tmp_path / "u.onnx", s, method="percentile", activations="uint8",
                        keep_float=list(CPU_INT8["keep_float"]), op_types=list(CPU_INT8["op_types"]))
    n = tie_concat_file(res.path, tmp_path / "t.onnx")
    assert n >= 2  # compact: the feature Concat's inputs and the reconstruction Concat's

    before, after = _session_ops(res.path, tmp_path), _session_ops(tmp_path / "t.onnx", tmp_path)
    assert after.count("QLinearConv") == before.count("QLinearConv") > 0
    assert after.count("QLinearConcat") == before.count("QLinearConcat") > 0

    m = onnx.load(str(tmp_path / "t.onnx"))
    init = {t.name: nh.to_array(t) for t in m.graph.initializer}
    prod = {o: nd for nd in m.graph.node for o in nd.output}
    users = {}
    for nd in m.graph.node:
        for i in nd.input:
            users.setdefault(i, []).append(nd)
    for c in [nd for nd in m.graph.node if nd.op_type == "Concat"]:
        (q,) = [u for u in users[c.output[0]] if u.op_type == "QuantizeLinear"]
        for i in c.input:
            dq = prod[i]
            assert init[dq.input[1]] == init[q.input[1]] and init[dq.input[2]] == init[q.input[2]]
            assert init[prod[dq.input[0]].input[1]] == init[q.input[1]]  # the producing Q too
    assert json.loads({p.key: p.value for p in m.metadata_props}["edge_sr.int8"])["concat_inputs_tied"] == n

    y = s[3, 0]
    with OnnxUpscaler(tmp_path / "t.onnx") as k, OnnxUpscaler(tmp_path / "t.onnx", int8_arithmetic="reference") as r, \
            OnnxUpscaler(res.path) as u:
        got, ref, untied = k.infer(y), r.infer(y), u.infer(y)
    with OnnxUpscaler(shipped_fp32) as f:
        want = f.infer(y)
    assert np.array_equal(got, ref)  # the kernels compute this file's arithmetic exactly (int32 sums, one rounding)
    e_tied, e_untied = np.abs(got - want).mean(), np.abs(untied - want).mean()
    # against FP32 (crops of synthetic images, 8 x 32x32 calibration: measured 1.8x the untied error; on the shipped
    # files, calibrated on photos, the tie moved Set5 by +0.016 / +0.006 dB: docs/benchmarks/README.md)
    assert e_tied < 3 * e_untied


def test_relu_network_cpu_file_is_integer_end_to_end(images, tmp_path):
    """The ReLU network's CPU INT8 file (CPU_INT8: Relu among the quantized op types, channels padded to 8):
    ONNX Runtime's quantizer drops every Relu after a quantized conv (the conv's output takes the Relu's range,
    zero point 0), so the session runs QLinearConv to QLinearConv with no float step between them; the padded
    layers change nothing (same output as the unpadded file within a level); the placement without Relu leaves
    a Dequantize -> Relu -> Quantize detour per layer."""
    import onnxruntime as ort

    pytest.importorskip("torch")
    from conftest import relu_compact_checkpoint

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import CPU_INT8, quantize_int8
    from edge_sr.deploy.export import export_onnx

    ckpt = relu_compact_checkpoint(tmp_path / "relu_compact_x2.safetensors", seed=7)
    fp = export_onnx(ckpt, tmp_path / "relu.onnx", residual=True, fast=True, verify=False).path
    out = tmp_path / "relu.cpu-int8.onnx"
    r = run_cli("calibrate", "--onnx", str(fp), "--target", "cpu", "--images", str(images), "-o", str(out),
                "--crop", "32x32", "--method", "minmax", "--val", "none", "--bench", "none")
    assert r.returncode == 0, r.stderr
    mp = onnx.load(str(out))
    assert [n.op_type for n in mp.graph.node].count("Relu") == 1  # only the float first conv's
    meta = json.loads({p.key: p.value for p in mp.metadata_props}["edge_sr.int8"])
    assert meta["pad_channels"] == 8 and meta["padded_layers"] >= 4  # 26, 22, 18, 14, 11 filters -> x8

    ops = _session_ops(out, tmp_path)
    assert ops.count("QLinearConv") == 8 and "Relu" not in ops and ops.count("QuantizeLinear") <= 4, ops
    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    old = quantize_int8(fp, tmp_path / "old.onnx", s, method="minmax", activations="uint8",
                        keep_float=list(CPU_INT8["keep_float"]), op_types=["Conv", "Concat"]).path
    assert _session_ops(old, tmp_path).count("QuantizeLinear") >= 10  # a float Relu detour per layer

    unpadded = quantize_int8(fp, tmp_path / "u.onnx", s, method="minmax", activations="uint8",
                             keep_float=list(CPU_INT8["keep_float"]), op_types=CPU_INT8["op_types"]).path
    padded = quantize_int8(fp, tmp_path / "p.onnx", s, method="minmax", activations="uint8",
                           keep_float=list(CPU_INT8["keep_float"]), op_types=CPU_INT8["op_types"], pad_channels=8).path
    y = s[:1]

    def run(path):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: y})[0]

    a, b, f = run(unpadded), run(padded), run(fp)
    step = float(np.abs(f).max()) / 100
    assert np.abs(a - b).max() <= step  # the zero channels change nothing beyond kernel rounding
    assert np.abs(b - f).mean() < 0.1 * float(np.abs(f).mean()) + 1e-4  # and the file still computes the network


def test_refine_and_fake_quant_read_a_padded_cpu_file(images, tmp_path):
    """A CPU file whose layers were padded before quantizing (CPU_INT8's pad_channels) has wider weights than the
    float export it came from: the fake-quantized graph (refinement, QAT) pads the float model the same way
    (train.qat.padded_like), computes what ONNX Runtime computes on the file, and the refined file runs."""
    import onnxruntime as ort

    pytest.importorskip("torch")
    from conftest import relu_compact_checkpoint

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import CPU_INT8, quantize_int8
    from edge_sr.calibration.refine import refine_file
    from edge_sr.deploy.export import export_onnx
    from edge_sr.train.qat import FakeQuantGraph, agreement, output_step

    ckpt = relu_compact_checkpoint(tmp_path / "relu_compact_x2.safetensors", seed=11)
    fp = export_onnx(ckpt, tmp_path / "relu.onnx", residual=True, fast=True, verify=False).path
    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    q = quantize_int8(fp, tmp_path / "p.onnx", s, method="minmax", activations="uint8",
                      keep_float=list(CPU_INT8["keep_float"]), op_types=CPU_INT8["op_types"], pad_channels=8).path
    fq = FakeQuantGraph(onnx.load(str(q)), onnx.load(str(fp)))
    agree = agreement(q, fq.module(), s[0, 0], output_step(fq) or 1 / 255)
    assert agree["over_1_step"] <= 0.01 and agree["mean_steps"] <= 0.1, agree  # train.qat's bars
    out = tmp_path / "r.onnx"
    res, agree = refine_file(fp, q, out, s[:6], passes=((0.5, 0.8, 1.25),), check_image=s[0, 0])
    assert res.mse_after <= res.mse_before
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {sess.get_inputs()[0].name: s[:1]})[0].shape == (1, 1, 64, 64)


def test_padding_a_prelu_cpu_file_after_quantizing_is_exact(images, tmp_path):
    """calibration.quantize.pad_int8_file on a PReLU network's CPU file made unpadded (as every PReLU file shipped
    before session 14; its activations are the fast graph's Mul + Max between Q/DQ): zero integer filters to a
    multiple of 8 channels, ONNX Runtime's output the same bit for bit, every integer conv still fused (the padded
    int32 bias scales keep input scale x weight scale), the metadata records the layers so that the fake-quantized
    graph pads its float model alike and agrees with ONNX Runtime; padding again changes nothing; calibrating
    with pad_channels pads the PReLU layers before quantizing too; a TensorRT file is refused."""
    import onnxruntime as ort

    from conftest import REPO

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import CPU_INT8, pad_int8_file, quantize_int8
    from edge_sr.train.qat import FakeQuantGraph, agreement, output_step

    fp = REPO / "edge_sr" / "weights" / "dcscn_compact_x3.onnx"
    if not fp.is_file():
        pytest.skip("the compact x3 FP32 ONNX is not shipped")
    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    kw = dict(method="minmax", activations="uint8", keep_float=list(CPU_INT8["keep_float"]), op_types=CPU_INT8["op_types"])
    u = quantize_int8(fp, tmp_path / "u.onnx", s, **kw).path
    p = tmp_path / "p.onnx"
    n = pad_int8_file(u, p)
    assert n >= 4  # compact: 26 22 18 14 11 filters -> x8
    meta = json.loads({m.key: m.value for m in onnx.load(str(p)).metadata_props}["edge_sr.int8"])
    assert meta["pad_channels"] == 8 and meta["padded_layers"] == n
    I = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer}
    widths = [v.shape[0] for k, v in I.items() if k.endswith("weight_quantized")]
    assert sum(w % 8 != 0 for w in widths) <= 2, widths  # the last conv (9 = 3x3 sub-pixels) and the merged A1/B1

    def run(path):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: s[i : i + 1]})[0] for i in range(3)])

    np.testing.assert_array_equal(run(p), run(u))
    ops_u, ops_p = _session_ops(u, tmp_path), _session_ops(p, tmp_path)
    assert ops_p.count("QLinearConv") == ops_u.count("QLinearConv") >= 7, ops_p
    assert pad_int8_file(p, tmp_path / "p2.onnx") == 0
    fq = FakeQuantGraph(onnx.load(str(p)), onnx.load(str(fp)))
    agree = agreement(p, fq.module(), s[0, 0], output_step(fq) or 1 / 255)
    assert agree["over_1_step"] <= 0.01 and agree["mean_steps"] <= 0.1, agree  # train.qat's bars

    q = quantize_int8(fp, tmp_path / "q.onnx", s, pad_channels=8, **kw).path
    assert json.loads({m.key: m.value for m in onnx.load(str(q)).metadata_props}["edge_sr.int8"])["padded_layers"] >= 4
    t = quantize_int8(fp, tmp_path / "t.onnx", s, method="minmax", activations="int8").path
    from edge_sr.errors import EdgeSRError

    with pytest.raises(EdgeSRError, match="TensorRT"):
        pad_int8_file(t, tmp_path / "t2.onnx")
