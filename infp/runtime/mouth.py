"""Where a portrait's rendered mouth starts to open along the latents' mouth axis, and how fast it opens from there.

Lip following (``AudioToMotionNet.follow_lips``) moves the mouth probe's reading from the portrait's rest mouth by
``lip_gain`` times what the lip reader hears. On a portrait photographed with closed lips the renderer keeps the
lips sealed over the first units of that range: the keypoints open, the warped lips do not part until the reading
is 2.5-5 units above rest (hallo_1, lp_s5). Speech there would barely move the picture. The onset found here,
rendered once per portrait, is where the speech targets start instead.

Portraits also differ in how far the rendered mouth opens per unit of the probe's reading: once its lips part, lp_s5
(closed lips) opens half again as wide per unit as lp_s1. ``AudioToMotionNet.mouth_slope``
holds the rendered opening per unit on the faces the lip gain was chosen on (``train/calibrate_mouth.py``); each
portrait's speech is scaled by that over its own (``mouth_gain``), so that it opens about as wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.head_imitation import SourceCache
from infp.runtime.stage1 import Stage1Runner

ONSET_STEPS = tuple(0.5 * i for i in range(13))
"""Mouth-probe readings above the rest mouth (0 .. 6) rendered to find the onset."""
ONSET_OPENING = 0.02
"""Rendered mouth opening (face-mesh inner-lip gap over eye distance) above the closed mouth's that counts as open."""
SLOPE_SPAN = 4.0
"""Readings above the onset over which the rendered opening per unit is fitted (where most speech falls: lip following
calls for ``lip_gain`` (2.4 in the starter, 3 in weights/v2) times the reader's value above silence, mostly 0-1.5)."""
GAIN_RANGE = (0.5, 2.0)
"""Bounds of a portrait's mouth gain."""


@dataclass(frozen=True)
class MouthFit:
    """How a portrait's rendered mouth answers the probe's reading (``fit_mouth``)."""

    onset: float = 0.0
    """Reading above the rest mouth at which speech targets start."""
    slope: float | None = None
    """Rendered opening per unit of reading over ``SLOPE_SPAN`` above the onset (None: not measured)."""
    gain: float = 1.0
    """Factor of the portrait's speech targets above the onset (``AudioToMotionNet.mouth_slope`` / ``slope``)."""


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


def _onset(openings: np.ndarray) -> float:
    """The onset from the renderings at the closed mouth, then at each of ``ONSET_STEPS`` (see ``speech_onset``)."""
    shut, ladder = openings[0], openings[1:]
    if not np.isfinite(openings).all():
        return 0.0
    is_open = ladder - shut >= ONSET_OPENING
    if not is_open[-1]:
        return 0.0
    first = len(ladder) - int(np.argmin(is_open[::-1])) if not is_open.all() else 0  # first step of the open tail
    return float(max(0.0, ONSET_STEPS[first] - 1.0))


def speech_onset(stage1: Stage1Runner, source: SourceCache, net: AudioToMotionNet, rest: torch.Tensor,
                 closed: float | None) -> float:
    """The mouth probe's reading above the rest mouth at which speech targets start for this portrait (``rest``: its
    latent; ``closed``: the probe's reading of its closed mouth, ``AudioToMotionNet.closed_mouth``).

    The portrait is rendered at the closed mouth and at each of ``ONSET_STEPS``; the mouth opens for good at the first
    step from which every rendering is at least ``ONSET_OPENING`` wider than the closed one (on the way, a sealed
    mouth may part a little and close again). The onset is one unit below that step, never below 0: 0 where lip
    following is off, no face is found or the mouth opens from the first steps.
    """
    return fit_mouth(stage1, source, net, rest, closed, slope=False).onset


def fit_mouth(stage1: Stage1Runner, source: SourceCache, net: AudioToMotionNet, rest: torch.Tensor,
              closed: float | None, slope: bool = True) -> MouthFit:
    """The portrait's onset (``speech_onset``) and, with ``slope``, its rendered opening per unit of reading: the
    least-squares slope of the face-mesh opening over readings onset, onset + 0.5, ... onset + ``SLOPE_SPAN`` (the
    renderings of the onset ladder, and those above it). ``gain`` is ``net.mouth_slope`` over that slope, within
    ``GAIN_RANGE``; 1 where the weights have no ``mouth_slope`` or the slope cannot be measured."""
    if closed is None or not net.can_follow_lips:
        return MouthFit()
    openings = rendered_openings(stage1, source, net, rest, [closed - float(net.mouth_probe[-1]), *ONSET_STEPS])
    onset = _onset(openings)
    if not slope:
        return MouthFit(onset)
    readings = [onset + 0.5 * i for i in range(int(round(SLOPE_SPAN / 0.5)) + 1)]
    known = dict(zip(ONSET_STEPS, openings[1:]))
    missing = [r for r in readings if r not in known]
    if missing:
        known.update(zip(missing, rendered_openings(stage1, source, net, rest, missing)))
    track = np.array([known[r] for r in readings])
    if not np.isfinite(track).all():
        return MouthFit(onset)
    fitted = float(np.polyfit(readings, track, 1)[0])
    if net.mouth_slope is None or fitted <= 0:
        return MouthFit(onset, fitted)
    return MouthFit(onset, fitted, float(np.clip(net.mouth_slope / fitted, *GAIN_RANGE)))
