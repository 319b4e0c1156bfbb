"""The Python API (issue 12 item 5): `import edge_sr` exposes load/upscale/upscale_file/upscale_folder,
the channel order is said explicitly and honoured, the objects are the CLI's, the README's snippet runs."""

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, textured_bgr

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def sr():
    import edge_sr

    with edge_sr.load("compact", threads=1) as up:
        yield up


def test_import_is_cheap_and_exposes_the_api():
    code = ("import sys, edge_sr; heavy = [m for m in ('cv2', 'onnxruntime', 'PIL', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "assert {'load', 'upscale', 'upscale_file', 'upscale_folder', 'open_upscaler', 'EdgeSRError'} <= set(dir(edge_sr)); "
            "from edge_sr.backends import Upscaler; assert edge_sr.Upscaler is Upscaler; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_channel_order_is_explicit_and_honoured(sr):
    import edge_sr

    bgr = textured_bgr(20, 26, seed=7)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    out_bgr = edge_sr.upscale(sr, bgr, channel_order="bgr")
    out_rgb = edge_sr.upscale(sr, rgb, channel_order="rgb")
    assert np.array_equal(out_rgb, out_bgr[..., ::-1])
    # the order matters: the luma of RGB read as BGR is another picture (red and blue weights swap)
    wrong = edge_sr.upscale(sr, rgb, channel_order="bgr")
    assert np.abs(wrong.astype(int) - out_rgb.astype(int)).max() > 3
    with pytest.raises(edge_sr.EdgeSRError, match="channel_order='bgr'"):
        edge_sr.upscale(sr, rgb)
    with pytest.raises(edge_sr.EdgeSRError, match="not 'xyz'"):
        edge_sr.upscale(sr, rgb, channel_order="xyz")
    gray = edge_sr.upscale(sr, bgr[..., 1])  # gray needs no order
    assert gray.shape == (40, 52)
    with pytest.raises(edge_sr.EdgeSRError, match="uint8 or uint16"):
        edge_sr.upscale(sr, rgb.astype(np.float32), channel_order="rgb")


def test_rgba_array_keeps_alpha(sr):
    import edge_sr

    rgba = np.dstack([textured_bgr(16, 18)[..., ::-1], np.full((16, 18), 200, np.uint8)])
    out = edge_sr.upscale(sr, rgba, channel_order="rgb")
    assert out.shape == (32, 36, 4) and (out[..., 3] == 200).all()
    assert np.array_equal(out[..., :3], edge_sr.upscale(sr, np.ascontiguousarray(rgba[..., :3]), channel_order="rgb"))


def test_api_file_equals_cli_file(tmp_path, sr):
    import edge_sr
    from edge_sr.cli import main

    src = tmp_path / "in.png"
    Image.fromarray(np.ascontiguousarray(textured_bgr(30, 40)[..., ::-1])).save(src)
    assert edge_sr.upscale_file(sr, src, tmp_path / "api.png") == []
    assert main(["upscale", str(src), "-o", str(tmp_path / "cli.png"), "--threads", "1"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("api.png", "cli.png"))
    assert np.array_equal(a, b)
    # and the array path gives the same pixels (RGB from Pillow)
    c = edge_sr.upscale(sr, np.asarray(Image.open(src)), channel_order="rgb")
    assert np.array_equal(a, c)
    with pytest.raises(edge_sr.EdgeSRError, match="refusing to overwrite"):
        edge_sr.upscale_file(sr, src, src)


def test_readme_python_api_snippet_runs(tmp_path):
    text = (REPO / "README.md").read_text()
    m = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S)
    assert m, "README has a 'Python API' section with a python block"
    for name in ("photo.jpg",):
        Image.fromarray(np.ascontiguousarray(textured_bgr(24, 32)[..., ::-1])).save(tmp_path / name, quality=90)
    (tmp_path / "photos").mkdir()
    Image.fromarray(textured_bgr(16, 16)).save(tmp_path / "photos" / "p.png")
    r = subprocess.run([sys.executable, "-c", m.group(1)], capture_output=True, text=True, cwd=str(tmp_path),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "photo_x2.jpg").is_file() and (tmp_path / "out" / "p.png").is_file()
