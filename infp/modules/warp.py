"""Dense warping: features (B, C, H, W) sampled at identity grid + flow (B, 2, H', W')."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def identity_grid(height: int, width: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(1, 2, H, W) normalised sampling coordinates (x, y) in [-1, 1] at pixel centres."""
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=device, dtype=dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None]


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out[p] = features[p + flow[p]] with flow in normalised units (B, 2, H', W')."""
    if flow.shape[-2:] != features.shape[-2:]:
        flow = F.interpolate(flow, size=features.shape[-2:], mode="bilinear", align_corners=False)
    grid = identity_grid(*flow.shape[-2:], device=flow.device, dtype=flow.dtype) + flow
    return F.grid_sample(features, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False)
