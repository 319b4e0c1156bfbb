"""MATLAB-compatible ``imresize(img, scale, 'bicubic')``: the degradation of the SR protocol.

Cubic kernel a = -0.5, antialiasing when downscaling (kernel widened by 1/scale), symmetric
border padding, dimensions resized height first, uint8 input rounded (half away from zero)
back to uint8 after each 1-D pass, as MATLAB's imresizemex does. Torch-free (numpy).
"""

from __future__ import annotations

import functools
import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@functools.lru_cache(maxsize=256)
def _weight_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense [out_len, in_len] matrix of MATLAB's contributions() with symmetric padding folded in."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]  # 1-based like MATLAB
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    src = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    m = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), p)
    np.add.at(m, (rows, src.ravel()), w.ravel())
    return m


def _round_u8(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)


def imresize(img: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an HxW or HxWxC image like MATLAB's imresize(..., 'bicubic').

    uint8 in -> uint8 out (rounded after each pass); float in -> float64 out.
    Give either ``scale`` or ``output_shape`` (out_h, out_w).
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale or output_shape")
    h, w = img.shape[:2]
    if output_shape is None:
        out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
        sh = sw = float(scale)
    else:
        out_h, out_w = output_shape
        sh, sw = out_h / h, out_w / w
    is_u8 = img.dtype == np.uint8
    x = img.astype(np.float64)
    # MATLAB resizes the dimension with the smaller scale first (stable: height on ties)
    order = (0, 1) if sh <= sw else (1, 0)
    for dim in order:
        if dim == 0:
            m = _weight_matrix(h, out_h, sh)
            x = np.tensordot(m, x, axes=([1], [0]))
        else:
            m = _weight_matrix(w, out_w, sw)
            x = np.moveaxis(np.tensordot(m, x, axes=([1], [1])), 0, 1)
        if is_u8:
            x = _round_u8(x).astype(np.float64)
    return x.astype(np.uint8) if is_u8 else x
