"""edge-sr calibrate: calibration data, symmetric INT8 Q/DQ, report, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import run_cli, textured_bgr

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("torch")
    from deploy.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("cal") / "m.onnx", residual=True, verify=False).path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("calib_images")
    for i in range(8):
        cv2.imwrite(str(d / f"{i}.png"), textured_bgr(40, 56, seed=i))
    return d


def test_calibration_set_is_runtime_luma(images):
    from calibration.data import load_calibration_set
    from edge_sr.color import y_from_bgr_u8

    s = load_calibration_set(images, crop=(32, 48), crops_per_image=3)
    assert s.shape == (24, 1, 32, 48) and s.dtype == np.float32
    full = y_from_bgr_u8(textured_bgr(40, 56, seed=0)) / 255.0
    oy, ox = (40 - 32) // 2, (56 - 48) // 2  # first crop: the centre
    np.testing.assert_allclose(s[0, 0], full[oy : oy + 32, ox : ox + 48], atol=1e-6)


def test_symmetric_int8_qdq(fp32, images, tmp_path):
    from calibration.data import load_calibration_set
    from calibration.quantize import quantize_int8
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


def test_int8_output_close_to_fp32(fp32, images, tmp_path):
    from calibration.data import load_calibration_set
    from calibration.quantize import quantize_int8
    from edge_sr.backends.onnxruntime import OnnxUpscaler

    s = load_calibration_set(images, crop=(32, 32), crops_per_image=2)
    y = s[3, 0]
    outs = {}
    for act in ("int8", "uint8"):
        res = quantize_int8(fp32, tmp_path / f"{act}.onnx", s, method="percentile", activations=act,
                            keep_float=["first_conv"])
        with OnnxUpscaler(res.path) as q:
            outs[act] = q.infer(y).copy()
            assert q.precision == "int8" and q.output_is_residual
    with OnnxUpscaler(fp32) as f:
        ref = f.infer(y)
    for act, out in outs.items():
        err = np.abs(out - ref).max()
        assert 0 < err < 0.05 * max(np.abs(ref).max(), 1e-3) + 0.01, act


def test_keep_float_unknown_name(fp32, images, tmp_path):
    from calibration.data import load_calibration_set
    from calibration.quantize import quantize_int8
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


def test_set5_int8_within_bar(fp32, set5, tmp_path, images):
    """The shipped bar on Set5, here with random test weights: INT8 stays near FP32 through the protocol."""
    from calibration.data import load_calibration_set
    from calibration.quantize import quantize_int8
    from calibration.report import protocol_psnr

    s = load_calibration_set(set5, crop=(64, 64), crops_per_image=4)
    q = quantize_int8(fp32, tmp_path / "q.onnx", s).path
    ps = protocol_psnr({"fp32": fp32, "int8": q}, set5)
    assert abs(ps["int8"] - ps["fp32"]) < 0.5
