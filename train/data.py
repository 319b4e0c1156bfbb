"""Training data: HR images -> protocol LR (MATLAB bicubic) -> luma pairs held in memory.

Patches are random crops (LR p x p, HR sp x sp, aligned) with the 8 flips/rotations, drawn
from images in proportion to their area, by a seeded numpy Generator (exactly resumable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sr.color import y_from_rgb
from edge_sr.errors import EdgeSRError
from edge_sr.imageio import list_images, modcrop, read_rgb
from edge_sr.imresize import imresize

log = logging.getLogger(__name__)


@dataclass
class Pair:
    name: str
    y_lr: np.ndarray  # float32 [h, w] in [0, 1]
    y_hr: np.ndarray  # float32 [sh, sw] in [0, 1]


def make_pair(path: Path, scale: int) -> Pair:
    """Protocol degradation of one HR image: modcrop, imresize(1/s) on RGB uint8, then Y."""
    hr = modcrop(read_rgb(path), scale)
    lr = imresize(hr, 1.0 / scale)
    return Pair(path.name, (y_from_rgb(lr) / 255.0).astype(np.float32), (y_from_rgb(hr) / 255.0).astype(np.float32))


def load_pairs(folders: list[str | Path], scale: int, min_lr_size: int = 0, progress: bool = True) -> list[Pair]:
    files: list[Path] = []
    for folder in folders:
        files += list_images(folder, "training image folder")
    try:
        from tqdm import tqdm

        it = tqdm(files, desc="loading images", unit="img", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover - tqdm is a declared dependency
        it = files
    pairs = [make_pair(f, scale) for f in it]
    if min_lr_size:
        small = [p.name for p in pairs if min(p.y_lr.shape) < min_lr_size]
        pairs = [p for p in pairs if min(p.y_lr.shape) >= min_lr_size]
        if small:
            log.warning("skipped %d images smaller than a %d px LR patch: %s", len(small), min_lr_size, ", ".join(small[:5]))
        if not pairs:
            raise EdgeSRError(
                f"every training image is smaller than one patch ({min_lr_size} LR px = {min_lr_size * scale} HR px); "
                "use a smaller --patch or larger images"
            )
    return pairs


class PatchSampler:
    """Random aligned LR/HR patch batches with dihedral augmentation."""

    def __init__(self, pairs: list[Pair], patch: int, scale: int, seed: int):
        self.pairs = pairs
        self.patch = patch
        self.scale = scale
        # weights: number of possible crop positions
        w = np.array([(p.y_lr.shape[0] - patch + 1) * (p.y_lr.shape[1] - patch + 1) for p in pairs], dtype=np.float64)
        if (w <= 0).any():
            raise EdgeSRError(f"an image is smaller than the {patch} px LR patch")
        self.weights = w / w.sum()
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.patch, self.scale
        lr = np.empty((n, 1, p, p), np.float32)
        hr = np.empty((n, 1, p * s, p * s), np.float32)
        idx = self.rng.choice(len(self.pairs), size=n, p=self.weights)
        for k, i in enumerate(idx):
            pair = self.pairs[i]
            h, w = pair.y_lr.shape
            y = int(self.rng.integers(0, h - p + 1))
            x = int(self.rng.integers(0, w - p + 1))
            a = pair.y_lr[y : y + p, x : x + p]
            b = pair.y_hr[y * s : (y + p) * s, x * s : (x + p) * s]
            t = int(self.rng.integers(0, 8))
            if t & 4:
                a, b = a.T, b.T
            a, b = np.rot90(a, t & 3), np.rot90(b, t & 3)
            lr[k, 0], hr[k, 0] = a, b
        return lr, hr
