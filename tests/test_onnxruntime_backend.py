"""OnnxUpscaler: metadata, both export variants, IOBinding, providers, foreign and bad models."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli, textured_bgr

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("torch")
    from edge_sr.deploy.export import export_onnx

    d = tmp_path_factory.mktemp("ortb")
    return {k: export_onnx(tiny_checkpoint, d / f"m_{k}.onnx", residual=k == "residual", verify=False).path
            for k in ("y", "residual")}


def test_variants_give_the_same_frame(models, tiny_checkpoint):
    from edge_sr.backends import open_upscaler

    frame = textured_bgr(30, 41)
    with open_upscaler(models["residual"]) as r, open_upscaler(models["y"]) as y, open_upscaler(tiny_checkpoint) as t:
        assert r.output_is_residual and not y.output_is_residual
        assert r.scale == y.scale == 2 and r.config.preset == "compact" and r.precision == "fp32"
        ref = t.upscale(frame)
        for up in (r, y):
            diff = np.abs(up.upscale(frame).astype(int) - ref.astype(int))
            assert diff.max() <= 1


def test_prepared_frame_shape_matches_plain_run(models):
    from edge_sr.backends.onnxruntime import OnnxUpscaler

    y = np.random.default_rng(0).random((24, 32), dtype=np.float32)
    with OnnxUpscaler(models["residual"]) as plain, OnnxUpscaler(models["residual"], frame_shape=(24, 32)) as bound:
        a = plain.infer(y).copy()
        b = bound.infer(y)
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert bound.infer(y[:10, :12]).shape == (20, 24)  # other shapes still run


def test_providers(models):
    from edge_sr.backends.onnxruntime import OnnxUpscaler, choose_providers
    from edge_sr.errors import EdgeSRError

    assert choose_providers(None, ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    assert choose_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(EdgeSRError, match="not available"):
        OnnxUpscaler(models["residual"], providers=["CUDAExecutionProvider"])


def _foreign(path, in_shape, out_shape, n_inputs=1, scale=2):
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, in_shape) for i in range(n_inputs)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    scales = helper.make_tensor("s", TensorProto.FLOAT, [4], [1, 1, scale, scale])
    node = helper.make_node("Resize", ["x0", "", "s"], ["y"], mode="nearest")
    g = helper.make_graph([node], "g", ins, [out], initializer=[scales])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_foreign_model_accepted_with_probed_scale(tmp_path):
    from edge_sr.backends.onnxruntime import OnnxUpscaler

    p = _foreign(tmp_path / "f.onnx", [1, 1, "h", "w"], [1, 1, "H", "W"], scale=3)
    with OnnxUpscaler(p) as up:
        assert up.scale == 3 and not up.output_is_residual and up.config is None
        assert up.upscale(textured_bgr(10, 12)).shape == (30, 36, 3)


def test_bad_models_refused_by_cli(tmp_path):
    img = tmp_path / "in.png"
    import cv2

    cv2.imwrite(str(img), textured_bgr(12, 12))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"hello, not onnx")
    good = _foreign(tmp_path / "g.onnx", [1, 1, "h", "w"], [1, 1, "H", "W"])
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good.read_bytes()[:-20])
    rgb = _foreign(tmp_path / "rgb.onnx", [1, 3, "h", "w"], [1, 3, "H", "W"])
    two = _foreign(tmp_path / "two.onnx", [1, 1, "h", "w"], [1, 1, "H", "W"], n_inputs=2)
    for model, words in ((junk, "not a loadable ONNX"), (trunc, "not a loadable ONNX"),
                         (rgb, "expected one float32 input"), (two, "expected one float32 input")):
        out = tmp_path / "out.png"
        r = run_cli("upscale", str(img), "-o", str(out), "--model", str(model))
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()


def test_cli_upscale_with_onnx(models, tmp_path):
    import cv2

    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_bgr(20, 24))
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "out.png"), "--model", str(models["residual"]))
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "out.png")).shape == (40, 48, 3)


def test_physical_cores_positive():
    from edge_sr.backends.onnxruntime import physical_cores

    assert 1 <= physical_cores() <= (__import__("os").cpu_count() or 1)


def _saturating_qdq(path):
    """A Q/DQ conv whose u8 x s8 products pair up past int16 (255 x 127 x 2 > 32767): x86's VPMADDUBSW
    (ONNX Runtime's u8s8 kernels on CPUs without VNNI) saturates there; int32 accumulation does not."""
    from onnx import TensorProto
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    cin, cout = 16, 4
    wq = rng.integers(100, 128, size=(cout, cin, 3, 3)).astype(np.int8)
    inits = [nh.from_array(wq, "wq"), nh.from_array(np.full(cout, 0.01, np.float32), "ws"),
             nh.from_array(np.zeros(cout, np.int8), "wz"), nh.from_array(np.float32(1 / 255), "xs"),
             nh.from_array(np.uint8(0), "xz"), nh.from_array(np.float32(2.0), "os"), nh.from_array(np.uint8(0), "oz"),
             nh.from_array(np.ones((cin, 1, 1, 1), np.float32), "fan")]
    nodes = [h.make_node("Conv", ["x", "fan"], ["xr"]),  # the luma to cin channels, in float
             h.make_node("QuantizeLinear", ["xr", "xs", "xz"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             h.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             h.make_node("QuantizeLinear", ["y", "os", "oz"], ["yq"]),
             h.make_node("DequantizeLinear", ["yq", "os", "oz"], ["yd"]),
             h.make_node("DepthToSpace", ["yd"], ["out"], blocksize=2, mode="CRD")]
    g = h.make_graph(nodes, "saturating", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
                     [h.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, "H", "W"])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    # the exact result at an interior pixel of an all-white input: sum of 255 * w over the 3x3 window, per
    # output channel, then the output's quantization (scale 2, uint8)
    acc = 255 * wq.astype(np.int64).sum(axis=(1, 2, 3)) * (1 / 255) * 0.01
    return np.clip(np.round(acc / 2.0), 0, 255) * 2.0


def test_int8_arithmetic_is_exact(tmp_path):
    """A Q/DQ file gives the exact (int32) result both ways: `int8_arithmetic="reference"` (the ONNX spec's
    float Q/DQ) and the default integer kernels, which set ONNX Runtime's `session.x64quantprecision` so that
    an x86 CPU without VNNI does not saturate; a plain ONNX Runtime session on such a CPU does (this CI machine)."""
    from edge_sr.backends.onnxruntime import OnnxUpscaler
    from edge_sr.bench import cpu_record

    want = _saturating_qdq(tmp_path / "sat.onnx")
    x = np.ones((8, 8), np.float32)
    with OnnxUpscaler(tmp_path / "sat.onnx", threads=1, int8_arithmetic="reference") as ref, \
            OnnxUpscaler(tmp_path / "sat.onnx", threads=1) as kern:
        assert ref._sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        assert kern._sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # DepthToSpace (CRD, 2x2): output channel c lands at (2i + c // 2, 2j + c % 2)
        np.testing.assert_array_equal(ref.infer(x)[8:10, 8:10].ravel(), want)
        np.testing.assert_array_equal(kern.infer(x)[8:10, 8:10].ravel(), want)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    plain = ort.InferenceSession(str(tmp_path / "sat.onnx"), so, providers=["CPUExecutionProvider"])
    got = plain.run(None, {"x": x[None, None]})[0][0, 0, 8:10, 8:10].ravel()
    isa = cpu_record().get("int8_isa")
    if isa == "avx2":  # no VNNI: what the session option prevents
        assert (got < want).all(), (got, want)
    elif isa in ("avx512_vnni", "avx_vnni"):  # VNNI sums in int32: exact without the option (so it is not set)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(Exception, match="int8 arithmetic"):
        OnnxUpscaler(tmp_path / "sat.onnx", int8_arithmetic="exact")


@pytest.mark.parametrize("machine, isa, saturates", [
    ("x86_64", "avx2", True), ("x86_64", "avx512bw", True), ("x86_64", "other", True), ("AMD64", "avx2", True),
    ("x86_64", "avx512_vnni", False), ("x86_64", "avx_vnni", False), ("aarch64", "neon", False),
    ("armv7l", "other", False)])
def test_u8s8_saturates(machine, isa, saturates):
    """x86 without VNNI (or with unreadable flags) saturates; VNNI and ARM do not."""
    from edge_sr.backends.onnxruntime import u8s8_saturates

    assert u8s8_saturates(isa, machine) is saturates


@pytest.mark.parametrize("saturates", [True, False])
def test_x86_fix_only_where_the_kernels_saturate(tmp_path, monkeypatch, saturates):
    """A u8s8 Q/DQ file's session carries `session.x64quantprecision` exactly where u8s8 saturates: on a VNNI CPU
    the option only costs speed (ONNX Runtime applies it on every AVX2 x86, VNNI or not)."""
    import edge_sr.backends.onnxruntime as be

    monkeypatch.setattr(be, "u8s8_saturates", lambda *a, **k: saturates)
    _saturating_qdq(tmp_path / "sat.onnx")
    with be.OnnxUpscaler(tmp_path / "sat.onnx", threads=1) as q:
        assert q.exact_x86 is saturates
        so = q._sess.get_session_options()
        if saturates:
            assert so.get_session_config_entry(be.X64_EXACT_KEY) == "1"
        else:
            with pytest.raises(Exception, match="does not have configuration"):
                so.get_session_config_entry(be.X64_EXACT_KEY)
