"""Patch discriminators: frame (B, 3, S, S) -> realness logits, and the features behind them.

``features`` returns, per scale, the activations of every layer with the logits last; the training
loop uses the logits for the hinge loss and the activations for feature matching (pix2pixHD).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm


class PatchDiscriminator(nn.Module):
    """Four stride-2 spectral-normalised convs (PatchGAN-style): logits (B, 1, S/16, S/16)."""

    def __init__(self, base: int = 32, n_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i in range(n_layers):
            w = base * 2 ** min(i, 3)
            layers.append(nn.Sequential(spectral_norm(nn.Conv2d(c, w, 4, 2, 1)), nn.LeakyReLU(0.2)))
            c = w
        layers.append(spectral_norm(nn.Conv2d(c, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def features(self, image: torch.Tensor) -> list[list[torch.Tensor]]:
        """[[activation of each layer, ..., logits]] (one scale)."""
        out, h = [], image
        for layer in self.net:
            h = layer(h)
            out.append(h)
        return [out]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class MultiScaleDiscriminator(nn.Module):
    """``scales`` patch discriminators, each on the image halved once more than the previous one:
    the full-size one judges texture (pores, teeth, hair strands), the smaller ones the face's layout."""

    def __init__(self, base: int = 32, n_layers: int = 4, scales: int = 2) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList([PatchDiscriminator(base, n_layers) for _ in range(scales)])

    def features(self, image: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.discriminators):
            if i:
                image = F.avg_pool2d(image, 3, stride=2, padding=1, count_include_pad=False)
            out += d.features(image)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of the full-size discriminator (the per-scale ones: ``features``)."""
        return self.discriminators[0](image)
