"""A synthetic moving test scene: the `demo` source and the still image of `edge-sr demo`.

A larger canvas (fine stripes, a zone plate, checkerboards, colour gradients, small and large
text) is drawn once per (size, seed) and cached; each frame is a crop panned along a smooth
Lissajous path plus a moving text overlay with the time, so the whole stream loop runs with no
camera. Deterministic for (t_s, size, seed); a 320x240 frame costs well under a millisecond.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_PAN = 0.5  # the canvas is (1 + _PAN) times the frame on each side
_WORDS = ("edge-sr", "DCSCN", "super-resolution", "Jetson", "Raspberry Pi", "0123456789", "ABCDEFGHIJKLM",
          "nopqrstuvwxyz", "The quick brown fox jumps over the lazy dog")


def _cv2():
    import cv2

    return cv2


@functools.lru_cache(maxsize=8)
def _canvas(height: int, width: int, seed: int) -> np.ndarray:
    cv2 = _cv2()
    ch, cw = int(height * (1 + _PAN)) + 2, int(width * (1 + _PAN)) + 2
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    # colour gradients as the background
    img = np.stack([xx * (255.0 / cw), yy * (255.0 / ch), 255.0 - (xx + yy) * (127.0 / (cw + ch))], axis=-1)
    ref = max(min(ch, cw), 16)

    def block(x0: float, y0: float, x1: float, y1: float):
        return slice(int(y0 * ch), int(y1 * ch)), slice(int(x0 * cw), int(x1 * cw))

    # zone plate (every spatial frequency up to Nyquist): aliasing and ringing show at once
    sy, sx = block(0.02, 0.02, 0.30, 0.33)
    zy, zx = yy[sy, sx] - yy[sy, sx].mean(), xx[sy, sx] - xx[sy, sx].mean()
    r2 = zy * zy + zx * zx
    k = math.pi / max(1.0, 2.0 * float(r2.max()) ** 0.5)
    img[sy, sx] = (127.5 + 127.5 * np.cos(k * r2))[..., None]
    # fine stripes of several periods and orientations
    sy, sx = block(0.35, 0.02, 0.64, 0.33)
    period = 2.0 + (xx[sy, sx] - xx[sy, sx].min()) * (6.0 / max(1.0, float(np.ptp(xx[sy, sx]))))
    stripes = (np.sin(2 * math.pi * yy[sy, sx] / period) > 0) * 200.0 + 30.0
    img[sy, sx] = np.stack([stripes, stripes * 0.6, 255.0 - stripes], axis=-1)
    # checkerboards, 1/2/4 px
    sy, sx = block(0.69, 0.02, 0.98, 0.33)
    cell = 1 + ((xx[sy, sx] - xx[sy, sx].min()) * 3 / max(1.0, float(np.ptp(xx[sy, sx])) + 1)).astype(np.int32)
    checker = (((yy[sy, sx].astype(np.int32) >> (cell - 1)) + (xx[sy, sx].astype(np.int32) >> (cell - 1))) & 1) * 255.0
    img[sy, sx] = checker[..., None]
    # diagonal edges and saturated colour patches
    sy, sx = block(0.02, 0.70, 0.45, 0.96)
    img[sy, sx] = np.where(((xx[sy, sx] + 2 * yy[sy, sx]) % 23 < 11)[..., None], [20.0, 40.0, 230.0], [240.0, 200.0, 30.0])
    img = np.clip(img + rng.normal(0.0, 3.0, img.shape), 0, 255).astype(np.uint8)
    # circles of several radii
    for i in range(6):
        c = (int(cw * (0.55 + 0.07 * i)), int(ch * 0.83))
        cv2.circle(img, c, max(2, ref // (8 + 3 * i)), tuple(int(v) for v in rng.integers(0, 256, 3)), 1 + (i % 3),
                   cv2.LINE_AA)
    # text, small and large (legible text is what viewers judge SR by)
    font = cv2.FONT_HERSHEY_SIMPLEX
    base = ref / 600.0
    y = int(ch * 0.36)
    for i, word in enumerate(_WORDS):
        s = base * (0.35 + 0.2 * (i % 4))
        y += max(6, int(30 * s))
        if y > ch * 0.66:
            break
        cv2.putText(img, word, (int(cw * 0.02), y), font, s, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(img, word, (int(cw * 0.52), y), font, s, (10, 10, 10), 1, cv2.LINE_AA)
    return img


def render_scene(t_s: float, height: int, width: int, seed: int = 0) -> np.ndarray:
    """The scene at time ``t_s`` seconds: uint8 BGR, ``height`` x ``width`` x 3 (a new array)."""
    if height < 8 or width < 8:
        raise ValueError(f"scene size too small: {width}x{height}")
    cv2 = _cv2()
    canvas = _canvas(int(height), int(width), int(seed))
    max_y, max_x = canvas.shape[0] - height, canvas.shape[1] - width
    # a slow Lissajous pan: every part of the canvas passes by, speed about a frame width per 8 s
    oy = int(round(max_y * 0.5 * (1 - math.cos(t_s * 0.31 + seed))))
    ox = int(round(max_x * 0.5 * (1 - math.cos(t_s * 0.23 + 2 * seed))))
    frame = canvas[oy : oy + height, ox : ox + width].copy()
    # moving overlay: time stamp and a banner sweeping across
    font = cv2.FONT_HERSHEY_SIMPLEX
    s = max(0.3, height / 480.0)
    cv2.putText(frame, f"t={t_s:7.2f}s", (4, height - 6), font, s, (0, 255, 255), 1, cv2.LINE_AA)
    x = int((t_s * width / 5.0) % (width * 1.5)) - width // 2
    cv2.putText(frame, "edge-sr live demo", (x, max(12, int(height * 0.12))), font, s * 1.4, (255, 255, 255), 2,
                cv2.LINE_AA)
    return frame
