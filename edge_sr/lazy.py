"""Lazy import of optional dependencies with an actionable message (after Polygraphy)."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency

_HINTS = {
    "torch": "install the training extras: ./install.sh --train (x86-64: pip install torch==2.13.0)",
    "onnx": "pip install onnx (./install.sh --train installs it)",
    "onnxruntime": "pip install onnxruntime (./install.sh installs it)",
    "onnxruntime.quantization": "pip install onnxruntime (./install.sh installs it)",
    "tensorrt": "TensorRT comes with JetPack (apt install python3-libnvinfer) on Jetson, "
    "or 'pip install tensorrt' on x86-64 with an NVIDIA GPU; the venv needs --system-site-packages on Jetson",
    "pycuda": "pip install pycuda on the device (needs nvcc), or install cuda-python as the alternative",
    "cuda": "pip install cuda-python (NVIDIA's CUDA bindings; the alternative to pycuda)",
    "picamera2": "sudo apt install python3-picamera2 (Raspberry Pi OS); the venv needs system site packages "
    "(./install.sh does that on a Pi)",
    "cv2": "pip install opencv-python-headless (./install.sh installs it)",
    "safetensors": "pip install safetensors",
    "PIL": "pip install pillow (./install.sh installs it)",
    "matplotlib": "pip install matplotlib (./install.sh --bench installs it)",
}


def require(name: str, purpose: str = "") -> ModuleType:
    """Import ``name`` or raise MissingDependency with how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # also covers a broken install raising ImportError inside
        top = name.split(".")[0]
        hint = _HINTS.get(name) or _HINTS.get(top) or f"pip install {top}"
        what = f" for {purpose}" if purpose else ""
        raise MissingDependency(f"{name} is needed{what} but could not be imported ({exc}); {hint}") from exc


def available(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False
