"""edge-sr build-engine: ONNX -> TensorRT engine on this device (+ a sidecar JSON)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build a TensorRT engine from an ONNX model (on the Jetson/GPU that will run it)",
        description="Build a TensorRT engine (8.x, 10.x, 11.x). Shapes are LR HEIGHTxWIDTH. FP16 by the builder flag "
        "(up to 10) or a float16 ONNX (11); INT8 from a Q/DQ model (edge-sr calibrate) or, up to TensorRT 10, "
        "implicitly with an entropy calibrator (--calib-images, or --calib-cache alone). A precision the GPU lacks "
        "is refused. Writes ENGINE, ENGINE.json (TensorRT version, GPU, shapes, source hash) and a timing cache named by "
        "TensorRT version and GPU (a cache TensorRT rejects is replaced). Device buffers: pycuda or cuda-python, "
        "whichever works here.",
    )
    p.add_argument("--onnx", required=True, help="ONNX model from edge-sr export (or calibrate, for INT8)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--shape", default="480x640", help="optimal LR shape HEIGHTxWIDTH (default 480x640)")
    p.add_argument("--min-shape", default=None, help="smallest LR shape HEIGHTxWIDTH (default: --shape)")
    p.add_argument("--max-shape", default=None, help="largest LR shape HEIGHTxWIDTH (default: --shape)")
    p.add_argument("--calib-images", default=None, help="calibration images (implicit INT8, TensorRT <= 10)")
    p.add_argument("--calib-cache", default=None, help="calibration cache to write, or to build from alone")
    p.add_argument("--workspace", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--timing-cache", default=None, help="timing cache file (default: edge-sr-timing-trtVERSION-GPU-smCC.cache beside ENGINE)")
    p.add_argument("-o", "--output", required=True, help="engine file (.engine)")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_sr.deploy.tensorrt_build import build_engine, parse_hw

    res = build_engine(
        args.onnx, args.output, precision=args.precision, shape=parse_hw(args.shape),
        min_shape=parse_hw(args.min_shape, "--min-shape") if args.min_shape else None,
        max_shape=parse_hw(args.max_shape, "--max-shape") if args.max_shape else None,
        calib_images=args.calib_images, calib_cache=args.calib_cache, workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
    )
    m = res.meta
    print(f"wrote {res.engine} ({m['precision']}, TensorRT {m['tensorrt']}, {m['gpu']} sm {m['compute_capability']}, "
          f"LR profile {m['min_shape']} / {m['opt_shape']} / {m['max_shape']}) and {res.sidecar.name}")
    for n in res.notes:
        print(f"  {n}")
    return 0
