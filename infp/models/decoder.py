"""Decoder: warped features (B, C, h, w) + warped source RGB (B, 3, 4h, 4w) + m_driving (B, D)
[+ driving keypoint heatmaps (B, K, h, w)] -> frame (B, 3, 4h, 4w)."""

from __future__ import annotations

import torch
from torch import nn

from infp.modules.blocks import ResBlock, UpBlock


class Decoder(nn.Module):
    """Residual blocks at 1/4 resolution, two x2 up-samplings, then a blend with the warped source pixels.

    The last layer predicts an RGB image and a mask; the output is mask * warped_source + (1 - mask) * RGB,
    so sharp source detail is copied where the warp is right and painted where it is not.
    """

    def __init__(self, feat_channels: int = 64, motion_dim: int = 64, n_res: int = 2, widths: tuple[int, int] = (32, 16),
                 n_keypoints: int = 0, inner: int | None = None) -> None:
        super().__init__()
        inner = inner or feat_channels
        # ``inner`` < ``feat_channels``: a 1x1 projection first, so the residual blocks cost less
        self.inp = nn.Conv2d(feat_channels, inner, 1) if inner != feat_channels else None
        # where the driving keypoints are (e.g. how far apart the lips): lets it paint an opening mouth
        self.kp_map = nn.Conv2d(n_keypoints, inner, 1) if n_keypoints else None
        self.res = nn.ModuleList([ResBlock(inner, motion_dim) for _ in range(n_res)])
        self.up1 = UpBlock(inner, widths[0])
        self.up2 = UpBlock(widths[0], widths[1])
        self.out = nn.Conv2d(widths[1] + 3, 4, 3, 1, 1)

    def forward(self, warped: torch.Tensor, warped_rgb: torch.Tensor, m_drv: torch.Tensor,
                heat_drv: torch.Tensor | None = None) -> torch.Tensor:
        h = warped if self.inp is None else self.inp(warped)
        if self.kp_map is not None:
            h = h + self.kp_map(heat_drv)
        for block in self.res:
            h = block(h, m_drv)
        h = self.up2(self.up1(h))  # (B, w2, 4h, 4w)
        out = self.out(torch.cat([h, warped_rgb], dim=1))
        rgb, mask = torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:4])
        return mask * warped_rgb + (1 - mask) * rgb
