"""On a Jetson (marker `jetson`; skipped elsewhere with the reason): real board power, the README's engine
recipe, the CSI camera. Run there with `.venv/bin/python -m pytest -m "jetson" -rs tests/test_hardware_jetson.py`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_tensorrt, run_cli

pytestmark = pytest.mark.jetson
ONNX = REPO / "edge_sr" / "weights" / "dcscn_compact_x2.onnx"


def _first_reading(meter, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        w = meter.read_w()
        if w is not None:
            return w
        time.sleep(0.2)
    return None


def test_auto_meter_reads_a_positive_board_power():
    """What `stream` reports as power: the INA3221 sysfs rails or tegrastats, a plausible board figure."""
    from edge_sr.telemetry.power import open_power_meter

    meter = open_power_meter("auto")
    try:
        assert meter.name in ("ina3221", "tegrastats"), f"on a Jetson the auto meter is {meter.name}"
        w = _first_reading(meter)
    finally:
        meter.close()
    assert w is not None and 0.5 < w < 120, (meter.name, w, meter.detail)


def test_ina3221_sysfs_and_tegrastats_agree():
    """The two Jetson meters read the same board: both positive, within a factor of 1.5 of each other."""
    from edge_sr.telemetry.power import Ina3221Meter, TegrastatsMeter

    ina = Ina3221Meter.find("/")
    if ina is None:
        pytest.skip("no INA3221 channels readable under /sys/bus/i2c/devices (permissions or JetPack layout)")
    w_ina = _first_reading(ina)
    assert w_ina is not None and w_ina > 0.5, (w_ina, ina.rails)
    if not TegrastatsMeter.available():
        pytest.skip("tegrastats not on PATH: only the sysfs meter checked")
    tg = TegrastatsMeter(interval_ms=200)
    try:
        assert tg.wait_first(5.0), "tegrastats printed no power rail in 5 s"
        w_tg = tg.read_w()
    finally:
        tg.close()
    assert w_tg is not None and w_tg > 0.5
    assert 1 / 1.5 < w_tg / w_ina < 1.5, (w_ina, ina.detail, w_tg, tg.detail)


def test_readme_recipe_static_engine_and_a_720p_source(tmp_path):
    """README's recipe: an FP16 engine built with --size 640x480, then a 1280x720 source (the CSI default)
    streams through it, and its pixels equal ONNX Runtime's on the same frame."""
    require_tensorrt()
    from edge_sr.backends import open_upscaler
    from edge_sr.scene import render_scene

    engine = tmp_path / "compact_fp16.engine"
    r = run_cli("build-engine", "--onnx", str(ONNX), "--precision", "fp16", "--size", "640x480", "-o", str(engine),
                timeout=1800)
    assert r.returncode == 0 and engine.is_file(), r.stderr[-2000:]
    r = run_cli("stream", "--source", "demo", "--width", "1280", "--height", "720", "--model", str(engine),
                "--frames", "10", "--no-output", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    frame = render_scene(0.0, 720, 1280)
    with open_upscaler(engine) as trt, open_upscaler(ONNX) as ort:
        a, b = trt.upscale(frame), ort.upscale(frame)
    assert a.shape == b.shape == (1440, 2560, 3)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) > 40


def _csi_sensors() -> list[str]:
    names = [(p.parent.name, (p.read_text(errors="ignore").strip())) for p in Path("/sys/class/video4linux").glob("video*/name")]
    return [n for _, n in names if "vi-output" in n]  # Jetson's CSI capture nodes: "vi-output, imx219 9-0010"


@pytest.mark.camera
def test_csi_camera_gives_a_1280x720_frame():
    if not _csi_sensors():
        pytest.skip("no CSI sensor (no vi-output node in /sys/class/video4linux)")
    from edge_sr.sources import open_source

    with open_source("csi://0") as src:
        frame = None
        deadline = time.monotonic() + 10
        while frame is None and time.monotonic() < deadline:
            frame = src.read(timeout_s=1.0)
    assert frame is not None, "csi://0 gave no frame in 10 s"
    assert frame.shape == (720, 1280, 3) and frame.dtype == np.uint8
