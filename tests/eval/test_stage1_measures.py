"""Detail kept in the face box and head yaw in degrees (infp.eval.stage1_measures) on real sample faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from infp.eval.stage1_measures import YAW_DEPTH_RATIO, detail_kept, face_box, face_detail, yaw_degrees
from infp.face import detect_face
from infp.face.landmarks import NUM_LANDMARKS
from infp.io import iter_frames, read_image

# MediaPipe's canonical face model (x right in the image, y up, z towards the camera): the points the
# yaw measure reads (eye outer corners, nose tip, face sides)
CANONICAL = {33: (-4.445859, 2.663991, 3.173422), 263: (4.445859, 2.663991, 3.173422),
             1: (0.0, -1.126865, 7.475604), 234: (-7.664182, 0.673132, -2.435867), 454: (7.664182, 0.673132, -2.435867)}


@pytest.fixture(scope="module")
def portrait(samples):
    image = read_image(samples / "portraits" / "lp_s1.jpg")
    return image, detect_face(image).landmarks


def test_detail_same_image_is_one_and_blur_lowers_it(portrait):
    image, lm = portrait
    sharp = face_detail(image, lm)
    assert sharp > 0
    assert detail_kept([image], lm[None], sharp)[0] == pytest.approx(1.0)
    kept = [detail_kept([cv2.GaussianBlur(image, (0, 0), s)], lm[None], sharp)[0] for s in (1.0, 2.0, 4.0)]
    assert kept[0] < 0.8 and kept[1] < kept[0] and kept[2] < kept[1] < 0.4


def test_detail_face_box_and_missing_face(portrait):
    image, lm = portrait
    x0, y0, x1, y1 = face_box(lm)
    assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    # only the face box counts: blurring outside it leaves the measure unchanged
    outside = cv2.GaussianBlur(image, (0, 0), 3.0)
    outside[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    assert face_detail(outside, lm) == pytest.approx(face_detail(image, lm))
    assert np.isnan(face_detail(image, np.full_like(lm, np.nan)))


def _rotated_canonical(yaw_deg: float, roll_deg: float = 0.0, scale: float = 20.0) -> np.ndarray:
    """(478, 2) image landmarks of the canonical points turned by ``yaw_deg``, tilted by ``roll_deg``."""
    a, r = np.radians(yaw_deg), np.radians(roll_deg)
    lm = np.zeros((NUM_LANDMARKS, 2), np.float32)
    for i, (x, y, z) in CANONICAL.items():
        u = x * np.cos(a) + z * np.sin(a)  # orthographic camera, head turned about its vertical axis
        v = -y  # image y points down
        lm[i] = (200 + scale * (u * np.cos(r) - v * np.sin(r)), 200 + scale * (u * np.sin(r) + v * np.cos(r)))
    return lm


def test_yaw_degrees_on_a_rotated_face_model():
    assert YAW_DEPTH_RATIO == pytest.approx(0.6466, abs=1e-3)
    angles = [-40.0, -15.0, 0.0, 15.0, 30.0]
    lm = np.stack([_rotated_canonical(a) for a in angles])
    np.testing.assert_allclose(yaw_degrees(lm), angles, atol=0.01)
    # head tilt (roll) and face size do not change it
    tilted = np.stack([_rotated_canonical(a, roll_deg=20.0, scale=7.0) for a in angles])
    np.testing.assert_allclose(yaw_degrees(tilted), angles, atol=0.01)
    assert np.isnan(yaw_degrees(np.full((1, NUM_LANDMARKS, 2), np.nan, np.float32))).all()


def test_yaw_degrees_real_face_turned_and_mirrored(samples, portrait):
    # lp_s18 starts with the head turned to the image's right; lp_s1 looks into the camera
    frame = next(iter_frames(samples / "video" / "lp_s18.mp4"))
    turned = yaw_degrees(detect_face(frame).landmarks[None])[0]
    mirrored = yaw_degrees(detect_face(np.ascontiguousarray(frame[:, ::-1])).landmarks[None])[0]
    assert 12.0 < turned < 40.0
    assert mirrored == pytest.approx(-turned, abs=5.0)
    _, lm = portrait
    assert abs(yaw_degrees(lm[None])[0]) < 8.0
