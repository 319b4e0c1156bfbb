"""The streaming loop: capture -> model -> colour + output, each in its own thread.

The model thread does the luma and the network (the part that needs the accelerator or the
cores); the output thread merges the residual into the bicubic colour frame and writes the
outputs, so that colour work of frame n overlaps the network on frame n+1.

Between the stages sit queues of one (``LatestSlot``). With a live source (camera, network, paced
demo) a newer frame replaces one not yet taken and the replaced frame is counted as dropped, so
capture never waits for a slow model or a slow output. With a finite source (file, folder,
unpaced demo) the stages wait for each other instead and every frame is processed.

The stream takes an already-opened upscaler (``edge_sr.backends.open_upscaler``) and reads
``stream.upscaler`` anew for every frame: a controller (e.g. a target-FPS governor) may replace it
between frames. Stop with ``stream.stop()`` (a signal handler does that) or ``duration_s`` /
``max_frames``; the loop stops within about a second and finalises every output.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

import numpy as np

from .backends import Upscaler
from .errors import EdgeSRError
from .sinks import Sink, side_by_side
from .sources import EndOfStream, Source
from .telemetry.report import Telemetry

log = logging.getLogger(__name__)

_EOS = object()  # end of stream marker passed down the stages
_EMPTY = object()
JOIN_BUDGET_S = 1.5  # stop() -> every thread joined, within the 2 s a service manager is promised
HURRY_BUDGET_S = 0.3  # after a second signal: wait less for the stages (the outputs are still finalised)


class LatestSlot:
    """A queue of one item. ``put(item, wait=False)`` replaces an item not yet taken (returns True
    when it did: a dropped frame); ``put(item, wait=True)`` waits for room instead (until ``stop``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = _EMPTY

    def put(self, item, wait: bool = False, stop: threading.Event | None = None) -> bool:
        with self._cond:
            if wait:
                while self._item is not _EMPTY and not (stop is not None and stop.is_set()):
                    self._cond.wait(0.1)
                if self._item is not _EMPTY:  # stopped while waiting: the stream is ending, not dropping
                    return False
            dropped = self._item is not _EMPTY and self._item is not _EOS
            if self._item is _EOS:  # never replace the end marker
                return False
            self._item = item
            self._cond.notify_all()
            return dropped

    def get(self, timeout_s: float):
        """The item, or ``_EMPTY`` after ``timeout_s``."""
        with self._cond:
            if self._item is _EMPTY:
                self._cond.wait(timeout_s)
            item, self._item = self._item, _EMPTY
            if item is not _EMPTY:
                self._cond.notify_all()
            return item


class _TimedModel:
    """Wraps an upscaler so that the model-only time of a frame (all its tiles) is measured."""

    def __init__(self, upscaler: Upscaler):
        self._up = upscaler
        self.ms = 0.0

    def __getattr__(self, name):
        return getattr(self._up, name)

    def residual(self, y_lr_f32: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self._up.residual(y_lr_f32)
        self.ms += (time.perf_counter() - t0) * 1e3
        return out


def upscale_timed(upscaler: Upscaler, frame_bgr_u8: np.ndarray, tile: int | None = None) -> tuple[np.ndarray, float | None]:
    """(upscaled frame, model-only ms) in one call (for benchmarks and tests; the stream splits
    the same work over two threads with ``model_stage`` and ``colour_stage``)."""
    res, model_ms = model_stage(upscaler, frame_bgr_u8, tile)
    return colour_stage(upscaler, frame_bgr_u8, res), model_ms


def model_stage(upscaler: Upscaler, frame_bgr_u8: np.ndarray, tile: int | None = None):
    """Luma -> model (tiled when large): (HR luma residual, model-only ms). A backend that overrides
    ``upscale`` (doing the whole frame itself) is run whole here: (HR frame, None)."""
    if type(upscaler).upscale is not Upscaler.upscale:
        return upscaler.upscale(frame_bgr_u8), None
    from .color import y_from_bgr_u8
    from .pipeline import residual_tiled

    timed = _TimedModel(upscaler)
    y = y_from_bgr_u8(frame_bgr_u8) * np.float32(1 / 255.0)
    return residual_tiled(timed, y, tile), timed.ms


def colour_stage(upscaler: Upscaler, frame_bgr_u8: np.ndarray, result: np.ndarray) -> np.ndarray:
    """The model stage's result -> the HR colour frame (bicubic colour + residual luma; see
    ``edge_sr.color.merge_residual``). Whole-frame backends already returned the frame."""
    if type(upscaler).upscale is not Upscaler.upscale:
        return result
    from .color import merge_residual

    return merge_residual(frame_bgr_u8, result, upscaler.scale)


class Stream:
    def __init__(self, source: Source, upscaler: Upscaler, sinks: Sequence[Sink], telemetry: Telemetry | None = None,
                 side_by_side: bool = False, duration_s: float | None = None, max_frames: int | None = None,
                 tile: int | None = None):
        self.source = source
        self.upscaler = upscaler
        self.sinks = list(sinks)
        self.telemetry = telemetry or Telemetry()
        self.side_by_side = side_by_side
        self.duration_s = duration_s
        self.max_frames = max_frames
        self.tile = tile
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self._slot_in = LatestSlot()
        self._slot_out = LatestSlot()
        self._error: BaseException | None = None
        self._finished = threading.Event()  # the output stage saw the end of the stream
        self._threads: list[threading.Thread] = []
        self._hurry = threading.Event()
        self.stuck: list[str] = []  # stage threads still busy when the stream returned

    # -- control -------------------------------------------------------------------------

    def stop(self, reason: str = "stop requested") -> None:
        if not self.stop_event.is_set():
            self.stop_reason = self.stop_reason or reason
            self.stop_event.set()

    def hurry(self) -> None:
        """Stop, and wait less for busy stages (a second signal). The outputs are still finalised:
        nothing here raises or skips ``close``."""
        self.stop("stop requested")
        self._hurry.set()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self.stop(f"error: {exc}")

    def _guard(self, target):
        def run():
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
                log.debug("stage %s failed", threading.current_thread().name, exc_info=True)
                self._fail(exc)
        return run

    # -- stages --------------------------------------------------------------------------

    def _capture(self) -> None:
        st = self.telemetry.stage("capture")
        live = self.source.live
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            try:
                frame = self.source.read(timeout_s=0.25)
            except EndOfStream:
                self._slot_in.put(_EOS, wait=True, stop=self.stop_event)
                return
            if frame is None:
                continue
            now = time.perf_counter()
            st.record((now - t0) * 1e3)
            if self._slot_in.put((now, frame), wait=not live, stop=self.stop_event):
                st.drop()

    def _upscale(self) -> None:
        st_up, st_model = self.telemetry.stage("upscale"), self.telemetry.stage("model")
        st_out = self.telemetry.stage("output")
        live = self.source.live
        while not self.stop_event.is_set():
            item = self._slot_in.get(0.2)
            if item is _EMPTY:
                continue
            if item is _EOS:
                self._slot_out.put(_EOS, wait=True, stop=self.stop_event)
                return
            t_cap, frame = item
            upscaler = self.upscaler  # read per frame: a controller may swap it between frames
            t0 = time.perf_counter()
            result, model_ms = model_stage(upscaler, frame, self.tile)
            st_up.record((time.perf_counter() - t0) * 1e3)
            if model_ms is not None:
                st_model.record(model_ms)
            if self._slot_out.put((t_cap, frame, upscaler, result), wait=not live, stop=self.stop_event):
                st_out.drop()

    def _output(self) -> None:
        st_out, st_e2e = self.telemetry.stage("output"), self.telemetry.stage("e2e")
        while not self.stop_event.is_set():
            item = self._slot_out.get(0.2)
            if item is _EMPTY:
                continue
            if item is _EOS:
                self._finished.set()
                self.stop("end of source")
                return
            t_cap, frame, upscaler, result = item
            t0 = time.perf_counter()
            sr = colour_stage(upscaler, frame, result)  # overlaps the model's next frame
            out = side_by_side(frame, sr) if self.side_by_side else sr
            for sink in self.sinks:
                sink.write_pair(frame, out)
            now = time.perf_counter()
            st_out.record((now - t0) * 1e3)
            st_e2e.record((now - t_cap) * 1e3)
            if self.max_frames and st_out.total >= self.max_frames:
                self.stop(f"{self.max_frames} frames done")
            if any(s.wants_stop for s in self.sinks):
                self.stop("window closed")

    # -- run -----------------------------------------------------------------------------

    def extra_fields(self) -> dict:
        rec: dict = {"reconnects": self.source.reconnects}
        if getattr(self.source, "skipped", 0):
            rec["source_errors"] = self.source.skipped
        for sink in self.sinks:
            hub = getattr(sink, "hub", None)
            if hub is not None:
                rec["viewers"] = getattr(sink, "viewers", 0)
                rec["viewers_served"] = getattr(sink, "viewers_served", 0)
                rec["viewer_dropped"] = hub.viewer_dropped
        return rec

    def run(self) -> dict:
        """Run until the source ends, ``duration_s``, ``max_frames`` or ``stop()``; returns the summary.
        Errors of any stage are re-raised here after every output was finalised."""
        if self.telemetry.extra is None:
            self.telemetry.extra = self.extra_fields
        t_start = time.monotonic()
        self.telemetry.start()
        for name, target in (("capture", self._capture), ("upscale", self._upscale), ("output", self._output)):
            th = threading.Thread(target=self._guard(target), name=f"edge-sr-{name}", daemon=True)
            th.start()
            self._threads.append(th)
        try:
            while not self.stop_event.wait(0.05):
                if self.duration_s is not None and time.monotonic() - t_start >= self.duration_s:
                    self.stop(f"{self.duration_s:g} s done")
        except KeyboardInterrupt:  # a second Ctrl-C while a handler is not installed
            self.stop("interrupted")
        return self._shutdown()

    def _shutdown(self) -> dict:
        t0 = time.monotonic()
        for th in self._threads:
            while th.is_alive():
                budget = HURRY_BUDGET_S if self._hurry.is_set() else JOIN_BUDGET_S
                left = t0 + budget - time.monotonic()
                if left <= 0:
                    break
                th.join(timeout=min(left, 0.05))
        stuck = [th.name for th in self._threads if th.is_alive()]
        self.stuck = stuck
        if stuck:
            log.warning("stopping: %s still busy after %.1f s; not waiting for it", ", ".join(stuck),
                        time.monotonic() - t0)
        self.telemetry.stop()
        errors: list[BaseException] = []
        for sink in self.sinks:  # finalise outputs: a video file is closed and renamed so that it plays
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close every sink, report the first failure
                errors.append(exc)
        if "edge-sr-capture" not in stuck:
            try:
                self.source.close()
            except Exception:  # noqa: BLE001 - a vanished device may fail to release
                log.debug("source close failed", exc_info=True)
        if self.telemetry.stages["output"].total:
            self.telemetry.emit()  # the last partial window
        summary = self.telemetry.summary()
        summary["stop_reason"] = self.stop_reason or "stopped"
        summary["reconnects"] = self.source.reconnects
        if getattr(self.source, "skipped", 0):
            summary["source_errors"] = self.source.skipped
        self.telemetry.close()
        if self._error is not None:
            if isinstance(self._error, EdgeSRError):
                raise self._error
            raise EdgeSRError(f"stream failed: {type(self._error).__name__}: {self._error}", 1) from self._error
        if errors:
            raise EdgeSRError(f"could not finalise an output: {errors[0]}", 1)
        return summary
