"""Face-region masks from (478, 2) landmarks: (H, W) float32 masks and the (S, S, 3) uint8 eyes+lips motion input."""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from infp.face.landmarks import (  # noqa: F401  (re-exported: the mask regions are named by these)
    FACE_OVAL,
    FOREHEAD,
    INNER_LIPS,
    LEFT_CHEEK,
    LEFT_EYE,
    LEFT_EYEBROW,
    LEFT_IRIS,
    LEFT_IRIS_CENTER,
    LIPS,
    NOSE_TIP,
    RIGHT_CHEEK,
    RIGHT_EYE,
    RIGHT_EYEBROW,
    RIGHT_IRIS,
    RIGHT_IRIS_CENTER,
)

REGIONS: dict[str, tuple[list[int], ...]] = {
    "eyes": (LEFT_EYE, RIGHT_EYE),
    "eyebrows": (LEFT_EYEBROW, RIGHT_EYEBROW),
    "irises": (LEFT_IRIS, RIGHT_IRIS),
    "lips": (LIPS,),
    "mouth": (INNER_LIPS,),
    "face": (FACE_OVAL,),
}
"""Region name -> contours; each contour's convex hull is filled separately (two eyes = two hulls)."""

DEFAULT_DILATE = 0.02
"""Region growth in units of the image's longest side. 0.02 (5 px in a 256 crop) shows the eyelids and
lip edges; measured on real portraits the nose tip lies only ~0.03 S from the lip hull, so 0.04 would
let it through."""


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _hull_mask(landmarks: np.ndarray, hw: tuple[int, int], regions: Iterable[str]) -> np.ndarray:
    """(H, W) uint8 with 1 inside the filled convex hull of every contour of ``regions``."""
    if isinstance(regions, str):
        regions = (regions,)
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros(hw, dtype=np.uint8)
    for name in regions:
        if name not in REGIONS:
            raise ValueError(f"unknown face region {name!r}; choose from {', '.join(REGIONS)}")
        for contour in REGIONS[name]:
            if max(contour) >= len(pts):
                raise ValueError(f"region {name!r} needs {max(contour) + 1} landmarks, got {len(pts)}")
            poly = pts[contour]
            if not np.isfinite(poly).all():
                continue
            # landmarks use pixel edges (pixel i spans [i, i+1)); OpenCV draws at pixel centres.
            fixed = np.round((poly - 0.5) * 16).astype(np.int32)
            hull = cv2.convexHull(fixed)
            cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask


def region_mask(
    landmarks: np.ndarray,
    size: int | tuple[int, int],
    regions: Iterable[str] = ("eyes", "lips"),
    dilate: float = DEFAULT_DILATE,
) -> np.ndarray:
    """(H, W) float32 mask in [0, 1] of the filled convex hulls of ``regions``.

    ``size`` is S or (H, W). The hulls are grown by ``dilate`` * max(H, W) pixels: 1 up to half that
    distance, then a linear feather down to exactly 0 at the full distance, so nothing farther than
    ``dilate * size`` from a hull is ever let through.
    """
    hw = _size_hw(size)
    hull = _hull_mask(landmarks, hw, regions)
    reach = float(dilate) * max(hw)
    if reach <= 0 or not hull.any():
        return hull.astype(np.float32)
    dist = cv2.distanceTransform((hull == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    inner = reach / 2
    mask = np.clip((reach - dist) / (reach - inner), 0.0, 1.0)
    return mask.astype(np.float32)


def outline_dots(landmarks: np.ndarray, size: int | tuple[int, int], radius: int | None = None) -> np.ndarray:
    """(H, W) bool: small filled discs at the FACE_OVAL points (radius default max(1, S // 128))."""
    hw = _size_hw(size)
    r = max(1, max(hw) // 128) if radius is None else int(radius)
    canvas = np.zeros(hw, dtype=np.uint8)
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)[FACE_OVAL]
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(canvas, (int(np.floor(x)), int(np.floor(y))), r, 255, thickness=-1, lineType=cv2.LINE_8)
    return canvas > 0


def motion_input(
    crop: np.ndarray,
    landmarks: np.ndarray,
    regions: Iterable[str] = ("eyes", "lips"),
    outline_radius: int | None = None,
    dilate: float = DEFAULT_DILATE,
) -> np.ndarray:
    """The stage-1 motion encoder's input: (S, S, 3) uint8 crop showing only ``regions`` + outline dots.

    Everything outside the (dilated, feathered) region hulls is 0, so skin, hair, nose and background
    are hidden; the FACE_OVAL points (``landmarks`` in crop coordinates) are drawn on top as white dots.
    """
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"expected an (S, S, 3) uint8 crop, got {crop.shape} {crop.dtype}")
    hw = crop.shape[:2]
    mask = region_mask(landmarks, hw, regions, dilate)
    out = np.rint(crop.astype(np.float32) * mask[:, :, None]).astype(np.uint8)
    out[outline_dots(landmarks, hw, outline_radius)] = 255
    return out
