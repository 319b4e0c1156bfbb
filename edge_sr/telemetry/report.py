"""Periodic telemetry: one JSON line per interval on the log (stderr, journald-friendly), an
optional CSV/JSONL file, Prometheus text for /metrics, and a summary at exit.

Fields of a line (``event: "stats"``): capture/output/model FPS (model = 1000 / mean model-only
latency: what the network alone could do), p50/p95 latency per stage in ms, frames dropped in the
window and in total, CPU %, 1-minute load, hottest temperature, process RSS, power in watts from
the chosen meter and energy per output frame in joules when power is known.

/metrics is made by prometheus_client from a registry of its own per Telemetry: counters
(``_total``) for frames, drops, reconnects, viewers served and energy, a latency histogram per stage
in seconds, gauges in base units, and the process collector (resident memory in bytes, CPU seconds,
open file descriptors). The periodic loop logs and survives its own errors: a stream runs for days.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import EdgeSRError
from .power import NullMeter, PowerMeter
from .stats import StageStats
from .system import CpuLoad, rss_mb, temperatures_c

log = logging.getLogger(__name__)

STAGES = ("capture", "upscale", "model", "output", "e2e")
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)


def _r(x: float | None, nd: int = 3):
    return None if x is None else round(float(x), nd)


def _sig(x: float | None, digits: int = 4):
    return None if x is None else float(f"{float(x):.{digits}g}")


class MetricsFile:
    """Appends each record to a .csv or .jsonl file as it comes (a live log: readable while the
    stream runs and kept if the process dies)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".json"):
            raise EdgeSRError(f"--metrics-file must end in .csv or .jsonl: {self.path}")
        self.kind = "csv" if suffix == ".csv" else "jsonl"
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise EdgeSRError(f"metrics file folder does not exist: {parent}")
        if not os.access(parent, os.W_OK):
            raise EdgeSRError(f"metrics file folder is not writable: {parent}")
        self._f = open(self.path, "w", newline="", encoding="utf-8")
        self._csv: csv.DictWriter | None = None

    def write(self, rec: dict) -> None:
        if self.kind == "jsonl":
            self._f.write(json.dumps(rec) + "\n")
        else:
            if self._csv is None:
                self._csv = csv.DictWriter(self._f, fieldnames=list(rec), extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow({k: ("" if v is None else v) for k, v in rec.items()})
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class Telemetry:
    """Collects stage statistics; ``start()`` emits one record every ``interval_s`` from a thread."""

    def __init__(self, interval_s: float = 5.0, meter: PowerMeter | None = None, metrics_file: str | None = None,
                 root: str | os.PathLike = "/", extra: Callable[[], dict] | None = None):
        if interval_s <= 0:
            raise EdgeSRError(f"--log-interval must be positive, got {interval_s}")
        self.interval_s = float(interval_s)
        self.meter = meter or NullMeter()
        self.root = Path(root)
        self.extra = extra
        self.stages = {name: StageStats(name) for name in STAGES}
        self._cpu = CpuLoad(root)
        self._file = MetricsFile(metrics_file) if metrics_file else None
        self._t0 = time.monotonic()
        self._last_power: tuple[float, float] | None = None  # (time, watts)
        self.energy_j = 0.0
        self._power_sum = 0.0
        self._power_n = 0
        self.last: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0  # failed samples (logged; the loop goes on)
        self.registry = self._make_registry()

    def stage(self, name: str) -> StageStats:
        return self.stages[name]

    # -- sampling --------------------------------------------------------------------------

    def _power(self, now: float) -> float | None:
        try:
            w = self.meter.read_w()
        except Exception:  # a meter must never stop the stream
            log.debug("power meter read failed", exc_info=True)
            w = None
        if w is not None:
            if self._last_power is not None:
                t_prev, w_prev = self._last_power
                self.energy_j += 0.5 * (w + w_prev) * (now - t_prev)
            self._last_power = (now, w)
            self._power_sum += w
            self._power_n += 1
        return w

    def sample(self) -> dict:
        """One record for the window since the previous sample."""
        now = time.monotonic()
        win = {name: st.window(now) for name, st in self.stages.items()}
        model_mean = win["model"]["mean_ms"]
        output_fps = win["output"]["fps"]
        rec: dict = {"event": "stats", "t_s": _r(now - self._t0, 1),
                     "capture_fps": _r(win["capture"]["fps"], 2), "output_fps": _r(output_fps, 2),
                     "model_fps": _r(1000.0 / model_mean, 2) if model_mean else None}
        for name in STAGES:
            rec[f"{name}_p50_ms"] = _r(win[name]["p50_ms"], 2)
            rec[f"{name}_p95_ms"] = _r(win[name]["p95_ms"], 2)
        rec["dropped_capture"] = win["capture"]["dropped"]
        rec["dropped_output"] = win["output"]["dropped"]
        rec["dropped_total"] = self.stages["capture"].dropped_total + self.stages["output"].dropped_total
        rec["frames_total"] = self.stages["output"].total
        rec["cpu_percent"] = _r(self._cpu.percent(), 1)
        rec["load_1m"] = self._cpu.load_1m()
        temps = temperatures_c(self.root)
        rec["temp_c"] = _r(max(temps.values()), 1) if temps else None
        rec["rss_mb"] = _r(rss_mb(root=self.root), 1)
        power = self._power(now)
        rec["power_w"] = _r(power, 3)
        rec["energy_per_frame_j"] = _sig(power / output_fps) if power is not None and output_fps > 0 else None
        rec["power_meter"] = self.meter.name
        if self.extra is not None:
            rec.update(self.extra())
        with self._lock:
            self.last = rec
        return rec

    def emit(self) -> dict:
        rec = self.sample()
        log.info("%s", json.dumps(rec))
        if self._file is not None:
            try:
                self._file.write(rec)
            except OSError as exc:
                log.warning("metrics file %s: %s (no longer written)", self._file.path, exc)
                self._file = None
        return rec

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.emit()
            except Exception as exc:  # noqa: BLE001 - out of file descriptors, a sensor gone...: log, go on
                self.errors += 1
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.warning("telemetry: this sample failed (%s: %s; %d so far); still running",
                                type(exc).__name__, exc, self.errors)

    def start(self) -> "Telemetry":
        self._t0 = time.monotonic()
        for st in self.stages.values():
            st.window()  # start the first window now
        self._power(time.monotonic())
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self._file is not None:
            self._file.close()
            self._file = None
        self.meter.close()

    # -- summary and Prometheus -------------------------------------------------------------

    def summary(self) -> dict:
        out_st, model_st = self.stages["output"], self.stages["model"]
        model_ms = model_st.mean_latency_ms_total()
        out_fps = out_st.mean_fps_total()
        model_fps = 1000.0 / model_ms if model_ms else None
        frames = out_st.total
        power_mean = self._power_sum / self._power_n if self._power_n else None
        energy_per_frame = None
        if power_mean is not None and out_fps:
            energy_per_frame = power_mean / out_fps
        rec = {
            "event": "summary", "duration_s": _r(time.monotonic() - self._t0, 2), "frames": frames,
            "frames_captured": self.stages["capture"].total,
            "capture_fps_mean": _r(self.stages["capture"].mean_fps_total(), 2), "output_fps_mean": _r(out_fps, 2),
            "model_fps_mean": _r(model_fps, 2),
            "efficiency": _r(out_fps / model_fps, 3) if out_fps and model_fps else None,
            "model_ms_mean": _r(model_ms, 2), "upscale_ms_mean": _r(self.stages["upscale"].mean_latency_ms_total(), 2),
            "e2e_ms_mean": _r(self.stages["e2e"].mean_latency_ms_total(), 2),
            "dropped_capture": self.stages["capture"].dropped_total, "dropped_output": out_st.dropped_total,
            "power_meter": self.meter.name, "power_w_mean": _r(power_mean, 3), "energy_j": _r(self.energy_j, 2)
            if self._power_n > 1 else None, "energy_per_frame_j": _sig(energy_per_frame),
        }
        if self.meter.estimate:
            rec["power_estimate"] = True
        return rec

    def _make_registry(self):
        """A prometheus_client registry for this run (None without prometheus_client: no /metrics)."""
        try:
            from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
        except ImportError:
            return None
        reg = CollectorRegistry(auto_describe=True)
        hist = Histogram("edge_sr_stage_latency_seconds", "Latency per pipeline stage (capture = wait for a frame, "
                         "upscale = luma + network, model = network only, output = colour merge + outputs, "
                         "e2e = capture to output).", ["stage"], buckets=LATENCY_BUCKETS_S, registry=reg)
        for name, st in self.stages.items():
            st.observe_s = hist.labels(stage=name).observe
        reg.register(_TelemetryCollector(self))
        ProcessCollector(registry=reg)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds
        return reg

    def prometheus_text(self) -> str:
        """Prometheus text exposition of the run (prometheus_client's format)."""
        if self.registry is None:
            from ..lazy import require

            require("prometheus_client", "/metrics")
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def stats_json(self) -> str:
        with self._lock:
            rec = dict(self.last)
        buf = io.StringIO()
        json.dump({"last": rec, "totals": {s: self.stages[s].total for s in STAGES}}, buf)
        return buf.getvalue()


class _TelemetryCollector:
    """Reads the telemetry's counters at scrape time (nothing counted twice)."""

    def __init__(self, tel: Telemetry):
        self.tel = tel

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        tel = self.tel
        with tel._lock:
            rec = dict(tel.last)
        extra: dict = {}
        if tel.extra is not None:
            try:
                extra = tel.extra()
            except Exception:  # noqa: BLE001 - a scrape must not fail for one field
                log.debug("telemetry extra fields", exc_info=True)
        c = CounterMetricFamily("edge_sr_frames", "Frames completed since start, by stage.", labels=["stage"])
        for s in ("capture", "upscale", "output"):
            c.add_metric([s], tel.stages[s].total)
        yield c
        c = CounterMetricFamily("edge_sr_dropped_frames", "Frames replaced by a newer one before being processed, "
                                "by stage.", labels=["stage"])
        for s in ("capture", "output"):
            c.add_metric([s], tel.stages[s].dropped_total)
        yield c
        if "reconnects" in extra:
            yield CounterMetricFamily("edge_sr_source_reconnects", "Times the camera or stream was reopened.",
                                      value=extra["reconnects"])
        if "source_errors" in extra:
            yield CounterMetricFamily("edge_sr_source_skipped_frames", "Frames the source could not decode and "
                                      "skipped.", value=extra["source_errors"])
        if "viewers" in extra:
            yield GaugeMetricFamily("edge_sr_viewers", "MJPEG viewers now.", value=extra["viewers"])
            yield CounterMetricFamily("edge_sr_viewers_served", "MJPEG viewer sessions started.",
                                      value=extra.get("viewers_served", 0))
            yield CounterMetricFamily("edge_sr_viewer_skipped_frames", "Frames MJPEG viewers skipped (too slow "
                                      "for every frame).", value=extra.get("viewer_dropped", 0))
        yield CounterMetricFamily("edge_sr_telemetry_errors", "Telemetry samples that failed.", value=tel.errors)
        g = GaugeMetricFamily("edge_sr_frames_per_second", "Frames per second over the last telemetry window, by "
                              "stage (model: 1 / mean model-only latency).", labels=["stage"])
        for s in ("capture", "output", "model"):
            if rec.get(f"{s}_fps") is not None:
                g.add_metric([s], rec[f"{s}_fps"])
        yield g
        if rec.get("cpu_percent") is not None:
            yield GaugeMetricFamily("edge_sr_cpu_busy_ratio", "Machine CPU busy fraction (0..1) over the last window.",
                                    value=rec["cpu_percent"] / 100.0)
        if rec.get("temp_c") is not None:
            yield GaugeMetricFamily("edge_sr_temperature_celsius", "Hottest thermal zone.", value=rec["temp_c"])
        if rec.get("power_w") is not None:
            yield GaugeMetricFamily("edge_sr_power_watts", f"Power from the {tel.meter.name} meter.",
                                    value=rec["power_w"])
        if tel._power_n > 1:
            yield CounterMetricFamily("edge_sr_energy_joules", "Energy since start (trapezoid of the power samples).",
                                      value=tel.energy_j)
        if rec.get("energy_per_frame_j") is not None:
            yield GaugeMetricFamily("edge_sr_energy_per_frame_joules", "Power divided by output FPS.",
                                    value=rec["energy_per_frame_j"])
