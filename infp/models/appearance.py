"""Appearance encoder: portrait (B, 3, S, S) -> feature volume (B, C, S/4, S/4), computed once per portrait."""

from __future__ import annotations

import torch
from torch import nn

from infp.modules.blocks import ConvBlock, ResBlock


class AppearanceEncoder(nn.Module):
    """Two stride-2 stages then residual blocks at 1/4 resolution."""

    def __init__(self, channels: int = 64, base: int = 32, n_res: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBlock(3, base), ConvBlock(base, base * 2, stride=2), ConvBlock(base * 2, channels, stride=2))
        self.res = nn.Sequential(*[ResBlock(channels) for _ in range(n_res)])
        self.out_channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: (B, 3, S, S) in [-1, 1] -> (B, C, S/4, S/4)."""
        return self.res(self.stem(image))
