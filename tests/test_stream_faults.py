"""The stream as a service under faults, with real pieces: signals to a real subprocess (twice,
and right at start), a corrupt video file made here, a folder changed while streaming, an HTTP
server that is killed and restarted, no camera, unreachable --target-fps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
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


# -- defaults and validation ------------------------------------------------------------------


def run_stream(*args, env=None, timeout=120, cwd=None):
    e = dict(os.environ)
    e.pop("DISPLAY", None)
    e.pop("WAYLAND_DISPLAY", None)
    e.pop("INVOCATION_ID", None)
    e.update(env or {})
    return subprocess.run([*PY, "stream", *args], capture_output=True, text=True, env=e, timeout=timeout,
                          cwd=str(cwd or REPO))


def test_no_output_named_runs_headless_and_says_how_to_watch():
    r = run_stream("--source", "demo", "--width", "48", "--height", "32", "--duration", "2.5", "--log-interval", "0.5")
    assert r.returncode == 0, r.stderr
    assert "no output named and no display: running headless" in r.stderr and "--http 8080" in r.stderr
    stats = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith('{"event": "stats"')]
    assert len(stats) >= 2 and all("output_fps" in s and "power_w" in s for s in stats)
    assert any(s["output_fps"] > 0 for s in stats)


def test_design_card_command_without_camera_is_one_line_and_nonzero():
    r = run_stream("--camera", "97", "--scale", "2")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 4 and len(lines) == 1 and "/dev/video97" in lines[0], r.stderr


def test_absent_camera_is_waited_for_with_backoff_then_one_error():
    t0 = time.monotonic()
    r = run_stream("--camera", "97", "--scale", "2", "--camera-wait", "2")
    took = time.monotonic() - t0
    assert r.returncode == 4 and took >= 2.0
    retries = [ln for ln in r.stderr.splitlines() if "retrying in" in ln]
    assert len(retries) >= 2 and "retrying in 0.5 s" in retries[0] and "retrying in 1.0 s" in retries[1]
    assert r.stderr.strip().splitlines()[-1].startswith("edge-sr stream: error: camera /dev/video97 not found")


def test_camera_that_appears_while_waiting_is_opened():
    from edge_sr.errors import DeviceError
    from edge_sr.sources import ReconnectingSource

    tries = []

    class Cap:
        def read(self):
            return True, np.zeros((8, 8, 3), np.uint8)

        def release(self):
            pass

    def opener():
        tries.append(time.monotonic())
        if len(tries) < 4:
            raise DeviceError("camera /dev/video0 not found: plug it in")
        return Cap()

    src = ReconnectingSource("camera /dev/video0", opener)
    src.backoff_start_s = 0.05
    src.open(wait_s=30)
    assert len(tries) == 4 and src.read(0.1) is not None
    gaps = np.diff(tries)
    assert gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5  # backoff grows
    # a stop request ends the wait at once
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    src2 = ReconnectingSource("camera /dev/video9", lambda: (_ for _ in ()).throw(DeviceError("absent")))
    t0 = time.monotonic()
    src2.open(wait_s=float("inf"), stop=stop)
    assert time.monotonic() - t0 < 3.0 and src2._cap is None


def test_every_bad_value_is_one_line(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('source = "demo"\nside-by-side = "false"\nfps = true\noutput = 5\nwidth = 1e9\nheight = 48\n')
    r = run_stream("--config", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 4, r.stderr
    assert all(ln.startswith("edge-sr stream: error: config key ") for ln in lines)
    for key in ("'side-by-side' = 'false': must be true or false", "'fps' = True: must be a number",
                "'output' = 5: must be text", "'width' = 1000000000.0: must be a whole number"):
        assert any(key in ln for ln in lines), (key, lines)
    r = run_stream("--source", "demo", "--http", "70000", "--fps", "-5", "--threads", "-3", "--log-interval", "0.001",
                   "--listen", "not a host!")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 5, r.stderr
    for flag in ("--http: must be a TCP port", "--fps: must be between 0 and 1000, got -5",
                 "--threads: must be between 0 and 1024", "--log-interval: must be between 0.1 and 86400",
                 "--listen: must be an IP address"):
        assert any(flag in ln for ln in lines), (flag, lines)
    r = run_stream("--source", "demo", "--width", "1e9")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--width: invalid int value: '1e9'" in r.stderr
    cfg.write_text('width = 100000\nheight = 48\nsource = "demo"\n')
    r = run_stream("--config", str(cfg))
    assert r.returncode == 2 and "config key 'width': must be between 8 and 16384" in r.stderr


def test_config_with_a_token_must_be_owner_only(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('source = "demo"\nauth-token = "abcdefghijklmnopqrstuvwxyz"\nhttp = 0\nauth = true\nframes = 2\n')
    os.chmod(cfg, 0o644)
    r = run_stream("--config", str(cfg))
    assert r.returncode == 2 and "chmod 600" in r.stderr
    os.chmod(cfg, 0o600)
    r = run_stream("--config", str(cfg), "--width", "32", "--height", "24")
    assert r.returncode == 0, r.stderr
    assert "access token: auth-token in" in r.stderr


def test_auth_makes_a_token_file_once_owner_only(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    r = run_stream("--source", "demo", "--width", "32", "--height", "24", "--http", "0", "--auth", "--frames", "2",
                   env=env)
    assert r.returncode == 0, r.stderr
    f = tmp_path / "cfg" / "edge-sr" / "http-token"
    assert f.stat().st_mode & 0o777 == 0o600 and len(f.read_text().strip()) >= 16
    tok = f.read_text()
    r = run_stream("--source", "demo", "--width", "32", "--height", "24", "--http", "0", "--auth", "--frames", "2",
                   env=env)
    assert r.returncode == 0 and f.read_text() == tok


def test_listening_beyond_loopback_prints_real_addresses_and_warns_without_auth():
    r = run_stream("--source", "demo", "--width", "32", "--height", "24", "--http", "0", "--listen", "0.0.0.0",
                   "--frames", "2")
    assert r.returncode == 0, r.stderr
    watch = [ln for ln in r.stderr.splitlines() if ln.startswith("watch on: ")]
    assert watch and "0.0.0.0" not in watch[0]
    from edge_sr.mjpeg import interface_addresses

    v4 = [a for a in interface_addresses() if ":" not in a]
    assert all(f"http://{a}:" in watch[0] for a in v4)
    assert "without --auth" in r.stderr


# -- faults in the source ---------------------------------------------------------------------


def corrupt_video(path: Path, n: int = 60) -> Path:
    from edge_sr.scene import render_scene

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(n):
        w.write(render_scene(i * 0.1, 48, 64))
    w.release()
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * 0.4), int(len(data) * 0.6)
    data[a:b] = np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_decode_errors_are_skipped_and_counted_the_stream_goes_on(tmp_path):
    from edge_sr.sources import EndOfStream, VideoFileSource

    path = corrupt_video(tmp_path / "bad.avi")
    cap = cv2.VideoCapture(str(path))
    plain = 0
    while cap.read()[0]:
        plain += 1
    assert plain < 55  # OpenCV alone stops at the damage
    src = VideoFileSource(path).open()
    got = 0
    with pytest.raises(EndOfStream):
        while True:
            if src.read() is not None:
                got += 1
    assert got > plain and src.skipped > 0 and got + src.skipped == 60
    r = run_stream("--source", str(path), "--no-output")
    assert r.returncode == 0, r.stderr
    assert "undecodable frames skipped" in r.stdout and f"{got} frames" in r.stdout


def test_folder_followed_while_streaming(tmp_path):
    """A file deleted while streaming stopped the stream; new files were never taken."""
    from edge_sr.scene import render_scene
    from edge_sr.sinks import Sink
    from edge_sr.sources import ImageFolderSource
    from edge_sr.stream import Stream
    from edge_sr.telemetry.report import Telemetry
    from test_stream import ZeroResidual

    d = tmp_path / "in"
    d.mkdir()

    def put(i):
        tmp = tmp_path / f"{i:03d}.png"
        cv2.imwrite(str(tmp), render_scene(i, 24, 32))
        os.replace(tmp, d / tmp.name)  # written elsewhere, renamed in

    for i in range(4):
        put(i)
    seen = []

    class Slow(Sink):
        def write(self, frame):
            seen.append(frame)
            time.sleep(0.15)

    src = ImageFolderSource(d, watch=True)
    src.relist_s = 0.05
    stream = Stream(src.open(), ZeroResidual(), [Slow()], Telemetry(60.0))
    th = threading.Thread(target=stream.run, daemon=True)
    th.start()
    time.sleep(0.2)
    (d / "003.png").unlink()  # deleted before its turn
    put(5)
    put(6)
    (d / "007.png").write_bytes(b"not an image")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen) < 5:
        time.sleep(0.05)
    time.sleep(0.5)
    put(8)  # after everything was done: --watch waits for more
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen) < 6:
        time.sleep(0.05)
    stream.stop()
    th.join(10)
    assert not th.is_alive() and len(seen) == 6  # 0 1 2 5 6 8 (2 may be taken before 3 vanished: never 3)
    assert src.skipped >= 1  # 007 (not an image), maybe 003


@pytest.mark.slow
def test_unreachable_target_fps_falls_back_to_the_fastest(tmp_path):
    r = run_stream("--source", "demo", "--target-fps", "1000", "--width", "160", "--height", "120", "--frames", "2",
                   "--no-output", env={"EDGE_SR_CACHE": str(tmp_path)}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "no model sustains 1000 FPS" in r.stderr and "using the fastest" in r.stderr
    assert "2 frames" in r.stdout


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.slow
def test_http_source_server_killed_and_restarted_is_reconnected(tmp_path):
    """A real MJPEG-over-HTTP server (another edge-sr on 127.0.0.1) read through OpenCV's FFmpeg:
    killed, restarted on the same port; the consumer reconnects with backoff and goes on."""
    port = _free_port()
    server_args = ["--source", "demo", "--width", "48", "--height", "32", "--model", "compact", "--http", str(port),
                   "--log-interval", "60"]
    server = start_stream(server_args)
    consumer = None
    try:
        time.sleep(3)
        consumer = start_stream(["--source", f"http://127.0.0.1:{port}/stream.mjpg", "--open-timeout", "2",
                                 "--camera-wait", "20", "--model", "compact", "--no-output", "--log-interval", "0.5"])
        wait_stats(consumer)
        server.kill()
        server.wait()
        time.sleep(1.5)
        server = start_stream(server_args)
        deadline = time.monotonic() + 60
        reopened = False
        while time.monotonic() < deadline and not reopened:
            line = consumer.stderr.readline()
            reopened = "reopened (reconnect 1)" in line
        assert reopened, "no reconnect"
        wait_stats(consumer)  # frames flow again
        consumer.send_signal(signal.SIGTERM)
        out, err = consumer.communicate(timeout=30)
        assert consumer.returncode == 0, err
        assert '"reconnects": 1' in err
    finally:
        for p in (server, consumer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
