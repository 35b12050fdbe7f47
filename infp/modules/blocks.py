"""Convolutional blocks: (B, C, H, W) -> (B, C', H', W'), optionally modulated by a vector (B, D)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _groups(channels: int) -> int:
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1


class ConvBlock(nn.Module):
    """3x3 conv -> GroupNorm -> SiLU, with optional stride 2 down-sampling."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.norm = nn.GroupNorm(_groups(c_out), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.conv(x)))


class FiLM(nn.Module):
    """Feature-wise affine modulation: x * (1 + scale(z)) + shift(z), z (B, D).

    Initialised small but not zero: a zero projection would also zero the gradient that reaches ``z``.
    """

    def __init__(self, z_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(z_dim, 2 * channels)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(z)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class ResBlock(nn.Module):
    """Pre-norm residual block of two 3x3 convs; modulated by ``z`` (FiLM) when ``z_dim`` > 0."""

    def __init__(self, channels: int, z_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm2 = nn.GroupNorm(_groups(channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.film = FiLM(z_dim, channels) if z_dim > 0 else None

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        if self.film is not None:
            h = self.film(h, z)
        h = self.conv1(F.silu(h))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class UpBlock(nn.Module):
    """Nearest-neighbour x2 up-sampling followed by a ConvBlock."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.block = ConvBlock(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.interpolate(x, scale_factor=2.0, mode="nearest"))
