"""PyTorch backend: a checkpoint run by the DCSCN module (reference and training machines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint
from ..errors import EdgeSRError
from ..lazy import require
from . import Upscaler


class TorchUpscaler(Upscaler):
    backend = "torch"

    def __init__(self, path: str | Path | None = None, *, model=None, threads: int = 0, device: str = "cpu", **_ignored):
        torch = require("torch", "the torch backend (.safetensors checkpoints)")
        from ..model import DCSCN

        self._torch = torch
        if model is None:
            config, weights, info = load_checkpoint(path)
            model = DCSCN(config)
            try:
                model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()
                raise EdgeSRError(f"checkpoint {path} does not match its config: {first[1] if len(first) > 1 else first[0]}") from None
            self.name = Path(path).stem
        else:
            self.name = "in-memory"
        self.model = model.eval().to(device)
        self.device = device
        self.config = model.config
        self.scale = model.config.scale
        if threads:
            torch.set_num_threads(threads)

    def infer(self, y_lr_f32: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(y_lr_f32, dtype=np.float32))[None, None].to(self.device)
            return self.model.residual(x)[0, 0].float().cpu().numpy()
