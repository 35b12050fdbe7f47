"""Flow estimator: (appearance (B, C, h, w), m_source (B, D), m_driving (B, D)) -> flow (B, 2, h, w), occlusion (B, 1, h, w)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from infp.modules.blocks import ConvBlock, ResBlock


class FlowEstimator(nn.Module):
    """A small U-Net over the source features, modulated by both motion latents (FiLM).

    The flow is a backward warp in normalised coordinates, bounded by ``max_flow``; it starts at zero.
    """

    def __init__(self, feat_channels: int = 64, motion_dim: int = 64, width: int = 48, max_flow: float = 0.5) -> None:
        super().__init__()
        z = 3 * motion_dim
        self.max_flow = max_flow
        self.z_map = nn.Linear(z, 16)  # the motion pair, broadcast over the feature map as input channels
        self.inp = ConvBlock(feat_channels + 16, width)
        self.down = ConvBlock(width, 2 * width, stride=2)
        self.mid = nn.ModuleList([ResBlock(2 * width, z), ResBlock(2 * width, z)])
        self.up = ConvBlock(2 * width + width, width)
        self.res = ResBlock(width, z)
        self.out = nn.Conv2d(width, 3, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor, m_src: torch.Tensor, m_drv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([m_src, m_drv, m_drv - m_src], dim=1)  # (B, 3D)
        zmap = self.z_map(z)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
        h0 = self.inp(torch.cat([feats, zmap], dim=1))  # (B, W, h, w)
        h = self.down(h0)  # (B, 2W, h/2, w/2)
        for block in self.mid:
            h = block(h, z)
        h = F.interpolate(h, size=h0.shape[-2:], mode="bilinear", align_corners=False)
        h = self.res(self.up(torch.cat([h, h0], dim=1)), z)
        out = self.out(h)
        flow = self.max_flow * torch.tanh(out[:, :2])
        occlusion = torch.sigmoid(out[:, 2:3] + 3.0)  # starts near 1: everything visible
        return flow, occlusion
