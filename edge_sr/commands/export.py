"""edge-sr export: a checkpoint (or preset) -> ONNX with dynamic H/W, checked and verified."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX",
        description="Export DCSCN to ONNX (opset 17, dynamic height/width). Input: LR luma float32 [1,1,H,W] "
        "in [0,1]. Output: HR luma [1,1,sH,sW] with the bicubic inside the graph, or with --residual the HR "
        "residual only (the caller adds cv2's bicubic: faster, and what edge-sr ships). The export is checked "
        "with onnx.checker and verified against PyTorch with ONNX Runtime on a real image.",
    )
    p.add_argument("--model", default="compact", help="preset (compact/normal/large) or a .safetensors checkpoint")
    p.add_argument("--scale", type=int, default=None, help="checked against the model's scale")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument("--residual", action="store_true",
                   help="end the graph at the PixelShuffle: output the HR residual, the caller adds the bicubic")
    p.add_argument("--fast", action="store_true",
                   help="rewrite the graph for CPU speed with the same math (PReLU as Mul/Max, merged 1x1 convs; "
                   "deploy/fast_graph.py): what edge-sr ships as the FP32 model; calibrate INT8 from a plain export")
    p.add_argument("--equalize", metavar="IMAGES", default=None,
                   help="calibration image folder: export activation-equalized weights for INT8 calibration (the same "
                   "function, each channel rescaled so that per-tensor INT8 loses less: calibration/equalize.py), "
                   "verified against the model as given")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17: TensorRT 8.2+ and ONNX Runtime)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--data", default=None, help="data folder holding val/set5 for the verification image")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_sr.deploy.export import export_onnx

    from ..errors import EdgeSRError

    samples = None
    if args.equalize:
        from edge_sr.calibration.data import load_calibration_set

        # the crops that edge-sr calibrate takes by default
        samples = load_calibration_set(args.equalize, crop=(64, 64), crops_per_image=2, min_images=1, max_images=40)
    res = export_onnx(args.model, args.output, residual=args.residual, opset=args.opset,
                      simplify=not args.no_simplify, data_root=args.data, fast=args.fast, equalize=samples)
    scale = int(res.metadata["scale"])
    if args.scale is not None and args.scale != scale:
        res.path.unlink(missing_ok=True)
        raise EdgeSRError(f"model is x{scale}, not x{args.scale}: nothing written")
    ops = ", ".join(f"{k} {v}" for k, v in sorted(res.ops.items()))
    print(f"wrote {res.path}: {res.metadata['preset']} x{scale}, output={res.output}, opset {res.opset}, "
          f"{res.nodes} nodes ({ops}){', simplified' if res.simplified else ''}")
    h, w = res.verify_shape
    if "equalized" in res.metadata:
        print(f"activation-equalized for INT8 ({res.metadata['equalized']})")
    print(f"verified ONNX Runtime vs PyTorch on {res.verify_image} ({w}x{h} LR luma): max abs diff {res.max_abs_diff:.3g}")
    return 0
