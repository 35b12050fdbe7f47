"""Face detection on real portraits and videos: counts, order, plausibility, fallbacks and errors."""

from __future__ import annotations

import itertools
import subprocess
import sys

import cv2
import numpy as np
import pytest

from infp.errors import InfpError, NoFaceError
from infp.face import (
    LEFT_EYE,
    LIPS,
    RIGHT_EYE,
    Face,
    FaceDetector,
    choose_face,
    crop_box_from_face,
    detect_face,
    detect_faces,
)


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def _fake_face(x: float, y: float, size: float, score: float = 0.9) -> Face:
    pts = np.random.default_rng(0).uniform(0, 1, (478, 2)).astype(np.float32)
    pts[0], pts[1] = (0, 0), (1, 1)
    pts = pts * size + np.array([x, y], dtype=np.float32)
    box = np.array([x, y, x + size, y + size], dtype=np.float32)
    return Face(box=box, landmarks=pts, score=score)


def test_each_portrait_has_exactly_one_plausible_face(portraits: list[np.ndarray]) -> None:
    with FaceDetector() as detector:
        for image in portraits:
            faces = detector.detect(image)
            assert len(faces) == 1
            face = faces[0]
            h, w = image.shape[:2]
            assert face.landmarks.shape == (478, 2) and face.landmarks.dtype == np.float32
            assert face.box.shape == (4,) and face.box.dtype == np.float32
            tol = 0.02 * max(h, w)
            x0, y0, x1, y1 = face.box
            assert -tol <= x0 < x1 <= w + tol and -tol <= y0 < y1 <= h + tol
            assert 0.1 * min(h, w) < face.width < w and 0.1 * min(h, w) < face.height < h
            assert np.allclose(face.box, [*face.landmarks.min(0), *face.landmarks.max(0)])
            eyes_y = face.landmarks[LEFT_EYE + RIGHT_EYE, 1].max()
            lips_y = face.landmarks[LIPS, 1].min()
            assert eyes_y < lips_y
            # subject's left eye is on the image's right in an unmirrored photo
            assert face.landmarks[LEFT_EYE, 0].mean() > face.landmarks[RIGHT_EYE, 0].mean()
            assert 0.5 <= face.score <= 1.0


def test_face_properties() -> None:
    face = _fake_face(10, 20, 100)
    assert face.width == pytest.approx(100) and face.height == pytest.approx(100)
    assert face.area == pytest.approx(10_000)
    np.testing.assert_allclose(face.center, [60, 70])
    assert face.center.shape == (2,)


def test_two_portraits_side_by_side(portraits: list[np.ndarray], portrait_faces: list[Face]) -> None:
    if len(portraits) < 2:
        pytest.skip("needs two different portraits")
    # Scale the left portrait so its face is half as wide as the right one's: the right face is the larger.
    left = _resize(portraits[0], 0.5 * portrait_faces[1].width / portrait_faces[0].width)
    right = portraits[1]
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + right.shape[1], 3), 127, dtype=np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] :] = right

    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].center[0] < left.shape[1] < faces[1].center[0]
    assert faces[0].box[2] <= left.shape[1] + 2 and faces[1].box[0] >= left.shape[1] - 2
    assert faces[1].width == pytest.approx(portrait_faces[1].width, rel=0.15)
    assert faces[0].width == pytest.approx(0.5 * portrait_faces[1].width, rel=0.15)

    assert choose_face(faces) is faces[1]
    assert choose_face(faces, 0) is faces[0]
    assert choose_face(faces, 1) is faces[1]
    assert choose_face(faces, -1) is faces[1]
    with pytest.raises(InfpError, match="face index 3 asked for but only 2 faces found"):
        choose_face(faces, 3)
    with pytest.raises(InfpError, match=r"^pair\.png: face index 2 asked for but only 2 faces found$"):
        detect_face(canvas, index=2, path="pair.png")
    assert detect_face(canvas, index=0).center[0] == pytest.approx(faces[0].center[0], abs=1)


def test_choose_face_messages() -> None:
    with pytest.raises(NoFaceError, match="no face found"):
        choose_face([])
    with pytest.raises(InfpError, match="face index 1 asked for but only 1 face found$"):
        choose_face([_fake_face(0, 0, 10)], 1)
    small, big = _fake_face(0, 0, 10), _fake_face(50, 0, 30)
    assert choose_face([small, big]) is big


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_raises_with_path(kind: str) -> None:
    if kind == "flat":
        image = np.full((360, 480, 3), (90, 140, 200), dtype=np.uint8)
    else:
        image = np.random.default_rng(1).integers(0, 256, (360, 480, 3), dtype=np.uint8)
    assert detect_faces(image) == []
    with pytest.raises(NoFaceError) as err:
        detect_face(image, path="/some/where/empty.jpg")
    assert str(err.value) == "/some/where/empty.jpg: no face found in the image"


def test_detect_face_from_file(tmp_path, portrait_paths) -> None:
    from infp.io import write_image

    face = detect_face(portrait_paths[0])
    assert face.landmarks.shape == (478, 2)
    blank = write_image(tmp_path / "blank.png", np.zeros((200, 200, 3), dtype=np.uint8))
    with pytest.raises(NoFaceError, match=f"^{blank}: no face found"):
        detect_face(blank)


def test_small_face_in_large_photo(portraits: list[np.ndarray], portrait_faces: list[Face]) -> None:
    # A face ~50 px wide in a 2400x1800 photo: too small for the mesh's short-range detector.
    factor = 50 / portrait_faces[0].width
    small = _resize(portraits[0], factor)
    canvas = np.full((1800, 2400, 3), 110, dtype=np.uint8)
    canvas[900 : 900 + small.shape[0], 1500 : 1500 + small.shape[1]] = small
    faces = detect_faces(canvas)
    assert len(faces) == 1
    expected = portrait_faces[0].box * factor + np.array([1500, 900, 1500, 900])
    np.testing.assert_allclose(faces[0].box, expected, atol=8)


def test_large_image_is_downscaled_and_mapped_back(portraits: list[np.ndarray], portrait_faces: list[Face]) -> None:
    image = portraits[0]
    factor = 2600 / max(image.shape[:2])
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    faces = detect_faces(big)
    assert len(faces) == 1
    ref = portrait_faces[0]
    np.testing.assert_allclose(faces[0].box, ref.box * factor, atol=0.04 * ref.width * factor)


def test_video_tracking_finds_a_face_on_every_frame(video_path) -> None:
    from infp.io import iter_frames

    boxes = []
    with FaceDetector(max_faces=1, video=True) as detector:
        for frame in itertools.islice(iter_frames(video_path), 30):
            faces = detector.detect(frame)
            assert len(faces) == 1
            assert 0.5 <= faces[0].score <= 1.0
            boxes.append(crop_box_from_face(faces[0]).as_array())
    boxes = np.array(boxes)
    assert len(boxes) == 30
    # tracking is steady: the crop box moves by at most a few percent of its size per frame
    assert np.abs(np.diff(boxes, axis=0)).max() < 0.08 * boxes[:, 2].mean()


def test_detector_reuse_after_close_and_input_checks(portraits: list[np.ndarray]) -> None:
    detector = FaceDetector(max_faces=1)
    grey = cv2.cvtColor(portraits[0], cv2.COLOR_RGB2GRAY)
    assert len(detector.detect(grey)) == 1
    detector.close()
    rgba = np.dstack([portraits[0], np.full(portraits[0].shape[:2], 255, np.uint8)])
    assert len(detector.detect(rgba)) == 1
    detector.close()
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(portraits[0].astype(np.float32))
    with pytest.raises(ValueError):
        FaceDetector(max_faces=0)


def test_import_does_not_load_mediapipe() -> None:
    code = "import sys, infp.face; assert 'mediapipe' not in sys.modules and 'scipy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
