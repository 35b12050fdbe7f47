"""Video-driven reenactment: animate a portrait with the motion of a driving video (stage 1 alone)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from infp.constants import FPS
from infp.errors import MediaError
from infp.face import BoxSmoother, FaceDetector, crop, crop_box_from_face, motion_input, transform_points
from infp.io import count_frames, iter_frames, read_audio, video_info, write_video
from infp.io.outputs import check_video_output
from infp.runtime.portrait import load_portrait
from infp.runtime.stage1 import Stage1Runner

log = logging.getLogger(__name__)

def track_motion_inputs(frames: Iterable[np.ndarray], size: int, path: Path | None = None) -> Iterator[np.ndarray]:
    """Per frame of a talking-face video: the masked motion-encoder input of its (largest) face.

    Boxes are smoothed online; a frame without a face repeats the last input. Raises MediaError if the
    first second of the video has no face.
    """
    smoother = BoxSmoother(fps=FPS)
    last: np.ndarray | None = None
    pending = 0
    with FaceDetector(max_faces=1, video=True) as det:
        for frame in frames:
            faces = det.detect(frame)
            if faces:
                face = max(faces, key=lambda f: f.area)
                box = smoother.update(crop_box_from_face(face))
                face_crop, matrix = crop(frame, box, size, border="replicate")
                last = motion_input(face_crop, transform_points(face.landmarks, matrix))
                for _ in range(pending):
                    yield last
                pending = 0
                yield last
            elif last is not None:
                yield last
            else:
                pending += 1
                if pending > FPS:
                    raise MediaError("no face found in the first second of the driving video", path)


def reenact(
    runner: Stage1Runner,
    portrait: str | Path | np.ndarray,
    driving: str | Path,
    out: str | Path,
    relative: bool = True,
    paste: bool = False,
    face_index: int | None = None,
    batch: int = 8,
    progress: bool = True,
) -> Path:
    """Write ``out``: the portrait driven by ``driving``'s motion, with the driving video's audio."""
    from tqdm import tqdm

    driving = Path(driving)
    check_video_output(out, {"portrait": None if isinstance(portrait, np.ndarray) else portrait, "driving": driving})
    info = video_info(driving)
    pt = load_portrait(portrait, runner.size, face_index)
    src = runner.source(pt)
    audio = read_audio(driving).mean(axis=0) if info.has_audio else None
    inputs = track_motion_inputs(iter_frames(driving, fps=FPS), runner.size, driving)
    bar = tqdm(total=count_frames(info), unit="frame", disable=not progress, desc="reenact")

    def frames() -> Iterator[np.ndarray]:
        chunk: list[np.ndarray] = []
        for masked in inputs:
            chunk.append(masked)
            if len(chunk) == batch:
                yield from emit(chunk)
                chunk = []
        if chunk:
            yield from emit(chunk)

    state: dict[str, torch.Tensor] = {}

    def emit(chunk: list[np.ndarray]) -> Iterator[np.ndarray]:
        lat = runner.encode(chunk)
        kp = None
        if relative:
            if "m0" not in state:
                state["m0"] = lat[:1].clone()
            with torch.inference_mode():
                kp = runner.net.relative_keypoints(src, lat, state["m0"].expand_as(lat))
            lat = src.motion + (lat - state["m0"])
        for f in runner.render(src, lat, kp):
            bar.update(1)
            yield pt.paste(f) if paste else f

    try:
        return write_video(out, frames(), fps=FPS, audio=audio)
    finally:
        bar.close()
