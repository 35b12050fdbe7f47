"""Face detection + 478-point mesh: RGB uint8 (H, W, 3) image -> list of Face(box (4,), landmarks (478, 2), score)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from infp.errors import InfpError, NoFaceError
from infp.face.crop import CropBox, crop, invert_affine, transform_points

log = logging.getLogger(__name__)

DETECT_MAX_SIDE = 1280
"""Images whose longest side exceeds this are downscaled for detection (coordinates are mapped back)."""

FALLBACK_CONTEXT = 2.2
"""Side of the square re-crop around a full-range detection box, in units of the box's longest side."""

FALLBACK_CROP_MAX = 512
"""Longest side (pixels) the fallback re-crop is resized to before running the mesh on it."""

TILE_MIN_SIDE = 640
"""Images at least this large (longest side) get a tiled search when nothing else finds a face."""

DUPLICATE_OVERLAP = 0.6
"""Two faces whose intersection covers more than this share of the smaller box are the same face."""


@dataclass
class Face:
    """One detected face. Coordinates are continuous pixel coordinates (0 = left/top image edge)."""

    box: np.ndarray
    """(4,) float32 ``x0, y0, x1, y1``: the extent of the landmarks (may reach outside the image)."""
    landmarks: np.ndarray
    """(478, 2) float32 ``x, y`` in mediapipe face-mesh topology with iris points."""
    score: float
    """Detector confidence in [0, 1]."""

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> np.ndarray:
        """(2,) float32 ``x, y`` centre of the box."""
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], dtype=np.float32)


def _face_from_landmarks(landmarks: np.ndarray, score: float) -> Face:
    landmarks = np.asarray(landmarks, dtype=np.float32)
    box = np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)]).astype(np.float32)
    return Face(box=box, landmarks=landmarks, score=float(score))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area over the smaller box's area, for (4,) x0 y0 x1 y1 boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(smaller, 1e-6))


def _dedupe(faces: list[Face]) -> list[Face]:
    """Drop faces that overlap an already kept, higher-scoring face."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_overlap(face.box, k.box) <= DUPLICATE_OVERLAP for k in kept):
            kept.append(face)
    return kept


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate and normalise to a C-contiguous (H, W, 3) uint8 array (grey and RGBA are converted)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _import_mediapipe() -> Any:
    """Import mediapipe's legacy solutions with its C++ logging turned down."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mediapipe.python import solution_base  # noqa: PLC0415  (lazy: heavy import)
    from mediapipe.python.solutions import face_detection, face_mesh  # noqa: PLC0415

    return solution_base, face_mesh, face_detection


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (mediapipe's C++ start-up warnings bypass Python logging)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietGraph:
    """A mediapipe graph built, and first run, with native stderr silenced.

    Its calculators open on mediapipe's own threads while the graph is built and until the first ``process`` call
    returns; their start-up warnings can land anywhere in that span.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        with _native_stderr_silenced():
            self.graph = build()
        self.started = False

    def process(self, inputs: Any) -> Any:
        if self.started:
            return self.graph.process(inputs)
        with _native_stderr_silenced():
            out = self.graph.process(inputs)
        self.started = True
        return out

    def close(self) -> None:
        self.graph.close()


def _make_mesh(static: bool, max_faces: int, min_confidence: float) -> Any:
    """A mediapipe face-mesh graph that also returns its face detections (for the scores)."""
    solution_base, face_mesh, _ = _import_mediapipe()
    return _QuietGraph(lambda: solution_base.SolutionBase(
        binary_graph_path=face_mesh._BINARYPB_FILE_PATH,
        side_inputs={"num_faces": max_faces, "with_attention": True, "use_prev_landmarks": not static},
        calculator_params={
            "facedetectionshortrangecpu__facedetectionshortrange__facedetection__"
            "TensorsToDetectionsCalculator.min_score_thresh": min_confidence,
            "facelandmarkcpu__ThresholdingCalculator.threshold": 0.5,
        },
        outputs=["multi_face_landmarks", "face_detections"],
    ))


def _detection_box(detection: Any, width: int, height: int) -> np.ndarray:
    rb = detection.location_data.relative_bounding_box
    return np.array(
        [rb.xmin * width, rb.ymin * height, (rb.xmin + rb.width) * width, (rb.ymin + rb.height) * height],
        dtype=np.float32,
    )


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` (the last one flush with the end)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


class FaceDetector:
    """Detect faces and their 478 mesh landmarks with mediapipe (CPU, offline).

    ``video=False`` treats every image independently. ``video=True`` uses face-mesh tracking for
    consecutive frames of one video (faster and steadier); call ``reset()`` or use a new detector
    for another video. Images longer than DETECT_MAX_SIDE are downscaled for detection. Mediapipe's
    mesh only finds fairly large faces: when it finds fewer than ``max_faces`` (static mode) or none
    (video mode), the full-range face detector runs too (static mode, large image, still nothing: on
    overlapping tiles), and each detection box not already covered is re-cropped at full resolution
    and meshed on its own. Overlapping duplicates are dropped. Use as a context manager or call
    ``close()``; one detector must not be used from several threads at once.
    """

    def __init__(self, max_faces: int = 4, video: bool = False, min_confidence: float = 0.5) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.max_faces = int(max_faces)
        self.video = bool(video)
        self.min_confidence = float(min_confidence)
        self._mesh: Any = None
        self._crop_mesh: Any = None
        self._full_range: Any = None
        self._scores: list[tuple[np.ndarray, float]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the mediapipe graphs (the detector can be used again; they are rebuilt lazily)."""
        for name in ("_mesh", "_crop_mesh", "_full_range"):
            graph = getattr(self, name)
            if graph is not None:
                graph.close()
                setattr(self, name, None)
        self._scores = []

    def reset(self) -> None:
        """Forget the tracking state (start of a new video)."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
        self._scores = []

    # -- detection -----------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, sorted left-to-right by box centre x."""
        image = _as_rgb(image)
        h, w = image.shape[:2]
        factor = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = image
        if factor < 1.0:
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            log.debug("downscaled %dx%d -> %dx%d for face detection", w, h, *size)
        scale = np.array([w / small.shape[1], h / small.shape[0]], dtype=np.float32)

        faces = self._run_mesh(small, scale)
        if (not self.video and len(faces) < self.max_faces) or not faces:
            faces = self._fallback(image, small, scale, faces)
        faces = _dedupe(faces)[: self.max_faces]
        faces.sort(key=lambda f: float(f.center[0]))
        if self.video:
            self._scores = [(f.box, f.score) for f in faces]
        return faces

    def _run_mesh(self, small: np.ndarray, scale: np.ndarray) -> list[Face]:
        if self._mesh is None:
            self._mesh = _make_mesh(not self.video, self.max_faces, self.min_confidence)
        result = self._mesh.process({"image": small})
        if not result.multi_face_landmarks:
            return []
        sh, sw = small.shape[:2]
        detections = [
            (_detection_box(d, sw, sh) * np.tile(scale, 2), float(d.score[0]) if d.score else 1.0)
            for d in (result.face_detections or [])
        ]
        known = detections or self._scores  # tracked frames carry no detections: reuse the last scores
        faces = []
        for lms in result.multi_face_landmarks:
            pts = np.array([(p.x * sw, p.y * sh) for p in lms.landmark], dtype=np.float32) * scale
            face = _face_from_landmarks(pts, 1.0)
            overlaps = [(_overlap(face.box, box), score) for box, score in known]
            best = max(overlaps, default=(0.0, 1.0))
            face.score = best[1] if best[0] > 0.3 else 1.0
            faces.append(face)
        return faces

    def _full_range_boxes(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Full-range (model_selection=1) detection boxes in ``image`` pixels with their scores."""
        if self._full_range is None:
            _, _, face_detection = _import_mediapipe()
            self._full_range = _QuietGraph(lambda: face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self.min_confidence
            ))
        result = self._full_range.process(np.ascontiguousarray(image))
        h, w = image.shape[:2]
        return [(_detection_box(d, w, h), float(d.score[0]) if d.score else 1.0) for d in result.detections or []]

    def _tiled_boxes(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Full-range detection on overlapping tiles of the full-resolution image (for tiny faces)."""
        h, w = image.shape[:2]
        tile = max(TILE_MIN_SIDE // 2, round(max(h, w) / 3))
        stride = max(1, round(tile * 0.75))
        boxes = []
        for y in _tile_starts(h, tile, stride):
            for x in _tile_starts(w, tile, stride):
                for box, score in self._full_range_boxes(image[y : y + tile, x : x + tile]):
                    boxes.append((box + np.array([x, y, x, y], dtype=np.float32), score))
        return boxes

    def _fallback(self, image: np.ndarray, small: np.ndarray, scale: np.ndarray, faces: list[Face]) -> list[Face]:
        """Full-range detection boxes not covered by ``faces``, each meshed on a full-resolution re-crop.

        In static mode, when neither the mesh nor the whole-image full-range pass finds anything in a
        large image, the full-range detector also runs on overlapping tiles (faces down to ~2 % of the
        image width).
        """
        boxes = [(box * np.tile(scale, 2), score) for box, score in self._full_range_boxes(small)]
        h, w = image.shape[:2]
        if not boxes and not faces and not self.video and max(h, w) >= TILE_MIN_SIDE:
            boxes = self._tiled_boxes(image)
            log.debug("tiled full-range detection: %d candidate boxes", len(boxes))
        found = list(faces)
        for box, score in sorted(boxes, key=lambda b: -b[1]):
            if any(_overlap(box, f.box) > DUPLICATE_OVERLAP for f in found):
                continue
            face = self._mesh_crop(image, box, score)
            if face is not None:
                log.debug("fallback found a face at %s", np.round(face.box).astype(int).tolist())
                found.append(face)
        return found

    def _mesh_crop(self, image: np.ndarray, box: np.ndarray, score: float) -> Face | None:
        """Mesh the face inside detection ``box`` on an enlarged square crop of the full image."""
        side = FALLBACK_CONTEXT * float(max(box[2] - box[0], box[3] - box[1]))
        if side < 4:
            return None
        cbox = CropBox(float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2, side)
        out = int(min(FALLBACK_CROP_MAX, max(64, round(side))))
        patch, m = crop(image, cbox, out)
        if self._crop_mesh is None:
            self._crop_mesh = _make_mesh(True, 2, self.min_confidence)
        result = self._crop_mesh.process({"image": np.ascontiguousarray(patch)})
        if not result.multi_face_landmarks:
            return None
        best = None
        for lms in result.multi_face_landmarks:
            pts = np.array([(p.x * out, p.y * out) for p in lms.landmark], dtype=np.float32)
            dist = float(np.linalg.norm(pts.mean(axis=0) - out / 2))
            if best is None or dist < best[0]:
                best = (dist, pts)
        assert best is not None
        pts = transform_points(best[1], invert_affine(m))
        return _face_from_landmarks(pts, score)


_shared: dict[int, FaceDetector] = {}
_shared_lock = threading.Lock()


def detect_faces(image: np.ndarray, max_faces: int = 4) -> list[Face]:
    """Faces in one RGB uint8 (H, W, 3) image, left to right (a shared static detector, thread-safe)."""
    with _shared_lock:
        detector = _shared.get(max_faces)
        if detector is None:
            detector = _shared[max_faces] = FaceDetector(max_faces=max_faces)
        return detector.detect(image)


def choose_face(faces: list[Face], index: int | None = None, path: str | Path | None = None) -> Face:
    """Pick one face: ``index=None`` the largest; ``index=i`` the i-th from the left (negative: from the right)."""
    if not faces:
        raise NoFaceError("no face found in the image", path)
    if index is None:
        return max(faces, key=lambda f: f.area)
    if not -len(faces) <= index < len(faces):
        n = len(faces)
        raise InfpError(f"face index {index} asked for but only {n} face{'s' if n != 1 else ''} found", path)
    return faces[index]


def detect_face(image: np.ndarray | str | Path, index: int | None = None, path: str | Path | None = None) -> Face:
    """The one face to animate in ``image`` (an RGB array or an image file); errors name ``path``."""
    if isinstance(image, (str, Path)):
        from infp.io import read_image  # noqa: PLC0415  (keep `import infp.face` light)

        path = image if path is None else path
        image = read_image(image)
    faces = detect_faces(image, max_faces=max(4, (index + 1) if index is not None and index >= 0 else 4))
    return choose_face(faces, index, path)
