"""Paste a (S, S, 3) face crop back into its (H, W, 3) source image through the inverse of its (2, 3) crop matrix M."""

from __future__ import annotations

import math

import cv2
import numpy as np

from infp.face.crop import invert_affine, to_pixel_centres, transform_points


def square_feather(size: int, feather: float) -> np.ndarray:
    """(S, S) float32 alpha: 1 in the middle, ramping linearly to 0 over ``feather`` * S pixels at each edge."""
    ramp_px = float(feather) * size
    if ramp_px <= 0:
        return np.ones((size, size), dtype=np.float32)
    edge = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5)
    ramp = np.clip(edge / ramp_px, 0.0, 1.0).astype(np.float32)
    return np.minimum(ramp[:, None], ramp[None, :])


def paste_back(image: np.ndarray, crop: np.ndarray, M: np.ndarray, feather: float = 0.08) -> np.ndarray:
    """Warp ``crop`` back into a copy of ``image`` with M's inverse and alpha-blend it with a feathered square.

    Only the box's bounding rectangle is touched; every other pixel is copied unchanged.
    """
    image = np.asarray(image)
    crop = np.asarray(crop)
    if image.ndim != 3 or crop.ndim != 3 or crop.shape[0] != crop.shape[1] or crop.shape[2] != image.shape[2]:
        raise ValueError(f"expected image (H, W, C) and square crop (S, S, C), got {image.shape} and {crop.shape}")
    out = image.copy()
    h, w = image.shape[:2]
    s = crop.shape[0]
    inv = invert_affine(M)
    shrink = math.sqrt(abs(float(np.linalg.det(inv[:, :2]))))  # crop pixel -> image pixels
    if shrink < 0.5:
        # the crop lands much smaller than it is: box-average it first so the warp does not alias
        small = max(1, round(s * shrink))
        crop = cv2.resize(crop, (small, small), interpolation=cv2.INTER_AREA)
        inv = inv.copy()
        inv[:, :2] *= s / small
        s = small
    corners = transform_points(np.array([[0, 0], [s, 0], [0, s], [s, s]], dtype=np.float64), inv)
    x0 = max(0, int(math.floor(float(corners[:, 0].min()))))
    y0 = max(0, int(math.floor(float(corners[:, 1].min()))))
    x1 = min(w, int(math.ceil(float(corners[:, 0].max()))))
    y1 = min(h, int(math.ceil(float(corners[:, 1].max()))))
    if x1 <= x0 or y1 <= y0:
        return out
    # crop -> image, shifted so the destination is just the rectangle [x0, x1) x [y0, y1)
    shifted = inv.copy()
    shifted[:, 2] -= (x0, y0)
    warp = to_pixel_centres(shifted)
    size = (x1 - x0, y1 - y0)
    patch = cv2.warpAffine(np.ascontiguousarray(crop), warp, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(square_feather(s, feather), warp, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if patch.ndim == 2:
        patch = patch[:, :, None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    a = alpha[:, :, None]
    blended = region + a * (patch.astype(np.float32) - region)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        blended = np.clip(np.rint(blended), info.min, info.max)
    out[y0:y1, x0:x1] = blended.astype(image.dtype)
    return out
