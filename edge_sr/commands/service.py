"""edge-sr service: install / uninstall / status of a systemd unit running `edge-sr stream`."""

from __future__ import annotations

import argparse


def _this_edge_sr() -> str:
    """The edge-sr of this installation (sudo's PATH does not include the venv)."""
    import os
    import sys
    from pathlib import Path

    here = Path(os.path.abspath(sys.executable)).parent / "edge-sr"
    return str(here) if here.is_file() else "/path/to/.venv/bin/edge-sr"


def add_parser(sub) -> None:
    exe = _this_edge_sr()
    p = sub.add_parser(
        "service",
        help="run the stream as a systemd service",
        description="Write a systemd unit that runs `edge-sr stream ...` (Restart=on-failure, journal logging, "
        "a non-root user in the video group, hardening that keeps camera and GPU access).",
        epilog="examples (sudo does not search the venv: give edge-sr's full path):\n"
        f"  sudo {exe} service install --run-as pi -- --camera 0 --scale 2 --http 8080 --listen 0.0.0.0 --auth\n"
        "  edge-sr service install --user -- --config ~/edge-sr.toml\n"
        "  edge-sr service install --dry-run --run-as pi -- --source csi://0 --http 8080 --listen 0.0.0.0 --auth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user) instead of a system one")
    common.add_argument("--name", default="edge-sr", help="unit name (default edge-sr: edge-sr.service)")
    common.add_argument("--unit-dir", default=None, help="write/look in this folder instead of the systemd one")
    i = ssub.add_parser("install", parents=[common], help="write (and enable + start) the unit",
                        description="Everything after -- is passed to `edge-sr stream`.")
    i.add_argument("--run-as", default=None, metavar="USER",
                   help="user of a system unit (default: $SUDO_USER, or you when not root)")
    i.add_argument("--config", default=None, metavar="FILE", help="TOML config file for the stream (made absolute)")
    i.add_argument("--dry-run", action="store_true", help="print the unit, write nothing")
    i.add_argument("--no-start", action="store_true", help="write the unit but do not enable/start it")
    i.add_argument("stream_args", nargs=argparse.REMAINDER, help="-- then the `edge-sr stream` options")
    ssub.add_parser("uninstall", parents=[common], help="stop, disable and remove the unit")
    ssub.add_parser("status", parents=[common], help="systemctl status of the unit")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from edge_sr.deploy import service

    if args.action == "install":
        stream_args = list(args.stream_args or [])
        if stream_args[:1] == ["--"]:
            stream_args = stream_args[1:]
        if args.config:
            stream_args += ["--config", args.config]
        dest, text, notes = service.install(stream_args, user=args.user, run_as=args.run_as, name=args.name,
                                            directory=args.unit_dir, start=not args.no_start, dry_run=args.dry_run)
        if args.dry_run:
            sys.stdout.write(text)
            print(f"# (dry run: would write {dest})", file=sys.stderr)
            return 0
        print(f"wrote {dest}")
        for n in notes:
            print(n)
        return 0
    if args.action == "uninstall":
        dest = service.uninstall(user=args.user, name=args.name, directory=args.unit_dir)
        print(f"removed {dest}")
        return 0
    code, text = service.status(user=args.user, name=args.name, directory=args.unit_dir)
    print(text)
    return code
