#!/usr/bin/env python3
"""Which calibration percentile? PTQ of a checkpoint for one INT8 target at several percentiles, each Q/DQ
file scored exactly (its fake-quantized PyTorch graph, train/qat.py: the ONNX spec's arithmetic, no CPU
kernel effects) against its own FP32 graph on Set5, Set14 and a held-out set: scripts/heldout.py (96 of the photos
since session 8, every 6th; 12 before: docs/quality/percentile_sweep.txt was made with those 12), centre 240x240 HR
crops, which neither calibration (yang91 or bsd200 crops) nor the shipped models' training saw.
The held-out column is the one to choose by; Set5/Set14 are the protocol's test sets and only reported.

    .venv/bin/python scripts/sweep-percentile.py CKPT tensorrt|cpu [--percentiles 99.98,99.99,99.995,99.999]
        [--json OUT.json] [--equalize] [--refine]

Prints one line per percentile: the PSNR change (dB, luma path as in training validation) per set.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from edge_sr.datasets import data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("target", choices=("tensorrt", "cpu"))
    ap.add_argument("--percentiles", default="99.98,99.99,99.995,99.999")
    ap.add_argument("--data", default=data_root(), help="data folder (default: $EDGE_SR_DATA, else shared/data)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--equalize", action="store_true", help="calibrate the activation-equalized export (export --equalize)")
    ap.add_argument("--refine", action="store_true", help="also score each file with its ranges refined (calibrate --refine)")
    a = ap.parse_args()
    if a.data is None:
        ap.error("no data folder: set EDGE_SR_DATA or give --data")

    import onnx
    import torch

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.checkpoint import load_checkpoint
    from edge_sr.imageio import list_images
    from edge_sr.train.data import make_pair
    from edge_sr.train.qat import FakeQuantGraph, _val_psnr, prepare_target

    torch.set_num_threads(1)
    cfg, _, _ = load_checkpoint(a.ckpt)
    scale = cfg.scale
    d = Path(a.data)
    samples = load_calibration_set(str(d / "train" / "yang91"), crop=(64, 64), crops_per_image=2, min_images=8,
                                   max_images=40)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from heldout import make_heldout

    held = make_heldout(d, tempfile.mkdtemp(prefix="edge-sr-heldout-"))
    sets = {"set5": d / "val" / "set5", "set14": d / "val" / "set14", "heldout": held}
    pairs = {k: [make_pair(f, scale) for f in list_images(v, k)] for k, v in sets.items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-sr-sweep-") as t:
        for pc in [float(v) for v in a.percentiles.split(",")]:
            fp32, q = prepare_target(Path(a.ckpt), a.target, Path(t), samples, percentile=pc, equalize=a.equalize)  # as QAT and shipping
            files = [("", q)]
            if a.refine:
                from edge_sr.calibration.refine import refine_file

                refine_file(fp32, q, Path(t) / "refined.onnx", samples)  # as calibrate --refine
                files.append((" refined", Path(t) / "refined.onnx"))
            for label, f in files:
                m = FakeQuantGraph(onnx.load(str(f)), onnx.load(str(fp32))).module()
                got = {s: _val_psnr(torch, m, p, scale) for s, p in pairs.items()}
                m.quant = False
                ref = {s: _val_psnr(torch, m, p, scale) for s, p in pairs.items()}
                row = {"percentile": pc, "equalized": a.equalize, "refined": bool(label),
                       **{s: round(got[s] - ref[s], 4) for s in got}}
                rows.append(row)
                print(f"{Path(a.ckpt).stem} {a.target}{' equalized' if a.equalize else ''}{label} {pc:<8}",
                      " ".join(f"{s} {row[s]:+.3f}" for s in got), flush=True)
    best = max(rows, key=lambda r: r["heldout"])
    print(f"best on the held-out photos: {best['percentile']}{' refined' if best['refined'] else ''}")
    if a.json:
        Path(a.json).write_text(json.dumps({"ckpt": a.ckpt, "target": a.target, "scale": scale, "rows": rows,
                                            "best_heldout": best["percentile"]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
