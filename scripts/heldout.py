#!/usr/bin/env python3
"""A held-out image set for choices that must not look at the test sets (Set5, Set14): 96 of the photos
(every 6th in name order), centre 240x240 crops, written as PNG. The shipped models trained on T91 + BSD200;
calibration uses T91 or BSD200 crops; so these images are unseen by both. 96, not the 12 used until session 8:
INT8 candidates differ by hundredths of a dB, and 12 crops could not tell apart two compact x3 files that 96 crops,
Set5 and Set14 all put 0.025 dB apart (31.170 vs 31.173 on the 12; docs/deploy.md).

    .venv/bin/python scripts/heldout.py OUT_DIR [--data $EDGE_SR_DATA]
"""
import argparse
import os
import sys
from pathlib import Path

CROP, EVERY, COUNT = 240, 6, 96


def make_heldout(data: str | os.PathLike, out: str | os.PathLike) -> Path:
    from edge_sr.imageio import list_images, read_bgr, write_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(list_images(Path(data) / "photos", "photos"))[::EVERY][:COUNT]:
        im = read_bgr(f)
        h, w = im.shape[:2]
        y, x = (h - CROP) // 2, (w - CROP) // 2
        write_image(out / f"{Path(f).stem}.png", im[y:y + CROP, x:x + CROP])
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    from edge_sr.datasets import data_root

    ap.add_argument("--data", default=data_root(), help="data folder (default: $EDGE_SR_DATA, else shared/data)")
    a = ap.parse_args()
    if a.data is None:
        ap.error("no data folder: set EDGE_SR_DATA or give --data")
    print(make_heldout(a.data, a.out))
    sys.exit(0)
