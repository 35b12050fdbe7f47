"""Stage-1 network: portrait (B, 3, S, S) + motion latents (B, D) -> animated frame (B, 3, S, S).

Identity comes only from the portrait (appearance encoder, computed once); motion only from the
latent of the motion encoder, which sees nothing of the face but eyes, lips and outline dots.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from infp.models.appearance import AppearanceEncoder
from infp.models.decoder import Decoder
from infp.models.flow import FlowEstimator
from infp.models.keypoints import N_KEYPOINTS, KeypointDecoder, heatmaps
from infp.models.motion_encoder import MotionEncoder
from infp.models.pretrained import Pretrained
from infp.modules.warp import warp

ARCHITECTURES: dict[str, dict] = {
    "v1": dict(keypoints=True),
    "v2": dict(keypoints=True, flow_stride=2, pose=True, decoder_res=1, decoder_inner=48, decoder_widths=(24, 16)),
}
"""``HeadImitationNet`` arguments (besides the defaults) of the two renderer designs at 256x256: v1, the
starter's (4.6 GFLOP per frame), and v2, that of ``conf/experiment/stage1_v2_cpu.yaml`` (1.8 GFLOP: flow
at 1/8 resolution, head-pose prior, lighter decoder). Benchmarks and tests build untrained nets from it."""


@dataclass
class SourceCache:
    """Everything that depends only on the portrait."""

    image: torch.Tensor  # (B, 3, S, S) in [-1, 1]
    feats: torch.Tensor  # (B, C, S/4, S/4)
    motion: torch.Tensor  # (B, D) the portrait's own motion latent
    keypoints: torch.Tensor | None = None  # (B, K, 2) decoded from ``motion``

    def expand(self, batch: int) -> "SourceCache":
        """Repeat a single portrait for a batch of driving latents."""
        if self.image.shape[0] == batch:
            return self
        kp = None if self.keypoints is None else self.keypoints.expand(batch, -1, -1)
        return SourceCache(self.image.expand(batch, -1, -1, -1), self.feats.expand(batch, -1, -1, -1),
                           self.motion.expand(batch, -1), kp)


class HeadImitationNet(Pretrained):
    """Motion encoder + appearance encoder + flow estimator + warping + decoder."""

    kind = "stage1"

    def __init__(
        self,
        image_size: int = 256,
        motion_dim: int = 64,
        feat_channels: int = 64,
        encoder_widths: tuple[int, ...] = (32, 64, 128, 256),
        encoder_input: int = 128,
        flow_width: int = 48,
        max_flow: float = 0.5,
        decoder_res: int = 2,
        decoder_widths: tuple[int, int] = (32, 16),
        keypoints: bool = False,
        kp_sigma: float = 0.04,
        flow_stride: int = 1,
        pose: bool = False,
        decoder_inner: int | None = None,
    ) -> None:
        super().__init__()
        self.config = dict(image_size=image_size, motion_dim=motion_dim, feat_channels=feat_channels,
                           encoder_widths=list(encoder_widths), encoder_input=encoder_input, flow_width=flow_width,
                           max_flow=max_flow, decoder_res=decoder_res, decoder_widths=list(decoder_widths),
                           keypoints=keypoints, kp_sigma=kp_sigma, flow_stride=flow_stride, pose=pose,
                           decoder_inner=decoder_inner)
        self.image_size = image_size
        self.motion_dim = motion_dim
        self.kp_sigma = kp_sigma
        n_kp = N_KEYPOINTS if keypoints else 0
        self.motion_encoder = MotionEncoder(motion_dim, tuple(encoder_widths), encoder_input)
        self.keypoints = KeypointDecoder(motion_dim, N_KEYPOINTS) if keypoints else None
        self.appearance = AppearanceEncoder(feat_channels)
        self.flow = FlowEstimator(feat_channels, motion_dim, flow_width, max_flow, n_kp, kp_sigma, flow_stride, pose)
        self.decoder = Decoder(feat_channels, motion_dim, decoder_res, tuple(decoder_widths), n_kp, decoder_inner)

    def encode_motion(self, masked: torch.Tensor) -> torch.Tensor:
        """masked: (B, 3, S, S) motion-encoder input in [-1, 1] -> (B, D)."""
        return self.motion_encoder(masked)

    def prepare_source(self, image: torch.Tensor, masked: torch.Tensor) -> SourceCache:
        """Portrait (B, 3, S, S) and its masked version -> cache reused for every frame."""
        motion = self.motion_encoder(masked)
        return SourceCache(image, self.appearance(image), motion, self.decode_keypoints(motion))

    def decode_keypoints(self, motion: torch.Tensor) -> torch.Tensor | None:
        """Motion latents (B, D) -> keypoints (B, K, 2) in [-1, 1] (None for a net without keypoints)."""
        return None if self.keypoints is None else self.keypoints(motion)

    def relative_keypoints(self, source: SourceCache, m_drv: torch.Tensor, m_ref: torch.Tensor) -> torch.Tensor | None:
        """Keypoints of the portrait moved as the driver's moved from its reference latent ``m_ref``:
        kp(portrait) + kp(m_drv) - kp(m_ref), so the driver's face shape never reaches the portrait."""
        if self.keypoints is None:
            return None
        return source.keypoints + self.decode_keypoints(m_drv) - self.decode_keypoints(m_ref)

    def render(self, source: SourceCache, m_drv: torch.Tensor, return_flow: bool = False,
               kp_drv: torch.Tensor | None = None):
        """Animate the cached portrait with driving latents (B, D) -> frames (B, 3, S, S) in [-1, 1].

        ``kp_drv`` (B, K, 2) overrides the keypoints decoded from ``m_drv`` (see ``relative_keypoints``).
        """
        source = source.expand(m_drv.shape[0])
        if kp_drv is None:
            kp_drv = self.decode_keypoints(m_drv)
        heat = None if kp_drv is None else heatmaps(kp_drv, *source.feats.shape[-2:], sigma=self.kp_sigma)
        flow, occlusion = self.flow(source.feats, source.motion, m_drv, source.keypoints, kp_drv, heat)  # (B, 2, h, w), (B, 1, h, w)
        warped = warp(source.feats, flow) * occlusion
        flow_hi = F.interpolate(flow, size=source.image.shape[-2:], mode="bilinear", align_corners=False)
        warped_rgb = warp(source.image, flow_hi)
        frame = self.decoder(warped, warped_rgb, m_drv, heat)
        return (frame, flow, occlusion) if return_flow else frame

    def forward(self, source: torch.Tensor, source_masked: torch.Tensor, driving_masked: torch.Tensor) -> torch.Tensor:
        """Reconstruct the driving frame from the source frame: (B, 3, S, S) x3 -> (B, 3, S, S)."""
        return self.render(self.prepare_source(source, source_masked), self.encode_motion(driving_masked))
