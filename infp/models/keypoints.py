"""Facial keypoints decoded from the motion latent, and the dense motion they imply.

The keypoint decoder is supervised with face-mesh landmarks, which ties the latent to the geometry of
lips, eyes and brows. The renderer turns a (source, driving) keypoint pair into
  * a sparse-motion prior: at every pixel, the displacement of the nearby keypoints (backward warp), and
  * keypoint heatmaps that tell the flow network and the decoder where the parts move to,
the inductive bias of keypoint-based reenactment (FOMM, LIA, face-vid2vid), here with keypoints that
come out of a low-dimensional latent, so stage 2 only has to generate that latent.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from infp.face.landmarks import (
    FACE_OVAL,
    INNER_LIPS,
    LEFT_EYE,
    LEFT_EYE_OUTER,
    LEFT_EYEBROW,
    LEFT_IRIS_CENTER,
    LIPS,
    LOWER_INNER_LIP,
    NOSE_TIP,
    RIGHT_EYE,
    RIGHT_EYE_OUTER,
    RIGHT_EYEBROW,
    RIGHT_IRIS_CENTER,
    UPPER_INNER_LIP,
)
from infp.modules.warp import identity_grid

KEYPOINTS: list[int] = (
    LIPS + INNER_LIPS + LEFT_EYE[::2] + RIGHT_EYE[::2] + LEFT_EYEBROW[::2] + RIGHT_EYEBROW[::2]
    + [RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER, NOSE_TIP] + FACE_OVAL[::3]
)
"""Face-mesh indices of the supervised keypoints: both lip contours in full, every other eye and brow
point, the iris centres, nose tip and a third of the outline with the chin (81 points)."""

N_KEYPOINTS = len(KEYPOINTS)
N_LIP_KEYPOINTS = len(LIPS) + len(INNER_LIPS)
"""The lip contours come first in ``KEYPOINTS``."""


def keypoint_mouth_opening(kp: torch.Tensor) -> torch.Tensor:
    """Inner-lip gap over outer-eye distance from decoded keypoints (..., K, 2) -> (...), as
    ``infp.face.landmarks.mouth_opening`` measures it on face-mesh landmarks."""
    gap = (kp[..., KEYPOINTS.index(UPPER_INNER_LIP), :] - kp[..., KEYPOINTS.index(LOWER_INNER_LIP), :]).norm(dim=-1)
    eyes = (kp[..., KEYPOINTS.index(RIGHT_EYE_OUTER), :] - kp[..., KEYPOINTS.index(LEFT_EYE_OUTER), :]).norm(dim=-1)
    return gap / eyes.clamp_min(1e-6)


def normalise_keypoints(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(478, 2) crop-pixel landmarks (pixel-edge convention) -> (K, 2) float32 in [-1, 1] grid units."""
    pts = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)[KEYPOINTS]
    return pts * (2.0 / size) - 1.0


class KeypointDecoder(nn.Module):
    """Motion latent (B, D) -> keypoints (B, K, 2) in normalised image coordinates."""

    def __init__(self, motion_dim: int = 64, n_keypoints: int = N_KEYPOINTS, hidden: int = 256) -> None:
        super().__init__()
        self.n_keypoints = n_keypoints
        self.mlp = nn.Sequential(nn.Linear(motion_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * n_keypoints))

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(motion)).view(-1, self.n_keypoints, 2)


def heatmaps(kp: torch.Tensor, height: int, width: int, sigma: float = 0.04) -> torch.Tensor:
    """Gaussian blobs (B, K, H, W) of keypoints (B, K, 2); ``sigma`` in normalised units."""
    grid = identity_grid(height, width, device=kp.device, dtype=kp.dtype)  # (1, 2, H, W)
    d2 = (grid[:, None] - kp[..., None, None]).pow(2).sum(dim=2)  # (B, K, H, W)
    return torch.exp(-d2 / (2 * sigma**2))


def sparse_motion(kp_src: torch.Tensor, kp_drv: torch.Tensor, height: int, width: int, sigma: float = 0.04,
                  background: float = 0.1, heat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward flow (B, 2, H, W) from keypoint displacements, and the driving heatmaps (B, K, H, W).

    At a pixel near driving keypoint k the flow points to where k was in the source; far from every
    keypoint it fades to zero (the ``background`` weight). ``heat``: the driving heatmaps if already made.
    """
    if heat is None:
        heat = heatmaps(kp_drv, height, width, sigma)
    weights = heat / (heat.sum(dim=1, keepdim=True) + background)
    flow = torch.einsum("bkhw,bkc->bchw", weights, kp_src - kp_drv)
    return flow, heat
