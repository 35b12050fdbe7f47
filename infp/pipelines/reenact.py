"""Video-driven reenactment: animate a portrait with the motion of a driving video (stage 1 alone)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from infp.constants import FPS
from infp.data.stage1 import to_image, to_tensor
from infp.errors import MediaError
from infp.face import BoxSmoother, FaceDetector, crop, crop_box_from_face, motion_input, transform_points
from infp.io import count_frames, iter_frames, read_audio, video_info, write_video
from infp.io.outputs import check_video_output
from infp.models.head_imitation import HeadImitationNet, SourceCache
from infp.pipelines.portrait import Portrait, load_portrait

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


class Stage1Runner:
    """Tensor-level wrapper around a HeadImitationNet: portraits in, latents in, frames out."""

    def __init__(self, net: HeadImitationNet, device: str | torch.device = "cpu", precision: str = "fp32") -> None:
        """``precision="bf16"``: render (flow, warp, decoder) under bfloat16 autocast — on CPUs with
        AMX / AVX512-BF16 and on recent GPUs about twice as fast; portraits and motion latents stay fp32."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        # channels-last convolutions are faster on CPU (and no slower on GPU)
        self.net = net.to(device).to(memory_format=torch.channels_last).eval()
        self.device = torch.device(device)
        self.size = net.image_size
        self.precision = precision

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> "Stage1Runner":
        return cls(HeadImitationNet.from_pretrained(folder), device, precision)

    @torch.inference_mode()
    def source(self, portrait: Portrait) -> SourceCache:
        img = to_tensor(portrait.crop)[None].to(self.device).contiguous(memory_format=torch.channels_last)
        masked = to_tensor(portrait.masked)[None].to(self.device).contiguous(memory_format=torch.channels_last)
        return self.net.prepare_source(img, masked)

    @torch.inference_mode()
    def encode(self, masked: list[np.ndarray]) -> torch.Tensor:
        """Motion latents (B, D) of masked motion-encoder inputs."""
        return self.net.encode_motion(torch.stack([to_tensor(m) for m in masked]).to(self.device))

    @torch.inference_mode()
    def frames(self, source: SourceCache, latents: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        """Frames (B, 3, S, S) float32 in [-1, 1] for latents (B, D) (and optionally keypoints (B, K, 2) to
        warp with), at the runner's precision."""
        kp = None if keypoints is None else keypoints.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.net.render(source, latents.to(self.device), kp_drv=kp).float()

    @torch.inference_mode()
    def render(self, source: SourceCache, latents: torch.Tensor, keypoints: torch.Tensor | None = None) -> list[np.ndarray]:
        """Frames (S, S, 3) uint8 for latents (B, D) (and optionally keypoints (B, K, 2) to warp with)."""
        return [to_image(f) for f in self.frames(source, latents, keypoints)]


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
        m0 = None
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
