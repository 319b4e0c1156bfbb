"""Compare the emulated Raspberry Pi's outputs with the same commands' outputs on x86 (max abs difference).

    python compare.py X86_DIR PI_DIR      (run on the host, by scripts/check-pi-emulated.sh)

Tolerances: FP32 float output 1e-5 and FP32 images 1 level of 255; INT8 a few levels of 255 (ARM and x86
ONNX Runtime use different integer kernels); PSNR 0.01 dB (FP32) / 0.05 dB (INT8); the stream's video
frames (lossless FFV1) 1 level from an image source, 4 levels from the demo scene, whose
rendering differs by a level here and there between x86 and ARM (numpy's sin/cos). Prints one line per output; exit status 1 if any is over.
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

# name: (kind, tolerance, unit)
CHECKS = {
    "infer_fp32.npy": ("npy", 1e-5, ""),
    "infer_int8.npy": ("npy", 4 / 255, ""),
    "upscale_fp32.png": ("png", 1, " levels"),
    "upscale_int8.png": ("png", 4, " levels"),
    "infer_cpu-int8.npy": ("npy", 4 / 255, ""),
    "upscale_cpu-int8.png": ("png", 4, " levels"),
    "eval.json": ("psnr", None, " dB"),
    "stream_demo_fp32.avi": ("video", 4, " levels"),
    "stream_image_fp32.avi": ("video", 1, " levels"),
}
PSNR_TOL_DB = {"int8": 0.05}  # by a word in the method's name; otherwise 0.01


def frames(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return np.stack(out) if out else np.zeros((0,), np.uint8)


def main(argv) -> int:
    x86, pi = map(Path, argv)
    bad = 0
    for name, (kind, tol, unit) in CHECKS.items():
        a, b = x86 / name, pi / name
        if not a.is_file() or not b.is_file():
            print(f"FAIL {name:<22} missing: {a if not a.is_file() else b}")
            bad += 1
            continue
        if kind == "psnr":
            # methods are named by the model path, which differs between the two machines: match by file name
            ra, rb = ({Path(m).name: v for m, v in json.loads(p.read_text())["results"].items()} for p in (a, b))
            for method in ra:
                for set_name, r in ra[method].items():
                    if set_name not in rb.get(method, {}):
                        print(f"FAIL {name:<22} {method} on {set_name}: missing on the pi")
                        bad += 1
                        continue
                    pa, pb = r["psnr"], rb[method][set_name]["psnr"]
                    d = abs(pa - pb)
                    t = next((v for k, v in PSNR_TOL_DB.items() if k in method.lower()), 0.01)
                    ok = d <= t
                    bad += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} {name:<22} {method} on {set_name}: "
                          f"x86 {pa:.4f} dB, pi {pb:.4f} dB, |diff| {d:.2e} dB (tolerance {t})")
            continue
        if kind == "npy":
            va, vb = np.load(a).astype(np.float64), np.load(b).astype(np.float64)
        elif kind == "png":
            va, vb = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(np.int32) for p in (a, b))
        else:
            va, vb = frames(a).astype(np.int32), frames(b).astype(np.int32)
        if va.shape != vb.shape or va.size == 0:
            print(f"FAIL {name:<22} shapes differ: x86 {va.shape}, pi {vb.shape}")
            bad += 1
            continue
        d = float(np.abs(va - vb).max())
        ok = d <= tol
        bad += not ok
        extra = f", {len(va)} frames" if kind == "video" else ""
        shown = f"{d:.2e}" if kind == "npy" else f"{d:g}"
        print(f"{'ok  ' if ok else 'FAIL'} {name:<22} max |x86 - pi| = {shown}{unit} "
              f"(tolerance {tol:.2e}{unit}){extra}, shape {va.shape}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
