"""Still images as users have them: phone JPEGs, transparent PNGs, 16-bit scans, folders of them.

Pillow reads and writes the files (EXIF with its orientation, ICC profiles, alpha, palettes,
animation, the image size from the header before any pixel is decoded); OpenCV does the pixel
work (``edge_sr.pipeline``). Pillow has no 16-bit colour mode, so 16-bit colour files are decoded
and encoded by OpenCV (metadata still read by Pillow; written when OpenCV can).

What a file goes through (``upscale_file``):
- the size in the header is checked against ``max_pixels`` before decoding (a crafted header is
  refused, not decoded); animated files are refused;
- EXIF orientation is applied, so the picture comes out upright, and the EXIF written back says
  orientation 1 (the camera, date and the rest are kept; the pixel dimensions are updated);
- the ICC profile is written back (wide-gamut photos keep their colours);
- alpha is upscaled bicubic and kept (formats without alpha get a notice);
- 16-bit in, 16-bit out (PNG, TIFF, PPM/PGM); the model runs on the luma computed from the 16 bits,
  the colour keeps 16-bit precision. An 8-bit output format gets a notice;
- the image is upscaled tile by tile into the output image: memory follows the tile, not the image.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import EdgeSRError
from .imageio import atomic_path, check_output_folder

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 50_000_000  # input pixels (8660 x 5773); --max-pixels raises it

# suffix -> Pillow format name
STILL_SUFFIXES = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM", ".pgm": "PPM", ".pnm": "PPM",
    ".gif": "GIF",
}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif"}  # --format
_READ_ONLY = {".gif": ".png"}  # kept format when the input's cannot hold the result (GIF: 256 colours)
_ALPHA_OK = {"PNG", "WEBP", "TIFF", "BMP"}
_DEPTH16_OK = {"PNG", "TIFF", "PPM"}
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "PNG": {"compress_level": 6},
                 "TIFF": {"compression": "tiff_lzw"}}
_ORIENTATION = 0x0112
_EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x8769, 0xA002, 0xA003

ProgressFn = Callable[[int], None]


def _pil():
    from .lazy import require

    return require("PIL.Image", "reading and writing still images")


@dataclass
class Still:
    """An upright picture and what travels with it."""

    image: np.ndarray  # BGR (HxWx3) or gray (HxW), uint8 or uint16
    alpha: np.ndarray | None = None  # HxW, same dtype as image
    format: str | None = None  # Pillow's name of the file's format (JPEG, PNG...)
    exif: object | None = None  # PIL.Image.Exif, orientation already reset to 1
    icc: bytes | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def bits(self) -> int:
        return 16 if self.image.dtype == np.uint16 else 8


# EXIF orientation -> the transform that makes the picture upright (Pillow's ImageOps.exif_transpose)
def _orient_pil(im, orientation: int):
    Image = _pil()
    T = Image.Transpose
    ops = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE, 6: T.ROTATE_270,
           7: T.TRANSVERSE, 8: T.ROTATE_90}
    return im.transpose(ops[orientation]) if orientation in ops else im


def orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """The same transforms on a numpy array (for pixels Pillow cannot hold: 16-bit colour)."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.swapaxes(0, 1), 6: lambda x: np.rot90(x, -1), 7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
           8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _check_file(p: Path) -> None:
    from .imageio import check_image_file

    check_image_file(p)


def _bit_depth(im, p: Path) -> int:
    if im.mode.startswith("I;16"):
        return 16
    if im.format == "PNG":
        with open(p, "rb") as f:
            head = f.read(26)
        return head[24] if len(head) > 24 and head[12:16] == b"IHDR" else 8
    if im.format == "TIFF":
        bps = im.tag_v2.get(258, 8)
        return max(bps) if isinstance(bps, tuple) else int(bps)
    return 8


def open_still(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Still:
    """Read an image file as an upright BGR/gray array with its alpha, EXIF and ICC profile.

    Raises EdgeSRError for a missing, unreadable, corrupt, animated or too large file
    (``max_pixels`` is checked from the header, before decoding; None or 0: no limit)."""
    Image = _pil()
    p = Path(path)
    _check_file(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError as exc:  # Pillow's own guard (above 2 x MAX_IMAGE_PIXELS) came first
        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(m.group(1)) / 1e6:.1f} MP, " if m else ""
        limit = f"above the limit of {max_pixels / 1e6:g} MP" if max_pixels else "above Pillow's limit"
        raise EdgeSRError(f"{p}: {size}{limit} (nothing decoded; raise the limit with --max-pixels N "
                          "if the file is trusted)") from None
    except Image.UnidentifiedImageError:
        raise EdgeSRError(f"not an image (or a format Pillow cannot read): {p}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise EdgeSRError(f"corrupt or truncated image: {p} ({str(exc).splitlines()[0][:120]})") from None
    with im:
        w, h = im.size
        if max_pixels and w * h > max_pixels:
            raise EdgeSRError(f"{p}: {w}x{h} is {w * h / 1e6:.1f} MP, above the limit of {max_pixels / 1e6:g} MP "
                              "(nothing decoded; raise the limit with --max-pixels N if the file is trusted)")
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise EdgeSRError(f"{p}: animated {im.format} ({frames} frames): edge-sr upscales still images; "
                              "convert it to a video file and upscale that, or extract the frames")
        try:
            return _decode(im, p)
        except EdgeSRError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise EdgeSRError(f"corrupt or truncated image: {p} ({str(exc).splitlines()[0][:120]})") from None


def _decode(im, p: Path) -> Still:
    import cv2

    notices: list[str] = []
    fmt = im.format
    try:
        exif = im.getexif()
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
    except Exception as exc:  # a broken EXIF block must not stop the picture  # noqa: BLE001
        exif, orientation = None, 1
        notices.append(f"EXIF unreadable ({type(exc).__name__}): not carried")
    icc = im.info.get("icc_profile") or None
    bits = _bit_depth(im, p)
    alpha = None
    if bits > 8 and not im.mode.startswith("I;16"):  # 16-bit colour: Pillow would cut it to 8 bits
        if bits != 16:
            raise EdgeSRError(f"{p}: {bits}-bit samples are not supported (8 or 16)")
        data = np.fromfile(str(p), dtype=np.uint8)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # as stored: no EXIF rotation, alpha kept
        if arr is None:
            raise EdgeSRError(f"corrupt or truncated image: {p} (OpenCV could not decode its 16-bit pixels)")
        if arr.dtype != np.uint16:
            arr = arr.astype(np.uint16) * 257
        arr = orient_array(arr, orientation)
        if arr.ndim == 3 and arr.shape[2] == 4:
            alpha, arr = np.ascontiguousarray(arr[..., 3]), np.ascontiguousarray(arr[..., :3])
        elif arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
    else:
        im.load()
        mode = im.mode
        if mode == "CMYK":
            im = im.convert("RGB")
            if icc:
                notices.append("CMYK converted to RGB; its CMYK ICC profile is not carried")
                icc = None
        elif mode in ("P", "PA"):
            im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode not in ("L", "LA", "RGB", "RGBA", "RGBa", "La") and not mode.startswith("I;16"):
            raise EdgeSRError(f"{p}: pixel format {mode} is not supported (8/16-bit gray, RGB, RGBA or palette)")
        if im.mode in ("RGBa", "La"):
            im = im.convert(im.mode.replace("a", "A"))
        im = _orient_pil(im, orientation)
        arr = np.asarray(im)
        im.close()
        if arr.dtype != np.uint8:  # I;16 variants (big- or little-endian)
            arr = arr.astype(np.uint16)
        if arr.ndim == 3 and arr.shape[2] == 2:  # LA
            alpha, arr = np.ascontiguousarray(arr[..., 1]), np.ascontiguousarray(arr[..., 0])
        elif arr.ndim == 3 and arr.shape[2] == 4:
            alpha = np.ascontiguousarray(arr[..., 3])
            arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGR)
        elif arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if exif is not None and orientation != 1 and _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return Still(image=arr, alpha=alpha, format=fmt, exif=exif if exif else None, icc=icc, notices=notices)


def output_format(dest: Path) -> str:
    fmt = STILL_SUFFIXES.get(dest.suffix.lower())
    if fmt is None or fmt == "GIF":
        raise EdgeSRError(f"output must be an image file ({', '.join(sorted(set(STILL_SUFFIXES) - {'.gif'}))}): {dest}")
    return fmt


def _exif_bytes(exif, size_wh: tuple[int, int]) -> bytes | None:
    if exif is None:
        return None
    try:
        ifd = exif.get_ifd(_EXIF_IFD)
        if _PIXEL_X in ifd or _PIXEL_Y in ifd:  # the picture's size as the camera recorded it
            ifd[_PIXEL_X], ifd[_PIXEL_Y] = int(size_wh[0]), int(size_wh[1])
        return exif.tobytes()
    except Exception:  # noqa: BLE001 - a camera's odd EXIF must not stop the picture
        return None


def upscale_file(upscaler, src: str | os.PathLike, dest: str | os.PathLike, *, tile: int | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, progress: Callable[[int], ProgressFn] | None = None
                 ) -> list[str]:
    """Upscale one image file into ``dest`` (format from its suffix), metadata carried; returns the
    notices (what could not be kept). ``tile``: LR tile side (None: ``auto_tile``, 0: whole image).
    ``progress(n_tiles)`` may return a callback called per tile."""
    from .pipeline import auto_tile

    dest = Path(dest)
    fmt = output_format(dest)
    check_output_folder(dest)
    still = open_still(src, max_pixels=max_pixels)
    tile = auto_tile(upscaler) if tile is None else (tile or None)
    notices = list(still.notices)
    canvas, tick = _upscale_into_canvas(upscaler, still, fmt, tile, progress, notices)
    write_canvas(dest, canvas, fmt, still, notices)
    return notices


def _upscale_into_canvas(upscaler, still: Still, fmt: str, tile, progress, notices):
    """The upscaled picture, assembled tile by tile: a Pillow image (8-bit output, encoded by
    Pillow with the metadata) or a uint16 array (16-bit output, encoded by OpenCV)."""
    import cv2

    from .pipeline import iter_upscaled_tiles, plan_tiles

    Image = _pil()
    img, s = still.image, upscaler.scale
    h, w = img.shape[:2]
    keep16 = still.bits == 16 and fmt in _DEPTH16_OK
    if still.bits == 16 and not keep16:
        notices.append(f"16-bit input written as 8-bit ({fmt} is 8-bit; use .png or .tif to keep 16 bits)")
    alpha = still.alpha
    if alpha is not None and fmt not in _ALPHA_OK:
        notices.append(f"transparency dropped ({fmt} has no alpha; use .png or .webp to keep it)")
        alpha = None
    plan = plan_tiles(h, w, upscaler, tile)
    tick = progress(len(plan)) if progress else None
    gray = img.ndim == 2
    if keep16:
        canvas = np.empty((h * s, w * s) + img.shape[2:], np.uint16)
    else:
        canvas = Image.new("L" if gray else "RGB", (w * s, h * s))
    for t, block in iter_upscaled_tiles(upscaler, img, plan):
        if keep16:
            canvas[t.y0 * s : t.y1 * s, t.x0 * s : t.x1 * s] = block
        else:
            if block.dtype == np.uint16:
                block = cv2.convertScaleAbs(block, alpha=1 / 257.0)  # rounded and saturated to uint8
            if not gray:
                block = cv2.cvtColor(block, cv2.COLOR_BGR2RGB)
            canvas.paste(Image.fromarray(block), (t.x0 * s, t.y0 * s))
        if tick:
            tick(1)
    if alpha is not None:
        a = cv2.resize(alpha, (w * s, h * s), interpolation=cv2.INTER_CUBIC)  # bicubic, saturated
        if keep16:
            canvas = np.dstack([canvas, a]) if not gray else np.dstack([cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), a])
        else:
            if a.dtype == np.uint16:
                a = cv2.convertScaleAbs(a, alpha=1 / 257.0)
            canvas.putalpha(Image.fromarray(a))
    return canvas, tick


def write_canvas(dest: Path, canvas, fmt: str, still: Still, notices: list[str]) -> None:
    """Encode the upscaled picture with the input's EXIF and ICC profile, atomically."""
    import cv2

    if isinstance(canvas, np.ndarray):  # 16-bit: OpenCV
        size = (canvas.shape[1], canvas.shape[0])
        kinds, chunks = [], []
        exif = _exif_bytes(still.exif, size)
        if exif and exif.startswith(b"Exif\x00\x00"):
            exif = exif[6:]  # PNG's eXIf chunk holds the TIFF structure alone
        if exif:
            kinds.append(cv2.IMAGE_METADATA_EXIF)
            chunks.append(np.frombuffer(exif, np.uint8))
        if still.icc:
            kinds.append(cv2.IMAGE_METADATA_ICCP)
            chunks.append(np.frombuffer(still.icc, np.uint8))
        ext = dest.suffix.lower()
        if kinds and fmt == "PNG" and hasattr(cv2, "imencodeWithMetadata"):
            ok, buf = cv2.imencodeWithMetadata(ext, canvas, kinds, chunks)
        else:
            if kinds:
                notices.append(f"EXIF/ICC not carried: this OpenCV cannot write them into a 16-bit {fmt}")
            ok, buf = cv2.imencode(ext, canvas)
        if not ok:
            raise EdgeSRError(f"cannot encode a 16-bit image as {ext}: {dest}")
        with atomic_path(dest) as tmp:
            Path(tmp).write_bytes(buf.tobytes())
        return
    opts = dict(_SAVE_OPTIONS.get(fmt, {}))
    exif = _exif_bytes(still.exif, canvas.size)
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        if exif:
            opts["exif"] = exif
        if still.icc:
            opts["icc_profile"] = still.icc
    elif exif or still.icc:
        notices.append(f"EXIF/ICC not carried: {fmt} cannot hold them")
    with atomic_path(dest) as tmp:
        try:
            try:
                canvas.save(tmp, format=fmt, **opts)
            except RuntimeError:  # libtiff refuses some EXIF blocks: Pillow's own (uncompressed) writer takes them
                if fmt != "TIFF":
                    raise
                opts.pop("compression")
                canvas.save(tmp, format=fmt, **opts)
        except (OSError, ValueError, RuntimeError) as exc:
            raise EdgeSRError(f"cannot write {dest} as {fmt}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# folders


@dataclass
class FolderPlan:
    jobs: list[tuple[Path, Path]]  # (input, output), in a stable order
    renamed: list[str] = field(default_factory=list)  # collisions and how they were resolved
    ignored: list[Path] = field(default_factory=list)  # files that are not still images


def output_name(src: Path, fmt: str | None = None, suffix: str = "") -> str:
    """NAME + suffix + the output extension: the input's own (GIF -> PNG) or ``fmt``'s."""
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise EdgeSRError(f"unknown --format {fmt!r}: use {', '.join(OUTPUT_FORMATS)}")
        ext = OUTPUT_FORMATS[fmt]
    else:
        ext = _READ_ONLY.get(src.suffix.lower(), src.suffix)
    return f"{src.stem}{suffix}{ext}"


def plan_folder(src: str | os.PathLike, dst: str | os.PathLike, fmt: str | None = None, suffix: str = "",
                recursive: bool = True) -> FolderPlan:
    """Every still image under ``src`` (subfolders mirrored under ``dst`` when ``recursive``) and its
    output path. Two inputs that would give the same output name (photo.webp and photo.bmp with
    --format png) both get their input extension in the name (photo_webp.png, photo_bmp.png), and
    the plan says so; an output that would replace an input is refused."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise EdgeSRError(f"input folder not found: {src}" if not src.exists() else f"not a folder: {src}")
    dst_abs = dst.resolve()
    files, ignored = [], []
    walker = os.walk(src) if recursive else [(str(src), [], [f.name for f in src.iterdir() if f.is_file()])]
    for root, dirs, names in walker:
        root_p = Path(root)
        # never walk into the output folder when it lies inside the input folder
        dirs[:] = sorted(d for d in dirs if (root_p / d).resolve() != dst_abs and not d.startswith("."))
        for n in sorted(names):
            f = root_p / n
            if n.startswith("."):
                continue
            (files if f.suffix.lower() in STILL_SUFFIXES else ignored).append(f)
    if not files:
        raise EdgeSRError(f"input folder has no images ({', '.join(sorted(STILL_SUFFIXES))}): {src}")
    wanted: dict[str, list[Path]] = {}
    for f in files:
        out = dst / f.relative_to(src).parent / output_name(f, fmt, suffix)
        wanted.setdefault(str(out).lower(), []).append(f)  # case-insensitive: safe on every filesystem
    inputs = {f.resolve() for f in files}
    jobs, renamed, taken = [], [], set(wanted)
    for key, group in wanted.items():
        if len(group) == 1:
            f = group[0]
            jobs.append((f, dst / f.relative_to(src).parent / output_name(f, fmt, suffix)))
            continue
        names = []
        for f in group:
            stem = f"{f.stem}_{f.suffix.lstrip('.').lower()}"
            base = output_name(f.with_name(stem + f.suffix), fmt, suffix)
            out, k = dst / f.relative_to(src).parent / base, 1
            while str(out).lower() in taken:  # still taken: count up
                k += 1
                out = out.with_name(f"{Path(base).stem}_{k}{Path(base).suffix}")
            taken.add(str(out).lower())
            jobs.append((f, out))
            names.append(out.name)
        first = dst / group[0].relative_to(src).parent / output_name(group[0], fmt, suffix)
        renamed.append(f"{', '.join(f.name for f in group)} would all be {first.name}: "
                       f"written as {', '.join(names)}")
    jobs.sort(key=lambda j: str(j[0]))
    for f, out in jobs:
        if out.resolve() in inputs:
            raise EdgeSRError(f"refusing to overwrite the input {out}: write to another folder or add --suffix")
    return FolderPlan(jobs, renamed, ignored)


@dataclass
class FolderResult:
    written: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, why)
    notices: list[tuple[Path, str]] = field(default_factory=list)
    plan: FolderPlan | None = None


def upscale_folder(upscaler, src: str | os.PathLike, dst: str | os.PathLike, *, fmt: str | None = None,
                   suffix: str = "", recursive: bool = True, tile: int | None = None,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, plan: FolderPlan | None = None,
                   on_file: Callable[[Path, Path, str | None, list[str]], None] | None = None,
                   progress: Callable[[int], ProgressFn] | None = None) -> FolderResult:
    """Upscale every image of a folder (see ``plan_folder``). A file that fails is recorded in the
    result and skipped; the others go on. ``on_file(input, output, error or None, notices)`` is
    called after each file."""
    dst = Path(dst)
    plan = plan or plan_folder(src, dst, fmt, suffix, recursive)
    if dst.exists() and not dst.is_dir():
        raise EdgeSRError(f"input is a folder, so the output must be a folder, but {dst} is a file")
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeSRError(f"cannot create output folder {dst}: {exc.strerror}") from None
    res = FolderResult(plan=plan)
    for f, out in plan.jobs:
        err, notices = None, []
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            notices = upscale_file(upscaler, f, out, tile=tile, max_pixels=max_pixels, progress=progress)
        except EdgeSRError as exc:
            err = str(exc)
        except OSError as exc:  # the output side: disk full, permissions
            err = f"cannot write {out}: {exc.strerror or exc}"
        if err is None:
            res.written.append((f, out))
            res.notices.extend((f, n) for n in notices)
        else:
            res.failed.append((f, err))
        if on_file:
            on_file(f, out, err, notices)
    return res


def upscale_array(upscaler, image: np.ndarray, channel_order: str | None = None, tile: int | None = None
                  ) -> np.ndarray:
    """Upscale a numpy image: HxW gray, HxWx3 colour or HxWx4 colour + alpha, uint8 or uint16.

    ``channel_order`` ('bgr': OpenCV; 'rgb': Pillow, imageio, matplotlib) must be given for colour
    images; the result has the same order, dtype and channels. Alpha is upscaled bicubic."""
    import cv2

    from .pipeline import auto_tile, upscale_frame

    tile = auto_tile(upscaler) if tile is None else (tile or None)
    if not isinstance(image, np.ndarray):
        raise EdgeSRError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise EdgeSRError(f"expected a uint8 or uint16 image, got {image.dtype} (scale floats to 0..255 uint8 first)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return upscale_frame(upscaler, image, tile=tile)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise EdgeSRError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    order = (channel_order or "").lower()
    if order not in ("bgr", "rgb"):
        raise EdgeSRError("say which channel order the image has: channel_order='bgr' (OpenCV) or 'rgb' "
                          "(Pillow, imageio)" + (f", not {channel_order!r}" if channel_order else ""))
    colour = image[..., :3]
    if order == "rgb":
        colour = colour[..., ::-1]
    out = upscale_frame(upscaler, np.ascontiguousarray(colour), tile=tile)
    if order == "rgb":
        out = np.ascontiguousarray(out[..., ::-1])
    if image.shape[2] == 4:
        h, w = out.shape[:2]
        a = cv2.resize(np.ascontiguousarray(image[..., 3]), (w, h), interpolation=cv2.INTER_CUBIC)
        out = np.dstack([out, a])
    return out
