"""Folders (issue 12): recursive with the tree mirrored, formats kept or chosen, --suffix, name
collisions resolved and said, a corrupt file reported and skipped (exit 1 + summary), inputs never
overwritten, nothing half-written."""

import numpy as np
import pytest
from PIL import Image

from conftest import textured_bgr
from edge_sr.cli import main
from edge_sr.stills import plan_folder

pytest.importorskip("onnxruntime")


def _img(path, h=12, w=16, seed=0, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(textured_bgr(h, w, seed)[..., ::-1])).save(path, **save)
    return path


def _cli(*args):
    return main(["upscale", *map(str, args), "--threads", "1"])


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_recursive_tree_mirrored_formats_kept(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _img(src / "a.png")
    _img(src / "sub" / "b.jpg", seed=1, quality=90)
    _img(src / "sub" / "deeper" / "c.webp", seed=2)
    _img(src / "sub" / "d.gif", seed=3)
    (src / "notes.txt").write_text("not an image")
    assert _cli(src, "-o", out) == 0
    assert _tree(out) == ["a.png", "sub/b.jpg", "sub/d.png", "sub/deeper/c.webp"]
    assert Image.open(out / "sub" / "b.jpg").format == "JPEG"
    assert Image.open(out / "sub" / "deeper" / "c.webp").format == "WEBP"
    assert Image.open(out / "sub" / "deeper" / "c.webp").size == (32, 24)
    cap = capsys.readouterr()
    assert "wrote 4 of 4 images" in cap.out and "ignored 1 file(s) that are not still images (.txt)" in cap.err
    # --no-recursive: the top level only
    assert _cli(src, "-o", tmp_path / "flat", "--no-recursive") == 0
    assert _tree(tmp_path / "flat") == ["a.png"]


def test_format_and_suffix(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _img(src / "a.png")
    _img(src / "s" / "b.jpg", seed=1)
    assert _cli(src, "-o", out, "--format", "webp", "--suffix", "_x2") == 0
    assert _tree(out) == ["a_x2.webp", "s/b_x2.webp"]
    assert all(Image.open(out / p).format == "WEBP" for p in _tree(out))


def test_name_collisions_are_avoided_and_said(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _img(src / "photo.webp", seed=1)
    _img(src / "photo.bmp", seed=2)
    _img(src / "other.jpg", seed=3)
    assert _cli(src, "-o", out, "--format", "png") == 0
    assert _tree(out) == ["other.png", "photo_bmp.png", "photo_webp.png"]
    err = capsys.readouterr().err
    assert "name collision: photo.bmp, photo.webp would all be photo.png" in err
    a, b = (np.asarray(Image.open(out / n)) for n in ("photo_bmp.png", "photo_webp.png"))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # two different pictures, both kept
    # a renamed name that is itself taken counts up instead
    _img(src / "photo_bmp.png", seed=4)
    plan = plan_folder(src, out, "png")
    names = sorted(o.name for _, o in plan.jobs)
    assert len(set(names)) == len(names) == 4


def test_corrupt_file_is_reported_and_skipped(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _img(src / "a.png")
    (src / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    good = _img(src / "c.jpg", h=64, w=64, quality=90)
    (src / "d_cut.jpg").write_bytes(good.read_bytes()[:700])
    _img(src / "e.png", seed=5)
    assert _cli(src, "-o", out) == 1
    cap = capsys.readouterr()
    assert _tree(out) == ["a.png", "c.jpg", "e.png"]  # the rest went on; nothing half-written
    assert "wrote 3 of 5 images" in cap.out
    summary = cap.err.split("2 failed:")[1]
    assert "b_broken.png" in summary and "d_cut.jpg" in summary and "Traceback" not in cap.err


def test_inputs_are_never_overwritten(tmp_path, capsys):
    src = tmp_path / "in"
    a = _img(src / "a.png")
    before = a.read_bytes()
    assert _cli(src, "-o", src) == 2  # same folder, same names
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert a.read_bytes() == before and _tree(src) == ["a.png"]
    # with a suffix the same folder is fine
    assert _cli(src, "-o", src, "--suffix", "_x2") == 0
    assert _tree(src) == ["a.png", "a_x2.png"] and a.read_bytes() == before


def test_output_folder_inside_the_input_is_not_walked(tmp_path):
    src = tmp_path / "in"
    _img(src / "a.png")
    assert _cli(src, "-o", src / "up") == 0
    assert _cli(src, "-o", src / "up") == 0  # a second run does not upscale its own outputs
    assert _tree(src) == ["a.png", "up/a.png"]
    assert Image.open(src / "up" / "a.png").size == (32, 24)


def test_api_folder_result_lists_failures(tmp_path):
    import edge_sr

    src = tmp_path / "in"
    _img(src / "ok.png")
    (src / "bad.jpg").write_bytes(b"nope")
    res = edge_sr.upscale_folder("compact", src, tmp_path / "o", format="png")
    assert [o.name for _, o in res.written] == ["ok.png"]
    assert [f.name for f, _ in res.failed] == ["bad.jpg"] and "not an image" in res.failed[0][1]
