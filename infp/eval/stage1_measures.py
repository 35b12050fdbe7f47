"""Measures of stage-1 renders on unseen faces: detail kept in the face, head yaw in degrees.

**Detail** (``face_detail``): the variance of the Laplacian of the face, a standard focus / sharpness
measure. The face box is the extent of the face-mesh landmarks; its content is resized to 128 x 128
and made grayscale before the Laplacian, so that faces of any size and resolution are measured on the
same grid. A render keeps the portrait's detail when its measure is close to the portrait's
(``detail_kept`` = render / portrait). Because the renderer works at 256 px, the attainable share is
measured on the portrait itself squeezed through that size: its face crop as the renderer gets it
(256 px) pasted back into the picture (``infp.runtime.portrait.Portrait.paste``).

**Yaw in degrees** (``yaw_degrees``): ``infp.face.expression.frame_measures`` gives yaw as a ratio,
the nose tip's offset from the middle of the two face sides (landmarks 234, 454) over the face width,
in the image plane with the eye line levelled. Under an orthographic camera a head turned by ``a``
about its vertical axis moves a point at depth ``z`` by ``z sin a`` and shrinks widths by ``cos a``, so
ratio = ``k tan a`` with ``k`` = (depth of the nose tip in front of the face sides) / (face width).
On MediaPipe's canonical face model (``canonical_face_model.obj``: nose tip 1 at z = 7.48, sides 234 /
454 at x = -/+7.66, z = -2.44) ``k`` = 9.91 / 15.33 = 0.647, and ``a = atan(ratio / k)``. Positive yaw:
the nose points to the image's right (the person's left); a mirrored face has the opposite sign.
Perspective, pitch and a face's own proportions make it approximate (on driver frames it lies within
1-8 degrees of the turn of the face mesh's own 3-D face-side line), which is enough to tell frontal
frames from turned ones.
"""

from __future__ import annotations

import cv2
import numpy as np

from infp.face.expression import MEASURES, frame_measures

DETAIL_SIZE = 128
"""Side (pixels) the face box is resized to before the Laplacian."""

YAW_DEPTH_RATIO = (7.475604 + 2.435867) / (2 * 7.664182)
"""``k``: nose tip depth in front of the face sides over the face width, on MediaPipe's canonical face."""

_YAW = MEASURES.index("yaw")


def face_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """(478, 2) landmarks -> integer ``x0, y0, x1, y1`` of their extent."""
    lm = np.asarray(landmarks, dtype=np.float64)
    x0, y0 = np.floor(lm.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lm.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def face_detail(image: np.ndarray, landmarks: np.ndarray, size: int = DETAIL_SIZE) -> float:
    """Variance of the Laplacian of the face box of an RGB uint8 image, resized to ``size`` x ``size``, grayscale.

    The box is the landmarks' extent, clipped to the image; NaN when the landmarks are missing or the
    box is empty.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if not np.isfinite(lm).all():
        return float("nan")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = face_box(lm)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return float("nan")
    patch = np.ascontiguousarray(image[y0:y1, x0:x1])
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    shrink = (x1 - x0) > size and (y1 - y0) > size
    patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(patch.astype(np.float64), cv2.CV_64F).var())


def detail_kept(frames, frame_landmarks: np.ndarray, reference: float) -> np.ndarray:
    """Per frame: ``face_detail`` of the frame over ``reference`` (the portrait's); NaN where no face."""
    return np.array([face_detail(f, lm) / reference if reference > 0 else np.nan
                     for f, lm in zip(frames, frame_landmarks)], dtype=np.float64)


def yaw_degrees(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) face-mesh landmarks -> (T,) head yaw in degrees (NaN where the landmarks are missing).

    ``atan(ratio / YAW_DEPTH_RATIO)`` of the yaw ratio of ``infp.face.expression.frame_measures``; see
    the module docstring for the model and the sign.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    ratio = frame_measures(lm)[:, _YAW].astype(np.float64)
    return np.degrees(np.arctan(ratio / YAW_DEPTH_RATIO))
