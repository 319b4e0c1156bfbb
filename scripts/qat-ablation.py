#!/usr/bin/env python3
"""QAT ablation (docs/deploy.md, "QAT of the best file"): fine-tune an existing INT8 Q/DQ file with train/qat.py's
fake-quant graph, choosing the loss and whether activation ranges learn, and write the result (then score it with
`edge-sr eval --int8-arithmetic reference`). What `edge-sr train --qat TARGET --qat-from FILE [--learn-ranges]
[--qat-loss l1|distill]` does, without its calibration, checks and report: for side-by-side runs.

    .venv/bin/python scripts/qat-ablation.py QDQ FP32_ONNX OUT STEPS LR l1|distill 0|1 [SCALE]

QDQ: the INT8 file to start from; FP32_ONNX: the float graph it was calibrated from (the distillation teacher; the
shipped .onnx for a CPU file, `edge-sr export --residual` for a TensorRT one); 0|1: learn the ranges.
Training data: $EDGE_SR_DATA/train/{yang91,bsd200}; batch 16, 48x48 LR patches, seed 0, one thread.
"""
import json
import math
import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 8 or not os.environ.get("EDGE_SR_DATA"):
        print(__doc__.strip().splitlines()[-5].strip() + "   (EDGE_SR_DATA must be set)", file=sys.stderr)
        return 2
    import numpy as np
    import onnx
    import torch

    from edge_sr.deploy.export import verification_input
    from edge_sr.train.data import PatchSampler, load_pairs
    from edge_sr.train.qat import (RANGE_LR_SCALE, RANGE_LR_ZERO_POINT, FakeQuantGraph, _bicubic_residual_target,
                                   agreement, check_step)

    start, fp32, out, steps, lr, loss_kind, learn = sys.argv[1:8]
    steps, lr, learn = int(steps), float(lr), learn == "1"
    scale = int(sys.argv[8]) if len(sys.argv) > 8 else 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fq = FakeQuantGraph(onnx.load(start), None)
    m = fq.module()
    teacher = FakeQuantGraph(onnx.load(fp32), None).module()
    teacher.quant = False
    teacher.requires_grad_(False)
    groups = [{"params": list(m.p.parameters()), "base": lr}]
    if learn:
        ss, zz = m.learn_ranges()
        groups += [{"params": ss, "base": lr * RANGE_LR_SCALE}, {"params": zz, "base": lr * RANGE_LR_ZERO_POINT}]
    opt = torch.optim.Adam([g | {"lr": g["base"]} for g in groups])
    data = os.environ["EDGE_SR_DATA"]
    pairs = load_pairs([f"{data}/train/yang91", f"{data}/train/bsd200"], scale, min_lr_size=48, progress=False)
    sampler = PatchSampler(pairs, 48, scale, seed=0)
    t0, losses = time.time(), []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = g["base"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(1, steps))))
        lr_np, hr_np = sampler.batch(16)
        x = torch.from_numpy(lr_np)
        y = m(x)
        if loss_kind == "distill":
            with torch.no_grad():
                t = teacher(x)
            loss = torch.nn.functional.mse_loss(y, t)
        else:
            loss = torch.nn.functional.l1_loss(y, _bicubic_residual_target(torch, x, torch.from_numpy(hr_np), scale))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            print(step, f"{np.mean(losses[-50:]):.4g}", round(time.time() - t0), flush=True)
    onnx.save(fq.to_qdq(m.trained(), m.learned_ranges() if learn else None), out)
    y, _ = verification_input()
    print(json.dumps(agreement(out, m, y, check_step(fq))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
