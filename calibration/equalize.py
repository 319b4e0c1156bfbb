"""Activation equalization: the same function, channels rescaled so that per-tensor INT8 loses less.

INT8 activations have one scale per tensor, and DCSCN's tensors mix channels of different ranges:
each feature layer's channels differ by up to 9x (compact x2, 99.99th percentile of |x| on the
calibration crops), and the skip connection concatenates all seven layers, whose ranges differ again.
A channel much narrower than its tensor's range is quantized with few levels. PReLU is positively
homogeneous (PReLU(s x) = s PReLU(x) for s > 0, per channel), so a layer's output channel c can be
multiplied by s_c (its conv weights and bias) and every input weight that reads it divided by s_c:
the float function is unchanged (to float rounding) and each channel can be widened to the common
range. This is the activation side of cross-layer equalization (Nagel et al. 2019, "Data-Free
Quantization"); the cost lands on the consumers' weights, which are quantized per output channel and
carried about 3% of the INT8 noise before (measured with the fake-quantized graph, compact x2).

s_c = (R / r_c) ** alpha, r_c the channel's range on the calibration crops (conv output and PReLU
output, the larger), R the largest range among the channels that share a tensor downstream: all feature
layers (they meet in the concatenation), a1 and b2 (the second concatenation), b1 alone.
Measured (compact x2, TensorRT file, exact arithmetic, PTQ at the 99.995th percentile; Set5 / Set14 /
held-out photos): plain -0.057 / -0.060 / -0.039 dB, alpha 0.5 -0.059 / -0.051 / -0.035, alpha 1
-0.058 / -0.040 / -0.032 (`scripts/sweep-percentile.py CKPT tensorrt --equalize`).
"""
from __future__ import annotations

import numpy as np

from edge_sr.errors import EdgeSRError

DEFAULT_ALPHA = 1.0
RANGE_PERCENTILE = 99.99
MAX_FACTOR = 1000.0  # a channel that never fires is not blown up without bound


def _producers(cfg) -> list[str]:
    return [f"features.{i}" for i in range(len(cfg.feature_filters))] + ["a1", "b1", "b2"]


def channel_ranges(model, samples: np.ndarray, percentile: float = RANGE_PERCENTILE, batch: int = 16) -> dict:
    """Per output channel of each conv+PReLU block: the ``percentile`` of |conv output| and of |PReLU
    output| on ``samples`` ([N,1,h,w] float32 LR luma), the larger of the two."""
    import torch

    names = _producers(model.config)
    acts: dict[str, list] = {n: [] for n in names}
    hooks = []
    for n in names:
        seq = model.get_submodule(n)
        for sub in (seq[0], seq[1]):
            hooks.append(sub.register_forward_hook(lambda mod, inp, out, n=n: acts[n].append(out.detach().abs())))
    try:
        with torch.no_grad():
            for i in range(0, len(samples), batch):
                model.residual(torch.from_numpy(np.ascontiguousarray(samples[i:i + batch])))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n, outs in acts.items():
        a = torch.cat([o.transpose(0, 1).reshape(o.shape[1], -1) for o in outs], dim=1)
        stride = max(1, a.shape[1] // 2_000_000)  # torch.quantile takes at most 16M values
        out[n] = torch.quantile(a[:, ::stride].float(), percentile / 100, dim=1).double().numpy()
    return out


def equalize_weights(cfg, weights: dict[str, np.ndarray], samples: np.ndarray, alpha: float = DEFAULT_ALPHA,
                     percentile: float = RANGE_PERCENTILE) -> tuple[dict[str, np.ndarray], dict]:
    """Equalized copy of a DCSCN checkpoint's ``weights`` (same function) and a summary of the factors."""
    import torch

    from edge_sr.model import DCSCN

    if not 0 < alpha <= 1:
        raise EdgeSRError(f"equalization strength alpha must be in (0, 1], not {alpha}")
    if len(samples) == 0:
        raise EdgeSRError("equalization needs calibration samples")
    m = DCSCN(cfg)
    m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    r = channel_ranges(m.eval(), samples, percentile)
    w = {k: np.array(v, dtype=np.float32, copy=True) for k, v in weights.items()}
    factors: dict[str, np.ndarray] = {}

    def factor(n: str, top: float) -> np.ndarray:
        s = (top / np.maximum(r[n], top / MAX_FACTOR)) ** alpha
        factors[n] = s
        w[f"{n}.0.weight"] *= s.reshape(-1, 1, 1, 1).astype(np.float32)
        w[f"{n}.0.bias"] *= s.astype(np.float32)
        return s

    def divide_inputs(key: str, s: np.ndarray, offset: int = 0) -> None:
        w[key][:, offset:offset + len(s)] /= s.reshape(1, -1, 1, 1).astype(np.float32)

    feats = _producers(cfg)[:-3]
    top = max(float(r[n].max()) for n in feats)
    offset = 0
    for i, n in enumerate(feats):
        s = factor(n, top)
        if i + 1 < len(feats):
            divide_inputs(f"features.{i + 1}.0.weight", s)
        divide_inputs("a1.0.weight", s, offset)
        divide_inputs("b1.0.weight", s, offset)
        offset += len(s)
    top = max(float(r["a1"].max()), float(r["b2"].max()))
    divide_inputs("last.weight", factor("a1", top), 0)
    divide_inputs("last.weight", factor("b2", top), cfg.a_filters)
    divide_inputs("b2.0.weight", factor("b1", float(r["b1"].max())))
    summary = {"alpha": alpha, "percentile": percentile, "samples": int(len(samples)),
               "max_factor": round(float(max(s.max() for s in factors.values())), 3)}
    return w, summary
