"""The one place colour conversions live. numpy + OpenCV, no torch.

Luma is ITU-R BT.601 studio range as MATLAB's rgb2ycbcr (what the SR protocol and training use):
``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1]; the model sees Y / 255.
A single-channel image is its own Y.

Fast colour path: YCbCr <-> RGB is affine and bicubic up-sampling is linear, so
"bicubic Cb/Cr + model Y, converted back" equals "bicubic RGB + (255/219) * (Y_sr - Y_bicubic)"
added to every channel. ``merge_residual`` implements that identity (one cv2.resize of the colour
frame, one add); ``ycbcr_to_bgr`` / ``bgr_to_ycbcr`` are the explicit reference it is tested against.
"""

from __future__ import annotations

import numpy as np

# rows: Y, Cb, Cr; columns: R, G, B (inputs in [0, 1], outputs in 0..255 units) - MATLAB rgb2ycbcr
_RGB2YCC = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
_YCC_OFFSET = np.array([16.0, 128.0, 128.0])
_YCC2RGB = np.linalg.inv(_RGB2YCC)  # maps (YCbCr - offset) to RGB in [0, 1]
# dR/dY = dG/dY = dB/dY when Cb, Cr stay fixed, in 0..255 units per 0..255 units of Y
Y_TO_RGB_GAIN = float(_YCC2RGB[0, 0] * 255.0)  # = 255 / 219
_Y_FROM_BGR = (_RGB2YCC[0, ::-1] / 255.0).astype(np.float32)  # weights for B, G, R in 0..255


def _cv2():
    import cv2  # runtime dependency; imported here so `import edge_sr.color` stays cheap

    return cv2


def is_gray(img: np.ndarray) -> bool:
    return img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)


def y_from_bgr_u8(frame_bgr_u8: np.ndarray) -> np.ndarray:
    """Y on the 0..255 scale (float32, studio range for colour; the image itself for grayscale)."""
    if is_gray(frame_bgr_u8):
        return frame_bgr_u8.reshape(frame_bgr_u8.shape[:2]).astype(np.float32)
    f = frame_bgr_u8.astype(np.float32)
    return 16.0 + f[..., 0] * _Y_FROM_BGR[0] + f[..., 1] * _Y_FROM_BGR[1] + f[..., 2] * _Y_FROM_BGR[2]


def y_from_rgb(img_rgb: np.ndarray) -> np.ndarray:
    """Protocol Y (float64, 0..255 scale) of an RGB uint8 image (or a gray one)."""
    if is_gray(img_rgb):
        return img_rgb.reshape(img_rgb.shape[:2]).astype(np.float64)
    f = img_rgb.astype(np.float64) / 255.0
    return 16.0 + f @ _RGB2YCC[0]


def bgr_to_ycbcr(frame_bgr_u8: np.ndarray) -> np.ndarray:
    """HxWx3 float64 YCbCr (0..255 scale) of a BGR uint8 image, MATLAB rgb2ycbcr."""
    rgb = frame_bgr_u8[..., ::-1].astype(np.float64) / 255.0
    return rgb @ _RGB2YCC.T + _YCC_OFFSET


def ycbcr_to_bgr(ycc: np.ndarray) -> np.ndarray:
    """Inverse of bgr_to_ycbcr, rounded and clipped to BGR uint8."""
    rgb = (ycc - _YCC_OFFSET) @ _YCC2RGB.T * 255.0
    return np.clip(np.rint(rgb[..., ::-1]), 0, 255).astype(np.uint8)


def upscale_bicubic(img: np.ndarray, scale: int) -> np.ndarray:
    """cv2 bicubic (a = -0.75), the same up-sampling the model's residual is learned against."""
    cv2 = _cv2()
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def merge_residual(frame_bgr_u8: np.ndarray, residual_y: np.ndarray, scale: int) -> np.ndarray:
    """BGR (or gray) uint8 LR frame + HR luma residual (0..1 scale) -> HR uint8 frame.

    Equivalent to: Cb/Cr bicubic-upscaled, Y = bicubic(Y) + residual, converted back to BGR.
    """
    cv2 = _cv2()
    gray = is_gray(frame_bgr_u8)
    lr = frame_bgr_u8.reshape(frame_bgr_u8.shape[:2]) if gray else frame_bgr_u8
    up = upscale_bicubic(lr.astype(np.float32), scale)
    full = 65535.0 if frame_bgr_u8.dtype == np.uint16 else 255.0  # a uint16 frame stays 16-bit
    gain = np.float32(full if gray else full * Y_TO_RGB_GAIN)
    delta = residual_y.reshape(up.shape[:2]).astype(np.float32, copy=False) * gain
    np.add(up, delta if gray else delta[..., None], out=up)  # in place, broadcast over B, G, R
    # rounded and saturated to uint8 by OpenCV in one pass (much faster than numpy clip/astype)
    return cv2.add(up, (0, 0, 0, 0), dtype=cv2.CV_16U if full > 255 else cv2.CV_8U)
