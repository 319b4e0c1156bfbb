"""upscale / eval / demo through the real CLI, with every bad input of the core issue."""

import json
import os
import stat

import cv2
import numpy as np
import pytest

from conftest import run_cli, textured_bgr

pytest.importorskip("torch")  # these use a .safetensors checkpoint (torch backend)


def _no_traceback(r):
    assert "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr  # one clear line
    return lines[0]


@pytest.fixture
def img(tmp_path):
    p = tmp_path / "in.png"
    cv2.imwrite(str(p), textured_bgr(30, 44))
    return p


def test_upscale_one_image_in_colour(img, tmp_path, tiny_checkpoint):
    out = tmp_path / "out.png"
    r = run_cli("upscale", str(img), "-o", str(out), "--model", str(tiny_checkpoint))
    assert r.returncode == 0, r.stderr
    res = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert res.shape == (60, 88, 3)
    # colour, not grey: channels differ
    assert np.abs(res[..., 0].astype(int) - res[..., 2].astype(int)).mean() > 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_upscale_folder_keeps_stems_as_png(tmp_path, tiny_checkpoint):
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), textured_bgr(20, 20))
    cv2.imwrite(str(src / "b.bmp"), textured_bgr(16, 24)[..., 0])  # grayscale
    r = run_cli("upscale", str(src), "-o", str(tmp_path / "dst"), "--model", str(tiny_checkpoint), "--format", "png")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["a.png", "b.png"]
    assert cv2.imread(str(tmp_path / "dst" / "b.png"), cv2.IMREAD_UNCHANGED).shape == (32, 48)  # gray stays gray


def test_upscale_bad_inputs(img, tmp_path, tiny_checkpoint):
    m = ["--model", str(tiny_checkpoint)]
    r = run_cli("upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"), *m)
    assert r.returncode == 2 and "not found" in _no_traceback(r)
    txt = tmp_path / "notimage.png"
    txt.write_text("hello")
    r = run_cli("upscale", str(txt), "-o", str(tmp_path / "o.png"), *m)
    assert r.returncode == 2 and "not an image" in _no_traceback(r)
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--scale", "5", *m)
    assert r.returncode == 2 and "unsupported scale" in _no_traceback(r)
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--scale", "3", *m)
    assert r.returncode == 2 and "is for x2, not x3" in _no_traceback(r)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"garbage" * 10)
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", str(corrupt))
    assert r.returncode == 2 and "corrupt" in _no_traceback(r)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("upscale", str(empty), "-o", str(tmp_path / "d"), *m)
    assert r.returncode == 2 and "no images" in _no_traceback(r)
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "nodir" / "o.png"), *m)
    assert r.returncode == 2 and "does not exist" in _no_traceback(r)
    r = run_cli("upscale", str(img), "-o", str(tmp_path / "o.txt"), *m)
    assert r.returncode == 2 and "must be an image" in _no_traceback(r)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_and_unwritable(img, tmp_path, tiny_checkpoint):  # pragma: no cover - CI runs as root
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    r = run_cli("upscale", str(img), "-o", str(ro / "o.png"), "--model", str(tiny_checkpoint))
    assert r.returncode == 2 and "not writable" in _no_traceback(r)


def test_unwritable_output_as_root_too(img, tmp_path, tiny_checkpoint):
    """An output path whose parent is a file cannot be written, whoever runs it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("upscale", str(img), "-o", str(blocker / "o.png"), "--model", str(tiny_checkpoint))
    assert r.returncode == 2
    assert "is a file, not a folder" in _no_traceback(r)


def test_eval_prints_table_and_json(tmp_path, tiny_checkpoint, set5):
    sub = tmp_path / "mini"
    sub.mkdir()
    for f in sorted(set5.iterdir())[:2]:
        (sub / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "r.json"
    r = run_cli("eval", "--data", str(sub), "--scale", "2", "--model", str(tiny_checkpoint), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "bicubic" in r.stdout and "mini" in r.stdout
    doc = json.loads(out.read_text())
    bic = doc["results"]["bicubic"]["mini"]
    assert 30 < bic["psnr"] < 40 and set(bic["images"]) == {"img_001.png", "img_002.png"}
    assert len(doc["results"]) == 2


def test_eval_bad_inputs(tmp_path, tiny_checkpoint):
    r = run_cli("eval", "--data", str(tmp_path / "none"), "--model", str(tiny_checkpoint))
    assert r.returncode == 2 and "not found" in _no_traceback(r)
    (tmp_path / "e").mkdir()
    r = run_cli("eval", "--data", str(tmp_path / "e"), "--model", str(tiny_checkpoint))
    assert r.returncode == 2 and "no images" in _no_traceback(r)
    r = run_cli("eval", "--data", str(tmp_path / "e"), "--scale", "7", "--model", str(tiny_checkpoint))
    assert r.returncode == 2 and "unsupported scale" in _no_traceback(r)


def test_debug_env_shows_traceback(tmp_path, tiny_checkpoint):
    r = run_cli("upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"), "--model", str(tiny_checkpoint),
                env={"EDGE_SR_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr
