"""Periodic telemetry: one JSON line per interval on the log (stderr, journald-friendly), an
optional CSV/JSONL file, Prometheus text for /metrics, and a summary at exit.

Fields of a line (``event: "stats"``): capture/output/model FPS (model = 1000 / mean model-only
latency: what the network alone could do), p50/p95 latency per stage in ms, frames dropped in the
window and in total, CPU %, 1-minute load, hottest temperature, process RSS, power in watts from
the chosen meter and energy per output frame in joules when power is known.
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
            self.emit()

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

    def prometheus_text(self) -> str:
        """Prometheus text exposition (version 0.0.4) of the latest window and the run totals."""
        with self._lock:
            rec = dict(self.last)
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float | None]]) -> None:
            vals = [(labels, v) for labels, v in samples if v is not None]
            if not vals:
                return
            lines.append(f"# HELP edge_sr_{name} {help_}")
            lines.append(f"# TYPE edge_sr_{name} {kind}")
            for labels, v in vals:
                lines.append(f"edge_sr_{name}{labels} {float(v):.6g}")

        metric("fps", "gauge", "Frames per second over the last window, by stage.",
               [(f'{{stage="{s}"}}', rec.get(f"{s}_fps")) for s in ("capture", "output", "model")])
        metric("latency_ms", "gauge", "Per-stage latency over the last window, milliseconds.",
               [(f'{{stage="{s}",quantile="{q}"}}', rec.get(f"{s}_p{int(float(q) * 100)}_ms"))
                for s in STAGES for q in ("0.5", "0.95")])
        metric("frames_total", "counter", "Frames completed since start, by stage.",
               [(f'{{stage="{s}"}}', self.stages[s].total) for s in ("capture", "upscale", "output")])
        metric("dropped_frames_total", "counter", "Frames dropped (replaced by a newer one) since start, by stage.",
               [(f'{{stage="{s}"}}', self.stages[s].dropped_total) for s in ("capture", "output")])
        metric("cpu_percent", "gauge", "Machine CPU busy percent.", [("", rec.get("cpu_percent"))])
        metric("temperature_celsius", "gauge", "Hottest thermal zone.", [("", rec.get("temp_c"))])
        metric("resident_memory_mb", "gauge", "Resident memory of the process, MiB.", [("", rec.get("rss_mb"))])
        metric("power_watts", "gauge", f"Power from the {self.meter.name} meter.", [("", rec.get("power_w"))])
        metric("energy_per_frame_joules", "gauge", "Power divided by output FPS.",
               [("", rec.get("energy_per_frame_j"))])
        return "\n".join(lines) + "\n"

    def stats_json(self) -> str:
        with self._lock:
            rec = dict(self.last)
        buf = io.StringIO()
        json.dump({"last": rec, "totals": {s: self.stages[s].total for s in STAGES}}, buf)
        return buf.getvalue()
