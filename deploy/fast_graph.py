"""Graph-level speed-ups of an exported DCSCN ONNX model that keep its math.

ONNX Runtime's CPU profile of the straightforward export (x2, 320x240 LR, 2 threads; see
``scripts/profile_ort.py`` and docs/benchmarks/) shows where the time goes that is not convolution:

* ``PRelu`` with a per-channel slope runs through ONNX Runtime's generic broadcasting kernel: 5.3 ms
  for a [1, 28, 240, 320] tensor where ``Mul`` + ``Max`` take 0.5 ms. ``prelu(x) = max(x, a*x)`` holds
  exactly for every slope a <= 1 and ``min(x, a*x)`` for a >= 1 (the same product and a comparison,
  so the result is bit-identical). ``rewrite_prelu`` does that; a layer mixing slopes on both sides of 1
  becomes ``s * max(s*x, s*a*x)`` with s = +-1 per channel (two more cheap passes, still exact).
* The A1 and B1 1x1 convolutions read the whole feature concatenation each: ``merge_sibling_convs``
  makes them one convolution (weights stacked, the same dot products) followed by one PRelu of the
  stacked slopes and a ``Split``, so the big tensor is read once.
* Optional, off by default because they measured slower on this CPU (docs/benchmarks/):
  ``split_concat_convs`` replaces Concat -> 1x1 Conv by a sum of per-part 1x1 convolutions (no
  concatenation copy, but the Sum costs more; float addition order changes, ~1e-7), and
  ``pad_channels`` pads layers with zero filters to a multiple of 4 (or 16, the AVX-512 NCHWc block)
  channels so that more convolutions run in ONNX Runtime's blocked layout (the extra channels and
  reorders cost more than the blocked kernels gain).

Rewrite a file (verified against the original on a real image):
``python -m deploy.fast_graph model.onnx model.fast.onnx``. Rewrite the float32 model that ONNX
Runtime runs on a CPU; calibrate INT8 and build TensorRT engines from the plain export (TensorRT
fuses PRelu itself).

The bicubic stays outside the graph (``edge-sr export --residual``): cv2.resize takes ~1 ms where ONNX
Runtime's cubic ``Resize`` takes 17-45 ms. ``optimize`` applies the passes and returns a checked
model; ``optimize_file`` rewrites a file atomically and records the passes in its metadata.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sr.errors import EdgeSRError
from edge_sr.lazy import require

log = logging.getLogger(__name__)

META_KEY = "edge_sr.fast_graph"
DEFAULT_PASSES = ("merge_sibling_convs", "rewrite_prelu")
ALL_PASSES = ("pad_channels", "merge_sibling_convs", "split_concat_convs", "rewrite_prelu")


@dataclass
class FastGraphReport:
    passes: list[str] = field(default_factory=list)
    changes: dict = field(default_factory=dict)  # pass -> number of rewrites
    nodes_before: int = 0
    nodes_after: int = 0


class _Graph:
    """Small helpers over a GraphProto: initializers by name, consumers, unique names."""

    def __init__(self, onnx, model):
        self.onnx, self.model, self.g = onnx, model, model.graph
        self.init = {t.name: t for t in self.g.initializer}
        self._n = 0

    def array(self, name: str) -> np.ndarray | None:
        t = self.init.get(name)
        return None if t is None else self.onnx.numpy_helper.to_array(t)

    def add_init(self, name: str, arr: np.ndarray) -> str:
        name = self.unique(name)
        t = self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name)
        self.g.initializer.append(t)
        self.init[name] = t
        return name

    def unique(self, base: str) -> str:
        self._n += 1
        return f"{base}__fg{self._n}"

    def consumers(self) -> dict[str, list]:
        c = defaultdict(list)
        for n in self.g.node:
            for i in n.input:
                c[i].append(n)
        return c

    def drop_unused_initializers(self) -> None:
        used = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}
        keep = [t for t in self.g.initializer if t.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        self.init = {t.name: t for t in keep}

    def toposort(self) -> None:
        """Reorder nodes so each comes after the producers of its inputs (rewrites append nodes)."""
        ready = {i.name for i in self.g.input} | set(self.init) | {""}
        pending, ordered = list(self.g.node), []
        while pending:
            rest = []
            for n in pending:
                if all(i in ready for i in n.input):
                    ordered.append(n)
                    ready.update(n.output)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise EdgeSRError("fast_graph: rewritten graph has a cycle or a dangling input")
            pending = rest
        del self.g.node[:]
        self.g.node.extend(ordered)


def _attrs(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _is_pointwise_conv(g: _Graph, node) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2:
        return False
    w = g.array(node.input[1])
    if w is None or w.ndim != 4 or w.shape[2:] != (1, 1):
        return False
    if len(node.input) > 2 and node.input[2] and g.array(node.input[2]) is None:
        return False
    a = _attrs(g.onnx, node)
    return (a.get("group", 1) == 1 and all(v == 1 for v in a.get("strides", [1, 1]))
            and all(v == 1 for v in a.get("dilations", [1, 1])) and not any(a.get("pads", [0, 0, 0, 0]))
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def _bias(g: _Graph, node, cout: int) -> np.ndarray:
    if len(node.input) > 2 and node.input[2]:
        return g.array(node.input[2]).astype(np.float32)
    return np.zeros(cout, np.float32)


def merge_sibling_convs(g: _Graph) -> int:
    """1x1 convolutions reading the same tensor -> one convolution (+ one PRelu when each had its
    own constant-slope PRelu, one Relu when each had a Relu) and a Split. Returns the number of groups merged."""
    oh = g.onnx.helper
    merged = 0
    cons = g.consumers()
    for tensor, users in list(cons.items()):
        convs = [n for n in users if _is_pointwise_conv(g, n)]
        if len(convs) < 2:
            continue
        ws = [g.array(n.input[1]) for n in convs]
        couts = [w.shape[0] for w in ws]
        w_all = np.concatenate(ws, axis=0)
        b_all = np.concatenate([_bias(g, n, c) for n, c in zip(convs, couts)])
        # a PRelu right after each conv (sole consumer, constant per-channel slope) merges too
        prelus = []
        for n, c in zip(convs, couts):
            u = cons.get(n.output[0], [])
            slope = g.array(u[0].input[1]) if len(u) == 1 and u[0].op_type == "PRelu" else None
            if slope is None or slope.size not in (1, c):
                prelus = None
                break
            prelus.append((u[0], np.broadcast_to(slope.reshape(-1), (c,)).astype(np.float32)))
        name = g.unique("merged_conv")
        conv = oh.make_node("Conv", [tensor, g.add_init(name + "_W", w_all), g.add_init(name + "_B", b_all)],
                            [name + "_out"], name=name, kernel_shape=[1, 1])
        new_nodes, src = [conv], conv.output[0]
        # or a Relu after each (the ReLU variant of the network): one Relu on the merged output
        relus = [cons.get(n.output[0], []) for n in convs]
        relus = [u[0] for u in relus if len(u) == 1 and u[0].op_type == "Relu"]
        if not prelus and len(relus) == len(convs):
            rn = g.unique("merged_relu")
            new_nodes.append(oh.make_node("Relu", [src], [rn + "_out"], name=rn))
            src = rn + "_out"
            outs = [r.output[0] for r in relus]
            dead = convs + relus
        elif prelus:
            slope = np.concatenate([s for _, s in prelus]).reshape(-1, 1, 1)
            pn = g.unique("merged_prelu")
            new_nodes.append(oh.make_node("PRelu", [src, g.add_init(pn + "_slope", slope)], [pn + "_out"], name=pn))
            src = pn + "_out"
            outs = [p.output[0] for p, _ in prelus]
            dead = convs + [p for p, _ in prelus]
        else:
            outs = [n.output[0] for n in convs]
            dead = convs
        sn = g.unique("merged_split")
        new_nodes.append(oh.make_node("Split", [src, g.add_init(sn + "_sizes", np.array(couts, np.int64))], outs,
                                      name=sn, axis=1))
        for n in dead:
            g.g.node.remove(n)
        g.g.node.extend(new_nodes)
        merged += 1
        cons = g.consumers()
    return merged


def split_concat_convs(g: _Graph) -> int:
    """Concat(axis=1) whose every consumer is a 1x1 conv -> per consumer, a sum of 1x1 convs over the
    parts (no concatenated copy). Channel counts come from ONNX shape inference."""
    onnx, oh = g.onnx, g.onnx.helper
    chans = _channels(g)
    done = 0
    cons = g.consumers()
    for cat in [n for n in g.g.node if n.op_type == "Concat"]:
        if _attrs(onnx, cat).get("axis") not in (1, -3):
            continue
        users = cons.get(cat.output[0], [])
        parts = list(cat.input)
        if not users or not all(_is_pointwise_conv(g, u) for u in users) or not all(p in chans for p in parts):
            continue
        sizes = [chans[p] for p in parts]
        for u in users:
            w = g.array(u.input[1])
            if w.shape[1] != sum(sizes):
                break
        else:
            for u in users:
                w, off, terms = g.array(u.input[1]), 0, []
                b = _bias(g, u, w.shape[0])
                for k, (p, c) in enumerate(zip(parts, sizes)):
                    nm = g.unique("part_conv")
                    ins = [p, g.add_init(nm + "_W", w[:, off : off + c])]
                    if k == 0:
                        ins.append(g.add_init(nm + "_B", b))
                    g.g.node.append(oh.make_node("Conv", ins, [nm + "_out"], name=nm, kernel_shape=[1, 1]))
                    terms.append(nm + "_out")
                    off += c
                g.g.node.append(oh.make_node("Sum", terms, [u.output[0]], name=g.unique("part_sum")))
                g.g.node.remove(u)
            g.g.node.remove(cat)
            done += 1
            cons = g.consumers()
    return done


def _channels(g: _Graph) -> dict[str, int]:
    onnx = g.onnx
    inferred = onnx.shape_inference.infer_shapes(g.model)
    chans = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            chans[vi.name] = dims[1].dim_value
    return chans


def _set_init(g: _Graph, name: str, arr: np.ndarray) -> None:
    t = g.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name)
    g.init[name].CopyFrom(t)


# zero-preserving pointwise ops an activation is made of: Relu, PRelu, rewrite_prelu's Mul / Max / Min forms, and in
# an INT8 file the per-tensor QuantizeLinear / DequantizeLinear pairs around them
_ACTIVATION_OPS = ("Relu", "PRelu", "Mul", "Max", "Min", "QuantizeLinear", "DequantizeLinear")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


class _Param:
    """A conv's weight or bias: a float initializer, or (in an INT8 Q/DQ file) the DequantizeLinear of an integer
    initializer with its scale and zero point, per tensor or per output channel (axis 0). ``ok`` is False for
    anything else (a computed tensor)."""

    def __init__(self, g: _Graph, producers: dict, tensor: str):
        self.g, self.ok, self.dq = g, False, None
        if tensor in g.init:
            self.names, self.ok = [tensor], True
            return
        n = producers.get(tensor)
        if n is None or n.op_type != "DequantizeLinear" or not all(i in g.init for i in n.input if i):
            return
        q = g.array(n.input[0])
        axis = _attrs(g.onnx, n).get("axis", 1)
        per_channel = [g.array(i).size > 1 for i in n.input[1:] if i]
        if any(per_channel) and (axis % max(q.ndim, 1)) != 0:
            return
        self.dq, self.names, self.ok = n, [i for i in n.input], True

    @property
    def shape(self):
        return self.g.array(self.names[0]).shape

    def exclusive(self, cons) -> bool:
        """Read by one node only (its data, per-channel scale and zero point, the DequantizeLinear's output): padded
        in place, it changes nothing else."""
        if not self.ok:
            return False
        outs = [self.dq.output[0]] if self.dq is not None else []
        padded = [self.names[0]] + [n for n in self.names[1:] if n and self.g.array(n).size > 1]
        return all(len(cons.get(t, [])) == 1 for t in outs + padded)

    def pad_out(self, extra: int, scale_fill=None) -> None:
        """``extra`` zero output channels (axis 0); ``scale_fill``: the new channels' scales (else the median)."""
        g = self.g
        q = g.array(self.names[0])
        _set_init(g, self.names[0], np.concatenate([q, np.zeros((extra,) + q.shape[1:], q.dtype)]))
        if self.dq is None:
            return
        for k, name in enumerate(self.names[1:3], 1):  # a per-channel scale: the median (any positive value
            if not name:  # works: the weights are 0); a per-channel zero point: 0
                continue
            a = g.array(name)
            if a.size > 1:
                fill = np.full(extra, np.median(a) if k == 1 else 0, a.dtype)
                if k == 1 and scale_fill is not None:
                    fill = np.asarray(scale_fill, a.dtype).reshape(extra)
                _set_init(g, name, np.concatenate([a.reshape(-1), fill]))

    def pad_in(self, at: int, extra: int) -> None:
        """``extra`` input channels (axis 1) inserted at ``at`` whose weights are 0 (the zero point in an INT8 file)."""
        g = self.g
        w = g.array(self.names[0])
        fill = np.zeros((w.shape[0], extra) + w.shape[2:], w.dtype)
        if self.dq is not None and len(self.names) > 2 and self.names[2]:
            zp = g.array(self.names[2]).reshape(-1)
            fill[:] = zp.reshape((-1,) + (1,) * (w.ndim - 1)) if zp.size > 1 else zp[0]
        _set_init(g, self.names[0], np.concatenate([w[:, :at], fill, w[:, at:]], axis=1))


def _per_tensor(g: _Graph, n) -> bool:
    return n.op_type in _QDQ and all(g.array(i) is not None and g.array(i).size == 1 for i in n.input[1:] if i)


def _activation_region(g: _Graph, conv, cons, n_out: int):
    """The activation after ``conv``: the pointwise nodes (``_ACTIVATION_OPS``) fed by its output and by constants
    (scalars, or one value per channel shaped [..., C, 1, 1]) that map a zero channel to zero: a Relu, a PRelu,
    rewrite_prelu's Mul + Max / Min and sign-flipped forms, and an INT8 file's per-tensor Q/DQ. Returns (the tensors
    of the region read outside it, [(node, input index)] of the per-channel constants), or None when the region is
    empty, reaches a graph output or leaves the conv's own output read outside it."""
    region, inside, consts = {conv.output[0]}, [], []
    nodes = list(g.g.node)
    exported = set()
    for n in nodes[nodes.index(conv) + 1:]:
        ins = [i for i in n.input if i in region]
        if not ins:
            continue
        ok = n.op_type in _ACTIVATION_OPS and len(n.output) == 1 and (n.op_type not in _QDQ or _per_tensor(g, n))
        found = []
        for k, i in enumerate(n.input):
            if not ok or i in region or (not i and n.op_type in _QDQ):
                continue
            a = g.array(i)
            if a is None:
                ok = False
            elif a.size == 1:
                ok = n.op_type not in ("Max", "Min") or float(a.reshape(-1)[0]) == 0.0
            elif a.ndim >= 3 and a.size == n_out and a.shape[-3] == n_out:
                found.append((n, k))
            else:
                ok = False
        if ok:
            inside.append(n)
            consts += found
            region.add(n.output[0])
        else:
            exported.update(ins)
    if not inside or conv.output[0] in exported or region & {o.name for o in g.g.output}:
        return None
    return exported, consts


def _conv_readers(g: _Graph, cons, t: str):
    """The nodes that read ``t``, through per-tensor Q/DQ chains: [(node, the tensor it reads)], None if a chain ends
    nowhere."""
    out = []
    for u in cons.get(t, []):
        if _per_tensor(g, u):
            sub = _conv_readers(g, cons, u.output[0])
            if not sub:
                return None
            out += sub
        else:
            out.append((u, t))
    return out


def pad_channels(g: _Graph, multiple: int = 4, min_channels: int = 16) -> int:
    """Conv -> activation layers whose channel count is not a multiple of ``multiple`` get zero filters
    (zero weights, bias and per-channel activation constants: the extra channels are exactly 0) and every
    consumer conv gets zero input weights for them, through a channel Concat too. The activation is a Relu,
    a PRelu or rewrite_prelu's Mul / Max form (``_activation_region``), and the graph a float one or an INT8
    Q/DQ file (weights behind DequantizeLinear, per-tensor Q/DQ between the layers): the integer arithmetic of
    the real channels is unchanged, so a shipped CPU INT8 file pads without re-calibration. ONNX Runtime runs a
    convolution in its blocked NCHWc layout only when its input channels are a multiple of the block (8 with
    AVX2, 16 with AVX-512) or fewer than it; the others fall back to im2col + GEMM; its u8s8 kernels are faster
    on such channel counts too. Returns the number of layers padded."""
    done = 0
    while True:
        chans, cons = _channels(g), g.consumers()
        producers = {o: n for n in g.g.node for o in n.output}
        for conv in [n for n in g.g.node if n.op_type == "Conv"]:
            w = _Param(g, producers, conv.input[1])
            if not w.exclusive(cons) or len(w.shape) != 4 or _attrs(g.onnx, conv).get("group", 1) != 1:
                continue
            n_out = w.shape[0]
            if n_out % multiple == 0 or n_out < min_channels:
                continue
            b = _Param(g, producers, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
            if b is not None and not b.exclusive(cons):
                continue
            region = _activation_region(g, conv, cons, n_out)
            if region is None:
                continue
            exported, consts = region
            # readers of the activation: convs (as data input) or channel Concats read only by convs
            plan, ok = [], bool(exported)
            for t in exported:
                for u in cons.get(t, []):
                    if u.op_type == "Conv" and list(u.input).index(t) == 0 and _attrs(g.onnx, u).get("group", 1) == 1 \
                            and _Param(g, producers, u.input[1]).exclusive(cons):
                        plan.append((u, 0))
                    elif u.op_type == "Concat" and _attrs(g.onnx, u).get("axis") in (1, -3) and all(i in chans for i in u.input):
                        off = 0
                        for i in u.input:
                            if i == t:
                                break
                            off += chans[i]
                        readers = _conv_readers(g, cons, u.output[0])
                        if not readers or not all(r.op_type == "Conv" and r.input[0] == rt
                                                  and _Param(g, producers, r.input[1]).exclusive(cons)
                                                  and _attrs(g.onnx, r).get("group", 1) == 1 for r, rt in readers):
                            ok = False
                            break
                        plan += [(r, off) for r, _ in readers]
                    else:
                        ok = False
                        break
                if not ok:
                    break
            if not ok or not plan:
                continue
            extra = multiple - n_out % multiple
            w.pad_out(extra)
            if b is not None:
                # an int32 bias keeps ONNX Runtime's invariant bias scale = input scale x weight scale (QLinearConv)
                fill, x = None, producers.get(conv.input[0])
                if b.dq is not None and w.dq is not None and x is not None and _per_tensor(g, x) \
                        and x.op_type == "DequantizeLinear" and g.array(w.names[1]).size > 1:
                    fill = float(g.array(x.input[1]).reshape(-1)[0]) * g.array(w.names[1]).reshape(-1)[n_out:]
                b.pad_out(extra, fill)
            for node, k in consts:
                name = node.input[k]
                a = g.array(name)
                pad = np.zeros(a.shape[:-3] + (extra,) + a.shape[-2:], a.dtype)
                padded = np.concatenate([a, pad], axis=a.ndim - 3)
                if len(cons.get(name, [])) == 1:  # its own constant: padded in place (names stay, for train.qat)
                    _set_init(g, name, padded)
                else:  # shared (rewrite_prelu's sign vector): a padded copy for this node
                    node.input[k] = g.add_init(name, padded)
            for r, off in plan:
                _Param(g, producers, r.input[1]).pad_in(off + n_out, extra)
            done += 1
            break
        else:
            return done


def rewrite_prelu(g: _Graph) -> int:
    """PRelu(x, a) with a constant slope -> Max(x, a*x) (all a <= 1), Min(x, a*x) (all a >= 1), else
    s*Max(s*x, s*a*x) with s = +1 where a <= 1 and -1 elsewhere. All are bit-identical to PRelu
    (ONNX Runtime's Where is as slow as its PRelu, so it is not used)."""
    oh = g.onnx.helper
    done = 0
    for n in [n for n in g.g.node if n.op_type == "PRelu"]:
        a = g.array(n.input[1])
        if a is None:
            continue
        if np.all(a <= 1):
            op = "Max"
        elif np.all(a >= 1):
            op = "Min"
        else:  # slopes on both sides of 1: s * max(s*x, s*a*x) with s = +-1 per channel, still exact
            op = "SignedMax"
        nm = g.unique((n.name or "prelu").strip("/").replace("/", "_"))
        if op == "SignedMax":
            sign = np.where(a <= 1, 1.0, -1.0).astype(np.float32)
            s_name, sa_name = g.add_init(nm + "_s", sign), g.add_init(nm + "_sa", sign * a)
            new = [oh.make_node("Mul", [n.input[0], s_name], [nm + "_sx"], name=nm + "_mul_s"),
                   oh.make_node("Mul", [n.input[0], sa_name], [nm + "_sax"], name=nm + "_mul_sa"),
                   oh.make_node("Max", [nm + "_sx", nm + "_sax"], [nm + "_smax"], name=nm + "_max"),
                   oh.make_node("Mul", [nm + "_smax", s_name], [n.output[0]], name=nm + "_unsign")]
        else:
            new = [oh.make_node("Mul", [n.input[0], n.input[1]], [nm + "_ax"], name=nm + "_mul"),
                   oh.make_node(op, [n.input[0], nm + "_ax"], [n.output[0]], name=nm + "_" + op.lower())]
        idx = list(g.g.node).index(n)
        g.g.node.remove(n)
        for k in reversed(new):
            g.g.node.insert(idx, k)
        done += 1
    return done


_PASSES = {"pad_channels": pad_channels, "merge_sibling_convs": merge_sibling_convs, "split_concat_convs": split_concat_convs,
           "rewrite_prelu": rewrite_prelu}


def pad_model_channels(model, multiple: int = 8):
    """A copy of ``model`` with every conv + activation layer padded to a multiple of ``multiple`` output
    channels (pad_channels, any channel count). Returns (model, layers padded). For INT8: the calibration
    ranges of the zero channels are 0 and the function is unchanged."""
    onnx = require("onnx", "rewriting ONNX graphs")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    g = _Graph(onnx, m)
    n = pad_channels(g, multiple, min_channels=1)
    g.toposort()
    g.drop_unused_initializers()
    onnx.checker.check_model(m)
    return m, n


def optimize(model, passes=DEFAULT_PASSES):
    """Apply ``passes`` (names of ALL_PASSES, in the canonical order) to an ONNX ModelProto (copied).
    Returns (model, FastGraphReport)."""
    onnx = require("onnx", "rewriting ONNX graphs")
    unknown = set(passes) - set(ALL_PASSES)
    if unknown:
        raise EdgeSRError(f"unknown fast_graph pass(es): {', '.join(sorted(unknown))} (known: {', '.join(ALL_PASSES)})")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]  # shapes recorded by the exporter go stale when channels change
    g = _Graph(onnx, m)
    rep = FastGraphReport(nodes_before=len(m.graph.node))
    for name in ALL_PASSES:  # canonical order: pad first, merge before split, PRelu last
        if name in passes:
            rep.changes[name] = _PASSES[name](g)
            rep.passes.append(name)
            g.toposort()
    g.drop_unused_initializers()
    rep.nodes_after = len(m.graph.node)
    onnx.checker.check_model(m)
    return m, rep


def optimize_file(src: str | os.PathLike, dst: str | os.PathLike, passes=DEFAULT_PASSES) -> FastGraphReport:
    """Rewrite the ONNX file ``src`` into ``dst`` (atomically); metadata is kept, the passes are added."""
    onnx = require("onnx", "rewriting ONNX graphs")
    from edge_sr.imageio import atomic_path

    src = Path(src)
    if not src.is_file():
        raise EdgeSRError(f"ONNX model not found: {src}")
    try:
        mp = onnx.load(str(src))
    except Exception as exc:
        raise EdgeSRError(f"not a loadable ONNX model: {src} ({str(exc).splitlines()[0][:200]})") from None
    m, rep = optimize(mp, passes)
    keep = [p for p in m.metadata_props if p.key != META_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    m.metadata_props.add(key=META_KEY, value=",".join(f"{k}:{v}" for k, v in rep.changes.items()))
    with atomic_path(Path(dst)) as tmp:
        onnx.save(m, str(tmp))
    return rep


def verify_equivalent(reference: str | os.PathLike, rewritten: str | os.PathLike, data_root=None) -> tuple[float, str]:
    """Max |rewritten - reference| of two ONNX files on a real image's luma (Set5 when present)."""
    ort = require("onnxruntime", "verifying the rewritten graph")
    from edge_sr.deploy.export import verification_input

    y, source = verification_input(data_root)
    outs = []
    for p in (reference, rewritten):
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: y[None, None]})[0])
    if outs[0].shape != outs[1].shape:
        raise EdgeSRError(f"rewritten graph outputs {outs[1].shape}, the original {outs[0].shape}")
    return float(np.abs(outs[0] - outs[1]).max()), source


def main(argv=None) -> int:
    """python -m deploy.fast_graph IN.onnx OUT.onnx [--passes ...]: rewrite, verify, write."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m deploy.fast_graph", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="float32 ONNX export (edge-sr export --residual)")
    ap.add_argument("dst", help="rewritten ONNX file")
    ap.add_argument("--passes", default=",".join(DEFAULT_PASSES),
                    help=f"comma-separated, of {', '.join(ALL_PASSES)} (default: {','.join(DEFAULT_PASSES)})")
    ap.add_argument("--data", default=None, help="data folder holding val/set5 for the verification image")
    args = ap.parse_args(argv)
    try:
        if Path(args.dst).resolve() == Path(args.src).resolve():
            raise EdgeSRError("write the rewritten graph to a new file, not over its source")
        passes = tuple(p.strip() for p in args.passes.split(",") if p.strip())
        rep = optimize_file(args.src, args.dst, passes)
        diff, source = verify_equivalent(args.src, args.dst, args.data)
        if not diff < 1e-4:
            Path(args.dst).unlink(missing_ok=True)
            raise EdgeSRError(f"rewritten graph differs from {args.src} by {diff:.3g}: not written")
    except EdgeSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code if hasattr(exc, "exit_code") else 1
    changes = ", ".join(f"{k} {v}" for k, v in rep.changes.items())
    print(f"wrote {args.dst}: {rep.nodes_before} -> {rep.nodes_after} nodes ({changes}); max abs diff vs "
          f"{Path(args.src).name} on {source}: {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
