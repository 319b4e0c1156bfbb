"""The threaded stream and the `edge-sr stream` command: latest frame wins, drops counted, every
frame of a file processed, clean stop on SIGTERM with a playable video, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import REPO, run_cli

from edge_sr.backends import Upscaler
from edge_sr.errors import EdgeSRError
from edge_sr.scene import render_scene
from edge_sr.sinks import Sink, VideoFileSink
from edge_sr.sources import DemoSource, VideoFileSource
from edge_sr.stream import _EMPTY, LatestSlot, Stream, upscale_timed
from edge_sr.telemetry.report import Telemetry


class ZeroResidual(Upscaler):
    """The real Upscaler interface with a model whose residual is 0 (output = cv2 bicubic)."""

    scale = 2
    name = "zero"

    def __init__(self, fail_after: int | None = None, delay_s: float = 0.0):
        self.calls = 0
        self.fail_after = fail_after
        self.delay_s = delay_s

    def infer(self, y_lr_f32):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("model exploded")
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = y_lr_f32.shape
        return np.zeros((2 * h, 2 * w), np.float32)


class ListSink(Sink):
    def __init__(self, delay_s: float = 0.0):
        self.frames = []
        self.delay_s = delay_s
        self.closed = False

    def write(self, frame):
        if self.delay_s:
            time.sleep(self.delay_s)
        self.frames.append(frame)

    def close(self):
        self.closed = True


def test_latest_slot_replaces_and_counts_or_waits():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: dropped
    assert slot.get(0.01) == 2
    assert slot.get(0.01) is _EMPTY  # empty now
    slot.put(3)
    got = []
    th = threading.Thread(target=lambda: got.append(slot.put(4, wait=True)))
    th.start()
    th.join(0.2)
    assert th.is_alive()  # waits for room
    assert slot.get(1.0) == 3
    th.join(5)
    assert got == [False] and slot.get(1.0) == 4


def test_upscale_timed_reports_model_time_and_equals_bicubic():
    frame = render_scene(0, 24, 32)
    out, model_ms = upscale_timed(ZeroResidual(), frame)
    assert out.shape == (48, 64, 3) and model_ms is not None and model_ms >= 0
    bic = cv2.resize(frame.astype(np.float32), (64, 48), interpolation=cv2.INTER_CUBIC)
    assert np.abs(out.astype(float) - np.clip(bic, 0, 255)).max() <= 1


def test_file_source_every_frame_in_order(tmp_path):
    path = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(9):
        w.write(np.full((24, 32, 3), i * 25, np.uint8))
    w.release()
    sink = ListSink(delay_s=0.005)  # a slower output must not lose frames of a file
    tel = Telemetry(60.0)
    summary = Stream(VideoFileSource(path).open(), ZeroResidual(), [sink], tel).run()
    assert len(sink.frames) == 9 and sink.closed
    means = [f.mean() for f in sink.frames]
    assert means == sorted(means)  # in order
    assert summary["frames"] == 9 and summary["dropped_capture"] == 0 and summary["dropped_output"] == 0
    assert summary["stop_reason"] == "end of source"


def test_live_source_latest_frame_wins_and_capture_never_waits():
    src = DemoSource(32, 24, fps=200).open()  # a fast camera
    sink = ListSink(delay_s=0.05)  # a slow output (20 FPS)
    tel = Telemetry(60.0)
    summary = Stream(src, ZeroResidual(), [sink], tel, max_frames=8).run()
    assert summary["frames"] == 8
    assert summary["frames_captured"] > 2 * summary["frames"]  # capture kept going
    assert summary["dropped_capture"] + summary["dropped_output"] > 0  # and the excess was counted
    assert summary["stop_reason"] == "8 frames done"


def test_stop_from_another_thread_finalises_video(tmp_path):
    dest = tmp_path / "o.mp4"
    stream = Stream(DemoSource(32, 24, fps=50).open(), ZeroResidual(), [VideoFileSink(dest, 25)], Telemetry(60.0))
    threading.Timer(0.5, stream.stop).start()
    summary = stream.run()
    assert summary["frames"] > 0 and dest.exists()
    cap = cv2.VideoCapture(str(dest))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == summary["frames"]


def test_model_error_is_raised_and_outputs_are_finalised(tmp_path):
    dest = tmp_path / "o.avi"
    sink = VideoFileSink(dest, 10)
    stream = Stream(DemoSource(32, 24, fps=0).open(), ZeroResidual(fail_after=3), [sink], Telemetry(60.0))
    with pytest.raises(EdgeSRError, match="model exploded"):
        stream.run()
    assert dest.exists()  # the 3 good frames still play
    assert [p.name for p in tmp_path.iterdir()] == ["o.avi"]


# -- the command ------------------------------------------------------------------------------


def _stats_lines(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_cli_demo_to_video_file(tmp_path, tiny_checkpoint):
    dest = tmp_path / "out.mp4"
    r = run_cli("stream", "--source", "demo", "--width", "64", "--height", "48", "--model", str(tiny_checkpoint),
                "--scale", "2", "--output", str(dest), "--duration", "3", "--log-interval", "1",
                "--metrics-file", str(tmp_path / "m.jsonl"))
    assert r.returncode == 0, r.stderr
    recs = _stats_lines(r.stderr)
    stats = [x for x in recs if x["event"] == "stats"]
    assert stats and all("output_fps" in x and "model_fps" in x and "power_w" in x for x in stats)
    summary = [x for x in recs if x["event"] == "summary"][0]
    assert summary["frames"] > 0 and "model-only" in r.stdout
    cap = cv2.VideoCapture(str(dest))
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        assert f.shape == (96, 128, 3)
        n += 1
    assert n == summary["frames"]
    assert (tmp_path / "m.jsonl").read_text().count('"event": "stats"') >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "out.mp4"]  # no temporaries left


def test_cli_sigterm_stops_cleanly_and_video_plays(tmp_path, tiny_checkpoint):
    dest = tmp_path / "out.avi"
    proc = subprocess.Popen([sys.executable, "-m", "edge_sr", "stream", "--source", "demo", "--width", "64",
                             "--height", "48", "--model", str(tiny_checkpoint), "--output", str(dest),
                             "--side-by-side", "--log-interval", "0.5"],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline:  # wait for the first stats line: frames are flowing
            line = proc.stderr.readline()
            if '"event": "stats"' in line and '"frames_total": 0' not in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)  # a hang guard; the stop itself takes < 2 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "signal SIGTERM" in err
    cap = cv2.VideoCapture(str(dest))
    ok, f = cap.read()
    assert ok and f.shape == (96, 256, 3)  # side by side: bicubic | edge-sr


def test_cli_bad_inputs_one_line_each(tmp_path, tiny_checkpoint):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    ck = str(tiny_checkpoint)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 20)
    cases = [
        (["--source", str(junk), "--model", ck, "--no-output"], "cannot read video file"),
        (["--source", "http://127.0.0.1:9/x.mjpg", "--open-timeout", "2", "--model", ck, "--no-output"],
         "could not open stream"),
        (["--source", str(tmp_path / "none.mp4"), "--model", ck, "--no-output"], "not found"),
        (["--camera", "93", "--model", ck, "--no-output"], "/dev/video93"),
        (["--source", "demo", "--model", ck, "--scale", "3", "--no-output"], "x2, not x3"),
        (["--source", "demo", "--model", ck, "--http", str(port)], "in use"),
        (["--source", "demo", "--model", ck, "--output", str(tmp_path / "no" / "o.mp4")], "does not exist"),
        (["--camera", "93", "--scale", "2"], "/dev/video93"),  # the design card's command, no camera, no output
        (["--model", ck, "--no-output"], "give a source"),
    ]
    try:
        for args, expect in cases:
            r = run_cli("stream", *args)
            assert r.returncode != 0, args
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and expect in lines[0], (args, r.stderr)
    finally:
        busy.close()
    assert [p.name for p in tmp_path.iterdir()] == ["junk.mp4"]  # nothing half-written


def test_cli_toml_config(tmp_path, tiny_checkpoint):
    cfg = tmp_path / "stream.toml"
    cfg.write_text(f'source = "demo"\nwidth = 64\nheight = 48\nmodel = "{tiny_checkpoint}"\n'
                   f'output = ["{tmp_path / "c.avi"}"]\nframes = 3\nlog-interval = 1\n')
    r = run_cli("stream", "--config", str(cfg), "--frames", "2")  # the command line wins
    assert r.returncode == 0, r.stderr
    assert "2 frames" in r.stdout and (tmp_path / "c.avi").exists()
    cfg.write_text('source = "demo"\nno_such_option = 1\n')
    r = run_cli("stream", "--config", str(cfg))
    assert r.returncode == 2 and "unknown key 'no_such_option'" in r.stderr
    cfg.write_text("source = [\n")
    r = run_cli("stream", "--config", str(cfg))
    assert r.returncode == 2 and "not valid TOML" in r.stderr


def test_stream_modules_need_no_torch():
    code = ("import sys, edge_sr.stream, edge_sr.sources, edge_sr.sinks, edge_sr.telemetry.power, "
            "edge_sr.commands.stream, edge_sr.commands.service, deploy.service; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
