"""Where the training and evaluation images are: one rule for every command.

``$EDGE_SR_DATA`` first, then ``shared/data`` beside the repository (the layout of a development
checkout). The folder holds ``train/`` (HR training images, e.g. T91 + BSD200) and ``val/``
(one folder per evaluation set, e.g. ``set5/``, ``set14/``).
"""

from __future__ import annotations

import os
from pathlib import Path

# where to get the standard sets when nothing is found (said once, in the error)
WHERE_TO_GET = (
    "get the standard SR sets: T91 (Yang et al. 2010) and BSD200 (Berkeley segmentation set) for train/, "
    "Set5 and Set14 for val/ (mirrored with most SR code bases, e.g. the DCSCN or BasicSR repositories' "
    "dataset links), or DIV2K (the NTIRE 2017 set, 800 2K images) for more training data; "
    "then set EDGE_SR_DATA to the folder that holds train/ and val/"
)


def candidates() -> list[Path]:
    env = os.environ.get("EDGE_SR_DATA")
    out = [Path(env)] if env else []
    out.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return out


def data_root() -> Path | None:
    """The first candidate folder that exists (None: no data found)."""
    return next((c for c in candidates() if c.is_dir()), None)


def data_dir(*parts: str) -> Path | None:
    """``data_root()/parts`` when that exists, else None."""
    root = data_root()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None


def not_found_message(what: str, flag: str) -> str:
    looked = ", ".join(str(c) for c in candidates())
    return f"no {what} found (looked in {looked}); give {flag} DIR, or {WHERE_TO_GET}"
