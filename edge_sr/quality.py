"""SR quality by the protocol of docs (PROTOCOL.md): modcrop, MATLAB bicubic LR, Y (BT.601 studio),
shave ``scale`` pixels, PSNR / SSIM, mean per set. Metrics are pure functions (after BasicSR)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .color import y_from_rgb
from .errors import EdgeSRError
from .imageio import IMAGE_SUFFIXES, list_images, modcrop, read_rgb
from .imresize import imresize

log = logging.getLogger(__name__)


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """PSNR in dB of two images on the 0..255 scale; ``inf`` when identical."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """SSIM (Wang et al.): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255, valid region."""
    import cv2

    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T

    def filt(x):
        return cv2.filter2D(x, -1, win)[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    s_aa = filt(a * a) - mu_a**2
    s_bb = filt(b * b) - mu_b**2
    s_ab = filt(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())


def protocol_pair(path: str | Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR RGB uint8 modcropped, LR RGB uint8 by MATLAB bicubic); gray images stay HxW."""
    hr = modcrop(read_rgb(path), scale)
    if min(hr.shape[:2]) < 2 * scale:
        raise EdgeSRError(f"image too small for x{scale}: {path}")
    return hr, imresize(hr, 1.0 / scale)


def score(hr_rgb: np.ndarray, sr_rgb: np.ndarray, scale: int, with_ssim: bool = True) -> tuple[float, float | None]:
    if sr_rgb.shape[:2] != hr_rgb.shape[:2]:
        raise EdgeSRError(f"method returned {sr_rgb.shape[:2]}, expected HR size {hr_rgb.shape[:2]}")
    y_hr, y_sr = y_from_rgb(hr_rgb), y_from_rgb(sr_rgb)
    return psnr(y_hr, y_sr, scale), (ssim(y_hr, y_sr, scale) if with_ssim else None)


def bicubic_method(lr_rgb: np.ndarray, scale: int) -> np.ndarray:
    """The protocol's bicubic baseline: MATLAB imresize up-sampling."""
    return imresize(lr_rgb, float(scale))


@dataclass
class SetResult:
    name: str
    psnr: float
    ssim: float | None
    per_image: dict = field(default_factory=dict)


def discover_sets(data: str | Path) -> list[tuple[str, list[Path]]]:
    """A folder of images is one set; a folder of folders of images is several (set5, set14...)."""
    p = Path(data)
    if not p.is_dir():
        raise EdgeSRError(f"evaluation folder not found: {p}")
    direct = [f for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if direct:
        return [(p.name, direct)]
    sets = [(d.name, list_images(d, "evaluation set")) for d in sorted(p.iterdir()) if d.is_dir()
            and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())]
    if not sets:
        raise EdgeSRError(f"no images in {p} or its subfolders")
    return sets


def evaluate(
    methods: dict[str, Callable[[np.ndarray], np.ndarray]],
    sets: list[tuple[str, list[Path]]],
    scale: int,
    with_ssim: bool = True,
    progress: bool = True,
) -> dict[str, list[SetResult]]:
    """Score each method (LR RGB uint8 -> SR RGB uint8 at HR size) on each set."""
    from tqdm import tqdm

    results: dict[str, list[SetResult]] = {m: [] for m in methods}
    total = sum(len(f) for _, f in sets)
    with tqdm(total=total, desc="eval", unit="img", disable=not progress, leave=False) as bar:
        for set_name, files in sets:
            per: dict[str, dict] = {m: {} for m in methods}
            for f in files:
                hr, lr = protocol_pair(f, scale)
                for m, fn in methods.items():
                    per[m][f.name] = score(hr, fn(lr), scale, with_ssim)
                bar.update(1)
            for m in methods:
                vals = list(per[m].values())
                results[m].append(
                    SetResult(
                        set_name,
                        float(np.mean([v[0] for v in vals])),
                        float(np.mean([v[1] for v in vals])) if with_ssim else None,
                        {k: {"psnr": v[0], "ssim": v[1]} for k, v in per[m].items()},
                    )
                )
    return results
