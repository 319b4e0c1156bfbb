"""Parsing of frame sizes written on the command line ("320x240"): one parser for every command."""

from __future__ import annotations

import re

from .errors import EdgeSRError

_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def parse_size(text: str, what: str = "size", order: str = "wh", minimum: int = 8, maximum: int = 16384) -> tuple[int, int]:
    """'320x240' -> (320, 240). ``order`` says how the user writes it and how it is returned:
    'wh' (WIDTHxHEIGHT, frame sizes) or 'hw' (HEIGHTxWIDTH, TensorRT shapes)."""
    m = _SIZE.fullmatch(str(text))
    form = "WIDTHxHEIGHT, e.g. 320x240" if order == "wh" else "HEIGHTxWIDTH, e.g. 480x640"
    if not m:
        raise EdgeSRError(f"bad {what} {text!r}: write {form}")
    a, b = int(m.group(1)), int(m.group(2))
    if min(a, b) < minimum or max(a, b) > maximum:
        raise EdgeSRError(f"{what} {text} out of range ({minimum}..{maximum} pixels per side)")
    return a, b
