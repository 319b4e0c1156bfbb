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


# -- exact values against references outside edge_sr.color (kill the survivors of scripts/mutation.sh) -----
# BT.601 studio-range Y, Cb, Cr of black, white and the primaries, as the standard tabulates them
BT601_YCC = {
    (0, 0, 0): (16.0, 128.0, 128.0),
    (255, 255, 255): (235.0, 128.0, 128.0),
    (255, 0, 0): (81.481, 90.203, 240.0),
    (0, 255, 0): (144.553, 53.797, 34.214),
    (0, 0, 255): (40.966, 240.0, 109.786),
}


def test_ycbcr_of_the_reference_colours_both_ways():
    for rgb, ycc in BT601_YCC.items():
        bgr = np.array(rgb[::-1], np.uint8).reshape(1, 1, 3)
        got = bgr_to_ycbcr(bgr)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got[0, 0], ycc, atol=1e-9)
        back = ycbcr_to_bgr(np.array(ycc, np.float64).reshape(1, 1, 3))
        assert back.dtype == np.uint8 and tuple(back[0, 0]) == rgb[::-1]  # exactly the colour again


def test_ycbcr_to_bgr_saturates_out_of_range_values():
    """Y above white and below black clip to 255 and 0 exactly (no wrap-around, no offset)."""
    out = ycbcr_to_bgr(np.array([[[255.0, 128, 128], [0.0, 128, 128], [126.0, 128, 128]]]))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]
    assert out[0, 2].tolist() == [int(round((126 - 16) * 255 / 219))] * 3  # mid grey: 255/219 per level of Y


def test_luma_dtypes_and_hxwx1_gray():
    img = textured_bgr(6, 7)
    assert y_from_bgr_u8(img).dtype == np.float32  # the model's input type
    assert y_from_rgb(img[..., ::-1]).dtype == np.float64  # the protocol's
    g = img[..., 1:2]  # HxWx1: a gray frame as some cameras deliver it
    for f, dt in ((y_from_bgr_u8, np.float32), (y_from_rgb, np.float64)):
        y = f(g)
        assert y.shape == (6, 7) and y.dtype == dt and (y == g[..., 0]).all()
    out = merge_residual(g, np.zeros((12, 14), np.float32), 2)
    assert out.shape == (12, 14) and out.dtype == np.uint8


def _keys_cubic_x2(row: np.ndarray, a: float = -0.75) -> np.ndarray:
    """1-D x2 up-sampling with Keys' cubic kernel (a = -0.75, OpenCV's INTER_CUBIC), pixel centres aligned
    (src = (dst + 0.5) / 2 - 0.5), edges replicated: written here from the kernel's formula."""
    def k(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    n = len(row)
    out = np.empty(2 * n)
    for d in range(2 * n):
        s = (d + 0.5) / 2 - 0.5
        i0 = int(np.floor(s))
        out[d] = sum(row[min(max(i, 0), n - 1)] * k(s - i) for i in range(i0 - 1, i0 + 3))
    return out


def test_upscale_bicubic_is_keys_cubic_a_075():
    row = np.random.default_rng(3).uniform(0, 255, 16).astype(np.float32)
    img = np.tile(row, (4, 1))  # constant down the columns: the vertical pass is the identity
    got = upscale_bicubic(img, 2)[3]
    np.testing.assert_allclose(got, _keys_cubic_x2(row.astype(np.float64)), atol=1e-3)


def test_zero_residual_is_the_rounded_bicubic_in_every_channel():
    """No bias in any channel: with a zero residual the output is exactly the rounded, saturated bicubic."""
    import cv2

    img = textured_bgr(10, 12, seed=5)
    out = merge_residual(img, np.zeros((20, 24), np.float32), 2)
    ref = cv2.resize(img.astype(np.float32), (24, 20), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    gray = img[..., 0]
    out = merge_residual(gray, np.zeros((20, 24), np.float32), 2)
    ref = cv2.resize(gray.astype(np.float32), (24, 20), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))


def test_uint16_frames_stay_16_bit():
    """A 16-bit frame: 16-bit out, a residual of r lifts gray by r x 65535 (not 255)."""
    g16 = (textured_bgr(8, 8)[..., 1].astype(np.uint16) * 257)
    base = merge_residual(g16, np.zeros((16, 16), np.float32), 2)
    lifted = merge_residual(g16, np.full((16, 16), 1000 / 65535, np.float32), 2)
    assert base.dtype == lifted.dtype == np.uint16
    inner = (base > 2000) & (base < 60000)
    assert np.median(lifted[inner].astype(int) - base[inner]) == 1000
    c16 = textured_bgr(8, 8).astype(np.uint16) * 257
    assert merge_residual(c16, np.zeros((16, 16), np.float32), 2).dtype == np.uint16


def test_residual_may_come_as_nchw():
    """Backends may hand back the residual as [1, 1, sH, sW] (ONNX/TensorRT output layout): same frame."""
    img = textured_bgr(6, 8, seed=9)
    res = np.random.default_rng(9).normal(0, 0.02, (12, 16)).astype(np.float32)
    np.testing.assert_array_equal(merge_residual(img, res[None, None], 2), merge_residual(img, res, 2))
