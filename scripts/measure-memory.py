#!/usr/bin/env python3
"""Peak memory (max RSS) of `edge-sr upscale` on a 4000x3000 photo, x2 (issue 12, item 2).

Makes a 4000x3000 JPEG (a mosaic of the photos in $EDGE_SR_DATA/photos when present, else a synthetic
textured picture), then runs `python -m edge_sr upscale photo.jpg -o out.jpg --model M [--tile T]` once per
setting in a fresh process and reads that process's peak resident memory from the kernel (wait4's
ru_maxrss). A baseline run (the model loaded, a 64x64 image) shows what the runtime itself takes.
Memory does not depend on a quiet machine; the wall times it also records do (run it under
scripts/quiet.sh before quoting them).

    .venv/bin/python scripts/measure-memory.py [--models normal compact] [--tiles auto 512]
        [--json docs/benchmarks/upscale-memory.json]

Default tiles: auto (``edge_sr.pipeline.auto_tile``: the model's activations for one tile about 192 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def make_photo(path: Path, w: int = 4000, h: int = 3000) -> str:
    import cv2

    data = Path(os.environ.get("EDGE_SR_DATA", REPO.parent / "shared" / "data")) / "photos"
    files = sorted(data.glob("*.webp"))[:200] if data.is_dir() else []
    canvas = np.zeros((h, w, 3), np.uint8)
    if files:
        y = x = 0
        row_h = 0
        for f in files * 4:
            img = cv2.imread(str(f))
            if img is None:
                continue
            ih, iw = img.shape[:2]
            if x >= w:
                x, y = 0, y + row_h
                row_h = 0
            if y >= h:
                break
            tile = img[: h - y, : w - x]
            canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            x += iw
            row_h = max(row_h, ih)
        what = f"mosaic of {data}/*.webp"
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for c in range(3):
            canvas[..., c] = np.clip(128 + 90 * np.sin(xx / (7 + c)) * np.cos(yy / 11) + rng.normal(0, 12, (h, w)),
                                     0, 255).astype(np.uint8)
        what = "synthetic texture"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return what


def peak_rss_mb(cmd: list[str]) -> tuple[float, float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO))
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024.0, wall, p.returncode, err.strip().splitlines()[-1] if err.strip() else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["normal", "compact"])
    ap.add_argument("--tiles", nargs="+", default=["auto"],
                    help="LR tile sides: auto (the default: sized for the model), N, or 0 (whole image)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        photo = d / "photo.jpg"
        source = make_photo(photo)
        small = d / "small.png"
        import cv2

        cv2.imwrite(str(small), np.full((64, 64, 3), 128, np.uint8))
        base = [sys.executable, "-m", "edge_sr", "upscale"]
        for model in args.models:
            mb, wall, rc, _ = peak_rss_mb(base + [str(small), "-o", str(d / "s.png"), "--model", model,
                                                  "--threads", str(args.threads)])
            rows.append({"model": model, "input": "64x64", "tile": None, "peak_rss_mb": round(mb, 1),
                         "wall_s": round(wall, 2), "rc": rc})
            print(f"{model:8s} baseline (64x64 image): peak RSS {mb:7.1f} MB", flush=True)
            for tile in args.tiles:
                out = d / "out.jpg"
                tile_args = [] if tile == "auto" else ["--tile", str(tile)]
                cmd = base + [str(photo), "-o", str(out), "--model", model, *tile_args, "--threads", str(args.threads)]
                mb, wall, rc, last = peak_rss_mb(cmd)
                ok = rc == 0 and out.is_file()
                size = None
                if ok:
                    from PIL import Image

                    size = Image.open(out).size
                rows.append({"model": model, "input": "4000x3000 JPEG", "tile": tile, "peak_rss_mb": round(mb, 1),
                             "wall_s": round(wall, 1), "rc": rc, "output_size": size,
                             "command": " ".join(["python -m edge_sr upscale photo.jpg -o out.jpg --model", model,
                                                  *tile_args, "--threads", str(args.threads)])})
                print(f"{model:8s} 4000x3000 x2 tile {tile:>4s}: peak RSS {mb:7.1f} MB, {wall:6.1f} s, "
                      f"rc {rc}{'' if ok else ' FAILED: ' + last}", flush=True)
                out.unlink(missing_ok=True)
    report = {"what": "peak resident memory (ru_maxrss of the process) of edge-sr upscale, 4000x3000 -> 8000x6000",
              "photo": source, "machine": platform.machine(), "python": platform.python_version(),
              "cpus": os.cpu_count(), "wall_s_note": "machine shared with other jobs unless run under scripts/quiet.sh",
              "command": ".venv/bin/python scripts/measure-memory.py "
              + " ".join(sys.argv[1:]), "results": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
