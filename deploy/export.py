"""ONNX export of a DCSCN checkpoint, with its I/O contract and provenance in ``metadata_props``.

Two variants:

* ``y`` (the full contract): input Y of the LR image, float32 [1, 1, H, W] in [0, 1]; output Y of
  the HR image, float32 [1, 1, sH, sW] in [0, 1], bicubic (ONNX ``Resize`` cubic, a = -0.75) included.
* ``residual``: the graph ends at the PixelShuffle (``DepthToSpace``); the output is the HR residual
  and the caller adds the bicubic itself (edge-sr adds cv2's INTER_CUBIC, ~45x faster than ONNX
  Runtime's cubic Resize on x86, and TensorRT before 8.5 has no cubic Resize at all).

The export uses torch's TorchScript exporter at opset 17 (the highest opset TensorRT 8.2's parser
accepts for every op used here; the dynamo exporter needs onnxscript and writes opset 20 by default),
checks the model with ``onnx.checker``, simplifies it with onnxslim where that removes nodes, writes it
atomically, and verifies ONNX Runtime against PyTorch on a real image.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sr import __version__
from edge_sr.errors import EdgeSRError
from edge_sr.lazy import require

log = logging.getLogger(__name__)

OPSET = 17
FORMAT = "edge-sr-dcscn-onnx/1"
INPUT_NAME = "y_lr"
OUTPUT_NAME = {"y": "y_hr", "residual": "residual_hr"}
IO_CONTRACT = {
    "y": "input y_lr: float32 [1,1,H,W], BT.601 studio-range luma / 255 of the LR image; "
    "output y_hr: float32 [1,1,sH,sW], luma / 255 of the HR image (bicubic a=-0.75 + learned residual)",
    "residual": "input y_lr: float32 [1,1,H,W], BT.601 studio-range luma / 255 of the LR image; "
    "output residual_hr: float32 [1,1,sH,sW], HR luma residual / 255: add bicubic(y_lr) "
    "(cv2.INTER_CUBIC, a=-0.75) to get y_hr",
}
# keys of metadata_props (read back by edge_sr.backends.onnxruntime and deploy.tensorrt_build)
META_PREFIX = "edge_sr."


@dataclass
class ExportResult:
    path: Path
    output: str
    opset: int
    nodes: int
    ops: dict = field(default_factory=dict)
    simplified: bool = False
    verify_image: str = ""
    verify_shape: tuple = ()
    max_abs_diff: float = float("nan")
    metadata: dict = field(default_factory=dict)


def _load_model(model: str | os.PathLike):
    """A preset name or a .safetensors path -> (torch DCSCN in eval mode, checkpoint path)."""
    from edge_sr.backends import resolve_model
    from edge_sr.backends.torch_backend import TorchUpscaler

    path = resolve_model(str(model), None, prefer="checkpoint")
    if path.suffix.lower() != ".safetensors":
        raise EdgeSRError(f"export needs a .safetensors checkpoint (or a preset name), got {path.name}")
    return TorchUpscaler(path).model, path


def _versions() -> dict:
    out = {"edge_sr": __version__, "python": platform.python_version()}
    for mod in ("torch", "onnx", "onnxruntime", "onnxslim"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # a version string is provenance only
            pass
    return out


def verification_input(data_root: str | os.PathLike | None = None, max_side: int = 192) -> tuple[np.ndarray, str]:
    """A real image's luma (float32 [H, W] in [0, 1]): Set5's first image when the data folder is
    there ($EDGE_SR_DATA or ../shared/data beside the repo), else a synthetic textured image."""
    from edge_sr.color import y_from_bgr_u8
    from edge_sr.imageio import read_bgr

    cands = []
    if data_root:
        cands.append(Path(data_root))
    if os.environ.get("EDGE_SR_DATA"):
        cands.append(Path(os.environ["EDGE_SR_DATA"]))
    cands.append(Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    for root in cands:
        set5 = root / "val" / "set5"
        if set5.is_dir():
            imgs = sorted(p for p in set5.iterdir() if p.suffix.lower() == ".png")
            if imgs:
                y = y_from_bgr_u8(read_bgr(imgs[0]))[:max_side, : max_side + 37] / 255.0
                return np.ascontiguousarray(y, dtype=np.float32), str(imgs[0])
    yy, xx = np.mgrid[0:max_side, 0 : max_side + 37].astype(np.float32)
    y = 0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.1 * np.sign(np.sin(xx / 11.0 + yy / 13.0))
    return np.clip(y, 0, 1).astype(np.float32), "synthetic"


def _make_module(model, output: str):
    torch = require("torch", "ONNX export")

    class Residual(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, y_lr):
            return self.m.residual(y_lr)

    return model if output == "y" else Residual(model).eval()


def _simplify(mp, onnx):
    """onnxslim when it leaves fewer nodes (it folds the Resize's constant scales, fuses nothing else
    here); otherwise the model as exported."""
    try:
        import onnxslim
    except ImportError:
        log.info("onnxslim not installed: exporting without simplification")
        return mp, False
    try:
        slim = onnxslim.slim(mp)
    except Exception as exc:  # a simplifier failure must not lose the export
        log.warning("onnxslim failed (%s); keeping the unsimplified model", exc)
        return mp, False
    if slim is None or len(slim.graph.node) >= len(mp.graph.node):
        return mp, False
    onnx.checker.check_model(slim)
    return slim, True


def export_onnx(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    residual: bool = False,
    opset: int = OPSET,
    simplify: bool = True,
    verify: bool = True,
    data_root: str | os.PathLike | None = None,
    fast: bool = False,
    equalize: np.ndarray | None = None,
) -> ExportResult:
    """Export ``model`` (preset or checkpoint) to ``out``; returns what was written and checked.

    ``equalize``: calibration samples ([N,1,h,w] float32 LR luma): export the activation-equalized weights
    (calibration/equalize.py: the same function, channels rescaled for per-tensor INT8), verified against the
    model as given."""
    torch = require("torch", "ONNX export")
    onnx = require("onnx", "ONNX export")
    from edge_sr.checkpoint import file_sha256
    from edge_sr.imageio import atomic_path

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise EdgeSRError(f"output must end in .onnx: {out}")
    if not 11 <= opset <= 17:
        raise EdgeSRError(f"opset {opset} unsupported: use 11..17 (17 is the highest TensorRT 8.2 parses)")
    model_t, ckpt = _load_model(model)
    cfg = model_t.config
    kind = "residual" if residual else "y"
    verify_module = _make_module(model_t, kind)
    equalized = None
    if equalize is not None:
        import copy

        from edge_sr.calibration.equalize import equalize_weights

        model_t = copy.deepcopy(model_t)
        w, equalized = equalize_weights(cfg, {k: v.detach().numpy() for k, v in model_t.state_dict().items()}, equalize)
        model_t.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    module = _make_module(model_t, kind)
    x = torch.rand(1, 1, 40, 56, generator=torch.Generator().manual_seed(0))
    out_name = OUTPUT_NAME[kind]

    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                module, (x,), str(tmp), input_names=[INPUT_NAME], output_names=[out_name],
                opset_version=opset, dynamo=False, do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}, out_name: {2: "out_height", 3: "out_width"}},
            )
        mp = onnx.load(str(tmp))
        onnx.checker.check_model(mp)
        simplified = False
        if simplify:
            mp, simplified = _simplify(mp, onnx)
        fast_changes = None
        if fast:  # same math, faster on ONNX Runtime's CPU provider (deploy/fast_graph.py)
            from .fast_graph import optimize

            mp, rep = optimize(mp)
            fast_changes = ",".join(f"{k}:{v}" for k, v in rep.changes.items())
        meta = {
            "format": FORMAT,
            "output": kind,
            "scale": str(cfg.scale),
            "preset": cfg.preset,
            "config": cfg.to_json(),
            "precision": "fp32",
            "io": IO_CONTRACT[kind],
            "source_checkpoint": ckpt.name,
            "source_sha256": file_sha256(ckpt),
            "versions": json.dumps(_versions(), sort_keys=True),
        }
        if fast_changes is not None:
            meta["fast_graph"] = fast_changes
        if equalized is not None:
            meta["equalized"] = json.dumps(equalized, sort_keys=True)
        del mp.metadata_props[:]
        for k, v in meta.items():
            mp.metadata_props.add(key=META_PREFIX + k, value=v)
        mp.producer_name, mp.producer_version = "edge-sr", __version__
        mp.doc_string = f"DCSCN {cfg.preset} x{cfg.scale} ({kind} output). {IO_CONTRACT[kind]}"
        onnx.checker.check_model(mp)
        onnx.save(mp, str(tmp))
        ops: dict[str, int] = {}
        for n in mp.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        res = ExportResult(out, kind, opset, len(mp.graph.node), ops, simplified, metadata=meta)
        if verify:
            y, res.verify_image = verification_input(data_root)
            res.verify_shape = y.shape
            res.max_abs_diff = verify_against_torch(tmp, verify_module, y)  # equalized: against the model as given
            # an exported graph that disagrees with PyTorch is a bug, never a file to ship
            if not res.max_abs_diff < 1e-3:
                raise EdgeSRError(f"ONNX Runtime disagrees with PyTorch by {res.max_abs_diff:.3g}: export not written")
    res.path = out
    log.debug("exported %s (%s output, opset %d, %d nodes)", out, kind, opset, res.nodes)
    return res


def verify_against_torch(onnx_path, module, y_lr_f32: np.ndarray) -> float:
    """Max |ONNX Runtime - PyTorch| on one luma image."""
    torch = require("torch", "ONNX export")
    ort = require("onnxruntime", "verifying the export")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = y_lr_f32[None, None].astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    if got.shape != ref.shape:
        raise EdgeSRError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    return float(np.abs(got - ref).max())
