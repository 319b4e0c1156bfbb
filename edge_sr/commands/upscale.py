"""edge-sr upscale: an image, a folder of images (recursive) or a video file, in colour."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "upscale",
        help="upscale an image, a folder of images or a video file",
        description="Upscale IN: an image (OUT: a file, or a folder to write NAME.EXT into), a folder (OUT: a "
        "folder; subfolders are mirrored) or a video file (.mp4 .mkv .mov .avi .webm; OUT: a video file). "
        "Colour in, colour out; EXIF orientation applied, EXIF and ICC profile carried, alpha kept, 16-bit "
        "kept (PNG/TIFF); large images are processed tile by tile (memory follows the tile). "
        "In a folder, a file that fails is reported and skipped; the exit code is 1 if any failed.",
    )
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--scale", type=int, default=None, help="checked against the model's scale (default: the model's)")
    p.add_argument("--model", default="compact", help="preset (compact/normal/large), .safetensors, .onnx or .engine")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default=None,
                   help="a preset's shipped file: fp32 (default for stills: best quality), int8 (this platform's INT8 "
                   "file) or auto (the faster on this device: bench cache, else the platform default); a model file "
                   "runs as it is")
    p.add_argument("--tile", type=int, default=None, help="LR tile side in pixels (default: sized so one tile's activations take about "
                   "192 MB: 352 for compact, 192 for normal; 0 = no tiling)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--format", choices=("png", "jpg", "webp", "tif"), default=None,
                   help="output format for a folder (default: each input's own; GIF gives PNG)")
    p.add_argument("--suffix", default="", help="added to each output name in a folder, e.g. _x2")
    p.add_argument("--max-pixels", type=float, default=None, metavar="N",
                   help="refuse images above N pixels, checked before decoding (default 50e6; 0 = no limit)")
    p.add_argument("--no-recursive", action="store_true", help="folder: only the top level")
    p.add_argument("--codec", default=None, help="video: encoder (default H.264 for .mp4/.mov/.mkv, VP9 for .webm)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import EdgeSRError
    from ..stills import STILL_SUFFIXES, VIDEO_SUFFIXES

    src, dst = Path(args.input), Path(args.output)
    if args.scale is not None and args.scale not in (2, 3, 4):
        raise EdgeSRError(f"unsupported scale {args.scale}: use 2, 3 or 4")
    if not src.exists():
        raise EdgeSRError(f"input not found: {src}")
    if src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES:
        return _video(args, src, dst)
    if src.is_dir():
        return _folder(args, src, dst)
    if src.suffix.lower() not in STILL_SUFFIXES:
        raise EdgeSRError(f"not an image or video file name ({' '.join(sorted(STILL_SUFFIXES))} "
                          f"{' '.join(VIDEO_SUFFIXES)}): {src}")
    return _single(args, src, dst)


def _max_pixels(args):
    from ..stills import DEFAULT_MAX_PIXELS

    if args.max_pixels is None:
        return DEFAULT_MAX_PIXELS
    n = int(args.max_pixels)
    if n > 0:  # the user raised our limit: Pillow's own (a warning at 89 MP, an error at 179 MP) follows it
        import PIL.Image

        PIL.Image.MAX_IMAGE_PIXELS = max(PIL.Image.MAX_IMAGE_PIXELS or 0, n)
    else:
        import PIL.Image

        PIL.Image.MAX_IMAGE_PIXELS = None
    return n or None


def _open(args):
    from ..backends import open_upscaler

    # mem_pattern off (ONNX Runtime): stills run tile after tile, and the pattern's block would
    # double the activations' memory (see edge_sr.backends.onnxruntime); videos keep it (one shape)
    video = Path(args.input).suffix.lower() in (".mp4", ".mkv", ".mov", ".avi", ".webm")
    return open_upscaler(args.model, scale=args.scale, threads=args.threads, precision=args.precision,
                         mem_pattern=video)


def _tile(args):
    return args.tile  # None: sized for the model (edge_sr.pipeline.auto_tile); 0: whole image


def _tile_bar(name: str):
    """A progress bar over the tiles of one large image (shown when there are several)."""
    from tqdm import tqdm

    bars = []

    def make(n_tiles: int):
        if n_tiles < 4:
            return None
        bar = tqdm(total=n_tiles, desc=name, unit="tile", leave=False)
        bars.append(bar)
        return bar.update

    return make, bars


def _notices(name: str, notices) -> None:
    import sys

    for n in notices:
        print(f"note: {name}: {n}", file=sys.stderr)


def _single(args, src: Path, dst: Path) -> int:
    from ..errors import EdgeSRError
    from ..stills import output_name, upscale_file

    out = dst / output_name(src, args.format, args.suffix) if dst.is_dir() else dst
    if out.exists() and out.resolve() == src.resolve():
        raise EdgeSRError(f"refusing to overwrite the input {src}: give another output name")
    max_pixels = _max_pixels(args)
    with _open(args) as up:
        make, bars = _tile_bar(src.name)
        try:
            notices = upscale_file(up, src, out, tile=_tile(args), max_pixels=max_pixels, progress=make)
        finally:
            for b in bars:
                b.close()
    _notices(src.name, notices)
    print(f"wrote {out}")
    return 0


def _folder(args, src: Path, dst: Path) -> int:
    import sys

    from tqdm import tqdm

    from ..errors import EdgeSRError
    from ..stills import plan_folder, upscale_folder

    if dst.exists() and not dst.is_dir():
        raise EdgeSRError(f"input is a folder, so OUT must be a folder, but {dst} is a file")
    plan = plan_folder(src, dst, args.format, args.suffix, recursive=not args.no_recursive)
    max_pixels = _max_pixels(args)
    for line in plan.renamed:
        print(f"note: name collision: {line}", file=sys.stderr)
    with _open(args) as up:
        bar = tqdm(total=len(plan.jobs), desc=f"x{up.scale}", unit="img", disable=len(plan.jobs) < 2)
        tile_bars = []

        def tiles(n):
            if n < 4:
                return None
            tile_bars.append(tqdm(total=n, desc="  tiles", unit="tile", leave=False))
            return tile_bars[-1].update

        def on_file(f, out, err, notices):
            while tile_bars:
                tile_bars.pop().close()
            if err:
                bar.write(f"error: {err}", file=sys.stderr)
            for n in notices:
                bar.write(f"note: {f.relative_to(src)}: {n}", file=sys.stderr)
            bar.update(1)

        try:
            res = upscale_folder(up, src, dst, plan=plan, tile=_tile(args), max_pixels=max_pixels,
                                 on_file=on_file, progress=tiles)
        finally:
            bar.close()
    if plan.ignored:
        kinds = sorted({p.suffix.lower() or p.name for p in plan.ignored})
        print(f"note: ignored {len(plan.ignored)} file(s) that are not still images ({', '.join(kinds[:8])})",
              file=sys.stderr)
    print(f"wrote {len(res.written)} of {len(plan.jobs)} images to {dst}")
    if res.failed:
        print(f"{len(res.failed)} failed:", file=sys.stderr)
        for f, why in res.failed:
            print(f"  {f}: {why}", file=sys.stderr)
        return 1
    return 0


def _video(args, src: Path, dst: Path) -> int:
    from ..errors import EdgeSRError
    from ..stills import VIDEO_SUFFIXES

    if dst.is_dir():
        dst = dst / src.name
    if dst.suffix.lower() not in VIDEO_SUFFIXES:
        raise EdgeSRError(f"input is a video, so OUT must be a video file ({' '.join(VIDEO_SUFFIXES)}): {dst}")
    from ..video import upscale_video  # lazily: PyAV and its FFmpeg only for videos

    with _open(args) as up:
        res = upscale_video(src, dst, up, codec=args.codec, tile=args.tile)
    print(f"wrote {res.path} ({res.frames} frames, {res.duration_s:.2f} s, {res.codec}"
          + (f", audio {'/'.join(res.audio)}" if res.audio else "") + ")")
    return 0
