"""Outputs of the stream, chosen by spec (after jetson-utils' videoOutput).

    out.mp4 / .mkv / .webm / .avi  a video file (edge_sr.video: PyAV, H.264 in fragmented MP4 that
                                   survives a crash; OpenCV's writer without PyAV), written to a
                                   temporary name and renamed when the stream stops
    http://127.0.0.1:8080          an MJPEG page (multipart/x-mixed-replace) + /metrics + /stats
                                   (edge_sr.mjpeg: asyncio + h11, connection cap and deadlines)
    display://0                    a window, when a display exists and OpenCV has GUI support
    null                           nothing (for measuring)

The MJPEG server encodes each frame once (lazily, only while someone watches) and shares the
bytes with every viewer; each viewer sends the newest frame when it is ready, so a slow viewer
skips frames while the pipeline never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import EdgeSRError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")  # edge_sr.video.CONTAINERS
VIDEO_FOURCC = VIDEO_SUFFIXES  # the old name


def _cv2():
    from .lazy import require

    return require("cv2", "video output")


class Sink:
    name = "sink"

    def write(self, frame_bgr_u8: np.ndarray) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def wants_stop(self) -> bool:
        """True when the user asked to stop through this output (a window's q / Esc)."""
        return False

    def close(self) -> None:
        pass

    def write_pair(self, frame_lr_bgr_u8: np.ndarray, frame_out_bgr_u8: np.ndarray) -> None:
        """The stream's call: the source frame and the output frame (an output that offers a
        bicubic view uses the first); by default the output frame is written."""
        self.write(frame_out_bgr_u8)

    def abort(self) -> None:
        """Stop after an error: discard anything half-written."""
        self.close()


class NullSink(Sink):
    name = "null"

    def write(self, frame_bgr_u8: np.ndarray) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# video file


class VideoFileSink(Sink):
    """A video file (``edge_sr.video.Recording``: PyAV, H.264 in fragmented MP4 by default; OpenCV's
    writer without PyAV). Validated when made (a folder, an unwritable place: one line at start);
    leftovers of earlier runs are finalised then. Written under a hidden locked temporary and
    renamed by ``close()``; a write error (disk full) raises ``edge_sr.video.WriteError`` from
    ``write`` after keeping the frames so far playable under the final name.

    ``live=True``: frames are timed by when they arrive (the file plays in real time, variable frame
    rate); ``live=False``: frame i at ``timestamps_s[i]`` or i / fps. ``audio_from``: copy the sound of
    that file in step (a file source)."""

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str | None = None, live: bool = False,
                 audio_from: str | os.PathLike | None = None, timestamps_s: list[float] | None = None,
                 **options):
        from .video import Recording

        self.path = Path(path)
        self.name = f"file {self.path}"
        self.recording = Recording(self.path, fps, fourcc, live=live, audio_from=audio_from,
                                   timestamps_s=timestamps_s, **options)
        self.fps = self.recording.fps

    @property
    def frames(self) -> int:
        return self.recording.frames

    def write(self, frame_bgr_u8: np.ndarray, t_s: float | None = None) -> None:
        self.recording.write(frame_bgr_u8, t_s)

    def close(self) -> None:
        """Finalise (never cut short by a signal: see ``Recording.close``); no frames: no file."""
        self.recording.close()

    def abort(self) -> None:
        self.recording.abort()


# ---------------------------------------------------------------------------------------------
# MJPEG over HTTP: edge_sr.mjpeg (asyncio + h11), imported when used


def __getattr__(name: str):
    if name in ("MjpegServer", "FrameHub", "INDEX_HTML"):
        from . import mjpeg

        return getattr(mjpeg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# window


def opencv_has_gui() -> bool:
    m = re.search(r"GUI:\s*(\S+)", _cv2().getBuildInformation())
    return bool(m and m.group(1).upper() not in ("NONE", "NO"))


class DisplaySink(Sink):
    name = "display"

    def __init__(self, title: str = "edge-sr"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise EdgeSRError("no display (neither DISPLAY nor WAYLAND_DISPLAY is set): use --output http://... to "
                              "watch in a browser, or a video file")
        if not opencv_has_gui():
            raise EdgeSRError("this OpenCV has no GUI support (a -headless build): install opencv-python (not "
                              "-headless) or use JetPack's OpenCV, or watch with --output http://...")
        self.title = title
        self._stop = False

    def write(self, frame_bgr_u8: np.ndarray) -> None:
        cv2 = _cv2()
        cv2.imshow(self.title, frame_bgr_u8)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self._stop = True

    @property
    def wants_stop(self) -> bool:
        return self._stop

    def close(self) -> None:
        with contextlib.suppress(Exception):
            _cv2().destroyWindow(self.title)


# ---------------------------------------------------------------------------------------------


def side_by_side(frame_lr_bgr_u8: np.ndarray, frame_sr_bgr_u8: np.ndarray) -> np.ndarray:
    """Bicubic | edge-sr, each labelled, at the SR size (for demos)."""
    cv2 = _cv2()
    h, w = frame_sr_bgr_u8.shape[:2]
    lr = frame_lr_bgr_u8 if frame_lr_bgr_u8.ndim == 3 else cv2.cvtColor(frame_lr_bgr_u8, cv2.COLOR_GRAY2BGR)
    sr = frame_sr_bgr_u8 if frame_sr_bgr_u8.ndim == 3 else cv2.cvtColor(frame_sr_bgr_u8, cv2.COLOR_GRAY2BGR)
    bic = cv2.resize(lr, (w, h), interpolation=cv2.INTER_CUBIC)
    out = np.empty((h, 2 * w, 3), np.uint8)
    out[:, :w] = bic
    out[:, w:] = sr
    s = max(0.4, h / 720.0)
    for x, label in ((8, "bicubic"), (w + 8, "edge-sr")):
        org = (x, int(28 * s) + 4)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, s, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, s, (255, 255, 255), 1, cv2.LINE_AA)
    out[:, w - 1 : w + 1] = 255
    return out


_HTTP_SPEC = re.compile(r"^(?:http|mjpeg)://(?:\[([^\]]+)\]|([^:/]*))(?::(\d+))?/?$")


def parse_http_spec(spec: str, default_host: str = "127.0.0.1", default_port: int = 8080) -> tuple[str, int]:
    m = _HTTP_SPEC.match(spec)
    if not m:
        raise EdgeSRError(f"bad HTTP output {spec!r}: expected http://HOST:PORT (e.g. http://127.0.0.1:8080)")
    host = m.group(1) or m.group(2) or default_host
    return host, int(m.group(3)) if m.group(3) else default_port


def open_sink(spec: str, fps: float = 30.0, listen: str = "127.0.0.1", video_codec: str | None = None,
              metrics: Callable[[], str] | None = None, stats: Callable[[], str] | None = None,
              title: str = "live stream", token: str | None = None, source=None) -> Sink:
    """``source``: the stream's source (a video file's timing and sound are carried into a recording;
    a live source's frames are timed by the clock)."""
    s = str(spec).strip()
    low = s.lower()
    if low in ("null", "none", "null://", "-"):
        return NullSink()
    if low.startswith("display") and re.match(r"^display(://\d*)?$", low):
        return DisplaySink()
    if low.startswith(("http://", "mjpeg://")):
        from .mjpeg import MjpegServer

        host, port = parse_http_spec(s, listen)
        return MjpegServer(host, port, metrics=metrics, stats=stats, title=title, token=token)
    if low.startswith(("rtsp://", "rtp://", "webrtc://")):
        raise EdgeSRError(f"output {s}: network video outputs other than MJPEG over HTTP are not supported "
                          "(use --output http://HOST:PORT)")
    if Path(s).suffix.lower() in VIDEO_SUFFIXES:
        return open_video_sink(s, fps, video_codec, source)
    raise EdgeSRError(f"unknown output {s!r}: give a video file (.mp4/.mkv/.webm/.avi), http://HOST:PORT, "
                      "display://0 or null")


def open_video_sink(path: str, fps: float, codec: str | None = None, source=None) -> VideoFileSink:
    """A recording timed by wall clock for a live source (or when the source is unknown); for a file
    source, timed by the file's own timestamps with its sound copied (unless it loops)."""
    live = True if source is None else bool(getattr(source, "live", True))
    audio_from = timestamps = None
    src_path = getattr(source, "path", None)
    if not live and src_path is not None and Path(src_path).is_file() and not getattr(source, "loop", False):
        from .video import file_timestamps, is_video_path

        if is_video_path(src_path):
            audio_from = src_path
            timestamps = file_timestamps(src_path)
    return VideoFileSink(path, fps, codec, live=live, audio_from=audio_from, timestamps_s=timestamps)
