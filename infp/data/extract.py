"""Motion latents of a clip corpus: every clip's frames -> (T, D) float32, for stage-2 training.

The stage-1 motion encoder runs as the renderer runs it (channels-last, inference mode), so a clip's
latents are those the inference runtime would compute for the same frames.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from infp.constants import FPS
from infp.data.clips import ClipIndex, nearest_valid_index
from infp.errors import InfpError
from infp.face import motion_input
from infp.io import iter_frames
from infp.io.atomic import atomic_output, atomic_write_text
from infp.models.head_imitation import HeadImitationNet
from infp.models.images import to_tensor
from infp.models.pretrained import checkpoint_id

log = logging.getLogger(__name__)

MOTION_DIR = "motion"


def _nearest_valid(landmarks: np.ndarray) -> np.ndarray:
    """Indices that map each frame to the nearest frame with finite landmarks."""
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    if not ok.any():
        raise InfpError("clip has no frame with landmarks")
    return nearest_valid_index(ok)


class MotionEncoder:
    """The motion encoder of a stage-1 checkpoint: masked motion inputs (RGB uint8) -> latents (B, D)."""

    def __init__(self, net: HeadImitationNet, device: str | torch.device = "cpu") -> None:
        self.net = net.to(device).to(memory_format=torch.channels_last).eval()
        self.device = torch.device(device)
        self.size = net.image_size

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "MotionEncoder":
        return cls(HeadImitationNet.from_pretrained(folder), device)

    @torch.inference_mode()
    def encode(self, masked: list[np.ndarray]) -> torch.Tensor:
        return self.net.encode_motion(torch.stack([to_tensor(m) for m in masked]).to(self.device))


def clip_motion(runner: MotionEncoder, clip_dir: Path, batch: int = 32) -> np.ndarray:
    """(T, D) motion latents of one clip (frames without landmarks use the nearest frame's landmarks)."""
    meta = json.loads((clip_dir / "meta.json").read_text())
    lm = np.load(clip_dir / "landmarks.npy").astype(np.float32) * (runner.size / meta["size"])
    nearest = _nearest_valid(lm)
    size = (runner.size, runner.size)
    out: list[np.ndarray] = []
    chunk: list[np.ndarray] = []
    for t, frame in enumerate(iter_frames(clip_dir / "face.mp4", fps=None, size=size)):
        if t >= len(lm):
            break
        chunk.append(motion_input(frame, lm[nearest[t]]))
        if len(chunk) == batch:
            out.append(runner.encode(chunk).cpu().numpy())
            chunk = []
    if chunk:
        out.append(runner.encode(chunk).cpu().numpy())
    lat = np.concatenate(out).astype(np.float32)
    if len(lat) != meta["n_frames"]:
        raise InfpError(f"decoded {len(lat)} frames, meta says {meta['n_frames']}", clip_dir / "face.mp4")
    return lat


def extract_motion(corpus: str | Path, checkpoint: str | Path, out: str | Path | None = None,
                   device: str = "cpu", progress: bool = True) -> dict:
    """Write ``<out>/<clip id>.npy`` for every clip (skipping finished ones) and ``<out>/info.json``."""
    from tqdm import tqdm

    corpus, checkpoint = Path(corpus), Path(checkpoint)
    out = Path(out) if out is not None else corpus / MOTION_DIR
    index = ClipIndex(corpus)
    runner = MotionEncoder.from_pretrained(checkpoint, device)
    ckpt = checkpoint_id(checkpoint)
    info_path = out / "info.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old.get("checkpoint_id") != ckpt:
            raise InfpError(f"holds latents of another checkpoint ({old.get('checkpoint_id')}); choose another --out", out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(info_path, json.dumps({"checkpoint": str(checkpoint), "checkpoint_id": ckpt,
                                             "motion_dim": runner.net.motion_dim, "fps": FPS}, indent=1))
    done = skipped = 0
    failed: list[str] = []
    for e in tqdm(index.entries, unit="clip", disable=not progress, desc="extract-motion"):
        target = out / f"{e.id}.npy"
        if target.is_file():
            skipped += 1
            continue
        try:
            lat = clip_motion(runner, index.clip_dir(e.id))
        except InfpError as err:
            log.warning("skipped clip %s: %s", e.id, err)
            failed.append(e.id)
            continue
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, lat)
        done += 1
    return {"clips": len(index), "written": done, "already_done": skipped, "failed": failed, "out": str(out)}
