"""INT8 by ONNX Runtime static quantization to Q/DQ.

Default (``activations="int8"``): symmetric signed INT8 everywhere (zero point 0), per-channel
weights; TensorRT accepts exactly that, so one file serves TensorRT INT8 on a Jetson and ONNX
Runtime INT8 on a Raspberry Pi. ``activations="uint8"`` gives asymmetric uint8 activations (a CPU-only
variant: faster with x86 ONNX Runtime's kernels, NOT loadable as a TensorRT INT8 network).

The float32 file must come from ``edge-sr export``; its metadata is carried over, with the
quantization settings added.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sr.errors import EdgeSRError
from edge_sr.lazy import require

from .data import LumaDataReader

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
# measured on compact x2 (docs/deploy.md): the first conv sees the raw [0, 1] input, which symmetric
# int8 would cut to 7 bits; keeping it float costs ~1% of the MACs and saves most of the loss. The last
# (reconstruction) conv writes the residual itself: kept float, the output is not rounded to an int8 step
# (every INT8 file shipped since session 8 was made so: docs/deploy.md "Hard edges, last conv, a judge
# that can tell"; its cost is within timing noise).
DEFAULT_KEEP_FLOAT = ("first_conv", "last_conv")


def keep_float_from(value: str) -> list:
    """The --keep-float option as a list: comma-separated groups or node names; 'none' keeps nothing float."""
    return [] if value.strip().lower() == "none" else [k.strip() for k in value.split(",") if k.strip()]


DEFAULT_METHOD = "percentile"
# The percentile of |activation| that sets each range. Chosen on held-out photos (scripts/sweep-percentile.py,
# PTQ scored exactly; docs/quality/percentile_sweep.txt): the best percentile depends on the model (compact x2
# 99.99, normal x2 99.995), and 99.995 is within 0.003 dB of the best for each, where the former 99.999 lost up
# to 0.025 dB more (compact x2 TensorRT on the held-out photos: -0.039 against -0.061; on Set5 -0.057 against
# -0.129). 99.999 was chosen on a 2-minute model with every layer quantized. scripts/ship-weights.sh tries
# several percentiles per model and ships the best on the held-out photos.
DEFAULT_PERCENTILE = 99.995
META_PREFIX = "edge_sr."
# The CPU INT8 file (``dcscn_*.cpu-int8.onnx``), chosen by measurement on ONNX Runtime's x86 CPU kernels
# (docs/benchmarks/README.md): uint8 activations (x86 runs u8 x s8; s8 x s8 takes a slower path), from
# the graph and with the op types that measured fastest. ``graph`` names the FP32 export it is built
# from ("fast": deploy/fast_graph.py, "plain": edge-sr export --residual).
# "Relu" among the op types: ONNX Runtime's quantizer then drops each Relu that follows a quantized conv and gives
# the conv's output the Relu's range (zero point 0 clips the negatives): the ReLU network runs integer end to end.
# ``pad_channels``: convs (with their activation) padded with zero filters to a multiple of 8 output channels
# before quantizing (deploy.fast_graph.pad_channels; exact): ONNX Runtime's u8s8 convolution kernels are faster
# on such channel counts (compact x2 ReLU 43.1 -> 30.5 ms model only, 320x240, scripts/time_onnx.py; normal x2's PReLU
# file padded by pad_int8_file 1.24x / 1.33x the whole frame's FPS at 320x240 / 640x480; AVX-512 VNNI EPYC,
# docs/benchmarks/README.md). Not in the float graph, where it measured slower.
CPU_INT8 = {"graph": "fast", "activations": "uint8", "keep_float": DEFAULT_KEEP_FLOAT,
            "op_types": ["Conv", "Concat", "Relu"], "pad_channels": 8}
# The TensorRT INT8 file (``dcscn_*.int8.onnx``): symmetric int8, Q/DQ on the inputs (and weights) of each
# quantized conv only, its output left in float: TensorRT's own Q/DQ placement recommendation ("quantize all
# inputs of weighted operations ... by default, don't quantize the outputs of weighted operations": developer
# guide, explicit quantization) and what NVIDIA's quantization toolkits emit. TensorRT then fuses
# conv + bias + PReLU + the next quantize into one INT8 kernel. It rounds 8 activations of compact instead of 21
# (every conv output and every PReLU output): measured on compact x2, PTQ at the 99.99th percentile, equalized,
# held-out photos -0.018 dB against FP32 where the former every-op placement lost -0.032 (docs/deploy.md).
# ONNX Runtime's CPU kernels fuse a conv to QLinearConv only with a quantize on its output, so on a CPU this file
# runs in float arithmetic (exactly, slowly): CPUs, ARM included, take the .cpu-int8.onnx file.
TENSORRT_INT8 = {"activations": "int8", "op_types": ["Conv"], "no_output_quant": ["Conv"]}


@dataclass
class QuantizeResult:
    path: Path
    method: str
    activations: str
    excluded: list = field(default_factory=list)
    quantized_nodes: int = 0
    float_nodes: int = 0
    samples: int = 0


def _load_fp32(onnx_mod, path: Path):
    if not path.is_file():
        raise EdgeSRError(f"ONNX model not found: {path}")
    try:
        mp = onnx_mod.load(str(path))
        onnx_mod.checker.check_model(mp)
    except Exception as exc:
        raise EdgeSRError(f"not a valid ONNX model (corrupt, truncated or not ONNX): {path} "
                          f"({str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__})") from None
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in mp.graph.node):
        raise EdgeSRError(f"{path.name} is already quantized (has Q/DQ nodes): calibrate the float32 export")
    ins, outs = mp.graph.input, mp.graph.output
    init = {i.name for i in mp.graph.initializer}
    ins = [i for i in ins if i.name not in init]
    if len(ins) != 1 or len(outs) != 1 or len(ins[0].type.tensor_type.shape.dim) != 4 \
            or ins[0].type.tensor_type.elem_type != onnx_mod.TensorProto.FLOAT:
        raise EdgeSRError(f"{path.name} is not an edge-sr model: expected one float32 input [1,1,H,W] and one output")
    return mp


def node_groups(mp) -> dict[str, list[str]]:
    """Named groups of nodes whose quantization can be switched off, for the sensitivity study."""
    convs = [n.name for n in mp.graph.node if n.op_type == "Conv"]
    groups = {
        "first_conv": convs[:1],
        "last_conv": convs[-1:],
        "resize": [n.name for n in mp.graph.node if n.op_type == "Resize"],
        "prelu": [n.name for n in mp.graph.node if n.op_type == "PRelu"],
        "concat": [n.name for n in mp.graph.node if n.op_type == "Concat"],
        "depth_to_space": [n.name for n in mp.graph.node if n.op_type == "DepthToSpace"],
    }
    return {k: v for k, v in groups.items() if v}


def resolve_exclusions(mp, keep_float: list[str] | None) -> list[str]:
    """Group names (first_conv, last_conv, prelu...) or node names -> node names kept float."""
    if not keep_float:
        return []
    groups = node_groups(mp)
    names = {n.name for n in mp.graph.node}
    out: list[str] = []
    for item in keep_float:
        if item in groups:
            out += groups[item]
        elif item in names:
            out.append(item)
        elif item in ("resize", "depth_to_space", "concat", "prelu"):
            continue  # the group is absent from this variant (e.g. no Resize in a residual export)
        else:
            raise EdgeSRError(f"--keep-float {item!r}: not a node group ({', '.join(groups)}) nor a node name")
    return sorted(set(out), key=out.index)


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    samples: np.ndarray,
    *,
    method: str = "minmax",
    activations: str = "int8",
    keep_float: list[str] | None = None,
    per_channel: bool = True,
    percentile: float = DEFAULT_PERCENTILE,
    op_types: list[str] | None = None,
    no_output_quant: list[str] | None = None,
    pad_channels: int = 0,
) -> QuantizeResult:
    """Quantize ``fp32_path`` with calibration ``samples`` ([N,1,h,w] float32) into ``out_path``.

    ``op_types``: only these op types are quantized (their inputs and outputs get Q/DQ); None: every
    op type ONNX Runtime's QDQ quantizer handles. ``no_output_quant``: op types whose outputs stay float
    (ONNX Runtime's OpTypesToExcludeOutputQuantization; TENSORRT_INT8). ``pad_channels``: first pad conv layers
    with zero filters to a multiple of this many output channels (same function; CPU_INT8)."""
    onnx = require("onnx", "INT8 calibration")
    q = require("onnxruntime.quantization", "INT8 calibration")
    from edge_sr.imageio import atomic_path

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if method not in METHODS:
        raise EdgeSRError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    if activations not in ("int8", "uint8"):
        raise EdgeSRError(f"activations must be int8 (TensorRT-compatible) or uint8 (CPU only), not {activations!r}")
    if out_path.resolve() == fp32_path.resolve():
        raise EdgeSRError("the INT8 output must not overwrite the float32 model")
    mp = _load_fp32(onnx, fp32_path)
    excluded = resolve_exclusions(mp, keep_float)
    src_meta = {p.key: p.value for p in mp.metadata_props}

    calib_method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                    "percentile": q.CalibrationMethod.Percentile}[method]
    symmetric = activations == "int8"
    extra = {
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
    }
    if no_output_quant:
        extra["OpTypesToExcludeOutputQuantization"] = list(no_output_quant)
    # bounded memory: intermediate outputs are reduced every k samples. ONNX Runtime 1.32 loses
    # everything ("No data is collected") when k divides the sample count, so k never does.
    k = 16
    while k < len(samples) and len(samples) % k == 0:
        k += 1
    if k < len(samples):
        extra["CalibMaxIntermediateOutputs"] = k
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    if symmetric:
        extra["CalibTensorRangeSymmetric"] = True
        # TensorRT's parser takes int8 Q/DQ only: biases stay float (TensorRT fuses them itself)
        extra["QuantizeBias"] = False
    reader = LumaDataReader(mp.graph.input[0].name, samples)

    with tempfile.TemporaryDirectory(prefix="edge-sr-calib-") as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        src = fp32_path
        padded = 0
        if pad_channels:
            from edge_sr.deploy.fast_graph import pad_model_channels

            pm, padded = pad_model_channels(mp, pad_channels)
            src = Path(tmpdir) / "padded.onnx"
            onnx.save(pm, str(src))
        try:
            # symbolic shape inference fails on dynamic H/W; ONNX shape inference + optimisation do the job
            q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception as exc:
            raise EdgeSRError(f"quantization pre-processing failed on {fp32_path.name}: {str(exc).splitlines()[0][:200]}") from None
        with atomic_path(out_path) as tmp, contextlib.redirect_stdout(io.StringIO()) as chatter:
            try:
                q.quantize_static(
                    str(pre), str(tmp), reader,
                    quant_format=q.QuantFormat.QDQ,
                    activation_type=q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    per_channel=per_channel,
                    calibrate_method=calib_method,
                    nodes_to_exclude=excluded or None,
                    op_types_to_quantize=list(op_types) if op_types else None,
                    extra_options=extra,
                    calibration_providers=["CPUExecutionProvider"],
                )
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise EdgeSRError(f"ONNX Runtime quantization failed on {fp32_path.name}: {msg}") from None
            log.debug("quantize_static: %s", chatter.getvalue().strip())
            qm = onnx.load(str(tmp))
            if symmetric:
                _check_symmetric_int8(qm, onnx)
            n_q = sum(1 for n in qm.graph.node if n.op_type == "QuantizeLinear")
            if n_q == 0:
                raise EdgeSRError("quantization produced no QuantizeLinear node: nothing was quantized")
            float_nodes = sum(1 for n in qm.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear"))
            meta = dict(src_meta)
            meta.update({
                META_PREFIX + "precision": "int8",
                META_PREFIX + "int8": json.dumps({
                    "format": "QDQ", "activations": activations, "weights": "int8",
                    "symmetric_activations": symmetric, "per_channel": per_channel, "method": method,
                    "percentile": percentile if method == "percentile" else None,
                    "samples": int(len(samples)), "sample_shape": list(samples.shape[-2:]),
                    "kept_float": excluded, "tensorrt_compatible": symmetric,
                    "op_types": list(op_types) if op_types else "all",
                    "float_outputs": list(no_output_quant or []),
                    **({"padded_layers": padded, "pad_channels": pad_channels} if pad_channels else {}),
                }, sort_keys=True),
                META_PREFIX + "source_onnx": fp32_path.name,
            })
            from edge_sr.checkpoint import file_sha256

            meta[META_PREFIX + "source_onnx_sha256"] = file_sha256(fp32_path)
            replace_metadata(qm, meta)
            onnx.save(qm, str(tmp))
    return QuantizeResult(out_path, method, activations, excluded, n_q, float_nodes, len(samples))


def replace_metadata(mp, meta: dict) -> None:
    """The ModelProto's metadata_props become exactly ``meta`` (key -> string), in its order."""
    del mp.metadata_props[:]
    for k, v in meta.items():
        mp.metadata_props.add(key=k, value=v)


def _graph_maps(g):
    """A GraphProto's initializers by name, each tensor's producing node and its consumers."""
    init = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return init, prod, cons


def _concat_dq_inputs(g, init, prod, cons):
    """Each quantized Concat's (output QuantizeLinear, input DequantizeLinear) pairs: the Concat has one
    QuantizeLinear consumer and the input comes straight from a DequantizeLinear, both with scale and zero point
    initializers."""
    for c in [n for n in g.node if n.op_type == "Concat"]:
        outs = [n for n in cons.get(c.output[0], []) if n.op_type == "QuantizeLinear"]
        if len(outs) != 1 or len(outs[0].input) < 3 or not all(i in init for i in outs[0].input[1:3]):
            continue
        for inp in c.input:
            dq = prod.get(inp)
            if dq is not None and dq.op_type == "DequantizeLinear" and len(dq.input) >= 3 \
                    and all(i in init for i in dq.input[1:3]):
                yield outs[0], dq


def tie_concat_inputs(mp) -> int:
    """Give every quantized input of each quantized Concat the Concat's own output scale and zero point, in place.

    ONNX Runtime fuses DQ -> Concat -> Q into QLinearConcat, which requantizes every input byte through a lookup
    table unless that input already has the output's scale and zero point, then it copies (qlinear_concat.cc,
    LOOKUP_TABLE_IS_COPY). DCSCN's big Concat (every feature layer's output) took 13% of normal x2's CPU INT8 time
    on an AVX-512 VNNI EPYC (scripts/profile_ort.py). The inputs' own scales were 0.89-1.33x the Concat's (normal
    x2), so one shared range rounds them alike (measured: docs/benchmarks/README.md). Each input's producing
    QuantizeLinear and every DequantizeLinear of it change together, and each int32 conv bias that reads the
    tensor is requantized to its new input scale (bias scale = input scale x weight scale, which ONNX Runtime
    needs to fuse QLinearConv). Returns the number of tensors tied; an input that feeds two Concats is tied once."""
    from onnx import numpy_helper as nh

    g = mp.graph
    init, prod, cons = _graph_maps(g)

    def arr(name):
        return nh.to_array(init[name])

    def put(name, value):
        init[name].CopyFrom(nh.from_array(np.ascontiguousarray(value).astype(arr(name).dtype).reshape(arr(name).shape),
                                          name))

    tied: set[str] = set()
    for q_out, dq in _concat_dq_inputs(g, init, prod, cons):
        ys, yz = arr(q_out.input[1]), arr(q_out.input[2])
        t = dq.input[0]
        qn = prod.get(t)
        if t in tied or qn is None or qn.op_type != "QuantizeLinear" or arr(dq.input[2]).dtype != yz.dtype:
            continue
        dqs = [n for n in cons.get(t, []) if n.op_type == "DequantizeLinear"]
        for n in [qn] + dqs:
            put(n.input[1], ys)
            put(n.input[2], yz)
        for d in dqs:  # int32 biases of the convs that read this tensor
            for conv in [n for n in cons.get(d.output[0], []) if n.op_type == "Conv" and len(n.input) > 2]:
                bdq, wdq = prod.get(conv.input[2]), prod.get(conv.input[1])
                if (bdq is None or wdq is None or bdq.op_type != "DequantizeLinear"
                        or bdq.input[0] not in init or arr(bdq.input[0]).dtype != np.int32):
                    continue
                b = arr(bdq.input[0]).astype(np.float64) * arr(bdq.input[1]).astype(np.float64)
                bs = (np.float32(ys.reshape(-1)[0]) * arr(wdq.input[1]).astype(np.float32)).astype(np.float32)
                put(bdq.input[1], bs)
                put(bdq.input[0], np.round(b / bs.astype(np.float64)).astype(np.int32))
        tied.add(t)
    return len(tied)


def count_tied_concat_inputs(mp) -> int:
    """How many quantized Concat inputs carry their Concat's own output scale and zero point (what tie_concat_inputs
    makes; QAT with learned ranges moves them apart again)."""
    from onnx import numpy_helper as nh

    g = mp.graph
    init, prod, cons = _graph_maps(g)
    same = lambda a, b: np.array_equal(nh.to_array(init[a]), nh.to_array(init[b]))  # noqa: E731
    return len({dq.input[0] for q_out, dq in _concat_dq_inputs(g, init, prod, cons)
                if same(dq.input[1], q_out.input[1]) and same(dq.input[2], q_out.input[2])})


def tie_concat_file(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """tie_concat_inputs on an INT8 file, written atomically to ``dst`` (may be ``src``); metadata records it."""
    onnx = require("onnx", "INT8 calibration")
    from edge_sr.imageio import atomic_path

    mp = onnx.load(str(src))
    n = tie_concat_inputs(mp)
    meta = {p.key: p.value for p in mp.metadata_props}
    key = META_PREFIX + "int8"
    if key in meta:
        info = json.loads(meta[key])
        info["concat_inputs_tied"] = n
        meta[key] = json.dumps(info, sort_keys=True)
        replace_metadata(mp, meta)
    onnx.checker.check_model(mp)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(mp, str(tmp))
    return n


def pad_int8_file(src: str | os.PathLike, dst: str | os.PathLike, multiple: int | None = None) -> int:
    """A CPU INT8 file with its conv layers padded to a multiple of ``multiple`` (default CPU_INT8's) output channels
    after quantization (deploy.fast_graph.pad_model_channels on the Q/DQ graph: zero integer filters, the real
    channels' integer arithmetic untouched, so ONNX Runtime's output is the same bit for bit and no calibration is
    redone), written atomically to ``dst`` (may be ``src``); metadata records the padded layers, so refinement and
    QAT of the file pad their float model alike (train.qat.padded_like). Returns the number of layers padded (0 for
    a file padded before quantizing, or padded already)."""
    onnx = require("onnx", "INT8 calibration")
    from edge_sr.deploy.fast_graph import pad_model_channels
    from edge_sr.imageio import atomic_path

    multiple = multiple or CPU_INT8["pad_channels"]
    mp = onnx.load(str(src))
    key = META_PREFIX + "int8"
    meta = {p.key: p.value for p in mp.metadata_props}
    info = json.loads(meta.get(key, "{}"))
    if info.get("symmetric_activations") or info.get("activations") == "int8":
        raise EdgeSRError(f"{src}: a TensorRT (symmetric int8) file; padding is for the CPU INT8 file")
    if info.get("pad_channels") not in (None, multiple):
        raise EdgeSRError(f"{src}: padded to {info['pad_channels']} channels already, not {multiple}")
    padded, n = pad_model_channels(mp, multiple)
    if key in meta:
        info["pad_channels"] = multiple
        info["padded_layers"] = int(info.get("padded_layers") or 0) + n
        meta[key] = json.dumps(info, sort_keys=True)
        replace_metadata(padded, meta)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(padded, str(tmp))
    return n


def _check_symmetric_int8(mp, onnx) -> None:
    """Every Q/DQ zero point must be int8 0: what TensorRT accepts."""
    from onnx import numpy_helper

    inits = {i.name: i for i in mp.graph.initializer}
    for n in mp.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = inits.get(n.input[2])
            if zp is None:
                continue
            arr = numpy_helper.to_array(zp)
            if arr.dtype != np.int8 or np.any(arr != 0):
                raise EdgeSRError(f"quantized model is not symmetric signed INT8 at {n.name} "
                                  f"(zero point {arr.dtype} {arr.ravel()[:3]}): not TensorRT-compatible")
