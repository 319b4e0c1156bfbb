"""deploy.fast_graph: rewrites that keep the math (PRelu -> Mul/Max, merged 1x1 convs, optional ones)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from edge_sr.errors import EdgeSRError  # noqa: E402


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Residual and full exports of a compact model whose PReLU slopes cover every case: all <= 1
    (incl. negative), all >= 1, and mixed."""
    from edge_sr.deploy.export import export_onnx
    from edge_sr.checkpoint import save_checkpoint
    from edge_sr.config import preset
    from edge_sr.model import DCSCN

    torch.manual_seed(3)
    m = DCSCN(preset("compact", 2))
    with torch.no_grad():
        m.last.weight.normal_(0, 0.05)
        prelus = [mod for mod in m.modules() if isinstance(mod, torch.nn.PReLU)]
        prelus[0].weight.uniform_(-0.5, 0.9)
        prelus[1].weight.uniform_(1.0, 2.0)
        prelus[2].weight.uniform_(-0.3, 1.7)  # mixed
    d = tmp_path_factory.mktemp("fast")
    ckpt = d / "slopes_compact_x2.safetensors"
    save_checkpoint(ckpt, m.config, {k: v.numpy() for k, v in m.state_dict().items()})
    return {kind: export_onnx(ckpt, d / f"{kind}.onnx", residual=kind == "residual").path for kind in ("residual", "y")}


def _run(path, y):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: y[None, None]})[0]


def _ops(mp):
    out = {}
    for n in mp.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def _luma(h, w, seed=0):
    from conftest import textured_bgr

    from edge_sr.color import y_from_bgr_u8

    return np.ascontiguousarray(y_from_bgr_u8(textured_bgr(h, w, seed)) / 255.0, dtype=np.float32)


@pytest.mark.parametrize("kind", ["residual", "y"])
def test_default_passes_are_exact(exports, tmp_path, kind):
    from edge_sr.deploy.fast_graph import optimize

    mp = onnx.load(str(exports[kind]))
    fast, rep = optimize(mp)
    before, after = _ops(mp), _ops(fast)
    assert "PRelu" not in after and after["Max"] >= 1 and after["Min"] >= 1  # all three slope cases handled
    assert rep.changes["rewrite_prelu"] == before["PRelu"] - 1  # A1 and B1 PRelus merged into one first
    assert after["Conv"] == before["Conv"] - 1 and after["Split"] == 1
    p = tmp_path / "fast.onnx"
    onnx.save(fast, str(p))
    for h, w in ((37, 53), (20, 64)):  # dynamic shapes still work
        y = _luma(h, w)
        np.testing.assert_array_equal(_run(p, y), _run(exports[kind], y))  # bit-identical


def test_relu_network_merges_its_relus_exactly(tmp_path):
    """The ReLU variant: A1 and B1 become one conv, one Relu and a Split, bit-identical to the plain export."""
    from conftest import relu_compact_checkpoint

    from edge_sr.deploy.export import export_onnx
    from edge_sr.deploy.fast_graph import optimize

    ckpt = relu_compact_checkpoint(tmp_path / "relu_compact_x2.safetensors", seed=5)
    plain = export_onnx(ckpt, tmp_path / "plain.onnx", residual=True).path
    mp = onnx.load(str(plain))
    fast, rep = optimize(mp)
    before, after = _ops(mp), _ops(fast)
    assert rep.changes["merge_sibling_convs"] == 1 and "PRelu" not in before
    assert after["Conv"] == before["Conv"] - 1 and after["Relu"] == before["Relu"] - 1 and after["Split"] == 1
    split = next(n for n in fast.graph.node if n.op_type == "Split")
    prod = {o: n for n in fast.graph.node for o in n.output}
    assert prod[split.input[0]].op_type == "Relu"  # the Relu sits on the merged conv, before the Split
    p = tmp_path / "fast.onnx"
    onnx.save(fast, str(p))
    y = _luma(29, 41, 2)
    np.testing.assert_array_equal(_run(p, y), _run(plain, y))


@pytest.mark.parametrize("passes", [("split_concat_convs",), ("pad_channels",),
                                    ("pad_channels", "merge_sibling_convs", "split_concat_convs", "rewrite_prelu")])
def test_optional_passes_keep_the_math(exports, tmp_path, passes):
    from edge_sr.deploy.fast_graph import optimize

    fast, rep = optimize(onnx.load(str(exports["residual"])), passes)
    assert all(rep.changes[p] >= 1 for p in passes)
    p = tmp_path / "opt.onnx"
    onnx.save(fast, str(p))
    y = _luma(31, 45, 1)
    ref = _run(exports["residual"], y)
    got = _run(p, y)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-5
    if "pad_channels" in passes:
        init = {t.name: onnx.numpy_helper.to_array(t) for t in fast.graph.initializer}
        couts = [init[n.input[1]].shape[0] for n in fast.graph.node if n.op_type == "Conv"]
        assert all(c % 4 == 0 or c < 16 for c in couts), couts


def test_padding_reads_the_fast_graphs_prelu_forms(exports, tmp_path):
    """pad_model_channels (the CPU INT8 file's padding) on the fast graph, whose PReLUs are Mul + Max, Min and
    the sign-flipped form: the same layers padded as in the plain export's PRelu graph, the same function."""
    from edge_sr.deploy.fast_graph import optimize, pad_model_channels

    plain = onnx.load(str(exports["residual"]))
    fast, rep = optimize(plain)
    assert rep.changes["rewrite_prelu"] >= 3 and "PRelu" not in _ops(fast)
    ops = _ops(fast)
    assert ops["Max"] >= 1 and ops["Min"] >= 1  # the fixture's slopes give every rewritten form
    padded_plain, n_plain = pad_model_channels(plain, 8)
    padded_fast, n_fast = pad_model_channels(fast, 8)
    assert n_plain >= 4 and n_fast == n_plain
    y = _luma(29, 37, 2)
    ref = _run(exports["residual"], y)
    for k, m in enumerate((padded_plain, padded_fast)):
        p = tmp_path / f"padded{k}.onnx"
        onnx.save(m, str(p))
        assert np.abs(_run(p, y) - ref).max() < 1e-5
    init = {t.name: onnx.numpy_helper.to_array(t) for t in padded_fast.graph.initializer}
    couts = sorted(init[n.input[1]].shape[0] for n in padded_fast.graph.node if n.op_type == "Conv")
    unpadded = sorted(onnx.numpy_helper.to_array(t).shape[0] for t in fast.graph.initializer
                      if t.name in {n.input[1] for n in fast.graph.node if n.op_type == "Conv"})
    assert sum(c % 8 != 0 for c in couts) == sum(c % 8 != 0 for c in unpadded) - n_fast


def test_file_rewrite_keeps_metadata_and_opens_in_the_backend(exports, tmp_path):
    from edge_sr.deploy.fast_graph import optimize_file, verify_equivalent
    from edge_sr.backends import open_upscaler

    dst = tmp_path / "m.fast.onnx"
    rep = optimize_file(exports["residual"], dst)
    assert rep.nodes_after != rep.nodes_before
    meta = {p.key: p.value for p in onnx.load(str(dst)).metadata_props}
    assert meta["edge_sr.output"] == "residual" and "rewrite_prelu" in meta["edge_sr.fast_graph"]
    diff, _ = verify_equivalent(exports["residual"], dst)
    assert diff == 0.0
    with open_upscaler(dst, threads=1) as up, open_upscaler(exports["residual"], threads=1) as ref:
        from conftest import textured_bgr

        frame = textured_bgr(24, 32)
        assert up.output_is_residual and up.config == ref.config
        np.testing.assert_array_equal(up.upscale(frame), ref.upscale(frame))


def test_errors(exports, tmp_path):
    from edge_sr.deploy.fast_graph import main, optimize, optimize_file

    with pytest.raises(EdgeSRError, match="unknown fast_graph pass"):
        optimize(onnx.load(str(exports["residual"])), ("fuse_everything",))
    with pytest.raises(EdgeSRError, match="not found"):
        optimize_file(tmp_path / "nope.onnx", tmp_path / "out.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(EdgeSRError, match="not a loadable ONNX"):
        optimize_file(bad, tmp_path / "out.onnx")
    assert main([str(exports["residual"]), str(exports["residual"])]) == 2  # never over its source
    assert not (tmp_path / "out.onnx").exists()


def test_padding_leaves_a_shared_weight_alone():
    """A weight two convs read is not padded in place (it would widen the other conv too): nothing padded, same outputs."""
    from onnx import TensorProto, helper as oh, numpy_helper as nh

    from edge_sr.deploy.fast_graph import pad_model_channels

    rng = np.random.default_rng(0)
    w1 = nh.from_array(rng.normal(size=(5, 1, 3, 3)).astype(np.float32), "W1")
    w2 = nh.from_array(rng.normal(size=(1, 5, 3, 3)).astype(np.float32), "W2")
    nodes = [oh.make_node("Conv", ["x", "W1"], ["a"], pads=[1, 1, 1, 1]), oh.make_node("Relu", ["a"], ["r"]),
             oh.make_node("Conv", ["r", "W2"], ["y"], pads=[1, 1, 1, 1]),
             oh.make_node("Conv", ["x", "W1"], ["y2"], pads=[1, 1, 1, 1])]
    vi = lambda n, c: oh.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, 8, 8])  # noqa: E731
    m = oh.make_model(oh.make_graph(nodes, "g", [vi("x", 1)], [vi("y", 1), vi("y2", 5)], [w1, w2]),
                      opset_imports=[oh.make_opsetid("", 17)])
    padded, n = pad_model_channels(m, 8)
    assert n == 0
    x = rng.random((1, 1, 8, 8), dtype=np.float32)
    run = lambda mp: ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})  # noqa: E731
    for a, b in zip(run(padded), run(m)):
        np.testing.assert_array_equal(a, b)
    m.graph.node[3].input[1] = "W1b"  # its own copy: now the first conv pads
    m.graph.initializer.append(nh.from_array(nh.to_array(w1), "W1b"))
    assert pad_model_channels(m, 8)[1] == 1
