"""Stage-1 training pairs: (source frame, driving frame) of one clip, with the motion-encoder inputs.

Items: source (3, S, S), source_masked (3, S, S), driving (3, S, S), driving_masked (3, S, S) in
[-1, 1]. The driving frame's masked input is colour- and scale-jittered during training so that the
motion latent cannot rely on skin tone or face size (identity cues).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from infp.data.clips import ClipIndex, FrameCache, read_clip_frame
from infp.data.sampling import sample_rng
from infp.face.masks import motion_input, region_mask
from infp.models.images import to_tensor
from infp.models.keypoints import normalise_keypoints

log = logging.getLogger(__name__)


def jitter_masked(masked: np.ndarray, rng: np.random.Generator, scale: float = 0.06, gain: float = 0.2) -> np.ndarray:
    """Cross-identity augmentation: per-channel colour gain and a small zoom about the centre."""
    out = masked.astype(np.float32) * rng.uniform(1 - gain, 1 + gain, size=3)[None, None, :]
    s = rng.uniform(1 - scale, 1 + scale)
    h, w = masked.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
    out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.clip(out, 0, 255).astype(np.uint8)


class ClipSource:
    """Frames and landmarks of the clips of a corpus, resized to ``size``."""

    def __init__(self, root: str | Path, split: str | None, size: int, cache_frames: bool = True) -> None:
        self.index = ClipIndex(root, split, min_frames=2)
        if len(self.index) == 0:
            raise ValueError(f"{root}: no clips in split {split!r}")
        self.size = size
        self.cache = FrameCache(root) if cache_frames else None
        self._caps: dict = {}
        self._landmarks: dict[str, np.ndarray] = {}

    def landmarks(self, clip_id: str) -> np.ndarray:
        lm = self._landmarks.get(clip_id)
        if lm is None:
            d = self.index.clip_dir(clip_id)
            meta = json.loads((d / "meta.json").read_text())
            lm = np.load(d / "landmarks.npy").astype(np.float32) * (self.size / meta["size"])
            if len(self._landmarks) >= 256:  # bounded: the landmarks of a large corpus do not fit in memory
                self._landmarks.pop(next(iter(self._landmarks)))
            self._landmarks[clip_id] = lm
        return lm

    def valid_frames(self, clip_id: str) -> np.ndarray:
        return np.flatnonzero(np.isfinite(self.landmarks(clip_id)).all(axis=(1, 2)))

    def frame(self, clip_id: str, t: int) -> np.ndarray:
        if self.cache is not None:
            img = np.array(self.cache.frames(clip_id)[t])  # copy out of the read-only memory map
        else:
            img = read_clip_frame(self.index.clip_dir(clip_id) / "face.mp4", int(t), self._caps)
        if img.shape[0] != self.size:
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return img

    def item(self, clip_id: str, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(frame, masked motion input) of frame ``t``."""
        img = self.frame(clip_id, t)
        return img, motion_input(img, self.landmarks(clip_id)[t])


class HeadImitationPairs(Dataset):
    """Random (source, driving) pairs from the same clip (train), or fixed pairs (validation)."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        size: int = 256,
        samples_per_epoch: int = 2000,
        augment: bool = True,
        fixed_pairs_per_clip: int = 0,
        cache_frames: bool = True,
        mirror: bool = True,
    ) -> None:
        self.src = ClipSource(root, split, size, cache_frames)
        self.samples_per_epoch = samples_per_epoch
        self.augment = augment
        self.mirror = mirror
        self.pairs_per_clip = fixed_pairs_per_clip  # > 0: fixed pairs, worked out when read (no clip read here)
        weights = self.src.index.n_frames.astype(np.float64)
        self.weights = weights / weights.sum()

    def __len__(self) -> int:
        return len(self.src.index) * self.pairs_per_clip if self.pairs_per_clip > 0 else self.samples_per_epoch

    def fixed_pair(self, i: int) -> tuple[str, int, int]:
        """Validation pair ``i``: a clip's first frame with landmarks drives evenly spaced later frames."""
        k = self.pairs_per_clip
        clip = self.src.index[i // k].id
        valid = self.src.valid_frames(clip)
        if len(valid) == 0:
            raise ValueError(f"clip {clip}: no frame with landmarks")
        t = np.linspace(valid[len(valid) // 8], valid[-1], k).round().astype(int)[i % k]
        return clip, int(valid[0]), int(t)

    def _random_pair(self, rng: np.random.Generator) -> tuple[str, int, int]:
        for _ in range(20):
            e = self.src.index[int(rng.choice(len(self.weights), p=self.weights))]
            valid = self.src.valid_frames(e.id)
            if len(valid) >= 2:
                s, d = rng.choice(valid, size=2, replace=False)
                return e.id, int(s), int(d)
        raise RuntimeError("no clip with two frames that have landmarks")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.pairs_per_clip > 0:
            clip, s, d = self.fixed_pair(i)
            rng = None
        else:
            rng = sample_rng()  # distinct per DataLoader worker and per distributed rank
            clip, s, d = self._random_pair(rng)
        src, src_m = self.src.item(clip, s)
        drv, drv_m = self.src.item(clip, d)
        lm = self.src.landmarks(clip)
        region = region_mask(lm[d], self.src.size, dilate=0.06)  # eyes + lips of the target
        kp_s, kp_d = normalise_keypoints(lm[s], self.src.size), normalise_keypoints(lm[d], self.src.size)
        if self.augment and rng is not None:
            drv_m = jitter_masked(drv_m, rng)
            # mirroring would swap the left/right meaning of the keypoints: only without keypoint supervision
            if self.mirror and rng.random() < 0.5:
                src, src_m, drv, drv_m, region = (np.ascontiguousarray(a[:, ::-1]) for a in (src, src_m, drv, drv_m, region))
        return {"source": to_tensor(src), "source_masked": to_tensor(src_m),
                "driving": to_tensor(drv), "driving_masked": to_tensor(drv_m),
                "driving_region": torch.from_numpy(np.array(region, dtype=np.float32))[None],
                "source_kp": torch.from_numpy(kp_s), "driving_kp": torch.from_numpy(kp_d)}
