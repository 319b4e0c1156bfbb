"""One interface for every inference backend, chosen by file type.

    checkpoint (.safetensors) -> torch        (training machine, reference)
    .onnx                     -> ONNX Runtime (Raspberry Pi, x86, Jetson CPU/CUDA/TensorRT EP)
    .engine                   -> TensorRT     (Jetson)

A backend computes the HR luma *residual* from the LR luma; the bicubic up-sampling and the
colour merge are done once, by OpenCV, in ``edge_sr.pipeline`` (see ``edge_sr.color``).
Backends whose model adds the bicubic itself (ONNX exported with the bicubic inside) set
``output_is_residual = False`` and the pipeline subtracts cv2's bicubic of the input.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..config import DCSCNConfig, PRESET_NAMES
from ..errors import EdgeSRError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class Upscaler(ABC):
    """A loaded model. ``infer`` maps float32 [H, W] LR luma in [0, 1] to float32 [sH, sW]."""

    scale: int
    name: str = "model"
    backend: str = "?"
    precision: str = "fp32"
    config: DCSCNConfig | None = None
    output_is_residual: bool = True
    # largest LR tile the backend accepts (None: any); the pipeline tiles above it
    max_lr_shape: tuple[int, int] | None = None
    # fixed LR shape for backends that only take one (TensorRT static profile); None: dynamic
    fixed_lr_shape: tuple[int, int] | None = None
    # smallest LR input the backend accepts (TensorRT profile minimum); the pipeline pads up to it
    min_lr_shape: tuple[int, int] | None = None

    @abstractmethod
    def infer(self, y_lr_f32: np.ndarray) -> np.ndarray: ...

    def residual(self, y_lr_f32: np.ndarray) -> np.ndarray:
        """HR luma residual (0..1 scale) over cv2 bicubic, whatever the model outputs."""
        out = self.infer(y_lr_f32)
        if self.output_is_residual:
            return out
        from ..color import upscale_bicubic

        return out - upscale_bicubic(y_lr_f32, self.scale)

    def upscale(self, frame_bgr_u8: np.ndarray, tile: int | None = None) -> np.ndarray:
        from ..pipeline import upscale_frame

        return upscale_frame(self, frame_bgr_u8, tile=tile)

    def describe(self) -> dict:
        return {"name": self.name, "backend": self.backend, "precision": self.precision, "scale": self.scale,
                "preset": self.config.preset if self.config else None}

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def shipped_path(preset: str, scale: int, kind: str) -> Path:
    """Path of a shipped model file: kind is 'safetensors', 'onnx' (FP32, the fast graph), 'int8.onnx'
    (symmetric INT8 Q/DQ: TensorRT, and ONNX Runtime S8S8) or 'cpu-int8.onnx' (INT8 for ONNX Runtime on
    CPUs: uint8 activations)."""
    return WEIGHTS_DIR / f"dcscn_{preset}_x{scale}.{kind}"


def resolve_model(model: str, scale: int | None = None, prefer: str = "onnx", precision: str | None = None,
                  announce: bool = True, choice: list | None = None, **select) -> Path:
    """A preset name (compact/normal/large) or a path -> a model file.

    For a preset, ``prefer`` picks the shipped file: 'onnx' (FP32 ONNX, the runtime default),
    'int8' (the symmetric INT8 ONNX) or 'checkpoint'; falls back to the checkpoint when no ONNX was shipped.
    ``precision`` ('auto', 'fp32' or 'int8'), when given, chooses among the shipped ONNX files instead, by
    platform and by this device's bench cache (``edge_sr.selection.choose_precision``; ``select`` goes
    to it: lr_size, threads, providers); the choice and its reason are logged. A file path is taken as
    it is (its precision is its own; asking a file for another precision is refused).
    """
    if model in PRESET_NAMES and precision is not None:
        from ..selection import choose_precision

        s = scale or 2
        path, why = choose_precision(model, s, precision, **select)
        if path.is_file():
            note = f"{model} x{s}: {path.name} ({why})"
            if choice is not None:
                choice.append(note)
            if announce:
                import logging

                logging.getLogger(__name__).info("%s", note)
            return path
        # nothing shipped for this choice: the usual lookup explains what exists
        if precision == "int8":
            raise EdgeSRError(f"no shipped INT8 {model} model for x{s}: {why}")
    if model in PRESET_NAMES:
        s = scale or 2
        order = {"onnx": ["onnx", "safetensors"], "int8": ["int8.onnx"], "checkpoint": ["safetensors"]}[prefer]
        for kind in order:
            p = shipped_path(model, s, kind)
            if p.is_file():
                return p
        # one entry per model (dcscn_compact_x2.*: 4 files), not the 4 files of each
        shipped = sorted({f.name.split(".")[0].removeprefix("dcscn_").replace("_", " ")
                          for f in WEIGHTS_DIR.glob("dcscn_*")}) if WEIGHTS_DIR.is_dir() else []
        raise EdgeSRError(
            f"no shipped {model} model for x{s} ({prefer}); shipped: {', '.join(shipped) or 'none'}. "
            "Train one (edge-sr train) or pass a model file with --model PATH"
        )
    p = Path(os.path.expanduser(model))
    if not p.exists():
        raise EdgeSRError(f"model not found: {model} (give a preset: {', '.join(PRESET_NAMES)}, or a file)")
    if p.is_dir():
        raise EdgeSRError(f"model path is a folder, expected a file: {p}")
    if precision in ("fp32", "int8"):
        is_int8 = p.name.lower().endswith("int8.onnx")  # .int8.onnx and .cpu-int8.onnx
        if (precision == "int8") != is_int8:
            raise EdgeSRError(f"--precision {precision} applies to presets; {p.name} is "
                              f"{'an INT8' if is_int8 else 'not an INT8'} file (leave --precision out, or give a preset)")
    return p


def open_upscaler(model: str | os.PathLike, scale: int | None = None, prefer: str = "onnx",
                  precision: str | None = None, announce: bool = True, **options) -> Upscaler:
    """Open a model by preset name or path; the backend follows the file type.

    ``scale`` is checked against the model's own scale (the model decides; a mismatch is an error).
    ``precision`` ('auto', 'fp32', 'int8'; None = FP32 as before) chooses a preset's shipped file
    (``resolve_model``). ``options`` go to the backend (threads, providers, tile shape...).
    """
    select = {}
    if precision is not None and str(model) in PRESET_NAMES:
        select = {"threads": options.get("threads", 0), "providers": options.get("providers")}
        if options.get("frame_shape"):
            h, w = options["frame_shape"]
            select["lr_size"] = (w, h)
    choice: list = []
    path = resolve_model(str(model), scale, prefer, precision, announce=announce, choice=choice, **select)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from .torch_backend import TorchUpscaler

        up: Upscaler = TorchUpscaler(path, **options)
    elif suffix == ".onnx":
        from .onnxruntime import OnnxUpscaler

        up = OnnxUpscaler(path, **options)
    elif suffix in (".engine", ".plan", ".trt"):
        from .tensorrt import TensorRTUpscaler

        up = TensorRTUpscaler(path, **options)
    else:
        raise EdgeSRError(f"unknown model file type {suffix!r}: expected .safetensors, .onnx or .engine ({path})")
    if scale is not None and up.scale != scale:
        up.close()
        raise EdgeSRError(f"model {path.name} is for x{up.scale}, not x{scale}: pick a model trained for x{scale}")
    up.precision_choice = choice[0] if choice else None  # why this file, when a precision was chosen
    return up
