"""A systemd unit that runs `edge-sr stream ...` as a service: restarts on failure, logs to the
journal, runs as a non-root user in the video group, with hardening that keeps camera and GPU
access (no PrivateDevices: it would hide /dev/video*, /dev/nvhost-* and the Pi camera nodes).

    render_unit(...)  the unit text (pure; tests run `systemd-analyze verify` on it)
    install / uninstall / status   write or remove it and drive systemctl when systemd runs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import grp
import io
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edge_sr import __version__
from edge_sr.errors import EdgeSRError

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
DEVICE_GROUPS = ("video", "render")  # V4L2/CSI/Pi camera nodes; Jetson GPU (/dev/dri, nvhost) on newer JetPacks
STOP_TIMEOUT_S = 5  # the stream stops within 2 s; systemd kills after this
RESTART_SEC = 2  # first restart delay; with systemd >= 254 it grows to RESTART_MAX_DELAY_S
RESTART_STEPS = 8
RESTART_MAX_DELAY_S = 60
RESTART_SEC_OLD_SYSTEMD = 10  # a fixed delay where RestartSteps= is unknown (systemd < 254)

_SAFE_ARG = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """One argument for ExecStart= (systemd's own quoting; % and $ escaped)."""
    s = str(arg).replace("%", "%%").replace("$", "$$")
    if s and _SAFE_ARG.match(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def edge_sr_command() -> list[str]:
    """The absolute command that runs this installation's edge-sr (the script beside this Python)."""
    here = Path(os.path.abspath(sys.executable)).parent / "edge-sr"
    if here.is_file() and os.access(here, os.X_OK):
        return [str(here)]
    found = shutil.which("edge-sr")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "edge_sr"]


def unit_dir(user: bool) -> Path:
    if not user:
        return SYSTEM_UNIT_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def default_run_as() -> str:
    """The non-root user for a system unit: $SUDO_USER, or the current user when not root."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root":
        return sudo_user
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    raise EdgeSRError("the service runs as a non-root user: give --run-as USER (a user that may use the camera; "
                      "the unit adds the video group)")


def existing_groups(names=DEVICE_GROUPS) -> list[str]:
    out = []
    for g in names:
        try:
            grp.getgrnam(g)
            out.append(g)
        except KeyError:
            pass
    return out


def stream_args_check(stream_args: list[str]) -> argparse.Namespace:
    """Parse the stream arguments as `edge-sr stream` would (applying --config); a mistake is an error now,
    not a service that fails at boot."""
    from edge_sr.commands import stream as stream_cmd

    parser = argparse.ArgumentParser(prog="edge-sr", add_help=False)
    sub = parser.add_subparsers(dest="command")
    stream_cmd.add_parser(sub)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(["stream", *stream_args])
    except SystemExit:
        why = (err.getvalue().strip().splitlines() or [""])[-1].split("error: ", 1)[-1]
        raise EdgeSRError(f"bad stream arguments ({why}): {' '.join(stream_args)} (see edge-sr stream --help)") from None
    if args.config:
        stream_cmd.apply_config(args, stream_cmd.load_config(args.config))
    stream_cmd.check_args(args)
    return args


def systemd_version() -> int | None:
    """The local systemd's version (``systemctl --version``), or None when there is none."""
    for tool in ("systemctl", "systemd-analyze"):
        exe = shutil.which(tool)
        if not exe:
            continue
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        m = re.match(r"systemd (\d+)", out)
        if m:
            return int(m.group(1))
    return None


def ensure_token_file(home: Path, uid: int | None = None, gid: int | None = None) -> tuple[Path, bool]:
    """The --auth token file of a user (~/.config/edge-sr/http-token, mode 0600), made when absent:
    the service reads it (ProtectHome=read-only lets it read, not create). (path, made now)."""
    import secrets

    d = home / ".config" / "edge-sr"
    f = d / "http-token"
    if f.exists():
        return f, False
    made = []
    for p in (home / ".config", d):
        if not p.exists():
            p.mkdir(mode=0o700)
            made.append(p)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24) + "\n")
    if uid is not None and os.geteuid() == 0:
        for p in (*made, f):
            os.chown(p, uid, gid if gid is not None else -1)
    return f, True


def absolutize_stream_args(stream_args: list[str], cwd: Path) -> list[str]:
    """--config FILE made absolute (the service's working directory may differ)."""
    out = list(stream_args)
    for i, a in enumerate(out):
        if a == "--config" and i + 1 < len(out):
            out[i + 1] = str((cwd / out[i + 1]).resolve())
        elif a.startswith("--config="):
            out[i] = "--config=" + str((cwd / a.split("=", 1)[1]).resolve())
    return out


def writable_paths(args: argparse.Namespace, cwd: Path) -> list[str]:
    """Folders the stream writes to (video outputs, metrics file): ReadWritePaths= under the hardening."""
    from edge_sr.sinks import VIDEO_FOURCC

    files = [o for o in (args.output or []) if Path(o).suffix.lower() in VIDEO_FOURCC]
    if args.metrics_file:
        files.append(args.metrics_file)
    dirs = []
    for f in files:
        d = str((cwd / f).parent.resolve())
        if d not in dirs:
            dirs.append(d)
    return dirs


def render_unit(stream_args: list[str], *, user_unit: bool = False, run_as: str | None = None,
                groups: list[str] | None = None, working_dir: str | os.PathLike | None = None,
                read_write_paths: list[str] | None = None, command: list[str] | None = None,
                description: str = "edge-sr live super-resolution stream", systemd: int | None = -1) -> str:
    """The unit file text for `edge-sr stream STREAM_ARGS`. ``systemd``: the version the unit is for
    (-1: this machine's; None: unknown): from 254 on, the restart delay grows (RestartSteps=)."""
    cmd = (command or edge_sr_command()) + ["stream", *stream_args]
    version = systemd_version() if systemd == -1 else systemd
    if version is not None and version >= 254:
        restart = [f"RestartSec={RESTART_SEC}", f"RestartSteps={RESTART_STEPS}",
                   f"RestartMaxDelaySec={RESTART_MAX_DELAY_S}"]
    else:
        restart = [f"RestartSec={RESTART_SEC_OLD_SYSTEMD}"]
    wd = str(working_dir or os.getcwd())
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Written by edge-sr {__version__} (edge-sr service install) on {stamp}.",
        "# Edit with `edge-sr service install ...` again, or by hand then `systemctl daemon-reload`.",
        "[Unit]",
        f"Description={description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "# never give up: a camera that comes back (or appears after boot) brings the stream back",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(systemd_quote(a) for a in cmd),
        f"WorkingDirectory={systemd_quote(wd)}",
    ]
    if not user_unit:
        if not run_as or run_as == "root":
            raise EdgeSRError("a system unit runs as a non-root user: give --run-as USER")
        lines.append(f"User={run_as}")
        gs = existing_groups() if groups is None else groups
        if gs:
            lines.append("SupplementaryGroups=" + " ".join(gs))
    lines += [
        "Environment=PYTHONUNBUFFERED=1",
        "# the stream itself waits for an absent camera (with backoff, forever under systemd);",
        "# a crash or a fatal error restarts it after a delay" + (" that grows" if len(restart) > 1 else ""),
        "Restart=on-failure",
        *restart,
        "# the stream finalises its outputs and exits 0 on SIGTERM within 2 s",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "SuccessExitStatus=130 143",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=edge-sr",
        "# hardening that keeps /dev/video*, CSI (nvargus), the Pi camera and the GPU usable:",
        "# PrivateDevices= and DevicePolicy= are deliberately absent",
        "NoNewPrivileges=yes",
    ]
    if not user_unit:
        lines += [
            "ProtectSystem=full",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
        ]
        if read_write_paths:
            lines.append("ReadWritePaths=" + " ".join(systemd_quote(p) for p in read_write_paths))
    lines += ["", "[Install]", f"WantedBy={'default.target' if user_unit else 'multi-user.target'}", ""]
    return "\n".join(lines)


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _systemctl(user: bool, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["systemctl", *(["--user"] if user else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise EdgeSRError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ''}",
                          1)
    return proc


def unit_name(name: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.@-]+$", name):
        raise EdgeSRError(f"bad service name {name!r}: letters, digits, - _ . @ only")
    return name if name.endswith(".service") else name + ".service"


def install(stream_args: list[str], *, user: bool = False, run_as: str | None = None, name: str = "edge-sr",
            directory: str | os.PathLike | None = None, start: bool = True, dry_run: bool = False) -> tuple[Path, str, list[str]]:
    """Write the unit (and enable + start it when systemd runs and ``start``). Returns (path, text, notes)."""
    from edge_sr.imageio import write_bytes_atomic

    if not stream_args:
        raise EdgeSRError("give the stream arguments after --, e.g. edge-sr service install -- --camera 0 --http 8080")
    cwd = Path.cwd()
    stream_args = absolutize_stream_args(stream_args, cwd)
    args = stream_args_check(stream_args)
    notes: list[str] = []
    if not user:
        run_as = run_as or default_run_as()
        try:
            pw = pwd.getpwnam(run_as)
        except KeyError:
            raise EdgeSRError(f"user {run_as!r} does not exist (give --run-as USER)") from None
        if pw.pw_uid == 0:
            raise EdgeSRError("a system unit runs as a non-root user: give --run-as USER")
    elif args.http is not None and args.http < 1024:
        notes.append("ports below 1024 need privileges a user service does not have")
    if args.auth and not os.environ.get("EDGE_SR_HTTP_TOKEN") and not getattr(args, "auth_token", None):
        pw = pwd.getpwnam(run_as) if not user else pwd.getpwuid(os.geteuid())
        if not dry_run:
            f, made = ensure_token_file(Path(pw.pw_dir), pw.pw_uid, pw.pw_gid)
            notes.append(f"--auth: {'made' if made else 'using'} the access token in {f} (mode 600; open the page "
                         "with ?token=TOKEN)")
        else:
            notes.append(f"--auth: the access token will be kept in {pw.pw_dir}/.config/edge-sr/http-token")
    text = render_unit(stream_args, user_unit=user, run_as=run_as, working_dir=cwd,
                       read_write_paths=writable_paths(args, cwd))
    unit = unit_name(name)
    path = Path(directory) if directory else unit_dir(user)
    dest = path / unit
    if dry_run:
        return dest, text, notes
    if not path.is_dir():
        if user:
            path.mkdir(parents=True, exist_ok=True)
        else:
            raise EdgeSRError(f"unit folder does not exist: {path} (is this a systemd system?)")
    if not os.access(path, os.W_OK):
        raise EdgeSRError(f"cannot write {dest}: permission denied: system units need root, and sudo does not "
                          f"search the venv, so give the full path: sudo {edge_sr_command()[0]} service install ... "
                          "(or use --user)")
    write_bytes_atomic(dest, text.encode())
    os.chmod(dest, 0o644)
    if directory is None and systemd_running():
        _systemctl(user, "daemon-reload")
        if start:
            _systemctl(user, "enable", "--now", unit)
            notes.append(f"enabled and started {unit}; logs: journalctl {'--user ' if user else ''}-u {unit} -f")
        else:
            notes.append(f"start it with: systemctl {'--user ' if user else ''}enable --now {unit}")
    else:
        notes.append(f"systemd is not running here (or a custom folder was given): run `systemctl "
                     f"{'--user ' if user else ''}daemon-reload && systemctl {'--user ' if user else ''}enable --now "
                     f"{unit}` on the device")
    if user:
        notes.append("a user service stops at logout unless lingering is on: loginctl enable-linger $USER")
    return dest, text, notes


def uninstall(*, user: bool = False, name: str = "edge-sr", directory: str | os.PathLike | None = None) -> Path:
    unit = unit_name(name)
    dest = (Path(directory) if directory else unit_dir(user)) / unit
    if not dest.exists():
        raise EdgeSRError(f"no unit installed at {dest}")
    if directory is None and systemd_running():
        _systemctl(user, "disable", "--now", unit, check=False)
    try:
        dest.unlink()
    except OSError as exc:
        raise EdgeSRError(f"cannot remove {dest}: {exc} (system units need sudo)") from None
    if directory is None and systemd_running():
        _systemctl(user, "daemon-reload", check=False)
    return dest


def status(*, user: bool = False, name: str = "edge-sr", directory: str | os.PathLike | None = None) -> tuple[int, str]:
    """(exit code, text): systemctl status when systemd runs, else whether the unit file exists."""
    unit = unit_name(name)
    dest = (Path(directory) if directory else unit_dir(user)) / unit
    if directory is None and systemd_running():
        proc = _systemctl(user, "status", "--no-pager", "--lines", "10", unit, check=False)
        return proc.returncode, (proc.stdout + proc.stderr).rstrip()
    if dest.exists():
        exec_line = next((ln for ln in dest.read_text().splitlines() if ln.startswith("ExecStart=")), "")
        return 0, f"{unit}: installed at {dest} (systemd is not running here)\n{exec_line}"
    return 3, f"{unit}: not installed ({dest} absent)"
