"""Pasting a face crop back into its source image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from infp.face import CropBox, crop, crop_box_from_face, invert_affine, paste_back, transform_points
from infp.face.paste import square_feather


def _inside(box: CropBox, shape: tuple[int, int], margin: float) -> np.ndarray:
    """(H, W) bool: pixels whose centres are at least ``margin`` * size inside the box."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w] + 0.5
    half = box.size * (0.5 - margin)
    return (np.abs(x - box.cx) < half) & (np.abs(y - box.cy) < half)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 3.0])
def test_unmodified_crop_round_trips(portraits, portrait_faces, ratio: float) -> None:
    image, face = portraits[0], portrait_faces[0]
    box = crop_box_from_face(face)
    size = float(round(box.size))
    box = CropBox(round(box.cx - size / 2) + size / 2, round(box.cy - size / 2) + size / 2, size)  # on the pixel grid
    patch, M = crop(image, box, int(size * ratio))
    out = paste_back(image, patch, M)
    assert out.shape == image.shape and out.dtype == np.uint8 and out is not image
    centre = _inside(box, image.shape[:2], 0.1)
    err = np.abs(out.astype(int) - image.astype(int))[centre].mean()
    if ratio == 1.0:
        assert err < 0.01  # a 1:1 crop on the pixel grid goes back exactly
    else:
        # upsampled and back: only a little interpolation blur, far less than a one-pixel misplacement
        shifted = np.abs(np.roll(image, 1, axis=1).astype(int) - image.astype(int))[centre].mean()
        assert err < 0.4 * shifted
    # pixels outside the box's bounding rectangle are bit-identical
    far = ~_inside(box, image.shape[:2], -0.01)
    np.testing.assert_array_equal(out[far], image[far])


def test_downscaled_crop_round_trips_like_a_resize(portraits, portrait_faces) -> None:
    # Through a 256 crop a big face loses detail; the loss must be no worse than a plain down/up resize.
    image, face = portraits[0], portrait_faces[0]
    box = crop_box_from_face(face)
    patch, M = crop(image, box, 256)
    out = paste_back(image, patch, M)
    centre = _inside(box, image.shape[:2], 0.1)
    err = np.abs(out.astype(int) - image.astype(int))[centre].mean()
    h, w = image.shape[:2]
    factor = 256 / box.size
    small = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    ref = np.abs(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(int) - image.astype(int))
    assert err < 1.5 * ref[centre].mean() + 1.0


def test_modified_crop_is_blended_with_a_feather(portraits, portrait_faces) -> None:
    image, face = portraits[0], portrait_faces[0]
    box = crop_box_from_face(face)
    _, M = crop(image, box, 256)
    white = np.full((256, 256, 3), 255, dtype=np.uint8)
    out = paste_back(image, white, M, feather=0.1)
    centre = _inside(box, image.shape[:2], 0.11)
    assert (out[centre] == 255).all()
    # along a row through the box centre, the left edge ramps up from the original towards white
    row = int(box.cy)
    x0 = int(box.cx - box.size / 2)
    ramp = out[row, x0 + 1 : x0 + int(0.1 * box.size) - 1].astype(int).sum(axis=1)
    orig = image[row, x0 + 1 : x0 + int(0.1 * box.size) - 1].astype(int).sum(axis=1)
    weight = (ramp - orig) / np.maximum(765 - orig, 1)
    assert weight[0] < 0.2 and weight[-1] > 0.8
    assert (np.diff(weight) > -0.05).all()
    # no feather: a hard square
    hard = paste_back(image, white, M, feather=0)
    assert (hard[_inside(box, image.shape[:2], 0.01)] == 255).all()


def test_paste_a_box_partly_outside_the_image() -> None:
    image = np.full((120, 160, 3), 50, dtype=np.uint8)
    box = CropBox(cx=150, cy=10, size=80)  # mostly outside the top-right corner
    patch, M = crop(image, box, 64)
    red = np.zeros_like(patch)
    red[..., 0] = 255
    out = paste_back(image, red, M, feather=0.05)
    assert out.shape == image.shape
    assert (out[0:40, 130:160, 0] == 255).all()
    assert (out[60:, :] == 50).all() and (out[:, :100] == 50).all()
    # entirely outside: nothing changes
    far_box = CropBox(cx=-500, cy=-500, size=80)
    _, M_far = crop(image, far_box, 64)
    np.testing.assert_array_equal(paste_back(image, red, M_far), image)


def test_square_feather_and_matrix_inverse() -> None:
    alpha = square_feather(100, 0.1)
    assert alpha.shape == (100, 100) and alpha[50, 50] == 1 and alpha[0, 50] < 0.1 and alpha[0, 0] < 0.1
    np.testing.assert_allclose(alpha, alpha.T)
    assert (square_feather(10, 0) == 1).all()
    box = CropBox(100, 80, 64)
    _, M = crop(np.zeros((200, 200, 3), np.uint8), box, 128)
    pts = np.array([[10.0, 20.0], [150.0, 30.0]])
    np.testing.assert_allclose(transform_points(transform_points(pts, M), invert_affine(M)), pts, atol=1e-3)
