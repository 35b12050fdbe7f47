"""Audio-video offset of talking-face recordings, found from the recordings themselves.

Collected footage is not always lip-synchronous: a re-encode, a cut or an edit can shift the voice
by a few frames, and a clip whose voice was laid over other footage has no sync at all. The loudness
envelope is too weak a witness for this (its correlation with the mouth peaks at lags all over
±10 frames on clips that are in sync), so the check learns what the mouth should do from the audio:

1. a ridge regression from a short log-mel context (``PAST`` frames back, ``AHEAD`` ahead) to the
   per-clip standardised mouth opening is fitted on all the clips of the set but one
   (leave-one-out: a clip never judges itself);
2. the clip's predicted mouth is correlated with its real mouth at every lag within ±``MAX_LAG``
   frames; the best lag is the offset.

Decision (:func:`decide`): a clip whose best correlation is below ``MIN_PEAK`` shows no audio-lip
relation and is dropped; a clip whose best lag is ``MIN_SHIFT`` frames or more away, and beats lag 0
by at least ``MIN_GAIN``, is shifted by it when that peak reaches ``MIN_SHIFT_PEAK`` and dropped
otherwise (a weak peak far from zero is as likely chance as an offset: a voice laid over another
take of the same face peaks at about 0.2 somewhere within ±10 frames); a peak at the edge of the search
(±``MAX_LAG``) locates no offset and drops the clip too; any other clip is kept as it is. No model ships with
this: it needs only the clips being checked (at least ``MIN_CLIPS``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from infp.audio.lipreader import pearson
from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME

MEL_HOP = 160
MEL_WIN = 400
N_MELS = 80
PAST = 8  # video frames of audio context before the frame
AHEAD = 3  # ... and after it
MAX_LAG = 10  # frames searched either way (±400 ms)
MIN_PEAK = 0.15
MIN_SHIFT = 3
MIN_GAIN = 0.1
MIN_SHIFT_PEAK = 0.3
MIN_CLIPS = 4
RIDGE = 1e3


def mel_frames(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Mono 16 kHz audio -> (n_frames, 4 * N_MELS): the four 10 ms log-mel frames of each 40 ms video
    frame side by side, mean-normalised over the recording (frames beyond the audio are repeated)."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=MEL_WIN, win_length=MEL_WIN, hop_length=MEL_HOP,
                                               n_mels=N_MELS, center=False)
    need = n_frames * SAMPLES_PER_FRAME
    a = np.zeros(need, dtype=np.float32)
    a[: min(need, len(audio))] = np.asarray(audio, dtype=np.float32)[:need]
    x = torch.from_numpy(np.pad(a, (MEL_WIN - MEL_HOP, 0)))[None]
    with torch.no_grad():
        m = torch.log(mel(x)[0] + 1e-6).T.numpy().astype(np.float64)  # (4 n_frames, N_MELS)
    m = m[: 4 * n_frames].reshape(n_frames, 4 * N_MELS)
    return m - m.mean(axis=0)


def context_stack(feats: np.ndarray, past: int = PAST, ahead: int = AHEAD) -> np.ndarray:
    """(T, F) -> (T, (past + 1 + ahead) F): each frame with its neighbours (edges repeated)."""
    t = len(feats)
    padded = np.pad(feats, ((past, ahead), (0, 0)), mode="edge")
    return np.concatenate([padded[i: i + t] for i in range(past + ahead + 1)], axis=1)


def lag_curve(pred: np.ndarray, mouth: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """r of ``pred[t + lag]`` against ``mouth[t]`` for lag = -max_lag .. max_lag."""
    n = min(len(pred), len(mouth))
    pred, mouth = pred[:n], mouth[:n]
    out = []
    for lag in range(-max_lag, max_lag + 1):
        x, y = (pred[lag:], mouth[: n - lag]) if lag >= 0 else (pred[: n + lag], mouth[-lag:])
        out.append(pearson(x, y))
    return np.asarray(out)


@dataclass
class SyncCheck:
    """The verdict on one clip. ``lag`` > 0: the voice comes ``lag`` frames late (the audio has to move
    earlier by ``lag`` frames, i.e. a manifest ``offset`` of ``-lag / 25`` s)."""

    name: str
    lag: int
    peak_r: float
    r_at_zero: float
    decision: str  # "keep" | "shift" | "drop"
    reason: str

    @property
    def offset_seconds(self) -> float:
        """The manifest audio ``offset`` that puts the voice in sync (0 unless shifted)."""
        return -self.lag * SAMPLES_PER_FRAME / SAMPLE_RATE if self.decision == "shift" else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("peak_r", "r_at_zero"):
            d[k] = None if not math.isfinite(d[k]) else round(d[k], 3)
        d["offset_seconds"] = self.offset_seconds
        return d


def decide(name: str, curve: np.ndarray, max_lag: int = MAX_LAG) -> SyncCheck:
    """Keep, shift or drop a clip from its lag curve (see the module docstring)."""
    r0 = float(curve[max_lag])
    if not np.isfinite(curve).any():
        return SyncCheck(name, 0, math.nan, r0, "drop", "no frames with a face and audio")
    k = int(np.nanargmax(curve))
    lag_video = k - max_lag  # pred[t + lag] ~ mouth[t]: the audio-driven track is late by lag
    peak = float(curve[k])
    if peak < MIN_PEAK:
        return SyncCheck(name, lag_video, peak, r0, "drop",
                         f"the voice does not explain the lips (best r {peak:.2f} < {MIN_PEAK})")
    gain = peak - (r0 if math.isfinite(r0) else -1.0)
    if abs(lag_video) >= MIN_SHIFT and gain >= MIN_GAIN:
        where = f"r {peak:.2f} at lag {lag_video:+d}, {r0:.2f} at 0"
        if peak < MIN_SHIFT_PEAK:  # a weak peak far from 0 is as likely chance as an offset
            return SyncCheck(name, lag_video, peak, r0, "drop", f"offset unclear ({where})")
        if abs(lag_video) == max_lag:  # the curve still rises at the edge of the search: no offset found
            return SyncCheck(name, lag_video, peak, r0, "drop", f"offset unclear, at the edge of the search ({where})")
        return SyncCheck(name, lag_video, peak, r0, "shift",
                         f"voice {abs(lag_video) * 40} ms {'late' if lag_video > 0 else 'early'} ({where})")
    return SyncCheck(name, lag_video, peak, r0, "keep", f"in sync (r {peak:.2f} at lag {lag_video:+d})")


def check_sync(tracks: dict[str, tuple[np.ndarray, np.ndarray]], max_lag: int = MAX_LAG) -> dict[str, SyncCheck]:
    """{name: (mono 16 kHz own-voice audio, (T,) mouth opening, NaN = no face)} -> {name: SyncCheck}.

    Each clip is judged by a regression fitted on all the others (leave-one-out).
    """
    if len(tracks) < MIN_CLIPS:
        raise ValueError(f"the sync check needs at least {MIN_CLIPS} clips to learn from, got {len(tracks)}")
    data = {}
    for name, (audio, mouth) in tracks.items():
        mouth = np.asarray(mouth, dtype=np.float64)
        x = context_stack(mel_frames(audio, len(mouth)))
        ok = np.isfinite(mouth)
        sd = float(np.nanstd(mouth)) if ok.any() else 0.0
        y = (mouth - np.nanmean(mouth)) / sd if sd > 1e-9 else np.zeros_like(mouth)
        data[name] = (x, y, ok & (sd > 1e-9))
    allx = np.concatenate([x for x, _, _ in data.values()])
    mu, sd = allx.mean(axis=0), allx.std(axis=0) + 1e-6
    gram, rhs = {}, {}
    for name, (x, y, ok) in data.items():
        xn = (x[ok] - mu) / sd
        gram[name], rhs[name] = xn.T @ xn, xn.T @ y[ok]
    g_all, b_all = sum(gram.values()), sum(rhs.values())
    eye = RIDGE * np.eye(len(mu))
    out = {}
    for name, (x, y, _) in data.items():
        w = np.linalg.solve(g_all - gram[name] + eye, b_all - rhs[name])
        pred = ((x - mu) / sd) @ w
        out[name] = decide(name, lag_curve(pred, y, max_lag), max_lag)
    return out
