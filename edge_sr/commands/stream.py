"""edge-sr stream: live upscaling from a camera, file or stream, with FPS and power telemetry."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("edge_sr.stream")

_PARSER: argparse.ArgumentParser | None = None
_NOT_IN_CONFIG = {"config", "func", "command", "verbose", "help", "sysfs_root"}
TOKEN_ENV = "EDGE_SR_HTTP_TOKEN"
CONFIG_SECRET_KEYS = ("auth-token",)

# dest -> (kind, low, high): every option and config key is type- and range-checked (``check_args``).
# kind: int, float, str, bool, port, host, fourcc, outputs, camera. Options added without a rule are
# checked by their argparse type.
RULES: dict[str, tuple] = {
    "source": ("str",), "camera": ("camera",),
    "width": ("int", 8, 16384), "height": ("int", 8, 16384),
    "fps": ("float", 0.0, 1000.0), "fourcc": ("fourcc",), "flip": ("int", 0, 7),
    "loop": ("bool",), "watch": ("bool",), "open_timeout": ("float", 0.1, 3600.0),
    "camera_wait": ("float", 0.0, math.inf),
    "model": ("str",), "scale": ("int", 2, 4), "target_fps": ("float", 0.1, 1000.0),
    "threads": ("int", 0, 1024), "tile": ("int", 16, 16384),
    "output": ("outputs",), "http": ("port",), "listen": ("host",), "auth": ("bool",),
    "display": ("bool",), "no_output": ("bool",), "side_by_side": ("bool",),
    "video_codec": ("str",), "output_fps": ("float", 0.1, 1000.0),  # codec names checked by the file output
    "duration": ("float", 0.001, math.inf), "frames": ("int", 1, 2**62),
    "log_interval": ("float", 0.1, 86400.0), "power_meter": ("str",), "metrics_file": ("str",),
}


def _one_line_error(prog: str):
    def error(message: str):  # argparse's error() prints the usage too: one line instead
        sys.stderr.write(f"{prog}: error: {message} (see {prog} --help)\n")
        sys.exit(2)
    return error


def add_parser(sub) -> None:
    global _PARSER
    p = sub.add_parser(
        "stream",
        help="live upscaling from a camera, file or network stream",
        description="Capture, upscale and output in separate threads (latest frame wins; drops are counted). "
        "Every --log-interval seconds one JSON line goes to stderr with capture/output/model-only FPS, "
        "latency per stage, drops, CPU, temperature and power. Ctrl-C or SIGTERM stop cleanly (a second one "
        "only hurries: the outputs are always finalised). With no output named: a window where a display "
        "is usable, otherwise headless (telemetry only).",
        epilog="examples:\n  edge-sr stream --camera 0 --scale 2                      # window, or headless telemetry\n"
        "  edge-sr stream --camera 0 --scale 2 --http 8080          # http://127.0.0.1:8080 (this machine)\n"
        "  edge-sr stream --camera 0 --scale 2 --http 8080 --listen 0.0.0.0 --auth   # from other machines\n"
        "  edge-sr stream --source demo --output out.mp4 --duration 10\n"
        "  edge-sr stream --source csi://0 --model dcscn.engine --http 8080 --listen 0.0.0.0 --auth\n"
        "  edge-sr stream --config /etc/edge-sr/stream.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.error = _one_line_error("edge-sr stream")
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
    src.add_argument("--watch", action="store_true",
                     help="image folder: follow it (new files are streamed as they arrive; deleted ones skipped)")
    src.add_argument("--open-timeout", type=float, default=5.0, help="network streams: seconds to wait (default 5)")
    src.add_argument("--camera-wait", type=float, default=None, metavar="S",
                     help="a camera or stream absent at start: retry with backoff for up to S seconds (inf: "
                     "forever). Default: forever under systemd, else 0 (fail at once)")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", "-m", default="compact",
                     help="preset (compact/normal/large: the shipped ONNX) or a .onnx/.engine/.safetensors file")
    mdl.add_argument("--scale", "-s", type=int, default=None, choices=(2, 3, 4),
                     help="upscaling factor (checked against the model; picks the shipped preset file)")
    mdl.add_argument("--target-fps", type=float, default=None, metavar="FPS",
                     help="pick the highest-quality shipped model/precision that sustains FPS at this frame size "
                     "on this device (from a cached edge-sr bench; measured now when none is cached); when none "
                     "does, the fastest, with a warning")
    mdl.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                     help="a preset's shipped file: auto (default: the faster on this device, from the edge-sr bench "
                     "cache, else the platform default; logged), fp32 or int8 (this platform's INT8 file)")
    mdl.add_argument("--threads", type=int, default=0, help="inference threads (0: backend default)")
    mdl.add_argument("--tile", type=int, default=None, help="LR tile side for large frames (default: whole frame)")
    out = p.add_argument_group("outputs")
    out.add_argument("--output", "-o", action="append", default=None, metavar="SPEC",
                     help="repeatable: out.mp4/.avi/.mkv, http://127.0.0.1:8080, display://0 or null")
    out.add_argument("--http", type=int, default=None, metavar="PORT",
                     help="MJPEG page + /metrics on this port (bound to --listen)")
    out.add_argument("--listen", default="127.0.0.1", metavar="ADDR",
                     help="address for --http (default 127.0.0.1: this machine only; 0.0.0.0: every IPv4 interface, "
                     ":: every IPv6 one; use with --auth)")
    out.add_argument("--auth", action="store_true",
                     help="--http needs an access token (in the URL as ?token=..., or HTTP basic auth with it as "
                     f"password): from ${TOKEN_ENV}, the config key auth-token (file mode 0600), or else made once "
                     "and kept in ~/.config/edge-sr/http-token (0600)")
    out.add_argument("--display", action="store_true", help="show a window (needs a display and OpenCV GUI)")
    out.add_argument("--no-output", action="store_true", help="no output (for measuring)")
    out.add_argument("--side-by-side", action="store_true", help="output bicubic | edge-sr side by side")
    out.add_argument("--video-codec", default=None, help="video files: h264 (default for .mp4/.mkv), hevc, vp9 "
                     "(default for .webm), av1, mjpeg (default for .avi), mpeg4, or an OpenCV FOURCC")
    out.add_argument("--output-fps", type=float, default=None, help="nominal frame rate of video files (default: "
                     "the source's; a live source's frames are timed by the clock)")
    out.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    out.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N output frames")
    tel = p.add_argument_group("telemetry")
    tel.add_argument("--log-interval", type=float, default=5.0, metavar="S",
                     help="seconds between JSON lines (0.1 to 86400; default 5)")
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
# TOML config and validation


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
    if any(k in data for k in CONFIG_SECRET_KEYS):
        mode = p.stat().st_mode & 0o777
        if mode & 0o077:
            raise EdgeSRError(f"config file {p} holds auth-token but others may read it (mode {mode:o}): "
                              f"chmod 600 {p}")
    return data


def _known_actions() -> dict:
    assert _PARSER is not None
    return {a.dest: a for a in _PARSER._actions if a.dest not in _NOT_IN_CONFIG}


def _kind(dest: str, action) -> tuple:
    if dest in RULES:
        return RULES[dest]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return ("bool",)
    if action.type is int:
        return ("int", -2**62, 2**62)
    if action.type is float:
        return ("float", -math.inf, math.inf)
    return ("str",)


def _type_problem(value, kind: tuple) -> str | None:
    """Why a config value has the wrong TOML type for its option (None when it fits)."""
    k = kind[0]
    if k == "bool":
        return None if isinstance(value, bool) else "must be true or false (no quotes)"
    if isinstance(value, bool):
        return "must be a number" if k in ("int", "float", "port") else "must be text in quotes"
    if k in ("int", "port"):
        return None if isinstance(value, int) else "must be a whole number"
    if k == "float":
        return None if isinstance(value, (int, float)) else "must be a number"
    if k == "camera":
        return None if isinstance(value, (int, str)) else "must be a camera index or a device path"
    if k == "outputs":
        if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            return None
        return 'must be text or a list of text, e.g. ["out.mp4", "http://127.0.0.1:8080"]'
    return None if isinstance(value, str) else "must be text in quotes"


def _range_problem(value, kind: tuple, choices=None) -> str | None:
    k = kind[0]
    if value is None:
        return None
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
    if k == "port":
        return None if 0 <= value <= 65535 else f"must be a TCP port 1..65535 (0: any free port), got {value}"
    if k in ("int", "float"):
        lo, hi = kind[1], kind[2]
        if k == "float" and math.isnan(value):
            return "must be a number, got nan"
        if not lo <= value <= hi:
            span = f"at least {lo:g}" if hi == math.inf or hi >= 2**62 else f"between {lo:g} and {hi:g}"
            return f"must be {span}, got {value:g}"
    if k == "fourcc" and len(str(value)) != 4:
        return f"a FOURCC has 4 characters, got {value!r}"
    if k == "host":
        return _host_problem(str(value))
    if k == "camera" and isinstance(value, int) and value < 0:
        return f"a camera index is 0 or more, got {value}"
    if k == "str" and not str(value).strip():
        return "must not be empty"
    return None


def _host_problem(host: str) -> str | None:
    import ipaddress
    import re

    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if host == "localhost" or re.match(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$", host):
        return None
    return f"must be an IP address (127.0.0.1, 0.0.0.0, ::1, ::) or a host name, got {host!r}"


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def apply_config(args: argparse.Namespace, config: dict, source: str = "the config file") -> None:
    """Config values fill the options not given on the command line (those still at their default).
    Every key is type- and range-checked; all mistakes are raised together, one line each."""
    from ..errors import EdgeSRError

    known = _known_actions()
    problems: list[str] = []
    from_config = getattr(args, "_from_config", {})
    for key, value in config.items():
        if key in CONFIG_SECRET_KEYS:
            if not isinstance(value, str) or len(value) < 16:
                problems.append(f"config key {key!r}: must be text of 16 or more characters")
            else:
                args.auth_token = value
            continue
        dest = key.replace("-", "_")
        if dest not in known:
            names = ", ".join(sorted(k.replace("_", "-") for k in known))
            problems.append(f"unknown key {key!r} in {source}; known: {names}")
            continue
        kind = _kind(dest, known[dest])
        why = _type_problem(value, kind)
        if why:
            problems.append(f"config key {key!r} = {value!r}: {why}")
            continue
        if getattr(args, dest) != _PARSER.get_default(dest):
            continue  # given on the command line
        if dest == "output":
            value = [value] if isinstance(value, str) else list(value)
        elif kind[0] == "float":
            value = float(value)
        setattr(args, dest, value)
        from_config[dest] = key
    args._from_config = from_config
    if problems:
        raise EdgeSRError("\nedge-sr stream: error: ".join(problems))


def check_args(args: argparse.Namespace) -> None:
    """Range checks of every option (command line and config); all mistakes at once, one line each."""
    from ..errors import EdgeSRError

    known = _known_actions()
    from_config = getattr(args, "_from_config", {})
    problems = []
    for dest, action in known.items():
        value = getattr(args, dest, None)
        kind = _kind(dest, action)
        vals = value if (dest == "output" and isinstance(value, list)) else [value]
        for v in vals:
            why = _range_problem(v, kind, action.choices)
            if why:
                where = f"config key {from_config[dest]!r}" if dest in from_config else _flag(dest)
                problems.append(f"{where}: {why}")
    if problems:
        raise EdgeSRError("\nedge-sr stream: error: ".join(problems))


# ---------------------------------------------------------------------------------------------
# access token


def token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edge-sr" / "http-token"


def resolve_token(args) -> tuple[str, str]:
    """(token, where it is kept) for --auth: $EDGE_SR_HTTP_TOKEN, the config key auth-token, or a
    token file made once with owner-only permissions."""
    import secrets

    from ..errors import EdgeSRError

    if os.environ.get(TOKEN_ENV):
        tok = os.environ[TOKEN_ENV].strip()
        if len(tok) < 16:
            raise EdgeSRError(f"${TOKEN_ENV} is too short: use 16 or more characters")
        return tok, f"${TOKEN_ENV}"
    if getattr(args, "auth_token", None):
        return args.auth_token, f"auth-token in {args.config}"
    f = token_file()
    try:
        if f.exists():
            mode = f.stat().st_mode & 0o777
            if mode & 0o077:
                raise EdgeSRError(f"token file {f} may be read by others (mode {mode:o}): chmod 600 {f}")
            tok = f.read_text().strip()
            if len(tok) < 16:
                raise EdgeSRError(f"token file {f} holds no usable token (16+ characters): delete it to make a new one")
            return tok, str(f)
        f.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tok = secrets.token_urlsafe(24)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(tok + "\n")
        log.info("made an access token for --auth: %s (mode 600)", f)
        return tok, str(f)
    except OSError as exc:
        raise EdgeSRError(f"--auth: cannot keep the token in {f}: {exc.strerror or exc}; set ${TOKEN_ENV} or "
                          "auth-token in the config file instead") from None


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


def display_usable() -> bool:
    """A window can open: a display is set and this OpenCV has GUI support."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        from ..sinks import opencv_has_gui

        return opencv_has_gui()
    except Exception:  # noqa: BLE001 - no OpenCV: no window
        return False


def default_outputs(args) -> tuple[list[str], str]:
    """No output named: (outputs, the line that says so and how to watch)."""
    if display_usable():
        return ["display://0"], ("no output named: showing a window (q or Esc stops); --http 8080 to watch in a "
                                 "browser, --output FILE to record")
    return ["null"], (f"no output named and no display: running headless, logging FPS and power every "
                      f"{args.log_interval:g} s; to watch, add --http 8080 (and --listen 0.0.0.0 --auth for other "
                      "machines)")


def camera_wait_s(args) -> float:
    if args.camera_wait is not None:
        return float(args.camera_wait)
    return math.inf if os.environ.get("INVOCATION_ID") else 0.0  # systemd sets INVOCATION_ID for a service


class _Stopper:
    """SIGINT/SIGTERM: the first stops the stream (or the start-up); later ones only hurry the
    shutdown: they never interrupt the finalisation of the outputs."""

    def __init__(self):
        self.event = threading.Event()
        self.reason = ""
        self.count = 0
        self.stream = None

    def __call__(self, signum, _frame):
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.reason = f"signal {name}"
            self.event.set()
            if self.stream is not None:
                self.stream.stop(self.reason)
            return
        if self.stream is not None:
            self.stream.hurry()
        if self.count == 2:  # raw write: a signal handler must not re-enter buffered stderr
            try:
                os.write(2, f"{name} again: finishing the outputs (SIGKILL abandons them)\n".encode())
            except OSError:
                pass


class _StoppedEarly(Exception):
    pass


def announce_http(server, token: str | None, token_where: str) -> None:
    """Where to watch: the board's real addresses when listening beyond loopback."""
    from ..mjpeg import interface_addresses, is_loopback, is_wildcard, url_for

    host = server.host
    if is_wildcard(host):
        v6 = ":" in host
        addrs = [a for a in interface_addresses() if (":" in a) == v6]
        urls = [url_for(a, server.port) for a in addrs] or [url_for("THIS-BOARD", server.port)]
    else:
        urls = [server.url]
    show = f"?token={token}" if token and sys.stderr.isatty() else ""
    log.info("watch on: %s", "  ".join(u + show for u in urls))
    if token:
        log.info("access token: %s (open the page with ?token=TOKEN once, or HTTP basic auth with the token as "
                 "password; Prometheus: authorization bearer)", token_where)
    elif not is_loopback(host):
        log.warning("listening on %s without --auth: anyone who can reach this board can watch; add --auth", host)


def run(args) -> int:
    stopper = _Stopper()  # first, so that no signal finds a half-made output without a handler
    previous = {sig: signal.signal(sig, stopper) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        code, stuck = _run(args, stopper)
    except _StoppedEarly:
        log.info("stopped by %s before streaming", stopper.reason.replace("signal ", ""))
        return 0
    finally:
        # as the process itself (edge-sr / python -m edge_sr) the outputs are final now: a late signal
        # must not turn a clean exit into death by signal. Called as a library: restore the handlers.
        as_process = Path(sys.argv[0]).name in ("edge-sr", "__main__.py")
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if as_process else handler)
    if stuck:  # a stage blocked in native code: leave without tearing its library down under it
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def _run(args, stopper: _Stopper) -> tuple[int, bool]:
    from ..errors import EdgeSRError

    def checkpoint():
        if stopper.event.is_set():
            raise _StoppedEarly

    if args.config:
        apply_config(args, load_config(args.config), source=f"config file {args.config}")
    check_args(args)
    if args.source is not None and args.camera is not None:
        raise EdgeSRError("give --source or --camera, not both")
    cam = None if args.camera is None else str(args.camera)
    spec = args.source if args.source is not None else (f"/dev/video{cam}" if cam is not None and cam.isdigit()
                                                       else cam)
    if spec is None:
        raise EdgeSRError("give a source: --camera N, --source demo, --source csi://0, --source FILE ... "
                          "(see edge-sr stream --help)")
    outputs, default_note = output_specs(args), ""
    if not outputs:
        outputs, default_note = default_outputs(args)
    token, token_where = (None, "")
    if args.auth:
        if args.http is None and not any(str(o).lower().startswith(("http://", "mjpeg://")) for o in outputs):
            raise EdgeSRError("--auth protects the HTTP output: give --http PORT too")
        token, token_where = resolve_token(args)

    from ..backends import open_upscaler
    from ..sinks import open_sink
    from ..sources import open_source
    from ..stream import Stream
    from ..telemetry.power import open_power_meter
    from ..telemetry.report import Telemetry

    source = open_source(spec, args.width, args.height, args.fps, loop=args.loop, fourcc=args.fourcc,
                         flip=args.flip, timeout_s=args.open_timeout, watch=args.watch)
    options = {"threads": args.threads} if args.threads else {}
    model = args.model
    upscaler = None
    sinks: list = []
    telemetry = None
    try:
        if args.target_fps:
            w = args.width or getattr(source, "width", None)
            h = args.height or getattr(source, "height", None)
            if not (w and h):
                raise EdgeSRError("--target-fps needs the frame size: give --width and --height")
            from ..selection import pick_model

            model, why = pick_model(args.target_fps, int(w), int(h), args.scale or 2, threads=args.threads,
                                    fallback=True)
            log.info("--target-fps %g: %s", args.target_fps, why)
        checkpoint()
        # the precision choice is said once the source is open: a bad source stays a one-line error
        upscaler = open_upscaler(model, scale=args.scale, precision=getattr(args, "precision", None), announce=False,
                                 **options)
        checkpoint()
        source.open(wait_s=camera_wait_s(args), stop=stopper.event)
        checkpoint()
        meter = open_power_meter(args.power_meter, root=args.sysfs_root)
        telemetry = Telemetry(args.log_interval, meter, args.metrics_file, root=args.sysfs_root)
        fps = args.output_fps or source.fps or 30.0
        for s in outputs:
            sinks.append(open_sink(s, fps=fps, listen=args.listen, video_codec=args.video_codec,
                                   metrics=telemetry.prometheus_text, stats=telemetry.stats_json,
                                   title=f"{source.name} x{upscaler.scale} ({upscaler.name})", token=token,
                                   source=source))
            checkpoint()
    except BaseException:
        for s in sinks:
            try:
                s.abort()
            except Exception:  # noqa: BLE001 - abort every output
                log.debug("abort failed", exc_info=True)
        if telemetry is not None:
            telemetry.close()
        source.close()
        if upscaler is not None:
            upscaler.close()
        raise

    stream = Stream(source, upscaler, sinks, telemetry, side_by_side=args.side_by_side, duration_s=args.duration,
                    max_frames=args.frames, tile=args.tile)
    stopper.stream = stream
    if stopper.event.is_set():  # a signal between the last check and now
        stream.stop(stopper.reason)
    if getattr(upscaler, "precision_choice", None):
        log.info("%s", upscaler.precision_choice)
    log.info("%s", json.dumps({"event": "start", **source.describe(), "model": upscaler.describe(),
                               "outputs": [s.name for s in sinks], **telemetry.meter.describe()}))
    if default_note:
        log.info("%s", default_note)
    for s in sinks:
        if hasattr(s, "hub"):
            announce_http(s, token, token_where)
    try:
        summary = stream.run()
    finally:
        if "edge-sr-upscale" not in stream.stuck:  # never free the model under a running inference
            upscaler.close()
    log.info("%s", json.dumps(summary))
    print(_human_summary(summary))
    return 0, bool(stream.stuck)  # a requested stop (SIGTERM/SIGINT) is a success for systemd too


def _human_summary(s: dict) -> str:
    def f(x, fmt="{:.1f}"):
        return "n/a" if x is None else fmt.format(x)

    eff = s.get("efficiency")
    line = (f"{s['frames']} frames in {f(s['duration_s'])} s ({s['stop_reason']}): output {f(s['output_fps_mean'])} FPS, "
            f"model-only {f(s['model_fps_mean'])} FPS" + (f" (pipeline efficiency {eff * 100:.0f}%)" if eff else "")
            + f", dropped {s['dropped_capture']} at capture + {s['dropped_output']} at output")
    if s.get("source_errors"):
        line += f", {s['source_errors']} undecodable frames skipped"
    if s.get("power_w_mean") is not None:
        est = " (estimate)" if s.get("power_estimate") else ""
        line += (f", power {s['power_w_mean']:.2f} W{est} from {s['power_meter']}, "
                 f"{f(s.get('energy_per_frame_j'), '{:.3f}')} J/frame")
    return line
