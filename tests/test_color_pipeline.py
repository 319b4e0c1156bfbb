import numpy as np
import pytest

from conftest import textured_bgr
from edge_sr.color import bgr_to_ycbcr, merge_residual, upscale_bicubic, y_from_bgr_u8, y_from_rgb, ycbcr_to_bgr


def test_y_from_bgr_matches_protocol_y():
    img = textured_bgr(20, 30)
    assert np.allclose(y_from_bgr_u8(img), y_from_rgb(img[..., ::-1]), atol=1e-3)


def test_ycbcr_round_trip():
    img = textured_bgr(16, 16)
    assert np.abs(ycbcr_to_bgr(bgr_to_ycbcr(img)).astype(int) - img).max() <= 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fast_merge_equals_explicit_ycbcr_path(scale):
    """bicubic RGB + gain * residual == (bicubic Cb/Cr, bicubic Y + residual) -> RGB."""
    img = textured_bgr(24, 20, seed=scale)
    h, w = img.shape[:2]
    res = np.random.default_rng(scale).normal(0, 0.03, (h * scale, w * scale)).astype(np.float32)
    fast = merge_residual(img, res, scale)
    # explicit: YCbCr of LR, bicubic every plane, add the residual to Y, convert back
    ycc = bgr_to_ycbcr(img).astype(np.float32)
    up = np.stack([upscale_bicubic(np.ascontiguousarray(ycc[..., c]), scale) for c in range(3)], -1).astype(np.float64)
    up[..., 0] += res * 255
    ref = ycbcr_to_bgr(up)
    diff = np.abs(fast.astype(int) - ref.astype(int))
    # equal up to rounding, and where bicubic overshoot is clipped per channel in one path only
    assert np.mean(diff <= 1) > 0.99
    assert fast.shape == (h * scale, w * scale, 3) and fast.dtype == np.uint8


def test_grayscale_in_grayscale_out():
    gray = textured_bgr(12, 10)[..., 1]
    res = np.zeros((24, 20), np.float32)
    out = merge_residual(gray, res, 2)
    assert out.shape == (24, 20)
    assert np.abs(out.astype(int) - upscale_bicubic(gray, 2).astype(int)).max() <= 1
    out2 = merge_residual(gray, res + 10 / 255, 2)  # a +10 level residual lifts gray by 10
    assert np.median(out2.astype(int) - out.astype(int)) == 10


def test_colour_is_kept():
    """Output is colour, not Y-only: chroma of the upscaled frame follows the input's."""
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 2] = 200  # red
    out = merge_residual(img, np.zeros((16, 16), np.float32), 2)
    assert (out[..., 2] > 190).all() and (out[..., 0] < 10).all()
