"""Activation ranges chosen by the error they cause at the model's output (range refinement).

ONNX Runtime's calibrators pick each activation's range from that tensor alone (a percentile of
|x|, its min/max, an entropy fit). What matters to a super-resolution model is the error at its
output, and which clipping is best differs by layer: a lower percentile helps Set5 and hurts Set14
(docs/quality/percentile_sweep.txt). This module starts from a calibrated Q/DQ file and, one
activation at a time (coordinate descent, graph order), scales its range by each of a few factors
and keeps the one that gives the smallest mean squared error of the fake-quantized graph's output
against the float graph's, on the calibration crops. That is the output-MSE range search of the
quantization literature; here it runs on the file itself: ``train.qat.FakeQuantGraph`` executes the
Q/DQ graph exactly as the ONNX spec defines it (the arithmetic TensorRT and exact CPU kernels
compute), so the error minimised is the shipped file's.

Only scales change: a uint8 activation keeps its zero point (its range [lo, hi] scales about 0),
an int8 one stays symmetric, weights and graph are untouched; int32 biases (CPU files) are
re-quantized with their convolution's new input scale. ``refine_file`` checks the new file with ONNX
Runtime against the fake-quantized graph (``train.qat.agreement``), like a QAT file, before writing it.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sr.errors import EdgeSRError

log = logging.getLogger(__name__)

META_KEY = "edge_sr.range_refine"
# factors tried on each range, two passes: the second, finer, around the first's choice
COARSE = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.12, 1.25, 1.4, 1.6, 2.0)
FINE = (0.92, 0.96, 1.0, 1.04, 1.08)


@dataclass
class RefineResult:
    mse_before: float
    mse_after: float
    factors: dict = field(default_factory=dict)  # Q node -> total factor applied to its scale
    evaluations: int = 0


def _consumers(g) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


class _Ranges:
    """The Q/DQ scale of each quantized activation of a FakeQuantGraph, settable as one value."""

    def __init__(self, fq):
        self.fq = fq
        g = fq.model.graph
        cons = _consumers(g)
        self.q_nodes = [n for n in g.node if n.op_type == "QuantizeLinear" and n.name in fq.act_q]
        self.base = {n.name: fq.act_q[n.name][0] for n in self.q_nodes}
        self.dq_scale_inits: dict[str, list[str]] = {}
        self.convs: dict[str, list] = {}
        for n in self.q_nodes:
            dqs = [c for c in cons.get(n.output[0], []) if c.op_type == "DequantizeLinear"]
            self.dq_scale_inits[n.name] = [n.input[1]] + [d.input[1] for d in dqs]
            self.convs[n.name] = [fq.convs[c.name] for d in dqs for c in cons.get(d.output[0], [])
                                  if c.op_type == "Conv" and c.input[0] == d.output[0]]

    def set(self, name: str, scale: float) -> None:
        s, zp, lo, hi = self.fq.act_q[name]
        self.fq.act_q[name] = (float(np.float32(scale)), zp, lo, hi)
        for spec in self.convs[name]:
            spec.in_scale = float(np.float32(scale))


def refine_ranges(fq, module, samples: np.ndarray, *, batch: int = 32, passes=(COARSE, FINE)) -> RefineResult:
    """Coordinate descent over ``fq``'s activation scales (in place) to minimise the output MSE of
    ``module`` (``fq.module()``) against its own float graph on ``samples`` ([N,1,h,w] float32)."""
    from edge_sr.train.qat import _torch

    torch = _torch()
    if len(samples) == 0:
        raise EdgeSRError("range refinement needs calibration samples")
    xs = [torch.from_numpy(np.ascontiguousarray(samples[i:i + batch])) for i in range(0, len(samples), batch)]
    r = _Ranges(fq)
    with torch.no_grad():
        module.quant = False
        refs = [module(x) for x in xs]
        module.quant = True

        def mse() -> float:
            tot = 0.0
            for x, ref in zip(xs, refs):
                tot += float(((module(x) - ref).double() ** 2).sum())
            return tot / sum(int(ref.numel()) for ref in refs)

        before = best = mse()
        evals = 1
        for factors in passes:
            for q in r.q_nodes:
                cur = fq.act_q[q.name][0]
                choice = 1.0
                for f in factors:
                    if f == 1.0:
                        continue
                    r.set(q.name, cur * f)
                    e = mse()
                    evals += 1
                    if e < best:
                        best, choice = e, f
                r.set(q.name, cur * choice)
            log.info("range refinement pass: output MSE %.4g -> %.4g", before, best)
    factors = {q.name: round(fq.act_q[q.name][0] / r.base[q.name], 4) for q in r.q_nodes}
    return RefineResult(before, best, factors, evals)


def write_refined(fq, module, out_path: str | Path, result: RefineResult) -> Path:
    """The Q/DQ file with ``fq``'s current activation scales (and re-quantized int32 biases) written into
    it, atomically; metadata says what was done."""
    import onnx
    from onnx import numpy_helper

    from edge_sr.imageio import atomic_path

    from .quantize import replace_metadata

    m = fq.to_qdq(module.trained())  # weights as before; int32 biases with the new input scales
    by_name = {t.name: t for t in m.graph.initializer}
    r = _Ranges(fq)
    for q in r.q_nodes:
        s = np.array(fq.act_q[q.name][0], dtype=np.float32)
        for init in r.dq_scale_inits[q.name]:
            old = numpy_helper.to_array(by_name[init])
            by_name[init].CopyFrom(numpy_helper.from_array(s.reshape(old.shape), init))
    meta = {p.key: p.value for p in m.metadata_props}
    meta[META_KEY] = json.dumps({"method": "output MSE, coordinate descent", "mse_before": result.mse_before,
                                 "mse_after": result.mse_after, "evaluations": result.evaluations}, sort_keys=True)
    replace_metadata(m, meta)
    onnx.checker.check_model(m)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        onnx.save(m, str(tmp))
    return out_path


def refine_file(fp32_path: str | Path, qdq_path: str | Path, out_path: str | Path, samples: np.ndarray,
                *, max_samples: int = 40, check_image: np.ndarray | None = None,
                passes=(COARSE, FINE)) -> tuple[RefineResult, dict | None]:
    """Refine the activation ranges of the Q/DQ file ``qdq_path`` (made from ``fp32_path``) on ``samples``
    (at most ``max_samples`` of them, evenly spread) and write the result to ``out_path``. With
    ``check_image`` (a [h,w] float32 luma), ONNX Runtime on the new file is compared with its fake-quantized
    graph (``train.qat.agreement``) before it takes ``out_path``; an EdgeSRError when they disagree."""
    import onnx

    from edge_sr.train.qat import FakeQuantGraph, _torch, agreement, output_step

    torch = _torch()
    fq = FakeQuantGraph(onnx.load(str(qdq_path)), onnx.load(str(fp32_path)))
    module = fq.module()
    before = agreement(qdq_path, module, check_image, output_step(fq)) if check_image is not None else None
    if len(samples) > max_samples:
        samples = samples[np.linspace(0, len(samples) - 1, max_samples).round().astype(int)]
    threads = torch.get_num_threads()
    # one thread: many small forward passes, where OpenMP threads gain little and, on a busy machine, spin
    # (measured: 1.2 s against 0.05 s per pass of 8 16x16 crops with two other jobs on 2 cores)
    torch.set_num_threads(1)
    try:
        res = refine_ranges(fq, module, samples, passes=passes)
    finally:
        torch.set_num_threads(threads)
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.refined-{os.getpid()}.onnx")  # checked before it takes the name
    try:
        write_refined(fq, module, tmp, res)  # the Q/DQ file's own metadata is carried by to_qdq
        agree = _check(tmp, fp32_path, fq, check_image, before) if check_image is not None else None
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return res, agree


def _check(path: Path, fp32_path, fq, check_image: np.ndarray, before: dict) -> dict:
    """ONNX Runtime's integer kernels on ``path`` against its exact graph: they must agree as well as they did
    on the file refined (``before``; random test weights put many values at rounding boundaries, and there
    both files disagree alike), and within train.qat's bounds otherwise."""
    import onnx

    from edge_sr.train.qat import AGREE_MEAN_STEPS, AGREE_OVER_1_STEP, FakeQuantGraph, agreement, output_step

    agree = agreement(path, FakeQuantGraph(onnx.load(str(path)), onnx.load(str(fp32_path))).module(), check_image,
                      output_step(fq))
    agree["before"] = before
    if agree.get("step") and before and before.get("step"):
        over = max(AGREE_OVER_1_STEP, 1.5 * before["over_1_step"])
        mean = max(AGREE_MEAN_STEPS, 1.5 * before["mean_steps"])
        if agree["over_1_step"] > over or agree["mean_steps"] > mean:
            raise EdgeSRError(f"range refinement: ONNX Runtime's kernels disagree with the exact graph "
                              f"({agree['over_1_step']:.2%} of outputs more than one step apart, "
                              f"{before['over_1_step']:.2%} before refinement): nothing written")
    return agree
