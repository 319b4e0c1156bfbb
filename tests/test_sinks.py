"""Outputs: video files that always play, the MJPEG server with real HTTP clients (a slow viewer
drops frames, not the pipeline), clear errors for bad outputs."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading

import cv2
import numpy as np
import pytest

from edge_sr.errors import EdgeSRError
from edge_sr.scene import render_scene
from edge_sr.sinks import (MjpegServer, NullSink, VideoFileSink, open_sink, parse_http_spec, side_by_side)


def count_frames_cv2(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def ffprobe_frames(path) -> int | None:
    if shutil.which("ffprobe") is None:
        return None
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.parametrize("name", ["out.mp4", "out.avi", "out.mkv"])
def test_video_file_written_to_temp_then_renamed_and_plays(tmp_path, name):
    dest = tmp_path / name
    sink = VideoFileSink(dest, fps=15)
    for i in range(12):
        sink.write(render_scene(i / 15, 48, 64))
        assert not dest.exists()  # only the temporary exists while writing
    sink.write(render_scene(1.0, 96, 128))  # another size: resized, not a broken file
    sink.close()
    assert dest.exists() and [p.name for p in tmp_path.iterdir()] == [name]
    assert count_frames_cv2(dest) == 13
    n = ffprobe_frames(dest)
    if n is not None:
        assert n == 13


def test_ffprobe_present_or_skip(tmp_path):
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (Debian package ffmpeg): frame counts checked with OpenCV only")


def test_video_file_without_frames_leaves_nothing(tmp_path):
    VideoFileSink(tmp_path / "empty.mp4", fps=10).close()
    assert list(tmp_path.iterdir()) == []
    s = VideoFileSink(tmp_path / "aborted.mp4", fps=10)
    s.write(render_scene(0, 48, 64))
    s.abort()
    assert list(tmp_path.iterdir()) == []


def test_bad_file_outputs(tmp_path):
    with pytest.raises(EdgeSRError, match="does not exist"):
        open_sink(str(tmp_path / "missing" / "out.mp4"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeSRError):
        open_sink(str(tmp_path / "file" / "out.mp4"))
    with pytest.raises(EdgeSRError, match="unknown output"):
        open_sink(str(tmp_path / "out.gif"))
    with pytest.raises(EdgeSRError, match="4 characters"):
        VideoFileSink(tmp_path / "o.avi", 10, fourcc="MJ")
    assert list(p.name for p in tmp_path.iterdir()) == ["file"]


def test_display_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgeSRError, match="no display"):
        open_sink("display://0")
    assert isinstance(open_sink("null"), NullSink)


def test_parse_http_spec():
    assert parse_http_spec("http://0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_http_spec("http://:9000", "127.0.0.1") == ("127.0.0.1", 9000)
    assert parse_http_spec("http://[::1]:9000/") == ("::1", 9000)
    assert parse_http_spec("http://localhost") == ("localhost", 8080)
    with pytest.raises(EdgeSRError):
        parse_http_spec("http://host:port")


def test_side_by_side_labels_and_size():
    lr = render_scene(0, 48, 64)
    sr = cv2.resize(lr, (128, 96))
    out = side_by_side(lr, sr)
    assert out.shape == (96, 256, 3)
    assert not np.array_equal(out[:, :128], cv2.resize(lr, (128, 96), interpolation=cv2.INTER_CUBIC))  # labelled


def _read_mjpeg_frames(conn_resp, n):
    """Parse n parts of a multipart/x-mixed-replace response."""
    frames = []
    while len(frames) < n:
        line = conn_resp.readline()
        if not line:
            break
        if line.strip() == b"--frame":
            headers = {}
            while True:
                h = conn_resp.readline().strip()
                if not h:
                    break
                k, v = h.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            data = conn_resp.read(int(headers["content-length"]))
            frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return frames


@pytest.fixture
def server():
    s = MjpegServer("127.0.0.1", 0, metrics=lambda: "edge_sr_fps{stage=\"output\"} 12\n",
                    stats=lambda: json.dumps({"last": {"output_fps": 12}}))
    yield s
    s.close()


def _publisher(server, stop, frame):
    def run():
        while not stop.is_set():
            server.write(frame)
            stop.wait(0.01)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_mjpeg_page_stream_metrics_stats(server):
    yy, xx = np.mgrid[0:48, 0:64]
    frame = np.stack([xx * 4, yy * 5, np.full_like(xx, 90)], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
    stop = threading.Event()
    _publisher(server, stop, frame)
    try:
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200 and b'<img id="live" src="/stream.mjpg"' in r.read()
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/plain")
        assert b"edge_sr_fps" in r.read()
        c.request("GET", "/stats")
        assert json.loads(c.getresponse().read())["last"]["output_fps"] == 12
        c.request("GET", "/nope")
        r = c.getresponse()
        r.read()
        assert r.status == 404
        c.close()
        s = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        s.request("GET", "/stream.mjpg")
        r = s.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        frames = _read_mjpeg_frames(r, 3)
        assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
        assert np.abs(frames[0].astype(int) - frame.astype(int)).mean() < 4  # JPEG of the frame
        s.close()
    finally:
        stop.set()


def test_slow_viewer_drops_frames_not_the_pipeline(server):
    big = render_scene(0, 480, 640)
    # a viewer that connects and then does not read at all
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    # a fast viewer alongside
    fast = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    fast.request("GET", "/stream.mjpg")
    done = threading.Event()

    def publish():
        for i in range(300):
            f = big.copy()
            cv2.putText(f, str(i), (10, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, (255, 255, 255), 8)
            server.write(f)
        done.set()

    th = threading.Thread(target=publish, daemon=True)
    th.start()
    resp = fast.getresponse()
    got = _read_mjpeg_frames(resp, 3)
    th.join(timeout=30)  # a hang guard only: publishing must not wait for the stalled viewer
    assert done.is_set(), "publishing blocked on a slow viewer"
    assert len(got) == 3
    assert server.hub.encoded < 300  # frames nobody had time for were never even encoded
    assert server.viewers == 2
    slow.close()
    fast.close()


def test_port_in_use_is_one_clear_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(EdgeSRError, match=f"127.0.0.1:{port}: the port is in use"):
            MjpegServer("127.0.0.1", port)
    finally:
        busy.close()


def test_binds_to_loopback_by_default():
    s = open_sink("http://:0")
    try:
        assert s.host == "127.0.0.1"
    finally:
        s.close()


@pytest.mark.slow
def test_page_shows_the_stream_in_headless_chromium(server, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser (Debian package chromium)")
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, :, 1] = 255  # pure green: easy to find in the screenshot
    stop = threading.Event()
    _publisher(server, stop, frame)
    shot = tmp_path / "page.png"
    try:
        r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run",
                            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,600",
                            f"--screenshot={shot}", "--virtual-time-budget=3000", server.url],
                           capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
    assert shot.exists(), r.stderr[-2000:]
    img = cv2.imread(str(shot))
    green = (img[..., 1] > 200) & (img[..., 0] < 60) & (img[..., 2] < 60)
    assert green.sum() > 0.5 * 320 * 240  # the <img> shows the stream's frame
