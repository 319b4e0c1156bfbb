"""Frame-level upscaling: BGR/gray (uint8 or uint16) -> luma -> backend residual (tiled when large
or when the backend limits the input) -> colour merge.

The per-frame path does one luma dot product, the backend call, one cv2 bicubic of the colour
frame and one add (see ``edge_sr.color.merge_residual``).

Tiling. ``plan_tiles`` cuts the LR frame into a grid of tiles, each with ``overlap`` LR pixels of
context on its inner sides (the context covers the model's receptive field, so there are no seams),
and honours the backend's limits:

- ``max_lr_shape`` (H, W): no backend call is larger (tile core + context fits it);
- ``min_lr_shape`` (H, W): no backend call is smaller: a window is widened inside the frame, and
  padded by edge replication (then cropped) only where the frame itself is smaller;
- ``fixed_lr_shape`` (H, W): every call has exactly this shape (a static TensorRT engine, an ONNX
  model with a fixed input), for any frame size.

Windows at the frame's edges are shifted inward rather than padded, so the tiled result equals
the untiled one wherever the frame is at least one tile large.

``iter_upscaled_tiles`` yields the upscaled colour tiles one by one (memory bounded by the tile,
not the image): ``upscale_frame`` assembles them into one array, the stills writer into the
output image directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .color import merge_residual, y_from_bgr_u8
from .errors import EdgeSRError

DEFAULT_TILE = 512  # LR tile side for still images when the model's size is unknown (see auto_tile)
MIN_TILE_CORE = 8  # smallest useful tile (LR px) once the context is taken off
_MERGE_MARGIN = 4  # LR px around a tile's core that the cv2 bicubic of the colour merge reads (2 needed)


TILE_MEMORY_MB = 192  # what one tile's activations may take (auto_tile): the stills' memory bound


def activation_bytes_per_lr_px(config) -> int:
    """Float32 activations alive at once per LR pixel: the feature maps and their concatenation,
    the reconstruction branches, the output. Measured with ONNX Runtime (peak RSS over tile sizes):
    compact 1.2 KB, normal 3.9 KB per LR pixel; this estimate gives 1.3 and 4.1."""
    return 4 * (2 * config.concat_channels + 2 * (config.a_filters + config.b_filters) + config.scale**2)


def auto_tile(upscaler, budget_mb: float = TILE_MEMORY_MB) -> int:
    """The LR tile side whose window (tile + context) keeps the model's activations near
    ``budget_mb``: memory follows the tile, whatever the image's size."""
    cfg = getattr(upscaler, "config", None)
    if cfg is None:
        return DEFAULT_TILE
    side = math.isqrt(int(budget_mb * 1e6 / activation_bytes_per_lr_px(cfg))) - 2 * tile_overlap(upscaler)
    return max(64, min(1024, side // 8 * 8))


def tile_overlap(upscaler) -> int:
    cfg = getattr(upscaler, "config", None)
    return (cfg.receptive_radius if cfg is not None else 12) + 4


def backend_limits(upscaler):
    """(min, max) LR shape (H, W) the backend accepts; None where unlimited. A fixed shape is both."""
    fixed = getattr(upscaler, "fixed_lr_shape", None)
    if fixed is not None:
        return tuple(fixed), tuple(fixed)
    lo, hi = getattr(upscaler, "min_lr_shape", None), getattr(upscaler, "max_lr_shape", None)
    return (tuple(lo) if lo is not None else None), (tuple(hi) if hi is not None else None)


@dataclass(frozen=True)
class Tile:
    """One backend call. LR coordinates: the core [y0:y1, x0:x1] is what this tile contributes to
    the output; the window [wy0:wy1, wx0:wx1] (inside the frame) is what the backend sees, padded
    at the bottom/right by ``pad_h``/``pad_w`` rows/columns of edge replication."""

    y0: int
    y1: int
    x0: int
    x1: int
    wy0: int
    wy1: int
    wx0: int
    wx1: int
    pad_h: int = 0
    pad_w: int = 0

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.wy1 - self.wy0 + self.pad_h, self.wx1 - self.wx0 + self.pad_w


def _axis(length: int, core: int | None, ov: int, lo: int, hi: int | None, fixed: bool, what: str):
    """Split one axis: [(c0, c1, w0, w1, pad)] with lo <= w1 - w0 + pad <= hi."""
    if fixed:
        core = None  # every call costs the full fixed shape: use all of it
    if (core is None or length <= core) and (hi is None or length <= hi):  # one window: no context needed
        return [(0, length, 0, length, max(0, lo - length))]
    c = core if hi is None else (hi - 2 * ov if core is None else min(core, hi - 2 * ov))
    if c < MIN_TILE_CORE:
        limit = f"the backend's largest {what} ({hi} px)" if hi is not None and (core is None or core > c) \
            else f"tile {core}"
        raise EdgeSRError(f"{limit} leaves no room for {ov} px of context on each side: "
                          "use a larger tile, or build the engine for a larger shape")
    n = math.ceil(length / c)
    bounds = [round(i * length / n) for i in range(n + 1)]
    # every window gets the same size (edge windows shifted inward, not cut short): one input shape
    # for the backend, so ONNX Runtime plans and keeps one set of buffers, not one per shape
    size = max(lo, min(length, max(b - a for a, b in zip(bounds[:-1], bounds[1:])) + 2 * ov))
    out = []
    for c0, c1 in zip(bounds[:-1], bounds[1:]):
        w0 = max(0, c0 - ov)
        w1 = min(length, w0 + size)  # widen inside the frame; pad only what the frame cannot give
        w0 = max(0, w1 - size)
        out.append((c0, c1, w0, w1, max(0, size - (w1 - w0))))
    return out


def plan_tiles(h: int, w: int, upscaler, tile: int | None = None, overlap: int | None = None) -> list[Tile]:
    """The tiles for an LR frame of ``h`` x ``w``: one when it fits (``tile`` None: whole frame
    unless the backend limits it), otherwise a grid as the module docstring describes."""
    if h < 1 or w < 1:
        raise EdgeSRError(f"empty image ({w}x{h})")
    lo, hi = backend_limits(upscaler)
    fixed = getattr(upscaler, "fixed_lr_shape", None) is not None
    ov = tile_overlap(upscaler) if overlap is None else overlap
    if tile is not None and tile < 1:
        raise EdgeSRError(f"tile must be a positive number of pixels, got {tile}")
    rows = _axis(h, tile, ov, lo[0] if lo else 1, hi[0] if hi else None, fixed, "height")
    cols = _axis(w, tile, ov, lo[1] if lo else 1, hi[1] if hi else None, fixed, "width")
    return [Tile(r[0], r[1], c[0], c[1], r[2], r[3], c[2], c[3], r[4], c[4]) for r in rows for c in cols]


def _run_window(upscaler, y_win: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    """HR residual of one window of the LR luma (padding run through the model, then cropped off)."""
    y = np.pad(y_win, ((0, pad_h), (0, pad_w)), mode="edge") if (pad_h or pad_w) else y_win
    r = upscaler.residual(np.ascontiguousarray(y))
    s = upscaler.scale
    if r.shape != (y.shape[0] * s, y.shape[1] * s):
        raise EdgeSRError(f"the backend returned {r.shape[1]}x{r.shape[0]} for a {y.shape[1]}x{y.shape[0]} input "
                          f"at x{s}")
    return r[: y_win.shape[0] * s, : y_win.shape[1] * s]


def residual_tiled(upscaler, y_lr_f32: np.ndarray, tile: int | None, overlap: int | None = None) -> np.ndarray:
    """Residual of the whole LR luma, computed tile by tile (see ``plan_tiles``)."""
    h, w = y_lr_f32.shape
    plan = plan_tiles(h, w, upscaler, tile, overlap)
    if len(plan) == 1 and plan[0].input_shape == (h, w):
        return upscaler.residual(y_lr_f32)
    s = upscaler.scale
    out = np.empty((h * s, w * s), np.float32)
    for t in plan:
        r = _run_window(upscaler, y_lr_f32[t.wy0 : t.wy1, t.wx0 : t.wx1], t.pad_h, t.pad_w)
        oy, ox = (t.y0 - t.wy0) * s, (t.x0 - t.wx0) * s
        out[t.y0 * s : t.y1 * s, t.x0 * s : t.x1 * s] = r[oy : oy + (t.y1 - t.y0) * s, ox : ox + (t.x1 - t.x0) * s]
    return out


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype not in (np.uint8, np.uint16):
        raise EdgeSRError(f"expected a uint8 or uint16 image, got {frame.dtype}")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        raise EdgeSRError(f"expected an HxW or HxWx3 image, got shape {frame.shape}")


def luma01(frame: np.ndarray) -> np.ndarray:
    """The model's input: float32 BT.601 luma in 0..1 of a BGR/gray uint8 or uint16 frame (16-bit
    frames keep their precision: the luma is not rounded to 8 bits first)."""
    if frame.dtype == np.uint16:
        return y_from_bgr_u8(frame.astype(np.float32) * np.float32(1 / 257.0)) * np.float32(1 / 255.0)
    return y_from_bgr_u8(frame) * np.float32(1 / 255.0)


def iter_upscaled_tiles(upscaler, frame: np.ndarray, plan: list[Tile]) -> Iterator[tuple[Tile, np.ndarray]]:
    """(tile, upscaled colour block of the tile's core), one tile at a time: the memory in use is
    that of one tile, whatever the frame's size."""
    _check_frame(frame)
    s, m = upscaler.scale, _MERGE_MARGIN
    for t in plan:
        r = _run_window(upscaler, luma01(frame[t.wy0 : t.wy1, t.wx0 : t.wx1]), t.pad_h, t.pad_w)
        # colour merge on the core plus the few pixels the bicubic reads around it, then cropped
        my0, my1 = max(t.wy0, t.y0 - m), min(t.wy1, t.y1 + m)
        mx0, mx1 = max(t.wx0, t.x0 - m), min(t.wx1, t.x1 + m)
        rm = r[(my0 - t.wy0) * s : (my1 - t.wy0) * s, (mx0 - t.wx0) * s : (mx1 - t.wx0) * s]
        hr = merge_residual(frame[my0:my1, mx0:mx1], rm, s)
        yield t, hr[(t.y0 - my0) * s : (t.y1 - my0) * s, (t.x0 - mx0) * s : (t.x1 - mx0) * s]


def upscale_frame(upscaler, frame_bgr_u8: np.ndarray, tile: int | None = None) -> np.ndarray:
    """Colour (BGR) or grayscale uint8/uint16 frame in, the same kind of frame at ``scale`` x out."""
    _check_frame(frame_bgr_u8)
    h, w = frame_bgr_u8.shape[:2]
    plan = plan_tiles(h, w, upscaler, tile)
    if len(plan) == 1 and plan[0].input_shape == (h, w):
        return merge_residual(frame_bgr_u8, upscaler.residual(luma01(frame_bgr_u8)), upscaler.scale)
    s = upscaler.scale
    out = np.empty((h * s, w * s) + frame_bgr_u8.shape[2:], frame_bgr_u8.dtype)
    for t, block in iter_upscaled_tiles(upscaler, frame_bgr_u8, plan):
        out[t.y0 * s : t.y1 * s, t.x0 * s : t.x1 * s] = block
    return out
