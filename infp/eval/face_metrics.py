"""Identity measures from 478-point landmarks (N, 478, 2) and images (the mouth opening is ``infp.face.landmarks``'s).

Identity by face *shape* needs no network: distances between rigid landmarks (eye corners, nose, cheeks,
forehead) normalised by the eye distance. They barely move with expression but differ between people; a
reenactment keeps identity when its output is closer in this descriptor to the portrait than to the
driver. With the ``eval`` extra installed, ``identity_score(..., distance="face_id")`` uses a face-
recognition embedding instead (infp.eval.face_id), which also sees skin, eyes and everything else.
"""

from __future__ import annotations

import itertools

import numpy as np

from infp.face.landmarks import RIGID, interocular, mouth_opening  # noqa: F401  (mouth_opening: re-exported)

_PAIRS = list(itertools.combinations(range(len(RIGID)), 2))


def shape_descriptor(landmarks: np.ndarray) -> np.ndarray:
    """Scale-free rigid-shape descriptor: (..., 478, 2) -> (..., 45) pairwise distances / eye distance."""
    pts = landmarks[..., RIGID, :]
    d = np.stack([np.linalg.norm(pts[..., i, :] - pts[..., j, :], axis=-1) for i, j in _PAIRS], axis=-1)
    return d / np.maximum(interocular(landmarks), 1e-6)[..., None]


def identity_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shape-descriptor distance between faces (broadcasting over leading axes)."""
    return np.linalg.norm(shape_descriptor(a) - shape_descriptor(b), axis=-1)


def identity_scores(outputs: list[np.ndarray], sources: list[np.ndarray], drivers: list[np.ndarray],
                    distances: tuple[str, ...] = ("shape",)) -> dict[str, float | None]:
    """Cross-reenactment identity scores in [-1, 1] from RGB images: > 0 when outputs look like their sources.

    Per triple: (d(out, driver) - d(out, source)) / (d(out, driver) + d(out, source)) with d the shape
    distance (``"shape"``) or the face-recognition embedding distance (``"face_id"``); for each distance
    the mean over triples where all three faces are found (None if none). Faces are located once for all.
    """
    from infp.face import FaceDetector

    dist = {}
    for name in distances:
        if name == "face_id":
            from infp.eval.face_id import FaceEmbedder, embedding_distance

            embedder = FaceEmbedder()
            dist[name] = lambda x, y: float(embedding_distance(embedder.embed(*x), embedder.embed(*y)))
        elif name == "shape":
            dist[name] = lambda x, y: float(identity_distance(x[1], y[1]))  # x, y: (image, landmarks)
        else:
            raise ValueError(f"distance must be 'shape' or 'face_id', not {name!r}")

    scores: dict[str, list[float]] = {name: [] for name in distances}
    with FaceDetector(max_faces=1) as det:
        def lm(img: np.ndarray) -> np.ndarray | None:
            faces = det.detect(np.ascontiguousarray(img))
            return max(faces, key=lambda f: f.area).landmarks if faces else None

        for o, s, d in zip(outputs, sources, drivers):
            lo, ls, ld = lm(o), lm(s), lm(d)
            if lo is None or ls is None or ld is None:
                continue
            for name, f in dist.items():
                to_src, to_drv = f((o, lo), (s, ls)), f((o, lo), (d, ld))
                scores[name].append((to_drv - to_src) / max(to_drv + to_src, 1e-6))
    return {name: (float(np.mean(v)) if v else None) for name, v in scores.items()}


def identity_score(outputs: list[np.ndarray], sources: list[np.ndarray], drivers: list[np.ndarray],
                   distance: str = "shape") -> float | None:
    """One of ``identity_scores``."""
    return identity_scores(outputs, sources, drivers, (distance,))[distance]
