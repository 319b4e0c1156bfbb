"""edge-sr eval: score models with the SR protocol (PROTOCOL.md) beside bicubic."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="measure PSNR/SSIM with the SR protocol",
        description="Evaluate with the SR-paper protocol: modcrop, MATLAB bicubic LR, BT.601 Y, shave scale px. "
        "DIR is one folder of images or a folder of sets (set5/, set14/). The model runs through the "
        "product's own colour pipeline; bicubic is MATLAB imresize.",
    )
    p.add_argument("--data", default=None,
                   help="image folder or folder of sets (default: $EDGE_SR_DATA/val, else shared/data/val beside "
                   "the repository)")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--model", action="append", default=None,
                   help="preset (compact/normal/large), .safetensors, .onnx or .engine; repeat to compare (default: compact)")
    p.add_argument("--no-ssim", action="store_true", help="PSNR only (faster)")
    p.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    p.add_argument("--threads", type=int, default=0)
    from ..backends.onnxruntime import INT8_ARITHMETIC

    p.add_argument("--int8-arithmetic", choices=INT8_ARITHMETIC, default="kernels",
                   help="INT8 (Q/DQ) ONNX files: 'kernels' runs this CPU's integer kernels (default: what this "
                   "machine gives); 'reference' computes each quantized layer as the ONNX spec writes it, the "
                   "arithmetic of TensorRT and of int32-accumulating CPUs (VNNI, ARM dot product): use it to "
                   "judge a .int8.onnx meant for TensorRT on an x86 CPU without VNNI")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backends import open_upscaler, resolve_model
    from ..checkpoint import file_sha256
    from ..errors import EdgeSRError
    from ..quality import bicubic_method, discover_sets, evaluate

    if not args.data:
        from ..datasets import data_dir, not_found_message

        found = data_dir("val")
        if found is None:
            raise EdgeSRError(not_found_message("evaluation sets", "--data"))
        args.data = str(found)
    if args.scale not in (2, 3, 4):
        raise EdgeSRError(f"unsupported scale {args.scale}: use 2, 3 or 4")
    sets = discover_sets(args.data)
    models = args.model or ["compact"]
    methods = {"bicubic": lambda lr: bicubic_method(lr, args.scale)}
    opened, files = [], {}
    try:
        for m in models:
            path = resolve_model(m, args.scale)
            up = open_upscaler(path, scale=args.scale, threads=args.threads, int8_arithmetic=args.int8_arithmetic)
            opened.append(up)
            label = m if m in methods else (m if len(m) < 40 else Path(m).name)
            # which exact file was measured: a report names its models by content, not only by path
            files[label] = {"path": str(m), "file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}

            def method(lr_rgb, up=up):
                # the product's colour pipeline works in BGR
                bgr = lr_rgb if lr_rgb.ndim == 2 else lr_rgb[..., ::-1]
                out = up.upscale(bgr)
                return out if out.ndim == 2 else out[..., ::-1]

            methods[label] = method
        results = evaluate(methods, sets, args.scale, with_ssim=not args.no_ssim, progress=sys.stderr.isatty())
    finally:
        for up in opened:
            up.close()
    set_names = [s for s, _ in sets]
    width = max(len(m) for m in methods) + 2
    head = "".join(f"{s:>18}" for s in set_names)
    how = "" if args.int8_arithmetic == "kernels" else "; INT8 files in the ONNX reference arithmetic"
    print(f"x{args.scale} PSNR (dB) / SSIM on Y, protocol of PROTOCOL.md{how}")
    print(f"{'method':<{width}}{head}")
    for m, rs in results.items():
        cells = "".join(f"{r.psnr:>10.3f} / {r.ssim:.4f}" if r.ssim is not None else f"{r.psnr:>18.3f}" for r in rs)
        print(f"{m:<{width}}{cells}")
    if args.json_out:
        from .. import __version__
        from ..bench import cpu_record, versions
        from ..imageio import write_bytes_atomic

        doc = {
            "scale": args.scale, "data": str(args.data), "edge_sr": __version__, "models": files,
            "int8_arithmetic": args.int8_arithmetic,
            # INT8 results depend slightly on the CPU's INT8 kernels (int8_isa): reproducible between CPUs of a class
            "device": {**cpu_record(), "versions": versions()},
            "results": {m: {r.name: {"psnr": r.psnr, "ssim": r.ssim, "images": r.per_image} for r in rs}
                        for m, rs in results.items()},
        }
        write_bytes_atomic(args.json_out, json.dumps(doc, indent=2).encode())
    return 0
