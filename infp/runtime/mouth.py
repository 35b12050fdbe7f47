"""Where a portrait's rendered mouth starts to open along the latents' mouth axis.

Lip following (``AudioToMotionNet.follow_lips``) moves the mouth probe's reading from the portrait's rest mouth by
``lip_gain`` times what the lip reader hears. On a portrait photographed with closed lips the renderer keeps the
lips sealed over the first units of that range: the keypoints open, the warped lips do not part until the reading
is 2.5-5 units above rest (hallo_1, lp_s5). Speech there would barely move the picture. The onset found here,
rendered once per portrait, is where the speech targets start instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.head_imitation import SourceCache
from infp.runtime.stage1 import Stage1Runner

ONSET_STEPS = tuple(0.5 * i for i in range(13))
"""Mouth-probe readings above the rest mouth (0 .. 6) rendered to find the onset."""
ONSET_OPENING = 0.02
"""Rendered mouth opening (face-mesh inner-lip gap over eye distance) above the closed mouth's that counts as open."""


@torch.no_grad()
def rendered_openings(stage1: Stage1Runner, source: SourceCache, net: AudioToMotionNet, rest: torch.Tensor,
                      readings) -> np.ndarray:
    """Face-mesh mouth opening of the portrait rendered with the mouth probe reading each of ``readings`` (relative to
    the rest mouth, in order: a face-mesh track of consecutive frames), NaN where no face is found."""
    from infp.face.detect import FaceDetector
    from infp.face.landmarks import mouth_opening

    probe, axis = net.mouth_probe[:-1].float().cpu(), net.mouth_axis.float().cpu()
    steps = torch.as_tensor(readings, dtype=torch.float32)[:, None] / (axis @ probe) * axis * net.motion_scale.float().cpu()
    out = []
    with FaceDetector(max_faces=1, video=True) as det:
        for frame in stage1.render(source, rest.reshape(1, -1).float().cpu() + steps):
            faces = det.detect(frame)
            out.append(float(mouth_opening(faces[0].landmarks)) if faces else math.nan)
    return np.asarray(out, dtype=np.float64)


def speech_onset(stage1: Stage1Runner, source: SourceCache, net: AudioToMotionNet, rest: torch.Tensor,
                 closed: float | None) -> float:
    """The mouth probe's reading above the rest mouth at which speech targets start for this portrait (``rest``: its
    latent; ``closed``: the probe's reading of its closed mouth, ``AudioToMotionNet.closed_mouth``).

    The portrait is rendered at the closed mouth and at each of ``ONSET_STEPS``; the mouth opens for good at the first
    step from which every rendering is at least ``ONSET_OPENING`` wider than the closed one (on the way, a sealed
    mouth may part a little and close again). The onset is one unit below that step, never below 0: 0 where lip
    following is off, no face is found or the mouth opens from the first steps.
    """
    if closed is None or not net.can_follow_lips:
        return 0.0
    openings = rendered_openings(stage1, source, net, rest, [closed - float(net.mouth_probe[-1]), *ONSET_STEPS])
    shut, ladder = openings[0], openings[1:]
    if not np.isfinite(openings).all():
        return 0.0
    is_open = ladder - shut >= ONSET_OPENING
    if not is_open[-1]:
        return 0.0
    first = len(ladder) - int(np.argmin(is_open[::-1])) if not is_open.all() else 0  # first step of the open tail
    return float(max(0.0, ONSET_STEPS[first] - 1.0))
