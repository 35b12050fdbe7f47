"""Square crops, point transforms and crop-box smoothing (offline and streaming)."""

from __future__ import annotations

import numpy as np
import pytest

from infp.face import (
    LEFT_EYE,
    LIPS,
    RIGHT_EYE,
    BoxSmoother,
    CropBox,
    crop,
    crop_box_from_face,
    crop_matrix,
    invert_affine,
    smooth_boxes,
    transform_points,
)


def _pattern(h: int = 300, w: int = 400) -> np.ndarray:
    """An image whose pixels encode their own coordinates (R = x % 256, G = y % 256, B = (x + y) % 256)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x % 256, y % 256, (x * 7 + y * 3) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("size", [256, 512])
def test_crop_of_a_real_face(portraits, portrait_faces, size: int) -> None:
    for image, face in zip(portraits, portrait_faces):
        box = crop_box_from_face(face)
        patch, M = crop(image, box, size)
        assert patch.shape == (size, size, 3) and patch.dtype == np.uint8
        assert M.shape == (2, 3)
        pts = transform_points(face.landmarks, M)
        assert pts.shape == (478, 2) and pts.dtype == np.float32
        # every landmark inside the crop, with a margin, the eyes above the middle of the crop, the lips below
        assert pts.min() > 0.1 * size and pts.max() < 0.9 * size
        assert pts[LEFT_EYE + RIGHT_EYE, 1].mean() < 0.5 * size < pts[LIPS, 1].mean()
        # the crop really shows the image under the transformed points: compare the mean colour of a
        # small window around the nose tip and the left pupil with the same window in the image
        k = box.size / size
        for idx in (1, 473):
            (x, y), (u, v) = face.landmarks[idx], pts[idx]
            r = 12
            in_crop = patch[round(v - r) : round(v + r), round(u - r) : round(u + r)]
            in_image = image[round(y - r * k) : round(y + r * k), round(x - r * k) : round(x + r * k)]
            assert np.abs(in_crop.reshape(-1, 3).mean(0) - in_image.reshape(-1, 3).mean(0)).max() < 6


def test_crop_box_from_face_geometry(portrait_faces) -> None:
    face = portrait_faces[0]
    box = crop_box_from_face(face, scale=2.0, shift=0.0)
    assert box.size == pytest.approx(2.0 * max(face.width, face.height), rel=1e-5)
    assert (box.cx, box.cy) == pytest.approx(tuple(face.center), abs=1e-3)
    lowered = crop_box_from_face(face.landmarks, scale=2.0, shift=0.1)  # plain landmarks work too
    assert lowered.cy == pytest.approx(box.cy + 0.1 * face.height, rel=1e-5)
    assert lowered.cx == pytest.approx(box.cx) and lowered.size == pytest.approx(box.size)
    np.testing.assert_allclose(CropBox.from_array(box.as_array()).as_array(), box.as_array())
    assert box.as_array().shape == (3,) and box.as_array().dtype == np.float32


def test_crop_matrix_maps_box_corners_to_crop_corners() -> None:
    box = CropBox(cx=120.5, cy=80.25, size=64.0)
    M = crop_matrix(box, 256)
    corners = transform_points(np.array([[88.5, 48.25], [152.5, 112.25]]), M)
    np.testing.assert_allclose(corners, [[0, 0], [256, 256]], atol=1e-4)
    back = transform_points(corners, invert_affine(M))
    np.testing.assert_allclose(back, [[88.5, 48.25], [152.5, 112.25]], atol=1e-3)


def test_unscaled_crop_is_an_exact_slice() -> None:
    image = _pattern()
    patch, _ = crop(image, CropBox(cx=150 + 64, cy=100 + 64, size=128), 128)
    np.testing.assert_array_equal(patch, image[100:228, 150:278])


def test_crop_partly_outside_the_image() -> None:
    image = _pattern()
    box = CropBox(cx=0, cy=0, size=200)  # centred on the top-left corner: 3/4 outside
    black, M = crop(image, box, 200)
    assert black.shape == (200, 200, 3)
    assert not black[:95, :95].any()  # outside: black
    np.testing.assert_array_equal(black[100:, 100:], image[:100, :100])
    edge, _ = crop(image, box, 200, border="replicate")
    np.testing.assert_array_equal(edge[:95, 150], np.broadcast_to(image[0, 50], (95, 3)))
    np.testing.assert_array_equal(edge[100:, 100:], image[:100, :100])
    with pytest.raises(ValueError):
        crop(image, box, 200, border="wrap")


def test_strong_downscale_is_antialiased() -> None:
    checker = (np.indices((800, 800)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[:, :, None], 3, axis=2)
    patch, _ = crop(image, CropBox(400, 400, 800), 100)
    assert abs(patch.mean() - 127.5) < 2 and patch.std() < 3


def test_smooth_boxes_fills_short_gaps_and_reduces_jitter() -> None:
    rng = np.random.default_rng(0)
    t = 200
    clean = np.stack([np.linspace(200, 260, t), np.full(t, 180.0), np.linspace(300, 320, t)], axis=1)
    noisy = clean + rng.normal(0, 3, (t, 3))
    noisy[50:60] = np.nan  # short gap (10 frames) -> filled
    noisy[100:140] = np.nan  # long gap (40 frames) -> stays invalid
    smoothed, valid = smooth_boxes(noisy, sigma=2.0, max_gap=25)
    assert smoothed.shape == (t, 3) and smoothed.dtype == np.float32 and valid.dtype == bool
    assert valid[50:60].all() and np.isfinite(smoothed[50:60]).all()
    np.testing.assert_allclose(smoothed[50:60], clean[50:60], atol=4)
    assert not valid[100:140].any() and np.isnan(smoothed[100:140]).all()
    assert valid[:100].all() and valid[140:].all()
    ok = slice(0, 100)
    jitter_before = np.nanstd(np.diff(noisy[ok], axis=0), axis=0)
    jitter_after = np.std(np.diff(smoothed[ok], axis=0), axis=0)
    assert (jitter_after < 0.4 * jitter_before).all()
    # still follows the motion
    assert np.abs(smoothed[valid] - clean[valid]).mean() < 2


def test_smooth_boxes_edges_and_degenerate_inputs() -> None:
    boxes = np.full((30, 3), np.nan)
    boxes[5:20] = [100, 100, 50]
    smoothed, valid = smooth_boxes(boxes, max_gap=5)
    assert valid[:20].all() and not valid[20:].any()  # leading gap of 5 filled, trailing gap of 10 not
    np.testing.assert_allclose(smoothed[:5], [[100, 100, 50]] * 5)
    none, valid = smooth_boxes(np.full((10, 3), np.nan))
    assert not valid.any() and np.isnan(none).all() and none.shape == (10, 3)
    empty, valid = smooth_boxes(np.zeros((0, 3)))
    assert empty.shape == (0, 3) and valid.shape == (0,)
    raw = np.random.default_rng(1).normal(100, 5, (20, 3))
    same, valid = smooth_boxes(raw, sigma=0)
    np.testing.assert_allclose(same, raw, rtol=1e-6)
    assert valid.all()


def test_box_smoother_streaming() -> None:
    rng = np.random.default_rng(2)
    smoother = BoxSmoother(fps=25, max_gap=5)
    raw, out = [], []
    for _ in range(100):
        box = np.array([256.0, 256.0, 200.0]) + rng.normal(0, 2, 3)
        raw.append(box)
        result = smoother.update(CropBox.from_array(box))
        assert isinstance(result, CropBox)
        out.append(result.as_array())
    raw_jitter = np.std(np.diff(np.array(raw)[20:], axis=0))
    out_jitter = np.std(np.diff(np.array(out)[20:], axis=0))
    assert out_jitter < 0.5 * raw_jitter
    # a real move (a quarter of the box) is followed within a few frames
    for _ in range(10):
        result = smoother.update(np.array([306.0, 256.0, 200.0]))
    assert result.cx == pytest.approx(306, abs=3)
    # missing faces: hold the last box for max_gap frames, then give up
    held = [smoother.update(None) for _ in range(6)]
    assert all(h is result for h in held[:5]) and held[5] is None
    assert smoother.update(None) is None
    fresh = smoother.update(np.array([10.0, 20.0, 30.0]))
    assert fresh.as_array() == pytest.approx([10, 20, 30])
    smoother.reset()
    assert smoother.update(None) is None


def test_scaled_crop_respects_pixel_centres() -> None:
    # A steep horizontal ramp (value = 8 * column); a 4x upscale: crop pixel u shows image column
    # x0 + (u + 0.5) / 4 - 0.5 (pixel-centre convention); ignoring it would be off by 3 grey levels.
    ramp = np.repeat(np.repeat((8 * np.arange(32)).astype(np.uint8)[None, :, None], 32, axis=0), 3, axis=2)
    x0 = 8
    patch, M = crop(ramp, CropBox(cx=x0 + 8, cy=16, size=16), 64)
    u = np.arange(4, 60)
    expected = 8 * (x0 + (u + 0.5) / 4 - 0.5)
    np.testing.assert_allclose(patch[32, u, 0], expected, atol=1.2)
    # and transform_points agrees: the point at pixel centre u + 0.5 comes from image x0 + (u + 0.5) / 4
    back = transform_points(np.stack([u + 0.5, np.full(len(u), 32.5)], axis=1), invert_affine(M))
    np.testing.assert_allclose(back[:, 0], x0 + (u + 0.5) / 4, atol=1e-4)
