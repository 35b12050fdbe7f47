"""Portrait preparation: image -> square face crop (S, S, 3), its landmarks and the crop matrix for paste-back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infp.face import crop, crop_box_from_face, detect_face, motion_input, paste_back, transform_points
from infp.io import read_image


@dataclass
class Portrait:
    """A portrait ready for animation."""

    image: np.ndarray  # (H, W, 3) uint8, the whole picture
    crop: np.ndarray  # (S, S, 3) uint8 face crop
    landmarks: np.ndarray  # (478, 2) in crop pixels
    matrix: np.ndarray  # (2, 3) image -> crop
    masked: np.ndarray  # (S, S, 3) motion-encoder input of the portrait

    def paste(self, frame: np.ndarray) -> np.ndarray:
        """Put a generated crop (S, S, 3) back into the whole picture (even-sized for H.264)."""
        out = paste_back(self.image, frame, self.matrix)
        h, w = out.shape[:2]
        return out[: h - h % 2, : w - w % 2]


def load_portrait(source: str | Path | np.ndarray, size: int = 256, face_index: int | None = None,
                  crop_scale: float = 1.8) -> Portrait:
    """Read (if a path), detect the face (largest, or ``face_index`` from the left) and crop it."""
    path = None if isinstance(source, np.ndarray) else Path(source)
    image = source if path is None else read_image(path)
    face = detect_face(image, index=face_index, path=path)
    box = crop_box_from_face(face, scale=crop_scale)
    face_crop, matrix = crop(image, box, size, border="replicate")
    lm = transform_points(face.landmarks, matrix)
    return Portrait(image, face_crop, lm, matrix, motion_input(face_crop, lm))
