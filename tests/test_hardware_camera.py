"""With a V4L2 camera (marker `camera`; skipped without one, with the reason): a frame through
edge_sr.sources, and a short headless stream through the shipped model.
Run with `.venv/bin/python -m pytest -m camera -rs tests/test_hardware_camera.py`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytestmark = pytest.mark.camera
# V4L2 nodes that are not cameras a user plugs in: codecs, ISPs, the Pi's CSI receivers, Jetson's raw CSI nodes
NOT_A_CAMERA = re.compile(r"codec|isp|pispbe|hevc|rp1-cfe|unicam|vi-output|scaler|encoder|decoder", re.I)


def _capture_cameras() -> list[str]:
    out = []
    for dev in sorted(Path("/dev").glob("video*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        name_file = Path("/sys/class/video4linux") / dev.name / "name"
        name = name_file.read_text(errors="ignore").strip() if name_file.exists() else ""
        index_file = Path("/sys/class/video4linux") / dev.name / "index"
        index = index_file.read_text().strip() if index_file.exists() else "0"
        if not NOT_A_CAMERA.search(name) and index == "0":  # index 0: a camera's capture node, not its metadata node
            out.append(str(dev))
    return out


@pytest.fixture(scope="module")
def camera():
    cams = _capture_cameras()
    if not cams:
        pytest.skip("no USB/V4L2 capture camera (only codec/ISP/CSI nodes under /dev/video*)")
    return cams[0]


def test_camera_gives_a_frame(camera):
    from edge_sr.sources import open_source

    with open_source(camera) as src:
        frame, deadline = None, time.monotonic() + 10
        while frame is None and time.monotonic() < deadline:
            frame = src.read(timeout_s=1.0)
    assert frame is not None, f"{camera} gave no frame in 10 s"
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and min(frame.shape[:2]) >= 120


def test_stream_from_the_camera_headless(camera):
    """`edge-sr stream` from the camera through the compact model for 20 frames, no output: exits 0."""
    r = run_cli("stream", "--source", camera, "--model", "compact", "--frames", "20", "--no-output", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
