"""Calibration data: LR luma exactly as the runtime feeds the model.

The runtime turns a BGR uint8 frame into ``edge_sr.color.y_from_bgr_u8(frame) / 255`` (float32) and
runs it at the frame's size; calibration does the same on fixed-size crops of the images (several
per image, at deterministic positions), so that the ranges seen are those of real frames.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from edge_sr.color import y_from_bgr_u8
from edge_sr.errors import EdgeSRError
from edge_sr.imageio import list_images, read_bgr

log = logging.getLogger(__name__)

DEFAULT_CROP = (96, 96)  # LR pixels (height, width)


def runtime_luma(frame_bgr_u8: np.ndarray) -> np.ndarray:
    """The model's input for one frame, as the pipeline makes it (edge_sr.pipeline.upscale_frame)."""
    return y_from_bgr_u8(frame_bgr_u8) * np.float32(1 / 255.0)


def _crop_origins(h: int, w: int, ch: int, cw: int, n: int) -> list[tuple[int, int]]:
    """``n`` crop positions spread over the image: centre first, then the corners, then a grid."""
    ys, xs = h - ch, w - cw
    pts = [(ys // 2, xs // 2), (0, 0), (ys, xs), (0, xs), (ys, 0)]
    g = int(np.ceil(np.sqrt(max(1, n))))
    pts += [(int(ys * i / max(1, g - 1)), int(xs * j / max(1, g - 1))) for i in range(g) for j in range(g)]
    seen, out = set(), []
    for p in pts:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out[:n]


def load_calibration_set(
    folder: str | os.PathLike,
    crop: tuple[int, int] = DEFAULT_CROP,
    crops_per_image: int = 4,
    min_images: int = 1,
    max_images: int | None = None,
) -> np.ndarray:
    """Float32 [N, 1, crop_h, crop_w] luma crops of the images in ``folder``.

    Raises one clear EdgeSRError for a missing, empty or unreadable folder, for fewer usable images
    than ``min_images`` (one calibration batch) and for images smaller than the crop.
    """
    p = Path(folder)
    if p.exists() and p.is_dir() and not os.access(p, os.R_OK | os.X_OK):
        raise EdgeSRError(f"calibration folder is not readable (permissions): {p}")
    files = list_images(p, "calibration folder")
    if max_images:
        files = files[:max_images]
    ch, cw = crop
    crops, used, small = [], 0, []
    for f in files:
        y = runtime_luma(read_bgr(f))
        h, w = y.shape
        if h < ch or w < cw:
            small.append(f.name)
            continue
        used += 1
        for oy, ox in _crop_origins(h, w, ch, cw, crops_per_image):
            crops.append(y[oy : oy + ch, ox : ox + cw])
    if small:
        log.warning("skipped %d calibration image(s) smaller than the %dx%d crop: %s", len(small), cw, ch,
                    ", ".join(small[:5]) + (" ..." if len(small) > 5 else ""))
    if used < min_images:
        raise EdgeSRError(f"calibration needs at least {min_images} image(s) of at least {cw}x{ch} (one batch), "
                          f"found {used} usable in {p}")
    return np.ascontiguousarray(np.stack(crops)[:, None], dtype=np.float32)


class LumaDataReader:
    """onnxruntime.quantization.CalibrationDataReader over calibration crops (one [1,1,h,w] per call)."""

    def __init__(self, input_name: str, samples: np.ndarray):
        self.input_name = input_name
        self.samples = samples
        self._i = 0

    def get_next(self):
        if self._i >= len(self.samples):
            return None
        x = self.samples[self._i : self._i + 1]
        self._i += 1
        return {self.input_name: x}

    def rewind(self) -> None:
        self._i = 0

    def __len__(self) -> int:
        return len(self.samples)
