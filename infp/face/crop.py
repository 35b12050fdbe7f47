"""Square face crops: CropBox (cx, cy, size) -> (S, S, 3) crop + (2, 3) affine M; (T, 3) box smoothing over time."""

# Point convention: continuous pixel coordinates as mediapipe gives them (x = 0 is the left edge of the
# image, pixel i covers [i, i + 1)). M maps such image points to crop points (transform_points);
# crop() and paste_back() convert to OpenCV's pixel-centre convention themselves (to_pixel_centres).

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from infp.constants import FPS


class HasLandmarks(Protocol):
    """Anything with (N, 2) image-point ``landmarks``, such as ``infp.face.detect.Face``."""

    landmarks: np.ndarray

DEFAULT_SCALE = 1.8
"""Crop side in units of the landmark extent's longest side."""

DEFAULT_SHIFT = 0.1
"""Downward move of the crop centre, in units of the landmark extent's height (see crop_box_from_face)."""


@dataclass
class CropBox:
    """A square region of an image: centre ``cx, cy`` and side ``size``, in image pixels."""

    cx: float
    cy: float
    size: float

    def as_array(self) -> np.ndarray:
        """(3,) float32 ``[cx, cy, size]``."""
        return np.array([self.cx, self.cy, self.size], dtype=np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray | list[float] | tuple[float, float, float]) -> CropBox:
        """Inverse of ``as_array``."""
        cx, cy, size = (float(v) for v in np.asarray(values, dtype=np.float64).reshape(3))
        return cls(cx, cy, size)

    @property
    def corners(self) -> np.ndarray:
        """(4,) float32 ``x0, y0, x1, y1``."""
        h = self.size / 2
        return np.array([self.cx - h, self.cy - h, self.cx + h, self.cy + h], dtype=np.float32)


def crop_box_from_face(
    face_or_landmarks: HasLandmarks | np.ndarray, scale: float = DEFAULT_SCALE, shift: float = DEFAULT_SHIFT
) -> CropBox:
    """Square crop around a face (a ``Face`` or (N, 2) landmarks).

    side = ``scale`` * max(width, height) of the landmark extent; centre = the extent's centre moved
    down by ``shift`` * height. Mediapipe's mesh stops at mid-forehead and its centre sits near the nose
    tip, so the defaults (1.8, 0.1) put the eyes at ~35 % and the chin at ~72 % of the crop height with
    the whole forehead, the chin and some neck inside; ``shift < 0`` moves the crop up (more hair).
    """
    landmarks = getattr(face_or_landmarks, "landmarks", face_or_landmarks)
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise ValueError("no finite landmarks to build a crop box from")
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    width, height = x1 - x0, y1 - y0
    side = scale * max(width, height, 1.0)
    return CropBox(float((x0 + x1) / 2), float((y0 + y1) / 2 + shift * height), float(side))


def crop_matrix(box: CropBox, out_size: int) -> np.ndarray:
    """(2, 3) float64 affine taking image points to points of the ``out_size`` x ``out_size`` crop."""
    s = out_size / box.size
    x0, y0 = box.cx - box.size / 2, box.cy - box.size / 2
    return np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0]], dtype=np.float64)


def invert_affine(M: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    return cv2.invertAffineTransform(np.asarray(M, dtype=np.float64))


def to_pixel_centres(M: np.ndarray) -> np.ndarray:
    """The (2, 3) matrix OpenCV's warpAffine needs for point matrix ``M`` (pixel centres at integers)."""
    M = np.asarray(M, dtype=np.float64)
    out = M.copy()
    # p_c' = M (p_c + 0.5) - 0.5
    out[:, 2] = M[:, 2] + 0.5 * (M[:, 0] + M[:, 1]) - 0.5
    return out


def transform_points(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points; returns (N, 2) float32."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    M = np.asarray(M, dtype=np.float64)
    return (pts @ M[:, :2].T + M[:, 2]).astype(np.float32)


def crop(image: np.ndarray, box: CropBox, out_size: int = 256, border: str = "constant") -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` out of an RGB (H, W, 3) image, resized to (out_size, out_size, 3).

    Parts of the box outside the image are black (``border="constant"``) or repeat the edge pixels
    (``border="replicate"``). Strong downscaling is anti-aliased. Returns the crop and M (2, 3).
    """
    if border not in ("constant", "replicate"):
        raise ValueError(f"border must be 'constant' or 'replicate', got {border!r}")
    if out_size < 1 or not box.size > 0:
        raise ValueError(f"need out_size >= 1 and a positive box size, got {out_size} and {box.size}")
    M = crop_matrix(box, out_size)
    mode = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
    # Downscaling by more than 2x: warp to an integer multiple of the size first, then box-average.
    factor = max(1, min(16, int(math.floor(box.size / out_size))))
    big = out_size * factor
    warp = to_pixel_centres(crop_matrix(box, big))
    out = cv2.warpAffine(np.ascontiguousarray(image), warp, (big, big), flags=cv2.INTER_LINEAR,
                         borderMode=mode, borderValue=(0, 0, 0))
    if factor > 1:
        out = cv2.resize(out, (out_size, out_size), interpolation=cv2.INTER_AREA)
    return out, M


def _fill_gaps(values: np.ndarray, missing: np.ndarray, max_gap: int) -> np.ndarray:
    """Rows of ``values`` that stay missing after filling runs of at most ``max_gap`` missing rows."""
    t = len(values)
    still = missing.copy()
    i = 0
    while i < t:
        if not missing[i]:
            i += 1
            continue
        j = i
        while j < t and missing[j]:
            j += 1
        if j - i <= max_gap:
            if i == 0:
                values[i:j] = values[j]
            elif j == t:
                values[i:j] = values[i - 1]
            else:
                w = (np.arange(i, j) - (i - 1))[:, None] / (j - (i - 1))
                values[i:j] = (1 - w) * values[i - 1] + w * values[j]
            still[i:j] = False
        i = j
    return still


def smooth_boxes(boxes: np.ndarray, sigma: float = 2.0, max_gap: int = FPS) -> tuple[np.ndarray, np.ndarray]:
    """Fill short gaps and smooth a per-frame track of crop boxes.

    ``boxes`` (T, 3) ``[cx, cy, size]`` with NaN rows where no face was found. Gaps of up to ``max_gap``
    frames are filled by linear interpolation (at the ends: the nearest box); each column is then
    Gaussian-smoothed over time (``sigma`` frames, edges: nearest) within each run of valid frames.
    Returns (smoothed (T, 3) float32 with NaN rows where invalid, valid (T,) bool).
    """
    from scipy.ndimage import gaussian_filter1d  # noqa: PLC0415  (scipy is slow to import)

    values = np.array(boxes, dtype=np.float64).reshape(-1, 3)
    t = len(values)
    missing = ~np.isfinite(values).all(axis=1)
    if t == 0 or missing.all():
        return np.full((t, 3), np.nan, dtype=np.float32), np.zeros(t, dtype=bool)
    values[missing] = np.nan
    invalid = _fill_gaps(values, missing, max_gap)
    valid = ~invalid
    out = np.full_like(values, np.nan)
    i = 0
    while i < t:
        if not valid[i]:
            i += 1
            continue
        j = i
        while j < t and valid[j]:
            j += 1
        seg = values[i:j]
        out[i:j] = gaussian_filter1d(seg, sigma, axis=0, mode="nearest") if sigma > 0 else seg
        i = j
    return out.astype(np.float32), valid


class _OneEuro:
    """One-euro low-pass filter on a vector, speed measured in ``norm`` units per second."""

    def __init__(self, fps: float, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        self.fps, self.min_cutoff, self.beta, self.d_cutoff = fps, min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * self.fps)

    def __call__(self, x: np.ndarray, norm: float) -> np.ndarray:
        if self.x is None or self.dx is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self.x) * self.fps
        self.dx = self.dx + self._alpha(self.d_cutoff) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / max(norm, 1e-6)
        self.x = self.x + self._alpha(cutoff) * (x - self.x)
        return self.x.copy()


class BoxSmoother:
    """Streaming crop-box smoothing for live use (one-euro filter on cx, cy, size).

    ``update(box)`` per frame returns the smoothed CropBox. ``update(None)`` (no face this frame) keeps
    returning the last box for up to ``max_gap`` frames, then returns None and starts afresh. Speed is
    measured in box sizes per second, so the behaviour does not depend on the image resolution:
    ``min_cutoff`` (Hz) sets the smoothing of a still face, ``beta`` how fast it opens up on motion.
    """

    def __init__(self, fps: float = FPS, min_cutoff: float = 0.8, beta: float = 4.0,
                 d_cutoff: float = 1.0, max_gap: int = FPS) -> None:
        self.fps = fps
        self.max_gap = max_gap
        self._filter = _OneEuro(fps, min_cutoff, beta, d_cutoff)
        self._last: CropBox | None = None
        self._missing = 0

    def reset(self) -> None:
        self._filter.x = self._filter.dx = None
        self._last = None
        self._missing = 0

    def update(self, box: CropBox | np.ndarray | None) -> CropBox | None:
        if box is not None:
            values = box.as_array() if isinstance(box, CropBox) else np.asarray(box, dtype=np.float64).reshape(3)
            if not np.isfinite(values).all():
                box = None
        if box is None:
            self._missing += 1
            if self._last is not None and self._missing > self.max_gap:
                self.reset()
            return self._last
        self._missing = 0
        smoothed = self._filter(values.astype(np.float64), float(values[2]))
        self._last = CropBox.from_array(smoothed)
        return self._last
