"""Model checkpoints: one safetensors file holding the config and the weights.

Reading is torch-free (numpy); building the torch module is done by the torch backend.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .config import DCSCNConfig
from .errors import EdgeSRError

FORMAT = "edge-sr-dcscn/1"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, config: DCSCNConfig, state: dict[str, np.ndarray], info: dict | None = None) -> None:
    """Write weights (name -> float32 array) with config and provenance, atomically."""
    from safetensors.numpy import save

    from .imageio import write_bytes_atomic

    meta = {"format": FORMAT, "config": config.to_json(), "info": json.dumps(info or {}, sort_keys=True)}
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    write_bytes_atomic(path, save(tensors, metadata=meta))


def load_checkpoint(path: str | os.PathLike) -> tuple[DCSCNConfig, dict[str, np.ndarray], dict]:
    """Return (config, weights, info). Every failure is one EdgeSRError line."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise EdgeSRError(f"model file not found: {p}")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise EdgeSRError(f"not a readable edge-sr checkpoint (corrupt or wrong format): {p} ({exc})") from None
    if meta.get("format") != FORMAT:
        raise EdgeSRError(f"not an edge-sr DCSCN checkpoint (format {meta.get('format')!r}): {p}")
    try:
        config = DCSCNConfig.from_dict(json.loads(meta["config"]))
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise EdgeSRError(f"checkpoint {p} has a broken config: {exc}") from None
    return config, weights, info
