"""Face-identity embeddings for evaluation: dlib's ResNet face recogniser (128-D, 99.38 % on LFW; two
faces are the same person when their distance is below 0.6).

The weights ship inside the ``face_recognition_models`` pip package (MIT; the dlib models are public
domain / CC0), with ``dlib-bin``: ``pip install 'infp[eval]'``. Nothing is downloaded at run time.
Faces are located with the face-mesh landmarks the rest of the toolkit already has, then aligned by
dlib's 5-point model, as dlib's own pipeline does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from infp.errors import InfpError

SAME_PERSON = 0.6
"""dlib's threshold: embedding distances below it are judged the same person."""


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or importlib.util.find_spec("dlib") is None:
        raise InfpError("face-identity evaluation needs dlib and face_recognition_models: pip install 'infp[eval]'")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def available() -> bool:
    try:
        _models_dir()
    except InfpError:
        return False
    return True


class FaceEmbedder:
    """RGB image (H, W, 3) uint8 + its 478 face-mesh landmarks (478, 2) -> unit-scale 128-D embedding."""

    def __init__(self) -> None:
        import dlib

        models = _models_dir()
        self._dlib = dlib
        self._align = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(image, dtype=np.uint8)
        x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
        x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
        box = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        shape = self._align(img, box)
        return np.asarray(self._net.compute_face_descriptor(img, shape), dtype=np.float32)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between embeddings (..., 128), broadcasting."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)
