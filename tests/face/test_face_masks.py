"""Region masks and the stage-1 motion-encoder input (only eyes, lips and outline dots visible)."""

from __future__ import annotations

import numpy as np
import pytest

from infp.face import (
    FACE_OVAL,
    LEFT_EYE,
    LEFT_EYEBROW,
    LEFT_IRIS,
    LIPS,
    RIGHT_EYE,
    RIGHT_EYEBROW,
    RIGHT_IRIS,
    motion_input,
    region_mask,
)
from infp.face.masks import FOREHEAD, INNER_LIPS, LEFT_CHEEK, NOSE_TIP, RIGHT_CHEEK, _hull_mask, outline_dots


def _ring(connections: frozenset) -> list[tuple[int, int]]:
    return sorted(tuple(sorted(c)) for c in connections)


def _closed(order: list[int]) -> list[tuple[int, int]]:
    return sorted(tuple(sorted((a, b))) for a, b in zip(order, order[1:] + order[:1]))


def test_index_lists_match_mediapipe() -> None:
    conn = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    for order, name in [(LEFT_EYE, "LEFT_EYE"), (RIGHT_EYE, "RIGHT_EYE"), (FACE_OVAL, "FACE_OVAL"),
                        (LEFT_IRIS, "LEFT_IRIS"), (RIGHT_IRIS, "RIGHT_IRIS")]:
        assert _closed(order) == _ring(getattr(conn, f"FACEMESH_{name}")), name
    lips = set(_ring(conn.FACEMESH_LIPS))
    assert set(_closed(LIPS)) | set(_closed(INNER_LIPS)) == lips
    for order, name in [(LEFT_EYEBROW, "LEFT_EYEBROW"), (RIGHT_EYEBROW, "RIGHT_EYEBROW")]:
        # eyebrows are two open polylines in mediapipe; ours closes them into one ring
        assert set(_ring(getattr(conn, f"FACEMESH_{name}"))) <= set(_closed(order))
        assert sorted(order) == sorted({i for c in getattr(conn, f"FACEMESH_{name}") for i in c})


def test_region_mask_basics(portrait_crop) -> None:
    _, lm = portrait_crop
    mask = region_mask(lm, 256)
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == 1.0
    hull = _hull_mask(lm, (256, 256), ("eyes", "lips")).astype(bool)
    assert (mask[hull] == 1).all()
    assert 0 < ((mask > 0) & (mask < 1)).sum()  # feathered edge
    # grows with dilation, and the hard hull is the dilate=0 case
    np.testing.assert_array_equal(region_mask(lm, 256, dilate=0) > 0, hull)
    assert (region_mask(lm, 256, dilate=0.05) > 0).sum() > (mask > 0).sum() > hull.sum()
    # rectangular sizes are (H, W); other regions work; unknown ones are refused
    assert region_mask(lm, (200, 300)).shape == (200, 300)
    eyes = region_mask(lm, 256, regions=("eyes",))
    assert eyes[int(lm[LIPS, 1].mean()), int(lm[LIPS, 0].mean())] == 0
    assert region_mask(lm, 256, regions="face").sum() > region_mask(lm, 256).sum()
    with pytest.raises(ValueError, match="unknown face region"):
        region_mask(lm, 256, regions=("nose",))


def test_motion_input_shows_only_eyes_lips_and_outline(portrait_crop) -> None:
    patch, lm = portrait_crop
    out = motion_input(patch, lm)
    assert out.shape == patch.shape and out.dtype == np.uint8
    mask = region_mask(lm, 256)
    dots = outline_dots(lm, 256)
    # nothing outside the dilated hulls except the outline dots
    assert not out[(mask == 0) & ~dots].any()
    assert (out[dots] == 255).all()
    # identity cues are hidden
    for idx in (NOSE_TIP, FOREHEAD, LEFT_CHEEK, RIGHT_CHEEK):
        x, y = lm[idx].astype(int)
        assert not out[y - 1 : y + 2, x - 1 : x + 2].any(), idx
    # eyes and lips are shown unchanged
    hull = _hull_mask(lm, (256, 256), ("eyes", "lips")).astype(bool) & ~dots
    np.testing.assert_array_equal(out[hull], patch[hull])
    # most of the crop is black: far less than half of it is visible
    assert (out.any(axis=2)).mean() < 0.12
    # the outline is drawn where the face oval is
    for x, y in lm[FACE_OVAL].astype(int):
        if 0 <= x < 256 and 0 <= y < 256:
            assert (out[y, x] == 255).all()


def test_motion_input_on_every_portrait(portraits, portrait_faces) -> None:
    from infp.face import crop, crop_box_from_face, transform_points

    for image, face in zip(portraits, portrait_faces):
        for size in (256, 512):
            patch, M = crop(image, crop_box_from_face(face), size)
            lm = transform_points(face.landmarks, M)
            out = motion_input(patch, lm)
            for idx in (NOSE_TIP, FOREHEAD, LEFT_CHEEK, RIGHT_CHEEK):
                x, y = lm[idx].astype(int)
                assert not out[y, x].any(), (idx, size)
            visible = out.any(axis=2)
            assert 0.02 < visible.mean() < 0.12


def test_motion_input_options_and_checks(portrait_crop) -> None:
    patch, lm = portrait_crop
    thin = motion_input(patch, lm, outline_radius=1)
    thick = motion_input(patch, lm, outline_radius=3)
    assert (thick == 255).all(axis=2).sum() > (thin == 255).all(axis=2).sum()
    with_brows = motion_input(patch, lm, regions=("eyes", "eyebrows", "lips"))
    assert with_brows.any(axis=2).sum() > motion_input(patch, lm).any(axis=2).sum()
    with pytest.raises(ValueError):
        motion_input(patch.astype(np.float32), lm)
