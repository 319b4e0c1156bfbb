"""Outputs of the stream, chosen by spec (after jetson-utils' videoOutput).

    out.mp4 / out.avi / out.mkv    a video file (cv2.VideoWriter), written to a temporary name and
                                   renamed when the stream stops (Ctrl-C, SIGTERM, end, --duration)
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

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


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
    """A video file, written to a temporary name beside it and renamed by ``close()``; the writer
    opens on the first frame (its size); frames of another size are resized to it."""

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str | None = None):
        from .imageio import atomic_path

        self.path = Path(path)
        self.name = f"file {self.path}"
        ext = self.path.suffix.lower()
        if ext not in VIDEO_FOURCC:
            raise EdgeSRError(f"unsupported video output {self.path}: use one of {', '.join(sorted(VIDEO_FOURCC))}")
        self.fourcc = (fourcc or VIDEO_FOURCC[ext])[:4]
        if len(self.fourcc) != 4:
            raise EdgeSRError(f"a FOURCC has 4 characters, got {fourcc!r}")
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer = None
        self._stack = contextlib.ExitStack()
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise EdgeSRError(f"cannot write {self.path}: {parent} is not a folder")
        # the temporary keeps the extension: VideoWriter picks the container from it
        try:
            self.tmp = self._stack.enter_context(atomic_path(self.path, suffix=".part" + ext))
        except OSError as exc:
            raise EdgeSRError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _open_writer(self, frame: np.ndarray) -> None:
        cv2 = _cv2()
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h), True)
        if not writer.isOpened():
            writer.release()
            raise EdgeSRError(f"cannot write {self.path}: OpenCV has no {self.fourcc!r} encoder for "
                              f"{self.path.suffix} (try --video-codec MJPG with an .avi file)")
        self._writer, self._size = writer, (w, h)

    def write(self, frame_bgr_u8: np.ndarray) -> None:
        cv2 = _cv2()
        if frame_bgr_u8.ndim == 2:
            frame_bgr_u8 = cv2.cvtColor(frame_bgr_u8, cv2.COLOR_GRAY2BGR)
        if self._writer is None:
            self._open_writer(frame_bgr_u8)
        if (frame_bgr_u8.shape[1], frame_bgr_u8.shape[0]) != self._size:
            frame_bgr_u8 = cv2.resize(frame_bgr_u8, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame_bgr_u8)
        self.frames += 1

    def close(self) -> None:
        """Finalise: release the writer (writes the container index) and rename onto the target.
        A file without frames is not left behind."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.frames == 0:
            self.abort()
            log.warning("%s: no frame was written; no file left", self.path)
            return
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # a normal file for its readers, not mkstemp's 0600
        self._stack.close()
        log.info("wrote %s (%d frames at %g FPS)", self.path, self.frames, self.fps)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._stack.__exit__(EdgeSRError, EdgeSRError("aborted"), None)  # atomic_path removes the temporary
        self._stack = contextlib.ExitStack()


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
              title: str = "live stream", token: str | None = None) -> Sink:
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
    if Path(s).suffix.lower() in VIDEO_FOURCC:
        return VideoFileSink(s, fps, video_codec)
    raise EdgeSRError(f"unknown output {s!r}: give a video file (.mp4/.avi/.mkv), http://HOST:PORT, display://0 "
                      "or null")
