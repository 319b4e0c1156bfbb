"""install.sh --gui: a GUI OpenCV in place of the headless one, only where a desktop exists (the
choice only; the install itself is what CI runs)."""

import os
import subprocess

from conftest import REPO


def extras(*flags, desktop: str) -> tuple[str, str]:
    env = dict(os.environ, EDGE_SR_DESKTOP=desktop, EDGE_SR_TEGRA_RELEASE="/nonexistent",
               EDGE_SR_DT_MODEL="/nonexistent")
    r = subprocess.run(["bash", str(REPO / "install.sh"), "--platform", "x86_64", *flags, "--print-extras"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), r.stderr


def test_gui_replaces_the_headless_opencv_where_a_desktop_exists():
    got, _ = extras("--gui", desktop="1")
    assert "gui" in got.split(",") and "cv" not in got.split(",") and "http" in got.split(",")
    got, err = extras("--gui", desktop="0")
    assert "cv" in got.split(",") and "gui" not in got.split(",") and "no desktop here" in err
    got, _ = extras(desktop="1")
    assert "cv" in got.split(",") and "gui" not in got.split(",")  # never without asking


def test_the_gui_extra_is_the_non_headless_opencv():
    text = (REPO / "pyproject.toml").read_text()
    assert 'gui = ["opencv-contrib-python>=' in text and 'cv = ["opencv-contrib-python-headless>=' in text
