import numpy as np
import pytest

from conftest import textured_bgr
from edge_sr.backends import Upscaler, open_upscaler
from edge_sr.checkpoint import load_checkpoint, save_checkpoint
from edge_sr.config import preset
from edge_sr.errors import EdgeSRError
from edge_sr.pipeline import plan_tiles, residual_tiled, upscale_frame


def test_tiled_equals_untiled(tiny_checkpoint):
    up = open_upscaler(tiny_checkpoint)
    y = textured_bgr(70, 90)[..., 1].astype(np.float32) / 255
    full = up.residual(y)
    tiled = residual_tiled(up, y, tile=24)
    b = 2 * up.scale
    assert np.abs(full - tiled)[b:-b, b:-b].max() < 1e-3
    assert np.abs(full - tiled).max() < 1e-3  # context covers the receptive field: even borders agree
    # too little context shows seams: the overlap matters
    seams = residual_tiled(up, y, tile=24, overlap=1)
    assert np.abs(full - seams).max() > 1e-3


def test_tiled_colour_frame_equals_untiled(tiny_checkpoint):
    up = open_upscaler(tiny_checkpoint)
    img = textured_bgr(50, 61)
    a = upscale_frame(up, img, tile=None)
    b = upscale_frame(up, img, tile=20)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


class Limited(Upscaler):
    """A backend with a TensorRT-style input profile around a real model: any input outside
    [min, max] (or other than the fixed shape) is refused, as ``TensorRTUpscaler.check_shape``
    and ONNX Runtime's static shapes do. Records every input shape."""

    def __init__(self, inner, lo=None, hi=None, fixed=None):
        self.inner, self.scale, self.config = inner, inner.scale, inner.config
        self.min_lr_shape, self.max_lr_shape, self.fixed_lr_shape = lo, hi, fixed
        if fixed is not None:
            self.min_lr_shape = self.max_lr_shape = fixed
        self.calls = []

    def infer(self, y):
        h, w = y.shape
        (h0, w0), (h1, w1) = self.min_lr_shape or (1, 1), self.max_lr_shape or (10**9, 10**9)
        if not (h0 <= h <= h1 and w0 <= w <= w1):
            raise EdgeSRError(f"LR input {w}x{h} is outside the engine's profile ({w0}x{h0} .. {w1}x{h1})")
        self.calls.append((h, w))
        return self.inner.residual(y)


@pytest.fixture(scope="module")
def ort_compact():
    pytest.importorskip("onnxruntime")
    from edge_sr.backends import shipped_path

    p = shipped_path("compact", 2, "onnx")
    if not p.is_file():
        pytest.skip(f"no shipped ONNX model ({p.name})")
    with open_upscaler(p, threads=1) as up:
        yield up


# (frame h, w) x limits: non-square limits both ways, tall and wide frames, a frame smaller than
# the fixed shape, the README's Jetson recipe scaled down (engine 48x64, camera 72x128)
LIMITS = [
    (dict(hi=(48, 80)), (150, 70)),    # tall frame, wide limit
    (dict(hi=(80, 48)), (70, 150)),    # wide frame, tall limit
    (dict(hi=(64, 40)), (150, 70)),    # tall frame, tall limit
    (dict(fixed=(48, 64)), (72, 128)),  # static engine, camera of another size (the Jetson recipe)
    (dict(fixed=(64, 48)), (128, 72)),
    (dict(lo=(40, 56), hi=(60, 90)), (100, 130)),
]


@pytest.mark.parametrize("limits,shape", LIMITS)
def test_tiling_under_backend_limits_equals_untiled(ort_compact, limits, shape):
    up = Limited(ort_compact, **limits)
    img = textured_bgr(*shape, seed=3)
    y = img[..., 1].astype(np.float32) / 255
    full = ort_compact.residual(y)  # the dynamic model, untiled: the reference
    tiled = residual_tiled(up, y, tile=None)
    assert tiled.shape == full.shape
    assert np.abs(full - tiled).max() < 1e-4  # context and inward-shifted edge windows: no seam anywhere
    lo, hi = up.min_lr_shape or (1, 1), up.max_lr_shape
    assert all(lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1] for h, w in up.calls)
    if up.fixed_lr_shape:
        assert set(up.calls) == {up.fixed_lr_shape}
    # no wasted calls: rows and columns each split by the tile that fits that axis
    ov = 2 * (ort_compact.config.receptive_radius + 4)
    n_rows = -(-shape[0] // (hi[0] - ov)) if shape[0] > hi[0] else 1
    n_cols = -(-shape[1] // (hi[1] - ov)) if shape[1] > hi[1] else 1
    assert len(up.calls) == n_rows * n_cols
    # the colour frame through the streaming (tile by tile) colour path equals the untiled one
    up.calls.clear()
    a = upscale_frame(ort_compact, img)
    b = upscale_frame(up, img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert len(up.calls) == n_rows * n_cols


def test_frame_smaller_than_the_fixed_shape_is_padded_then_cropped(ort_compact):
    up = Limited(ort_compact, fixed=(48, 64))
    img = textured_bgr(30, 41, seed=4)
    out = upscale_frame(up, img)
    assert out.shape == (60, 82, 3) and up.calls == [(48, 64)]
    ref = upscale_frame(ort_compact, img)
    # edge replication is not the zero padding of the untiled run: the inside still agrees
    r = 2 * (ort_compact.config.receptive_radius + 1)
    assert np.abs(out.astype(int) - ref.astype(int))[: -r, : -r].max() <= 1
    plan = plan_tiles(30, 41, up)
    assert (plan[0].pad_h, plan[0].pad_w) == (18, 23)


def test_limit_too_small_for_the_context_is_one_clear_error(ort_compact):
    up = Limited(ort_compact, hi=(30, 30))
    with pytest.raises(EdgeSRError, match="no room for 12 px of context"):
        upscale_frame(up, textured_bgr(40, 40))


def test_uint16_frames_stay_16_bit(ort_compact):
    img8 = textured_bgr(24, 30, seed=5)
    img16 = img8.astype(np.uint16) * 257  # the same picture at 16 bits
    out16 = upscale_frame(ort_compact, img16, tile=None)
    out8 = upscale_frame(ort_compact, img8, tile=None)
    assert out16.dtype == np.uint16 and out16.shape == (48, 60, 3)
    assert np.abs(out16 / 257.0 - out8).max() <= 0.51  # same result, finer steps
    assert (out16 % 257 != 0).mean() > 0.5  # really 16-bit values, not 8-bit ones scaled up
    tiled = upscale_frame(ort_compact, img16, tile=10)
    assert np.abs(tiled.astype(int) - out16.astype(int)).max() <= 1


def test_checkpoint_round_trip(tmp_path, tiny_checkpoint):
    cfg, w, info = load_checkpoint(tiny_checkpoint)
    assert cfg == preset("compact", 2) and info["note"] == "random test weights"
    p = tmp_path / "copy.safetensors"
    save_checkpoint(p, cfg, w, {"x": 1})
    cfg2, w2, info2 = load_checkpoint(p)
    assert cfg2 == cfg and info2 == {"x": 1} and all(np.array_equal(w[k], w2[k]) for k in w)
    a, b = open_upscaler(tiny_checkpoint), open_upscaler(p)
    y = np.random.default_rng(0).uniform(0, 1, (16, 16)).astype(np.float32)
    assert np.array_equal(a.residual(y), b.residual(y))


def test_bad_checkpoints_are_refused(tmp_path, tiny_checkpoint):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EdgeSRError, match="corrupt"):
        load_checkpoint(junk)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(EdgeSRError):
        open_upscaler(trunc)
    # weights that do not fit the config: strict loading refuses
    cfg, w, _ = load_checkpoint(tiny_checkpoint)
    w.pop("last.weight")
    bad = tmp_path / "missing.safetensors"
    save_checkpoint(bad, cfg, w)
    with pytest.raises(EdgeSRError, match="does not match"):
        open_upscaler(bad)
    # a model for another scale
    with pytest.raises(EdgeSRError, match="is for x2, not x3"):
        open_upscaler(tiny_checkpoint, scale=3)
    with pytest.raises(EdgeSRError, match="unknown model file type"):
        open_upscaler(_touch(tmp_path / "m.bin"))


def _touch(p):
    p.write_bytes(b"x")
    return p


def test_static_engine_streams_a_camera_of_another_size(monkeypatch, tmp_path):
    """The README's Jetson recipe, scaled down, on the fake TensorRT (which only checks our logic:
    its inference is a nearest-neighbour upscale): an engine built for one LR shape and a camera
    frame of another size. Every call has the engine's shape, and the result equals the same frame
    through an engine whose profile covers it whole."""
    pytest.importorskip("onnx")
    import sys

    import edge_sr.deploy.tensorrt_build as tb
    import edge_sr.backends.tensorrt as bt
    from edge_sr.deploy.tensorrt_build import build_engine
    from edge_sr.backends import shipped_path
    from edge_sr.stream import upscale_timed
    from fake_tensorrt import FakeCuda, make_fake_trt

    onnx_model = shipped_path("compact", 2, "onnx")
    if not onnx_model.is_file():
        pytest.skip("no shipped ONNX model")
    trt, cuda = make_fake_trt("10.3.0"), FakeCuda()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(bt, "cuda_api", lambda: cuda)
    monkeypatch.setattr(tb, "cuda_api", lambda: cuda)
    build_engine(onnx_model, tmp_path / "static.engine", precision="fp16", shape=(48, 64))
    build_engine(onnx_model, tmp_path / "dyn.engine", precision="fp16", shape=(72, 128), min_shape=(16, 16),
                 max_shape=(128, 160))
    frame = textured_bgr(72, 128, seed=9)  # camera 1280x720 -> 128x72 here; engine 640x480 -> 64x48
    with open_upscaler(tmp_path / "static.engine") as static, open_upscaler(tmp_path / "dyn.engine") as dyn:
        assert static.fixed_lr_shape == (48, 64)
        with pytest.raises(EdgeSRError, match="outside the engine's profile"):
            static.infer(np.zeros((72, 128), np.float32))  # what streaming did before: fail on frame one
        calls = []
        real = static.infer
        monkeypatch.setattr(static, "infer", lambda y: calls.append(y.shape) or real(y))
        out, _ = upscale_timed(static, frame)  # the stream's own path (model stage + colour stage)
        ref, _ = upscale_timed(dyn, frame)
    assert out.shape == (144, 256, 3) and set(calls) == {(48, 64)}
    assert np.array_equal(out, ref)
