"""`edge-sr` entry point: thin commands over library functions (one module per command).

User mistakes raise EdgeSRError; ``main`` prints its one line on stderr and returns its exit
code. EDGE_SR_DEBUG=1 shows the traceback instead. Command modules import only argparse-level
things at top so that ``--help`` works when an optional dependency is missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys

from . import __version__
from .errors import EdgeSRError

# command name -> module under edge_sr.commands (each has add_parser(subparsers) and run(args) -> int)
COMMANDS = [
    ("demo", "demo"),
    ("upscale", "upscale"),
    ("eval", "evaluate"),
    ("train", "train"),
    ("export", "export"),
    ("calibrate", "calibrate"),
    ("build-engine", "build_engine"),
    ("stream", "stream"),
    ("service", "service"),
    ("bench", "bench"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-sr",
        description="Real-time DCSCN super-resolution for Jetson (TensorRT) and Raspberry Pi (ONNX Runtime).",
    )
    parser.add_argument("--version", action="version", version=f"edge-sr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module in COMMANDS:
        modname = f"edge_sr.commands.{module}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
        stream=sys.stderr,
    )
    debug = os.environ.get("EDGE_SR_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except EdgeSRError as exc:
        if debug:
            raise
        print(f"edge-sr {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edge-sr {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as exc:  # disk full, permissions... : still one line
        if debug:
            raise
        print(f"edge-sr {args.command}: error: {exc}", file=sys.stderr)
        return 1


def main_entry() -> None:
    sys.exit(main())
