"""The Python API: the objects and functions the ``edge-sr`` command uses, in a few names.

    import edge_sr
    sr = edge_sr.load("normal")                                # preset or model file; an Upscaler
    out_rgb = edge_sr.upscale(sr, img_rgb, channel_order="rgb")  # numpy HxW / HxWx3 / HxWx4, uint8/16
    edge_sr.upscale_file(sr, "photo.jpg", "photo_x2.jpg")      # EXIF, ICC, alpha, 16-bit kept
    res = edge_sr.upscale_folder(sr, "photos/", "out/")        # res.written, res.failed
    sr.close()                                                  # or: with edge_sr.load(...) as sr:

Every function raises ``edge_sr.EdgeSRError`` (one readable line) for bad input.
"""

from __future__ import annotations

import os

import numpy as np

from .backends import Upscaler, open_upscaler
from .errors import EdgeSRError
from .stills import DEFAULT_MAX_PIXELS, FolderResult, upscale_array
from .stills import upscale_file as _upscale_file
from .stills import upscale_folder as _upscale_folder


def load(model: str | os.PathLike = "compact", scale: int | None = None, **options) -> Upscaler:
    """Open a model: a preset (``compact``, ``normal``) or a file (.onnx: ONNX Runtime, .engine:
    TensorRT, .safetensors: torch). ``scale`` is checked against the model's. ``options`` go to the
    backend (``threads=N``, ``providers=[...]``; ONNX Runtime's ``mem_pattern`` is off unless asked:
    tiles of big stills then take half the memory). Use it as a context manager or call ``close()``."""
    options.setdefault("mem_pattern", False)
    return open_upscaler(model, scale=scale, **options)


def _model(sr) -> tuple[Upscaler, bool]:
    if isinstance(sr, Upscaler):
        return sr, False
    if isinstance(sr, (str, os.PathLike)):
        return load(sr), True
    raise EdgeSRError(f"expected an edge_sr.load(...) model or a model name/path, got {type(sr).__name__}")


def upscale(sr: Upscaler | str, image: np.ndarray, *, channel_order: str | None = None,
            tile: int | None = None) -> np.ndarray:
    """Upscale a numpy image. Colour images need ``channel_order='bgr'`` (OpenCV) or ``'rgb'``
    (Pillow, imageio); the result comes back in the same order, dtype and channels."""
    up, own = _model(sr)
    try:
        return upscale_array(up, image, channel_order=channel_order, tile=tile)
    finally:
        if own:
            up.close()


def upscale_file(sr: Upscaler | str, src: str | os.PathLike, dst: str | os.PathLike, *, tile: int | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[str]:
    """Upscale an image file to ``dst`` (format from its suffix); returns notices (what was not kept)."""
    from pathlib import Path

    up, own = _model(sr)
    try:
        if Path(dst).exists() and Path(dst).resolve() == Path(src).resolve():
            raise EdgeSRError(f"refusing to overwrite the input {src}: give another output name")
        return _upscale_file(up, src, dst, tile=tile, max_pixels=max_pixels)
    finally:
        if own:
            up.close()


def upscale_folder(sr: Upscaler | str, src: str | os.PathLike, dst: str | os.PathLike, *, format: str | None = None,
                   suffix: str = "", recursive: bool = True, tile: int | None = None,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS) -> FolderResult:
    """Upscale every image under ``src`` into ``dst`` (tree mirrored). Files that fail are listed in
    ``result.failed`` and skipped; ``format`` is png/jpg/webp/tif (default: each input's own)."""
    up, own = _model(sr)
    try:
        return _upscale_folder(up, src, dst, fmt=format, suffix=suffix, recursive=recursive, tile=tile,
                               max_pixels=max_pixels)
    finally:
        if own:
            up.close()
