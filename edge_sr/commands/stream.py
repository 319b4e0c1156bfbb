"""edge-sr stream: live upscaling from a camera, file or stream, with FPS and power telemetry."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("edge_sr.stream")

_PARSER: argparse.ArgumentParser | None = None
_NOT_IN_CONFIG = {"config", "func", "command", "verbose"}


def add_parser(sub) -> None:
    global _PARSER
    p = sub.add_parser(
        "stream",
        help="live upscaling from a camera, file or network stream",
        description="Capture, upscale and output in separate threads (latest frame wins; drops are counted). "
        "Every --log-interval seconds one JSON line goes to stderr with capture/output/model-only FPS, "
        "latency per stage, drops, CPU, temperature and power. Ctrl-C or SIGTERM stop cleanly.",
        epilog="examples:\n  edge-sr stream --camera 0 --scale 2 --http 8080\n"
        "  edge-sr stream --source demo --output out.mp4 --duration 10\n"
        "  edge-sr stream --source csi://0 --model dcscn.engine --output http://0.0.0.0:8080\n"
        "  edge-sr stream --config /etc/edge-sr/stream.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("source")
    src.add_argument("--source", "-i", default=None,
                     help="camera index, /dev/videoN, csi://N, picam://N, demo, rtsp://..., http(s)://..., "
                     "a video file, an image or an image folder")
    src.add_argument("--camera", default=None, metavar="N", help="shorthand for --source /dev/videoN")
    src.add_argument("--width", type=int, default=None, help="capture width (camera/demo) or resize width")
    src.add_argument("--height", type=int, default=None, help="capture height (camera/demo) or resize height")
    src.add_argument("--fps", type=float, default=None,
                     help="capture frame rate (cameras; demo: 30 by default, 0 = unpaced, every frame processed)")
    src.add_argument("--fourcc", default=None, help="V4L2 pixel format to ask the camera for, e.g. MJPG or YUYV")
    src.add_argument("--flip", type=int, default=0, help="CSI: nvvidconv flip-method 0..7")
    src.add_argument("--loop", action="store_true", help="files and folders: start again at the end")
    src.add_argument("--open-timeout", type=float, default=5.0, help="network streams: seconds to wait (default 5)")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", "-m", default="compact",
                     help="preset (compact/normal/large: the shipped ONNX) or a .onnx/.engine/.safetensors file")
    mdl.add_argument("--scale", "-s", type=int, default=None, choices=(2, 3, 4),
                     help="upscaling factor (checked against the model; picks the shipped preset file)")
    mdl.add_argument("--target-fps", type=float, default=None, metavar="FPS",
                     help="pick the highest-quality shipped model/precision that sustains FPS at this frame size "
                     "on this device (from a cached edge-sr bench; measured now when none is cached)")
    mdl.add_argument("--threads", type=int, default=0, help="inference threads (0: backend default)")
    mdl.add_argument("--tile", type=int, default=None, help="LR tile side for large frames (default: whole frame)")
    out = p.add_argument_group("outputs")
    out.add_argument("--output", "-o", action="append", default=None, metavar="SPEC",
                     help="repeatable: out.mp4/.avi/.mkv, http://127.0.0.1:8080, display://0 or null")
    out.add_argument("--http", type=int, default=None, metavar="PORT", help="MJPEG page + /metrics on this port")
    out.add_argument("--listen", default="127.0.0.1",
                     help="address for --http (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    out.add_argument("--display", action="store_true", help="show a window (needs a display and OpenCV GUI)")
    out.add_argument("--no-output", action="store_true", help="no output (for measuring)")
    out.add_argument("--side-by-side", action="store_true", help="output bicubic | edge-sr side by side")
    out.add_argument("--video-codec", default=None, help="FOURCC for video files (default mp4v; MJPG for .avi)")
    out.add_argument("--output-fps", type=float, default=None, help="frame rate written in video files "
                     "(default: the source's)")
    out.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    out.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N output frames")
    tel = p.add_argument_group("telemetry")
    tel.add_argument("--log-interval", type=float, default=5.0, metavar="S", help="seconds between JSON lines")
    tel.add_argument("--power-meter", default="auto",
                     help="auto, ina3221, tegrastats, pi5-pmic, hwmon, rapl or none (default auto: the best present)")
    tel.add_argument("--metrics-file", default=None, metavar="FILE", help="also append the lines to FILE (.csv/.jsonl)")
    tel.add_argument("--sysfs-root", default="/", help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file of stream options (keys as the long options: source = \"csi://0\"); "
                   "options on the command line win")
    p.set_defaults(func=run)
    _PARSER = p


# ---------------------------------------------------------------------------------------------
# TOML config


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli

        return tomli
    except ImportError:
        from ..errors import MissingDependency

        raise MissingDependency("--config needs Python 3.11+ or the tomli package: pip install tomli") from None


def load_config(path: str | os.PathLike) -> dict:
    from ..errors import EdgeSRError

    p = Path(path)
    if not p.is_file():
        raise EdgeSRError(f"config file not found: {p}")
    toml = _toml()
    try:
        with open(p, "rb") as f:
            data = toml.load(f)
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeSRError(f"config file {p} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise EdgeSRError(f"config file {p} is not readable: {exc}") from None
    if isinstance(data.get("stream"), dict):  # [stream] table or top-level keys
        data = data["stream"]
    return data


def apply_config(args: argparse.Namespace, config: dict) -> None:
    """Config values fill the options not given on the command line (those still at their default)."""
    from ..errors import EdgeSRError

    assert _PARSER is not None
    known = {a.dest: a for a in _PARSER._actions if a.dest not in _NOT_IN_CONFIG and a.dest != "help"}
    for key, value in config.items():
        dest = key.replace("-", "_")
        if dest not in known:
            names = ", ".join(sorted(k.replace("_", "-") for k in known if k != "sysfs_root"))
            raise EdgeSRError(f"unknown key {key!r} in the config file; known: {names}")
        if getattr(args, dest) != _PARSER.get_default(dest):
            continue  # given on the command line
        action = known[dest]
        if dest == "output":
            value = [value] if isinstance(value, str) else list(value)
        elif action.type is not None and value is not None:
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise EdgeSRError(f"config key {key!r}: bad value {value!r}") from None
        if action.choices is not None and value not in action.choices:
            raise EdgeSRError(f"config key {key!r}: {value!r} is not one of {list(action.choices)}")
        setattr(args, dest, value)


# ---------------------------------------------------------------------------------------------


def output_specs(args) -> list[str]:
    specs = list(args.output or [])
    if args.http is not None:
        host = args.listen
        specs.append(f"http://{'[' + host + ']' if ':' in host else host}:{args.http}")
    if args.display:
        specs.append("display://0")
    if args.no_output:
        if specs:
            from ..errors import EdgeSRError

            raise EdgeSRError("--no-output cannot be combined with other outputs")
        specs = ["null"]
    return specs


def run(args) -> int:
    from ..errors import EdgeSRError

    if args.config:
        apply_config(args, load_config(args.config))
    if args.source is not None and args.camera is not None:
        raise EdgeSRError("give --source or --camera, not both")
    spec = args.source if args.source is not None else (f"/dev/video{args.camera}" if args.camera is not None
                                                       and str(args.camera).isdigit() else args.camera)
    if spec is None:
        raise EdgeSRError("give a source: --camera N, --source demo, --source csi://0, --source FILE ... "
                          "(see edge-sr stream --help)")
    outputs = output_specs(args)
    if not outputs:
        raise EdgeSRError("give an output: --output out.mp4, --http 8080, --display or --no-output")
    for name, v in (("--duration", args.duration), ("--frames", args.frames), ("--log-interval", args.log_interval)):
        if v is not None and v <= 0:
            raise EdgeSRError(f"{name} must be positive, got {v}")

    from ..backends import open_upscaler
    from ..sinks import open_sink
    from ..sources import open_source
    from ..stream import Stream
    from ..telemetry.power import open_power_meter
    from ..telemetry.report import Telemetry

    source = open_source(spec, args.width, args.height, args.fps, loop=args.loop, fourcc=args.fourcc,
                         flip=args.flip, timeout_s=args.open_timeout)
    options = {"threads": args.threads} if args.threads else {}
    model = args.model
    if args.target_fps:
        w = args.width or getattr(source, "width", None)
        h = args.height or getattr(source, "height", None)
        if not (w and h):
            source.close()
            raise EdgeSRError("--target-fps needs the frame size: give --width and --height")
        from ..selection import pick_model

        try:
            model, why = pick_model(args.target_fps, int(w), int(h), args.scale or 2, threads=args.threads)
        except BaseException:
            source.close()
            raise
        log.info("--target-fps %g: %s", args.target_fps, why)
    upscaler = open_upscaler(model, scale=args.scale, **options)
    sinks: list = []
    telemetry = None
    try:
        source.open()
        meter = open_power_meter(args.power_meter, root=args.sysfs_root)
        telemetry = Telemetry(args.log_interval, meter, args.metrics_file, root=args.sysfs_root)
        fps = args.output_fps or source.fps or 30.0
        for s in outputs:
            sinks.append(open_sink(s, fps=fps, listen=args.listen, video_codec=args.video_codec,
                                   metrics=telemetry.prometheus_text, stats=telemetry.stats_json,
                                   title=f"{source.name} x{upscaler.scale} ({upscaler.name})"))
    except BaseException:
        for s in sinks:
            s.abort()
        if telemetry is not None:
            telemetry.close()
        source.close()
        upscaler.close()
        raise

    stream = Stream(source, upscaler, sinks, telemetry, side_by_side=args.side_by_side, duration_s=args.duration,
                    max_frames=args.frames, tile=args.tile)
    log.info("%s", json.dumps({"event": "start", **source.describe(), "model": upscaler.describe(),
                               "outputs": [s.name for s in sinks], **telemetry.meter.describe()}))

    def on_signal(signum, _frame):
        if stream.stop_event.is_set():  # a second Ctrl-C: stop waiting
            raise KeyboardInterrupt
        stream.stop(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = stream.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        upscaler.close()
    log.info("%s", json.dumps(summary))
    print(_human_summary(summary))
    return 0  # a requested stop (SIGTERM/SIGINT) is a success for systemd too


def _human_summary(s: dict) -> str:
    def f(x, fmt="{:.1f}"):
        return "n/a" if x is None else fmt.format(x)

    eff = s.get("efficiency")
    line = (f"{s['frames']} frames in {f(s['duration_s'])} s ({s['stop_reason']}): output {f(s['output_fps_mean'])} FPS, "
            f"model-only {f(s['model_fps_mean'])} FPS" + (f" (pipeline efficiency {eff * 100:.0f}%)" if eff else "")
            + f", dropped {s['dropped_capture']} at capture + {s['dropped_output']} at output")
    if s.get("power_w_mean") is not None:
        est = " (estimate)" if s.get("power_estimate") else ""
        line += (f", power {s['power_w_mean']:.2f} W{est} from {s['power_meter']}, "
                 f"{f(s.get('energy_per_frame_j'), '{:.3f}')} J/frame")
    return line
