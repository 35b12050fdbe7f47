"""Motion encoder: masked face (B, 3, H, W), only eyes + lips + outline dots visible -> motion latent (B, D)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from infp.modules.blocks import ConvBlock, ResBlock


class MotionEncoder(nn.Module):
    """A small CNN: the input is resized to ``input_size``, halved ``len(widths)`` times, pooled, projected."""

    def __init__(self, motion_dim: int = 64, widths: tuple[int, ...] = (32, 64, 128, 256), input_size: int = 128) -> None:
        super().__init__()
        self.input_size = input_size
        layers: list[nn.Module] = []
        c = 3
        for w in widths:
            layers += [ConvBlock(c, w, stride=2), ResBlock(w)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * c, 256), nn.SiLU(), nn.Linear(256, motion_dim))

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        """masked: (B, 3, H, W) in [-1, 1] -> (B, D)."""
        x = F.interpolate(masked, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        h = self.features(x)  # (B, C, h, w)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)
