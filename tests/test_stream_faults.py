"""The stream as a service under faults, with real pieces: signals to a real subprocess (twice,
and right at start), a corrupt video file made here, a folder changed while streaming, an HTTP
server that is killed and restarted, no camera, unreachable --target-fps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import REPO

PY = [sys.executable, "-m", "edge_sr"]


def frames_in(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def start_stream(args, cwd=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen([*PY, "stream", *args], cwd=str(cwd or REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)


def wait_stats(proc, timeout_s=60.0) -> None:
    """Read stderr until a stats line with frames appears (frames are flowing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"stream exited early rc={proc.returncode}")
        if '"event": "stats"' in line and '"frames_total": 0,' not in line:
            return
    raise AssertionError("no stats line in time")


@pytest.mark.slow
def test_second_sigint_during_finalisation_keeps_the_recording(tmp_path):
    """A second Ctrl-C (and more) while the outputs are finalised once aborted the process
    (rc 134, 'terminate called without an active exception') and lost the recording."""
    dest = tmp_path / "rec.avi"
    proc = start_stream(["--source", "demo", "--width", "96", "--height", "64", "--model", "compact", "--scale", "2",
                         "--output", str(dest), "--log-interval", "0.3"])
    try:
        wait_stats(proc)
        proc.send_signal(signal.SIGINT)
        for _ in range(40):  # a user hammering Ctrl-C, then systemd's SIGTERM
            time.sleep(0.02)
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGINT)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "terminate called" not in err
    assert dest.exists() and frames_in(dest) > 0, err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.avi"]  # no temporary left


@pytest.mark.slow
@pytest.mark.parametrize("delay_s", [0.0, 0.002])
def test_sigterm_right_at_start_leaves_no_hidden_part(tmp_path, delay_s):
    """SIGTERM as soon as the output's temporary exists: no 0-byte hidden .part stays behind."""
    dest = tmp_path / "rec.avi"
    proc = start_stream(["--source", "demo", "--width", "64", "--height", "48", "--model", "compact", "--scale", "2",
                         "--output", str(dest), "--http", "0"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".") for p in tmp_path.iterdir()):
                break
            time.sleep(0.0005)
        time.sleep(delay_s)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], ["rec.avi"]), left
    if left:
        assert frames_in(dest) > 0
