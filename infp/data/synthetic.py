"""Synthetic corpora in the clip format, for scale benchmarks and tests of the data layer.

``write_synthetic_index`` writes only ``index.jsonl`` (no clip folders): enough to open a ``ClipIndex`` and to set
up the data modules, which read no clip folder. ``write_stage2_clips`` adds what stage-2 windows read:
latents in ``motion/`` and the two audio channels of each clip (random, not speech).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME


def write_synthetic_index(root: str | Path, n_clips: int, val_share: float = 0.05, seed: int = 0,
                frames: tuple[int, int] = (50, 500)) -> list[dict]:
    """``root/index.jsonl`` with ``n_clips`` entries (two parties per recording; ``val_share`` of the
    recordings in the val split; one-sided and dyadic clips); returns the rows."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_frames = rng.integers(frames[0], frames[1] + 1, size=n_clips)
    speech = rng.random((n_clips, 2)).round(4)
    speech[rng.random(n_clips) < 0.3, rng.integers(0, 2)] = 0.0  # some one-sided clips
    rows = []
    for i in range(n_clips):
        rec = i // 2
        rows.append({"id": f"rec{rec:06d}__{'ab'[i % 2]}__000", "recording": f"rec{rec:06d}", "party": "ab"[i % 2],
                     "split": "val" if (rec * 2654435761 % 1000) < val_share * 1000 else "train",
                     "n_frames": int(n_frames[i]), "face_ratio": 1.0, "self_speech": float(speech[i, 0]),
                     "other_speech": float(speech[i, 1]), "self_voice": True})
    with open(root / "index.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def write_stage2_clips(root: str | Path, rows: list[dict], motion_dim: int = 8, seed: int = 0,
                       motion_dir: str = "motion", audio: bool = True) -> Path:
    """For each row: ``<motion_dir>/<id>.npy`` (T, D) float32 latents and ``clips/<id>/{self,other}.wav``."""
    import soundfile as sf

    root = Path(root)
    out = root / motion_dir
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for r in rows:
        t = r["n_frames"]
        lat = np.cumsum(rng.normal(0, 0.1, (t, motion_dim)), axis=0).astype(np.float32)
        np.save(out / f"{r['id']}.npy", lat)
        if audio:
            d = root / "clips" / r["id"]
            d.mkdir(parents=True, exist_ok=True)
            for name in ("self.wav", "other.wav"):
                sf.write(str(d / name), (rng.normal(0, 0.05, t * SAMPLES_PER_FRAME)).astype(np.float32), SAMPLE_RATE)
    return out
