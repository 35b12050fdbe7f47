"""Expression and head measures from landmarks: a raised mouth corner is a smile, a tilted head is roll only."""

import numpy as np
import pytest

from infp.face.expression import (
    CONTROL_NAMES,
    MEASURES,
    MIN_FRAMES,
    MOUTH_CORNERS,
    denormalise,
    frame_measures,
    level,
    levels,
    normalise,
    rest_measures,
)
from infp.face.landmarks import EYE_OUTER, LOWER_INNER_LIP, NOSE_TIP, RIGHT_EYEBROW, interocular


@pytest.fixture(scope="module")
def face(portrait_faces) -> np.ndarray:
    """(478, 2) landmarks of a real portrait."""
    return portrait_faces[0].landmarks.astype(np.float32)


def col(name: str) -> int:
    return MEASURES.index(name)


def rotate(lm: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return ((lm - centre) @ np.array([[c, s], [-s, c]], np.float32) + centre).astype(np.float32)


def test_measures_of_a_real_face_are_finite_and_plausible(face):
    m = frame_measures(face[None])
    assert m.shape == (1, len(MEASURES)) and np.isfinite(m).all()
    assert abs(m[0, col("roll")]) < 0.3 and abs(m[0, col("yaw")]) < 0.25  # a frontal portrait
    assert m[0, col("brow")] > 0 and m[0, col("eyes")] > 0  # brows above the eyes, eyes open
    assert 0 < m[0, col("pitch")] < 1  # the nose tip lies between the eye line and the chin


def test_raised_mouth_corners_are_a_larger_smile(face):
    iod = float(interocular(face))
    raised, lowered = face.copy(), face.copy()
    raised[list(MOUTH_CORNERS), 1] -= 0.05 * iod  # image y points down
    lowered[list(MOUTH_CORNERS), 1] += 0.05 * iod
    m = frame_measures(np.stack([lowered, face, raised]))
    assert m[0, col("smile")] < m[1, col("smile")] < m[2, col("smile")]
    assert m[2, col("smile")] - m[1, col("smile")] == pytest.approx(0.05, abs=2e-3)  # in eye distances
    others = [col(n) for n in MEASURES if n != "smile"]
    assert np.allclose(m[0, others], m[2, others], atol=1e-5)


def test_raised_brows_and_opened_lids(face):
    iod = float(interocular(face))
    raised = face.copy()
    raised[RIGHT_EYEBROW, 1] -= 0.1 * iod
    m = frame_measures(np.stack([face, raised]))
    assert m[1, col("brow")] > m[0, col("brow")] and m[1, col("smile")] == pytest.approx(m[0, col("smile")], abs=1e-5)


def test_rotation_changes_roll_only_and_scale_and_shift_change_nothing(face):
    centre = face[list(EYE_OUTER)].mean(axis=0)
    tilted = rotate(face, 0.3, centre)
    moved = face * 1.7 + np.array([40.0, -25.0], np.float32)
    m = frame_measures(np.stack([face, tilted, moved]))
    assert m[1, col("roll")] - m[0, col("roll")] == pytest.approx(0.3, abs=1e-3)
    rest = [col(n) for n in MEASURES if n != "roll"]
    assert np.allclose(m[1, rest], m[0, rest], atol=1e-4)  # smile, brow, eyes, yaw, pitch are roll-free
    assert np.allclose(m[2], m[0], atol=1e-4)


def test_nose_to_one_side_is_yaw(face):
    iod = float(interocular(face))
    left, right = face.copy(), face.copy()
    left[NOSE_TIP, 0] -= 0.1 * iod
    right[NOSE_TIP, 0] += 0.1 * iod
    m = frame_measures(np.stack([left, face, right]))
    assert m[0, col("yaw")] < m[1, col("yaw")] < m[2, col("yaw")]


def test_missing_landmarks_give_nan_rows(face):
    lm = np.stack([face, np.full_like(face, np.nan)])
    m = frame_measures(lm)
    assert np.isfinite(m[0]).all() and np.isnan(m[1]).all()


def test_rest_is_the_most_closed_mouth_and_levels_are_relative_to_it(face):
    iod = float(interocular(face))
    frames = np.repeat(face[None], 40, axis=0)
    frames[:, LOWER_INNER_LIP, 1] += np.tile(np.linspace(0, 0.3, 20), 2) * iod  # each half opens the mouth alike
    frames[20:, list(MOUTH_CORNERS), 1] -= 0.04 * iod  # the second half smiles
    m = frame_measures(frames)
    rest = rest_measures(m, frames)  # the 20 % of frames with the most closed mouth
    assert np.allclose(rest, m[[0, 1, 2, 3, 20, 21, 22, 23]].mean(axis=0), atol=1e-6)
    raw = levels(m, rest, np.arange(40) >= 20)
    assert raw.shape == (2, len(CONTROL_NAMES))
    smile = CONTROL_NAMES.index("smile")
    assert raw[0, smile] - raw[1, smile] == pytest.approx(0.04, abs=2e-3)  # smiling while speaking
    assert np.isnan(level(m[:MIN_FRAMES - 1], rest)).all()  # too few frames of a kind: absent
    assert np.isnan(levels(m, rest, np.zeros(40, bool))[0]).all()  # never speaking: no speaking level


def test_head_motion_grows_with_the_head_turning(face):
    centre = face[list(EYE_OUTER)].mean(axis=0)
    still = np.repeat(face[None], 30, axis=0)
    nodding = np.stack([rotate(face, 0.15 * np.sin(t / 3), centre) for t in range(30)])
    motion = CONTROL_NAMES.index("head_motion")
    m_still, m_nod = frame_measures(still), frame_measures(nodding)
    rest = rest_measures(m_still, still)
    assert level(m_still, rest)[motion] == pytest.approx(0.0, abs=1e-6)
    assert level(m_nod, rest)[motion] > 0.05


def test_normalise_maps_the_percentiles_to_zero_and_one():
    lo, hi = np.array([-1.0, 0.0]), np.array([1.0, 2.0])
    assert np.allclose(normalise(lo, lo, hi), 0) and np.allclose(normalise(hi, lo, hi), 1)
    assert np.allclose(denormalise(normalise(np.array([0.3, 1.5]), lo, hi), lo, hi), [0.3, 1.5])
    assert np.isnan(normalise(np.array([np.nan, 1.0]), lo, hi)[0])

