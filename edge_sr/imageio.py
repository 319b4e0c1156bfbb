"""Reading and writing images and files: one clear error per bad input, atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import EdgeSRError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _cv2():
    import cv2

    return cv2


def list_images(folder: str | os.PathLike, what: str = "image folder") -> list[Path]:
    p = Path(folder)
    if not p.exists():
        raise EdgeSRError(f"{what} not found: {p}")
    if not p.is_dir():
        raise EdgeSRError(f"{what} is not a folder: {p}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgeSRError(f"{what} has no images ({', '.join(IMAGE_SUFFIXES)}): {p}")
    return files


def check_image_file(p: Path) -> None:
    """One line for a missing, folder or unreadable image path (before any decoder sees it)."""
    if not p.exists():
        raise EdgeSRError(f"image not found: {p}")
    if p.is_dir():
        raise EdgeSRError(f"expected an image file, got a folder: {p}")
    if not os.access(p, os.R_OK):
        raise EdgeSRError(f"image not readable (permissions): {p}")


def read_bgr(path: str | os.PathLike) -> np.ndarray:
    """uint8 BGR (HxWx3) or gray (HxW) image; alpha dropped, 16-bit scaled to 8-bit."""
    cv2 = _cv2()
    p = Path(path)
    check_image_file(p)
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise EdgeSRError(f"not an image OpenCV can decode: {p}")
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise EdgeSRError(f"unsupported pixel type {img.dtype} in {p}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return np.ascontiguousarray(img)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    img = read_bgr(path)
    return img if img.ndim == 2 else np.ascontiguousarray(img[..., ::-1])


def check_output_folder(dest: str | os.PathLike) -> Path:
    """The folder ``dest`` would be written into, or one clear error why it cannot be (checked
    before the work, so a long job does not fail at its end)."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.exists():
        raise EdgeSRError(f"output folder does not exist: {parent}")
    if not parent.is_dir():
        raise EdgeSRError(f"cannot write {dest}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise EdgeSRError(f"output folder is not writable: {parent}")
    return parent


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    parent = check_output_folder(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or (dest.suffix + ".tmp"), dir=parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should have normal file permissions
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        Path(tmp).write_bytes(data)


def write_image(dest: str | os.PathLike, img: np.ndarray) -> None:
    cv2 = _cv2()
    dest = Path(dest)
    ext = dest.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise EdgeSRError(f"cannot encode an image as {ext}: {dest}")
    write_bytes_atomic(dest, buf.tobytes())


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
