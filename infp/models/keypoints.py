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
    CHIN,
    FACE_OVAL,
    INNER_LIPS,
    LEFT_EYE,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    LEFT_EYEBROW,
    LEFT_IRIS_CENTER,
    LIPS,
    LOWER_INNER_LIP,
    NOSE_TIP,
    RIGHT_EYE,
    RIGHT_EYE_INNER,
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

_JAW = set(FACE_OVAL[FACE_OVAL.index(CHIN) - 6: FACE_OVAL.index(CHIN) + 7])
POSE_KEYPOINTS: list[int] = [
    KEYPOINTS.index(i) for i in [RIGHT_EYE_OUTER, LEFT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, NOSE_TIP]
    + [j for j in FACE_OVAL[::3] if j not in _JAW]
]
"""Positions in ``KEYPOINTS`` of the points that move with the head but not with the expression: eye
corners, nose tip and the outline above the jaw (the jaw drops when the mouth opens)."""


def _inner_lips_and_outer_eyes(kp: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Upper and lower inner lip, right and left outer eye corner of keypoints (..., K, 2), each (..., 2)."""
    points = (UPPER_INNER_LIP, LOWER_INNER_LIP, RIGHT_EYE_OUTER, LEFT_EYE_OUTER)
    return tuple(kp[..., KEYPOINTS.index(i), :] for i in points)


def keypoint_mouth_opening(kp: torch.Tensor) -> torch.Tensor:
    """Inner-lip gap over outer-eye distance from decoded keypoints (..., K, 2) -> (...), as
    ``infp.face.landmarks.mouth_opening`` measures it on face-mesh landmarks."""
    upper, lower, right, left = _inner_lips_and_outer_eyes(kp)
    return (upper - lower).norm(dim=-1) / (right - left).norm(dim=-1).clamp_min(1e-6)


def keypoint_lip_gap(kp: torch.Tensor) -> torch.Tensor:
    """Signed inner-lip gap over outer-eye distance from keypoints (..., K, 2) -> (...): the lower inner lip's
    distance below the upper one, across the eye line toward the mouth; negative where the lips cross, which
    ``keypoint_mouth_opening`` (a distance) would read as open."""
    upper, lower, right, left = _inner_lips_and_outer_eyes(kp)
    eyes = left - right
    normal = torch.stack([-eyes[..., 1], eyes[..., 0]], dim=-1)
    down = (upper + lower) / 2 - (right + left) / 2
    normal = normal * torch.sign((normal * down).sum(-1, keepdim=True))
    length = eyes.norm(dim=-1).clamp_min(1e-6)
    return ((lower - upper) * normal).sum(-1) / (length * length)


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
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=kp.device, dtype=kp.dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=kp.device, dtype=kp.dtype)
    # separable: a row and a column of exponentials per keypoint instead of H x W of them
    gx = torch.exp(-(xs - kp[..., :1]).pow(2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-(ys - kp[..., 1:]).pow(2) / (2 * sigma**2))  # (B, K, H)
    return gy[..., :, None] * gx[..., None, :]


def _inverse3(m: torch.Tensor) -> torch.Tensor:
    """Inverse of (B, 3, 3) matrices by the adjugate (exportable to ONNX, unlike ``torch.linalg``)."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    adj = torch.stack([
        e * i - f * h, c * h - b * i, b * f - c * e,
        f * g - d * i, a * i - c * g, c * d - a * f,
        d * h - e * g, b * g - a * h, a * e - b * d,
    ], dim=-1).view(-1, 3, 3)
    det = a * adj[:, 0, 0] + b * adj[:, 1, 0] + c * adj[:, 2, 0]
    return adj / det[:, None, None]


def head_pose(kp_src: torch.Tensor, kp_drv: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """The head's motion as an affine *displacement* (B, 3, 2): a driving point p was, in the source, at
    p + [p, 1] @ D. Fitted by least squares on ``POSE_KEYPOINTS`` (a small ridge pulls it toward no motion).

    A turn of the head is a rotation, shift and foreshortening of the whole face, which an affine map
    of the rigid points captures; applied to every pixel it moves hair, ears and neck with the face.
    The displacement, not the map itself, is what is fitted and applied: its entries are small, so in
    bf16 the flow keeps its precision instead of losing it to the difference of two numbers near 1.
    """
    with torch.autocast(kp_drv.device.type, enabled=False):  # a 3x3 normal equation wants fp32, not bf16
        pts = kp_drv[:, POSE_KEYPOINTS].float()
        x = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1)  # (B, P, 3)
        xtx = x.transpose(1, 2) @ x + ridge * torch.eye(3, device=x.device, dtype=x.dtype)
        xty = x.transpose(1, 2) @ (kp_src[:, POSE_KEYPOINTS].float() - pts)
        return _inverse3(xtx) @ xty


def pose_displacement(pose: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Displacements (B, N, 2) of points (B, N, 2) under a ``head_pose`` (B, 3, 2)."""
    return points @ pose[:, :2] + pose[:, 2:3]


def sparse_motion(kp_src: torch.Tensor, kp_drv: torch.Tensor, height: int, width: int, sigma: float = 0.04,
                  background: float = 0.1, heat: torch.Tensor | None = None,
                  pose: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward flow (B, 2, H, W) from keypoint displacements, and the driving heatmaps (B, K, H, W).

    At a pixel near driving keypoint k the flow points to where k was in the source; far from every
    keypoint it fades (the ``background`` weight) to zero, or with ``pose`` (B, 3, 2, see ``head_pose``)
    to the head's affine motion. ``heat``: the driving heatmaps if already made.
    """
    if heat is None:
        heat = heatmaps(kp_drv, height, width, sigma)
    weights = heat / (heat.sum(dim=1, keepdim=True) + background)
    if pose is None:
        return torch.einsum("bkhw,bkc->bchw", weights, kp_src - kp_drv), heat
    pose = pose.to(kp_drv.dtype)
    grid = identity_grid(height, width, device=kp_drv.device, dtype=kp_drv.dtype)  # (1, 2, H, W)
    pixels = grid.flatten(2).transpose(1, 2).expand(kp_drv.shape[0], -1, -1)  # (B, HW, 2)
    rigid = pose_displacement(pose, pixels).transpose(1, 2).reshape(-1, 2, height, width)
    local = kp_src - kp_drv - pose_displacement(pose, kp_drv)  # what the pose leaves for each keypoint to do
    return rigid + torch.einsum("bkhw,bkc->bchw", weights, local), heat
