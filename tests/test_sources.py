"""Sources: URI dispatch, the CSI pipeline string, files and folders, reconnect with backoff,
picamera2 frames, clear errors for devices that are not there."""

from __future__ import annotations

import logging
import sys
import types

import cv2
import numpy as np
import pytest

from edge_sr import sources
from edge_sr.errors import DeviceError, EdgeSRError
from edge_sr.scene import render_scene
from edge_sr.sources import (DemoSource, EndOfStream, ImageFolderSource, PicamSource, ReconnectingSource,
                             VideoFileSource, camera_device, csi_pipeline, open_source, picam_frame_to_bgr, redact_url)


def write_video(path, n=8, size=(64, 48), fourcc="MJPG", fps=10.0):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(render_scene(i * 0.5, size[1], size[0]))
    w.release()
    return path


def test_csi_pipeline_matches_the_documented_one():
    assert csi_pipeline() == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,format=NV12,framerate=30/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink max-buffers=1 drop=true")
    p = csi_pipeline(1, 640, 480, 59.94, flip=2)
    assert "sensor-id=1" in p and "width=640,height=480" in p and "framerate=59940/1000" in p
    assert "nvvidconv flip-method=2 !" in p
    with pytest.raises(EdgeSRError, match="flip"):
        csi_pipeline(flip=9)


def test_dispatch_by_uri(tmp_path):
    assert isinstance(open_source("demo"), DemoSource)
    assert open_source("demo", 64, 48, fps=0).live is False
    assert isinstance(open_source("csi://1"), ReconnectingSource)
    assert isinstance(open_source("picam://0"), PicamSource)
    assert isinstance(open_source("rtsp://user:pw@10.0.0.1/stream"), ReconnectingSource)
    assert open_source("rtsp://user:pw@10.0.0.1/stream").name == "rtsp://user:***@10.0.0.1/stream"
    assert isinstance(open_source("/dev/video3"), ReconnectingSource)
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", render_scene(0, 16, 16))[1].tobytes())
    assert isinstance(open_source(str(tmp_path)), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path / "a.png")), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path / "clip.mp4")), VideoFileSource)  # error comes at open
    with pytest.raises(EdgeSRError, match="source not found"):
        open_source(str(tmp_path / "nothing"))
    with pytest.raises(EdgeSRError, match="csi://N"):
        open_source("csi://x")
    with pytest.raises(EdgeSRError, match="both"):
        open_source("demo", width=64)


def test_camera_device_forms():
    if sys.platform.startswith("linux"):
        assert camera_device("0") == camera_device(0) == camera_device("v4l2://0") == "/dev/video0"
    assert camera_device("/dev/video2") == "/dev/video2"
    assert camera_device("v4l2:///dev/video2") == "/dev/video2"
    assert redact_url("rtsp://admin:s3cret@cam/h264") == "rtsp://admin:***@cam/h264"


def test_missing_camera_names_the_device_and_what_to_check():
    with pytest.raises(DeviceError) as e:
        open_source("/dev/video97").open()
    assert "/dev/video97" in str(e.value) and "v4l2-ctl --list-devices" in str(e.value)
    assert e.value.exit_code == 4


def test_csi_without_gstreamer_is_a_clear_error():
    if sources.opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(DeviceError, match="GStreamer"):
        open_source("csi://0").open()


def test_network_stream_that_does_not_answer():
    with pytest.raises(DeviceError, match=r"could not open stream rtsp://u:\*\*\*@127.0.0.1:9/"):
        open_source("rtsp://u:pw@127.0.0.1:9/none", timeout_s=2).open()


def test_video_file_every_frame_then_end_and_loop(tmp_path):
    path = write_video(tmp_path / "clip.avi", n=6)
    with open_source(str(path)) as src:
        assert not src.live and src.fps == pytest.approx(10.0)
        frames = []
        with pytest.raises(EndOfStream):
            while True:
                frames.append(src.read())
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    with open_source(str(path), loop=True) as src:
        got = [src.read() for _ in range(15)]
    assert all(f is not None for f in got)
    assert np.array_equal(got[0], got[6])  # back to the start


def test_unreadable_video_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(EdgeSRError, match="bad.mp4"):
        open_source(str(bad)).open()
    with pytest.raises(EdgeSRError, match="not found"):
        open_source(str(tmp_path / "gone.mp4")).open()


def test_image_folder_keeps_one_frame_size(tmp_path):
    for i, (h, w) in enumerate([(40, 60), (80, 100), (40, 60)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), render_scene(i, h, w))
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((40, 60), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(str(tmp_path)) as src:
        frames = [src.read() for _ in range(4)]
        with pytest.raises(EndOfStream):
            src.read()
    assert all(f.shape == (40, 60, 3) for f in frames)


def test_demo_unpaced_is_deterministic_by_frame_index():
    src = DemoSource(64, 48, fps=0).open()
    a = [src.read() for _ in range(3)]
    assert np.array_equal(a[2], render_scene(2 / 30, 48, 64))


class _FakeCapture:
    """A capture whose frames stop after ``n_ok`` reads (a camera unplugged)."""

    def __init__(self, n_ok):
        self.n_ok, self.released = n_ok, False

    def read(self):
        if self.n_ok > 0:
            self.n_ok -= 1
            return True, np.zeros((8, 8, 3), np.uint8)
        return False, None

    def release(self):
        self.released = True


def test_camera_drop_is_reopened_with_backoff(caplog):
    plan = [_FakeCapture(2), DeviceError("gone"), DeviceError("gone"), _FakeCapture(5)]
    opened = []

    def opener():
        item = plan.pop(0)
        if isinstance(item, Exception):
            raise item
        opened.append(item)
        return item

    src = ReconnectingSource("camera /dev/videoX", opener)
    src.backoff_start_s = src._backoff_s = 0.0  # no real waiting here; the doubling is checked below
    sleeps = []
    src._sleep = sleeps.append
    src.open()
    got = []
    with caplog.at_level(logging.WARNING, logger="edge_sr.sources"):
        for _ in range(12):  # 2 frames, 3 failed reads, 2 failed reopens, reopen + 5 frames
            got.append(src.read(timeout_s=0.01))
    assert sum(f is not None for f in got) == 7  # 2 before the drop, 5 after
    assert src.reconnects == 1 and opened[0].released
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "lost" in msgs and "reopen failed" in msgs and "reopened" in msgs


def test_backoff_doubles_and_is_capped():
    src = ReconnectingSource("x", lambda: _FakeCapture(0))
    src.backoff_start_s, src.backoff_max_s = 1.0, 5.0
    src._backoff_s = 1.0
    waits = []
    for _ in range(5):
        waits.append(src._backoff_s)
        src._schedule_retry("test")
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert src.read(timeout_s=0.0) is None  # waiting: "no frame yet", not an error


def test_picam_rgb888_is_bgr_and_row_padding_is_stripped():
    arr = np.zeros((4, 8, 3), np.uint8)  # stride of 8 pixels for a 6-pixel-wide image
    arr[:, :6] = (10, 20, 30)  # B, G, R in memory
    arr[:, 6:] = 255  # padding
    out = picam_frame_to_bgr(arr, 6)
    assert out.shape == (4, 6, 3) and out.flags["C_CONTIGUOUS"]
    assert tuple(out[0, 0]) == (10, 20, 30) and out.max() == 30
    with pytest.raises(DeviceError):
        picam_frame_to_bgr(np.zeros((4, 6), np.uint8), 6)


def test_picam_source_with_a_stand_in_module(monkeypatch):
    """picamera2 cannot run here: a stand-in checks our calls and frame handling."""
    calls = {}

    class Picamera2:
        def __init__(self, num):
            calls["num"] = num

        def create_video_configuration(self, main, controls=None):
            calls["main"], calls["controls"] = main, controls
            return {"main": main}

        def configure(self, cfg):
            calls["configured"] = cfg

        def start(self):
            calls["started"] = True

        def capture_array(self, name):
            return np.full((480, 672, 3), 7, np.uint8)  # 640 wide, padded to 672

        def stop(self):
            calls["stopped"] = True

        def close(self):
            calls["closed"] = True

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    with open_source("picam://1", fps=25) as src:
        f = src.read()
    assert f.shape == (480, 640, 3)
    assert calls["num"] == 1 and calls["main"] == {"size": (640, 480), "format": "RGB888"}
    assert calls["controls"] == {"FrameRate": 25.0} and calls["stopped"] and calls["closed"]
