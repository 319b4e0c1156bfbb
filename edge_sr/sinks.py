"""Outputs of the stream, chosen by spec (after jetson-utils' videoOutput).

    out.mp4 / out.avi / out.mkv    a video file (cv2.VideoWriter), written to a temporary name and
                                   renamed when the stream stops (Ctrl-C, SIGTERM, end, --duration)
    http://127.0.0.1:8080          an MJPEG page (multipart/x-mixed-replace) + /metrics + /stats
    display://0                    a window, when a display exists and OpenCV has GUI support
    null                           nothing (for measuring)

The MJPEG server encodes each frame once (lazily, only while someone watches) and shares the
bytes with every viewer; each viewer thread sends the newest frame when it is ready, so a slow
viewer skips frames while the pipeline never waits for it.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import logging
import os
import re
import threading
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
# MJPEG over HTTP


class FrameHub:
    """The newest frame, shared by all viewers. ``publish`` never blocks for long (a lock and a
    notify); the JPEG of a frame is made at most once, by the first viewer that needs it."""

    def __init__(self, jpeg_quality: int = 80):
        self.jpeg_quality = int(jpeg_quality)
        self._cond = threading.Condition()
        self._seq = 0
        self._frame: np.ndarray | None = None
        self._enc_lock = threading.Lock()
        self._jpeg_seq = -1
        self._jpeg = b""
        self.closed = False
        self.encoded = 0
        self.viewer_dropped = 0

    def publish(self, frame_bgr_u8: np.ndarray) -> None:
        with self._cond:
            self._frame = frame_bgr_u8
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def next_jpeg(self, last_seq: int, timeout_s: float = 1.0) -> tuple[int, bytes] | None:
        """The newest frame after ``last_seq`` as JPEG, or None on timeout / close."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self._seq != last_seq and self._frame is not None), timeout_s)
            if self.closed or self._seq == last_seq or self._frame is None:
                return None
            seq, frame = self._seq, self._frame
        if last_seq and seq > last_seq + 1:
            self.viewer_dropped += seq - last_seq - 1  # approximate under races; a statistic only
        return seq, self._encode(seq, frame)

    def _encode(self, seq: int, frame: np.ndarray) -> bytes:
        with self._enc_lock:
            if self._jpeg_seq != seq:
                cv2 = _cv2()
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise EdgeSRError("JPEG encoding failed")
                self._jpeg, self._jpeg_seq = buf.tobytes(), seq
                self.encoded += 1
            return self._jpeg


INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>edge-sr stream</title>
<style>body{{background:#111;color:#ddd;font-family:sans-serif;margin:1em}}img{{max-width:100%;
image-rendering:pixelated;border:1px solid #444}}a{{color:#8cf}}</style></head>
<body><h3>edge-sr: {title}</h3><img src="/stream.mjpg" alt="edge-sr live stream">
<p><a href="/snapshot.jpg">snapshot</a> | <a href="/stats">stats (JSON)</a> | <a href="/metrics">metrics
(Prometheus)</a></p></body></html>
"""


class MjpegServer(Sink):
    """An HTTP server in its own threads: ``/`` page, ``/stream.mjpg``, ``/snapshot.jpg``, ``/metrics``, ``/stats``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, jpeg_quality: int = 80, max_viewers: int = 16,
                 metrics: Callable[[], str] | None = None, stats: Callable[[], str] | None = None,
                 title: str = "live stream"):
        self.hub = FrameHub(jpeg_quality)
        self.max_viewers = max_viewers
        self.viewers = 0
        self._viewers_lock = threading.Lock()
        self._metrics = metrics or (lambda: "")
        self._stats = stats or (lambda: "{}")
        self._title = title
        handler = self._handler_class()
        try:
            self._server = http.server.ThreadingHTTPServer((host, int(port)), handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EdgeSRError(f"cannot serve MJPEG on {host}:{port}: the port is in use (another edge-sr or web "
                                  "server?); pick another with --http PORT") from None
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, OSError) and exc.errno == -2:
                raise EdgeSRError(f"cannot serve MJPEG on {host}:{port}: no such address on this machine "
                                  "(check --listen)") from None
            if exc.errno == errno.EACCES:
                raise EdgeSRError(f"cannot serve MJPEG on {host}:{port}: permission denied (ports below 1024 need "
                                  "privileges; use a port above 1024)") from None
            raise EdgeSRError(f"cannot serve MJPEG on {host}:{port}: {exc}") from None
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}/"
        self.name = f"http {self.url}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mjpeg-http", daemon=True)
        self._thread.start()
        log.info("MJPEG stream on %s", self.url)

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 15  # a viewer that stops reading frees its thread
            server_version = "edge-sr"

            def log_message(self, fmt, *args):  # noqa: A003 - http.server's API
                log.debug("http %s - " + fmt, self.client_address[0], *args)

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's API
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/", "/index.html"):
                        self._send(200, "text/html; charset=utf-8",
                                   INDEX_HTML.format(title=server._title).encode())
                    elif path == "/stream.mjpg":
                        server._stream(self)
                    elif path == "/snapshot.jpg":
                        got = server.hub.next_jpeg(0, timeout_s=5.0)
                        if got is None:
                            self._send(503, "text/plain", b"no frame yet\n")
                        else:
                            self._send(200, "image/jpeg", got[1])
                    elif path == "/metrics":
                        self._send(200, "text/plain; version=0.0.4; charset=utf-8", server._metrics().encode())
                    elif path == "/stats":
                        self._send(200, "application/json", server._stats().encode())
                    else:
                        self._send(404, "text/plain", b"not found\n")
                except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError) as exc:
                    log.debug("viewer %s went away: %s", self.client_address[0], exc)

        return Handler

    def _stream(self, h) -> None:
        with self._viewers_lock:
            if self.viewers >= self.max_viewers:
                h._send(503, "text/plain", b"too many viewers\n")
                return
            self.viewers += 1
        try:
            h.send_response(200)
            h.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            h.send_header("Cache-Control", "no-cache, private")
            h.send_header("Pragma", "no-cache")
            h.end_headers()
            seq = 0
            while not self.hub.closed:
                got = self.hub.next_jpeg(seq, timeout_s=1.0)
                if got is None:
                    continue
                seq, jpeg = got
                h.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                h.wfile.write(jpeg)
                h.wfile.write(b"\r\n")
                h.wfile.flush()
        finally:
            with self._viewers_lock:
                self.viewers -= 1

    def write(self, frame_bgr_u8: np.ndarray) -> None:
        self.hub.publish(frame_bgr_u8)

    def close(self) -> None:
        self.hub.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=1.0)


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
              title: str = "live stream") -> Sink:
    s = str(spec).strip()
    low = s.lower()
    if low in ("null", "none", "null://", "-"):
        return NullSink()
    if low.startswith("display") and re.match(r"^display(://\d*)?$", low):
        return DisplaySink()
    if low.startswith(("http://", "mjpeg://")):
        host, port = parse_http_spec(s, listen)
        return MjpegServer(host, port, metrics=metrics, stats=stats, title=title)
    if low.startswith(("rtsp://", "rtp://", "webrtc://")):
        raise EdgeSRError(f"output {s}: network video outputs other than MJPEG over HTTP are not supported "
                          "(use --output http://HOST:PORT)")
    if Path(s).suffix.lower() in VIDEO_FOURCC:
        return VideoFileSink(s, fps, video_codec)
    raise EdgeSRError(f"unknown output {s!r}: give a video file (.mp4/.avi/.mkv), http://HOST:PORT, display://0 "
                      "or null")
