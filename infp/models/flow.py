"""Flow estimator: (appearance (B, C, h, w), m_source, m_driving (B, D), keypoints (B, K, 2) of both)
-> flow (B, 2, h, w), occlusion (B, 1, h, w)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from infp.models.keypoints import head_pose, heatmaps, sparse_motion
from infp.modules.blocks import ConvBlock, ResBlock


class FlowEstimator(nn.Module):
    """A small U-Net over the source features, modulated by both motion latents (FiLM).

    Its inputs also carry both keypoint sets as heatmaps and the sparse motion between them; the output
    is a residual on that sparse motion (a backward warp in normalised coordinates, bounded by
    ``max_flow``), so at initialisation the parts already move with their keypoints.

    ``stride`` 2 runs the U-Net on the features pooled to half their size (a quarter of the compute; the
    residual is smooth, the keypoint prior stays at full feature resolution). ``pose``: the prior moves
    the whole head with the affine motion of its rigid keypoints (``head_pose``) instead of fading to a
    still background away from the keypoints.
    """

    def __init__(self, feat_channels: int = 64, motion_dim: int = 64, width: int = 48, max_flow: float = 0.5,
                 n_keypoints: int = 0, kp_sigma: float = 0.04, stride: int = 1, pose: bool = False) -> None:
        super().__init__()
        if pose and not n_keypoints:
            raise ValueError("the head-pose prior needs keypoints")
        z = 3 * motion_dim
        self.max_flow = max_flow
        self.kp_sigma = kp_sigma
        self.stride = stride
        self.pose = pose
        self.z_map = nn.Linear(z, 16)  # the motion pair, broadcast over the feature map as input channels
        self.kp_map = nn.Conv2d(2 * n_keypoints + 2, 32, 1) if n_keypoints else None
        self.inp = ConvBlock(feat_channels + 16 + (32 if n_keypoints else 0), width)
        self.down = ConvBlock(width, 2 * width, stride=2)
        self.mid = nn.ModuleList([ResBlock(2 * width, z), ResBlock(2 * width, z)])
        self.up = ConvBlock(2 * width + width, width)
        self.res = ResBlock(width, z)
        self.out = nn.Conv2d(width, 3, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor, m_src: torch.Tensor, m_drv: torch.Tensor, kp_src: torch.Tensor | None = None,
                kp_drv: torch.Tensor | None = None, heat_drv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([m_src, m_drv, m_drv - m_src], dim=1)  # (B, 3D)
        hw = feats.shape[-2:]
        prior = None
        if self.kp_map is not None:
            pose = head_pose(kp_src, kp_drv) if self.pose else None
            prior, heat_drv = sparse_motion(kp_src, kp_drv, *hw, sigma=self.kp_sigma, heat=heat_drv, pose=pose)
            heat_src = heatmaps(kp_src, *hw, sigma=self.kp_sigma)
            kp_inputs = torch.cat([heat_drv, heat_src, prior], dim=1)
        if self.stride > 1:
            feats = F.avg_pool2d(feats, self.stride)
            if prior is not None:
                kp_inputs = F.avg_pool2d(kp_inputs, self.stride)
        zmap = self.z_map(z)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
        inputs = [feats, zmap]
        if prior is not None:
            inputs.append(self.kp_map(kp_inputs))
        h0 = self.inp(torch.cat(inputs, dim=1))  # (B, W, h, w)
        h = self.down(h0)  # (B, 2W, h/2, w/2)
        for block in self.mid:
            h = block(h, z)
        h = F.interpolate(h, size=h0.shape[-2:], mode="bilinear", align_corners=False)
        h = self.res(self.up(torch.cat([h, h0], dim=1)), z)
        out = self.out(h)
        if self.stride > 1:
            out = F.interpolate(out, size=hw, mode="bilinear", align_corners=False)
        flow = self.max_flow * torch.tanh(out[:, :2])
        if prior is not None:
            flow = flow + prior
        occlusion = torch.sigmoid(out[:, 2:3] + 3.0)  # starts near 1: everything visible
        return flow, occlusion
