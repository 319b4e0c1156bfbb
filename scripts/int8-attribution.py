#!/usr/bin/env python3
"""Where does a PTQ file's INT8 error come from? Calibrates CKPT for a target (as shipping does), runs its Q/DQ graph
exactly (train/qat.py FakeQuantGraph) on 40 calibration crops and prints the output MSE with one activation, or one
conv's weights, left float, relative to everything quantized; then weights-only and activations-only.

    .venv/bin/python scripts/int8-attribution.py CKPT tensorrt|cpu [PERCENTILE] [--equalize]
"""
import sys
import tempfile
from pathlib import Path


def main() -> int:
    import onnx
    import torch

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.datasets import data_root
    from edge_sr.train.qat import FakeQuantGraph, prepare_target

    args = [a for a in sys.argv[1:] if a != "--equalize"]
    if len(args) < 2 or data_root() is None:
        print(__doc__.strip().splitlines()[-1].strip() + "   (EDGE_SR_DATA must be set)", file=sys.stderr)
        return 2
    ckpt, target = args[0], args[1]
    pc = float(args[2]) if len(args) > 2 else None
    torch.set_num_threads(1)
    samples = load_calibration_set(str(Path(data_root()) / "train" / "yang91"), crop=(64, 64), crops_per_image=2,
                                   min_images=8, max_images=40)
    x = torch.from_numpy(samples[::2])
    fp32, q = prepare_target(Path(ckpt), target, Path(tempfile.mkdtemp()), samples, percentile=pc,
                             equalize="--equalize" in sys.argv)
    fq = FakeQuantGraph(onnx.load(str(q)), onnx.load(str(fp32)))
    m = fq.module()
    with torch.no_grad():
        m.quant = False
        ref = m(x)
        m.quant = True

        def mse():
            return float(((m(x) - ref).double() ** 2).mean())

        full = mse()
        print(f"all quantized: output MSE {full:.4g}")
        for name in fq.act_q:
            m.float_nodes = {name}
            print(f"act  {name:70s} {mse() / full:.3f}", flush=True)
        m.float_nodes = set()
        for cname, spec in fq.convs.items():
            if spec.w_quant:
                spec.w_quant = False
                print(f"wgt  {cname:70s} {mse() / full:.3f}", flush=True)
                spec.w_quant = True
        m.float_nodes = set(fq.act_q)
        print(f"weights only quantized: {mse() / full:.3f}")
        m.float_nodes = set()
        for s in fq.convs.values():
            s.w_quant = False
        print(f"activations only quantized: {mse() / full:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
