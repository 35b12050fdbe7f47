"""Fixtures for the face tests: real sample media (repo samples, else /work/shared/data) and cached detections."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[2]
MEDIA_DIRS = tuple(
    Path(p) for p in (os.environ.get("INFP_SAMPLE_MEDIA"), REPO / "data" / "samples", "/work/shared/data") if p
)
"""Where real sample media is looked for, first match wins (``INFP_SAMPLE_MEDIA`` overrides)."""


def _has_media(root: Path) -> bool:
    return any((root / "portraits").glob("*.jpg")) and any((root / "video").glob("*.mp4"))


@pytest.fixture(scope="session")
def sample_media() -> Path:
    """Directory with ``portraits/*.jpg`` and ``video/*.mp4`` of real faces."""
    for root in MEDIA_DIRS:
        if _has_media(root):
            return root
    pytest.skip(f"no sample media (portraits/*.jpg + video/*.mp4) in any of {', '.join(map(str, MEDIA_DIRS))}")


@pytest.fixture(scope="session")
def portrait_paths(sample_media: Path) -> list[Path]:
    """Real single-face portraits, sorted by name."""
    return sorted((sample_media / "portraits").glob("*.jpg"))


@pytest.fixture(scope="session")
def video_path(sample_media: Path) -> Path:
    """One real talking-face video."""
    return sorted((sample_media / "video").glob("*.mp4"))[0]


@pytest.fixture(scope="session")
def portraits(portrait_paths: list[Path]) -> list[np.ndarray]:
    """The portraits as RGB uint8 arrays."""
    from infp.io import read_image

    return [read_image(p) for p in portrait_paths]


@pytest.fixture(scope="session")
def portrait_faces(portraits: list[np.ndarray]) -> list:
    """One detected ``Face`` per portrait (detected once per session)."""
    from infp.face import choose_face, detect_faces

    return [choose_face(detect_faces(image)) for image in portraits]


@pytest.fixture(scope="session")
def portrait_crop(portraits: list[np.ndarray], portrait_faces: list) -> tuple[np.ndarray, np.ndarray]:
    """The first portrait's 256 px face crop and its landmarks in crop coordinates."""
    from infp.face import crop, crop_box_from_face, transform_points

    image, face = portraits[0], portrait_faces[0]
    patch, M = crop(image, crop_box_from_face(face), 256)
    return patch, transform_points(face.landmarks, M)
