"""CPU load, temperature and memory from /proc and /sys (injectable root; no psutil)."""

from __future__ import annotations

import os
from pathlib import Path


class CpuLoad:
    """Whole-machine CPU busy % between two calls, from /proc/stat; load average from /proc/loadavg."""

    def __init__(self, root: str | Path = "/"):
        self.root = Path(root)
        self._last = self._times()

    def _times(self) -> tuple[float, float] | None:
        try:
            first = (self.root / "proc" / "stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if not first or first[0] != "cpu":
            return None
        vals = [float(v) for v in first[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
        total = sum(vals[:8])  # guest time is already counted in user
        return total, idle

    def percent(self) -> float | None:
        cur = self._times()
        last, self._last = self._last, cur
        if cur is None or last is None or cur[0] <= last[0]:
            return None
        return 100.0 * (1.0 - (cur[1] - last[1]) / (cur[0] - last[0]))

    def load_1m(self) -> float | None:
        try:
            return float((self.root / "proc" / "loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def temperatures_c(root: str | Path = "/") -> dict[str, float]:
    """{zone type: °C} of the readable /sys/class/thermal/thermal_zone*/temp (millidegrees)."""
    out: dict[str, float] = {}
    for zone in sorted((Path(root) / "sys" / "class" / "thermal").glob("thermal_zone*")):
        try:
            milli = float((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            kind = (zone / "type").read_text().strip() or zone.name
        except OSError:
            kind = zone.name
        if -40_000 < milli < 150_000:  # skip disabled zones reporting nonsense
            out[kind if kind not in out else zone.name] = milli / 1000.0
    return out


def rss_mb(pid: int | str = "self", root: str | Path = "/") -> float | None:
    """Resident memory of a process, MiB (from /proc/PID/statm)."""
    try:
        pages = int((Path(root) / "proc" / str(pid) / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
