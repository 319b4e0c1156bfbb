"""Video files: upscale a file keeping its timing and sound, and record a stream that survives faults.

Encoding goes through PyAV (FFmpeg's libraries; the ``av`` wheel brings its own FFmpeg with libx264).
Without PyAV, OpenCV's writer is the fallback: no sound, MPEG-4 part 2 (``mp4v``), constant frame rate.

``upscale_video(src, dst, upscaler)``
    Decodes every frame, upscales it and encodes it with the input frame's own timestamp (variable
    frame rate inputs stay in sync), copies the audio packets untouched (or re-encodes them when the
    output container cannot hold the codec), shows a progress bar with an ETA, and finalises on
    Ctrl-C: a stopped or failed run (disk full included) leaves ``NAME.partial.mp4`` (what was done,
    playable), never a half-written file under the final name. MP4 is written fragmented (a keyframe
    and a fragment every 2 s) so that whatever stops the run, the fragments done so far play.

``Recording`` (what ``edge_sr.sinks.VideoFileSink`` writes through)
    A live recording: each frame gets its capture (wall) time as its presentation time, so ten
    seconds of stream play ten seconds at any frame rate. MP4/MOV are written fragmented (a
    self-contained fragment every ``keyframe_s`` seconds, flushed to the kernel as it is made and
    fsync'd every ``fsync_s``): a SIGKILL or a power cut loses at most the last fragment, and the next
    run finalises the leftover (``NAME.recovered-DATE.mp4``). A write error (disk full) stops the
    recording with one line; the fragments written so far stay playable under the final name.

Files are written under a hidden temporary name beside the target (``.NAME.XXXX.part.EXT``),
locked (``flock``) while a process writes them, and renamed on success. Browsers play the result:
H.264 in MP4 with yuv420p, BT.709-tagged colour, even frame sizes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import EdgeSRError

log = logging.getLogger(__name__)

# output suffix -> FFmpeg muxer
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
FRAGMENTABLE = ("mp4", "mov")  # written as fragmented MP4 while recording: playable after a crash
DEFAULT_CODEC = {".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".mkv": "h264", ".webm": "vp9", ".avi": "mjpeg"}
# what users type (FFmpeg names, OpenCV FOURCCs) -> encoders to try, best first
CODEC_ALIASES = {
    "h264": ("libx264", "h264"), "avc": ("libx264", "h264"), "avc1": ("libx264", "h264"),
    "x264": ("libx264",), "libx264": ("libx264",),
    "h265": ("libx265", "hevc"), "hevc": ("libx265", "hevc"), "hvc1": ("libx265", "hevc"),
    "hev1": ("libx265", "hevc"), "x265": ("libx265",), "libx265": ("libx265",),
    "vp9": ("libvpx-vp9",), "vp09": ("libvpx-vp9",), "vp8": ("libvpx",), "vp80": ("libvpx",),
    "av1": ("libsvtav1", "libaom-av1", "av1"), "av01": ("libsvtav1", "libaom-av1", "av1"),
    "mjpeg": ("mjpeg",), "mjpg": ("mjpeg",),
    "mpeg4": ("mpeg4",), "mp4v": ("mpeg4",), "xvid": ("mpeg4",), "divx": ("mpeg4",), "fmp4": ("mpeg4",),
    "vp90": ("libvpx-vp9",), "hfyu": ("huffyuv",),
}
# codec for OpenCV's writer (the fallback without PyAV)
CV2_FOURCC = {"mpeg4": "mp4v", "mjpeg": "MJPG", "libx264": "avc1", "h264": "avc1"}
# audio copied as it is into MP4/MOV (what browsers decode there); anything else becomes AAC
BROWSER_AUDIO = ("aac", "mp3", "opus", "flac")
PARTIAL_TAG = ".partial"
RECOVERED_TAG = ".recovered-"
RECORDING_TIME_BASE = Fraction(1, 90000)  # the MPEG clock: exact for 24/25/30/50/60 and 1000/1001 rates


def _av():
    from .lazy import require

    return require("av", "video files with sound and H.264 (pip install av; ./install.sh installs it)")


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _cv2():
    from .lazy import require

    return require("cv2", "video files")


def is_video_path(path: str | os.PathLike) -> bool:
    from .sources import VIDEO_SUFFIXES

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# ---------------------------------------------------------------------------------------------
# paths: validation, temporaries, locks, leftovers


def check_output_path(path: str | os.PathLike) -> Path:
    """Raise EdgeSRError (one line) unless a video can be written at ``path``; returns it as a Path."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in CONTAINERS:
        raise EdgeSRError(f"unsupported video output {p}: use one of {', '.join(sorted(CONTAINERS))}")
    if p.is_dir():
        raise EdgeSRError(f"cannot write {p}: it is a folder (give a file name such as {p / ('out' + ext)})")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise EdgeSRError(f"cannot write {p}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise EdgeSRError(f"cannot write {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeSRError(f"cannot write {p}: the folder {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK) and not os.access(parent, os.W_OK):
        raise EdgeSRError(f"cannot write {p}: the file exists and is read-only")
    return p


def partial_name(path: Path) -> Path:
    return path.with_name(path.stem + PARTIAL_TAG + path.suffix)


def _part_glob(path: Path) -> str:
    return f".{path.name}.*.part{path.suffix}"


class _LockedTemp:
    """A hidden temporary beside ``dest``, locked with flock while this process writes it (a lock
    dies with its process, so another run can tell a leftover from a file being written)."""

    def __init__(self, dest: Path):
        self.dest = dest
        parent = dest.parent if str(dest.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{dest.suffix}", dir=parent)
        except OSError as exc:
            raise EdgeSRError(f"cannot write {dest}: {exc.strerror or exc}") from None
        self.path = Path(tmp)
        self.fd = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a filesystem without locks: still usable, leftovers are judged by age
            log.debug("no flock on %s", tmp)
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # a normal file for its readers, not mkstemp's 0600

    def fsync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the lock
            self.fd = -1

    def commit(self, dest: Path | None = None) -> Path:
        """fsync, rename onto ``dest`` (default: the target), fsync the folder; releases the lock."""
        dest = dest or self.dest
        with contextlib.suppress(OSError):
            self.fsync()
        os.replace(self.path, dest)
        self.release()
        _fsync_dir(dest.parent)
        return dest

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.release()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(str(folder) if str(folder) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def complete_mp4_length(path: str | os.PathLike) -> int:
    """Length of the longest prefix of an MP4 made of whole top-level boxes that a player can use: the
    header (ftyp + moov) and every complete moof+mdat fragment pair (0 when the header is incomplete).
    Only the box headers (size, type: ISO/IEC 14496-12 4.2) are read."""
    size = os.path.getsize(path)
    good = 0
    have_moov = False
    pending_moof = False
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            box_size = int.from_bytes(head[:4], "big")
            kind = head[4:8]
            if box_size == 1 and len(head) >= 16:
                box_size = int.from_bytes(head[8:16], "big")
            elif box_size == 0:  # "to the end of the file": only complete if the writer finished it
                box_size = size - pos
            if box_size < 8 or pos + box_size > size:
                break
            pos += box_size
            if kind == b"moov":
                have_moov = True
                good = pos
            elif kind == b"moof":
                pending_moof = True
            elif kind == b"mdat":
                if pending_moof or not have_moov:
                    pending_moof = False
                    if have_moov:
                        good = pos
            elif not pending_moof and have_moov:
                good = pos  # mfra, free, sidx... between fragments
    return good if have_moov else 0


def _probe_frames(path: Path, limit: int = 1_000_000) -> tuple[int, float]:
    """(decodable video frames, seconds from the first to the last) with PyAV; (0, 0) if unreadable."""
    av = _av()
    n, first, last = 0, None, None
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return 0, 0.0
            vs = c.streams.video[0]
            for frame in c.decode(vs):
                if frame.time is not None:
                    first = frame.time if first is None else first
                    last = frame.time
                n += 1
                if n >= limit:
                    break
    except (av.FFmpegError, OSError, ValueError):
        pass
    return n, (last - first) if first is not None and last is not None else 0.0


def salvage(part: Path) -> bool:
    """Make a partly written file playable in place: fragmented MP4/MOV are cut after the last whole
    fragment. Returns True when at least one frame decodes afterwards."""
    if CONTAINERS.get(part.suffix.lower()) in FRAGMENTABLE:
        keep = complete_mp4_length(part)
        if keep == 0:
            return False
        if keep < os.path.getsize(part):
            os.truncate(part, keep)
    if not have_pyav():
        return os.path.getsize(part) > 0
    return _probe_frames(part, limit=1)[0] > 0


def finalise_leftovers(path: str | os.PathLike) -> list[Path]:
    """Temporaries of earlier runs that died (SIGKILL, power cut) beside ``path``: a playable one is
    cut to its last whole fragment and renamed ``NAME.recovered-DATE.EXT``; an empty or unreadable one is
    removed. Files another running process holds (locked) are left alone. Returns the recovered files."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    recovered: list[Path] = []
    for part in sorted(parent.glob(_part_glob(p))):
        if not part.is_file() or _is_locked(part):
            continue
        try:
            ok = part.stat().st_size > 0 and salvage(part)
            if ok:
                stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(part.stat().st_mtime))
                dest = p.with_name(f"{p.stem}{RECOVERED_TAG}{stamp}{p.suffix}")
                i = 1
                while dest.exists():
                    i += 1
                    dest = p.with_name(f"{p.stem}{RECOVERED_TAG}{stamp}-{i}{p.suffix}")
                os.replace(part, dest)
                recovered.append(dest)
                log.warning("finalised the recording an earlier run left unfinished: %s", dest)
            else:
                part.unlink()
                log.warning("removed an unplayable leftover of an earlier run: %s", part.name)
        except OSError as exc:
            log.warning("could not clean up the leftover %s: %s", part, exc)
    return recovered


# ---------------------------------------------------------------------------------------------
# encoder choice


def resolve_encoder(codec: str | None, suffix: str) -> str:
    """The FFmpeg encoder name (PyAV) for a user's codec name or FOURCC, checked to exist."""
    av = _av()
    name = (codec or DEFAULT_CODEC.get(suffix.lower(), "h264")).strip()
    # FFmpeg's encoder names are lower case; a FOURCC is often written upper case (FFV1, MJPG, XVID)
    candidates = CODEC_ALIASES.get(name.lower(), (name, name.lower()))
    for enc in candidates:
        try:
            c = av.codec.Codec(enc, "w")
        except (av.FFmpegError, ValueError, KeyError, av.codec.codec.UnknownCodecError
                if hasattr(av.codec.codec, "UnknownCodecError") else ValueError):
            continue
        if c.type == "video":
            return c.name
    raise EdgeSRError(f"unknown video codec {name!r} (PyAV {av.__version__}): give an FFmpeg encoder (h264, hevc, "
                      "vp9, av1, mjpeg, mpeg4) or an OpenCV FOURCC of 4 characters (avc1, mp4v, MJPG)")


# lossless encoders keep the upscaled pixels exactly: RGB in, no 4:2:0 subsampling or YUV rounding
LOSSLESS = ("ffv1", "huffyuv", "ffvhuff", "utvideo", "png", "qtrle", "rawvideo")
RGB_FORMATS = ("bgr0", "bgr24", "rgb24", "bgra", "gbrp")


def _pix_fmt(codec) -> str:
    """4:2:0 (what browsers and hardware decoders take); full-range yuvj420p for MJPEG; RGB for a
    lossless encoder (FFV1, HuffYUV, UT Video...: its point is the exact pixels)."""
    names = [f.name for f in (codec.video_formats or [])]
    if codec.name in LOSSLESS:
        for want in RGB_FORMATS:
            if want in names:
                return want
    for want in (("yuvj420p", "yuv420p") if codec.name == "mjpeg" else ("yuv420p", "yuvj420p")):
        if not names or want in names:
            return want
    return names[0]


def _encoder_options(enc: str, live: bool, crf: int | None, preset: str | None) -> dict[str, str]:
    if enc in ("libx264", "libx265"):
        opts = {"preset": preset or ("veryfast" if live else "medium"), "crf": str(crf if crf is not None else
                                                                                 (20 if enc == "libx264" else 24))}
        if live:
            opts["tune"] = "zerolatency"  # no lookahead/B-frame delay: what is captured is in the file at once
        if enc == "libx265":
            opts["x265-params"] = "log-level=error"
        return opts
    if enc.startswith("libvpx"):
        return {"crf": str(crf if crf is not None else 32), "b": "0", "deadline": "realtime" if live else "good",
                "cpu-used": "8" if live else "4", "row-mt": "1"}
    if enc == "libsvtav1":
        return {"crf": str(crf if crf is not None else 32), "preset": preset or ("10" if live else "8")}
    if enc in ("mpeg4", "mjpeg"):  # no CRF: a fixed quantiser (ffmpeg's -q:v 3)
        return {"flags": "+qscale", "global_quality": str(3 * 118)}
    return {}


# ---------------------------------------------------------------------------------------------
# the PyAV writer


class _AvWriter:
    """One output container: a video stream configured on the first frame, audio streams copied or
    re-encoded. ``write`` takes BGR frames and presentation times in ``time_base`` units."""

    def __init__(self, path: Path, fmt: str, encoder: str, time_base: Fraction, rate: Fraction | None,
                 live: bool, crf: int | None = None, preset: str | None = None, fragmented: bool = False,
                 keyframe_s: float | None = None, threads: int = 0, color: dict | None = None,
                 label: Path | None = None):
        av = self.av = _av()
        self.path = path
        self.label = label or path  # the name users know (the target, not the hidden temporary)
        options: dict[str, str] = {}
        if fmt in FRAGMENTABLE:
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof" if fragmented else "+faststart"
        if fragmented:
            options["flush_packets"] = "1"  # each fragment reaches the kernel as soon as it is made
        try:
            self.container = av.open(str(path), "w", format=fmt, options=options)
        except (av.FFmpegError, OSError) as exc:
            raise EdgeSRError(f"cannot write {self.label}: {exc}") from None
        self.encoder = encoder
        self.codec = av.codec.Codec(encoder, "w")
        if self.codec.canonical_name not in self.container.supported_codecs and \
                self.codec.name not in self.container.supported_codecs:
            self.container.close()
            raise EdgeSRError(f"a {fmt} file cannot hold {self.codec.canonical_name} video: pick another --codec "
                              "or file type (.mkv holds almost anything)")
        self.time_base = time_base
        self.rate = rate
        self.live = live
        self.crf, self.preset, self.threads = crf, preset, threads
        self.keyframe_s = keyframe_s
        self.color = color or {}
        self.stream = None
        self.size: tuple[int, int] | None = None
        self._pix_fmt = _pix_fmt(self.codec)
        self._next_key_pts = 0
        self._last_pts: int | None = None
        self._audio_plan: list = []  # (input stream, None: copy | encoder name)
        self._audio: dict[int, tuple[object, bool]] = {}  # input stream index -> (output stream, re-encode)
        self._held: list = []  # packets that came before the header could be written
        self.origin_s = 0.0  # input time that becomes 0 in the output (audio packets are moved by it)
        self.frames = 0
        self.first_time_s: float | None = None
        self.last_time_s = 0.0

    # -- streams -------------------------------------------------------------------------

    def check_encoder(self) -> None:
        """Open the encoder once on a small frame with the options it will get, so that a codec or option
        it refuses is reported now (at start), not on the first frame."""
        av = self.av
        cc = av.CodecContext.create(self.encoder, "w")
        cc.width, cc.height, cc.pix_fmt = 64, 48, self._pix_fmt
        cc.time_base = self.time_base
        if self.rate:
            cc.framerate = self.rate
        cc.options = _encoder_options(self.encoder, self.live, self.crf, self.preset)
        try:
            cc.open()
        except (av.FFmpegError, ValueError) as exc:
            self.container.close()
            raise EdgeSRError(f"cannot encode {self.codec.canonical_name} into {self.path.suffix}: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                cc.close()

    def add_audio(self, in_stream) -> bool:
        """Carry ``in_stream``: its packets are copied when the container can hold its codec, else
        re-encoded (AAC for MP4/MOV, Opus for WebM). Call before the first frame; the streams are made
        after the video stream (video first, as players expect). False when it cannot be carried."""
        name = in_stream.codec_context.name
        fmt = self.container.format.name
        if name in self.container.supported_codecs and (fmt not in FRAGMENTABLE or name in BROWSER_AUDIO):
            self._audio_plan.append((in_stream, None))
            return True
        target = "libopus" if self.container.format.name == "webm" else "aac"
        if target not in self.container.supported_codecs:
            log.warning("audio stream %d (%s) dropped: %s files cannot hold it", in_stream.index, name,
                        self.path.suffix)
            return False
        self._audio_plan.append((in_stream, target))
        return True

    def _open_audio(self) -> None:
        av = self.av
        for in_stream, target in self._audio_plan:
            name = in_stream.codec_context.name
            try:
                if target is None:
                    out = self.container.add_stream_from_template(in_stream)
                else:
                    out = self.container.add_stream(target, rate=in_stream.codec_context.sample_rate or 48000)
                    out.layout = _named_layout(in_stream.codec_context.layout)
                    log.info("audio %s cannot go into %s as it is: re-encoding it as %s", name, self.path.suffix,
                             target)
            except (av.FFmpegError, ValueError) as exc:
                log.warning("audio stream %d (%s) dropped: %s", in_stream.index, name, exc)
                continue
            self._audio[in_stream.index] = (out, target is not None)

    def _open_video(self, w: int, h: int) -> None:
        av = self.av
        if self._pix_fmt in ("yuv420p", "yuvj420p") and (w % 2 or h % 2):
            log.info("%s needs even frame sizes: writing %dx%d (the last odd row/column dropped)",
                     self.codec.canonical_name, w & ~1, h & ~1)
            w, h = w & ~1, h & ~1
        st = self.container.add_stream(self.encoder, rate=self.rate) if self.rate else \
            self.container.add_stream(self.encoder)
        cc = st.codec_context
        st.width, st.height, st.pix_fmt = w, h, self._pix_fmt
        cc.time_base = self.time_base
        st.time_base = self.time_base
        if self.threads:
            cc.thread_count = self.threads
        cc.options = _encoder_options(self.encoder, self.live, self.crf, self.preset)
        if self.container.format.name in (*FRAGMENTABLE, "avi"):
            # no B-frames: a fragmented MP4 has no edit list to undo the decode delay they bring, so the
            # picture would lag the sound by it (AVI cannot reorder at all)
            cc.max_b_frames = 0
        if self.encoder == "libx265" and self.container.format.name in FRAGMENTABLE:
            with contextlib.suppress(Exception):
                st.codec_tag = "hvc1"  # what Safari and Chrome expect for HEVC in MP4
        tags = () if self._pix_fmt in RGB_FORMATS else (  # RGB pixels carry no YUV matrix or range
            ("colorspace", self.color.get("colorspace", 1)),  # BT.709
            ("color_primaries", self.color.get("color_primaries", 1)),
            ("color_trc", self.color.get("color_trc", 1)),
            ("color_range", 1 if self._pix_fmt != "yuvj420p" else 2))  # 1 tv, 2 pc
        for attr, value in tags:
            with contextlib.suppress(Exception):
                setattr(cc, attr, value)
        self._open_audio()
        try:
            cc.open()  # fails here (not mid-stream) when the options or the size do not suit the encoder
        except (av.FFmpegError, ValueError) as exc:
            raise EdgeSRError(f"cannot encode {self.codec.canonical_name} at {w}x{h}: {exc}") from None
        self.stream, self.size = st, (w, h)

    # -- data ----------------------------------------------------------------------------

    def write(self, frame_bgr_u8: np.ndarray, pts: int) -> None:
        """Encode one frame shown at ``pts`` (``time_base`` units); a pts not after the last one is
        moved one tick later (a stream must increase)."""
        av = self.av
        if frame_bgr_u8.ndim == 2:
            frame_bgr_u8 = np.repeat(frame_bgr_u8[:, :, None], 3, axis=2)
        if self.stream is None:
            self._open_video(frame_bgr_u8.shape[1], frame_bgr_u8.shape[0])
        w, h = self.size
        if (frame_bgr_u8.shape[1], frame_bgr_u8.shape[0]) != (w, h):
            if frame_bgr_u8.shape[1] >= w and frame_bgr_u8.shape[0] >= h and \
                    frame_bgr_u8.shape[1] - w <= 1 and frame_bgr_u8.shape[0] - h <= 1:
                frame_bgr_u8 = frame_bgr_u8[:h, :w]  # the odd row/column
            else:
                cv2 = _cv2()
                frame_bgr_u8 = cv2.resize(frame_bgr_u8, (w, h), interpolation=cv2.INTER_AREA)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr_u8), format="bgr24")
        if self._pix_fmt in RGB_FORMATS:
            frame = frame.reformat(format=self._pix_fmt)  # a repacking: the pixels stay exact
        else:
            frame = frame.reformat(format=self._pix_fmt, dst_colorspace=self.color.get("colorspace", 1),
                                   dst_color_range=1 if self._pix_fmt != "yuvj420p" else 2)
        frame.pts = pts
        frame.time_base = self.time_base
        if self.keyframe_s and pts >= self._next_key_pts:  # a keyframe starts each fragment
            frame.pict_type = av.video.frame.PictureType.I
            self._next_key_pts = pts + int(self.keyframe_s / self.time_base)
        self._mux(self.stream.encode(frame))
        self.frames += 1
        self.last_time_s = float(pts * self.time_base)
        if self.first_time_s is None:
            self.first_time_s = self.last_time_s

    def write_audio(self, packet) -> None:
        """Copy (or re-encode) one demuxed audio packet of a stream given to ``add_audio``."""
        if packet.dts is None:
            return
        if self.stream is None:  # the streams are made with the first frame: hold the packet until then
            if any(s is packet.stream or s.index == packet.stream.index for s, _ in self._audio_plan):
                self._held.append(packet)
            return
        got = self._audio.get(packet.stream.index)
        if got is None:
            return
        out, reencode = got
        if self.origin_s:  # the input's start moves to 0 (video and sound alike: they stay in sync)
            shift = int(round(self.origin_s / packet.time_base))
            packet.pts = packet.pts - shift if packet.pts is not None else None
            packet.dts = packet.dts - shift
        if reencode:
            for frame in packet.decode():
                frame.pts = None  # the encoder counts samples
                self._mux(out.encode(frame))
        else:
            packet.stream = out
            self._mux([packet])

    def _mux(self, packets) -> None:
        av = self.av
        try:
            if self._held and self.stream is not None:
                held, self._held = self._held, []
                for p in held:
                    self.write_audio(p)
            for p in packets:
                self.container.mux(p)
        except av.FFmpegError as exc:
            raise _write_error(self.label, exc) from None

    def finish(self) -> None:
        """Flush the encoders and write the trailer (the index, the faststart move)."""
        av = self.av
        try:
            if self.stream is not None:
                self._mux(self.stream.encode(None))
                for out, reencode in self._audio.values():
                    if reencode:
                        self._mux(out.encode(None))
        finally:
            try:
                self.container.close()
            except av.FFmpegError as exc:
                raise _write_error(self.label, exc) from None

    def abandon(self) -> None:
        """Close without caring about errors (after a failure); what reached the file stays."""
        with contextlib.suppress(Exception):
            self.container.close()


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _named_layout(layout) -> str:
    """An encoder wants a named channel layout; an unspecified one ("2 channels") gets the usual one."""
    name = getattr(layout, "name", "") or ""
    if name and "channels" not in name:
        return name
    return _DEFAULT_LAYOUTS.get(getattr(layout, "nb_channels", 2), "stereo")


class WriteError(EdgeSRError):
    """The file could not be written (disk full, I/O error)."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message, 1)
        self.errno = errno_


def _write_error(path: Path, exc: BaseException) -> WriteError:
    err = getattr(exc, "errno", None)
    what = os.strerror(err) if err and err > 0 else str(exc)
    if err == 28:
        what = "the disk is full"
    return WriteError(f"writing {path.name} failed: {what}", err)


# ---------------------------------------------------------------------------------------------
# signals: finalisation is never cut short


@contextlib.contextmanager
def _signal_handler(handler) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` for the block, then the previous handlers come back (main
    thread only: elsewhere Python delivers no signals and signal.signal refuses)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is None:  # installed outside Python: cannot be put back, leave it
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)


@contextlib.contextmanager
def deferred_signals(note: str = "finishing the video file first") -> Iterator[list[int]]:
    """While the block runs, SIGINT/SIGTERM are recorded and logged instead of raising (only in the
    main thread; elsewhere Python delivers no signals anyway). Yields the list of signals received."""
    got: list[int] = []

    def hold(signum, _frame):
        got.append(signum)
        log.warning("%s received: %s", signal.Signals(signum).name, note)

    with _signal_handler(hold):
        yield got


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the loop then finalises) instead of raising mid-write."""

    def handler(signum, _frame):
        if not stop.is_set():
            log.warning("%s: stopping after this frame; finishing the file", signal.Signals(signum).name)
        stop.set()

    with _signal_handler(handler):
        yield


# ---------------------------------------------------------------------------------------------
# upscale a file


@dataclass
class VideoResult:
    path: Path                  # where the output is (NAME.partial.EXT when not complete)
    frames: int                 # frames written
    frames_total: int | None    # frames in the input (when known)
    duration_s: float           # span of the written frames' timestamps + one frame
    codec: str                  # encoder used
    audio: list[str] = field(default_factory=list)  # audio codecs carried
    complete: bool = True
    backend: str = "pyav"


def upscale_video(src: str | os.PathLike, dst: str | os.PathLike, upscaler, codec: str | None = None,
                  progress: bool = True, tile: int | None = None, crf: int | None = None, preset: str | None = None,
                  audio: bool = True, handle_signals: bool = True, stop: threading.Event | None = None,
                  on_frame: Callable[[int], None] | None = None) -> VideoResult:
    """Upscale every frame of ``src`` into ``dst`` with ``upscaler`` (an ``edge_sr.backends.Upscaler``).

    Frames keep their input timestamps, a display rotation (phones' portrait videos) is applied to the
    pixels (players show the output as they showed the input), audio is carried over, ``codec`` (default: H.264 for
    .mp4/.mov/.mkv, VP9 for .webm, MJPEG for .avi) is any FFmpeg encoder or alias (h264, hevc, vp9,
    av1, mjpeg, mpeg4, or an OpenCV FOURCC such as avc1). A run stopped by ``stop``, SIGINT/SIGTERM
    (``handle_signals``, main thread only) or a write error keeps what was done, playable, as
    ``NAME.partial.EXT`` and raises EdgeSRError saying so (exit code 130 for a stop). Without
    PyAV, OpenCV reads and writes (no audio, mp4v/MJPG, constant rate) with a warning.
    """
    src_p, dst_p = Path(src), check_output_path(dst)
    if not src_p.is_file():
        raise EdgeSRError(f"input video not found: {src_p}" if not src_p.exists() else f"not a file: {src_p}")
    if src_p.resolve() == dst_p.resolve() or (dst_p.exists() and os.path.samefile(src_p, dst_p)):
        raise EdgeSRError(f"refusing to overwrite the input {src_p}: give another output name")
    if not have_pyav():
        return _upscale_video_cv2(src_p, dst_p, upscaler, codec, progress, tile, handle_signals, stop, on_frame)
    av = _av()
    encoder = resolve_encoder(codec, dst_p.suffix)
    try:
        inp = av.open(str(src_p))
    except (av.FFmpegError, OSError) as exc:
        raise EdgeSRError(f"cannot read video {src_p}: {exc}") from None
    stop = stop or threading.Event()
    with contextlib.ExitStack() as stack:
        stack.callback(inp.close)
        if not inp.streams.video:
            raise EdgeSRError(f"{src_p} has no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ains = list(inp.streams.audio) if audio else []
        rate = vin.average_rate or vin.guessed_rate
        total = vin.frames or (int(round(float(inp.duration / av.time_base) * float(rate)))
                               if inp.duration and rate else None)
        color = {}
        cc_in = vin.codec_context
        for attr in ("color_primaries", "color_trc"):  # carry the input's primaries and transfer tags
            v = getattr(cc_in, attr, None)
            if v is not None and int(v) not in (0, 2):  # 0 reserved, 2 unspecified
                color[attr] = int(v)
        tmp = _LockedTemp(dst_p)
        writer = None
        try:
            writer = _AvWriter(tmp.path, CONTAINERS[dst_p.suffix.lower()], encoder, vin.time_base, rate,
                               live=False, crf=crf, preset=preset, color=color, fragmented=True, keyframe_s=2.0,
                               label=dst_p)
            writer.check_encoder()
            carried = [a.codec_context.name for a in ains if writer.add_audio(a)]
            # the output starts at 0: without an edit list (fragmented MP4) a negative start (AAC priming,
            # B-frame delay) would otherwise be shifted by the muxer for some packets and not others
            writer.origin_s = float(inp.start_time / av.time_base) if inp.start_time is not None else 0.0
            v_origin = int(round(writer.origin_s / vin.time_base))
            error: EdgeSRError | None = None
            fallback_pts = 0
            frame_ticks = int(round(1 / (float(rate) * vin.time_base))) if rate else 1
            bar = _progress(total, progress, f"x{getattr(upscaler, 'scale', '?')} {src_p.name}")
            stack.callback(bar.close)
            streams = [vin, *ains]
            with (_stop_on_signals(stop) if handle_signals else contextlib.nullcontext()):
                try:
                    for packet in inp.demux(streams):
                        if stop.is_set():
                            break
                        if packet.stream.type == "audio":
                            writer.write_audio(packet)
                            continue
                        for frame in _decode(av, packet, src_p):
                            pts = frame.pts if frame.pts is not None else fallback_pts
                            fallback_pts = pts + frame_ticks
                            img = frame.to_ndarray(format="bgr24")
                            turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
                            if turns:  # a phone's portrait video: upright pixels, as players show it
                                img = np.ascontiguousarray(np.rot90(img, turns))
                            writer.write(upscaler.upscale(img, tile=tile), pts - v_origin)
                            bar.update(1)
                            if on_frame is not None:
                                on_frame(writer.frames)
                            if stop.is_set():
                                break
                except WriteError as exc:
                    error = exc
                with deferred_signals():
                    if error is None:
                        try:
                            writer.finish()
                        except WriteError as exc:
                            error = exc
                    else:
                        writer.abandon()
                    result = VideoResult(dst_p, writer.frames, total, _span_s(writer, rate), encoder, carried)
                    if error is None and not stop.is_set():
                        if writer.frames == 0:
                            tmp.discard()
                            raise EdgeSRError(f"{src_p} has no frame to decode")
                        tmp.commit()
                        return result
                    return _keep_partial(tmp, dst_p, result, error, stop.is_set())
        except BaseException:
            if writer is not None:
                writer.abandon()
            tmp.discard()
            raise


def _decode(av, packet, src_p: Path):
    """The frames of one packet (demux ends with an empty packet per stream: it drains the decoder)."""
    try:
        return packet.decode()
    except av.FFmpegError as exc:  # one damaged packet: skip it, keep going
        log.warning("%s: skipped a packet that does not decode (%s)", src_p.name, exc)
        return []


def _span_s(writer: _AvWriter, rate) -> float:
    if not writer.frames:
        return 0.0
    return writer.last_time_s - writer.first_time_s + (1.0 / float(rate) if rate else 0.0)


def _keep_partial(tmp: _LockedTemp, dst: Path, result: VideoResult, error: EdgeSRError | None,
                  stopped: bool) -> VideoResult:
    """After a stop or a write error: keep the playable part as NAME.partial.EXT and raise saying so."""
    result.complete = False
    what = str(error) if error is not None else "stopped"
    if result.frames and salvage(tmp.path):
        result.path = tmp.commit(partial_name(dst))
        n, span = _probe_frames(result.path)
        raise EdgeSRError(f"{what} after {result.frames} of {result.frames_total or '?'} frames: the first "
                          f"{span:.1f} s ({n} frames) are in {result.path}", 130 if error is None else 1)
    tmp.discard()
    raise EdgeSRError(f"{what} before any frame was written: no file left", 130 if error is None else 1)


def _progress(total: int | None, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="frame", dynamic_ncols=True, leave=False)


def _upscale_video_cv2(src: Path, dst: Path, upscaler, codec, progress, tile, handle_signals, stop,
                       on_frame) -> VideoResult:
    """The fallback without PyAV: OpenCV reads and writes; no audio; constant frame rate."""
    cv2 = _cv2()
    log.warning("PyAV is not installed: writing without sound, at a constant frame rate, with OpenCV's %s "
                "encoder (pip install av for H.264 with audio)", "MJPG" if dst.suffix.lower() == ".avi" else "mp4v")
    cap = cv2.VideoCapture(str(src), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise EdgeSRError(f"cannot read video {src}: not a video OpenCV/FFmpeg can decode")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and 0 < fps < 1000 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    enc = CODEC_ALIASES.get((codec or "").lower(), (codec,))[0] if codec else None
    fourcc = CV2_FOURCC.get(enc or "", codec if codec and len(codec) == 4 else None) or \
        ("MJPG" if dst.suffix.lower() == ".avi" else "mp4v")
    tmp = _LockedTemp(dst)
    writer = None
    stop = stop or threading.Event()
    n = 0
    try:
        bar = _progress(total, progress, f"x{getattr(upscaler, 'scale', '?')} {src.name}")
        with (_stop_on_signals(stop) if handle_signals else contextlib.nullcontext()):
            while not stop.is_set():
                ok, img = cap.read()
                if not ok:
                    break
                out = upscaler.upscale(img, tile=tile)
                if writer is None:
                    writer = cv2.VideoWriter(str(tmp.path), cv2.VideoWriter_fourcc(*fourcc), fps,
                                             (out.shape[1], out.shape[0]))
                    if not writer.isOpened():
                        raise EdgeSRError(f"OpenCV has no {fourcc} encoder for {dst.suffix}")
                writer.write(out)
                n += 1
                bar.update(1)
                if on_frame is not None:
                    on_frame(n)
        bar.close()
        with deferred_signals():
            if writer is not None:
                writer.release()
        cap.release()
        result = VideoResult(dst, n, total, n / fps, fourcc, [], backend="opencv")
        if n == 0:
            tmp.discard()
            raise EdgeSRError(f"{src} has no frame to decode")
        if stop.is_set():
            result.complete = False
            result.path = tmp.commit(partial_name(dst))
            raise EdgeSRError(f"stopped after {n} of {total or '?'} frames: they are in {result.path}", 130)
        tmp.commit()
        return result
    except BaseException:
        if writer is not None:
            writer.release()
        cap.release()
        tmp.discard()
        raise


# ---------------------------------------------------------------------------------------------
# live recording


class Recording:
    """A video file written frame by frame from a stream. Thread-safe: ``write`` may run on the
    stream's output thread while ``close`` runs on the main thread (it waits for a write in progress).

    ``live=True``: each frame's presentation time is its capture time (``t_s``, seconds on any
    monotonic clock, default the time of ``write``), so the file plays in real time whatever the frame
    rate (variable frame rate). ``live=False``: frame i is shown at ``timestamps_s[i]`` when given
    (the source file's own timestamps), else at i / fps. ``audio_from``: a file whose audio is copied
    in step with the video (for a file source; ignored when PyAV is absent).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, codec: str | None = None, live: bool = True,
                 audio_from: str | os.PathLike | None = None, timestamps_s: list[float] | None = None,
                 keyframe_s: float = 2.0, fsync_s: float = 5.0, crf: int | None = None, preset: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.path = check_output_path(path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.live = bool(live)
        self.keyframe_s, self.fsync_s = keyframe_s, fsync_s
        self._clock = clock
        self._lock = threading.Lock()
        self._t0: float | None = None
        self._timestamps = timestamps_s
        self.frames = 0
        self.closed = False
        self.failed: EdgeSRError | None = None
        self.recovered = finalise_leftovers(self.path)
        self.fmt = CONTAINERS[self.path.suffix.lower()]
        self.backend = "pyav" if have_pyav() else "opencv"
        self._audio_in = None
        self._origin: float | None = None
        self._last_sync = self._clock()
        self._tmp = _LockedTemp(self.path)
        try:
            if self.backend == "pyav":
                self.encoder = resolve_encoder(codec, self.path.suffix)
                rate = Fraction(self.fps).limit_denominator(1001)
                # AVI holds a constant rate only (a gap costs an index entry per tick): tick = one frame
                self._tb = 1 / rate if self.fmt == "avi" else RECORDING_TIME_BASE
                self._w = _AvWriter(self._tmp.path, self.fmt, self.encoder, self._tb, rate, live=True,
                                    crf=crf, preset=preset, fragmented=self.fmt in FRAGMENTABLE,
                                    keyframe_s=keyframe_s, label=self.path)
                self._w.check_encoder()
                if audio_from is not None:
                    self._open_audio(Path(audio_from))
            else:
                log.warning("PyAV is not installed: recording without sound with OpenCV's writer; frames are "
                            "repeated or skipped to keep real time (pip install av for H.264 and crash-safe files)")
                self._w = _Cv2Recorder(self._tmp.path, self.path.suffix, codec, self.fps)
                self.encoder = self._w.fourcc
        except BaseException:
            self._tmp.discard()
            raise

    def _open_audio(self, src: Path) -> None:
        av = _av()
        try:
            inp = av.open(str(src))
        except (av.FFmpegError, OSError) as exc:
            log.warning("no audio copied from %s: %s", src, exc)
            return
        streams = [s for s in inp.streams.audio if self._w.add_audio(s)]
        if not streams:
            inp.close()
            return
        self._audio_in = inp
        self._audio_iter = inp.demux(streams)
        self._audio_next = None
        self._origin = float(inp.start_time / av.time_base) if inp.start_time is not None else None
        self._w.origin_s = self._origin or 0.0

    def _copy_audio_until(self, t_s: float) -> None:
        """Mux the source's audio packets up to ``t_s`` (output seconds)."""
        if self._audio_in is None:
            return
        while True:
            if self._audio_next is None:
                try:
                    self._audio_next = next(self._audio_iter)
                except (StopIteration, Exception):  # end or a damaged tail: no more audio
                    self._audio_in.close()
                    self._audio_in = None
                    return
            p = self._audio_next
            if p.dts is None:
                self._audio_next = None
                continue
            pt = float((p.pts if p.pts is not None else p.dts) * p.time_base)
            if pt - (self._origin or 0.0) > t_s:
                return
            self._audio_next = None
            self._w.write_audio(p)

    def _pts_s(self, t_s: float | None) -> float:
        if self.live:
            t = self._clock() if t_s is None else t_s
            if self._t0 is None:
                self._t0 = t
            return max(0.0, t - self._t0)
        i = self.frames
        ts = self._timestamps
        origin = self._origin if self._origin is not None else (ts[0] if ts else 0.0)
        if ts and i < len(ts):
            return ts[i] - origin
        if ts:
            return ts[-1] - origin + (i - len(ts) + 1) / self.fps
        return i / self.fps

    def write(self, frame_bgr_u8: np.ndarray, t_s: float | None = None) -> None:
        """Add a frame captured at ``t_s`` (monotonic seconds; default now). Raises WriteError once when
        the file cannot be written (the frames so far are then already kept under the final name)."""
        with self._lock:
            if self.failed is not None:
                raise self.failed
            if self.closed:
                return
            pts_s = self._pts_s(t_s)
            try:
                if self.backend == "pyav":
                    self._w.write(frame_bgr_u8, int(round(pts_s / self._tb)))
                    self._copy_audio_until(pts_s + 1.0 / self.fps)  # the sound under this frame too
                else:
                    self._w.write(frame_bgr_u8, pts_s)
                self.frames += 1
                now = self._clock()
                if self.fsync_s and now - self._last_sync >= self.fsync_s:
                    self._last_sync = now
                    self._tmp.fsync()  # what a power cut would otherwise take from the page cache
            except EdgeSRError as exc:
                self._fail(exc)
                raise self.failed from None
            except OSError as exc:
                self._fail(_write_error(self.path, exc))
                raise self.failed from None

    def _fail(self, exc: EdgeSRError) -> None:
        """A write failed: keep the whole fragments written so far under the final name, or nothing."""
        self.closed = True
        self._w.abandon()
        if self._audio_in is not None:
            self._audio_in.close()
        kept = None
        try:
            if self.frames and salvage(self._tmp.path):
                kept = self._tmp.commit()
        except OSError as e:
            log.debug("salvage failed: %s", e)
        if kept is None:
            self._tmp.discard()
            self.failed = WriteError(f"{exc}; nothing playable was written", getattr(exc, "errno", None))
        else:
            n, span = _probe_frames(kept) if self.backend == "pyav" else (self.frames, 0.0)
            self.failed = WriteError(f"{exc}: the recording stopped; its first {span:.1f} s ({n} frames) "
                                     f"are in {kept}", getattr(exc, "errno", None))

    def close(self) -> Path | None:
        """Finalise and rename onto the target; returns it (None when no frame was written). Safe to call
        twice, from the main thread while signals arrive (they are held until the file is done), and
        while another thread is in ``write`` (waits for it)."""
        with deferred_signals("finishing the recording first; it will stop right after"):
            with self._lock:
                if self.failed is not None:
                    raise self.failed
                if self.closed:
                    return None
                self.closed = True
                if self._audio_in is not None:
                    self._audio_in.close()
                    self._audio_in = None
                if self.frames == 0:
                    self._w.abandon()
                    self._tmp.discard()
                    log.warning("%s: no frame was written; no file left", self.path)
                    return None
                try:
                    self._w.finish()
                except (EdgeSRError, OSError) as exc:
                    self.closed = False
                    self._fail(exc if isinstance(exc, EdgeSRError) else _write_error(self.path, exc))
                    raise self.failed from None
                dest = self._tmp.commit()
                log.info("wrote %s (%d frames, %s)", dest, self.frames, self.encoder)
                return dest

    def abort(self) -> None:
        """Discard the file (an error before anything worth keeping)."""
        with self._lock:
            self.closed = True
            self._w.abandon()
            if self._audio_in is not None:
                self._audio_in.close()
                self._audio_in = None
            self._tmp.discard()


class _Cv2Recorder:
    """OpenCV's writer at a constant rate; frames are repeated or skipped so that time stays real."""

    def __init__(self, path: Path, suffix: str, codec: str | None, fps: float):
        self.path, self.fps = path, fps
        enc = CODEC_ALIASES.get((codec or "").lower(), (codec,))[0] if codec else None
        self.fourcc = CV2_FOURCC.get(enc or "", codec if codec and len(codec) == 4 else None) or \
            ("MJPG" if suffix.lower() == ".avi" else "mp4v")
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.written = 0

    def write(self, frame_bgr_u8: np.ndarray, pts_s: float) -> None:
        cv2 = _cv2()
        if frame_bgr_u8.ndim == 2:
            frame_bgr_u8 = cv2.cvtColor(frame_bgr_u8, cv2.COLOR_GRAY2BGR)
        if self._writer is None:
            h, w = frame_bgr_u8.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise EdgeSRError(f"OpenCV has no {self.fourcc!r} encoder for {self.path.suffix}")
            self._size = (w, h)
        if (frame_bgr_u8.shape[1], frame_bgr_u8.shape[0]) != self._size:
            frame_bgr_u8 = cv2.resize(frame_bgr_u8, self._size, interpolation=cv2.INTER_AREA)
        due = int(round(pts_s * self.fps)) + 1  # frames the file should hold once this one is in
        for _ in range(max(1, due - self.written)):  # every frame once, repeated to fill a gap
            self._writer.write(frame_bgr_u8)
            self.written += 1

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self.finish()

    def write_audio(self, packet) -> None:  # pragma: no cover - no audio without PyAV
        pass


def file_timestamps(path: str | os.PathLike) -> list[float] | None:
    """The presentation times (seconds) of a video file's frames, in order, read from the packets
    without decoding (so a file source keeps its own timing, variable frame rate included)."""
    if not have_pyav():
        return None
    av = _av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            vs = c.streams.video[0]
            pts = sorted(p.pts for p in c.demux(vs) if p.pts is not None and p.size)
            tb = vs.time_base
    except (av.FFmpegError, OSError):
        return None
    return [float(p * tb) for p in pts] or None


def video_info(path: str | os.PathLike) -> dict:
    """Streams of a file as PyAV sees them (for messages and tests)."""
    av = _av()
    with av.open(str(path)) as c:
        info = {"duration_s": float(c.duration / av.time_base) if c.duration else None, "format": c.format.name,
                "video": [], "audio": []}
        for s in c.streams.video:
            info["video"].append({"codec": s.codec_context.name, "width": s.codec_context.width,
                                  "height": s.codec_context.height, "pix_fmt": s.codec_context.pix_fmt,
                                  "frames": s.frames, "rate": float(s.average_rate) if s.average_rate else None})
        for s in c.streams.audio:
            info["audio"].append({"codec": s.codec_context.name, "sample_rate": s.codec_context.sample_rate})
    return info



def make_test_clip(path: str | os.PathLike, seconds: float = 10.0, fps: float = 25.0, width: int = 320,
                   height: int = 240, audio: bool = True, codec: str | None = None, audio_codec: str | None = None,
                   timestamps_s: list[float] | None = None, tone_hz: float = 440.0) -> Path:
    """A clip of the moving demo scene (``edge_sr.scene``) with a sine tone, made with PyAV: for tests,
    docs and trying the video path without a camera. ``timestamps_s``: explicit frame times (variable
    frame rate) instead of ``seconds`` x ``fps``."""
    from .scene import render_scene

    av = _av()
    p = Path(path)
    fmt = CONTAINERS.get(p.suffix.lower())
    if fmt is None:
        raise EdgeSRError(f"unsupported video file type {p.suffix}")
    tb = Fraction(1, 90000)
    times = timestamps_s if timestamps_s is not None else [i / fps for i in range(int(round(seconds * fps)))]
    with av.open(str(p), "w", format=fmt) as out:
        enc = resolve_encoder(codec, p.suffix)
        vs = out.add_stream(enc, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = width, height, _pix_fmt(vs.codec_context.codec)
        vs.codec_context.time_base = tb
        vs.options = {"preset": "ultrafast"} if enc in ("libx264", "libx265") else {}
        aus = None
        if audio:
            acodec = audio_codec or ("libopus" if fmt == "webm" else "aac" if fmt in FRAGMENTABLE else "aac")
            aus = out.add_stream(acodec, rate=48000)
            aus.layout = "mono"
        for t in times:
            frame = av.VideoFrame.from_ndarray(render_scene(t, height, width), format="bgr24")
            frame = frame.reformat(format=vs.pix_fmt)
            frame.pts, frame.time_base = int(round(t / tb)), tb
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if aus is not None:
            rate = 48000
            span = (times[-1] + 1.0 / fps) if times else seconds
            t = np.arange(int(round(span * rate)), dtype=np.float64) / rate
            pcm = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            step = 960 if "opus" in aus.codec_context.name else 1024
            fmt_name = aus.codec_context.format.name if aus.codec_context.format else "fltp"
            for k in range(0, len(pcm), step):
                chunk = pcm[k:k + step]
                if fmt_name == "s16":
                    af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None, :], format="s16",
                                                    layout="mono")
                else:
                    af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = rate, k, Fraction(1, rate)
                out.mux(aus.encode(af))
            out.mux(aus.encode(None))
    return p
