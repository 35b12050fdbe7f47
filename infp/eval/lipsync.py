"""Lip sync measured on the face: does the avatar's mouth open and close when the real speaker's did?

A mouth is the landmark mouth opening (``infp.face.landmarks.mouth_opening``: inner-lip gap over eye
distance) per 25 fps frame, from the face-mesh landmarker; NaN where no face is found. Two mouth
tracks are compared with Pearson's r at the best lag within a few frames, so that a constant offset
of one or two frames between audio and video (common in collected footage, and allowed to a
generator) does not hide a good match, while a real mismatch cannot be rescued by it.

Every score has its floor beside it: the loudness envelope (RMS of the speech per 40 ms frame) scored
against the real mouth the same way. A model that only opens the mouth with the loudness reaches
that floor; lip sync worth the name goes above it.

The held-out clips are own-voice speech of people no training run may use: all of ``talking_eval/``
(evaluation-only footage) and the speakers of ``talking/`` named in ``HELD_OUT_TALKING``. Those speakers are
also the sample corpus's validation split, where settings are chosen (and, with ``lip_reader_fit_val``, the lip
reader is fitted): ``validation_speaker`` tells their clips apart, so that every report can also give the means
over the clips no choice has seen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from infp.constants import FPS, SAMPLES_PER_FRAME
from infp.data.sample_corpus import HELD_OUT_TALKING
from infp.face import FaceDetector
from infp.face.landmarks import mouth_opening
from infp.io import iter_frames

MAX_LAG = 2
"""Frames of offset searched either way (±80 ms): about the audio-video offset of collected footage."""

MIN_PAIRS = 10
"""Fewest frames with both tracks defined for a correlation to be reported (otherwise NaN)."""


VALIDATION_SPEAKERS_IN_EVAL: tuple[str, ...] = ("__MEAD__M030_",)
"""Parts of ``talking_eval/`` file names that belong to a person of ``HELD_OUT_TALKING`` (MEAD M030)."""


def validation_speaker(clip: str | Path) -> bool:
    """Whether a held-out clip's person is one of the corpus's validation speakers (``HELD_OUT_TALKING``)."""
    name = Path(clip).name
    return name in HELD_OUT_TALKING or any(tag in name for tag in VALIDATION_SPEAKERS_IN_EVAL)


def held_out_clips(shared: Path) -> list[Path]:
    """The held-out own-voice clips present under ``shared`` (the shared data folder), in a fixed order."""
    shared = Path(shared)
    evals = sorted(p for p in (shared / "talking_eval").glob("*") if p.is_file())
    talking = [shared / "talking" / name for name in HELD_OUT_TALKING]
    return evals + [p for p in talking if p.is_file()]


def mouth_track(frames: Iterable[np.ndarray], detector: FaceDetector | None = None) -> np.ndarray:
    """Mouth opening per frame of one video's consecutive frames (T,), NaN where no face is found.

    A tracking detector (``video=True``) is used unless one is given: frames of one video are
    consecutive, and tracking is both faster and steadier than detecting every frame anew.
    """
    own = detector is None
    det = FaceDetector(max_faces=1, video=True) if own else detector
    values = []
    try:
        for frame in frames:
            faces = det.detect(frame)
            values.append(float(mouth_opening(faces[0].landmarks)) if faces else math.nan)
    finally:
        if own:
            det.close()
    return np.asarray(values, dtype=np.float64)


def video_mouth_track(path: Path, max_seconds: float | None = None) -> np.ndarray:
    """Mouth track of a video file resampled to 25 fps (its first ``max_seconds`` only, if given)."""
    return mouth_track(iter_frames(path, fps=FPS, duration=max_seconds))


def loudness_envelope(audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """RMS of mono 16 kHz audio per 40 ms video frame: (n_frames,), n_frames = ceil(N / 640) by default.

    Frame ``k`` covers samples [640k, 640k + 640), as in rendering; the last frame is zero-padded,
    frames beyond the audio are 0.
    """
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    if n_frames is None:
        n_frames = -(-len(audio) // SAMPLES_PER_FRAME)
    padded = np.zeros(n_frames * SAMPLES_PER_FRAME)
    n = min(len(audio), len(padded))
    padded[:n] = audio[:n]
    return np.sqrt(np.mean(padded.reshape(n_frames, SAMPLES_PER_FRAME) ** 2, axis=1))


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """r over the frames where both are finite, and how many there were; NaN if too few or one is flat."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < MIN_PAIRS:
        return math.nan, n
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return (float(a @ b) / den if den > 1e-12 else math.nan), n


def shifted_pairs(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of ``x`` and ``y`` with ``x[t + lag]`` beside ``y[t]``."""
    n = min(len(x), len(y))
    x, y = np.asarray(x[:n], np.float64), np.asarray(y[:n], np.float64)
    if lag >= 0:
        return x[lag:], y[: n - lag]
    return x[: n + lag], y[-lag:]


def best_lag_r(x: np.ndarray, y: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """Highest Pearson r of ``x[t + lag]`` against ``y[t]`` over lags in [-max_lag, max_lag]; (r, lag).

    A positive lag means ``x`` comes late: what ``y`` does at frame t, ``x`` does at t + lag. NaN
    frames of either track are left out pair by pair. Ties go to the smaller |lag|; (NaN, 0) when no
    lag has ``MIN_PAIRS`` defined pairs or a track is flat.
    """
    best_r, best_lag = math.nan, 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        r, _ = _pearson(*shifted_pairs(x, y, lag))
        if math.isfinite(r) and (not math.isfinite(best_r) or r > best_r):
            best_r, best_lag = r, lag
    return best_r, best_lag


def std_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """std of ``x`` over std of ``y``, both over the frames where both are defined.

    For the avatar's mouth against the real one: 1 opens as wide as the speaker does, 0.2 a fifth
    as wide — a high r with a tiny ratio is a mouth that barely moves.
    """
    n = min(len(x), len(y))
    x, y = np.asarray(x[:n], np.float64), np.asarray(y[:n], np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < MIN_PAIRS or float(np.std(y[ok])) < 1e-12:
        return math.nan
    return float(np.std(x[ok]) / np.std(y[ok]))


@dataclass
class LipSyncScore:
    """One rendering of one clip's speech, scored against the clip's real mouth.

    ``r``/``lag``/``std_ratio``: the avatar's mouth against the real one (positive lag: the avatar is
    late). ``loudness_r``/``loudness_lag``: the loudness envelope against the real mouth on the same
    frames — the floor that ``r`` has to beat.
    """

    clip: str
    portrait: str
    frames: int
    valid: int
    r: float
    lag: int
    std_ratio: float
    loudness_r: float
    loudness_lag: int

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def score_clip(clip: str, portrait: str, avatar: np.ndarray, real: np.ndarray, loudness: np.ndarray,
               max_lag: int = MAX_LAG) -> LipSyncScore:
    """Score an avatar mouth track against the real one, with the loudness floor on the same frames.

    The loudness envelope is masked where the avatar track is undefined, so both numbers are
    computed over the same frames.
    """
    n = min(len(avatar), len(real), len(loudness))
    avatar, real = np.asarray(avatar[:n], np.float64), np.asarray(real[:n], np.float64)
    loud = np.where(np.isfinite(avatar), np.asarray(loudness[:n], np.float64), np.nan)
    r, lag = best_lag_r(avatar, real, max_lag)
    lr, llag = best_lag_r(loud, real, max_lag)
    valid = int((np.isfinite(avatar) & np.isfinite(real)).sum())
    return LipSyncScore(clip, portrait, n, valid, r, lag, std_ratio(avatar, real), lr, llag)


def mean_scores(scores: list[LipSyncScore]) -> dict[str, float]:
    """Means over clips of r, |lag|, std ratio and the loudness r (NaN entries left out)."""
    def mean(values: list[float]) -> float:
        vals = [v for v in values if math.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan

    return {"clips": len(scores), "r": mean([s.r for s in scores]), "abs_lag": mean([abs(s.lag) for s in scores]),
            "std_ratio": mean([s.std_ratio for s in scores]), "loudness_r": mean([s.loudness_r for s in scores])}
