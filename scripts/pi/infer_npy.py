"""Save a model's raw float output (Upscaler.infer on an image's LR luma) as .npy, and prove the runtime
ran without torch. Used by scripts/check-pi-emulated.sh, identically on x86 and in the emulated Pi.

    python infer_npy.py MODEL.onnx IMAGE OUT.npy
"""

import sys

import numpy as np

from edge_sr.backends import open_upscaler
from edge_sr.color import y_from_bgr_u8
from edge_sr.imageio import read_bgr


def main(argv) -> int:
    model, image, out = argv
    y_lr_f32 = (y_from_bgr_u8(read_bgr(image)) / 255.0).astype(np.float32)
    with open_upscaler(model) as up:
        out_f32 = np.asarray(up.infer(y_lr_f32), dtype=np.float32)
        print(f"{up.name}: {up.backend} {up.precision} x{up.scale}, output {'residual' if up.output_is_residual else 'y'} "
              f"{out_f32.shape}, range {out_f32.min():.4f}..{out_f32.max():.4f}")
    np.save(out, out_f32)
    if "torch" in sys.modules:
        print("error: the runtime imported torch", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
