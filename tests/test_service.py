"""The systemd unit: contents, `systemd-analyze verify`, install / status / uninstall in a folder."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import run_cli

from deploy import service
from edge_sr.errors import EdgeSRError


def unit_lines(text: str) -> dict[str, str]:
    out = {}
    for ln in text.splitlines():
        if "=" in ln and not ln.startswith("#"):
            k, v = ln.split("=", 1)
            out[k] = v
    return out


def test_unit_contents(tmp_path):
    text = service.render_unit(["--camera", "0", "--http", "8080"], run_as="nobody", groups=["video"],
                               working_dir=tmp_path, read_write_paths=[str(tmp_path)])
    u = unit_lines(text)
    exec_start = u["ExecStart"].split()
    assert exec_start[0].startswith("/") and exec_start[1:] == ["stream", "--camera", "0", "--http", "8080"]
    assert u["Restart"] == "on-failure" and int(u["RestartSec"]) >= 1
    assert u["User"] == "nobody" and u["SupplementaryGroups"] == "video"
    assert u["StandardOutput"] == u["StandardError"] == "journal"
    assert u["NoNewPrivileges"] == "yes" and u["ProtectSystem"] == "full"
    assert "PrivateDevices" not in u and "DevicePolicy" not in u  # would hide /dev/video*
    assert int(u["TimeoutStopSec"]) >= 3
    assert u["WantedBy"] == "multi-user.target"
    user = unit_lines(service.render_unit(["--source", "demo", "--no-output"], user_unit=True))
    assert "User" not in user and user["WantedBy"] == "default.target"
    with pytest.raises(EdgeSRError, match="non-root"):
        service.render_unit(["--source", "demo"], run_as="root")


def test_quoting_for_exec_start():
    assert service.systemd_quote("/dev/video0") == "/dev/video0"
    assert service.systemd_quote("my clip.mp4") == '"my clip.mp4"'
    assert service.systemd_quote('a"b') == '"a\\"b"'
    assert service.systemd_quote("50%") == '"50%%"'
    assert service.systemd_quote("$HOME") == '"$$HOME"'


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    out = tmp_path / "out.mp4"
    text = service.render_unit(["--source", "demo", "--output", str(out), "--http", "8080"], run_as="nobody",
                               working_dir=tmp_path, read_write_paths=[str(tmp_path)])
    unit = tmp_path / "edge-sr.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines()
                if ln.strip() and "Special user nobody" not in ln]  # nobody: only a test user
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_install_status_uninstall_in_a_folder(tmp_path):
    d = tmp_path / "units"
    d.mkdir()
    r = run_cli("service", "install", "--unit-dir", str(d), "--run-as", "nobody", "--name", "cam1", "--",
                "--source", "demo", "--output", str(tmp_path / "o.mp4"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    unit = d / "cam1.service"
    assert unit.exists() and "wrote" in r.stdout
    assert f"ReadWritePaths={tmp_path}" in unit.read_text()
    r = run_cli("service", "status", "--unit-dir", str(d), "--name", "cam1")
    assert r.returncode == 0 and "installed" in r.stdout
    r = run_cli("service", "uninstall", "--unit-dir", str(d), "--name", "cam1")
    assert r.returncode == 0 and not unit.exists()
    r = run_cli("service", "status", "--unit-dir", str(d), "--name", "cam1")
    assert r.returncode == 3 and "not installed" in r.stdout


def test_dry_run_prints_and_writes_nothing(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('source = "demo"\nno-output = true\n')
    r = run_cli("service", "install", "--dry-run", "--run-as", "nobody", "--config", "s.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# Written by edge-sr") and f"--config {cfg}" in r.stdout  # made absolute
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_install_refuses_bad_arguments(tmp_path):
    r = run_cli("service", "install", "--dry-run", "--run-as", "nobody", "--", "--no-such-flag")
    assert r.returncode == 2 and "bad stream arguments (unrecognized arguments: --no-such-flag)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("service", "install", "--dry-run", "--run-as", "no_such_user_xyz", "--", "--source", "demo")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("service", "install", "--dry-run", "--run-as", "nobody")
    assert r.returncode == 2 and "after --" in r.stderr
