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


@pytest.fixture(scope="module")
def luma_samples():
    from conftest import textured_bgr

    from edge_sr.color import y_from_bgr_u8

    return np.stack([y_from_bgr_u8(textured_bgr(40, 48, seed=i))[None] / 255.0 for i in range(6)]).astype(np.float32)


def test_equalization_keeps_the_function_and_evens_the_channels(tiny_checkpoint, luma_samples):
    """calibration/equalize.py: the equalized weights compute the same residual, and afterwards every channel of the
    feature layers (which meet in one concatenation, one INT8 scale) has the same range on the samples, where
    before they spread."""
    from edge_sr.calibration.equalize import channel_ranges, equalize_weights
    from edge_sr.checkpoint import load_checkpoint
    from edge_sr.model import DCSCN

    cfg, w, _ = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(1)  # biases and slopes as training leaves them, not as initialised
    w = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) if k.endswith("bias") or ".1.weight" in k else v
         for k, v in w.items()}
    weq, info = equalize_weights(cfg, w, luma_samples)

    def model(weights):
        m = DCSCN(cfg)
        m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
        return m.eval()

    x = torch.from_numpy(luma_samples)
    with torch.no_grad():
        a, b = model(w).residual(x), model(weq).residual(x)
    assert float((a - b).abs().max()) < 1e-5 * max(1.0, float(a.abs().max()))
    feats = [f"features.{i}" for i in range(len(cfg.feature_filters))]
    before, after = channel_ranges(model(w), luma_samples), channel_ranges(model(weq), luma_samples)
    spread = lambda r: max(r[n].max() for n in feats) / min(r[n].min() for n in feats)  # noqa: E731
    assert spread(before) > 1.5 and spread(after) < 1.01
    assert info["alpha"] == 1.0 and info["max_factor"] > 1.5
    assert any(not np.array_equal(w[k], weq[k]) for k in w if k.endswith(".weight"))


def test_cli_export_equalize(tiny_checkpoint, tmp_path):
    import cv2
    from conftest import textured_bgr

    imgs = tmp_path / "cal"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.png"), textured_bgr(80, 96, seed=i))
    plain, eq = tmp_path / "p.onnx", tmp_path / "e.onnx"
    assert run_cli("export", "--model", str(tiny_checkpoint), "--residual", "-o", str(plain)).returncode == 0
    r = run_cli("export", "--model", str(tiny_checkpoint), "--residual", "--equalize", str(imgs), "-o", str(eq))
    assert r.returncode == 0, r.stderr
    assert "activation-equalized" in r.stdout
    meta = {p.key: p.value for p in onnx.load(str(eq)).metadata_props}
    assert json.loads(meta["edge_sr.equalized"])["samples"] == 6
    y = np.random.default_rng(0).random((1, 1, 24, 32), dtype=np.float32)
    outs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"y_lr": y})[0] for p in (plain, eq)]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    r = run_cli("export", "--model", str(tiny_checkpoint), "--equalize", str(tmp_path / "none"), "-o", str(tmp_path / "x.onnx"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
