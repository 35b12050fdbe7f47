"""Read a DyConv corpus: the clip index and random access to a clip's frames, audio and landmarks."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from infp.errors import InfpError
from infp.io.atomic import atomic_output

log = logging.getLogger(__name__)

CACHE_DIR = "cache"


def nearest_valid_index(ok: np.ndarray) -> np.ndarray:
    """For a (T,) bool mask, the index of the nearest True entry for every position (ties: earlier)."""
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise ValueError("no valid entry")
    t = np.arange(len(ok))
    pos = np.clip(np.searchsorted(idx, t), 0, len(idx) - 1)
    left = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    right = idx[pos]
    return np.where(np.abs(t - left) <= np.abs(right - t), left, right)


class ClipEntry(NamedTuple):  # a tuple: 100k of them are made in a tenth of the time of dataclasses
    id: str
    recording: str
    split: str
    n_frames: int
    self_voice: bool
    self_speech: float = 0.0   # fraction of frames with speech on the clip's own channel
    other_speech: float = 0.0  # ... and on the partner's channel


class ClipIndex:
    """The clips of a corpus (from ``index.jsonl``), optionally one split.

    Only the index file is read (one JSON line per clip), no clip folder: an index of 100k clips opens in
    well under a second and takes about 35 MB (``benchmarks/index_scale.py``).
    """

    def __init__(self, root: str | Path, split: str | None = None, min_frames: int = 1) -> None:
        self.root = Path(root)
        path = self.root / "index.jsonl"
        if not path.is_file():
            raise InfpError("not a clip corpus (no index.jsonl; run `infp prepare` first)", self.root)
        entries = []
        loads = json.loads
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = loads(line)
                    if (split is None or r["split"] == split) and r["n_frames"] >= min_frames:
                        entries.append(ClipEntry(r["id"], r["recording"], r["split"], int(r["n_frames"]),
                                                 bool(r.get("self_voice", True)), float(r.get("self_speech", 0.0)),
                                                 float(r.get("other_speech", 0.0))))
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    raise InfpError(f"line {n}: not a clip entry ({type(e).__name__}: {e})", path) from e
        self.entries = entries
        self.n_frames = np.fromiter((e.n_frames for e in entries), dtype=np.int64, count=len(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> ClipEntry:
        return self.entries[i]

    def clip_dir(self, clip_id: str) -> Path:
        return self.root / "clips" / clip_id


def read_clip_frame(path: Path, index: int, cap_cache: dict | None = None) -> np.ndarray:
    """Frame ``index`` of a clip video as RGB uint8, by seeking (clips have a key frame every second)."""
    cap = cap_cache.get(path) if cap_cache is not None else None
    if cap is None:
        cap = cv2.VideoCapture(str(path))
        if cap_cache is not None:
            if len(cap_cache) > 8:
                cap_cache.pop(next(iter(cap_cache))).release()
            cap_cache[path] = cap
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    if not ok:
        raise InfpError(f"cannot read frame {index}", path)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class FrameCache:
    """Decoded clip frames as uint8 memory maps under ``<corpus>/cache`` (for small corpora: fast access).

    Each clip is decoded once to ``cache/frames_<size>/<id>.npy`` (T, S, S, 3); later reads are memory maps.
    """

    def __init__(self, root: str | Path, max_open: int = 64) -> None:
        self.root = Path(root)
        self.max_open = max_open  # memory maps kept open (a process may not map 100k files)
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()

    def frames(self, clip_id: str) -> np.ndarray:
        arr = self._maps.get(clip_id)
        if arr is not None:
            self._maps.move_to_end(clip_id)
            return arr
        video = self.root / "clips" / clip_id / "face.mp4"
        meta = json.loads((video.parent / "meta.json").read_text())
        path = self.root / CACHE_DIR / f"frames_{meta['size']}" / f"{clip_id}.npy"
        if not path.is_file():
            from infp.io import iter_frames

            with atomic_output(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                shape=(meta["n_frames"], meta["size"], meta["size"], 3))
                n = 0
                for n, frame in enumerate(iter_frames(video, fps=None)):
                    if n >= len(out):
                        break
                    out[n] = frame
                out.flush()
                del out
        arr = np.load(path, mmap_mode="r")
        self._maps[clip_id] = arr
        while len(self._maps) > self.max_open:
            self._maps.popitem(last=False)
        return arr
