"""Still images as users have them (issue 12): EXIF orientation, EXIF + ICC carried, alpha kept,
16-bit kept, animated refused, a decode guard before decoding, corrupt files one line.
Every file is made here; references are Pillow's own (exif_transpose, ImageCms) and OpenCV."""

import time

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from conftest import textured_bgr
from edge_sr.cli import main
from edge_sr.errors import EdgeSRError
from edge_sr.stills import open_still, orient_array

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def sr():
    import edge_sr

    with edge_sr.load("compact", threads=1) as up:
        yield up


def _rgb(h, w, seed=0):
    return np.ascontiguousarray(textured_bgr(h, w, seed)[..., ::-1])


def _cli(*args):
    return main(["upscale", *map(str, args), "--threads", "1"])


def _exif(orientation=None):
    ex = Image.Exif()
    ex[0x010F] = "TestCam"  # Make
    if orientation:
        ex[0x0112] = orientation
    ifd = ex.get_ifd(0x8769)
    ifd[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal
    return ex


def test_orientation_transforms_match_pillow(tmp_path):
    a = _rgb(5, 7)
    for o in range(1, 9):
        p = tmp_path / f"o{o}.png"
        ex = Image.Exif()
        ex[0x0112] = o
        Image.fromarray(a).save(p, exif=ex.tobytes())
        ref = np.asarray(ImageOps.exif_transpose(Image.open(p)))
        assert np.array_equal(orient_array(a, o), ref), o
        assert np.array_equal(open_still(p).image[..., ::-1], ref), o


def test_exif_rotated_jpeg_comes_out_upright_with_its_exif(tmp_path, sr):
    import edge_sr

    upright = _rgb(24, 40)
    src = tmp_path / "phone.jpg"
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # how a phone held upright stores it
    ex = _exif(orientation=6)
    ex.get_ifd(0x8769).update({0xA002: 24, 0xA003: 40})
    stored.save(src, quality=100, exif=ex.tobytes())
    assert Image.open(src).size == (24, 40)  # stored on its side
    out = tmp_path / "phone_x2.png"
    assert _cli(src, "-o", out) == 0
    im = Image.open(out)
    assert im.size == (80, 48)  # upright: wide, like the picture the phone showed
    got = np.asarray(im.convert("RGB"))
    ref = edge_sr.upscale(sr, np.asarray(ImageOps.exif_transpose(Image.open(src))), channel_order="rgb")
    assert np.abs(got.astype(int) - ref).max() <= 1
    ex_out = im.getexif()
    assert ex_out.get(0x0112) == 1 and ex_out.get(0x010F) == "TestCam"
    ifd = ex_out.get_ifd(0x8769)
    assert ifd.get(0x9003) == "2024:05:06 07:08:09" and (ifd.get(0xA002), ifd.get(0xA003)) == (80, 48)
    # JPEG to JPEG keeps them too, and a viewer that honours EXIF does not turn it again
    out_jpg = tmp_path / "phone_x2.jpg"
    assert _cli(src, "-o", out_jpg) == 0
    j = Image.open(out_jpg)
    assert j.size == (80, 48) and j.getexif().get(0x0112) == 1 and ImageOps.exif_transpose(j).size == (80, 48)


@pytest.mark.parametrize("out_ext", [".jpg", ".png", ".webp", ".tif"])
def test_icc_profile_is_carried(tmp_path, out_ext):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "wide.jpg"
    Image.fromarray(_rgb(20, 30)).save(src, quality=95, icc_profile=icc, exif=_exif().tobytes())
    out = tmp_path / f"out{out_ext}"
    assert _cli(src, "-o", out) == 0
    im = Image.open(out)
    assert im.info.get("icc_profile") == icc
    assert im.getexif().get(0x010F) == "TestCam"


def test_rgba_png_keeps_its_transparency(tmp_path, capsys):
    h, w = 32, 40
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = _rgb(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    rgba[..., 3] = np.where((yy - 16) ** 2 + (xx - 20) ** 2 < 100, 255, 0)  # an opaque disc on nothing
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(src)
    out = tmp_path / "logo_x2.png"
    assert _cli(src, "-o", out) == 0
    im = Image.open(out)
    assert im.mode == "RGBA" and im.size == (80, 64)
    a = np.asarray(im)[..., 3].astype(int)
    assert a[0, 0] == 0 and a[-1, -1] == 0 and a[32, 40] == 255  # background stays transparent
    ref = np.asarray(Image.fromarray(rgba[..., 3]).resize((80, 64), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(a - ref).mean() < 3  # bicubic (OpenCV's a=-0.75 vs Pillow's -0.5: close, not equal)
    # a palette PNG with a transparent index too
    pal = tmp_path / "pal.png"
    Image.fromarray(rgba, "RGBA").convert("P", palette=Image.Palette.ADAPTIVE).save(pal, transparency=0)
    assert _cli(pal, "-o", tmp_path / "pal_x2.png") == 0
    assert Image.open(tmp_path / "pal_x2.png").mode == "RGBA"
    # JPEG cannot hold it: said, not silent
    capsys.readouterr()
    assert _cli(src, "-o", tmp_path / "logo.jpg") == 0
    assert "transparency dropped" in capsys.readouterr().err


def test_16_bit_png_stays_16_bit(tmp_path, sr, capsys):
    import edge_sr

    rng = np.random.default_rng(2)
    bgr8 = textured_bgr(24, 30, seed=1)
    bgr16 = np.clip(bgr8.astype(np.int64) * 257 + rng.integers(-128, 128, bgr8.shape), 0, 65535).astype(np.uint16)
    src = tmp_path / "scan16.png"
    cv2.imwrite(str(src), bgr16)
    out = tmp_path / "scan16_x2.png"
    assert _cli(src, "-o", out) == 0
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16 and got.shape == (48, 60, 3)
    assert (got % 257 != 0).mean() > 0.5  # real 16-bit values
    ref8 = edge_sr.upscale(sr, bgr8, channel_order="bgr")
    assert np.abs(got / 257.0 - ref8).mean() < 1.0  # the same picture as the 8-bit path gives
    # 16-bit gray too
    g = tmp_path / "g16.png"
    cv2.imwrite(str(g), bgr16[..., 1])
    assert _cli(g, "-o", tmp_path / "g16_x2.png") == 0
    gg = cv2.imread(str(tmp_path / "g16_x2.png"), cv2.IMREAD_UNCHANGED)
    assert gg.dtype == np.uint16 and gg.shape == (48, 60)
    # into an 8-bit format: a notice, not silence
    capsys.readouterr()
    assert _cli(src, "-o", tmp_path / "scan.jpg") == 0
    assert "16-bit input written as 8-bit" in capsys.readouterr().err


def test_16_bit_png_with_exif_orientation_and_icc(tmp_path):
    if not hasattr(cv2, "imencodeWithMetadata"):
        pytest.skip("this OpenCV cannot write metadata (the notice path is taken instead)")
    bgr16 = textured_bgr(20, 28, seed=4).astype(np.uint16) * 257
    ex = _exif(orientation=8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ok, buf = cv2.imencodeWithMetadata(".png", bgr16, [cv2.IMAGE_METADATA_EXIF, cv2.IMAGE_METADATA_ICCP],
                                       [np.frombuffer(ex.tobytes()[6:], np.uint8), np.frombuffer(icc, np.uint8)])
    src = tmp_path / "o8.png"
    src.write_bytes(buf.tobytes())
    st = open_still(src)
    assert st.bits == 16 and st.image.shape == (28, 20, 3) and st.icc == icc
    # the 16-bit path (OpenCV pixels) turns it as Pillow turns the 8-bit picture
    ref = np.asarray(_with_exif(textured_bgr(20, 28, seed=4), 8, tmp_path))
    assert np.array_equal(st.image // 257, ref[..., ::-1])
    out = tmp_path / "o8_x2.png"
    assert _cli(src, "-o", out) == 0
    im = Image.open(out)
    assert im.size == (40, 56) and im.info.get("icc_profile") == icc and im.getexif().get(0x0112) == 1


def _with_exif(bgr, o, tmp_path):
    p = tmp_path / "ref8.png"
    ex = Image.Exif()
    ex[0x0112] = o
    Image.fromarray(bgr[..., ::-1]).save(p, exif=ex.tobytes())
    return ImageOps.exif_transpose(Image.open(p))


def test_animated_gif_is_refused_with_one_line_a_still_gif_works(tmp_path, capsys):
    frames = [Image.fromarray(_rgb(16, 16, seed=s)).convert("P") for s in range(3)]
    anim = tmp_path / "anim.gif"
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert _cli(anim, "-o", tmp_path / "anim.png") == 2
    err = capsys.readouterr().err
    assert "animated GIF (3 frames)" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "anim.png").exists()
    still = tmp_path / "still.gif"
    frames[0].save(still)
    assert _cli(still, "-o", tmp_path) == 0  # OUT a folder: still.png (GIF cannot hold the result)
    assert Image.open(tmp_path / "still.png").size == (32, 32)


def _png_header_only(path, w, h):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def test_decode_guard_refuses_a_huge_header_before_decoding(tmp_path, capsys, monkeypatch):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 30000, 30000)  # 900 MP claimed, 100 bytes on disk
    t0 = time.perf_counter()
    assert _cli(bomb, "-o", tmp_path / "x.png") == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert "900.0 MP, above the limit of 50 MP" in err and "nothing decoded" in err and "--max-pixels" in err
    with pytest.raises(EdgeSRError, match="above the limit of 0.5 MP"):
        open_still(bomb, max_pixels=500_000)
    big = tmp_path / "big.png"  # under Pillow's own guard: ours speaks
    _png_header_only(big, 10000, 8000)
    with pytest.raises(EdgeSRError, match="10000x8000 is 80.0 MP, above the limit of 50 MP"):
        open_still(big)
    # raised limit: decoding is tried, and the lie in the header is a corrupt file, one line
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", PIL.Image.MAX_IMAGE_PIXELS)
    assert _cli(bomb, "-o", tmp_path / "x.png", "--max-pixels", "1e9") == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists() and not list(tmp_path.glob(".x.png*"))


def test_truncated_and_garbage_files_are_one_line(tmp_path, capsys):
    good = tmp_path / "good.jpg"
    Image.fromarray(_rgb(64, 64)).save(good, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:600])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture at all" * 10)
    for f, msg in ((cut, "corrupt or truncated"), (junk, "not an image")):
        assert _cli(f, "-o", tmp_path / "o.png") == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    src = tmp_path / "print.jpg"
    Image.fromarray(_rgb(20, 24)).convert("CMYK").save(src, quality=95)
    assert _cli(src, "-o", tmp_path / "print_x2.png") == 0
    im = Image.open(tmp_path / "print_x2.png")
    assert im.mode == "RGB" and im.size == (48, 40)


def test_refuses_to_overwrite_the_input(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb(12, 12)).save(src)
    before = src.read_bytes()
    assert _cli(src, "-o", src) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert src.read_bytes() == before
