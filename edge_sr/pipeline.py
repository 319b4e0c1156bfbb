"""Frame-level upscaling: BGR/gray uint8 -> luma -> backend residual (tiled when large) -> merge.

The per-frame path does one luma dot product, the backend call, one cv2 bicubic of the colour
frame and one add (see ``edge_sr.color.merge_residual``)."""

from __future__ import annotations

import numpy as np

from .color import merge_residual, y_from_bgr_u8
from .errors import EdgeSRError

DEFAULT_TILE = 512  # LR pixels per tile side for still images: bounds memory on a Pi


def tile_overlap(upscaler) -> int:
    cfg = getattr(upscaler, "config", None)
    return (cfg.receptive_radius if cfg is not None else 12) + 4


def residual_tiled(upscaler, y_lr_f32: np.ndarray, tile: int | None, overlap: int | None = None) -> np.ndarray:
    """Residual of the whole LR luma, computed tile by tile with ``overlap`` LR pixels of context
    on each inner side; the context covers the receptive field so there are no seams."""
    h, w = y_lr_f32.shape
    limit = upscaler.max_lr_shape
    th = tw = tile if tile else max(h, w)
    if limit is not None:
        th, tw = min(th, limit[0]), min(tw, limit[1])
    if h <= th and w <= tw:
        return upscaler.residual(y_lr_f32)
    ov = tile_overlap(upscaler) if overlap is None else overlap
    if limit is not None:  # the tile plus its context must fit the backend's largest input
        th, tw = th - 2 * ov, tw - 2 * ov
    if th < 8 or tw < 8:
        raise EdgeSRError(f"tile {tile} too small for an overlap of {ov} px")
    s = upscaler.scale
    out = np.empty((h * s, w * s), np.float32)
    for y0 in range(0, h, th):
        y1 = min(h, y0 + th)
        ya, yb = max(0, y0 - ov), min(h, y1 + ov)
        for x0 in range(0, w, tw):
            x1 = min(w, x0 + tw)
            xa, xb = max(0, x0 - ov), min(w, x1 + ov)
            r = upscaler.residual(np.ascontiguousarray(y_lr_f32[ya:yb, xa:xb]))
            oy, ox = (y0 - ya) * s, (x0 - xa) * s
            out[y0 * s : y1 * s, x0 * s : x1 * s] = r[oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s]
    return out


def upscale_frame(upscaler, frame_bgr_u8: np.ndarray, tile: int | None = None) -> np.ndarray:
    """Colour (BGR) or grayscale uint8 frame in, the same kind of frame at ``scale`` x out."""
    if frame_bgr_u8.dtype != np.uint8:
        raise EdgeSRError(f"expected a uint8 image, got {frame_bgr_u8.dtype}")
    if frame_bgr_u8.ndim not in (2, 3) or (frame_bgr_u8.ndim == 3 and frame_bgr_u8.shape[2] not in (1, 3)):
        raise EdgeSRError(f"expected an HxW or HxWx3 image, got shape {frame_bgr_u8.shape}")
    y = y_from_bgr_u8(frame_bgr_u8) * np.float32(1 / 255.0)
    res = residual_tiled(upscaler, y, tile)
    return merge_residual(frame_bgr_u8, res, upscaler.scale)
