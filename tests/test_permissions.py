"""Files and folders the user may not read or write: one clear line, non-zero exit, nothing half-written.

Root reads and writes anything, and CI runs as root: these tests then run the CLI as user nobody
(setpriv), in a folder that user may enter, so they test permissions wherever the suite runs."""

from __future__ import annotations

import shutil

import pytest

from conftest import REPO, run_cli, textured_bgr

pytest.importorskip("cv2")

MODEL = REPO / "edge_sr" / "weights" / "dcscn_compact_x2.onnx"


def _as_user(*args, home):
    # HOME: ONNX Runtime writes a telemetry id there; nobody's own home (/nonexistent) would add a warning line
    return run_cli(*args, env={"HOME": str(home), "EDGE_SR_DEBUG": ""}, unprivileged=True, timeout=120)


def _one_line(r, words):
    err = r.stderr.strip()
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-800:]
    assert words in err, err


@pytest.fixture
def setup(user_tmp):
    import cv2

    if not MODEL.is_file():
        pytest.skip("the compact ONNX is not shipped")
    img = user_tmp / "in.png"
    cv2.imwrite(str(img), textured_bgr(20, 24))
    model = user_tmp / "m.onnx"
    shutil.copy(MODEL, model)
    home = user_tmp / "home"
    home.mkdir()
    for p in (img, model):
        p.chmod(0o644)
    home.chmod(0o777)
    return user_tmp, img, model, home


def test_the_user_can_run_at_all(setup):
    """The control: as that user, with readable files, the same command works (the refusals below are real)."""
    d, img, model, home = setup
    r = _as_user("upscale", str(img), "-o", str(d / "ok.png"), "--model", str(model), home=home)
    assert r.returncode == 0, r.stderr
    assert (d / "ok.png").is_file()


def test_unwritable_output_folder(setup):
    d, img, model, home = setup
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = _as_user("upscale", str(img), "-o", str(ro / "o.png"), "--model", str(model), home=home)
    _one_line(r, "not writable")
    assert not list(ro.iterdir())


def test_unreadable_image(setup):
    d, img, model, home = setup
    img.chmod(0o000)
    r = _as_user("upscale", str(img), "-o", str(d / "o.png"), "--model", str(model), home=home)
    _one_line(r, "not readable")
    assert not (d / "o.png").exists()


def test_unreadable_model(setup):
    d, img, model, home = setup
    model.chmod(0o000)
    r = _as_user("upscale", str(img), "-o", str(d / "o.png"), "--model", str(model), home=home)
    _one_line(r, str(model))
    assert not (d / "o.png").exists()


def test_unreadable_calibration_folder(setup):
    pytest.importorskip("onnx")
    d, img, model, home = setup
    locked = d / "locked"
    locked.mkdir()
    (locked / "a.png").write_bytes(img.read_bytes())
    locked.chmod(0o000)
    out = d / "q.onnx"
    r = _as_user("calibrate", "--onnx", str(model), "--images", str(locked), "-o", str(out), "--val", "none",
                 "--bench", "none", "--crop", "16x16", "--batch", "1", home=home)
    _one_line(r, "not readable")
    assert not out.exists()


def test_unreadable_eval_folder(setup):
    d, img, model, home = setup
    locked = d / "set"
    locked.mkdir()
    (locked / "a.png").write_bytes(img.read_bytes())
    locked.chmod(0o000)
    r = _as_user("eval", "--data", str(locked), "--model", str(model), "--no-ssim", home=home)
    _one_line(r, str(locked))

