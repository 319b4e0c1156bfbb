"""Per-stage frame counters and latency percentiles (thread-safe, bounded memory)."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

WINDOW_MAX = 4096  # latencies kept per reporting window (bounded: a stream runs for days)


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class StageStats:
    """Frames done, frames dropped and latency of one pipeline stage.

    ``window()`` returns the figures since the previous call and starts a new window; totals
    accumulate for the whole run."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._lat_ms: collections.deque = collections.deque(maxlen=WINDOW_MAX)
        self._lat_sum_ms = 0.0
        self._count = 0
        self._dropped = 0
        self._t_window = time.monotonic()
        self.total = 0
        self.dropped_total = 0
        self.latency_sum_ms = 0.0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.observe_s = None  # optional callback with each latency in seconds (a Prometheus histogram)

    def record(self, latency_ms: float | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._count += 1
            self.total += 1
            if self.t_first is None:
                self.t_first = now
            self.t_last = now
            if latency_ms is not None:
                self._lat_ms.append(latency_ms)
                self._lat_sum_ms += latency_ms
                self.latency_sum_ms += latency_ms
        if latency_ms is not None and self.observe_s is not None:
            self.observe_s(latency_ms / 1e3)

    def drop(self, n: int = 1) -> None:
        with self._lock:
            self._dropped += n
            self.dropped_total += n

    def window(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        with self._lock:
            lat = list(self._lat_ms)
            count, dropped, lat_sum = self._count, self._dropped, self._lat_sum_ms
            dt = max(1e-9, now - self._t_window)
            self._lat_ms.clear()
            self._count = self._dropped = 0
            self._lat_sum_ms = 0.0
            self._t_window = now
        n_lat = len(lat)
        return {
            "frames": count,
            "dropped": dropped,
            "fps": count / dt,
            "mean_ms": (lat_sum / n_lat) if n_lat else None,
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
        }

    def mean_fps_total(self) -> float | None:
        """Frames per second between the first and the last frame of the run."""
        with self._lock:
            if self.t_first is None or self.t_last is None or self.total < 2 or self.t_last <= self.t_first:
                return None
            return (self.total - 1) / (self.t_last - self.t_first)

    def mean_latency_ms_total(self) -> float | None:
        with self._lock:
            return self.latency_sum_ms / self.total if self.total else None
