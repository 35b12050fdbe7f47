"""Patch discriminator: frame (B, 3, S, S) -> realness logits (B, 1, S/16, S/16)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


class PatchDiscriminator(nn.Module):
    """Four stride-2 spectral-normalised convs (PatchGAN-style), for the optional adversarial loss."""

    def __init__(self, base: int = 32, n_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i in range(n_layers):
            w = base * 2 ** min(i, 3)
            layers += [spectral_norm(nn.Conv2d(c, w, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c = w
        layers.append(spectral_norm(nn.Conv2d(c, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)
