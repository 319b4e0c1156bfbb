"""edge-sr calibrate: float32 ONNX -> INT8 Q/DQ ONNX, with a quality and speed report."""

from __future__ import annotations

import os
from pathlib import Path


def _default_val() -> str | None:
    env = os.environ.get("EDGE_SR_DATA")
    cands = [Path(env) / "val" / "set5"] if env else []
    cands.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "val" / "set5")
    return next((str(c) for c in cands if c.is_dir()), None)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="quantize an ONNX model to INT8 (Q/DQ) and report its quality and speed",
        description="Static INT8 quantization with ONNX Runtime to Q/DQ, symmetric signed INT8 (zero point 0: the "
        "same file builds a TensorRT INT8 engine). Calibration images go through the runtime's pre-processing "
        "(BT.601 luma / 255) as fixed-size crops. Prints protocol PSNR on --val and latency, INT8 beside FP32. "
        "With --bench-only INT8.onnx, only the latency comparison runs (no quantization).",
    )
    p.add_argument("--onnx", required=True, help="float32 ONNX from edge-sr export")
    p.add_argument("--images", help="calibration image folder (e.g. the training images)")
    p.add_argument("-o", "--output", help="output INT8 ONNX (e.g. model.int8.onnx)")
    from edge_sr.calibration.quantize import DEFAULT_KEEP_FLOAT, DEFAULT_PERCENTILE

    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="percentile",
                   help="range calibration (default: percentile)")
    p.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                   help=f"percentile of |activation| for --method percentile (default {DEFAULT_PERCENTILE:g}: measured "
                   "best on held-out photos, scripts/sweep-percentile.py)")
    p.add_argument("--target", choices=("tensorrt", "cpu"), default="tensorrt",
                   help="tensorrt (default): the .int8.onnx that TensorRT runs: symmetric signed INT8 on the inputs of "
                   "each conv, conv outputs float (TensorRT's placement: calibration.quantize.TENSORRT_INT8); cpu: the "
                   ".cpu-int8.onnx recipe for ONNX Runtime on CPUs (uint8 activations, "
                   "Conv, Concat and Relu quantized, layers padded to 8 channels: calibration.quantize.CPU_INT8; each Concat's "
                   "inputs then tied to its scale), "
                   "from the shipped fast FP32 graph")
    p.add_argument("--activations", choices=("int8", "uint8"), default=None,
                   help="int8: symmetric, TensorRT-compatible (default); uint8: asymmetric, faster with x86 ONNX "
                   "Runtime, NOT usable by TensorRT")
    p.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT),
                   help="comma-separated node groups (first_conv, last_conv, prelu, concat, resize) or node names "
                   "left in float32; 'none' quantizes all (default %(default)s)")
    p.add_argument("--refine", action="store_true",
                   help="then scale each activation range to minimise the error at the model's output on the "
                   "calibration crops (calibration.refine: output-MSE coordinate descent on the exact Q/DQ arithmetic; "
                   "a few minutes for compact on 2 cores, about 6x that for normal)")
    p.add_argument("--crop", default="64x64", help="calibration crop WIDTHxHEIGHT in LR pixels (default 64x64)")
    p.add_argument("--crops-per-image", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="calibration batch: the least number of usable images (default 8)")
    p.add_argument("--max-images", type=int, default=40, help="use at most this many images (default 40; percentile and entropy keep every activation: about 40 MB per crop for normal)")
    p.add_argument("--val", default=_default_val(), help="folder of images for the PSNR report (default: val/set5); 'none' skips it")
    p.add_argument("--bench", default="320x240",
                   help="comma-separated LR frame sizes WIDTHxHEIGHT for the latency report; 'none' skips it")
    p.add_argument("--runs", type=int, default=15, help="timed runs per model and size (median reported)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bench-only", metavar="INT8_ONNX", help="compare the latency of this INT8 model with --onnx; no quantization")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.report import compare_latency, parse_shape, protocol_psnr

    from ..errors import EdgeSRError

    fp32 = Path(args.onnx)
    if not fp32.is_file():
        raise EdgeSRError(f"ONNX model not found: {fp32}")
    shapes = [] if args.bench.lower() == "none" else [parse_shape(s) for s in args.bench.split(",") if s.strip()]
    if args.bench_only:
        int8 = Path(args.bench_only)
        if not int8.is_file():
            raise EdgeSRError(f"INT8 model not found: {int8}")
        _print_latency(compare_latency({"fp32": fp32, "int8": int8}, shapes or [(240, 320)], runs=args.runs,
                                       threads=args.threads), fp32, int8)
        return 0
    if not args.images or not args.output:
        raise EdgeSRError("give --images DIR and -o OUT.int8.onnx (or --bench-only INT8.onnx)")
    if args.batch < 1 or args.crops_per_image < 1:
        raise EdgeSRError("--batch and --crops-per-image must be at least 1")
    from edge_sr.calibration.quantize import CPU_INT8, TENSORRT_INT8, keep_float_from, quantize_int8

    ch, cw = parse_shape(args.crop)
    keep = keep_float_from(args.keep_float)
    op_types, float_out, pad = None, None, 0
    if args.target == "cpu":
        pad = CPU_INT8["pad_channels"]
        if args.activations == "int8":
            raise EdgeSRError("--target cpu makes uint8 activations; for symmetric int8 use --target tensorrt")
        args.activations, op_types = CPU_INT8["activations"], list(CPU_INT8["op_types"])
    args.activations = args.activations or "int8"
    if args.target == "tensorrt" and args.activations == TENSORRT_INT8["activations"]:
        op_types, float_out = list(TENSORRT_INT8["op_types"]), list(TENSORRT_INT8["no_output_quant"])
    samples = load_calibration_set(args.images, crop=(ch, cw), crops_per_image=args.crops_per_image,
                                   min_images=args.batch, max_images=args.max_images)
    res = quantize_int8(fp32, args.output, samples, method=args.method, activations=args.activations,
                        keep_float=keep, percentile=args.percentile, op_types=op_types,
                        no_output_quant=float_out, pad_channels=pad)
    trt = "TensorRT-compatible" if args.activations == "int8" else "CPU only, NOT TensorRT-compatible"
    if op_types:
        trt += f"; quantized op types: {', '.join(op_types)}" + (" (inputs only)" if float_out else "")
    print(f"wrote {res.path}: Q/DQ {args.activations} activations / int8 per-channel weights ({trt}), "
          f"{args.method} calibration on {res.samples} crops {cw}x{ch}, {res.quantized_nodes} QuantizeLinear, "
          f"kept float: {', '.join(res.excluded) or 'none'}")
    if args.refine:
        from edge_sr.calibration.refine import refine_file

        try:
            rr, agree = refine_file(fp32, res.path, res.path, samples, check_image=samples[0, 0])
        except BaseException:
            res.path.unlink(missing_ok=True)  # asked for a refined file: no unrefined one under its name
            raise
        print(f"refined {len(rr.factors)} activation ranges: output MSE on the calibration crops "
              f"{rr.mse_before:.3g} -> {rr.mse_after:.3g} ({rr.evaluations} evaluations); ONNX Runtime's kernels "
              f"against the exact graph: {agree.get('over_1_step', 0):.2%} of outputs more than one step apart "
              f"({(agree.get('before') or {}).get('over_1_step', 0):.2%} before)")
    if args.target == "cpu":
        from edge_sr.calibration.quantize import tie_concat_file

        n = tie_concat_file(res.path, res.path)
        print(f"tied {n} Concat inputs to their Concat's scale and zero point (ONNX Runtime's QLinearConcat then "
              f"copies them: calibration.quantize.tie_concat_inputs)")
    if args.val and args.val.lower() != "none":
        ps = protocol_psnr({"fp32": fp32, "int8": res.path}, args.val, threads=args.threads)
        d = ps["int8"] - ps["fp32"]
        print(f"PSNR on {Path(args.val).name} (protocol): fp32 {ps['fp32']:.3f} dB, int8 {ps['int8']:.3f} dB, "
              f"delta {d:+.3f} dB ({'within' if d >= -0.15 else 'OUTSIDE'} the 0.15 dB bar)")
    if shapes:
        _print_latency(compare_latency({"fp32": fp32, "int8": res.path}, shapes, runs=args.runs,
                                       threads=args.threads), fp32, res.path)
    return 0


def _print_latency(lat: dict, fp32: Path, int8: Path) -> None:
    shapes = sorted({s for _, s in lat}, key=lambda s: s[0] * s[1])
    print(f"latency on this CPU (model only, median of repeated runs): {fp32.name} vs {int8.name}")
    for s in shapes:
        f, i = lat[("fp32", s)]["median_ms"], lat[("int8", s)]["median_ms"]
        verdict = "INT8 faster" if i < f else "INT8 SLOWER here: keep FP32 the default on this CPU"
        print(f"  {s[1]}x{s[0]} LR: fp32 {f:.1f} ms, int8 {i:.1f} ms, fp32/int8 = {f / i:.2f}x ({verdict})")
