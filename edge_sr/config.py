"""DCSCN configuration: presets, filter schedule, parameter and MAC counts. Torch-free."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from .errors import EdgeSRError

SUPPORTED_SCALES = (2, 3, 4)
ACTIVATIONS = ("prelu", "relu")


@dataclass(frozen=True)
class DCSCNConfig:
    """Everything that fixes the shape of a DCSCN network (Yamanaka et al. 2017, "ver1")."""

    scale: int = 2
    layers: int = 7  # L: feature-extraction layers
    filters: int = 96  # F: filters of the first layer
    min_filters: int = 32  # Fmin: filters of the last feature layer
    gamma: float = 1.5  # shrink curve of the filter schedule
    a_filters: int = 64  # A1 branch (1x1)
    b_filters: int = 32  # B1 (1x1) and B2 (3x3) branch
    last_kernel: int = 1  # kernel of the last conv ("L"): 1 in compact/normal, 3 in large
    preset: str = "custom"
    # the nonlinearity after every conv but the last: the paper's per-channel PReLU, or ReLU (no parameters;
    # ONNX Runtime's integer kernels fuse it into the conv, so a CPU INT8 graph stays integer end to end)
    activation: str = "prelu"

    def __post_init__(self):
        if self.scale not in SUPPORTED_SCALES:
            raise EdgeSRError(f"unsupported scale {self.scale}: edge-sr supports x2, x3 and x4")
        if self.layers < 2 or self.filters < self.min_filters or self.min_filters < 1:
            raise EdgeSRError(f"invalid DCSCN shape: layers={self.layers} filters={self.filters} min={self.min_filters}")
        if self.last_kernel not in (1, 3):
            raise EdgeSRError(f"last_kernel must be 1 or 3, not {self.last_kernel}")
        if self.activation not in ACTIVATIONS:
            raise EdgeSRError(f"unknown activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}")

    # -- derived shape ---------------------------------------------------------------
    @property
    def feature_filters(self) -> list[int]:
        """n_i = int((F - Fmin) * (1 - (i / (L - 1)) ** (1 / gamma)) + Fmin)."""
        f, fm, n = self.filters, self.min_filters, self.layers
        return [int((f - fm) * (1 - (i / (n - 1)) ** (1 / self.gamma)) + fm) for i in range(n)]

    @property
    def concat_channels(self) -> int:
        return sum(self.feature_filters)

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context on each side that one output pixel depends on (bicubic excluded)."""
        return self.layers + 1 + (self.last_kernel // 2)

    def macs_per_lr_pixel(self) -> int:
        """Multiply-accumulates of the convolutions per LR pixel (bicubic and PReLU excluded)."""
        macs, cin = 0, 1
        for n in self.feature_filters:
            macs += 9 * cin * n
            cin = n
        c = self.concat_channels
        macs += c * self.a_filters + c * self.b_filters + 9 * self.b_filters * self.b_filters
        macs += self.last_kernel**2 * (self.a_filters + self.b_filters) * self.scale**2
        return macs

    def param_count(self) -> int:
        """Trainable parameters: convs (+bias), per-channel PReLU slopes (none with ReLU), bias-free last conv."""
        k = 2 if self.activation == "prelu" else 1  # per output channel: bias (+ slope)
        params, cin = 0, 1
        for n in self.feature_filters:
            params += 9 * cin * n + k * n
            cin = n
        c = self.concat_channels
        params += c * self.a_filters + k * self.a_filters
        params += c * self.b_filters + k * self.b_filters
        params += 9 * self.b_filters * self.b_filters + k * self.b_filters
        params += self.last_kernel**2 * (self.a_filters + self.b_filters) * self.scale**2
        return params

    def gflop_per_frame(self, lr_h: int, lr_w: int) -> float:
        return 2.0 * self.macs_per_lr_pixel() * lr_h * lr_w / 1e9

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["activation"] == "prelu":  # the paper's network: written as before the option existed
            del d["activation"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "DCSCNConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise EdgeSRError(f"unknown DCSCN config keys: {sorted(unknown)}")
        return cls(**d)


_PRESETS = {
    # c-DCSCN of the paper: 26.2K parameters at x2
    "compact": dict(layers=7, filters=32, min_filters=8, gamma=1.2, a_filters=24, b_filters=8, last_kernel=1),
    # the paper's DCSCN: 244K parameters at x2
    "normal": dict(layers=7, filters=96, min_filters=32, gamma=1.5, a_filters=64, b_filters=32, last_kernel=1),
    # the paper's large model: 1.33M parameters
    "large": dict(layers=10, filters=196, min_filters=48, gamma=1.2, a_filters=64, b_filters=32, last_kernel=3),
}

PRESET_NAMES = tuple(_PRESETS)


def preset(name: str, scale: int = 2) -> DCSCNConfig:
    if name not in _PRESETS:
        raise EdgeSRError(f"unknown preset {name!r}: choose one of {', '.join(_PRESETS)}")
    return DCSCNConfig(scale=scale, preset=name, **_PRESETS[name])
