"""Names of mediapipe face-mesh points (478 with irises) and the measures taken from them.

This module is the one place where face-mesh indices are written out: masks, keypoints, data
preparation and evaluation import the names. LEFT/RIGHT are the subject's own sides (the left eye is
on the image's right in an unmirrored photo). Contours are ordered so they can be drawn as closed
polygons.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478
"""Face-mesh points per face (468 mesh + 10 iris, mediapipe ``refine_landmarks=True`` topology)."""

# -- single points ---------------------------------------------------------------------------------
UPPER_INNER_LIP = 13
"""Middle of the upper lip's inner edge."""
LOWER_INNER_LIP = 14
"""Middle of the lower lip's inner edge."""
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_INNER, LEFT_EYE_OUTER = 362, 263
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
NOSE_TIP = 1
NOSE_BRIDGE = 168
SUBNASAL = 2
FOREHEAD_TOP = 10
FOREHEAD = 151
CHIN = 152
RIGHT_FACE_SIDE, LEFT_FACE_SIDE = 234, 454
LEFT_CHEEK, RIGHT_CHEEK = 425, 205

EYE_OUTER = (RIGHT_EYE_OUTER, LEFT_EYE_OUTER)
"""The outer eye corners, whose distance is the unit of every scale-free face measure here."""

# -- contours --------------------------------------------------------------------------------------
LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
"""Outer lip contour (mediapipe FACEMESH_LIPS outer ring), starting at the right mouth corner."""

INNER_LIPS = [78, 95, 88, 178, 87, LOWER_INNER_LIP, 317, 402, 318, 324, 308, 415, 310, 311, 312,
              UPPER_INNER_LIP, 82, 81, 80, 191]
"""Inner lip contour (the mouth opening)."""

LEFT_EYE = [LEFT_EYE_OUTER, 249, 390, 373, 374, 380, 381, 382, LEFT_EYE_INNER, 398, 384, 385, 386, 387, 388, 466]
RIGHT_EYE = [RIGHT_EYE_OUTER, 7, 163, 144, 145, 153, 154, 155, RIGHT_EYE_INNER, 173, 157, 158, 159, 160, 161, 246]

LEFT_EYEBROW = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]
RIGHT_EYEBROW = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70]

FACE_OVAL = [
    FOREHEAD_TOP, 338, 297, 332, 284, 251, 389, 356, LEFT_FACE_SIDE, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    CHIN, 148, 176, 149, 150, 136, 172, 58, 132, 93, RIGHT_FACE_SIDE, 127, 162, 21, 54, 103, 67, 109,
]
"""Face outline, clockwise in the image from the forehead top via the chin."""

LEFT_IRIS = [474, 475, 476, 477]
RIGHT_IRIS = [469, 470, 471, 472]

RIGID = (RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER, NOSE_TIP, NOSE_BRIDGE,
         RIGHT_FACE_SIDE, LEFT_FACE_SIDE, FOREHEAD_TOP, SUBNASAL)
"""Points that barely move with expression (eye corners, nose, face sides, forehead): face shape."""


def interocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners: (..., 478, 2) -> (...)."""
    return np.linalg.norm(landmarks[..., EYE_OUTER[0], :] - landmarks[..., EYE_OUTER[1], :], axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over eye distance: (..., 478, 2) -> (...); about 0 closed, 0.3+ wide open.

    The one mouth measure of the project: data preparation picks rest frames with it, evaluation
    compares generated and real mouths with it, and ``infp.models.keypoints.keypoint_mouth_opening``
    computes the same ratio on decoded keypoints.
    """
    gap = np.linalg.norm(landmarks[..., UPPER_INNER_LIP, :] - landmarks[..., LOWER_INNER_LIP, :], axis=-1)
    return gap / np.maximum(interocular(landmarks), 1e-6)
