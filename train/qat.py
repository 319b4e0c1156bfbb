"""Quantization-aware fine-tuning (QAT) of the INT8 Q/DQ files edge-sr ships.

    python -m edge_sr.train.qat --init CKPT --out DIR [--target cpu|tensorrt|all] [--steps N]
    edge-sr train --qat [cpu|tensorrt|all] --init CKPT --out DIR [--max-steps N]

What it does, per target (``TARGETS``):

1. exports CKPT the way that target's INT8 file is made (``tensorrt``: the plain residual graph,
   symmetric signed INT8 on conv inputs, ``calibration.quantize.TENSORRT_INT8``; ``cpu``: the graph of
   ``calibration.quantize.CPU_INT8``, uint8 activations) and
   calibrates it with ONNX Runtime exactly as ``edge-sr calibrate`` does: that Q/DQ file is the
   post-training (PTQ) result and the starting point;
2. runs that Q/DQ graph in PyTorch (``FakeQuantGraph``: a small interpreter of its own nodes), every
   QuantizeLinear -> DequantizeLinear pair becoming a fake quantization with the file's scale and zero
   point, every quantized weight a per-channel symmetric fake quantization whose scale follows the
   weight (max |w| / 127, what ONNX Runtime's quantizer computes), an int32 bias (one in the file, or
   one ONNX Runtime makes where it fuses a conv with a quantized output) one with scale
   input scale x weight scale. Kept-float layers stay float because the graph says so: the model
   trained is the graph that ships, not a re-implementation of it;
3. fine-tunes the convolution weights and biases (L1 on the residual, Adam, cosine decay) with the
   activation ranges frozen at their calibrated values;
4. writes the INT8 file: the same graph with the fine-tuned weights quantized into it (int8 weights,
   per-channel scales, int32 biases); activation scales and zero points are unchanged;
5. checks it: ONNX Runtime on the written file against the fake-quantized PyTorch graph, on a real
   image, must agree within a level or two of the output's quantization step.

Fake quantization: torch's own ``torch.fake_quantize_per_tensor_affine`` /
``torch.fake_quantize_per_channel_affine``. They round half to even (``nearbyint``) and clamp to the
integer range, as ONNX QuantizeLinear does, and pass gradients straight through inside the range
(zero outside: clipped values learn nothing, as in the integer graph). Ranges are calibrated (ONNX
Runtime's percentile calibrator, the same as PTQ) and frozen, not learned: at 8 bits the calibrated
ranges lose little, the weights adapt to them, and the written file needs nothing but new weights.

Variants (session 11, docs/deploy.md "QAT of the best file"): ``--qat-from FILE`` fine-tunes a given INT8 file of
--init (its weights, ranges and layout: e.g. the best calibration) instead of step 1; ``--qat-loss distill`` trains
toward the FP32 model's output (MSE) instead of L1 to the HR images; ``--learn-ranges`` trains every activation
scale and every uint8 zero point too (torch's LSQ op ``_fake_quantize_learnable_per_tensor_affine``, which rounds
and clamps the zero point as the file stores it) and writes them into the file; signed (TensorRT) zero points stay 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_sr.errors import EdgeSRError

log = logging.getLogger(__name__)

TARGETS = ("cpu", "tensorrt")
FILE_KIND = {"tensorrt": "int8.onnx", "cpu": "cpu-int8.onnx"}
META_KEY = "edge_sr.qat"
DEFAULT_STEPS = 600
DEFAULT_LR = 2e-5
W_QMIN, W_QMAX = -127, 127  # ONNX Runtime's symmetric int8 weight range


# -- the graph in PyTorch --------------------------------------------------------------------------
def _torch():
    from edge_sr.lazy import require

    return require("torch", "quantization-aware training")


def weight_scale_np(w: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric int8 scale, as ONNX Runtime's quantizer computes it: max|w| * 2 / 254
    in float64, stored as float32; 1.0 for an all-zero channel."""
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    s = (absmax * 2.0 / (W_QMAX - W_QMIN)).astype(np.float32)
    return np.where(s < np.finfo(np.float32).tiny, np.float32(1.0), s).astype(np.float32)


@dataclass
class _ConvSpec:
    node: str
    w_param: str
    b_param: str | None
    w_quant: bool  # weight goes through a per-channel DequantizeLinear in the Q/DQ file
    b_quant: bool  # bias is int32 with scale input_scale * weight_scale
    in_scale: float | None  # the quantized input's scale (for the int32 bias)
    w_init: str | None = None  # the Q/DQ file's initializer names, for writing it back
    w_scale_init: str | None = None
    b_init: str | None = None
    b_scale_init: str | None = None
    # a float bias of a conv with quantized input and weights: ONNX Runtime quantizes it to int32 (scale
    # input_scale * weight_scale) when it loads the graph (its WeightBiasQuantization pass)
    b_runtime_int32: bool = False
    in_scale_init: str | None = None  # the initializer holding in_scale (learned with --learn-ranges)


def _np_from_init(t):
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


def padded_like(qdq_model, float_model):
    """``float_model`` with its conv layers padded as ``qdq_model``'s were before quantizing (CPU_INT8's
    pad_channels, recorded in the file's edge_sr.int8 metadata), so that their weights line up tensor for tensor."""
    meta = {p.key: p.value for p in qdq_model.metadata_props}
    try:
        info = json.loads(meta.get("edge_sr.int8", "{}"))
        pad = int(info.get("pad_channels") or 0)
        # a file written when the pass could not read its activations (PReLU before session 14) padded none
        layers = int(info.get("padded_layers", 1))
    except (ValueError, TypeError, AttributeError):
        pad = layers = 0
    if not pad or not layers:
        return float_model
    from edge_sr.deploy.fast_graph import pad_model_channels

    return pad_model_channels(float_model, pad)[0]


class FakeQuantGraph:
    """A Q/DQ ONNX graph of edge-sr's op set run by PyTorch, trainable, with exact fake quantization.

    Built lazily as a torch.nn.Module (``module()``) so that importing this file needs no torch."""

    SUPPORTED = {"Conv", "PRelu", "Mul", "Add", "Max", "Min", "Concat", "Split", "DepthToSpace",
                 "QuantizeLinear", "DequantizeLinear", "Identity", "Relu"}

    def __init__(self, qdq_model, float_model=None):
        self.model = qdq_model
        g = qdq_model.graph
        self.inits = {t.name: _np_from_init(t) for t in g.initializer}
        if float_model is not None:
            float_model = padded_like(qdq_model, float_model)
        float_inits = {t.name: _np_from_init(t) for t in float_model.graph.initializer} if float_model is not None else {}
        unknown = sorted({n.op_type for n in g.node} - self.SUPPORTED)
        if unknown:
            raise EdgeSRError(f"QAT: ops {', '.join(unknown)} are not supported by the fake-quant interpreter")
        self.input = [i.name for i in g.input if i.name not in self.inits][0]
        self.output = g.output[0].name
        producers = {o: n for n in g.node for o in n.output}
        self.act_q: dict[str, tuple] = {}  # Q node name -> (scale, zero_point, qmin, qmax)
        self.act_q_inits: dict[str, tuple] = {}  # Q node name -> (scale initializer, zero-point initializer or None)
        self.convs: dict[str, _ConvSpec] = {}
        self.params: dict[str, np.ndarray] = {}
        self.consts: dict[str, np.ndarray] = {}  # dequantized constants (slopes) and float constants
        for n in g.node:
            if n.op_type == "QuantizeLinear":
                s = self.inits[n.input[1]]
                zp = self.inits[n.input[2]] if len(n.input) > 2 else np.zeros((), np.uint8)
                if s.size != 1:
                    raise EdgeSRError(f"QAT: per-axis activation quantization at {n.name} is not supported")
                info = np.iinfo(zp.dtype)
                self.act_q[n.name] = (float(s.reshape(())), int(zp.reshape(())), int(info.min), int(info.max))
                self.act_q_inits[n.name] = (n.input[1], n.input[2] if len(n.input) > 2 and n.input[2] else None)
        # quantizes whose zero point is the type's minimum, right after a conv: where ONNX Runtime's quantizer dropped
        # a Relu (CPU_INT8 quantizes Relu: the conv's output takes the Relu's range, and the quantize's clipping at
        # zero is the Relu). Unquantized (float reference, kept-float nodes) they must still apply it.
        self.relu_q = {n.name for n in g.node if n.op_type == "QuantizeLinear"
                       and self.act_q[n.name][1] == self.act_q[n.name][2]
                       and producers.get(n.input[0]) is not None and producers[n.input[0]].op_type == "Conv"}
        for n in g.node:
            if n.op_type != "Conv":
                continue
            spec = _ConvSpec(node=n.name, w_param="", b_param=None, w_quant=False, b_quant=False, in_scale=None)
            x_src = producers.get(n.input[0])
            if x_src is not None and x_src.op_type == "DequantizeLinear":
                spec.in_scale = float(self.inits[x_src.input[1]].reshape(()))
                spec.in_scale_init = x_src.input[1]
            for slot, inp in enumerate(n.input[1:3], start=1):
                if not inp:
                    continue
                dq = producers.get(inp)
                if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in self.inits:
                    qname = dq.input[0]
                    base = qname[: -len("_quantized")] if qname.endswith("_quantized") else qname
                    if base in float_inits:
                        val = float_inits[base].astype(np.float32)
                    else:  # start from the dequantized values (the PTQ weights)
                        q = self.inits[qname].astype(np.float64)
                        sc = self.inits[dq.input[1]].astype(np.float64)
                        zp = self.inits[dq.input[2]].astype(np.float64) if len(dq.input) > 2 else 0.0
                        shape = [-1] + [1] * (q.ndim - 1) if sc.size > 1 else [1]
                        val = ((q - np.reshape(zp, shape)) * np.reshape(sc, shape)).astype(np.float32)
                    quant, init, scale_init = True, qname, dq.input[1]
                elif inp in self.inits:
                    val, quant, init, scale_init = self.inits[inp].astype(np.float32), False, inp, None
                else:
                    raise EdgeSRError(f"QAT: {n.name} input {inp} is neither an initializer nor a dequantized one")
                pname = f"{n.name}#{'w' if slot == 1 else 'b'}"
                self.params[pname] = val
                if slot == 1:
                    spec.w_param, spec.w_quant, spec.w_init, spec.w_scale_init = pname, quant, init, scale_init
                else:
                    spec.b_param, spec.b_quant, spec.b_init, spec.b_scale_init = pname, quant, init, scale_init
            if spec.b_quant and spec.in_scale is None:
                raise EdgeSRError(f"QAT: {n.name} has an int32 bias but no quantized input")
            # ONNX Runtime makes that int32 bias only where it fuses DQ -> Conv -> Q into an integer conv: with a
            # quantize on the conv's output. The TensorRT file leaves conv outputs float (TENSORRT_INT8): there
            # the bias stays float, in ONNX Runtime as in TensorRT (measured: rounding it anyway put the fake-quant
            # graph 0.078 output levels from ONNX Runtime on average, against 0.0006 with the float bias)
            out_q = [c for c in g.node if n.output[0] in c.input]
            spec.b_runtime_int32 = bool(spec.b_param and not spec.b_quant and spec.w_quant and spec.in_scale is not None
                                        and out_q and all(c.op_type == "QuantizeLinear" for c in out_q))
            self.convs[n.name] = spec
        # constants read through a DequantizeLinear by other ops (PRelu slopes of the fast graph)
        conv_inputs = {i for n in g.node if n.op_type == "Conv" for i in n.input[1:]}
        for n in g.node:
            if n.op_type == "DequantizeLinear" and n.input[0] in self.inits and n.output[0] not in conv_inputs:
                q = self.inits[n.input[0]].astype(np.float64)
                sc = self.inits[n.input[1]].astype(np.float64)
                zp = self.inits[n.input[2]].astype(np.float64) if len(n.input) > 2 else 0.0
                if sc.size > 1:
                    axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                    shape = [1] * q.ndim
                    shape[axis] = -1
                    sc, zp = sc.reshape(shape), np.reshape(zp, shape) if np.size(zp) > 1 else zp
                self.consts[n.output[0]] = ((q - zp) * sc).astype(np.float32)
        self._module = None

    # torch module -----------------------------------------------------------------------------
    def module(self):
        if self._module is None:
            self._module = _build_module(self)
        return self._module

    def to_qdq(self, trained: dict[str, np.ndarray], ranges: dict | None = None):
        """The Q/DQ ModelProto with ``trained`` float weights (param name -> array) quantized into it, and with
        ``ranges`` (scale initializer -> (scale, zero point), ``module().learned_ranges()``) its activation
        scales and zero points."""
        import onnx
        from onnx import numpy_helper

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        by_name = {t.name: t for t in m.graph.initializer}
        ranges = ranges or {}

        def put(name, arr):
            by_name[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))

        zp_init = _zp_of(self)
        for sc_name, (scale, zp) in ranges.items():
            put(sc_name, np.asarray(scale, np.float32).reshape(self.inits[sc_name].shape))
            if zp_init.get(sc_name):
                old = self.inits[zp_init[sc_name]]
                put(zp_init[sc_name], np.asarray(zp).astype(old.dtype).reshape(old.shape))

        for spec in self.convs.values():
            w = trained[spec.w_param].astype(np.float32)
            if spec.w_quant:
                s = weight_scale_np(w)
                q = quantize_weight_np(w, s)
                put(spec.w_init, q)
                put(spec.w_scale_init, s)
            else:
                put(spec.w_init, w)
            if spec.b_param is not None:
                b = trained[spec.b_param].astype(np.float32)
                if spec.b_quant:
                    in_scale = float(ranges[spec.in_scale_init][0]) if spec.in_scale_init in ranges else spec.in_scale
                    bs = bias_scale_np(in_scale, weight_scale_np(w))
                    put(spec.b_init, np.round(b.astype(np.float64) / bs.astype(np.float64)).astype(np.int32))
                    put(spec.b_scale_init, bs)
                else:
                    put(spec.b_init, b)
        onnx.checker.check_model(m)
        return m


def quantize_weight_np(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """int8 weights as torch's fake quantization rounds them: nearbyint(w * (1 / s)) in float32, clamped."""
    inv = (np.float32(1.0) / s.astype(np.float32)).reshape([-1] + [1] * (w.ndim - 1))
    return np.clip(np.rint(w.astype(np.float32) * inv), W_QMIN, W_QMAX).astype(np.int8)


def bias_scale_np(in_scale: float, w_scale: np.ndarray) -> np.ndarray:
    return (np.float32(in_scale) * w_scale.astype(np.float32)).astype(np.float32)


def _build_module(fq: FakeQuantGraph):
    torch = _torch()
    F = torch.nn.functional
    import onnx

    class _Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = {k: f"p{i}" for i, k in enumerate(fq.params)}
            self.p = torch.nn.ParameterDict({self.names[k]: torch.nn.Parameter(torch.from_numpy(v.copy()))
                                             for k, v in fq.params.items()})
            for i, (k, v) in enumerate(fq.consts.items()):
                self.register_buffer(f"c{i}", torch.from_numpy(v.copy()), persistent=False)
            self.const_names = {k: f"c{i}" for i, k in enumerate(fq.consts)}
            self.nodes = list(fq.model.graph.node)
            self.attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in self.nodes]
            self.quant = True
            self.float_nodes: set[str] = set()  # QuantizeLinear nodes to run float (sensitivity studies)
            # learned activation ranges (learn_ranges()): one log-scale and one zero point per scale initializer
            # (Q/DQ pairs that share a scale keep sharing it)
            self.range_keys: dict[str, str] = {}
            self.r = torch.nn.ParameterDict()

        def learn_ranges(self):
            """Make every activation scale and every uint8 zero point trainable (LSQ: torch's
            _fake_quantize_learnable_per_tensor_affine, zero point rounded and clamped in its forward).
            Returns (log-scale parameters, zero-point parameters)."""
            for qname, (s, zp, lo, hi) in fq.act_q.items():
                sc = fq.act_q_inits[qname][0]
                if sc in self.range_keys:
                    continue
                k = f"r{len(self.range_keys)}"
                self.range_keys[sc] = k
                self.r[k + "s"] = torch.nn.Parameter(torch.tensor([math.log(s)], dtype=torch.float32))
                # signed (TensorRT) activations are symmetric: their zero point stays 0
                self.r[k + "z"] = torch.nn.Parameter(torch.tensor([float(zp)], dtype=torch.float32),
                                                     requires_grad=lo == 0)
            return ([p for k, p in self.r.items() if k.endswith("s")],
                    [p for k, p in self.r.items() if k.endswith("z") and p.requires_grad])

        def scale_of(self, sc_init: str | None, fallback):
            k = self.range_keys.get(sc_init) if sc_init else None
            return torch.exp(self.r[k + "s"]) if k else fallback

        def learned_ranges(self) -> dict:
            """scale initializer -> (float32 scale, integer zero point) as the fake quantization used them."""
            out = {}
            lims = {fq.act_q_inits[q][0]: v[2:] for q, v in fq.act_q.items()}
            for sc, k in self.range_keys.items():
                lo, hi = lims[sc]
                s = np.float32(torch.exp(self.r[k + "s"].detach()).item())
                zp = int(np.clip(np.rint(float(self.r[k + "z"].detach().item())), lo, hi))
                out[sc] = (s, zp)
            return out

        def param(self, name):
            return self.p[self.names[name]]

        def trained(self) -> dict:
            return {k: self.p[v].detach().cpu().numpy().copy() for k, v in self.names.items()}

        def conv_weights(self, spec):
            w = self.param(spec.w_param)
            b = self.param(spec.b_param) if spec.b_param else None
            if not self.quant:
                return w, b
            if spec.w_quant:
                with torch.no_grad():
                    absmax = w.abs().amax(dim=tuple(range(1, w.ndim))).double()
                    s = (absmax * 2.0 / (W_QMAX - W_QMIN)).float()
                    s = torch.where(s < torch.finfo(torch.float32).tiny, torch.ones_like(s), s)
                w = torch.fake_quantize_per_channel_affine(w, s, torch.zeros_like(s, dtype=torch.int32), 0, W_QMIN, W_QMAX)
                if b is not None and (spec.b_quant or spec.b_runtime_int32):
                    in_scale = self.scale_of(spec.in_scale_init, torch.tensor(spec.in_scale, dtype=torch.float32))
                    bs = (in_scale.detach().reshape(()) * s).double()
                    bq = torch.round(b.double() / bs) * bs
                    b = b + (bq.float() - b).detach()  # straight-through
            return w, b

        def forward(self, x):
            env = {fq.input: x}
            for n, at in zip(self.nodes, self.attrs):
                op = n.op_type
                if op == "QuantizeLinear":
                    s, zp, lo, hi = fq.act_q[n.name]
                    v = env[n.input[0]]
                    quant = self.quant and n.name not in self.float_nodes
                    k = self.range_keys.get(fq.act_q_inits[n.name][0])
                    if quant and k:
                        env[n.output[0]] = torch._fake_quantize_learnable_per_tensor_affine(
                            v, torch.exp(self.r[k + "s"]), self.r[k + "z"], lo, hi, 1.0)
                    elif quant:
                        env[n.output[0]] = torch.fake_quantize_per_tensor_affine(v, s, zp, lo, hi)
                    else:
                        env[n.output[0]] = torch.relu(v) if n.name in fq.relu_q else v
                    continue
                if op == "DequantizeLinear":
                    src = n.input[0]
                    if src in env:
                        env[n.output[0]] = env[src]
                    elif n.output[0] in self.const_names:
                        env[n.output[0]] = getattr(self, self.const_names[n.output[0]])
                    continue  # conv weight / bias DQs: read by the Conv itself
                ins = [self._get(env, i) for i in (n.input[:1] if op == "Conv" else n.input)]
                if op == "Conv":
                    spec = fq.convs[n.name]
                    w, b = self.conv_weights(spec)
                    pads = at.get("pads", [0] * 4)
                    xin = ins[0]
                    if pads[0] != pads[2] or pads[1] != pads[3]:
                        xin = F.pad(xin, (pads[1], pads[3], pads[0], pads[2]))
                        pad = 0
                    else:
                        pad = (pads[0], pads[1])
                    out = F.conv2d(xin, w, b, stride=tuple(at.get("strides", [1, 1])), padding=pad,
                                   dilation=tuple(at.get("dilations", [1, 1])), groups=at.get("group", 1))
                elif op == "PRelu":
                    out = torch.where(ins[0] < 0, ins[0] * ins[1], ins[0])
                elif op == "Relu":
                    out = torch.relu(ins[0])
                elif op == "Mul":
                    out = ins[0] * ins[1]
                elif op == "Add":
                    out = ins[0] + ins[1]
                elif op == "Max":
                    out = torch.maximum(ins[0], ins[1])
                elif op == "Min":
                    out = torch.minimum(ins[0], ins[1])
                elif op == "Identity":
                    out = ins[0]
                elif op == "Concat":
                    out = torch.cat(ins, dim=at["axis"])
                elif op == "Split":
                    sizes = [int(v) for v in (fq.inits[n.input[1]] if len(n.input) > 1 and n.input[1] else at["split"])]
                    outs = torch.split(ins[0], sizes, dim=at.get("axis", 0))
                    for o, t in zip(n.output, outs):
                        env[o] = t
                    continue
                elif op == "DepthToSpace":
                    bs = at["blocksize"]
                    mode = at.get("mode", b"DCR")
                    mode = mode.decode() if isinstance(mode, bytes) else mode
                    if mode == "CRD":
                        out = F.pixel_shuffle(ins[0], bs)
                    else:
                        b_, c, h, w_ = ins[0].shape
                        out = ins[0].reshape(b_, bs, bs, c // bs**2, h, w_).permute(0, 3, 4, 1, 5, 2)
                        out = out.reshape(b_, c // bs**2, h * bs, w_ * bs)
                else:  # pragma: no cover - refused in FakeQuantGraph.__init__
                    raise EdgeSRError(f"QAT: unsupported op {op}")
                env[n.output[0]] = out
            return env[fq.output]

        def _get(self, env, name):
            if not name:
                return None
            if name in env:
                return env[name]
            if name in self.const_names:
                return getattr(self, self.const_names[name])
            if name in fq.inits:
                t = torch.from_numpy(np.array(fq.inits[name], dtype=np.float32))
                env[name] = t
                return t
            raise EdgeSRError(f"QAT: tensor {name} has no producer")

    return _Module()


# -- pipeline ----------------------------------------------------------------------------------------
@dataclass
class QATArgs:
    init: str
    out: str
    targets: tuple = TARGETS
    data: list = field(default_factory=list)  # HR training folders
    calib_images: str | None = None  # default: default_calib_dir(data)
    calib_max_images: int = 40  # calibration images, 2 crops of 64x64 each (as edge-sr calibrate)
    keep_float: tuple | None = None  # node groups left float (None: each target's default, first and last conv)
    val: str | None = None  # a set folder for the PSNR log (Set5)
    steps: int = DEFAULT_STEPS
    batch: int = 16
    patch: int = 48
    lr: float = DEFAULT_LR
    seed: int = 0
    threads: int = 0
    progress: bool = True
    qat_from: str | None = None  # a Q/DQ file of --init to fine-tune (one target) instead of a fresh calibration
    learn_ranges: bool = False  # train activation scales and zero points too (LSQ), written to the file
    qat_loss: str = "l1"  # "l1": against the HR images; "distill": MSE against the FP32 model's output


LOSSES = ("l1", "distill")
# with --learn-ranges, Adam's step for the log-scales and for the zero points, as multiples of the weights' lr:
# at the default lr (2e-5) a scale moves at most 0.1% and a zero point 0.05 levels per step
RANGE_LR_SCALE, RANGE_LR_ZERO_POINT = 50.0, 2500.0


def _bicubic_residual_target(torch, lr, hr, scale):
    F = torch.nn.functional
    return hr - F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


def _val_psnr(torch, module, pairs, scale) -> float:
    """Protocol PSNR (Y, shave scale) of bicubic + the module's residual: the INT8 graph's own result."""
    F = torch.nn.functional
    out = []
    with torch.no_grad():
        for p in pairs:
            x = torch.from_numpy(p.y_lr)[None, None]
            sr = (F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) + module(x))[0, 0]
            sr = sr.clamp(0, 1).double().numpy() * 255
            hr = p.y_hr.astype(np.float64) * 255
            s = scale
            mse = np.mean((sr[s:-s, s:-s] - hr[s:-s, s:-s]) ** 2)
            out.append(10 * np.log10(255**2 / mse))
    return float(np.mean(out))


def agreement(qdq_path, module, y_lr_f32: np.ndarray, step: float | None = None) -> dict:
    """ONNX Runtime (the product's session settings: every graph optimization, integer kernels) on the
    Q/DQ file against the fake-quantized PyTorch graph: max and mean |diff|, and with the output's
    quantization ``step`` the same in steps plus the share of outputs more than one step apart."""
    torch = _torch()
    import onnxruntime as ort

    from edge_sr.backends.onnxruntime import X64_EXACT_KEY, open_session

    def options(exact_x86):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if exact_x86:  # as the product: no int16 saturation on x86 without VNNI
            so.add_session_config_entry(X64_EXACT_KEY, "1")
        return so

    sess, _ = open_session(ort, qdq_path, options, ["CPUExecutionProvider"])
    x = y_lr_f32[None, None].astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    out = {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "shape": list(got.shape)}
    if step:
        out.update(step=step, max_steps=float(d.max() / step), mean_steps=float(d.mean() / step),
                   over_1_step=float((d > 1.01 * step).mean()))
    return out


# the written file passes when at most this share of outputs is more than one output step from the
# fake-quantized graph (measured: ~0.1% on x86, where ONNX Runtime's integer kernels round a few
# intermediate values differently and later layers carry that on) and the mean stays well below a step.
# The mean bar was 0.05 until the ReLU compact x2 (session 13): its TensorRT file, PTQ, before any training,
# measured 0.047 steps mean (0.0006% of outputs over one step) because ONNX Runtime's own basic graph
# optimizations move its float conv outputs by ~3e-5 and the ReLU network's wide activation ranges carry the
# few flipped roundings on (runs/ship_relu_compact_x2.log); PReLU models measured ~0.0005. A wrong scale or
# zero point shows as whole steps.
AGREE_OVER_1_STEP = 0.01
AGREE_MEAN_STEPS = 0.1


# one 8-bit output level: the unit of the agreement check when the output itself is not quantized
OUTPUT_LEVEL = 1.0 / 255.0


def check_step(fq: FakeQuantGraph) -> float:
    """The unit the agreement check counts in: the output's quantization step, or one 8-bit output level
    when the output stays float (the last conv kept float, as the shipped files are made)."""
    return output_step(fq) or OUTPUT_LEVEL


def output_step(fq: FakeQuantGraph) -> float | None:
    """The quantization step of the graph's output (the last Q before it), or None when it is float."""
    g = fq.model.graph
    producers = {o: n for n in g.node for o in n.output}
    t = fq.output
    while t in producers:
        n = producers[t]
        if n.op_type == "QuantizeLinear":
            return fq.act_q[n.name][0]
        if n.op_type not in ("DequantizeLinear", "DepthToSpace", "Identity"):
            return None
        t = n.input[0]
    return None


def default_calib_dir(data: list) -> str:
    """QAT's calibration folder when none is given: the BSD200 training folder (its scenes hold the hard edges
    that T91's flower close-ups rarely do: docs/deploy.md), else T91's (yang91), else the first folder."""
    for name in ("bsd200", "yang91"):
        hit = next((str(Path(d)) for d in data if Path(d).name.lower() == name), None)
        if hit:
            return hit
    return str(data[0])


def export_target(ckpt: Path, target: str, workdir: Path, samples: np.ndarray | None = None,
                  equalize: bool = False) -> Path:
    """The float ONNX graph ``target``'s INT8 file is calibrated from (``equalize``: activation-equalized on
    ``samples``, calibration/equalize.py)."""
    from edge_sr.calibration.quantize import CPU_INT8
    from edge_sr.deploy.export import export_onnx

    if target not in TARGETS:
        raise EdgeSRError(f"unknown QAT target {target!r}: {', '.join(TARGETS)}")
    fast = target == "cpu" and CPU_INT8["graph"] == "fast"
    fp32 = workdir / ("plain.onnx" if target == "tensorrt" else "fast.onnx" if fast else "plain_cpu.onnx")
    export_onnx(str(ckpt), fp32, residual=True, fast=fast, equalize=samples if equalize else None)
    return fp32


def start_target(path: Path, ckpt_sha256: str) -> str:
    """The target of an INT8 file ``edge-sr calibrate`` (or QAT) made from the checkpoint with ``ckpt_sha256``;
    refuses any other file."""
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds for a bad file
        raise EdgeSRError(f"--qat-from {path}: not an ONNX file ({exc.__class__.__name__})") from None
    meta = {p.key: p.value for p in m.metadata_props}
    if not any(n.op_type == "QuantizeLinear" for n in m.graph.node) or "edge_sr.int8" not in meta:
        raise EdgeSRError(f"--qat-from {path}: not an INT8 (Q/DQ) file made by edge-sr calibrate")
    if meta.get("edge_sr.source_sha256") != ckpt_sha256:
        raise EdgeSRError(f"--qat-from {path}: made from another checkpoint than --init "
                          f"(its source {meta.get('edge_sr.source_checkpoint', '?')})")
    acts = json.loads(meta["edge_sr.int8"]).get("activations")
    return "cpu" if acts == "uint8" else "tensorrt"


def prepare_target(ckpt: Path, target: str, workdir: Path, samples: np.ndarray,
                   percentile: float | None = None, equalize: bool = False,
                   keep_float: tuple | list | None = None) -> tuple[Path, Path]:
    """Export ``ckpt`` for ``target`` (``export_target``) and calibrate it (PTQ; ``percentile`` None: the
    default; ``keep_float`` None: the target's default groups). Returns (float ONNX, Q/DQ ONNX)."""
    from edge_sr.calibration.quantize import (CPU_INT8, DEFAULT_KEEP_FLOAT, DEFAULT_PERCENTILE, TENSORRT_INT8,
                                              quantize_int8)

    percentile = DEFAULT_PERCENTILE if percentile is None else percentile
    fp32 = export_target(ckpt, target, workdir, samples, equalize)
    if target == "tensorrt":
        qdq = workdir / f"ptq.{FILE_KIND[target]}"
        quantize_int8(fp32, qdq, samples, method="percentile", activations=TENSORRT_INT8["activations"],
                      keep_float=list(DEFAULT_KEEP_FLOAT if keep_float is None else keep_float),
                      op_types=TENSORRT_INT8["op_types"], no_output_quant=TENSORRT_INT8["no_output_quant"],
                      percentile=percentile)
    else:
        qdq = workdir / f"ptq.{FILE_KIND[target]}"
        quantize_int8(fp32, qdq, samples, method="percentile", activations=CPU_INT8["activations"],
                      keep_float=list(CPU_INT8["keep_float"] if keep_float is None else keep_float),
                      op_types=CPU_INT8["op_types"], percentile=percentile, pad_channels=CPU_INT8["pad_channels"])
    return fp32, qdq


def run_qat(a: QATArgs) -> dict:
    """The whole QAT of ``a.init`` for each target; writes DIR/dcscn_<preset>_x<scale>.<kind> and
    DIR/qat.json. Returns the report."""
    torch = _torch()
    import onnx

    from edge_sr.calibration.data import load_calibration_set
    from edge_sr.calibration.quantize import DEFAULT_PERCENTILE, replace_metadata
    from edge_sr.deploy.export import verification_input
    from edge_sr.checkpoint import file_sha256, load_checkpoint
    from edge_sr.imageio import atomic_path, list_images

    from .data import PatchSampler, load_pairs, make_pair

    ckpt = Path(a.init)
    cfg, _, _ = load_checkpoint(ckpt)
    if a.steps < 0 or a.batch < 1 or a.patch < 8:
        raise EdgeSRError("QAT needs --steps >= 0, --batch >= 1 and --patch >= 8")
    if not a.data:
        raise EdgeSRError("QAT needs training images (--data, or set EDGE_SR_DATA)")
    if a.qat_loss not in LOSSES:
        raise EdgeSRError(f"unknown QAT loss {a.qat_loss!r}: choose {' or '.join(LOSSES)}")
    init_sha = file_sha256(ckpt)
    if a.qat_from:
        start = Path(a.qat_from)
        if not start.is_file():
            raise EdgeSRError(f"--qat-from {start}: no such file")
        t = start_target(start, init_sha)
        if tuple(a.targets) not in ((t,), TARGETS):
            raise EdgeSRError(f"--qat-from {start} is a {t} INT8 file: give --qat {t}")
        a.targets = (t,)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = a.threads or max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    calib_dir = a.calib_images or default_calib_dir(a.data)
    # the same calibration set as `edge-sr calibrate` (defaults: 64x64 crops, 2 per image, 40 images)
    samples = load_calibration_set(calib_dir, crop=(64, 64), crops_per_image=2, min_images=8,
                                   max_images=a.calib_max_images)
    pairs = load_pairs(a.data, cfg.scale, min_lr_size=a.patch, progress=a.progress)
    val_pairs = [make_pair(f, cfg.scale) for f in list_images(a.val, "validation folder")] if a.val else []
    y_check, check_src = verification_input()
    report = {"init": str(ckpt), "init_sha256": init_sha, "preset": cfg.preset, "scale": cfg.scale,
              "calib_images": calib_dir, "calib_max_images": a.calib_max_images,
              "keep_float": None if a.keep_float is None else list(a.keep_float),
              "steps": a.steps, "batch": a.batch, "patch": a.patch, "lr": a.lr, "seed": a.seed, "threads": threads,
              "qat_from": a.qat_from, "learn_ranges": a.learn_ranges, "qat_loss": a.qat_loss,
              "fake_quant": "torch.fake_quantize_per_tensor_affine / per_channel_affine; activation ranges "
              + (f"from {Path(a.qat_from).name}" if a.qat_from else
                 f"calibrated (ONNX Runtime percentile {DEFAULT_PERCENTILE:g})")
              + (", then learned (torch._fake_quantize_learnable_per_tensor_affine: scales and zero points)"
                 if a.learn_ranges else " and frozen")
              + "; weight scales max|w|/127 per channel, recomputed each step",
              "targets": {}}
    stem = f"dcscn_{cfg.preset}_x{cfg.scale}"
    for target in a.targets:
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="edge-sr-qat-") as tmp:
            if a.qat_from:  # fine-tune that file as it is (its weights, ranges, layout); start from its weights
                fp32, qdq = export_target(ckpt, target, Path(tmp)), Path(a.qat_from)
                fq = FakeQuantGraph(onnx.load(str(qdq)), None)
            else:
                fp32, qdq = prepare_target(ckpt, target, Path(tmp), samples, keep_float=a.keep_float)
                fq = FakeQuantGraph(onnx.load(str(qdq)), onnx.load(str(fp32)))
            module = fq.module()
            # the FP32 model, run by the same interpreter: validation reference and the distillation teacher
            teacher = FakeQuantGraph(onnx.load(str(fp32)), None).module()
            teacher.quant = False
            teacher.requires_grad_(False)
            step_q = check_step(fq)
            ptq_check = agreement(qdq, module, y_check, step_q)
            rep = {"graph": fp32.name, "start": str(qdq) if a.qat_from else "calibrated", "ptq_agreement": ptq_check}
            if val_pairs:
                rep["val_psnr_ptq"] = _val_psnr(torch, module, val_pairs, cfg.scale)
                rep["val_psnr_fp32"] = _val_psnr(torch, teacher, val_pairs, cfg.scale)
            sampler = PatchSampler(pairs, a.patch, cfg.scale, seed=a.seed)
            torch.manual_seed(a.seed)
            groups = [{"params": list(module.p.parameters()), "base": a.lr}]
            if a.learn_ranges:
                scales, zero_points = module.learn_ranges()
                groups += [{"params": scales, "base": a.lr * RANGE_LR_SCALE},
                           {"params": zero_points, "base": a.lr * RANGE_LR_ZERO_POINT}]
            opt = torch.optim.Adam([g | {"lr": g["base"]} for g in groups])
            losses = []
            bar = None
            if a.progress:
                from tqdm import tqdm

                bar = tqdm(total=a.steps, desc=f"QAT {cfg.preset} x{cfg.scale} {target}", unit="step", dynamic_ncols=True)
            t_train = time.time()
            module.train()
            for step in range(a.steps):
                for gr in opt.param_groups:  # cosine from lr to lr/20
                    gr["lr"] = gr["base"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(1, a.steps))))
                lr_np, hr_np = sampler.batch(a.batch)
                lr_t = torch.from_numpy(lr_np)
                if a.qat_loss == "distill":
                    with torch.no_grad():
                        target_res = teacher(lr_t)
                    loss = torch.nn.functional.mse_loss(module(lr_t), target_res)
                else:
                    target_res = _bicubic_residual_target(torch, lr_t, torch.from_numpy(hr_np), cfg.scale)
                    loss = torch.nn.functional.l1_loss(module(lr_t), target_res)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.5f}")
            if bar is not None:
                bar.close()
            rep["train_s"] = round(time.time() - t_train, 1)
            rep["s_per_step"] = round(rep["train_s"] / max(1, a.steps), 3)
            rep["loss_first_last_50"] = [float(np.mean(losses[:50])) if losses else None,
                                         float(np.mean(losses[-50:])) if losses else None]
            module.eval()
            if val_pairs:
                rep["val_psnr_qat"] = _val_psnr(torch, module, val_pairs, cfg.scale)
            ranges = module.learned_ranges() if a.learn_ranges else None
            if ranges:
                zps = _zp_of(fq)
                ratios = [float(v[0]) / fq.inits[k].item() for k, v in ranges.items()]
                rep["ranges_changed"] = {"scale_ratio_min_max": [min(ratios), max(ratios)],
                                         "zero_points_moved": sum(1 for k, v in ranges.items()
                                                                  if k in zps and v[1] != int(fq.inits[zps[k]].item()))}
            qm = fq.to_qdq(module.trained(), ranges)
            meta = {p.key: p.value for p in qm.metadata_props}
            if ranges and "edge_sr.int8" in meta:  # learned ranges may untie what tie_concat_inputs tied
                from edge_sr.calibration.quantize import count_tied_concat_inputs

                info = json.loads(meta["edge_sr.int8"])
                if "concat_inputs_tied" in info:
                    info["concat_inputs_tied"] = count_tied_concat_inputs(qm)
                    meta["edge_sr.int8"] = json.dumps(info, sort_keys=True)
            meta[META_KEY] = json.dumps({k: report[k] for k in ("init_sha256", "steps", "batch", "patch", "lr", "seed",
                                                                 "learn_ranges", "qat_loss")}
                                        | {"target": target, "fake_quant": "torch.fake_quantize_*_affine, "
                                           + ("learned ranges" if a.learn_ranges else "frozen calibrated ranges"),
                                           "start": Path(a.qat_from).name if a.qat_from else "calibrated"},
                                        sort_keys=True)
            replace_metadata(qm, meta)
            dst = out / f"{stem}.{FILE_KIND[target]}"
            with atomic_path(dst) as tmp_dst:
                onnx.save(qm, str(tmp_dst))
            chk = agreement(dst, module, y_check, step_q)
            chk["image"] = check_src
            rep["agreement"] = chk
            rep["file"] = str(dst)
            rep["wall_s"] = round(time.time() - t0, 1)
            ok = chk["over_1_step"] <= AGREE_OVER_1_STEP and chk["mean_steps"] <= AGREE_MEAN_STEPS
            if not ok:
                dst.unlink(missing_ok=True)
                raise EdgeSRError(f"QAT {target}: ONNX Runtime on the written file disagrees with the fake-quantized "
                                  f"PyTorch graph ({json.dumps(chk)}): not written")
            report["targets"][target] = rep
            log.info("QAT %s: %s", target, json.dumps(rep))
    with atomic_path(out / "qat.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _zp_of(fq: FakeQuantGraph) -> dict:
    """scale initializer -> its zero-point initializer (activations with one)."""
    return {sc: zp for sc, zp in fq.act_q_inits.values() if zp}


def summary(report: dict) -> str:
    lines = []
    for t, r in report["targets"].items():
        v = ""
        if "val_psnr_qat" in r:
            v = (f"; val PSNR fp32 {r['val_psnr_fp32']:.3f}, PTQ {r['val_psnr_ptq']:.3f} "
                 f"({r['val_psnr_ptq'] - r['val_psnr_fp32']:+.3f}), QAT {r['val_psnr_qat']:.3f} "
                 f"({r['val_psnr_qat'] - r['val_psnr_fp32']:+.3f}) dB")
        a = r["agreement"]
        steps = (f" ({a['max_steps']:.1f} output steps; {100 * a['over_1_step']:.2f}% of outputs more than one step "
                 f"apart, mean {a['mean_steps']:.3f} steps)") if a.get("step") else ""
        lines.append(f"wrote {r['file']} ({t}): {report['steps']} steps in {r['train_s']:.0f} s{v}; ONNX Runtime vs "
                     f"fake-quantized PyTorch on {Path(a['image']).name}: max |diff| {a['max_abs']:.3g}{steps}")
    return "\n".join(lines)


# -- entry points ------------------------------------------------------------------------------------
def targets_from(value: str | None) -> tuple:
    if value in (None, "", "all"):
        return TARGETS
    out = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in out if v not in TARGETS]
    if bad:
        raise EdgeSRError(f"unknown QAT target {', '.join(bad)}: choose {', '.join(TARGETS)} or all")
    return out


def run_from_train_args(args) -> int:
    """``edge-sr train --qat [TARGET] --init CKPT --out DIR``, with the train command's arguments:
    --max-steps = fine-tuning steps (default DEFAULT_STEPS); --lr not given means DEFAULT_LR; --data,
    --val, --batch, --patch, --seed, --threads as for training (their training defaults)."""
    import argparse

    from edge_sr.calibration.quantize import keep_float_from
    from edge_sr.commands.train import QAT_ONLY, resolve_args

    qat_only = {k: vars(args)[k] for k in QAT_ONLY if k in vars(args)}  # given ones only: QATArgs has the defaults
    if "keep_float" in qat_only:
        qat_only["keep_float"] = tuple(keep_float_from(qat_only["keep_float"]))
    given = {k: v for k, v in vars(args).items() if k != "qat" and k not in qat_only}
    if not given.get("init"):
        raise EdgeSRError("--qat needs --init CKPT (the trained checkpoint whose INT8 files to fine-tune)")
    if given.get("resume"):
        raise EdgeSRError("--qat runs are short and not resumable: leave out --resume")
    targs, _ = resolve_args(argparse.Namespace(**given))
    a = QATArgs(init=targs.init, out=targs.out, targets=targets_from(args.qat), data=list(targs.data),
                val=targs.val if targs.val and Path(targs.val).is_dir() else None,
                steps=DEFAULT_STEPS if args.max_steps is None else args.max_steps, batch=targs.batch,
                patch=targs.patch, lr=given.get("lr", DEFAULT_LR), seed=targs.seed, threads=targs.threads,
                progress=not args.no_progress, **qat_only)
    print(summary(run_qat(a)))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_sr.train.qat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    data = os.environ.get("EDGE_SR_DATA")
    ap.add_argument("--init", required=True, help="trained checkpoint (.safetensors)")
    ap.add_argument("--out", required=True, help="folder for the INT8 files and qat.json")
    ap.add_argument("--target", default="all", help=f"{', '.join(TARGETS)} or all (default)")
    ap.add_argument("--data", nargs="+", default=[str(Path(data) / "train")] if data else None)
    ap.add_argument("--calib-images", default=None,
                    help="calibration images (default: the bsd200 training folder, else yang91, else the first --data)")
    ap.add_argument("--calib-max-images", type=int, default=40, help="calibration images used, 2 crops each (default 40)")
    ap.add_argument("--keep-float", default=None,
                    help="node groups left float32, as edge-sr calibrate --keep-float (default first_conv,last_conv)")
    ap.add_argument("--qat-from", default=None, metavar="FILE",
                    help="fine-tune this INT8 file of --init instead of a fresh calibration (its target only)")
    ap.add_argument("--learn-ranges", action="store_true", help="train activation scales and zero points too")
    ap.add_argument("--qat-loss", choices=LOSSES, default="l1",
                    help="l1 to the HR images (default) or distill: MSE to the FP32 model's output")
    ap.add_argument("--val", default=str(Path(data) / "val" / "set5") if data else None)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=DEFAULT_LR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if not args.data:
            raise EdgeSRError("give --data FOLDER (or set EDGE_SR_DATA)")
        from edge_sr.calibration.quantize import keep_float_from
        from edge_sr.commands.train import _collect_folders

        a = QATArgs(init=args.init, out=args.out, targets=targets_from(args.target), data=_collect_folders(args.data),
                    calib_images=args.calib_images, calib_max_images=args.calib_max_images,
                    keep_float=None if args.keep_float is None else tuple(keep_float_from(args.keep_float)),
                    val=args.val if args.val and Path(args.val).is_dir() else None,
                    steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr, seed=args.seed,
                    threads=args.threads, progress=not args.no_progress, qat_from=args.qat_from,
                    learn_ranges=args.learn_ranges, qat_loss=args.qat_loss)
        print(summary(run_qat(a)))
    except EdgeSRError as exc:
        if os.environ.get("EDGE_SR_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
