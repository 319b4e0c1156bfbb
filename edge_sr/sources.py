"""Frame sources chosen by URI, after jetson-utils' videoSource.

    0, /dev/video0, v4l2:///dev/video0   USB/V4L2 camera (OpenCV, CAP_V4L2 on Linux)
    csi://0                              Jetson CSI camera (GStreamer nvarguscamerasrc pipeline)
    picam://0                            Raspberry Pi camera (picamera2, imported lazily)
    rtsp://..., rtmp://..., http(s)://...  network stream (OpenCV's FFmpeg, with open/read timeouts)
    demo                                 a synthetic moving scene (edge_sr.scene), no camera needed
    a video file, an image, a folder of images

Every source gives uint8 BGR frames. ``read(timeout_s)`` returns a frame, or None for "no frame
yet" (a timeout or a camera being reopened is not an error), and raises ``EndOfStream`` when a file
or folder ends. Live sources (cameras, network, a paced demo) are read latest-frame-wins by the
stream; non-live ones (files, folders, an unpaced demo) deliver every frame.

A camera or stream that drops mid-stream is reopened with exponential backoff (logged) while the
process keeps running; one absent at start is waited for with backoff up to ``open(wait_s=...)``,
then raises ``DeviceError`` naming the device and what to check. A file's frames that do not decode
are skipped and counted (``skipped``); a folder is re-listed as the stream goes (``watch``: followed).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DeviceError, EdgeSRError
from .imageio import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".h265", ".flv",
                  ".wmv", ".y4m")
SOURCE_HELP = ("a camera index (0), /dev/videoN, csi://N, picam://N, demo, rtsp://..., http(s)://..., "
               "a video file, an image or an image folder")


class EndOfStream(Exception):
    """A finite source (file, folder) has no more frames. Not an error."""


_native_logs_set = False


def _cv2():
    from .lazy import require

    cv2 = require("cv2", "video capture")
    global _native_logs_set
    if not _native_logs_set:
        _native_logs_set = True
        quiet_native_logs(cv2)
    return cv2


def quiet_native_logs(cv2) -> None:
    """OpenCV's warnings and FFmpeg's messages ("moov atom not found", "Connection refused") would
    surround our one-line errors; keep them for -v (debug logging) only. Set before FFmpeg's first use."""
    if logging.getLogger("edge_sr").isEnabledFor(logging.DEBUG):
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    utils_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if utils_logging is not None and hasattr(utils_logging, "setLogLevel"):
        utils_logging.setLogLevel(utils_logging.LOG_LEVEL_ERROR)


def redact_url(url: str) -> str:
    """rtsp://user:secret@host/... -> rtsp://user:***@host/... (for logs and errors)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class Source:
    """Base class. Subclasses implement ``_open`` and ``_read``."""

    name = "source"
    live = True
    fps: float | None = None

    def __init__(self) -> None:
        self.frames_read = 0
        self.reconnects = 0
        self.skipped = 0  # frames (or files) that could not be decoded and were skipped

    def open(self, wait_s: float = 0.0, stop=None) -> "Source":
        """Open the source. ``wait_s``/``stop`` (a threading.Event) matter to cameras and streams
        (``ReconnectingSource``): how long to wait for one absent at start."""
        self._open()
        return self

    def _open(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def read(self, timeout_s: float = 1.0) -> np.ndarray | None:
        frame = self._read(timeout_s)
        if frame is not None:
            self.frames_read += 1
        return frame

    def _read(self, timeout_s: float) -> np.ndarray | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"source": self.name, "live": self.live, "fps": self.fps}

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


def _fit(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to (width, height) when the frame differs; gray -> BGR."""
    cv2 = _cv2()
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if size is not None and (frame.shape[1], frame.shape[0]) != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frame


# ---------------------------------------------------------------------------------------------
# demo


class DemoSource(Source):
    """The synthetic scene. ``fps > 0``: live, paced at ``fps`` (like a camera); ``fps == 0``: as
    fast as the consumer takes frames (non-live), for measuring the pipeline itself."""

    def __init__(self, width: int = 320, height: int = 240, fps: float = 30.0, seed: int = 0):
        super().__init__()
        if width < 8 or height < 8:
            raise EdgeSRError(f"demo frame size too small: {width}x{height}")
        self.width, self.height, self.seed = int(width), int(height), int(seed)
        self.fps = float(fps) if fps else None
        self.live = bool(fps)
        self.name = f"demo {self.width}x{self.height}" + (f"@{self.fps:g}" if self.fps else " unpaced")
        self._t0 = 0.0
        self._index = 0

    def _open(self) -> None:
        from .scene import render_scene

        render_scene(0.0, self.height, self.width, self.seed)  # builds the canvas now, not in the loop
        self._t0 = time.monotonic()

    def _read(self, timeout_s: float) -> np.ndarray | None:
        from .scene import render_scene

        if self.fps:
            due = self._t0 + self._index / self.fps
            wait = due - time.monotonic()
            if wait > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait > 0:
                time.sleep(wait)
            elif wait < -1.0:  # fell behind by more than a second (paused): skip ahead like a camera
                self._index = int((time.monotonic() - self._t0) * self.fps)
        t_s = self._index / (self.fps or 30.0)
        self._index += 1
        return render_scene(t_s, self.height, self.width, self.seed)


# ---------------------------------------------------------------------------------------------
# files and folders


class VideoFileSource(Source):
    """A video file, every frame in order. A frame that does not decode (a damaged file) is skipped
    and counted (``skipped``, logged): the reader seeks past it, and the stream goes on."""

    live = False

    def __init__(self, path: str | os.PathLike, loop: bool = False, size: tuple[int, int] | None = None):
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.size = size
        self.name = f"file {self.path}"
        self._cap = None
        self._pending: np.ndarray | None = None
        self._pos = 0  # index of the next frame
        self._count = 0  # frames the container declares (0: unknown)

    def _open(self) -> None:
        cv2 = _cv2()
        if not self.path.is_file():
            raise EdgeSRError(f"video file not found: {self.path}")
        if not os.access(self.path, os.R_OK):
            raise EdgeSRError(f"video file not readable (permissions): {self.path}")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise EdgeSRError(f"cannot read video file {self.path}: not a video OpenCV/FFmpeg can decode")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise EdgeSRError(f"video file {self.path} has no frame OpenCV/FFmpeg can decode")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._count = int(count) if count and 0 < count < 2**31 else 0
        self._cap = cap
        self._pending = first
        self._pos = 1

    def _skip_damage(self) -> np.ndarray | None:
        """After a failed read before the declared end: seek past the damage (1, 2, 4... frames on)
        and return the first frame that decodes, or None when nothing decodes up to the end."""
        cv2 = _cv2()
        bad, step = self._pos, 1
        while bad + step < self._count:
            target = bad + step
            if self._cap.set(cv2.CAP_PROP_POS_FRAMES, target):
                ok, frame = self._cap.read()
                if ok and frame is not None:
                    n = target - bad
                    self.skipped += n
                    self._pos = target + 1
                    log.warning("%s: %d frame(s) from #%d do not decode; skipped (%d so far)", self.name, n, bad,
                                self.skipped)
                    return frame
            step *= 2
        if self._count > bad:
            self.skipped += self._count - bad
            log.warning("%s: frames #%d..#%d do not decode; skipped (%d so far)", self.name, bad, self._count - 1,
                        self.skipped)
        self._pos = self._count
        return None

    def _read(self, timeout_s: float) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return _fit(frame, self.size)
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._pos += 1
            return _fit(frame, self.size)
        if self._pos < self._count:  # not the end the container declares: damage
            frame = self._skip_damage()
            if frame is not None:
                return _fit(frame, self.size)
        if not self.loop:
            raise EndOfStream
        if self.frames_read == 0:
            raise EdgeSRError(f"video file {self.path} has no frame to loop")
        self._cap.set(_cv2().CAP_PROP_POS_FRAMES, 0)
        ok, frame = self._cap.read()
        if not ok:  # some containers cannot seek: reopen
            self._cap.release()
            self._cap = _cv2().VideoCapture(str(self.path), _cv2().CAP_FFMPEG)
            ok, frame = self._cap.read()
            if not ok:
                raise EdgeSRError(f"video file {self.path} could not be read again for --loop")
        self._pos = 1
        return _fit(frame, self.size)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(Source):
    """A folder of images (by name) or a single image; frames after the first are resized to the
    first one's size (or to ``size``) so that outputs keep one frame size.

    The folder is listed again as the stream goes, so a file deleted meanwhile is skipped (and
    counted) and files added with names after the current one are taken. ``watch``: at the end,
    wait for new files instead of ending (write a file elsewhere and rename it in: a file still
    being written may not decode and is skipped)."""

    live = False
    relist_s = 1.0  # list the folder again at most this often (and whenever the known files run out)
    poll_s = 0.25  # --watch: how often an idle folder is looked at

    def __init__(self, path: str | os.PathLike, loop: bool = False, size: tuple[int, int] | None = None,
                 fps: float = 30.0, watch: bool = False):
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.watch = watch
        self.size = size
        self.fps = fps
        self.name = f"images {self.path}"
        self._files: list[Path] = []
        self._last: str | None = None  # name of the last file taken
        self._listed_at = 0.0
        self._single = False

    def _open(self) -> None:
        from .imageio import list_images

        if self.path.is_dir():
            try:
                self._files = list_images(self.path, "image folder")
            except EdgeSRError:
                if not self.watch:  # an empty folder is fine to watch
                    raise
                self._files = []
            self._listed_at = time.monotonic()
        elif self.path.is_file():
            self._files = [self.path]
            self._single = True
        else:
            raise EdgeSRError(f"image source not found: {self.path}")

    def _relist(self) -> None:
        from .imageio import IMAGE_SUFFIXES

        try:
            self._files = sorted(f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as exc:
            log.warning("%s: cannot list the folder (%s)", self.name, exc.strerror or exc)
        self._listed_at = time.monotonic()

    def _next_file(self) -> Path | None:
        if not self._single and time.monotonic() - self._listed_at >= self.relist_s:
            self._relist()
        nxt = self._after(self._last)
        if nxt is None and not self._single:
            self._relist()
            nxt = self._after(self._last)
        return nxt

    def _after(self, last: str | None) -> Path | None:
        for f in self._files:
            if last is None or f.name > last:
                return f
        return None

    def _read(self, timeout_s: float) -> np.ndarray | None:
        from .imageio import read_bgr

        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            f = self._next_file()
            if f is None:
                if self.loop and self._files:
                    if self.frames_read == 0:
                        raise EdgeSRError(f"no image in {self.path} decodes: nothing to loop")
                    self._last = None
                    continue
                if not self.watch:
                    raise EndOfStream
                left = deadline - time.monotonic()
                if left <= 0:
                    return None  # no new file yet
                time.sleep(min(self.poll_s, left))
                continue
            self._last = f.name
            try:
                frame = read_bgr(f)
            except EdgeSRError as exc:  # deleted meanwhile, half-written, not an image
                self.skipped += 1
                log.warning("%s: skipped %s (%s)", self.name, f.name, exc)
                if time.monotonic() >= deadline:
                    return None
                continue
            frame = _fit(frame, self.size)
            if self.size is None:
                self.size = (frame.shape[1], frame.shape[0])
            return frame


# ---------------------------------------------------------------------------------------------
# cameras and network streams: reopened with backoff when they drop


class ReconnectingSource(Source):
    """A live OpenCV capture that is reopened with exponential backoff when it drops.

    ``opener`` returns an opened capture object (``read() -> (ok, frame)``, ``release()``) or raises
    DeviceError; it is injectable so that tests can drive the reconnect logic."""

    live = True
    backoff_start_s = 0.5
    backoff_max_s = 30.0
    failures_before_reopen = 3  # consecutive failed reads (a timeout is "no frame yet")

    def __init__(self, name: str, opener: Callable[[], object], size: tuple[int, int] | None = None,
                 fps: float | None = None):
        super().__init__()
        self.name = name
        self._opener = opener
        self.size = size
        self.fps = fps
        self._cap = None
        self._fails = 0
        self._backoff_s = self.backoff_start_s
        self._next_try = 0.0
        self._sleep = time.sleep

    def _open(self) -> None:
        self._cap = self._opener()  # the first open fails loudly; later ones are retried

    def open(self, wait_s: float = 0.0, stop=None) -> "Source":
        """Open; a device absent at start is retried with backoff (0.5 s doubling to 10 s) for up to
        ``wait_s`` seconds (inf: forever), or until ``stop`` (a threading.Event) is set, which returns
        unopened. After ``wait_s`` the last DeviceError is raised."""
        t_end = time.monotonic() + wait_s if wait_s != float("inf") else float("inf")
        backoff = self.backoff_start_s
        while True:
            try:
                self._open()
                return self
            except EdgeSRError as exc:
                left = t_end - time.monotonic()
                if left <= 0:
                    raise
                pause = min(backoff, left, 10.0)
                log.warning("%s: not available (%s); retrying in %.1f s (--camera-wait %s)", self.name,
                            str(exc).split(":")[0], pause, "inf" if t_end == float("inf") else f"{wait_s:g}")
                backoff = min(10.0, backoff * 2)
                if stop is not None:
                    if stop.wait(pause):
                        return self
                else:
                    self._sleep(pause)

    def _read(self, timeout_s: float) -> np.ndarray | None:
        if self._cap is None:
            wait = self._next_try - time.monotonic()
            if wait > 0:
                self._sleep(min(wait, max(0.0, timeout_s)))
                return None
            try:
                self._cap = self._opener()
            except EdgeSRError as exc:
                self._schedule_retry(f"reopen failed ({exc})")
                return None
            self.reconnects += 1
            self._backoff_s = self.backoff_start_s
            log.warning("%s: reopened (reconnect %d)", self.name, self.reconnects)
        ok, frame = self._cap.read()
        if ok and frame is not None and frame.size:
            self._fails = 0
            return _fit(frame, self.size)
        self._fails += 1
        if self._fails >= self.failures_before_reopen:
            self._drop_capture()
            self._schedule_retry("lost (no frames)")
        return None

    def _drop_capture(self) -> None:
        cap, self._cap = self._cap, None
        self._fails = 0
        if cap is not None:
            try:
                cap.release()
            except Exception:  # a vanished device may fail to release; it is gone either way
                log.debug("release failed", exc_info=True)

    def _schedule_retry(self, why: str) -> None:
        log.warning("%s: %s; reopening in %.1f s", self.name, why, self._backoff_s)
        self._next_try = time.monotonic() + self._backoff_s
        self._backoff_s = min(self.backoff_max_s, self._backoff_s * 2)

    def close(self) -> None:
        self._drop_capture()


def camera_device(spec: str | int) -> str | int:
    """'0' / 0 / '/dev/video0' / 'v4l2:///dev/video0' / 'v4l2://0' -> '/dev/video0' on Linux, else the index."""
    s = str(spec)
    if s.startswith("v4l2://"):
        s = s[len("v4l2://"):]
    if s.isdigit():
        return f"/dev/video{int(s)}" if sys.platform.startswith("linux") else int(s)
    return s


def _camera_hint(dev: str | int) -> str:
    return (f"check that the camera is plugged in and listed by `v4l2-ctl --list-devices` (package v4l-utils), "
            f"that no other process holds it (`fuser {dev}`), and that the user is in the video group")


def open_v4l2(dev: str | int, size: tuple[int, int] | None, fps: float | None, fourcc: str | None = None,
              read_timeout_ms: int = 2000):
    """An opened cv2.VideoCapture for a V4L2 camera, or DeviceError naming the device and what to check."""
    cv2 = _cv2()
    if isinstance(dev, str):
        p = Path(dev)
        if not p.exists():
            raise DeviceError(f"camera {dev} not found: {_camera_hint(dev)}")
        if not os.access(p, os.R_OK | os.W_OK):
            raise DeviceError(f"no permission to open camera {dev}: add the user to the video group "
                              "(sudo usermod -aG video $USER, then log in again)")
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    cap = cv2.VideoCapture(dev, api)
    if not cap.isOpened():
        cap.release()
        raise DeviceError(f"could not open camera {dev}: {_camera_hint(dev)}")
    if fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc[:4].ljust(4)))
    if size:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a stale queue
    if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms)
    return cap


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30, flip: int = 0) -> str:
    """The GStreamer pipeline string for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink)."""
    if not 0 <= int(flip) <= 7:
        raise EdgeSRError(f"--flip must be 0..7 (nvvidconv flip-method), got {flip}")
    if width <= 0 or height <= 0 or fps <= 0:
        raise EdgeSRError(f"CSI capture needs a positive size and frame rate, got {width}x{height}@{fps}")
    num, den = (int(fps), 1) if float(fps).is_integer() else (int(round(fps * 1000)), 1000)
    conv = f"nvvidconv flip-method={int(flip)}" if flip else "nvvidconv"
    return (f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
            f"video/x-raw(memory:NVMM),width={int(width)},height={int(height)},format=NV12,framerate={num}/{den} ! "
            f"{conv} ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink max-buffers=1 drop=true")


def opencv_has_gstreamer() -> bool:
    info = _cv2().getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m and m.group(1).upper() == "YES")


def open_csi(sensor_id: int, size: tuple[int, int], fps: float, flip: int = 0):
    cv2 = _cv2()
    pipeline = csi_pipeline(sensor_id, size[0], size[1], fps, flip)
    if not opencv_has_gstreamer():
        raise DeviceError("csi:// needs OpenCV built with GStreamer, and this one is not: on a Jetson use JetPack's "
                          "OpenCV (a venv made with --system-site-packages, without opencv-python from pip)")
    cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not cap.isOpened():
        cap.release()
        raise DeviceError(f"could not open CSI camera csi://{sensor_id}: check the ribbon cable and that no other "
                          "process uses the camera; after 'Failed to create CaptureSession' run "
                          "`sudo systemctl restart nvargus-daemon`")
    return cap


def open_network(url: str, timeout_ms: int = 5000):
    cv2 = _cv2()
    params = []
    for prop in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
        if hasattr(cv2, prop):
            params += [getattr(cv2, prop), int(timeout_ms)]
    try:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params) if params else cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    except cv2.error as exc:
        raise DeviceError(f"could not open stream {redact_url(url)}: {exc}") from None
    if not cap.isOpened():
        cap.release()
        raise DeviceError(f"could not open stream {redact_url(url)} within {timeout_ms / 1000:g} s: check the URL, "
                          "that the server answers, the network and the credentials")
    return cap


# ---------------------------------------------------------------------------------------------
# Raspberry Pi camera


def picam_frame_to_bgr(arr: np.ndarray, width: int) -> np.ndarray:
    """A picamera2 "RGB888" array (already B, G, R in memory; rows may be padded to a stride wider
    than the image) -> a contiguous HxWx3 BGR frame."""
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise DeviceError(f"unexpected picamera2 frame shape {arr.shape} (expected H x W x 3 for RGB888)")
    if arr.shape[1] > width or arr.shape[2] > 3:
        arr = arr[:, :width, :3]
    return np.ascontiguousarray(arr)


class PicamSource(Source):
    live = True

    def __init__(self, camera_num: int = 0, size: tuple[int, int] = (640, 480), fps: float = 30.0):
        super().__init__()
        self.camera_num, self.size, self.fps = int(camera_num), size, fps
        self.name = f"picam://{self.camera_num}"
        self._cam = None

    def _open(self) -> None:
        from .lazy import require

        picamera2 = require("picamera2", "the Raspberry Pi camera (picam://)")
        try:
            cam = picamera2.Picamera2(self.camera_num)
            config = cam.create_video_configuration(main={"size": tuple(self.size), "format": "RGB888"},
                                                    controls={"FrameRate": float(self.fps)} if self.fps else None)
            cam.configure(config)
            cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise DeviceError(f"could not open {self.name}: {exc}; check the ribbon cable, `rpicam-hello --list-cameras` "
                              "and that no other process (another picamera2/rpicam app) holds the camera") from None
        self._cam = cam

    def _read(self, timeout_s: float) -> np.ndarray | None:
        return picam_frame_to_bgr(self._cam.capture_array("main"), self.size[0])

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None


# ---------------------------------------------------------------------------------------------


def open_source(spec: str, width: int | None = None, height: int | None = None, fps: float | None = None,
                loop: bool = False, fourcc: str | None = None, flip: int = 0, timeout_s: float = 5.0,
                seed: int = 0, watch: bool = False) -> Source:
    """Build (not yet open) the source named by ``spec``; see the module docstring for the forms."""
    spec = str(spec).strip()
    if not spec:
        raise EdgeSRError(f"empty source: give {SOURCE_HELP}")
    size = (int(width), int(height)) if width and height else None
    if (width is None) != (height is None):
        raise EdgeSRError("give both --width and --height, or neither")
    low = spec.lower()
    if low in ("demo", "demo://", "demo://0"):
        w, h = size or (320, 240)
        return DemoSource(w, h, 30.0 if fps is None else fps, seed=seed)
    if low.startswith("csi://"):
        sid = _index(spec, "csi://")
        size = size or (1280, 720)
        rate = fps or 30.0
        return ReconnectingSource(f"csi://{sid}", lambda: open_csi(sid, size, rate, flip), None, rate)
    if low.startswith("picam://"):
        return PicamSource(_index(spec, "picam://"), size or (640, 480), fps or 30.0)
    if low.startswith(NETWORK_SCHEMES):
        ms = int(timeout_s * 1000)
        return ReconnectingSource(redact_url(spec), lambda: open_network(spec, ms), size, fps)
    if spec.isdigit() or low.startswith("v4l2://") or spec.startswith("/dev/video"):
        dev = camera_device(spec)
        rate = fps or 30.0
        cam_size = size or (640, 480)
        return ReconnectingSource(f"camera {dev}", lambda: open_v4l2(dev, cam_size, rate, fourcc), size, rate)
    if low.startswith("file://"):
        spec = spec[len("file://"):]
    p = Path(os.path.expanduser(spec))
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        if not p.exists():
            raise EdgeSRError(f"source not found: {p}")
        return ImageFolderSource(p, loop=loop, size=size, fps=fps or 30.0, watch=watch)
    if watch:
        raise EdgeSRError(f"--watch follows an image folder; {p} is not one")
    if p.exists() or p.suffix.lower() in VIDEO_SUFFIXES:
        return VideoFileSource(p, loop=loop, size=size)
    raise EdgeSRError(f"source not found: {spec} (expected {SOURCE_HELP})")


def _index(spec: str, prefix: str) -> int:
    rest = spec[len(prefix):] or "0"
    if not rest.isdigit():
        raise EdgeSRError(f"bad source {spec!r}: expected {prefix}N with N a number")
    return int(rest)
