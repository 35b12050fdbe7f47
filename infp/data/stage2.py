"""Stage-2 training windows: motion latents of a clip + its (self, other) audio, laid out like the stream.

Item for window start s (frames): ``x0`` (W, D) target offsets, ``prev`` (P, D) offsets of the frames
before (zeros before the clip start), ``has_prev`` (s > 0), ``self_audio`` / ``other_audio`` covering
frames [s - P - C, s + W) (zeros before the clip start; C = audio-encoder context), and the style
inputs: ``neutral`` (a random frame's latent of the same clip) and ``spread`` (the clip's per-dim std,
or zeros). Offsets are latents minus the clip's mean latent, divided by ``scale`` (per-dim std over
the training clips; computed from the corpus when not given).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from infp.constants import SAMPLES_PER_FRAME
from infp.data.clips import ClipIndex

ONE_SIDED = "one_sided"
ALL = "all"


def motion_stats(motion_dir: Path, clip_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mean over clips of the clip means, per-dim std of offsets from the clip means)."""
    offs, means = [], []
    for cid in clip_ids:
        lat = np.load(motion_dir / f"{cid}.npy")
        mean = lat.mean(axis=0)
        offs.append(lat - mean)
        means.append(mean)
    off = np.concatenate(offs)
    return np.mean(means, axis=0).astype(np.float32), np.maximum(off.std(axis=0), 1e-3).astype(np.float32)


class DyadicMotionWindows(Dataset):
    """Random windows of (latents, self audio, other audio) from clips whose ``self`` audio is the face's voice."""

    def __init__(self, root: str | Path, split: str | None, window: int, context: int, audio_context: int,
                 motion_dir: str | Path | None = None, scale: np.ndarray | None = None, samples_per_epoch: int = 4000,
                 subset: str = ALL, fixed_windows_per_clip: int = 0, p_spread: float = 0.5) -> None:
        root = Path(root)
        self.motion_dir = Path(motion_dir) if motion_dir is not None else root / "motion"
        index = ClipIndex(root, split, min_frames=window + 1)
        meta = {r["id"]: r for r in map(json.loads, (root / "index.jsonl").read_text().splitlines())}
        ids = [e.id for e in index.entries if e.self_voice and (self.motion_dir / f"{e.id}.npy").is_file()]
        if subset == ONE_SIDED:
            ids = [i for i in ids if min(meta[i]["self_speech"], meta[i]["other_speech"]) == 0]
        if not ids:
            raise ValueError(f"{root}: no clips with motion latents in split {split!r} ({subset})")
        self.ids = ids
        self.root = root
        self.window, self.context, self.audio_context = window, context, audio_context
        self.scale = scale if scale is not None else motion_stats(self.motion_dir, ids)[1]
        self.samples_per_epoch = samples_per_epoch
        self.p_spread = p_spread
        self.latents = {i: np.load(self.motion_dir / f"{i}.npy") for i in ids}
        self.weights = np.array([len(self.latents[i]) for i in ids], dtype=np.float64)
        self.weights /= self.weights.sum()
        self.fixed: list[tuple[str, int]] | None = None
        if fixed_windows_per_clip:
            self.fixed = [(i, int(s)) for i in ids
                          for s in np.linspace(0, len(self.latents[i]) - window, fixed_windows_per_clip).round()]

    def __len__(self) -> int:
        return len(self.fixed) if self.fixed is not None else self.samples_per_epoch

    def _audio(self, cid: str, name: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of a clip's wav, zeros outside it."""
        path = self.root / "clips" / cid / name
        lo = max(start, 0)
        data, _ = sf.read(str(path), start=lo, stop=max(stop, lo), dtype="float32")
        out = np.zeros(stop - start, dtype=np.float32)
        out[lo - start: lo - start + len(data)] = data
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.fixed is not None:
            cid, s = self.fixed[i]
            rng = np.random.default_rng(i)
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
            cid = self.ids[int(rng.choice(len(self.ids), p=self.weights))]
            s = int(rng.integers(0, len(self.latents[cid]) - self.window + 1))
        lat = self.latents[cid]
        mean = lat.mean(axis=0)
        off = (lat - mean) / self.scale
        w, p = self.window, self.context
        prev = np.zeros((p, lat.shape[1]), dtype=np.float32)
        lo = max(0, s - p)
        if s > 0:
            prev[p - (s - lo):] = off[lo:s]
        a0, a1 = (s - p - self.audio_context) * SAMPLES_PER_FRAME, (s + w) * SAMPLES_PER_FRAME
        spread = lat.std(axis=0) if rng.random() < self.p_spread else np.zeros(lat.shape[1], np.float32)
        return {
            "x0": torch.from_numpy(off[s:s + w].astype(np.float32)),
            "prev": torch.from_numpy(prev),
            "has_prev": torch.tensor(s > 0),
            "self_audio": torch.from_numpy(self._audio(cid, "self.wav", a0, a1)),
            "other_audio": torch.from_numpy(self._audio(cid, "other.wav", a0, a1)),
            "neutral": torch.from_numpy(lat[int(rng.integers(0, len(lat)))].astype(np.float32)),
            "spread": torch.from_numpy(spread.astype(np.float32)),
        }
