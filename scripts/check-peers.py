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
from edge_sr.imageio import list_images
from edge_sr.quality import bicubic_method, protocol_pair, psnr, score


def main():
    from edge_sr.datasets import data_root

    data = str(data_root())
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
                hr, lr = protocol_pair(f, s)  # the protocol's pair and scoring, as edge-sr eval does
                out = sr.upsample(np.ascontiguousarray(lr[:, :, ::-1]))[:, :, ::-1]
                peer.append(score(hr, out, s, with_ssim=False)[0])
                bic.append(score(hr, bicubic_method(lr, s), s, with_ssim=False)[0])
                yh, yo = y_from_rgb(hr), y_from_rgb(out)
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        shifted.setdefault((dy, dx), []).append(psnr(yh, np.roll(yo, (dy, dx), (0, 1)), s + 2))
            best = max(shifted, key=lambda k: np.mean(shifted[k]))
            print(f"x{s} {pb.name}: {np.mean(peer):.2f} dB, bicubic {np.mean(bic):.2f} dB "
                  f"({np.mean(peer) - np.mean(bic):+.2f}); best 1 px shift {best}")


if __name__ == "__main__":
    main()
