"""Power meters: the best one present is chosen automatically (or by name).

    ina3221     Jetson INA3221 rails from sysfs: hwmon layout (JetPack 5+) or iio layout (JetPack 4)
    tegrastats  Jetson `tegrastats --interval MS` (when sysfs is not readable)
    pi5-pmic    Raspberry Pi 5 PMIC rails from `vcgencmd pmic_read_adc` (an estimate: no input channel)
    hwmon       generic /sys/class/hwmon/hwmon*/power*_input (microwatts)
    rapl        Intel/AMD RAPL energy counters /sys/class/powercap/intel-rapl:N/energy_uj (wraps)
    none        no meter

Every sysfs reader takes a ``root`` (default "/") so that tests build fake trees in a temporary
folder (after jetson_stats). ``read_w()`` returns watts or None when the meter has no reading yet.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EdgeSRError

log = logging.getLogger(__name__)

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # board input on Orin / Nano (+ Xavier NX "VDD_IN")
METER_NAMES = ("auto", "ina3221", "tegrastats", "pi5-pmic", "hwmon", "rapl", "none")


def _read_text(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_num(p: Path) -> float | None:
    s = _read_text(p)
    if s is None:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def pick_input_power(rails_mw: dict[str, float]) -> tuple[float, str]:
    """The board input rail when present, else the sum of all rails; returns (mW, how)."""
    for name in INPUT_RAILS:
        for rail, mw in rails_mw.items():
            if rail.upper() == name:
                return mw, rail
    return sum(rails_mw.values()), "sum of " + "+".join(rails_mw)


class PowerMeter:
    name = "none"
    estimate = False  # True when the figure is an estimate (e.g. a sum of rails without an input channel)
    detail = ""

    def read_w(self) -> float | None:
        return None

    def close(self) -> None:
        pass

    def _board_w(self, rails_mw: dict[str, float]) -> float:
        """Board power in W from named rails (mW): the input rail, else their sum (an estimate)."""
        mw, how = pick_input_power(rails_mw)
        self.detail = how
        self.estimate = how.startswith("sum of ")
        return mw / 1000.0

    def describe(self) -> dict:
        return {"power_meter": self.name, "power_estimate": self.estimate, "power_detail": self.detail}


class NullMeter(PowerMeter):
    name = "none"


# ---------------------------------------------------------------------------------------------
# Jetson INA3221 (sysfs)


class Ina3221Meter(PowerMeter):
    """Reads INA3221 channels found under ``root``/sys/bus/i2c/devices/*/ whose ``name`` is ina3221*."""

    name = "ina3221"

    def __init__(self, channels: list[tuple[str, Callable[[], float | None]]]):
        self._channels = channels
        self.rails = [c[0] for c in channels]
        self.detail = ""

    @classmethod
    def find(cls, root: str | Path = "/") -> "Ina3221Meter | None":
        devs = Path(root) / "sys" / "bus" / "i2c" / "devices"
        channels: list[tuple[str, Callable[[], float | None]]] = []
        if not devs.is_dir():
            return None
        for dev in sorted(devs.iterdir()):
            name = _read_text(dev / "name") or ""
            if not name.lower().startswith("ina3221"):
                continue
            # JetPack 5+: hwmon layout, mV x mA
            for hw in sorted(dev.glob("hwmon/hwmon*")):
                for label_file in sorted(hw.glob("in*_label")):
                    k = label_file.name[2:-len("_label")]
                    label = _read_text(label_file) or ""
                    if not k.isdigit() or k == "7" or _not_connected(label):
                        continue
                    v, i = hw / f"in{k}_input", hw / f"curr{k}_input"
                    if v.exists() and i.exists():
                        channels.append((label, lambda v=v, i=i: _mul_mw(_read_num(v), _read_num(i))))
            # JetPack 4: iio layout, mW directly
            for iio in sorted(dev.glob("iio:device*")):
                for rail_file in sorted(iio.glob("rail_name_*")):
                    k = rail_file.name[len("rail_name_"):]
                    label = _read_text(rail_file) or ""
                    p = iio / f"in_power{k}_input"
                    if not _not_connected(label) and p.exists():
                        channels.append((label, lambda p=p: _read_num(p)))
        if not channels:
            return None
        return cls(channels)

    def rails_mw(self) -> dict[str, float]:
        out = {}
        for label, read in self._channels:
            mw = read()
            if mw is not None:
                out[label] = mw
        return out

    def read_w(self) -> float | None:
        rails = self.rails_mw()
        if not rails:
            return None
        return self._board_w(rails)


def _not_connected(label: str) -> bool:
    """Empty labels and 'NC' (not connected) channels are skipped."""
    return not label or "NC" in re.split(r"[^A-Z0-9]+", label.upper())


def _mul_mw(mv: float | None, ma: float | None) -> float | None:
    if mv is None or ma is None:
        return None
    return mv * ma / 1000.0


# ---------------------------------------------------------------------------------------------
# tegrastats

_TEGRA_RAIL = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_TEGRA_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}


def parse_tegrastats(line: str) -> dict[str, float]:
    """Rails of one tegrastats line: {name: current mW}. Handles `POM_5V_IN 933/933` (JetPack 4)
    and `VDD_IN 5000mW/5000mW` (JetPack 5+); RAM/SWAP (which end in MB/kB) are not rails."""
    return {m.group(1): float(m.group(2)) for m in _TEGRA_RAIL.finditer(line)
            if m.group(1).upper() not in _TEGRA_NOT_RAILS}


class TegrastatsMeter(PowerMeter):
    """Runs `tegrastats --interval MS` and keeps the latest reading (a reader thread)."""

    name = "tegrastats"

    def __init__(self, interval_ms: int = 1000, command: Sequence[str] | None = None):
        self.command = list(command) if command else ["tegrastats", "--interval", str(int(interval_ms))]
        self._latest: dict[str, float] = {}
        self._lock = threading.Lock()
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          bufsize=1)
        except OSError as exc:
            raise EdgeSRError(f"cannot run {self.command[0]}: {exc}") from None
        self._thread = threading.Thread(target=self._pump, name="tegrastats", daemon=True)
        self._thread.start()

    @staticmethod
    def available() -> bool:
        return shutil.which("tegrastats") is not None

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            rails = parse_tegrastats(line)
            if rails:
                with self._lock:
                    self._latest = rails

    def wait_first(self, timeout_s: float = 3.0) -> bool:
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            with self._lock:
                if self._latest:
                    return True
            time.sleep(0.02)
        return False

    def read_w(self) -> float | None:
        with self._lock:
            rails = dict(self._latest)
        if not rails:
            return None
        return self._board_w(rails)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()


# ---------------------------------------------------------------------------------------------
# Raspberry Pi 5 PMIC

_PMIC_LINE = re.compile(r"^\s*(\S+)_(A|V)\s+(?:current|volt)\(\d+\)=([0-9.eE+-]+)\s*[AV]\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, float]:
    """`vcgencmd pmic_read_adc` output -> {rail: watts} for rails that have both a current and a voltage."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if not m:
            continue
        rail, kind, value = m.group(1), m.group(2), float(m.group(3))
        (amps if kind == "A" else volts)[rail] = value
    return {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}


class PiPmicMeter(PowerMeter):
    """Sum of the Pi 5 PMIC rails (V x A): an estimate of board power (no input-current channel;
    USB peripherals and the 5 V rail's own losses are not counted)."""

    name = "pi5-pmic"
    estimate = True

    def __init__(self, command: Sequence[str] | None = None, runner: Callable[[Sequence[str]], str] | None = None):
        self.command = list(command) if command else ["vcgencmd", "pmic_read_adc"]
        self._runner = runner or _run_text
        self.detail = "sum of PMIC rails (estimate)"

    @classmethod
    def find(cls, runner: Callable[[Sequence[str]], str] | None = None) -> "PiPmicMeter | None":
        if runner is None and shutil.which("vcgencmd") is None:
            return None
        m = cls(runner=runner)
        return m if m.read_w() is not None else None

    def read_w(self) -> float | None:
        try:
            rails = parse_pmic_read_adc(self._runner(self.command))
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("vcgencmd failed: %s", exc)
            return None
        return sum(rails.values()) if rails else None


def _run_text(cmd: Sequence[str]) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=2.0, check=True).stdout


# ---------------------------------------------------------------------------------------------
# generic hwmon and RAPL


class HwmonMeter(PowerMeter):
    """Sum of /sys/class/hwmon/hwmon*/power*_input (microwatts), INA3221 devices excluded."""

    name = "hwmon"

    def __init__(self, files: list[Path]):
        self.files = files
        self.detail = ", ".join(f"{f.parent.name}/{f.name}" for f in files)

    @classmethod
    def find(cls, root: str | Path = "/") -> "HwmonMeter | None":
        base = Path(root) / "sys" / "class" / "hwmon"
        if not base.is_dir():
            return None
        files = []
        for hw in sorted(base.glob("hwmon*")):
            if (_read_text(hw / "name") or "").lower().startswith("ina3221"):
                continue
            files += [f for f in sorted(hw.glob("power*_input")) if _read_num(f) is not None]
        return cls(files) if files else None

    def read_w(self) -> float | None:
        vals = [v for v in (_read_num(f) for f in self.files) if v is not None]
        return sum(vals) / 1e6 if vals else None


class RaplMeter(PowerMeter):
    """Average power between two reads of the RAPL package energy counters (microjoules, wrapping at
    max_energy_range_uj). Package zones only (intel-rapl:N), not their sub-zones. Usually root only."""

    name = "rapl"

    def __init__(self, zones: list[Path], clock: Callable[[], float] = time.monotonic):
        self.zones = zones
        self._clock = clock
        self._max = [(_read_num(z / "max_energy_range_uj") or 0.0) for z in zones]
        self._last: tuple[float, list[float]] | None = None
        self.detail = ", ".join(z.name for z in zones)
        self.read_w()  # first sample

    @classmethod
    def find(cls, root: str | Path = "/") -> "RaplMeter | None":
        base = Path(root) / "sys" / "class" / "powercap"
        if not base.is_dir():
            return None
        zones = [z for z in sorted(base.glob("intel-rapl:*")) if z.name.count(":") == 1
                 and _read_num(z / "energy_uj") is not None]
        return cls(zones) if zones else None

    def read_w(self) -> float | None:
        now = self._clock()
        e = [_read_num(z / "energy_uj") for z in self.zones]
        if any(v is None for v in e):
            return None
        last, self._last = self._last, (now, e)  # type: ignore[assignment]
        if last is None or now <= last[0]:
            return None
        total_uj = 0.0
        for cur, prev, mx in zip(e, last[1], self._max):
            d = cur - prev
            if d < 0:  # the counter wrapped
                d += mx
            total_uj += d
        return total_uj / 1e6 / (now - last[0])


# ---------------------------------------------------------------------------------------------


def open_power_meter(name: str = "auto", root: str | Path = "/", tegrastats_interval_ms: int = 1000) -> PowerMeter:
    """The named meter, or the best present for 'auto' (Jetson sysfs, tegrastats, Pi 5 PMIC, hwmon, RAPL, none).
    A meter asked for by name that is not present is an error."""
    if name not in METER_NAMES:
        raise EdgeSRError(f"unknown power meter {name!r}: choose one of {', '.join(METER_NAMES)}")
    if name == "none":
        return NullMeter()
    finders: list[tuple[str, Callable[[], PowerMeter | None]]] = [
        ("ina3221", lambda: Ina3221Meter.find(root)),
        ("tegrastats", lambda: _start_tegrastats(tegrastats_interval_ms) if TegrastatsMeter.available() else None),
        ("pi5-pmic", lambda: PiPmicMeter.find()),
        ("hwmon", lambda: HwmonMeter.find(root)),
        ("rapl", lambda: RaplMeter.find(root)),
    ]
    for meter_name, find in finders:
        if name not in ("auto", meter_name):
            continue
        meter = find()
        if meter is not None and (name != "auto" or meter.read_w() is not None or meter_name in ("rapl", "tegrastats")):
            log.debug("power meter: %s", meter_name)
            return meter
        if meter is not None:
            meter.close()
    if name == "auto":
        return NullMeter()
    raise EdgeSRError(f"power meter {name!r} not found on this machine (or not readable: RAPL counters need root); "
                      "use --power-meter auto or none")


def _start_tegrastats(interval_ms: int) -> TegrastatsMeter | None:
    m = TegrastatsMeter(interval_ms)
    if m.wait_first(max(2.0, 3 * interval_ms / 1000)):
        return m
    m.close()
    return None
