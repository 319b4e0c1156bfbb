"""The systemd unit: contents, `systemd-analyze verify`, install / status / uninstall in a folder."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import run_cli

from edge_sr.deploy import service
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


def test_restart_policy_never_gives_up_and_grows_where_systemd_can(tmp_path):
    """StartLimitBurst=10 per 300 s with RestartSec=5 left a service whose camera came late failed for good."""
    old = unit_lines(service.render_unit(["--camera", "0"], run_as="nobody", groups=[], working_dir=tmp_path,
                                         systemd=252))
    new = unit_lines(service.render_unit(["--camera", "0"], run_as="nobody", groups=[], working_dir=tmp_path,
                                         systemd=255))
    for u in (old, new):
        assert u["StartLimitIntervalSec"] == "0" and "StartLimitBurst" not in u
        assert u["Restart"] == "on-failure"
    assert "RestartSteps" not in old and int(old["RestartSec"]) >= 5  # keys systemd 252 does not know stay out
    assert int(new["RestartSec"]) < int(new["RestartMaxDelaySec"]) and int(new["RestartSteps"]) >= 2


def test_unit_for_this_systemd_verifies_clean(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    text = service.render_unit(["--camera", "0", "--http", "8080", "--listen", "0.0.0.0", "--auth"], run_as="nobody",
                               working_dir=tmp_path)  # this machine's systemd version decides the restart keys
    unit = tmp_path / "cam.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip() and "Special user nobody" not in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    assert "StartLimitIntervalSec=0" in text


def test_help_and_permission_error_name_the_venv_binary():
    """`sudo edge-sr ...` does not find the venv's edge-sr (sudo's secure_path)."""
    r = run_cli("service", "--help")
    exe = service.edge_sr_command()[0]
    assert r.returncode == 0 and f"sudo {exe} service install" in r.stdout
    assert "\n  sudo edge-sr" not in r.stdout


def test_install_checks_stream_values_and_makes_the_token(tmp_path, monkeypatch):
    d = tmp_path / "units"
    d.mkdir()
    r = run_cli("service", "install", "--unit-dir", str(d), "--user", "--", "--source", "demo", "--http", "70000")
    assert r.returncode == 2 and "--http: must be a TCP port" in r.stderr and not list(d.iterdir())
    home = tmp_path / "home"
    home.mkdir()
    f, made = service.ensure_token_file(home)
    assert made and f == home / ".config" / "edge-sr" / "http-token"
    assert f.stat().st_mode & 0o777 == 0o600 and len(f.read_text().strip()) >= 16
    assert service.ensure_token_file(home) == (f, False)  # kept, not replaced
