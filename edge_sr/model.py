"""DCSCN as a plain nn.Module. The only runtime module that imports torch (lazily, via callers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DCSCNConfig


class DCSCN(nn.Module):
    """Deep CNN with Skip Connection and Network in Network (Yamanaka et al. 2017).

    Input: LR luma ``y_lr`` [N, 1, H, W] in [0, 1]. ``forward`` returns the HR luma
    [N, 1, sH, sW] = bicubic(y_lr) + residual; ``residual`` returns the learned part only, so a
    caller (OpenCV on the device) can add the bicubic up-sampling itself.
    The bicubic is PyTorch's (a = -0.75, align_corners=False), identical to cv2.INTER_CUBIC.
    """

    def __init__(self, config: DCSCNConfig):
        super().__init__()
        self.config = config
        cin = 1

        def act(n: int) -> nn.Module:
            return nn.PReLU(n) if config.activation == "prelu" else nn.ReLU()

        self.features = nn.ModuleList()
        for n in config.feature_filters:
            self.features.append(nn.Sequential(nn.Conv2d(cin, n, 3, padding=1), act(n)))
            cin = n
        c = config.concat_channels
        self.a1 = nn.Sequential(nn.Conv2d(c, config.a_filters, 1), act(config.a_filters))
        self.b1 = nn.Sequential(nn.Conv2d(c, config.b_filters, 1), act(config.b_filters))
        self.b2 = nn.Sequential(nn.Conv2d(config.b_filters, config.b_filters, 3, padding=1), act(config.b_filters))
        k = config.last_kernel
        self.last = nn.Conv2d(config.a_filters + config.b_filters, config.scale**2, k, padding=k // 2, bias=False)
        self.shuffle = nn.PixelShuffle(config.scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation as in the original code; PReLU slopes start at 0.1, biases at 0."""
        slope = 0.1 if self.config.activation == "prelu" else 0.0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.PReLU):
                nn.init.constant_(m.weight, 0.1)
        # start from "bicubic": a small last layer keeps the first steps near the residual's zero
        nn.init.normal_(self.last.weight, std=1e-3)

    def residual(self, y_lr: torch.Tensor) -> torch.Tensor:
        x = y_lr
        outs = []
        for layer in self.features:
            x = layer(x)
            outs.append(x)
        cat = torch.cat(outs, dim=1)
        rec = torch.cat([self.a1(cat), self.b2(self.b1(cat))], dim=1)
        return self.shuffle(self.last(rec))

    def forward(self, y_lr: torch.Tensor) -> torch.Tensor:
        s = self.config.scale
        up = F.interpolate(y_lr, scale_factor=s, mode="bicubic", align_corners=False)
        return up + self.residual(y_lr)
