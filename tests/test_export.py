"""edge-sr export: I/O contract, metadata, dynamic shapes, self-verification, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    from edge_sr.deploy.export import export_onnx

    d = tmp_path_factory.mktemp("export")
    return {kind: export_onnx(tiny_checkpoint, d / f"m_{kind}.onnx", residual=kind == "residual")
            for kind in ("y", "residual")}


@pytest.mark.parametrize("kind", ["y", "residual"])
def test_contract_and_metadata(exported, tiny_checkpoint, kind):
    from edge_sr.checkpoint import file_sha256

    res = exported[kind]
    mp = onnx.load(str(res.path))
    onnx.checker.check_model(mp)
    assert mp.opset_import[0].version == 17
    (inp,), (out,) = mp.graph.input, mp.graph.output
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims[:2] == [1, 1] and all(isinstance(d, str) for d in dims[2:])  # dynamic H, W
    meta = {p.key: p.value for p in mp.metadata_props}
    assert meta["edge_sr.output"] == kind and meta["edge_sr.scale"] == "2" and meta["edge_sr.preset"] == "compact"
    assert meta["edge_sr.source_sha256"] == file_sha256(tiny_checkpoint)
    assert json.loads(meta["edge_sr.config"])["layers"] == 7 and "torch" in json.loads(meta["edge_sr.versions"])
    assert ("Resize" in res.ops) == (kind == "y") and "DepthToSpace" in res.ops
    assert res.max_abs_diff < 1e-4


@pytest.mark.parametrize("kind", ["y", "residual"])
def test_dynamic_shapes_match_torch(exported, tiny_checkpoint, kind):
    from edge_sr.backends.torch_backend import TorchUpscaler

    model = TorchUpscaler(tiny_checkpoint).model
    sess = ort.InferenceSession(str(exported[kind].path), providers=["CPUExecutionProvider"])
    for h, w in ((17, 23), (40, 31)):
        x = np.random.default_rng(h).random((1, 1, h, w), dtype=np.float32)
        got = sess.run(None, {"y_lr": x})[0]
        with torch.inference_mode():
            t = torch.from_numpy(x)
            ref = (model(t) if kind == "y" else model.residual(t)).numpy()
        assert got.shape == (1, 1, 2 * h, 2 * w)
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_cli_export_prints_verification(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    r = run_cli("export", "--model", str(tiny_checkpoint), "--residual", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "max abs diff" in r.stdout and "output=residual" in r.stdout and out.is_file()


def test_cli_export_bad_input(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    for args in (["--model", str(bad)], ["--model", str(tmp_path / "missing.safetensors")],
                 ["--model", str(tiny_checkpoint), "--scale", "3"]):
        out = tmp_path / "m.onnx"
        r = run_cli("export", *args, "-o", str(out))
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists() and not list(tmp_path.glob(".m.onnx*"))
    r = run_cli("export", "--model", str(tiny_checkpoint), "-o", str(tmp_path / "m.txt"))
    assert r.returncode == 2 and ".onnx" in r.stderr


def test_fast_export_keeps_the_math(tiny_checkpoint, tmp_path):
    """--fast rewrites the graph (no PRelu left) and records it, with the same output as the plain export."""
    import numpy as np
    import onnx

    from edge_sr.deploy.export import export_onnx
    from edge_sr.backends import open_upscaler

    plain = export_onnx(tiny_checkpoint, tmp_path / "plain.onnx", residual=True, verify=False).path
    fast = export_onnx(tiny_checkpoint, tmp_path / "fast.onnx", residual=True, fast=True).path
    ops = {n.op_type for n in onnx.load(str(fast)).graph.node}
    assert "PRelu" not in ops and "Max" in ops
    meta = {p.key: p.value for p in onnx.load(str(fast)).metadata_props}
    assert "rewrite_prelu" in meta["edge_sr.fast_graph"]
    y = np.random.default_rng(0).uniform(0, 1, (23, 31)).astype(np.float32)
    a, b = open_upscaler(plain), open_upscaler(fast)
    assert b.output_is_residual and np.abs(a.residual(y) - b.residual(y)).max() < 1e-5
