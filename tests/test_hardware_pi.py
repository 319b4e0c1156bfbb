"""On a Raspberry Pi (marker `pi`; skipped elsewhere with the reason): the PMIC power reading (Pi 5), ONNX
Runtime on the board's CPU (FP32 and INT8), the camera module through picamera2.
Run there with `.venv/bin/python -m pytest -m pi -rs tests/test_hardware_pi.py`."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli, textured_bgr

pytestmark = pytest.mark.pi
WEIGHTS = REPO / "edge_sr" / "weights"


def _model() -> str:
    p = Path("/proc/device-tree/model")
    return p.read_text(errors="ignore").strip("\x00\n ") if p.exists() else ""


def test_pmic_power_is_positive():
    """Pi 5: `vcgencmd pmic_read_adc` rails summed (an estimate, no input channel): a plausible figure."""
    if "Raspberry Pi 5" not in _model():
        pytest.skip(f"{_model() or 'this board'}: the PMIC ADC readout is a Raspberry Pi 5 feature")
    from edge_sr.telemetry.power import PiPmicMeter, open_power_meter

    meter = PiPmicMeter.find()
    assert meter is not None, "vcgencmd pmic_read_adc gave no rail with both a current and a voltage"
    w = meter.read_w()
    assert w is not None and 0.5 < w < 30, w
    auto = open_power_meter("auto")
    try:
        assert auto.name == "pi5-pmic"
    finally:
        auto.close()


def test_onnxruntime_bench_on_the_board(tmp_path):
    """`edge-sr bench` of the shipped FP32 and INT8 compact models at 320x240 on the board's cores."""
    fp32, int8 = WEIGHTS / "dcscn_compact_x2.onnx", WEIGHTS / "dcscn_compact_x2.int8.onnx"
    r = run_cli("bench", "--model", str(fp32), "--model", str(int8), "--size", "320x240", "--seconds", "2",
                "--runs", "5", "--no-plot", "-o", str(tmp_path / "pi"), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "pi.json").read_text())
    assert doc["device"]["machine"] == platform.machine()
    rows = [row for row in doc["results"] if row.get("kind") == "edge-sr"]
    assert sorted(row["precision"] for row in rows) == ["fp32", "int8"], rows
    for row in rows:
        assert row["backend"] == "onnxruntime" and row["fps"] > 0 and row["runs"] >= 5


def test_int8_runs_close_to_fp32_on_arm():
    """The INT8 Q/DQ file through ONNX Runtime's ARM kernels stays close to FP32 on a colour frame."""
    from edge_sr.backends import open_upscaler

    frame = textured_bgr(120, 160)
    with open_upscaler(WEIGHTS / "dcscn_compact_x2.onnx") as f, open_upscaler(WEIGHTS / "dcscn_compact_x2.int8.onnx") as q:
        a, b = f.upscale(frame), q.upscale(frame)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) > 38


@pytest.mark.camera
def test_picamera2_gives_a_frame():
    """The camera module through picamera2 (`picam://0`): a 640x480 BGR frame."""
    pytest.importorskip("picamera2", reason="picamera2 not importable: sudo apt install python3-picamera2")
    from edge_sr.errors import EdgeSRError
    from edge_sr.sources import open_source

    try:
        src = open_source("picam://0", width=640, height=480)
        src.open()
    except EdgeSRError as exc:
        if "list-cameras" in str(exc):
            pytest.skip(f"no camera module answers: {exc}")
        raise
    try:
        frame = src.read(timeout_s=5.0)
    finally:
        src.close()
    assert frame is not None and frame.shape == (480, 640, 3) and frame.dtype == np.uint8
