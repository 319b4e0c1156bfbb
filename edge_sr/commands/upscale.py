"""edge-sr upscale: one image or a folder of images, in colour."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "upscale",
        help="upscale an image or a folder of images",
        description="Upscale IN (an image, or a folder: OUT is then a folder of PNGs with the same stems). "
        "Colour in, colour out; large images are processed in overlapping tiles.",
    )
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--scale", type=int, default=None, help="checked against the model's scale (default: the model's)")
    p.add_argument("--model", default="compact", help="preset (compact/normal), .safetensors, .onnx or .engine")
    p.add_argument("--tile", type=int, default=None, help="LR tile side in pixels (default 512; 0 = no tiling)")
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..backends import open_upscaler
    from ..errors import EdgeSRError
    from ..imageio import IMAGE_SUFFIXES, list_images, read_bgr, write_image
    from ..pipeline import DEFAULT_TILE

    src, dst = Path(args.input), Path(args.output)
    if args.scale is not None and args.scale not in (2, 3, 4):
        raise EdgeSRError(f"unsupported scale {args.scale}: use 2, 3 or 4")
    if not src.exists():
        raise EdgeSRError(f"input not found: {src}")
    if src.is_dir():
        files = list_images(src, "input folder")
        if dst.exists() and not dst.is_dir():
            raise EdgeSRError(f"input is a folder, so OUT must be a folder, but {dst} is a file")
        try:
            dst.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeSRError(f"cannot create output folder {dst}: {exc.strerror}") from None
        jobs = [(f, dst / (f.stem + ".png")) for f in files]
    else:
        out = dst / (src.stem + ".png") if dst.is_dir() else dst
        if out.suffix.lower() not in IMAGE_SUFFIXES:
            raise EdgeSRError(f"output must be an image file ({', '.join(IMAGE_SUFFIXES)}): {out}")
        jobs = [(src, out)]
    tile = DEFAULT_TILE if args.tile is None else (args.tile or None)
    with open_upscaler(args.model, scale=args.scale, threads=args.threads) as up:
        for f, out in tqdm(jobs, desc=f"x{up.scale}", unit="img", disable=len(jobs) < 2):
            img = read_bgr(f)
            write_image(out, up.upscale(img, tile=tile))
    if len(jobs) == 1:
        print(f"wrote {jobs[0][1]}")
    else:
        print(f"wrote {len(jobs)} images to {dst}")
    return 0
