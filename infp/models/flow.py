"""Flow estimator: (appearance (B, C, h, w), m_source, m_driving (B, D), keypoints (B, K, 2) of both)
-> flow (B, 2, h, w), occlusion (B, 1, h, w)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from infp.models.keypoints import heatmaps, sparse_motion
from infp.modules.blocks import ConvBlock, ResBlock


class FlowEstimator(nn.Module):
    """A small U-Net over the source features, modulated by both motion latents (FiLM).

    Its inputs also carry both keypoint sets as heatmaps and the sparse motion between them; the output
    is a residual on that sparse motion (a backward warp in normalised coordinates, bounded by
    ``max_flow``), so at initialisation the parts already move with their keypoints.

    For rendering many frames of one portrait, ``prepare`` computes once what depends only on the
    portrait: the input convolution's response to the source features and source heatmaps (convolution
    is linear, so it splits exactly by input channel), and its response to each motion channel held
    constant over the map. ``forward(..., cache=...)`` then convolves only the per-frame keypoint channels.
    """

    def __init__(self, feat_channels: int = 64, motion_dim: int = 64, width: int = 48, max_flow: float = 0.5,
                 n_keypoints: int = 0, kp_sigma: float = 0.04) -> None:
        super().__init__()
        z = 3 * motion_dim
        self.max_flow = max_flow
        self.kp_sigma = kp_sigma
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

    def _split_input_conv(self, feat_channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The input conv's weight split by input group: features, motion map, keypoint map."""
        w = self.inp.conv.weight
        c = feat_channels
        return w[:, :c], w[:, c:c + 16], (w[:, c + 16:] if self.kp_map is not None else None)

    def prepare(self, feats: torch.Tensor, kp_src: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-portrait part of the input convolution (inference): feats (B, C, h, w), kp_src (B, K, 2)."""
        w_f, w_z, w_k = self._split_input_conv(feats.shape[1])
        h, w = feats.shape[-2:]
        base = F.conv2d(feats, w_f.contiguous(), self.inp.conv.bias, padding=1)
        if self.kp_map is not None:
            k = kp_src.shape[1]
            heat_src = heatmaps(kp_src, h, w, sigma=self.kp_sigma)
            kp_w = self.kp_map.weight
            src_part = F.conv2d(heat_src, kp_w[:, k:2 * k].contiguous(), self.kp_map.bias)
            base = base + F.conv2d(src_part, w_k.contiguous(), padding=1)
        # the response to a constant 1 in each motion channel: zero padding makes it differ at the border
        ones = torch.ones(16, 16, h, w, dtype=feats.dtype, device=feats.device) * torch.eye(16, dtype=feats.dtype, device=feats.device)[:, :, None, None]
        z_response = F.conv2d(ones, w_z.contiguous(), padding=1)  # (16, W, h, w)
        cache = {"base": base, "z_response": z_response}
        if self.kp_map is not None:
            k = kp_src.shape[1]
            kp_w = self.kp_map.weight
            cache["kp_drv_w"] = torch.cat([kp_w[:, :k], kp_w[:, 2 * k:]], dim=1).contiguous()
            cache["w_k"] = w_k.contiguous()
        return cache

    def forward(self, feats: torch.Tensor, m_src: torch.Tensor, m_drv: torch.Tensor, kp_src: torch.Tensor | None = None,
                kp_drv: torch.Tensor | None = None, heat_drv: torch.Tensor | None = None,
                cache: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([m_src, m_drv, m_drv - m_src], dim=1)  # (B, 3D)
        hw = feats.shape[-2:]
        prior = None
        if self.kp_map is not None:
            prior, heat_drv = sparse_motion(kp_src, kp_drv, *hw, sigma=self.kp_sigma, heat=heat_drv)
        if cache is not None:
            x = cache["base"] + torch.einsum("bc,cohw->bohw", self.z_map(z), cache["z_response"])
            if prior is not None:
                x = x + F.conv2d(F.conv2d(torch.cat([heat_drv, prior], dim=1), cache["kp_drv_w"]), cache["w_k"], padding=1)
            h0 = F.silu(self.inp.norm(x))
        else:
            zmap = self.z_map(z)[:, :, None, None].expand(-1, -1, *hw)
            inputs = [feats, zmap]
            if self.kp_map is not None:
                heat_src = heatmaps(kp_src, *hw, sigma=self.kp_sigma)
                inputs.append(self.kp_map(torch.cat([heat_drv, heat_src, prior], dim=1)))
            h0 = self.inp(torch.cat(inputs, dim=1))  # (B, W, h, w)
        h = self.down(h0)  # (B, 2W, h/2, w/2)
        for block in self.mid:
            h = block(h, z)
        h = F.interpolate(h, size=h0.shape[-2:], mode="bilinear", align_corners=False)
        h = self.res(self.up(torch.cat([h, h0], dim=1)), z)
        out = self.out(h)
        flow = self.max_flow * torch.tanh(out[:, :2])
        if prior is not None:
            flow = flow + prior
        occlusion = torch.sigmoid(out[:, 2:3] + 3.0)  # starts near 1: everything visible
        return flow, occlusion
