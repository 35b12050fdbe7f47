"""Stage-2 training windows: motion latents of a clip + its (self, other) audio, laid out like the stream.

Item for window start s (frames): ``x0`` (W, D) target offsets, ``prev`` (P, D) offsets of the frames
before (zeros before the clip start), ``has_prev`` (s > 0), ``self_audio`` / ``other_audio`` covering
frames [s - P - C, s + W) (zeros before the clip start; C = audio-encoder context), and the style
inputs: ``rest`` (the clip's rest latent, see below) and ``spread`` (the clip's per-dim std, or
zeros). Offsets are latents minus the clip's *rest* latent (the mean latent of its frames
with the most closed mouth, by the clip's landmarks), divided by ``scale`` (per-dim RMS of those offsets
over the training clips, or a fixed random subset of at most ``stats_clips`` of them; computed when not
given). At inference the portrait's latent takes the rest latent's place: a still face, mouth closed.
Offsets from the clip *mean* would not do: in a clip where the face talks throughout, the mean has the
mouth half open, talking becomes a zero offset, and talking and listening look alike to the model.

With ``controls``, items carry ``controls`` (2, K): the control values (``infp.face.expression``) of the
face around the window, measured from the clip's landmarks over ``CONTROL_SPAN`` frames centred on it,
separately over its speaking and its listening frames (by the clip's own-channel VAD), NaN where too few
frames of a kind; raw levels are mapped to 0..1 by their 5th / 95th percentiles over the training clips
(``control_range``, computed when not given).

Nothing is loaded up front: clip lengths come from the index, the latents folder is listed once, and a
clip's latents are memory-mapped when first needed (at most ``max_open`` kept open per process).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from infp.constants import SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.data.clips import ClipIndex
from infp.data.sampling import sample_rng
from infp.face.expression import LEVEL_SPAN as CONTROL_SPAN  # frames around a window that give its control values

ONE_SIDED = "one_sided"
ALL = "all"


REST_SHARE = 0.2
"""The share of a clip's frames, those with the most closed mouth, that make its rest latent."""


def rest_latent(lat: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """(T, D) latents + (T, 478, 2) landmarks (or None) -> (D,) mean latent of the most-closed-mouth frames
    (the clip mean without landmarks)."""
    from infp.face.landmarks import mouth_opening

    if landmarks is None:
        return np.asarray(lat, dtype=np.float32).mean(axis=0)
    n = min(len(lat), len(landmarks))
    opening = mouth_opening(np.asarray(landmarks[:n], dtype=np.float32))
    ok = np.flatnonzero(np.isfinite(opening))
    if len(ok) == 0:
        return np.asarray(lat, dtype=np.float32).mean(axis=0)
    k = max(1, int(round(REST_SHARE * len(ok))))
    rest = ok[np.argsort(opening[ok], kind="stable")[:k]]
    return np.asarray(lat, dtype=np.float32)[rest].mean(axis=0)


def clip_landmarks(root: Path, clip_id: str) -> np.ndarray | None:
    path = root / "clips" / clip_id / "landmarks.npy"
    return np.load(path) if path.is_file() else None


def own_voice(root: Path, clip_id: str) -> bool:
    """Whether the clip's ``self`` audio is the face's own voice, lip-synchronous (its recording's meta
    does not say ``lip_sync: false``)."""
    import json

    path = root / "clips" / clip_id / "meta.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text()).get("meta") or {}
    return bool(meta.get("lip_sync", True))


def motion_stats(motion_dir: Path, clip_ids: list[str], root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean over clips of the rest latents, per-dim RMS of offsets from them); ``root``: the corpus,
    for the clips' landmarks (without it, rest = clip mean)."""
    offs, refs = [], []
    for cid in clip_ids:
        lat = np.load(motion_dir / f"{cid}.npy")
        ref = rest_latent(lat, None if root is None else clip_landmarks(root, cid))
        offs.append(lat - ref)
        refs.append(ref)
    off = np.concatenate(offs)
    rms = np.sqrt(np.mean(off.astype(np.float64) ** 2, axis=0))
    return np.mean(refs, axis=0).astype(np.float32), np.maximum(rms, 1e-3).astype(np.float32)


def stats_subset(clip_ids: list[str], max_clips: int) -> list[str]:
    """All clips, or a fixed random subset of ``max_clips`` of them (the same for the same corpus)."""
    if len(clip_ids) <= max_clips:
        return list(clip_ids)
    pick = np.random.default_rng(0).choice(len(clip_ids), size=max_clips, replace=False)
    return [clip_ids[i] for i in np.sort(pick)]


class ClipControls:
    """Per-clip expression measures, rest values and own-speech frames; window control levels from them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def clip(self, cid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if cid not in self._cache:
            from infp.face.expression import frame_measures, rest_measures

            lms = clip_landmarks(self.root, cid)
            vad_path = self.root / "clips" / cid / "vad.npy"
            if lms is None or not vad_path.is_file():
                self._cache[cid] = None
            else:
                lms = np.asarray(lms, dtype=np.float32)
                m = frame_measures(lms)
                vad = np.load(vad_path)
                n = min(len(m), len(vad))
                self._cache[cid] = (m[:n], rest_measures(m[:n], lms[:n]), vad[:n, 0].astype(np.float32) > SPEECH_THRESHOLD)
        return self._cache[cid]

    def raw(self, cid: str, centre: int, span: int = CONTROL_SPAN) -> np.ndarray:
        """(2, K) raw levels of the frames [centre - span/2, centre + span/2) (NaN: too few of a kind)."""
        from infp.face.expression import CONTROL_NAMES, KINDS, levels

        data = self.clip(cid)
        if data is None:
            return np.full((len(KINDS), len(CONTROL_NAMES)), np.nan, np.float32)
        m, rest, speaking = data
        lo = max(0, min(centre - span // 2, len(m) - span))
        return levels(m[lo:lo + span], rest, speaking[lo:lo + span])

    def range(self, clip_ids: list[str], n_frames: dict[str, int], stride: int = 25) -> np.ndarray:
        """(2, K): the 5th and 95th percentile of window levels over the clips (both kinds together)."""
        from infp.face.expression import CONTROL_NAMES

        raws = [self.raw(cid, c) for cid in clip_ids for c in range(0, max(1, n_frames[cid]), stride)]
        flat = np.concatenate(raws) if raws else np.full((1, len(CONTROL_NAMES)), np.nan, np.float32)
        lo, hi = np.nanpercentile(flat, 5, axis=0), np.nanpercentile(flat, 95, axis=0)
        bad = ~np.isfinite(lo) | ~np.isfinite(hi) | (hi - lo < 1e-6)
        lo, hi = np.where(bad, 0.0, lo), np.where(bad, 1.0, hi)
        return np.stack([lo, hi]).astype(np.float32)


def latent_dim(motion_dir: Path, clip_id: str) -> int:
    """D of the (T, D) latents on disk (reads one file's header)."""
    return int(np.load(motion_dir / f"{clip_id}.npy", mmap_mode="r").shape[1])


class DyadicMotionWindows(Dataset):
    """Random windows of (latents, self audio, other audio) from clips whose ``self`` audio is the face's voice."""

    def __init__(self, root: str | Path, split: str | None, window: int, context: int, audio_context: int,
                 motion_dir: str | Path | None = None, scale: np.ndarray | None = None, samples_per_epoch: int = 4000,
                 subset: str = ALL, fixed_windows_per_clip: int = 0, p_spread: float = 0.5,
                 stats_clips: int = 1000, max_open: int = 256, index: ClipIndex | None = None,
                 phones: bool = False, controls: bool = False, control_range: np.ndarray | None = None,
                 own_voice_weight: float = 1.0) -> None:
        root = Path(root)
        self.motion_dir = Path(motion_dir) if motion_dir is not None else root / "motion"
        if index is None:
            index = ClipIndex(root, split, min_frames=window + 1)
        on_disk = {n[:-4] for n in os.listdir(self.motion_dir) if n.endswith(".npy")} if self.motion_dir.is_dir() else set()
        entries = [e for e in index.entries if e.self_voice and e.n_frames >= window + 1 and e.id in on_disk
                   and (split is None or e.split == split)]
        if subset == ONE_SIDED:
            entries = [e for e in entries if min(e.self_speech, e.other_speech) == 0]
        if not entries:
            raise ValueError(f"{root}: no clips with motion latents in {self.motion_dir} in split {split!r} ({subset})")
        self.ids = [e.id for e in entries]
        self._speaks = {e.id for e in entries if e.self_speech > 0}  # clips with speech on `self`
        self.n_frames = np.array([e.n_frames for e in entries], dtype=np.int64)
        self.root = root
        self.window, self.context, self.audio_context = window, context, audio_context
        self.motion_dim = latent_dim(self.motion_dir, self.ids[0])
        if scale is None:
            scale = motion_stats(self.motion_dir, stats_subset(self.ids, stats_clips), root)[1]
        self.scale = scale
        self.samples_per_epoch = samples_per_epoch
        self.p_spread = p_spread
        self.max_open = max_open
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()
        self._rest: dict[str, np.ndarray] = {}  # (D,) per clip, small
        self._mouth: dict[str, np.ndarray] = {}  # (T,) standardised mouth opening per clip (NaN: no target)
        if not (np.isfinite(own_voice_weight) and own_voice_weight > 0):
            raise ValueError(f"own_voice_weight must be a positive number, not {own_voice_weight}")
        # clips are drawn in proportion to their frames; those whose face speaks its own voice (real lip
        # timing *and* the words, not dubbed speech) own_voice_weight times as often
        self.own_voice = np.array([cid in self._speaks and own_voice(root, cid) for cid in self.ids])
        weights = self.n_frames.astype(np.float64) * np.where(self.own_voice, own_voice_weight, 1.0)
        self.weights = weights / weights.sum()
        self._cdf = np.cumsum(self.weights)
        self._cdf /= self._cdf[-1]
        self.fixed_per_clip = fixed_windows_per_clip
        self.phones = phones
        self._phones: dict[tuple[str, str], np.ndarray] = {}
        self._labeller = None
        self.controls = controls
        self._controls = ClipControls(root)
        if controls and control_range is None:
            sub = stats_subset(self.ids, stats_clips)
            lengths = dict(zip(self.ids, (int(n) for n in self.n_frames)))
            control_range = self._controls.range(sub, lengths)
        self.control_range = control_range

    def __len__(self) -> int:
        return len(self.ids) * self.fixed_per_clip if self.fixed_per_clip else self.samples_per_epoch

    def latents(self, cid: str) -> np.ndarray:
        """(T, D) latents of a clip (memory-mapped)."""
        lat = self._open.get(cid)
        if lat is None:
            lat = np.load(self.motion_dir / f"{cid}.npy", mmap_mode="r")
            self._open[cid] = lat
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(cid)
        return lat

    def rest(self, cid: str) -> np.ndarray:
        """(D,) rest latent of a clip (see ``rest_latent``)."""
        ref = self._rest.get(cid)
        if ref is None:
            ref = self._rest[cid] = rest_latent(self.latents(cid), clip_landmarks(self.root, cid))
        return ref

    def mouth(self, cid: str) -> np.ndarray:
        """(T,) the clip's mouth opening standardised over the clip, the target of the audio lip head;
        all NaN where ``self`` has no speech or is not the face's own voice (a clip whose meta says
        ``lip_sync: false``, e.g. a dubbed one), or without landmarks."""
        out = self._mouth.get(cid)
        if out is None:
            out = np.full(len(self.latents(cid)), np.nan, dtype=np.float32)
            lms = clip_landmarks(self.root, cid)
            if lms is not None and cid in self._speaks and own_voice(self.root, cid):
                from infp.face.landmarks import mouth_opening

                o = mouth_opening(np.asarray(lms, dtype=np.float32)).astype(np.float64)
                sd = float(np.nanstd(o)) if np.isfinite(o).sum() > 1 else 0.0
                if sd > 1e-6:
                    n = min(len(out), len(o))
                    out[:n] = ((o[:n] - np.nanmean(o)) / sd).astype(np.float32)
            self._mouth[cid] = out
        return out

    def own_voice_tracks(self):
        """(mono ``self`` audio, (T,) standardised mouth opening) of every clip whose face speaks its own
        voice: what the lip reader (``infp.audio.lipreader``) is fitted on and checked against."""
        for cid, own in zip(self.ids, self.own_voice):
            mouth = self.mouth(cid) if own else None
            if mouth is None or not np.isfinite(mouth).any():
                continue
            data, _ = sf.read(str(self.root / "clips" / cid / "self.wav"), dtype="float32")
            yield data.reshape(len(data), -1).mean(axis=1), mouth

    def own_voice_offsets(self):
        """((T, D) latent offsets from the clip's rest in units of ``scale``, (T,) standardised mouth opening,
        (D,) rest latent) of every clip whose face speaks its own voice: what the mouth axis of lip following
        is fitted on."""
        for cid, own in zip(self.ids, self.own_voice):
            mouth = self.mouth(cid) if own else None
            if mouth is None or not np.isfinite(mouth).any():
                continue
            lat = np.asarray(self.latents(cid), dtype=np.float64)
            rest = self.rest(cid)
            yield (lat - rest) / self.scale, mouth, rest

    def measure_offsets(self):
        """((T, D) latent offsets from the clip's rest in units of ``scale``, (T, 6) face measures relative to
        the face at rest) of every clip with landmarks: what the measure axes of control steering are fitted
        on (``infp.models.steering.fit_measure_axes``)."""
        for cid in self.ids:
            data = self._controls.clip(cid)
            if data is None:
                continue
            m, rest_m, _ = data
            lat = np.asarray(self.latents(cid), dtype=np.float64)
            n = min(len(lat), len(m))
            yield (lat[:n] - self.rest(cid)) / self.scale, m[:n] - rest_m

    def phone_labels(self, cid: str, channel: str) -> np.ndarray:
        """(T,) phone ids of a clip's ``self`` or ``other`` audio (``infp.audio.phones``), computed once and
        kept in ``<corpus>/phones/`` (a cache: delete it freely)."""
        key = (cid, channel)
        out = self._phones.get(key)
        if out is None:
            path = self.root / "phones" / f"{cid}.{channel}.npy"
            n = len(self.latents(cid))
            if path.is_file():
                out = np.load(path)
            else:
                from infp.audio.phones import PhoneLabeller
                from infp.io.atomic import atomic_output

                if self._labeller is None:
                    self._labeller = PhoneLabeller()
                data, _ = sf.read(str(self.root / "clips" / cid / f"{channel}.wav"), dtype="float32")
                out = self._labeller(data.reshape(len(data), -1).mean(axis=1), n)
                with atomic_output(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, out)
            self._phones[key] = out
        return out

    def fixed_window(self, i: int) -> tuple[str, int]:
        """Validation window ``i``: evenly spaced starts over each clip."""
        k = self.fixed_per_clip
        c = i // k
        starts = np.linspace(0, int(self.n_frames[c]) - self.window, k).round()
        return self.ids[c], int(starts[i % k])

    def _audio(self, cid: str, name: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of a clip's wav, zeros outside it."""
        path = self.root / "clips" / cid / name
        lo = max(start, 0)
        data, _ = sf.read(str(path), start=lo, stop=max(stop, lo), dtype="float32")
        out = np.zeros(stop - start, dtype=np.float32)
        out[lo - start: lo - start + len(data)] = data
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.fixed_per_clip:
            cid, s = self.fixed_window(i)
            rng = np.random.default_rng(i)
        else:
            rng = sample_rng()
            # the same draws as rng.choice(len(ids), p=weights), without an O(clips) pass per sample
            c = int(np.searchsorted(self._cdf, rng.random(), side="right"))
            cid = self.ids[c]
            s = int(rng.integers(0, int(self.n_frames[c]) - self.window + 1))
        lat = np.asarray(self.latents(cid), dtype=np.float32)
        ref = self.rest(cid)
        off = (lat - ref) / self.scale
        w, p = self.window, self.context
        prev = np.zeros((p, lat.shape[1]), dtype=np.float32)
        lo = max(0, s - p)
        if s > 0:
            prev[p - (s - lo):] = off[lo:s]
        a0, a1 = (s - p - self.audio_context) * SAMPLES_PER_FRAME, (s + w) * SAMPLES_PER_FRAME
        mouth = np.full(p + w, np.nan, dtype=np.float32)
        m = self.mouth(cid)
        mouth[p - (s - lo):] = m[lo:s + w]
        spread = lat.std(axis=0) if rng.random() < self.p_spread else np.zeros(lat.shape[1], np.float32)
        item = {
            "x0": torch.from_numpy(off[s:s + w].astype(np.float32)),
            "prev": torch.from_numpy(prev),
            "has_prev": torch.tensor(s > 0),
            "self_audio": torch.from_numpy(self._audio(cid, "self.wav", a0, a1)),
            "other_audio": torch.from_numpy(self._audio(cid, "other.wav", a0, a1)),
            # the clip's rest latent: the style's anchor (the portrait's latent at inference) and the origin of
            # the offsets (x0 * scale + rest = the latents)
            "rest": torch.from_numpy(ref.astype(np.float32)),
            "spread": torch.from_numpy(spread.astype(np.float32)),
            # frames [s - P, s + W): the face's standardised mouth opening where its own voice is on `self`
            "mouth": torch.from_numpy(mouth),
        }
        if self.controls:
            from infp.face.expression import normalise

            raw = self._controls.raw(cid, s + w // 2)
            item["controls"] = torch.from_numpy(normalise(raw, *self.control_range).astype(np.float32))
        if self.phones:  # frames [s - P, s + W) of each channel; -1 before the clip starts
            for channel in ("self", "other"):
                labels = np.full(p + w, -1, dtype=np.int64)
                labels[p - (s - lo):] = self.phone_labels(cid, channel)[lo:s + w]
                item[f"{channel}_phones"] = torch.from_numpy(labels)
        return item
