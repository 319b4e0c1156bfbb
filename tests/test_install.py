"""install.sh: platform detection and idempotence (the full install is what CI itself runs first)."""

import os
import subprocess

import pytest

from conftest import REPO

SH = REPO / "install.sh"


def _detect(tmp_path, tegra=None, model=None):
    env = dict(os.environ)
    env["EDGE_SR_TEGRA_RELEASE"] = str(tmp_path / "nv_tegra_release")
    env["EDGE_SR_DT_MODEL"] = str(tmp_path / "model")
    if tegra:
        (tmp_path / "nv_tegra_release").write_text(tegra)
    if model:
        (tmp_path / "model").write_bytes(model)
    r = subprocess.run(["bash", str(SH), "--print-platform"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_detects_raspberry_pi_jetson_and_pc(tmp_path):
    for d in "abc":
        (tmp_path / d).mkdir()
    assert _detect(tmp_path / "a", model=b"Raspberry Pi 5 Model B Rev 1.0\x00") == "pi"
    assert _detect(tmp_path / "b", tegra="# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == "jetson"
    plain = _detect(tmp_path / "c", model=b"Some Other Board\x00")
    assert plain == {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine, plain)


def test_bad_option_is_one_line(tmp_path):
    r = subprocess.run(["bash", str(SH), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "unknown option" in r.stderr


def test_second_run_changes_nothing():
    venv = REPO / ".venv"
    stamp = venv / ".edge-sr-install"
    if not stamp.exists():
        pytest.skip("the repo's .venv was not made by install.sh")
    platform, extras = stamp.read_text().split("|")[:2]
    flags = [f"--{e}" for e in ("test", "train", "bench") if e in extras.split(",")]
    before = stamp.stat().st_mtime
    r = subprocess.run(["bash", str(SH), *flags], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "already installed" in r.stderr
    assert stamp.stat().st_mtime == before
