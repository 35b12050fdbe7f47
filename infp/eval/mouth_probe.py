"""A linear read-out of mouth opening from stage-1 motion latents, fitted on a corpus.

Used to measure generated motion without rendering: ridge regression of the landmark mouth opening
(see ``infp.face.landmarks.mouth_opening``) on the clip latents of ``infp extract-motion``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infp.data.clips import ClipIndex
from infp.face.landmarks import mouth_opening


@dataclass
class MouthProbe:
    weights: np.ndarray  # (D,)
    bias: float
    r2: float  # on the clips it was fitted on
    spread: float  # std of the real mouth opening on those clips

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        """(T, D) -> (T,) predicted mouth opening."""
        return latents @ self.weights + self.bias


def fit_mouth_probe(corpus: str | Path, motion_dir: str | Path, split: str | None = "train", ridge: float = 1e-2) -> MouthProbe:
    corpus, motion_dir = Path(corpus), Path(motion_dir)
    xs, ys = [], []
    for e in ClipIndex(corpus, split).entries:
        f = motion_dir / f"{e.id}.npy"
        if not f.is_file():
            continue
        lat = np.load(f)
        lm = np.load(corpus / "clips" / e.id / "landmarks.npy").astype(np.float32)
        ok = np.isfinite(lm).all(axis=(1, 2))
        xs.append(lat[ok])
        ys.append(mouth_opening(lm[ok]))
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    mx, my = x.mean(axis=0), y.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    pred = xc @ w + my
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - my) ** 2)
    return MouthProbe(w.astype(np.float32), float(my - mx @ w), float(r2), float(y.std()))
