"""Expression and head measures from face-mesh landmarks: the signals behind the stage-2 controls.

Per frame (``frame_measures``), scale-free and with the head's roll taken out (the landmarks are
rotated so that the outer eye corners lie level, and lengths are in eye distances):

- ``smile``: mouth-corner lift, how far the two mouth corners sit above the middle of the lips;
- ``brow``: eyebrow height above the eyes;
- ``eyes``: eye openness (lid gap);
- ``yaw``: head turn, the nose tip's offset from the middle of the face's sides, over the face width;
- ``pitch``: head nod, the nose tip's height between the eye line and the chin;
- ``roll``: head tilt, the angle of the eye line (radians).

A *level* (``levels``) summarises a span of frames of one kind (speaking or listening): the mean of each
measure minus the face's rest value (its frames with the most closed mouth, as for the rest latent:
at inference the portrait), and ``head_motion``, the spread of the head's rotation (RMS of the standard
deviations of yaw, pitch and roll) over the span. The controls are these levels, mapped by corpus
percentiles to 0..1.
"""

from __future__ import annotations

import numpy as np

from infp.face.landmarks import (
    CHIN,
    EYE_OUTER,
    LEFT_EYEBROW,
    LEFT_FACE_SIDE,
    LOWER_INNER_LIP,
    NOSE_TIP,
    NUM_LANDMARKS,
    RIGHT_EYEBROW,
    RIGHT_FACE_SIDE,
    UPPER_INNER_LIP,
    mouth_opening,
)

MOUTH_CORNERS = (61, 291)
"""Right and left mouth corner (outer lip contour)."""
EYE_LIDS = ((159, 145), (386, 374))
"""(upper, lower) lid middles of the right and the left eye."""

MEASURES = ("smile", "brow", "eyes", "yaw", "pitch", "roll")
"""Columns of ``frame_measures``."""

CONTROL_NAMES = ("smile", "brow", "eyes", "head_motion", "yaw", "pitch")
"""The controls, in the order of the model's control vector."""

KINDS = ("speak", "listen")
"""Rows of a level / control array: while the face's own channel has speech, and while it does not."""

MIN_FRAMES = 12
LEVEL_SPAN = 100
"""Frames (4 s) over which a level is measured: around each training window, and per window of a
reference video."""
"""Fewest frames of a kind that make a level (fewer: absent)."""

ROTATION = (MEASURES.index("yaw"), MEASURES.index("pitch"), MEASURES.index("roll"))


def track_landmarks(frames) -> np.ndarray:
    """(T, 478, 2) face-mesh landmarks of the largest face in consecutive frames (NaN where no face)."""
    from infp.face.detect import FaceDetector

    out = []
    with FaceDetector(max_faces=1, video=True) as det:
        for frame in frames:
            faces = det.detect(frame)
            out.append(max(faces, key=lambda f: f.area).landmarks if faces
                       else np.full((NUM_LANDMARKS, 2), np.nan, np.float32))
    return np.stack(out).astype(np.float32) if out else np.zeros((0, NUM_LANDMARKS, 2), np.float32)


def frame_measures(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks -> (T, 6) measures (columns ``MEASURES``); NaN rows where the landmarks are."""
    lm = np.asarray(landmarks, dtype=np.float64)
    right, left = lm[:, EYE_OUTER[0]], lm[:, EYE_OUTER[1]]
    d = left - right
    iod = np.maximum(np.linalg.norm(d, axis=-1), 1e-6)
    roll = np.arctan2(d[:, 1], d[:, 0])
    c, s = np.cos(-roll), np.sin(-roll)
    centre = (left + right) / 2
    rel = lm - centre[:, None]
    x = (rel[..., 0] * c[:, None] - rel[..., 1] * s[:, None]) / iod[:, None]  # eye line level, unit = eye distance
    y = (rel[..., 0] * s[:, None] + rel[..., 1] * c[:, None]) / iod[:, None]  # image y: down is positive
    lips_mid = (y[:, UPPER_INNER_LIP] + y[:, LOWER_INNER_LIP]) / 2
    smile = lips_mid - (y[:, MOUTH_CORNERS[0]] + y[:, MOUTH_CORNERS[1]]) / 2
    brow = -(y[:, RIGHT_EYEBROW].mean(axis=1) + y[:, LEFT_EYEBROW].mean(axis=1)) / 2  # eye line is y = 0
    eyes = np.mean([y[:, lo] - y[:, up] for up, lo in EYE_LIDS], axis=0)
    sides = x[:, [RIGHT_FACE_SIDE, LEFT_FACE_SIDE]]
    width = np.maximum(np.abs(sides[:, 1] - sides[:, 0]), 1e-6)
    yaw = (x[:, NOSE_TIP] - sides.mean(axis=1)) / width
    pitch = y[:, NOSE_TIP] / np.maximum(y[:, CHIN], 1e-6)
    return np.stack([smile, brow, eyes, yaw, pitch, roll], axis=1).astype(np.float32)


def rest_measures(measures: np.ndarray, landmarks: np.ndarray, share: float = 0.2) -> np.ndarray:
    """(6,) mean measures over the ``share`` of frames with the most closed mouth (the rest frames)."""
    opening = mouth_opening(np.asarray(landmarks, dtype=np.float32))
    ok = np.flatnonzero(np.isfinite(opening) & np.isfinite(measures).all(axis=1))
    if len(ok) == 0:
        return np.full(len(MEASURES), np.nan, np.float32)
    k = max(1, int(round(share * len(ok))))
    pick = ok[np.argsort(opening[ok], kind="stable")[:k]]
    return measures[pick].mean(axis=0).astype(np.float32)


def level(measures: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(N, 6) measures of frames of one kind -> (K,) raw levels in ``CONTROL_NAMES`` order (NaN if too few)."""
    m = measures[np.isfinite(measures).all(axis=1)]
    if len(m) < MIN_FRAMES:
        return np.full(len(CONTROL_NAMES), np.nan, np.float32)
    mean = m.mean(axis=0) - rest
    motion = float(np.sqrt(np.mean(m[:, ROTATION].var(axis=0))))
    out = [motion if name == "head_motion" else mean[MEASURES.index(name)] for name in CONTROL_NAMES]
    return np.asarray(out, dtype=np.float32)


def levels(measures: np.ndarray, rest: np.ndarray, speaking: np.ndarray) -> np.ndarray:
    """(T, 6) measures, (6,) rest, (T,) bool own speech -> (2, K) raw levels (rows ``KINDS``)."""
    speaking = np.asarray(speaking, dtype=bool)
    return np.stack([level(measures[speaking], rest), level(measures[~speaking], rest)])


def normalise(raw: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Raw levels -> control values: 0 at the corpus's 5th percentile ``lo``, 1 at its 95th ``hi``."""
    return (raw - lo) / np.maximum(hi - lo, 1e-6)


def denormalise(value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + np.asarray(value) * (hi - lo)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a 1-D bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def talking_frames(opening: np.ndarray, threshold: float = 0.01, min_run: int = 12) -> np.ndarray:
    """(T,) bool: frames where the mouth moves like speech, from the (T,) mouth opening (NaN = no face).

    Speech moves the lips by a few percent of the eye distance per frame, listening by a fraction of a
    percent; the mean absolute change over 7 frames is thresholded, then gaps and bursts shorter than
    ``min_run`` frames are closed / dropped.
    """
    o = np.nan_to_num(opening, nan=float(np.nanmedian(opening)) if np.isfinite(opening).any() else 0.0)
    change = np.abs(np.diff(o, prepend=o[:1]))
    activity = np.convolve(change, np.ones(7) / 7, mode="same")
    talk = activity > threshold
    for value in (False, True):  # close short gaps, then drop short bursts
        for a, b in runs(talk == value):
            if b - a < min_run and a > 0 and b < len(talk):
                talk[a:b] = not value
    return talk
