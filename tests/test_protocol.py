"""Pins the SR protocol: MATLAB bicubic, BT.601 Y, shave, PSNR/SSIM."""

import numpy as np
import pytest

from edge_sr.color import y_from_rgb
from edge_sr.imresize import imresize
from edge_sr.quality import bicubic_method, discover_sets, evaluate, psnr, ssim


def test_imresize_keeps_constant_images_and_sizes():
    img = np.full((10, 14, 3), 77, np.uint8)
    lr = imresize(img, 0.5)
    assert lr.shape == (5, 7, 3) and (lr == 77).all()
    assert imresize(lr, 2.0).shape == (10, 14, 3)
    assert imresize(np.zeros((9, 9)), output_shape=(4, 5)).shape == (4, 5)


def test_imresize_is_antialiased_cubic_on_a_ramp():
    # float path: downscaling a linear ramp by 2 with antialiasing keeps the interior mean
    ramp = np.tile(np.arange(32, dtype=np.float64), (4, 1))
    r = imresize(ramp, 0.5)
    assert r[0, 4:12] == pytest.approx(np.arange(4, 12) * 2 + 0.5, abs=1e-9)


def test_imresize_differs_from_opencv_cubic():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    ours = imresize(img, 0.5).astype(int)
    theirs = cv2.resize(img, (16, 16), interpolation=cv2.INTER_CUBIC).astype(int)
    assert np.abs(ours - theirs).max() > 5  # antialiasing: not the same degradation


def test_psnr_ssim_basics():
    a = np.random.default_rng(0).uniform(0, 255, (32, 32))
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0)
    b = a + 1.0
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2), abs=1e-9)
    n = np.random.default_rng(1).normal(0, 1, a.shape)
    assert 1.0 > ssim(a, a + 10 * n) > ssim(a, a + 40 * n)
    with pytest.raises(ValueError):
        psnr(a, a[:10])
    # shaving removes the border
    c = a.copy()
    c[0, :] += 50
    assert psnr(a, c, crop_border=2) == float("inf")
    assert psnr(a, c) < 60  # no shave unless asked


def test_y_is_bt601_studio_range():
    assert y_from_rgb(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert y_from_rgb(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    gray = np.full((2, 2), 100, np.uint8)
    assert (y_from_rgb(gray) == 100).all()  # a gray image is its own Y


def test_bicubic_on_set5_x2_is_33_66(set5):
    res = evaluate({"bicubic": lambda lr: bicubic_method(lr, 2)}, discover_sets(set5), 2, with_ssim=True, progress=False)
    r = res["bicubic"][0]
    assert r.psnr == pytest.approx(33.66, abs=0.02)
    assert r.ssim == pytest.approx(0.9299, abs=0.003)


def test_bicubic_on_set14_x2(data_root):
    res = evaluate({"bicubic": lambda lr: bicubic_method(lr, 2)}, discover_sets(data_root / "val" / "set14"), 2,
                   with_ssim=False, progress=False)
    assert res["bicubic"][0].psnr == pytest.approx(30.24, abs=0.02)


# -- MATLAB imresize against references outside the module (kill the survivors of scripts/mutation.sh) -----
def test_cubic_kernel_is_keys_a_minus_half():
    """MATLAB's bicubic kernel (Keys 1981, a = -0.5), at the points where its value is known in closed form."""
    from edge_sr.imresize import _cubic

    x = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 1.75, 2.0, 2.5, -0.5, -1.5])
    want = [1.0, 0.8671875, 0.5625, 0.0, -0.0625, -0.0234375, 0.0, 0.0, 0.5625, -0.0625]
    np.testing.assert_allclose(_cubic(x), want, atol=1e-12)


def test_upscaling_reproduces_quadratics():
    """Keys' a = -0.5 cubic reproduces polynomials up to degree 2 exactly (away from the borders); any other
    kernel, or a mis-placed sample grid, does not."""
    xs = np.arange(20, dtype=np.float64)
    f = lambda t: 3.0 + 0.7 * t - 0.05 * t**2  # noqa: E731
    img = np.tile(f(xs), (6, 1))
    up = imresize(img, 2.0)
    t = (np.arange(40) + 0.5) / 2 - 0.5  # MATLAB's sample positions for x2, pixel centres aligned
    np.testing.assert_allclose(up[3, 4:-4], f(t[4:-4]), atol=1e-9)


def test_scale_and_output_shape_agree_and_constants_stay():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imresize(img, 0.5), imresize(img, output_shape=(6, 8)))
    f = img.astype(np.float64)
    np.testing.assert_allclose(imresize(f, 0.5), imresize(f, output_shape=(6, 8)), atol=1e-12)
    for v in (0, 255):  # the extremes survive the rounding and saturation of each pass exactly
        c = np.full((9, 11), v, np.uint8)
        assert (imresize(c, 0.5) == v).all() and (imresize(c, 2.0) == v).all()
    with pytest.raises(ValueError, match="exactly one of scale or output_shape"):
        imresize(img)


def test_uint8_passes_go_in_matlabs_order():
    """uint8 is rounded after each 1-D pass, so the order shows: MATLAB resizes the dimension with the
    smaller scale first (height on a tie). Compared with the two single-axis resizes done by hand."""
    rng = np.random.default_rng(8)
    img = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    for out in [(8, 12), (12, 8), (8, 8)]:
        sh, sw = out[0] / 16, out[1] / 16
        if sh <= sw:
            ref = imresize(imresize(img, output_shape=(out[0], 16)), output_shape=out)
            other = imresize(imresize(img, output_shape=(16, out[1])), output_shape=out)
        else:
            ref = imresize(imresize(img, output_shape=(16, out[1])), output_shape=out)
            other = imresize(imresize(img, output_shape=(out[0], 16)), output_shape=out)
        got = imresize(img, output_shape=out)
        np.testing.assert_array_equal(got, ref)
        assert (ref != other).any()  # the order matters on this image: the test can tell them apart


# -- metrics and set discovery against references outside edge_sr.quality --------------------------------
def _ssim_reference(a, b):
    """Wang et al. 2004 as published: 11x11 Gaussian window (sigma 1.5, normalised), K1 = 0.01, K2 = 0.03,
    L = 255, population (co)variances, mean over the windows that fit inside the image. numpy only."""
    from numpy.lib.stride_tricks import sliding_window_view

    t = np.arange(11) - 5
    g = np.exp(-(t**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    wa, wb = sliding_window_view(a, (11, 11)), sliding_window_view(b, (11, 11))
    mu_a, mu_b = (wa * w).sum((-1, -2)), (wb * w).sum((-1, -2))
    var_a = (wa**2 * w).sum((-1, -2)) - mu_a**2
    var_b = (wb**2 * w).sum((-1, -2)) - mu_b**2
    cov = (wa * wb * w).sum((-1, -2)) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def test_ssim_equals_the_published_formula():
    rng = np.random.default_rng(11)
    a = rng.uniform(0, 255, (30, 34))
    for noise in (3.0, 25.0):
        b = np.clip(a + rng.normal(0, noise, a.shape), 0, 255)
        assert ssim(a, b) == pytest.approx(_ssim_reference(a, b), abs=1e-6)
        assert ssim(a, b, crop_border=2) == pytest.approx(_ssim_reference(a[2:-2, 2:-2], b[2:-2, 2:-2]), abs=1e-6)
    dark = rng.uniform(0, 4, (24, 24))  # low signal: the constants c1, c2 dominate
    assert ssim(dark, dark * 0.5) == pytest.approx(_ssim_reference(dark, dark * 0.5), abs=1e-6)
    with pytest.raises(ValueError, match="shape mismatch"):
        ssim(a, a[:20])
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(a, a[:, :20])


def test_score_and_protocol_pair(tmp_path):
    import cv2

    from edge_sr.errors import EdgeSRError
    from edge_sr.quality import protocol_pair, score

    rng = np.random.default_rng(12)
    hr = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-6, 7, hr.shape), 0, 255).astype(np.uint8)
    yh, ys = y_from_rgb(hr), y_from_rgb(sr)
    p, s = score(hr, sr, 2)
    assert p == pytest.approx(10 * np.log10(255**2 / np.mean((yh[2:-2, 2:-2] - ys[2:-2, 2:-2]) ** 2)), abs=1e-9)
    assert s == pytest.approx(_ssim_reference(yh[2:-2, 2:-2], ys[2:-2, 2:-2]), abs=1e-6)
    assert score(hr, sr, 2, with_ssim=False) == (pytest.approx(p), None)
    with pytest.raises(EdgeSRError, match=r"method returned \(10, 11\), expected HR size \(20, 22\)"):
        score(hr, sr[:10, :11], 2)
    # the smallest image the protocol takes is 2 x scale pixels on its short side (after modcrop)
    for side, ok in ((4, True), (3, False)):
        f = tmp_path / f"s{side}.png"
        cv2.imwrite(str(f), rng.integers(0, 256, (side, 9, 3), dtype=np.uint8))
        if ok:
            h, lr = protocol_pair(f, 2)
            assert h.shape == (4, 8, 3) and lr.shape == (2, 4, 3)
        else:
            with pytest.raises(EdgeSRError, match="too small for x2"):
                protocol_pair(f, 2)


def test_discover_sets_and_per_image_results(tmp_path):
    import cv2

    from edge_sr.errors import EdgeSRError

    rng = np.random.default_rng(13)

    def img(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), rng.integers(0, 256, (16, 18, 3), dtype=np.uint8))

    img(tmp_path / "flat" / "b.png")
    img(tmp_path / "flat" / "a.PNG")
    (tmp_path / "flat" / "notes.txt").write_text("x")
    ((tmp_path / "flat" / "sub.png")).mkdir()  # a folder named like an image is not an image
    sets = discover_sets(tmp_path / "flat")
    assert [(n, [f.name for f in fs]) for n, fs in sets] == [("flat", ["a.PNG", "b.png"])]
    img(tmp_path / "tree" / "set5" / "x.png")
    img(tmp_path / "tree" / "set14" / "y.png")
    (tmp_path / "tree" / "docs").mkdir()
    (tmp_path / "tree" / "docs" / "readme.txt").write_text("x")
    assert [(n, [f.name for f in fs]) for n, fs in discover_sets(tmp_path / "tree")] == [("set14", ["y.png"]),
                                                                                        ("set5", ["x.png"])]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(EdgeSRError, match="no images in"):
        discover_sets(tmp_path / "empty")
    with pytest.raises(EdgeSRError, match="evaluation folder not found"):
        discover_sets(tmp_path / "absent")
    res = evaluate({"bic": lambda lr: bicubic_method(lr, 2)}, discover_sets(tmp_path / "tree"), 2, progress=False)
    (r14, r5) = res["bic"]
    assert (r14.name, r5.name) == ("set14", "set5") and set(r5.per_image) == {"x.png"}
    from edge_sr.quality import protocol_pair, score

    hr, lr = protocol_pair(tmp_path / "tree" / "set5" / "x.png", 2)
    p, s = score(hr, bicubic_method(lr, 2), 2)
    assert r5.per_image["x.png"] == {"psnr": pytest.approx(p), "ssim": pytest.approx(s)}
    assert r5.psnr == pytest.approx(p) and r5.ssim == pytest.approx(s)  # default: with SSIM
    fast = evaluate({"bic": lambda lr: bicubic_method(lr, 2)}, discover_sets(tmp_path / "tree"), 2, with_ssim=False,
                    progress=False)["bic"][1]
    assert fast.ssim is None and fast.per_image["x.png"] == {"psnr": pytest.approx(p), "ssim": None}
