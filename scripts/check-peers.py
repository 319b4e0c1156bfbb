#!/usr/bin/env python3
"""OpenCV's peer models scored directly (cv2.dnn_superres), outside edge-sr's bench: Y PSNR on the protocol's
MATLAB-bicubic LR of a set (border of `scale` px), against bicubic, and the best 1 px shift of the output
(a misaligned output would gain from one). Checks that a peer's low PSNR belongs to the peer file, not to our path.

    .venv/bin/python scripts/check-peers.py [--set $EDGE_SR_DATA/val/set5] [--peers $EDGE_SR_PEERS] [--scales 2 3 4]
"""
import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from edge_sr.color import y_from_rgb
from edge_sr.imageio import list_images, modcrop, read_rgb
from edge_sr.imresize import imresize


def psnr(a, b, border):
    a = a[border:-border, border:-border].astype(np.float64)
    b = b[border:-border, border:-border].astype(np.float64)
    return 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def main():
    data = os.environ.get("EDGE_SR_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default=str(Path(data) / "val" / "set5"))
    ap.add_argument("--peers", default=os.environ.get("EDGE_SR_PEERS", str(Path(data).parent / "peers")))
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    a = ap.parse_args()
    for s in a.scales:
        for algo, name in (("fsrcnn", "FSRCNN"), ("espcn", "ESPCN")):
            pb = Path(a.peers) / f"{name}_x{s}.pb"
            if not pb.is_file():
                continue
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            sr.readModel(str(pb))
            sr.setModel(algo, s)
            peer, bic, shifted = [], [], {}
            for f in list_images(a.set, "image set"):
                hr = modcrop(read_rgb(f), s)
                lr = imresize(hr, 1.0 / s)
                out = sr.upsample(np.ascontiguousarray(lr[:, :, ::-1]))[:, :, ::-1]
                yh = y_from_rgb(hr)
                yo = np.round(y_from_rgb(out.astype(np.float64)))
                peer.append(psnr(yo, yh, s))
                bic.append(psnr(np.round(y_from_rgb(imresize(lr, s).astype(np.float64))), yh, s))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        shifted.setdefault((dy, dx), []).append(psnr(np.roll(yo, (dy, dx), (0, 1)), yh, s + 2))
            best = max(shifted, key=lambda k: np.mean(shifted[k]))
            print(f"x{s} {pb.name}: {np.mean(peer):.2f} dB, bicubic {np.mean(bic):.2f} dB "
                  f"({np.mean(peer) - np.mean(bic):+.2f}); best 1 px shift {best}")


if __name__ == "__main__":
    main()
