"""Power meters against fake sysfs trees and recorded tool outputs; stats, records, Prometheus text."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from edge_sr.errors import EdgeSRError
from edge_sr.telemetry import power
from edge_sr.telemetry.power import (HwmonMeter, Ina3221Meter, PiPmicMeter, PowerMeter, RaplMeter, TegrastatsMeter,
                                     open_power_meter, parse_pmic_read_adc, parse_tegrastats)
from edge_sr.telemetry.report import Telemetry
from edge_sr.telemetry.stats import StageStats
from edge_sr.telemetry.system import CpuLoad, rss_mb, temperatures_c

FIX = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("edge_sr_test_sysfs", FIX / "sysfs.py")
sysfs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sysfs)


# -- Jetson INA3221 ---------------------------------------------------------------------------


def test_ina3221_hwmon_prefers_vdd_in_and_skips_nc_and_channel7(tmp_path):
    sysfs.jetson_hwmon(tmp_path, {"VDD_IN": (5000, 960), "VDD_CPU_GPU_CV": (5000, 100), "VDD_SOC": (5000, 280)})
    m = Ina3221Meter.find(tmp_path)
    assert m is not None
    assert m.rails == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # no NC, no channel 7
    assert m.read_w() == pytest.approx(4.8)  # 5000 mV x 960 mA
    assert not m.estimate and m.detail == "VDD_IN"


def test_ina3221_hwmon_sums_rails_without_an_input_rail(tmp_path):
    sysfs.jetson_hwmon(tmp_path, {"VDD_GPU_SOC": (5000, 400), "VDD_CPU_CV": (5000, 200)})
    m = Ina3221Meter.find(tmp_path)
    assert m.read_w() == pytest.approx(3.0)
    assert m.estimate and m.detail.startswith("sum of")


def test_ina3221_iio_jetpack4_layout(tmp_path):
    sysfs.jetson_iio(tmp_path, {"POM_5V_GPU": 40, "POM_5V_IN": 2563, "POM_5V_CPU": 484})
    m = Ina3221Meter.find(tmp_path)
    assert m.read_w() == pytest.approx(2.563)
    assert m.detail == "POM_5V_IN"


def test_ina3221_absent(tmp_path):
    assert Ina3221Meter.find(tmp_path) is None
    (tmp_path / "sys/bus/i2c/devices/0-0050").mkdir(parents=True)
    (tmp_path / "sys/bus/i2c/devices/0-0050/name").write_text("24c02\n")  # an EEPROM, not a power monitor
    assert Ina3221Meter.find(tmp_path) is None


def test_ina3221_reads_live_values(tmp_path):
    dev = sysfs.jetson_hwmon(tmp_path, {"VDD_IN": (5000, 1000)})
    m = Ina3221Meter.find(tmp_path)
    assert m.read_w() == pytest.approx(5.0)
    (dev / "hwmon/hwmon3/curr1_input").write_text("2000\n")
    assert m.read_w() == pytest.approx(10.0)


# -- tegrastats -------------------------------------------------------------------------------


def test_parse_tegrastats_nano_orin_xavier():
    nano = (FIX / "tegrastats_nano_jp4.txt").read_text().splitlines()
    assert parse_tegrastats(nano[0]) == {"POM_5V_IN": 2563, "POM_5V_GPU": 40, "POM_5V_CPU": 484}
    orin = (FIX / "tegrastats_orin_jp6.txt").read_text().splitlines()
    assert parse_tegrastats(orin[1]) == {"VDD_IN": 9310, "VDD_CPU_GPU_CV": 3821, "VDD_SOC": 2287}
    xavier = parse_tegrastats((FIX / "tegrastats_agx_xavier_jp4.txt").read_text())
    assert xavier == {"GPU": 0, "CPU": 311, "SOC": 933, "CV": 0, "VDDRQ": 155, "SYS5V": 1765}
    assert power.pick_input_power(xavier)[0] == 311 + 933 + 155 + 1765


def test_tegrastats_meter_through_a_real_subprocess(tmp_path):
    # a stand-in for the tegrastats binary that prints the recorded lines, then idles like tegrastats
    script = ("import sys,time\nfor l in open(sys.argv[1]):\n    print(l, end='', flush=True)\n    time.sleep(0.05)\n"
              "time.sleep(30)\n")
    cmd = [sys.executable, "-c", script, str(FIX / "tegrastats_orin_jp6.txt")]
    m = TegrastatsMeter(command=cmd)
    try:
        assert m.wait_first(10.0)
        for _ in range(200):  # the second line arrives shortly after the first
            if m.read_w() == pytest.approx(9.31):
                break
            import time

            time.sleep(0.02)
        assert m.read_w() == pytest.approx(9.31)
        assert m.detail == "VDD_IN" and not m.estimate
    finally:
        m.close()
    assert m._proc.poll() is not None  # the child was ended


# -- Raspberry Pi 5 PMIC ----------------------------------------------------------------------


def test_parse_pmic_pairs_current_and_voltage_by_rail():
    rails = parse_pmic_read_adc((FIX / "vcgencmd_pmic_read_adc_pi5.txt").read_text())
    assert rails["VDD_CORE"] == pytest.approx(2.715 * 0.7202668)
    assert "EXT5V" not in rails and "BATT" not in rails  # voltage only: no power
    assert len(rails) == 12


def test_pi_pmic_meter_is_an_estimate():
    text = (FIX / "vcgencmd_pmic_read_adc_pi5.txt").read_text()
    calls = []
    m = PiPmicMeter.find(runner=lambda cmd: calls.append(cmd) or text)
    assert m is not None and m.estimate
    assert calls[0] == ["vcgencmd", "pmic_read_adc"]
    assert m.read_w() == pytest.approx(sum(parse_pmic_read_adc(text).values()))
    assert PiPmicMeter.find(runner=lambda cmd: "error=1 error_msg=\"Command not registered\"\n") is None


# -- generic hwmon, RAPL ----------------------------------------------------------------------


def test_hwmon_power_in_microwatts_skips_ina3221(tmp_path):
    sysfs.hwmon_power(tmp_path, "amdgpu", [15_500_000], index=0)
    sysfs.hwmon_power(tmp_path, "ina3221", [99_000_000], index=1)
    m = HwmonMeter.find(tmp_path)
    assert m.read_w() == pytest.approx(15.5)
    assert HwmonMeter.find(tmp_path / "nothing") is None


def test_rapl_power_from_energy_and_wrap(tmp_path):
    z = sysfs.rapl(tmp_path, energy_uj=1_000_000, max_uj=10_000_000)
    t = [100.0]
    m = RaplMeter([z], clock=lambda: t[0])
    assert RaplMeter.find(tmp_path).zones == [z]  # the sub-zone intel-rapl:0:0 is not counted
    t[0] = 102.0
    (z / "energy_uj").write_text("9000000\n")
    assert m.read_w() == pytest.approx(4.0)  # 8 J in 2 s
    t[0] = 104.0
    (z / "energy_uj").write_text("1000000\n")  # wrapped: 9e6 -> 10e6 (max) -> 1e6 = 2 J
    assert m.read_w() == pytest.approx(1.0)


# -- choice of meter --------------------------------------------------------------------------


def test_auto_choice_and_override(tmp_path, monkeypatch):
    monkeypatch.setattr(TegrastatsMeter, "available", staticmethod(lambda: False))
    monkeypatch.setattr(PiPmicMeter, "find", classmethod(lambda cls, runner=None: None))
    jetson, generic, empty = tmp_path / "j", tmp_path / "g", tmp_path / "e"
    sysfs.jetson_hwmon(jetson, {"VDD_IN": (5000, 1000)})
    sysfs.hwmon_power(jetson, "other", [1_000_000])
    sysfs.hwmon_power(generic, "acpi_power", [7_000_000])
    sysfs.rapl(generic, 5)
    empty.mkdir()
    assert open_power_meter("auto", jetson).name == "ina3221"
    assert open_power_meter("hwmon", jetson).name == "hwmon"  # overridable
    assert open_power_meter("auto", generic).name == "hwmon"
    assert open_power_meter("rapl", generic).name == "rapl"
    assert open_power_meter("auto", empty).name == "none"
    assert open_power_meter("none", jetson).read_w() is None
    with pytest.raises(EdgeSRError, match="not found"):
        open_power_meter("ina3221", empty)
    with pytest.raises(EdgeSRError, match="unknown power meter"):
        open_power_meter("ina9999", empty)


# -- system figures and stats -----------------------------------------------------------------


def test_cpu_load_temperature_rss(tmp_path):
    sysfs.proc_stat(tmp_path, user=100, idle=900)
    cpu = CpuLoad(tmp_path)
    sysfs.proc_stat(tmp_path, user=160, idle=940)  # 60 busy of 100
    assert cpu.percent() == pytest.approx(60.0)
    assert cpu.load_1m() == pytest.approx(0.52)
    sysfs.thermal(tmp_path, {"cpu-thermal": 51234, "gpu-thermal": 48000, "bogus": -273000})
    assert temperatures_c(tmp_path) == {"cpu-thermal": pytest.approx(51.234), "gpu-thermal": 48.0}
    assert rss_mb() > 1.0  # this process, from the real /proc


def test_stage_stats_window_and_totals():
    st = StageStats("x")
    st.window(now=0.0)
    for i, ms in enumerate([10.0, 20.0, 30.0, 40.0]):
        st.record(ms, now=1.0 + i)
    st.drop(3)
    w = st.window(now=2.0)
    assert w["frames"] == 4 and w["dropped"] == 3 and w["fps"] == pytest.approx(2.0)
    assert w["p50_ms"] == pytest.approx(25.0) and w["mean_ms"] == pytest.approx(25.0)
    assert st.window(now=3.0)["frames"] == 0  # a new window
    assert st.total == 4 and st.dropped_total == 3
    assert st.mean_fps_total() == pytest.approx(1.0)  # 3 intervals over 3 s


class _ConstMeter(PowerMeter):
    name = "const"

    def read_w(self):
        return 5.0


def test_telemetry_record_energy_prometheus_and_files(tmp_path, caplog):
    for kind in ("csv", "jsonl"):
        tel = Telemetry(1.0, _ConstMeter(), metrics_file=str(tmp_path / f"m.{kind}"))
        tel.start()
        for _ in range(5):
            tel.stage("capture").record(1.0)
            tel.stage("model").record(40.0)  # 25 FPS model-only
            tel.stage("output").record(2.0)
        with caplog.at_level("INFO", logger="edge_sr.telemetry.report"):
            rec = tel.emit()
        assert rec["model_fps"] == pytest.approx(25.0)
        assert rec["power_w"] == 5.0
        assert rec["energy_per_frame_j"] == pytest.approx(5.0 / rec["output_fps"], rel=1e-3)
        line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("{")][-1]
        assert json.loads(line)["event"] == "stats"  # one JSON line on the log
        fams = parse_metrics(tel.prometheus_text())
        tel.close()
        assert sample(fams, "edge_sr_frames_per_second", stage="model") == pytest.approx(25.0)
        assert sample(fams, "edge_sr_power_watts") == 5.0
        if kind == "csv":
            rows = list(csv.DictReader(open(tmp_path / "m.csv")))
            assert rows[0]["power_w"] == "5.0"
        else:
            assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])["power_meter"] == "const"
    s = tel.summary()
    assert s["power_w_mean"] == 5.0 and s["frames"] == 5


def parse_metrics(text: str) -> dict:
    """{family name: family} through prometheus_client's own parser (fails on malformed text)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict, name: str, suffix: str = "", **labels):
    fam = fams[name]
    got = [s.value for s in fam.samples if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (name, suffix, labels, fam.samples)
    return got[0]


def test_metrics_by_the_book_parse_base_units_counters_histograms():
    tel = Telemetry(60.0, _ConstMeter())
    tel.extra = lambda: {"reconnects": 3, "viewers": 2, "viewers_served": 7, "viewer_dropped": 11}
    tel.start()
    for i in range(5):
        tel.stage("model").record(40.0)  # 0.04 s each
        tel.stage("output").record(2.0)
    tel.stage("capture").drop(4)
    tel.emit()
    fams = parse_metrics(tel.prometheus_text())
    tel.close()
    for name, fam in fams.items():
        # base units only (seconds, bytes, ratios), never ms / MiB / percent
        assert not any(u in name for u in ("_ms", "_mb", "percent", "milli")), name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.samples
        if fam.type == "gauge":
            assert all("quantile" not in s.labels for s in fam.samples), name
    assert fams["edge_sr_stage_latency_seconds"].type == "histogram"
    assert sample(fams, "edge_sr_stage_latency_seconds", "_count", stage="model") == 5
    assert sample(fams, "edge_sr_stage_latency_seconds", "_sum", stage="model") == pytest.approx(0.2)
    assert sample(fams, "edge_sr_stage_latency_seconds", "_bucket", stage="model", le="0.05") == 5
    assert sample(fams, "edge_sr_stage_latency_seconds", "_bucket", stage="model", le="0.033") == 0
    assert sample(fams, "edge_sr_frames", "_total", stage="output") == 5
    assert sample(fams, "edge_sr_dropped_frames", "_total", stage="capture") == 4
    assert sample(fams, "edge_sr_source_reconnects", "_total") == 3
    assert sample(fams, "edge_sr_viewers_served", "_total") == 7
    assert sample(fams, "edge_sr_viewers") == 2
    assert sample(fams, "process_resident_memory_bytes") > 1e6  # bytes, from prometheus_client's collector


def test_telemetry_loop_logs_and_survives_its_own_errors(caplog):
    """Out of file descriptors (slowloris) once killed the telemetry thread for good."""
    calls = {"n": 0}

    def extra():
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise OSError(24, "Too many open files")
        return {"reconnects": 0}

    tel = Telemetry(0.1, extra=extra)
    with caplog.at_level("INFO", logger="edge_sr.telemetry.report"):
        tel.start()
        deadline = time.monotonic() + 10
        while calls["n"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        tel.close()
    msgs = [r.getMessage() for r in caplog.records]
    assert calls["n"] >= 6, "the telemetry loop stopped after an error"
    assert sum("Too many open files" in m and "still running" in m for m in msgs) == 2
    assert sum(m.startswith('{"event": "stats"') for m in msgs) >= 3  # lines before and after the failures
    assert tel.errors == 2


def test_metrics_file_bad_input(tmp_path):
    with pytest.raises(EdgeSRError, match="csv or .jsonl"):
        Telemetry(1.0, metrics_file=str(tmp_path / "m.txt"))
    with pytest.raises(EdgeSRError, match="does not exist"):
        Telemetry(1.0, metrics_file=str(tmp_path / "missing" / "m.csv"))
