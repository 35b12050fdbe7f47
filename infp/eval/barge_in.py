"""How fast the avatar's mouth closes once the agent's voice is cut (barge-in), measured on the motion.

The mouth is the keypoint mouth opening of each generated motion latent
(``infp.models.keypoints.keypoint_mouth_opening``: inner-lip gap over eye distance, from the lip and eye
keypoints the stage-1 renderer warps the portrait with), so it is the mouth of the rendered frame
without rendering it, also for frames a live session dropped.

It counts as **closed** when it is no wider than while the avatar listens: at most the 95th percentile
of the opening in the session's listening frames (``LISTENING_PERCENTILE``; listening mouths move a
little too), in ``CLOSED_HOLD`` frames in a row, so that one closed frame inside a word does not count. Frame ``k`` shows samples ``[640 k, 640 k + 640)``;
the time to close after a cut at sample ``s`` is the start of the first closed frame minus ``s``
(0 when the mouth is closed from the frame in which the voice stops).
"""

from __future__ import annotations

import numpy as np
import torch

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME

LISTENING_PERCENTILE = 95.0
"""Closed = at most this percentile of the opening while the avatar listens."""

CLOSED_HOLD = 3
"""Frames in a row (120 ms) the mouth must stay below the threshold to count as closed."""


@torch.inference_mode()
def mouth_openings(stage1_net, latents: np.ndarray) -> np.ndarray:
    """(T, D) motion latents -> (T,) keypoint mouth opening (the stage-1 net must decode keypoints)."""
    from infp.models.keypoints import keypoint_mouth_opening

    if stage1_net.keypoints is None:
        raise ValueError("this stage-1 checkpoint has no keypoint decoder: its mouth cannot be read from the latents")
    kp = stage1_net.decode_keypoints(torch.as_tensor(np.asarray(latents, np.float32)))
    return keypoint_mouth_opening(kp).numpy().astype(np.float64)


def closed_threshold(listening: np.ndarray, percentile: float = LISTENING_PERCENTILE) -> float:
    """The opening up to which the mouth counts as closed, from its openings while the avatar listens."""
    return float(np.percentile(np.asarray(listening, np.float64), percentile))


def first_closed(opening: np.ndarray, k0: int, threshold: float, hold: int = CLOSED_HOLD) -> int | None:
    """The first frame ``k >= k0`` from which the opening stays below ``threshold`` for ``hold`` frames."""
    below = np.asarray(opening) <= threshold
    for k in range(max(0, k0), len(below) - hold + 1):
        if below[k:k + hold].all():
            return k
    return None


def seconds_to_close(opening: np.ndarray, cut_sample: int, threshold: float, hold: int = CLOSED_HOLD) -> float | None:
    """Seconds from the cut (a session sample) to the start of the first closed frame (None: never closed)."""
    k = first_closed(opening, cut_sample // SAMPLES_PER_FRAME, threshold, hold)
    return None if k is None else max(0.0, (k * SAMPLES_PER_FRAME - cut_sample) / SAMPLE_RATE)
