"""TensorRT: our logic around it with a fake tensorrt (flags per generation, profiles, sidecar,
refusals, parser errors, buffer wiring), plus `gpu` tests that build real engines."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import run_cli
from fake_tensorrt import FakeCuda, make_fake_trt

from edge_sr.errors import DeviceError, EdgeSRError


@pytest.fixture(scope="module")
def onnx_models(tiny_checkpoint, tmp_path_factory):
    from edge_sr.deploy.export import export_onnx

    d = tmp_path_factory.mktemp("trt_onnx")
    res = export_onnx(tiny_checkpoint, d / "m_res.onnx", residual=True, verify=False)
    full = export_onnx(tiny_checkpoint, d / "m_y.onnx", residual=False, verify=False)
    return res.path, full.path


@pytest.fixture
def qdq_model(onnx_models, tmp_path, textured):
    from edge_sr.calibration.quantize import quantize_int8

    samples = np.stack([textured[:32, :32], textured[32:64, 32:64]])[:, None]
    return quantize_int8(onnx_models[0], tmp_path / "m.int8.onnx", samples).path


@pytest.fixture
def textured():
    from conftest import textured_bgr

    from edge_sr.color import y_from_bgr_u8

    return (y_from_bgr_u8(textured_bgr(64, 80)) / 255.0).astype(np.float32)


@pytest.fixture
def fake(monkeypatch):
    """Install a fake tensorrt of a given version and a fake CUDA; returns (trt, cuda)."""
    import edge_sr.deploy.tensorrt_build as tb
    import edge_sr.backends.tensorrt as bt

    def install(version="10.3.0", **kw):
        trt = make_fake_trt(version, **kw)
        cuda = FakeCuda()
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(bt, "cuda_api", lambda: cuda)
        monkeypatch.setattr(tb, "cuda_api", lambda: cuda)
        return trt, cuda

    return install


def _build(onnx, out, **kw):
    from edge_sr.deploy.tensorrt_build import build_engine

    kw.setdefault("shape", (48, 64))
    return build_engine(onnx, out, **kw)


@pytest.mark.parametrize("version,expect", [
    ("8.2.1", dict(fp16_flag=True, calibrator=True, memory_pool=False, strongly_typed=False)),
    ("10.3.0", dict(fp16_flag=True, calibrator=True, memory_pool=True, strongly_typed=True)),
    ("11.0.0", dict(fp16_flag=False, calibrator=False, memory_pool=True, strongly_typed=True)),
])
def test_features_per_generation(version, expect):
    from edge_sr.deploy.tensorrt_build import features

    f = features(make_fake_trt(version))
    assert {k: f[k] for k in expect} == expect


def test_profile_shapes_checked():
    from edge_sr.deploy.tensorrt_build import parse_hw, profile_shapes

    assert profile_shapes((48, 64)) == ((48, 64), (48, 64), (48, 64))
    assert profile_shapes((48, 64), (16, 16), (96, 128)) == ((16, 16), (48, 64), (96, 128))
    with pytest.raises(EdgeSRError, match="min <= shape <= max"):
        profile_shapes((48, 64), (50, 16), None)
    assert parse_hw("480x640") == (480, 640)
    with pytest.raises(EdgeSRError, match="HEIGHTxWIDTH"):
        parse_hw("480by640")


@pytest.mark.parametrize("version", ["8.2.1", "10.3.0"])
def test_fp16_build_uses_builder_flag_and_writes_sidecar(fake, onnx_models, tmp_path, version):
    trt, _ = fake(version)
    out = tmp_path / "m.engine"
    res = _build(onnx_models[0], out, precision="fp16", min_shape=(16, 16), max_shape=(96, 128), workspace_mib=64)
    rec = trt.calls[-1]
    assert "FP16" in rec["flags"]
    assert bool(rec["network_flags"] & 1) == version.startswith("8")  # EXPLICIT_BATCH only below TensorRT 10
    assert rec["profiles"] == [{"y_lr": [[1, 1, 16, 16], [1, 1, 48, 64], [1, 1, 96, 128]]}]
    assert rec["workspace"] == (["max_workspace_size", 64 << 20] if version.startswith("8.2") else ["pool", 64 << 20])
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    assert meta["tensorrt"] == version and meta["gpu"] == "Fake Orin" and meta["compute_capability"] == "8.7"
    assert meta["precision"] == "fp16" and meta["output"] == "residual" and meta["scale"] == 2
    assert meta["min_shape"] == [16, 16] and meta["max_shape"] == [96, 128]
    from edge_sr.checkpoint import file_sha256

    assert meta["source_onnx_sha256"] == file_sha256(onnx_models[0])
    assert res.timing_cache.is_file()


def test_timing_cache_reused(fake, onnx_models, tmp_path):
    trt, _ = fake("10.3.0")
    res = _build(onnx_models[0], tmp_path / "a.engine", precision="fp32")
    # named by TensorRT version and GPU, shared by the engines of one device
    assert res.timing_cache == tmp_path / "edge-sr-timing-trt10.3.0-fake-orin-sm87.cache"
    assert trt.calls[-1]["timing_cache_in"] == 0
    res = _build(onnx_models[0], tmp_path / "b.engine", precision="fp32")
    assert trt.calls[-1]["timing_cache_in"] > 0
    assert any("reused timing cache" in n for n in res.notes)
    assert "TF32" not in trt.calls[-1]["flags"] and "FP16" not in trt.calls[-1]["flags"]


def test_fp16_on_trt11_builds_a_float16_model_strongly_typed(fake, onnx_models, tmp_path):
    pytest.importorskip("onnxconverter_common")
    trt, _ = fake("11.0.0")
    res = _build(onnx_models[0], tmp_path / "m.engine", precision="fp16")
    rec = trt.calls[-1]
    assert rec["flags"] == [] and rec["network_flags"] & 2  # STRONGLY_TYPED, no FP16 flag
    assert any("float16" in n for n in res.notes)


def test_int8_from_qdq_on_every_generation(fake, qdq_model, tmp_path):
    for version in ("8.2.1", "10.3.0", "11.0.0"):
        for fast_fp16 in (True, False):
            trt, _ = fake(version, fast_fp16=fast_fp16)
            res = _build(qdq_model, tmp_path / f"q{version}{fast_fp16}.engine", precision="int8")
            rec = trt.calls[-1]
            assert rec["calibrator"] is None
            assert ("INT8" in rec["flags"]) == (not version.startswith("11"))
            # FP16 too where the GPU has it (the float first conv), as trtexec --int8 --fp16; 11 is strongly typed
            assert ("FP16" in rec["flags"]) == (fast_fp16 and not version.startswith("11"))
            assert res.meta["int8"] == "qdq"


def test_int8_without_qdq_refused_on_trt11(fake, onnx_models, tmp_path):
    fake("11.0.0")
    with pytest.raises(EdgeSRError, match="edge-sr calibrate"):
        _build(onnx_models[0], tmp_path / "m.engine", precision="int8", calib_images=tmp_path)
    assert not (tmp_path / "m.engine").exists()


def test_implicit_int8_calibrator_writes_cache_and_rebuilds_from_it(fake, onnx_models, tmp_path):
    import cv2
    from conftest import textured_bgr

    imgs = tmp_path / "calib"
    imgs.mkdir()
    for i in range(8):
        cv2.imwrite(str(imgs / f"{i}.png"), textured_bgr(60, 80, seed=i))
    trt, cuda = fake("10.3.0")
    cache = tmp_path / "calib.cache"
    _build(onnx_models[0], tmp_path / "a.engine", precision="int8", shape=(48, 64), calib_images=imgs, calib_cache=cache)
    assert not cuda.live and cuda.closed  # the calibrator's device and pinned buffers are freed after the build
    rec = trt.calls[-1]
    assert "INT8" in rec["flags"] and rec["calibrator"] == {"from_cache": False, "batches": 16}
    assert rec["calibration_profile"] and cache.is_file()
    _build(onnx_models[0], tmp_path / "b.engine", precision="int8", shape=(48, 64), calib_cache=cache)
    assert trt.calls[-1]["calibrator"]["from_cache"] is True
    with pytest.raises(EdgeSRError, match="--calib-images"):
        _build(onnx_models[0], tmp_path / "c.engine", precision="int8")


@pytest.mark.parametrize("precision,kw", [("fp16", dict(fast_fp16=False)), ("int8", dict(fast_int8=False))])
def test_precision_the_gpu_lacks_is_refused(fake, qdq_model, tmp_path, precision, kw):
    fake("10.3.0", **kw)
    with pytest.raises(DeviceError, match="never downgrades"):
        _build(qdq_model, tmp_path / "m.engine", precision=precision)
    assert not list(tmp_path.glob("m.engine*"))


def test_parser_errors_are_all_listed(fake, onnx_models, tmp_path):
    fake("8.2.1")  # no cubic Resize before 8.5: the full-contract export fails to parse
    with pytest.raises(EdgeSRError) as exc:
        _build(onnx_models[1], tmp_path / "m.engine", precision="fp16")
    msg = str(exc.value)
    assert "1 error(s)" in msg and "cubic" in msg and "\n" not in msg
    assert not (tmp_path / "m.engine").exists()


def test_metadata_reader_without_onnx_package(onnx_models):
    from edge_sr.deploy.tensorrt_build import _metadata_props_from_bytes

    import onnx

    props = _metadata_props_from_bytes(onnx_models[0].read_bytes())
    assert props == {p.key: p.value for p in onnx.load(str(onnx_models[0])).metadata_props}


@pytest.mark.parametrize("version", ["8.2.1", "10.3.0"])  # binding API and name-based API
def test_runtime_runs_and_frees(fake, onnx_models, tmp_path, version, textured):
    from edge_sr.backends import open_upscaler

    _, cuda = fake(version)
    out = tmp_path / "m.engine"
    _build(onnx_models[0], out, precision="fp16", min_shape=(16, 16), max_shape=(64, 80))
    up = open_upscaler(out)
    assert up.backend == "tensorrt" and up.scale == 2 and up.output_is_residual and up.max_lr_shape == (64, 80)
    for shape in ((64, 80), (20, 30)):
        y = textured[: shape[0], : shape[1]]
        got = up.infer(np.ascontiguousarray(y))
        np.testing.assert_array_equal(got, np.kron(y, np.ones((2, 2), np.float32)))
    with pytest.raises(EdgeSRError, match="outside the engine's profile"):
        up.infer(np.zeros((8, 8), np.float32))
    n_live = len(cuda.live)
    up.close()
    assert n_live == 4 and not cuda.live and cuda.closed and not cuda.outside_active


def test_runtime_refuses_engine_from_another_device(fake, onnx_models, tmp_path):
    from edge_sr.backends.tensorrt import TensorRTUpscaler

    fake("10.3.0")
    out = tmp_path / "m.engine"
    _build(onnx_models[0], out, precision="fp16")
    _, cuda = fake("10.0.1")
    with pytest.raises(DeviceError, match="rebuild it on this device with edge-sr build-engine"):
        TensorRTUpscaler(out)
    _, cuda = fake("10.3.0")
    cuda.gpu = "Fake Xavier"
    with pytest.raises(DeviceError, match="GPU Fake Orin"):
        TensorRTUpscaler(out)
    (tmp_path / "m.engine.json").unlink()
    with pytest.raises(EdgeSRError, match="no sidecar"):
        TensorRTUpscaler(out)


def test_cli_build_engine_bad_input(tmp_path, onnx_models):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    r = run_cli("build-engine", "--onnx", str(bad), "-o", str(tmp_path / "x.engine"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "ONNX" in r.stderr
    r = run_cli("build-engine", "--onnx", str(onnx_models[0]), "--shape", "64x64", "--max-shape", "32x32",
                "-o", str(tmp_path / "x.engine"))
    assert r.returncode == 2 and "min <= shape <= max" in r.stderr
    assert not list(tmp_path.glob("x.engine*"))


# -- on a real GPU -----------------------------------------------------------------------------

def _psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_engine_matches_onnxruntime(onnx_models, qdq_model, tmp_path, precision, set5):
    from conftest import require_tensorrt

    require_tensorrt()
    from edge_sr.deploy.tensorrt_build import build_engine

    from edge_sr.backends import open_upscaler
    from edge_sr.color import y_from_bgr_u8
    from edge_sr.imageio import read_bgr

    src = qdq_model if precision == "int8" else onnx_models[0]
    y = (y_from_bgr_u8(read_bgr(sorted(set5.iterdir())[0]))[:96, :128] / 255.0).astype(np.float32)
    out = tmp_path / f"m_{precision}.engine"
    build_engine(src, out, precision=precision, shape=(96, 128), min_shape=(32, 32), max_shape=(128, 160))
    with open_upscaler(out) as trt_up, open_upscaler(src) as ort_up:
        from edge_sr.color import upscale_bicubic

        bic = upscale_bicubic(y, 2)
        ref = bic + ort_up.residual(y)
        got = bic + trt_up.residual(y)
        p = _psnr(got, ref)
    assert p > {"fp32": 60, "fp16": 45, "int8": 35}[precision], f"{precision}: {p:.1f} dB vs ONNX Runtime"


# -- the defects of issue #10, each against the fake's model of the real behaviour --------------------

def test_builder_errors_reach_the_message_while_a_runtime_lives(fake, onnx_models, tmp_path):
    """TensorRT keeps the first logger given to a Builder/Runtime while any lives: a logger made per
    build never saw the builder's errors once an engine was open (bench over engines, tests)."""
    from edge_sr.backends import open_upscaler

    trt, _ = fake("10.3.0")
    out = tmp_path / "m.engine"
    _build(onnx_models[0], out, precision="fp16")
    with open_upscaler(out):
        trt.fail_build = "[optimizer.cpp::computeCosts::3869] Error Code 10: Internal Error (Could not find any implementation)"
        with pytest.raises(EdgeSRError, match="Could not find any implementation"):
            _build(onnx_models[0], tmp_path / "b.engine", precision="fp16")
    assert not (tmp_path / "b.engine").exists()


def test_timing_cache_from_another_tensorrt_is_replaced(fake, onnx_models, tmp_path):
    tc = tmp_path / "tc.bin"
    fake("10.3.0")
    _build(onnx_models[0], tmp_path / "a.engine", precision="fp32", timing_cache=tc)
    trt, _ = fake("10.4.0")  # create_timing_cache gives None for it
    res = _build(onnx_models[0], tmp_path / "b.engine", precision="fp32", timing_cache=tc)
    assert trt.calls[-1]["timing_cache_in"] == 0  # built with a fresh cache
    assert not any("reused" in n for n in res.notes)
    assert any("another TensorRT version" in n and "started an empty one" in n for n in res.notes)
    assert tc.read_bytes().startswith(b"FAKE-TIMING-CACHE|10.4.0|")  # the fresh one replaces the file


def test_timing_cache_from_another_gpu_is_not_reported_as_reused(fake, onnx_models, tmp_path):
    tc = tmp_path / "tc.bin"
    fake("10.3.0", gpu="Fake Xavier")
    _build(onnx_models[0], tmp_path / "a.engine", precision="fp32", timing_cache=tc)
    trt, _ = fake("10.3.0")  # set_timing_cache returns False for another GPU's cache
    res = _build(onnx_models[0], tmp_path / "b.engine", precision="fp32", timing_cache=tc)
    assert trt.calls[-1]["timing_cache_in"] == 0
    assert not any("reused" in n for n in res.notes)
    assert any("another GPU" in n for n in res.notes)
    assert b"|Fake Orin|" in tc.read_bytes()


def _calib_images(tmp_path, n=8, size=(60, 80)):
    import cv2
    from conftest import textured_bgr

    imgs = tmp_path / "calib"
    imgs.mkdir(exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(imgs / f"{i}.png"), textured_bgr(*size, seed=i))
    return imgs


def test_calibrator_exception_is_raised_after_the_build(fake, onnx_models, tmp_path, monkeypatch):
    """TensorRT's trampoline catches a get_batch exception, prints it and ends calibration: the build
    failed with a message that hid the cause."""
    imgs = _calib_images(tmp_path)
    trt, cuda = fake("10.3.0")
    calls = []

    def failing_htod(*a):
        calls.append(1)
        if len(calls) == 3:
            raise DeviceError("cudaMemcpyAsync failed: cudaErrorIllegalAddress (700)")
        return type(cuda).htod(cuda, *a)

    monkeypatch.setattr(cuda, "htod", failing_htod)
    cache = tmp_path / "c.cache"
    with pytest.raises(DeviceError, match="cudaErrorIllegalAddress"):
        _build(onnx_models[0], tmp_path / "m.engine", precision="int8", calib_images=imgs, calib_cache=cache)
    assert trt.trampoline_errors == []  # our callback kept it instead of letting TensorRT swallow it
    assert not list(tmp_path.glob("m.engine*")) and not cache.exists()
    assert not cuda.live  # buffers freed


def test_calibration_cache_that_cannot_be_written_fails_the_build(fake, onnx_models, tmp_path):
    imgs = _calib_images(tmp_path)
    fake("10.3.0")
    cache = tmp_path / "no-such-dir" / "c.cache"
    with pytest.raises(EdgeSRError, match="output folder does not exist"):  # re-raised after the build
        _build(onnx_models[0], tmp_path / "m.engine", precision="int8", calib_images=imgs, calib_cache=cache)
    assert not list(tmp_path.glob("m.engine*"))


def test_calibration_images_too_small_is_one_clear_error(fake, onnx_models, tmp_path):
    imgs = _calib_images(tmp_path, size=(20, 20))  # smaller than the 48x64 profile: no usable batch
    fake("10.3.0")
    with pytest.raises(EdgeSRError, match="calibration needs at least 8 image"):
        _build(onnx_models[0], tmp_path / "m.engine", precision="int8", calib_images=imgs,
               calib_cache=tmp_path / "c.cache")
    assert not list(tmp_path.glob("m.engine*")) and not (tmp_path / "c.cache").exists()


def test_calibration_cache_read_twice_is_served_from_memory(tmp_path):
    from edge_sr.calibration.tensorrt_calibrator import make_entropy_calibrator

    trt = make_fake_trt("10.3.0")
    cache = tmp_path / "c.cache"
    cache.write_bytes(b"TRT-8601-EntropyCalibration2\n")
    cal = make_entropy_calibrator(trt, None, cache, (48, 64))
    first = cal.read_calibration_cache()
    cache.unlink()  # TensorRT reads again later (Polygraphy keeps it in memory for this)
    assert cal.read_calibration_cache() == first == b"TRT-8601-EntropyCalibration2\n"
    cal.check()


def test_explicit_batch_only_below_tensorrt_10(fake, onnx_models, tmp_path):
    for version, expect in (("8.6.1", 1), ("10.3.0", 0), ("11.0.0", 0)):
        trt, _ = fake(version)
        _build(onnx_models[0], tmp_path / f"{version}.engine", precision="fp32")
        assert trt.calls[-1]["network_flags"] & 1 == expect, version


def test_asymmetric_uint8_qdq_is_refused_with_what_to_do(fake, onnx_models, tmp_path, textured):
    from edge_sr.calibration.quantize import quantize_int8

    samples = np.stack([textured[:32, :32], textured[32:64, 32:64]])[:, None]
    u8 = quantize_int8(onnx_models[0], tmp_path / "m.u8.onnx", samples, activations="uint8").path
    fake("10.3.0")
    with pytest.raises(EdgeSRError) as exc:
        _build(u8, tmp_path / "m.engine", precision="int8")
    msg = str(exc.value)
    assert "symmetric quantization" in msg and "--activations int8" in msg and "\n" not in msg
    assert not list(tmp_path.glob("m.engine*"))


def test_refused_tensor_address_is_an_error(fake, onnx_models, tmp_path, monkeypatch):
    from edge_sr.backends.tensorrt import TensorRTUpscaler

    trt, cuda = fake("10.3.0")
    out = tmp_path / "m.engine"
    _build(onnx_models[0], out, precision="fp16")
    ctx_cls = type(trt.Runtime(trt.Logger()).deserialize_cuda_engine(out.read_bytes()).create_execution_context())
    monkeypatch.setattr(ctx_cls, "set_tensor_address", lambda self, name, ptr: False)
    with pytest.raises(DeviceError, match="refused the device address"):
        TensorRTUpscaler(out)
    assert not cuda.live


def test_engine_tensorrt_cannot_read_names_its_reason(fake, onnx_models, tmp_path):
    from edge_sr.backends.tensorrt import TensorRTUpscaler

    fake("10.3.0")
    out = tmp_path / "m.engine"
    _build(onnx_models[0], out, precision="fp16")
    out.write_bytes(b"\x00garbage")
    with pytest.raises(DeviceError, match="Magic tag does not match.*rebuild it on this device"):
        TensorRTUpscaler(out)
