"""Style from a reference video: the stage-2 control values of the face in a video.

The video's largest face is tracked with the face mesh, its expression and head measures
(``infp.face.expression``) are taken per frame at 25 fps, and the video's own audio track tells, with
the voice activity detector, which frames the face speaks in (frame t = samples [640 t, 640 (t + 1))):
speech on the track while the face's mouth moves like speech (``talking_frames``), so that a video of a
person listening to someone else's voice counts as listening.
As in training, levels are measured over windows of ``WINDOW`` frames (4 s), separately over the
speaking and the listening frames, relative to the face's rest (its frames with the most closed mouth);
their mean per kind is mapped by the network's corpus percentiles (``control_lo`` / ``control_hi``) to
0..1 and clipped. A kind with too few frames (a video in which the face never speaks) stays absent.
A video without an audio track counts as listening throughout.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from infp.constants import FPS, SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.errors import InfpError, NoFaceError
from infp.face.expression import (
    CONTROL_NAMES,
    KINDS,
    LEVEL_SPAN,
    MIN_FRAMES,
    frame_measures,
    levels,
    normalise,
    rest_measures,
    talking_frames,
)
from infp.face.expression import track_landmarks as track_frames
from infp.face.landmarks import mouth_opening
from infp.models.controls import Controls

if TYPE_CHECKING:
    from infp.models.audio_to_motion import AudioToMotionNet

log = logging.getLogger(__name__)

MAX_SECONDS = 60.0
"""Seconds of a reference video that are read (from its start)."""

WINDOW = LEVEL_SPAN
"""Frames (4 s) per measured window: those of the training items."""

WINDOW_STRIDE = 25
"""Frames between the centres of the measured windows."""


@dataclass
class VideoStyle:
    """Control values measured from a video, with what they came from."""

    path: str
    controls: Controls
    raw: np.ndarray  # (2, K) raw levels, rows KINDS, columns CONTROL_NAMES (NaN: too few frames of a kind)
    frames: int  # frames read
    face_frames: int  # frames with a face
    speaking_frames: int  # face frames with speech on the video's track
    has_audio: bool

    def to_dict(self) -> dict:
        """For reports (OUT.json): the values, the raw levels and the frame counts."""
        raw = {k: {n: round(float(v), 5) for n, v in zip(CONTROL_NAMES, row) if np.isfinite(v)}
               for k, row in zip(KINDS, self.raw)}
        return {"path": self.path, "controls": self.controls.to_dict(), "raw": raw, "frames": self.frames,
                "face_frames": self.face_frames, "speaking_frames": self.speaking_frames, "has_audio": self.has_audio}


def track_landmarks(path: str | Path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """(T, 478, 2) face-mesh landmarks of the video's largest face at 25 fps (NaN where no face)."""
    from infp.io import iter_frames

    return track_frames(iter_frames(path, fps=FPS, duration=max_seconds))


def speech_frames(path: str | Path, n_frames: int, threshold: float = SPEECH_THRESHOLD) -> np.ndarray | None:
    """(T,) bool: frames whose audio (the video's own track, mixed to mono) has speech; None without a track."""
    from infp.audio.vad import frame_speech_prob
    from infp.io import read_audio, to_mono, video_info

    if not video_info(path).has_audio:
        return None
    audio = to_mono(read_audio(path, allow_empty=True))[: n_frames * SAMPLES_PER_FRAME]
    audio = np.pad(audio, (0, n_frames * SAMPLES_PER_FRAME - len(audio)))
    return frame_speech_prob(audio, n_frames)[:, 0] > threshold


def video_levels(measures: np.ndarray, rest: np.ndarray, speaking: np.ndarray, span: int = WINDOW,
                 stride: int = WINDOW_STRIDE) -> np.ndarray:
    """(2, K) raw levels: the mean over windows of ``span`` frames (as the training windows) per kind."""
    n = len(measures)
    starts = sorted({max(0, min(c - span // 2, n - span)) for c in range(0, max(1, n), stride)})
    per_window = np.stack([levels(measures[s:s + span], rest, speaking[s:s + span]) for s in starts])
    with warnings.catch_warnings():  # a kind absent from every window stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_window, axis=0).astype(np.float32)


def style_from_video(path: str | Path, net: AudioToMotionNet, max_seconds: float = MAX_SECONDS,
                     threshold: float = SPEECH_THRESHOLD) -> VideoStyle:
    """The control values of the face in the video ``path`` for the stage-2 network ``net`` (its
    ``control_lo`` / ``control_hi`` map the levels to 0..1)."""
    if not getattr(net, "has_controls", False):
        raise InfpError("the stage-2 network has no controls; a style from a video needs one trained with controls")
    path = Path(path)
    landmarks = track_landmarks(path, max_seconds)
    found = np.isfinite(landmarks).all(axis=(1, 2))
    if not found.any():
        raise NoFaceError(f"no face found in the first {max_seconds:g} s", path)
    if found.sum() < MIN_FRAMES:
        raise NoFaceError(f"a face in only {int(found.sum())} frames; at least {MIN_FRAMES} are needed for a style", path)
    speaking = speech_frames(path, len(landmarks), threshold)
    has_audio = speaking is not None
    if speaking is None:
        log.info("%s: no audio track; every frame counts as listening", path)
        speaking = np.zeros(len(landmarks), bool)
    else:  # speech on the track counts as the face's own only while its mouth moves like speech
        speaking &= talking_frames(mouth_opening(landmarks))
    measures = frame_measures(landmarks)
    raw = video_levels(measures, rest_measures(measures, landmarks), speaking)
    lo = net.control_lo.detach().cpu().numpy()
    hi = net.control_hi.detach().cpu().numpy()
    values = np.clip(normalise(raw, lo, hi), 0.0, 1.0)
    sides = [{n: round(float(v), 3) for n, v in zip(CONTROL_NAMES, row) if np.isfinite(v)} for row in values]
    for kind, side in zip(KINDS, sides):
        if not side:
            log.info("%s: too few %s frames with a face; %s controls left to the model", path,
                     "speaking" if kind == "speak" else "listening", kind)
    style = VideoStyle(str(path), Controls(*sides), raw, len(landmarks), int(found.sum()),
                       int((speaking & found).sum()), has_audio)
    log.info("%s: style %s (%d frames, %d with a face, %d speaking)", path, style.controls or "none",
             style.frames, style.face_frames, style.speaking_frames)
    return style


def controls_from_video(path: str | Path, net: AudioToMotionNet, max_seconds: float = MAX_SECONDS) -> Controls:
    """``style_from_video(path, net, max_seconds).controls``."""
    return style_from_video(path, net, max_seconds).controls

