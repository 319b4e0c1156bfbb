"""edge-sr build-engine: ONNX -> TensorRT engine on this device (+ a sidecar JSON)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build a TensorRT engine from an ONNX model (on the Jetson/GPU that will run it)",
        description="Build a TensorRT engine (8.x, 10.x, 11.x). Sizes are LR frame sizes WIDTHxHEIGHT, as in every other "
        "edge-sr command (the older --shape HEIGHTxWIDTH options still work). FP16 by the builder flag "
        "(up to 10) or a float16 ONNX (11); INT8 from a Q/DQ model (edge-sr calibrate) or, up to TensorRT 10, "
        "implicitly with an entropy calibrator (--calib-images, or --calib-cache alone). A precision the GPU lacks "
        "is refused. Writes ENGINE, ENGINE.json (TensorRT version, GPU, shapes, source hash) and a timing cache named by "
        "TensorRT version and GPU (a cache TensorRT rejects is replaced). Device buffers: pycuda or cuda-python, "
        "whichever works here.",
    )
    p.add_argument("--onnx", required=True, help="ONNX model from edge-sr export (or calibrate, for INT8)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--size", default=None, metavar="WxH",
                   help="optimal LR frame size WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--min-size", default=None, metavar="WxH", help="smallest LR frame size (default: --size)")
    p.add_argument("--max-size", default=None, metavar="WxH",
                   help="largest LR frame size (default: --size; a static engine, and the stream tiles larger frames "
                   "to it: build at the camera's size for the fewest calls per frame)")
    # the first releases wrote TensorRT's HEIGHTxWIDTH: kept so that old recipes run, not shown
    p.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    p.add_argument("--min-shape", default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-shape", default=None, help=argparse.SUPPRESS)
    p.add_argument("--calib-images", default=None, help="calibration images (implicit INT8, TensorRT <= 10)")
    p.add_argument("--calib-cache", default=None, help="calibration cache to write, or to build from alone")
    p.add_argument("--workspace", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--timing-cache", default=None, help="timing cache file (default: edge-sr-timing-trtVERSION-GPU-smCC.cache beside ENGINE)")
    p.add_argument("-o", "--output", required=True, help="engine file (.engine)")
    p.set_defaults(func=run)


def _shape(args, name: str, default: str | None = None) -> tuple[int, int] | None:
    """LR (height, width) from --NAME-size WxH or the legacy --NAME-shape HxW (not both)."""
    from edge_sr.deploy.tensorrt_build import parse_hw
    from edge_sr.errors import EdgeSRError
    from edge_sr.sizes import parse_size

    size, shape = getattr(args, f"{name}size"), getattr(args, f"{name}shape")
    flag = "--" + name.replace("_", "-")
    if size and shape:
        raise EdgeSRError(f"give {flag}size WxH or {flag}shape HxW, not both")
    if shape:
        return parse_hw(shape, f"{flag}shape")
    text = size or default
    if not text:
        return None
    w, h = parse_size(text, f"{flag}size", order="wh", minimum=1)
    return h, w


def run(args) -> int:
    from edge_sr.deploy.tensorrt_build import build_engine

    res = build_engine(
        args.onnx, args.output, precision=args.precision, shape=_shape(args, "", "640x480"),
        min_shape=_shape(args, "min_"), max_shape=_shape(args, "max_"),
        calib_images=args.calib_images, calib_cache=args.calib_cache, workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
    )
    m = res.meta
    print(f"wrote {res.engine} ({m['precision']}, TensorRT {m['tensorrt']}, {m['gpu']} sm {m['compute_capability']}, "
          f"LR profile {m['min_shape']} / {m['opt_shape']} / {m['max_shape']}) and {res.sidecar.name}")
    for n in res.notes:
        print(f"  {n}")
    return 0
