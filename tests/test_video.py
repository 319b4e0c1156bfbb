"""Video files and recordings with real pieces: clips with sound made here with PyAV, the real
compact model, ffprobe/ffmpeg as the independent reference, headless Chromium for "a browser
plays it", a tiny tmpfs for a full disk, SIGKILL of a real recording process."""

from __future__ import annotations

import json
import warnings
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, unprivileged_prefix

av = pytest.importorskip("av", reason="PyAV (pip install av) is the video library; the OpenCV fallback is tested below")

from edge_sr import video  # noqa: E402
from edge_sr.errors import EdgeSRError  # noqa: E402
from edge_sr.video import (Recording, complete_mp4_length, deferred_signals, finalise_leftovers,  # noqa: E402
                           make_test_clip, upscale_video)

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None,
                                   reason="ffprobe not installed (Debian package ffmpeg): the independent reference")


# -- the reference: ffprobe / ffmpeg ---------------------------------------------------------


def ffprobe(path, *entries: str, stream: str | None = None) -> dict:
    cmd = ["ffprobe", "-v", "error", "-of", "json"]
    if stream:
        cmd += ["-select_streams", stream]
    for e in entries:
        cmd += ["-show_entries", e]
    r = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def streams(path) -> list[dict]:
    return ffprobe(path, "stream=index,codec_type,codec_name,codec_tag_string,width,height,pix_fmt,duration,"
                   "color_space,color_primaries,color_transfer")["streams"]


def frame_times(path, stream: str = "v:0") -> list[float]:
    frames = ffprobe(path, "frame=pts_time,best_effort_timestamp_time", stream=stream)["frames"]
    return [float(f.get("pts_time", f.get("best_effort_timestamp_time"))) for f in frames]


def decode_errors(path) -> str:
    """What ffprobe says while decoding every frame of every stream (empty: a clean file)."""
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of",
                        "csv=p=0", str(path)], capture_output=True, text=True, timeout=120)
    return r.stderr.strip() if r.returncode == 0 else (r.stderr.strip() or f"rc {r.returncode}")


def packet_times(path, stream: str = "a:0") -> list[float]:
    return [float(p["pts_time"]) for p in ffprobe(path, "packet=pts_time", stream=stream)["packets"]]


def duration_s(path) -> float:
    return float(ffprobe(path, "format=duration")["format"]["duration"])


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def upscaler():
    from edge_sr.backends import open_upscaler

    with open_upscaler("compact") as up:
        yield up


class Scale2:
    """Stands in for a model where only timing and the container are under test: x2 by OpenCV."""

    scale = 2

    def upscale(self, img, tile=None):
        import cv2

        return cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)


# -- upscale a file ---------------------------------------------------------------------------


@needs_ffprobe
def test_upscaled_clip_is_h264_with_sound_and_the_same_timing(tmp_path, upscaler):
    src = make_test_clip(tmp_path / "in.mp4", seconds=2.0, fps=10, width=64, height=48)
    res = upscale_video(src, tmp_path / "out.mp4", upscaler, progress=False)
    out = tmp_path / "out.mp4"
    assert res.complete and res.frames == 20 and res.audio == ["aac"] and res.path == out
    st = {s["codec_type"]: s for s in streams(out)}
    v, a = st["video"], st["audio"]
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"]) == ("h264", "yuv420p", 128, 96)
    assert v["color_space"] == "bt709"  # tagged: browsers convert with the matrix we used
    assert a["codec_name"] == "aac"
    assert abs(duration_s(out) - 2.0) < 0.1
    t_in, t_out = frame_times(src), frame_times(out)
    assert len(t_out) == 20
    assert np.allclose(np.diff(t_out[1:]), np.diff(t_in[1:]), atol=1e-3)
    a_in, a_out = packet_times(src), packet_times(out)
    # picture and sound keep their relation: the same shift for both (the AAC priming, which an edit
    # list hid in the input, moves everything by 1024 samples)
    assert abs((t_out[5] - t_in[5]) - (a_out[10] - a_in[10])) < 2e-3
    assert decode_errors(out) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


@needs_ffprobe
def test_variable_frame_rate_input_keeps_every_timestamp(tmp_path):
    times = [0.0, 0.1, 0.35, 0.4, 1.0, 1.7, 1.75]
    src = make_test_clip(tmp_path / "vfr.mkv", fps=10, width=32, height=24, timestamps_s=times)
    res = upscale_video(src, tmp_path / "out.mp4", Scale2(), progress=False)
    assert res.frames == len(times)
    got = frame_times(tmp_path / "out.mp4")
    rel = np.array(got[1:]) - got[1]
    assert np.allclose(rel, np.array(times[1:]) - times[1], atol=2e-3), got


@needs_ffprobe
def test_colour_in_colour_out(tmp_path, upscaler):
    """Flat colour patches come back as the same colours when decoded by ffmpeg (which honours the
    BT.709 tag): a mismatch of conversion matrix and tag would shift them by 10-30 levels."""
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (40, 160, 220), (128, 128, 128)]
    src = tmp_path / "patches.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=5)  # lossless in: the only losses measured are ours
        s.width, s.height, s.pix_fmt = 160, 32, "bgr0"
        img = np.zeros((32, 160, 3), np.uint8)
        for i, col in enumerate(colours):
            img[:, i * 32:(i + 1) * 32] = col
        for k in range(3):
            f = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="bgr0")
            f.pts = k
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    upscale_video(src, tmp_path / "out.mp4", upscaler, progress=False, crf=12)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "out.mp4"), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, timeout=60).stdout
    out = np.frombuffer(raw, np.uint8).reshape(64, 320, 3)
    for i, col in enumerate(colours):
        centre = out[24:40, i * 64 + 20:i * 64 + 44].reshape(-1, 3).mean(0)
        assert np.abs(centre - np.array(col)).max() < 6, (col, centre)


def _upscale_in_child(src, dest, codec) -> int:
    """upscale_video in a forked child: once in three full-suite runs here, FFmpeg's encoder flush
    (video.py finish(), audio re-encode) crashed the whole pytest process with SIGSEGV, never when the
    test ran alone (open bug, docs/testing.md). A crash is retried once, and said; two crashes fail."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in (1, 2):
        q = ctx.Queue()
        proc = ctx.Process(target=lambda: q.put(upscale_video(src, dest, Scale2(), codec=codec,
                                                              progress=False).frames))
        proc.start()
        proc.join(120)
        if proc.exitcode == 0:
            return q.get(timeout=5)
        assert proc.exitcode == -11 and attempt == 1, f"upscale_video child ended with {proc.exitcode}"
        warnings.warn(f"upscale_video to {dest.name} crashed with SIGSEGV once (known FFmpeg flush crash); retried")
    raise AssertionError("unreachable")


@needs_ffprobe
@pytest.mark.parametrize("name,codec,vcodec,acodec", [
    ("o.mkv", None, "h264", "pcm_s16le"),    # the container holds PCM: copied as it is
    ("o.webm", None, "vp9", "opus"),         # WebM cannot hold PCM: re-encoded to Opus
    ("o.mp4", "hevc", "hevc", "aac"),        # --codec; PCM in MP4 is not for browsers: AAC
    ("o.avi", "mjpeg", "mjpeg", "pcm_s16le"),
])
def test_codecs_and_containers(tmp_path, name, codec, vcodec, acodec):
    src = make_test_clip(tmp_path / "in.mkv", seconds=1.0, fps=10, width=32, height=24, audio_codec="pcm_s16le")
    frames = _upscale_in_child(src, tmp_path / name, codec)
    st = {s["codec_type"]: s for s in streams(tmp_path / name)}
    assert st["video"]["codec_name"] == vcodec and st["audio"]["codec_name"] == acodec
    if vcodec == "hevc":
        assert st["video"]["codec_tag_string"] == "hvc1"  # what Safari and Chrome look for
    assert frames == 10 and decode_errors(tmp_path / name) == ""


@needs_ffprobe
@pytest.mark.parametrize("rotate", [90, 270])
def test_phone_rotation_is_applied(tmp_path, rotate):
    """A portrait phone video is stored landscape with a display rotation; the output shows it upright
    like ffmpeg's own autorotation (the reference) does."""
    import cv2

    plain = make_test_clip(tmp_path / "plain.mp4", seconds=0.2, fps=10, width=64, height=48, audio=False)
    src = tmp_path / "phone.mp4"
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}",
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    upscale_video(src, tmp_path / "out.mp4", Scale2(), progress=False, crf=10)

    def first_frame(path, shape):
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                              "bgr24", "-"], capture_output=True, timeout=60).stdout
        return np.frombuffer(raw, np.uint8).reshape(shape).astype(np.float32)

    ref = first_frame(src, (64, 48, 3))  # as a player shows it: upright
    out = first_frame(tmp_path / "out.mp4", (128, 96, 3))
    small = cv2.resize(out, (48, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(small - ref).mean() < 6
    assert np.abs(np.rot90(small, 2) - ref).mean() > 20  # the test can tell orientations apart


def test_odd_sizes_are_cropped_to_even(tmp_path):
    src = make_test_clip(tmp_path / "in.mp4", seconds=0.3, fps=10, width=34, height=26, audio=False)

    class Scale3(Scale2):
        scale = 3

        def upscale(self, img, tile=None):
            import cv2

            return cv2.resize(img, (img.shape[1] * 3 + 1, img.shape[0] * 3 + 1))  # 103x79: odd

    upscale_video(src, tmp_path / "out.mp4", Scale3(), progress=False)
    info = video.video_info(tmp_path / "out.mp4")["video"][0]
    assert (info["width"], info["height"]) == (102, 78)


def test_stop_keeps_a_playable_partial_and_says_so(tmp_path):
    src = make_test_clip(tmp_path / "in.mp4", seconds=4.0, fps=10, width=32, height=24)
    stop = threading.Event()
    with pytest.raises(EdgeSRError, match=r"stopped after 25 of 40 frames.*in .*out\.partial\.mp4") as ei:
        upscale_video(src, tmp_path / "out.mp4", Scale2(), progress=False, stop=stop,
                      on_frame=lambda n: n >= 25 and stop.set())
    assert ei.value.exit_code == 130
    part = tmp_path / "out.partial.mp4"
    assert not (tmp_path / "out.mp4").exists() and hidden(tmp_path) == []
    n, _ = video._probe_frames(part)
    assert n == 25  # every frame done was finalised (the encoder flushed)


@pytest.mark.slow
def test_sigint_finalises_the_partial_file(tmp_path):
    """A real Ctrl-C (SIGINT to the process) in the middle of an upscale."""
    src = make_test_clip(tmp_path / "in.mp4", seconds=30.0, fps=10, width=32, height=24)
    code = ("import sys, time\nfrom edge_sr.video import upscale_video\n"
            "class Slow:\n    scale = 2\n    def upscale(self, img, tile=None):\n"
            "        import cv2; time.sleep(0.02); print('frame', flush=True)\n"
            "        return cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2))\n"
            "try:\n    upscale_video(sys.argv[1], sys.argv[2], Slow(), progress=False)\n"
            "except Exception as e:\n    print('ERR', getattr(e, 'exit_code', None), e, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(tmp_path / "out.mp4")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    for _ in range(20):
        assert proc.stdout.readline().startswith("frame")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "ERR 130 stopped after" in out, (out[-500:], err[-2000:])
    assert "Traceback" not in err
    part = tmp_path / "out.partial.mp4"
    assert part.exists() and decode_errors(part) == "" and hidden(tmp_path) == []
    assert 20 <= video._probe_frames(part)[0] < 300


def test_bad_outputs_refused_before_anything_is_written(tmp_path):
    src = make_test_clip(tmp_path / "in.mp4", seconds=0.3, fps=10, width=32, height=24)
    (tmp_path / "adir.mp4").mkdir()
    cases = [
        (tmp_path / "adir.mp4", "is a folder"),
        (tmp_path / "missing" / "o.mp4", "does not exist"),
        (tmp_path / "o.gif", "unsupported video output"),
        (src, "refusing to overwrite the input"),
    ]
    for dst, msg in cases:
        with pytest.raises(EdgeSRError, match=msg):
            upscale_video(src, dst, Scale2(), progress=False)
    with pytest.raises(EdgeSRError, match="unknown video codec 'nope'"):
        upscale_video(src, tmp_path / "o.mp4", Scale2(), codec="nope", progress=False)
    with pytest.raises(EdgeSRError, match="cannot hold"):
        upscale_video(src, tmp_path / "o.webm", Scale2(), codec="h264", progress=False)
    with pytest.raises(EdgeSRError, match="not found"):
        upscale_video(tmp_path / "none.mp4", tmp_path / "o.mp4", Scale2(), progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(EdgeSRError, match="cannot read video"):
        upscale_video(junk, tmp_path / "o.mp4", Scale2(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.mp4", "in.mp4", "junk.mp4"]


# -- the CLI (dispatch lives in edge_sr/commands/upscale.py) -----------------------------------


@needs_ffprobe
@pytest.mark.slow
def test_cli_upscale_10s_clip_plays_in_headless_chromium(tmp_path):
    """The issue's acceptance: a 10 s 320x240 clip with sound -> `edge-sr upscale` -> a 10 s H.264 file
    with sound that Chromium plays (to 1 s in real time, then the end after a seek). 3 FPS keeps the
    model's CPU time small; scripts/check-video-browser.sh does the same at 25 FPS."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser (Debian package chromium)")
    src = make_test_clip(tmp_path / "clip.mp4", seconds=10.0, fps=3, width=320, height=240)
    out = tmp_path / "out.mp4"
    r = run_cli("upscale", str(src), "-o", str(out), "--model", "compact")
    assert r.returncode == 0, r.stderr[-2000:]
    st = {s["codec_type"]: s for s in streams(out)}
    assert (st["video"]["codec_name"], st["video"]["pix_fmt"], st["video"]["width"]) == ("h264", "yuv420p", 640)
    assert st["audio"]["codec_name"] == "aac"
    assert abs(duration_s(out) - 10.0) < 0.4
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "video_in_browser.py"), str(out),
                        "--expect-duration", "10", "--expect-audio"], capture_output=True, text=True, timeout=120)
    seen = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    assert r.returncode == 0, (seen, r.stderr[-1000:])
    assert seen["videoWidth"] == 640 and seen["audioBytes"] > 0 and seen["playedTo"] >= 1.0


# -- recordings -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@needs_ffprobe
def test_live_recording_is_timed_by_the_clock(tmp_path):
    """3 frames a second for 10 s plays 10 s (it was a 1 s clip at the nominal 30 FPS)."""
    from edge_sr.scene import render_scene

    clock = FakeClock()
    rec = Recording(tmp_path / "rec.mp4", fps=30, live=True, clock=clock)
    for i in range(31):
        clock.t = 1000.0 + i / 3
        rec.write(render_scene(i / 3, 24, 32))
    rec.close()
    times = frame_times(tmp_path / "rec.mp4")
    assert len(times) == 31
    assert np.allclose(np.diff(times), 1 / 3, atol=1e-3)
    assert abs(times[-1] - times[0] - 10.0) < 1e-3
    assert decode_errors(tmp_path / "rec.mp4") == ""


@needs_ffprobe
def test_live_recording_in_real_time_through_open_sink(tmp_path):
    from edge_sr.scene import render_scene
    from edge_sr.sinks import open_sink

    sink = open_sink(str(tmp_path / "rec.mkv"), fps=30)  # no source given: timed by the clock
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.5:
        sink.write(render_scene(n / 10, 24, 32))
        n += 1
        time.sleep(0.1)
    sink.close()
    times = frame_times(tmp_path / "rec.mkv")
    assert len(times) == n and abs((times[-1] - times[0]) - (n - 1) * 0.1) < 0.1 * n * 0.5


@needs_ffprobe
def test_file_source_recording_keeps_its_timing_and_sound(tmp_path):
    from edge_sr.sinks import open_sink
    from edge_sr.sources import VideoFileSource
    from edge_sr.stream import Stream
    from edge_sr.telemetry.report import Telemetry

    times = [0.0, 0.2, 0.3, 0.9, 1.0, 1.5, 2.4]
    src_path = make_test_clip(tmp_path / "in.mp4", fps=10, width=32, height=24, timestamps_s=times)
    src = VideoFileSource(src_path).open()
    sink = open_sink(str(tmp_path / "out.mp4"), fps=src.fps or 10, source=src)
    Stream(src, Scale2(), [sink], Telemetry(60.0)).run()
    got = frame_times(tmp_path / "out.mp4")
    assert np.allclose(np.array(got[1:]) - got[1], np.array(times[1:]) - times[1], atol=2e-3), got
    st = {s["codec_type"]: s for s in streams(tmp_path / "out.mp4")}
    assert st["audio"]["codec_name"] == "aac"
    assert 2.45 < duration_s(tmp_path / "out.mp4") < 2.5 + 1 / src.fps + 0.05  # the last frame lasts 1 / mean FPS


@needs_ffprobe
@pytest.mark.slow
def test_cli_stream_of_a_slow_model_plays_in_real_time(tmp_path):
    """The issue's case: a 30 FPS source that the model upscales at a few FPS; the file used to be
    written at the nominal 30 FPS (10 s became 1.07 s). Now its length is the time the stream ran."""
    out = tmp_path / "rec.mp4"
    # 640x480: compact runs it at 4-7 FPS on the 2-core VMs measured (docs/benchmarks); at 320x240 a VNNI VM's
    # pipelined stream reached 20.5 FPS, where the model no longer held the 30 FPS source back
    r = run_cli("stream", "--source", "demo", "--width", "640", "--height", "480", "--fps", "30", "--model",
                "compact", "--output", str(out), "--duration", "5", "--log-interval", "30", timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{") and '"summary"' in ln][-1]
    assert summary["output_fps_mean"] < 20  # the model is the bottleneck here: frames were dropped
    times = frame_times(out)
    assert len(times) == summary["frames"]
    span = times[-1] - times[0]
    # wall time, not frames / 30: stamped at the nominal rate the span would be exactly (n - 1) / 30
    assert 2.5 < span < 5.5 and span > 1.4 * (len(times) - 1) / 30, times


@needs_ffprobe
def test_cli_stream_from_a_file_keeps_sound_and_timing(tmp_path):
    src = make_test_clip(tmp_path / "in.mp4", seconds=1.0, fps=10, width=32, height=24)
    out = tmp_path / "out.mp4"
    r = run_cli("stream", "--source", str(src), "--model", "compact", "--output", str(out), "--log-interval", "30",
                timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    st = {s["codec_type"]: s for s in streams(out)}
    assert st["video"]["codec_name"] == "h264" and st["audio"]["codec_name"] == "aac"
    assert abs(duration_s(out) - 1.0) < 0.15
    assert np.allclose(np.diff(frame_times(out)[1:]), 0.1, atol=2e-3)


def test_output_path_checked_at_start(tmp_path):
    from edge_sr.sinks import open_sink

    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(EdgeSRError, match="is a folder"):
        open_sink(str(tmp_path / "d.mp4"))
    with pytest.raises(EdgeSRError, match="does not exist"):
        open_sink(str(tmp_path / "nope" / "r.mp4"))
    with pytest.raises(EdgeSRError, match="unknown video codec"):
        open_sink(str(tmp_path / "r.mp4"), video_codec="XX")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mp4"]


def test_unwritable_folder_refused_at_start_as_a_user(user_tmp):
    ro = user_tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code = ("from edge_sr.sinks import open_sink\nfrom edge_sr.errors import EdgeSRError\n"
            f"try:\n    open_sink({str(ro / 'r.mp4')!r})\nexcept EdgeSRError as e:\n    print('ERR', e)\n")
    r = subprocess.run([*unprivileged_prefix(), sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=str(REPO))
    assert "ERR" in r.stdout and "not writable" in r.stdout, (r.stdout, r.stderr[-1000:])
    assert list(ro.iterdir()) == []


def test_close_holds_signals_and_waits_for_a_write_in_progress(tmp_path):
    """Ctrl-C while close() waits for the output thread's write and finishes the file: the file is still
    finalised (the handlers in place raise, as Python's default KeyboardInterrupt does)."""
    from edge_sr.scene import render_scene

    rec = Recording(tmp_path / "rec.mp4", fps=30, live=True)
    for i in range(5):
        rec.write(render_scene(i / 30, 48, 64))
    rec._lock.acquire()  # a write in progress on another thread

    def busy_writer():
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # arrives while close() waits
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # and a SIGTERM on top
        time.sleep(0.2)
        rec._lock.release()

    class Interrupted(Exception):
        pass

    def raising(signum, frame):  # what a KeyboardInterrupt would do, without ending pytest's session
        raise Interrupted(signum)

    th = threading.Thread(target=busy_writer)
    previous = {sig: signal.signal(sig, raising) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        th.start()
        path = rec.close()
        assert signal.getsignal(signal.SIGINT) is raising  # the handlers are put back
    finally:
        th.join(5)
        for sig, h in previous.items():
            signal.signal(sig, h)
    assert path == tmp_path / "rec.mp4" and video._probe_frames(path)[0] == 5
    assert hidden(tmp_path) == []
    assert rec.close() is None  # twice is fine
    with deferred_signals() as held:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert held == [signal.SIGINT]


def test_partial_mp4_cut_to_whole_fragments(tmp_path):
    from edge_sr.scene import render_scene

    clock = FakeClock()
    rec = Recording(tmp_path / "rec.mp4", fps=10, live=True, clock=clock, keyframe_s=0.5)
    for i in range(30):
        clock.t = 1000 + i / 10
        rec.write(render_scene(i / 10, 24, 32))
    rec.close()
    data = (tmp_path / "rec.mp4").read_bytes()
    whole = complete_mp4_length(tmp_path / "rec.mp4")
    assert whole == len(data)
    cut = tmp_path / ".cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # a crash in the middle of a fragment
    assert video.salvage(cut)
    n, span = video._probe_frames(cut)
    assert 10 <= n < 30 and decode_errors(cut) == ""
    junk = tmp_path / ".junk.mp4"
    junk.write_bytes(b"\0\0\0\x10ftypisom" + os.urandom(300))
    assert not video.salvage(junk)


@needs_ffprobe
def test_leftovers_of_earlier_runs_finalised_or_removed(tmp_path):
    import fcntl

    from edge_sr.scene import render_scene

    dest = tmp_path / "rec.mp4"
    clock = FakeClock()
    dead = Recording(dest, fps=10, live=True, clock=clock, keyframe_s=0.5)
    for i in range(20):
        clock.t = 1000 + i / 10
        dead.write(render_scene(i / 10, 24, 32))
    dead._tmp.release()  # as if the process died: the lock goes, the file stays
    part = dead._tmp.path
    (tmp_path / f".{dest.name}.empty1.part.mp4").write_bytes(b"")  # a SIGTERM right at start, old versions
    (tmp_path / f".{dest.name}.junk22.part.mp4").write_bytes(os.urandom(2000))  # garbage
    busy = tmp_path / f".{dest.name}.busy33.part.mp4"  # another live process writes this one
    busy.write_bytes(b"x")
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        recovered = finalise_leftovers(dest)
    finally:
        os.close(fd)
    assert len(recovered) == 1 and recovered[0].name.startswith("rec.recovered-")
    assert not part.exists() and decode_errors(recovered[0]) == ""
    assert video._probe_frames(recovered[0])[0] >= 10
    assert hidden(tmp_path) == [busy.name]  # the locked one is left alone


@needs_ffprobe
@pytest.mark.slow
def test_sigkill_then_restart_recovers_the_recording(tmp_path):
    """A recording process killed with SIGKILL: the next run finalises the leftover, which plays up
    to its last whole fragment (all but the last second)."""
    dest = tmp_path / "rec.mp4"
    code = ("import sys, time\nfrom edge_sr.video import Recording\nfrom edge_sr.scene import render_scene\n"
            "rec = Recording(sys.argv[1], fps=20, live=True, keyframe_s=0.5)\n"
            "i = 0\nwhile True:\n    rec.write(render_scene(i / 20, 48, 64)); i += 1\n"
            "    print(i, flush=True)\n    time.sleep(0.05)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(dest)], stdout=subprocess.PIPE, text=True,
                            cwd=str(REPO))
    n = 0
    while n < 60:  # 3 s of recording
        n = int(proc.stdout.readline())
    proc.kill()
    proc.wait(10)
    assert not dest.exists() and len(hidden(tmp_path)) == 1
    rec = Recording(dest, fps=20, live=True)  # the next run
    rec.abort()
    assert len(rec.recovered) == 1 and hidden(tmp_path) == []
    got = rec.recovered[0]
    assert decode_errors(got) == ""
    frames, span = video._probe_frames(got)
    assert frames >= n - 25 and span >= 1.5, (frames, span, n)


@needs_ffprobe
@pytest.mark.slow
def test_cli_stream_killed_then_restarted_finalises_the_leftover(tmp_path):
    dest = tmp_path / "rec.mp4"
    args = [sys.executable, "-m", "edge_sr", "stream", "--source", "demo", "--width", "64", "--height", "48",
            "--model", "compact", "--output", str(dest), "--log-interval", "0.5"]
    proc = subprocess.Popen(args, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        stats = 0
        while time.monotonic() < deadline and stats < 8:  # ~4 s of frames flowing
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            stats += '"event": "stats"' in line and '"frames_total": 0,' not in line
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stats >= 8 and not dest.exists() and len(hidden(tmp_path)) == 1
    r = run_cli("stream", "--source", "demo", "--width", "64", "--height", "48", "--model", "compact", "--output",
                str(dest), "--frames", "3", "--log-interval", "30")
    assert r.returncode == 0, r.stderr[-2000:]
    recovered = sorted(tmp_path.glob("rec.recovered-*.mp4"))
    assert len(recovered) == 1 and "finalised the recording an earlier run left unfinished" in r.stderr
    assert decode_errors(recovered[0]) == "" and video._probe_frames(recovered[0])[1] >= 1.0
    assert dest.exists() and hidden(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1.5 MB tmpfs (root only); skipped with the reason elsewhere."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs mount (root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@needs_ffprobe
def test_full_disk_stops_with_one_line_and_keeps_what_plays(tiny_disk):
    clock = FakeClock()
    rng = np.random.default_rng(0)
    rec = Recording(tiny_disk / "rec.mp4", fps=10, live=True, clock=clock, keyframe_s=0.5)
    with pytest.raises(video.WriteError) as ei:
        for i in range(2000):  # noise does not compress: the disk fills within a few seconds of video
            clock.t = 1000 + i / 10
            rec.write(rng.integers(0, 255, (96, 128, 3), np.uint8))
    msg = str(ei.value)
    assert "\n" not in msg and "disk is full" in msg and "rec.mp4" in msg, msg
    assert ei.value.exit_code != 0
    kept = tiny_disk / "rec.mp4"
    assert kept.exists() and hidden(tiny_disk) == []  # the frames so far under the final name
    assert decode_errors(kept) == ""
    assert video._probe_frames(kept)[0] >= 5
    with pytest.raises(video.WriteError):  # later writes and close say the same, never crash
        rec.write(rng.integers(0, 255, (96, 128, 3), np.uint8))
    with pytest.raises(video.WriteError):
        rec.close()


@needs_ffprobe
def test_full_disk_during_upscale_keeps_a_partial(tiny_disk, tmp_path):
    src = tmp_path / "in.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(src), "w") as c:  # noise frames: big once encoded
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "bgr0"
        for k in range(100):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8), format="bgr24")
            f = f.reformat(format="bgr0")
            f.pts = k
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    with pytest.raises(EdgeSRError, match="the disk is full after") as ei:
        upscale_video(src, tiny_disk / "out.mp4", Scale2(), progress=False, crf=0)
    assert ei.value.exit_code == 1
    part = tiny_disk / "out.partial.mp4"
    assert not (tiny_disk / "out.mp4").exists() and hidden(tiny_disk) == []
    assert part.exists() and decode_errors(part) == "" and video._probe_frames(part)[0] >= 5


@needs_ffprobe
@pytest.mark.slow
def test_cli_stream_to_a_full_disk_fails_with_one_line(tiny_disk):
    st = os.statvfs(tiny_disk)
    (tiny_disk / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 400 * 1024))  # 400 KB left
    r = run_cli("stream", "--source", "demo", "--width", "160", "--height", "120", "--fps", "0", "--model",
                "compact", "--output", str(tiny_disk / "rec.mp4"), "--duration", "60", "--log-interval", "30",
                timeout=120)
    assert r.returncode != 0
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert "disk is full" in last and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "rec.mp4" in last and ".part" not in last  # the name the user gave, not the temporary
    kept = tiny_disk / "rec.mp4"
    assert kept.exists() and decode_errors(kept) == "" and hidden(tiny_disk) == []


# -- without PyAV: OpenCV's writer -----------------------------------------------------------


def test_opencv_fallback_without_pyav(tmp_path, monkeypatch):
    src = make_test_clip(tmp_path / "in.mp4", seconds=1.0, fps=10, width=32, height=24)
    monkeypatch.setattr(video, "have_pyav", lambda: False)
    res = upscale_video(src, tmp_path / "out.mp4", Scale2(), progress=False)
    assert res.backend == "opencv" and res.frames == 10 and not res.audio
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10
    clock = FakeClock()
    rec = Recording(tmp_path / "rec.avi", fps=10, live=True, clock=clock)
    for i in range(4):  # 2 FPS for 1.5 s: frames repeated so that the file plays 1.5 s at 10 FPS
        clock.t = 1000 + i / 2
        rec.write(np.full((24, 32, 3), i * 60, np.uint8))
    rec.close()
    cap = cv2.VideoCapture(str(tmp_path / "rec.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 16


@pytest.mark.parametrize("typed,encoder", [("FFV1", "ffv1"), ("ffv1", "ffv1"), ("MJPG", "mjpeg"), ("XVID", "mpeg4"),
                                           ("mp4v", "mpeg4"), ("HFYU", "huffyuv")])
def test_codec_names_as_users_type_them(typed, encoder):
    """FOURCCs are written upper case (OpenCV's habit, FFmpeg's `-c:v` is lower case): both reach the encoder.
    `--video-codec FFV1` was refused once PyAV wrote the files (found by the emulated-Pi check)."""
    assert video.resolve_encoder(typed, ".avi") == encoder


def test_unknown_codec_is_one_clear_error():
    with pytest.raises(EdgeSRError, match="unknown video codec 'NOPE'"):
        video.resolve_encoder("NOPE", ".mkv")


@needs_ffprobe
@pytest.mark.parametrize("codec,suffix", [("FFV1", ".avi"), ("ffv1", ".mkv"), ("HFYU", ".avi")])
def test_lossless_codecs_keep_the_exact_pixels(tmp_path, codec, suffix):
    """A lossless codec is chosen for exact pixels (comparisons, archives): RGB in the file, not 4:2:0, so
    ffmpeg (the independent reference) decodes the very frames written, odd sizes included."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (25, 33, 3), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / f"rec{suffix}"
    rec = Recording(path, fps=10, codec=codec, live=False)
    for i, f in enumerate(frames):
        rec.write(f, t_s=i / 10)
    rec.close()
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                         capture_output=True, timeout=60).stdout
    got = np.frombuffer(raw, np.uint8).reshape(-1, 25, 33, 3)
    assert len(got) == 3 and all(np.array_equal(g, f) for g, f in zip(got, frames))
