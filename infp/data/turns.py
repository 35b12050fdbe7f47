"""Who speaks when in a recording of two visible faces with one shared (mixed) audio track.

The mix's voice activity says *when* someone speaks; the faces say *who*. Per frame and per face:

* **mouth activity** — the spread (standard deviation over ``activity_window`` frames, 1 s) of the mouth
  opening (``infp.face.landmarks.mouth_opening``, inner-lip gap over eye distance, so it does not
  depend on the face's size in pixels): a talking mouth opens and closes, a listening one stays still;
* **audio-visual sync** — the correlation over ``sync_window`` frames between that mouth opening and
  the mix's loudness envelope (best lag within ``max_lag`` frames): the talking mouth follows the
  sound, a nodding or smiling listener does not.

Both are turned into a per-frame probability that the face talks, calibrated on the recording itself
(the louder of the two faces during speech against the quieter one), and a hidden Markov model with
four states — nobody, face A, face B, both — is decoded with Viterbi: the mix's VAD decides speech
against silence, the faces decide among A, B and both, and a cost per change of state keeps turns
from flickering. The confidence of each frame is the posterior probability of its decoded state
(forward-backward). ``gate`` makes each party's track: the mix where that party speaks (both
parties get it where they overlap), silence elsewhere, with short fades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD

NOBODY, FIRST, SECOND, BOTH = 0, 1, 2, 3
"""Decoded states: nobody speaks, the first face, the second face, both at once."""

CLIP_NOBODY, CLIP_SELF, CLIP_OTHER, CLIP_BOTH = 0, 1, 2, 3
"""Codes of a clip's ``turns.npy``, relative to the clip's own party."""


@dataclass(frozen=True)
class TurnConfig:
    """Settings of the turn assignment (frames at 25 fps)."""

    activity_window: int = 25  # ~1 s: mouth-opening spread
    sync_window: int = 25  # ~1 s: mouth/loudness correlation
    max_lag: int = 2  # frames of audio-video offset searched by the correlation
    sync_weight: float = 1.0  # weight of the sync cue against the (standardised) activity cue
    face_weight: float = 0.5  # tempering of the face evidence (neighbouring frames are not independent)
    both_penalty: float = 2.0  # log-prior against overlap: it needs clear evidence from both faces
    switch_cost: float = 4.0  # log-probability cost of a change of state
    fade_ms: float = 20.0  # fade in/out of the gated tracks
    hangover: int = 2  # frames a party's gate stays open into a following silence


@dataclass
class Turns:
    """Per-frame result for the two faces of a mixed recording."""

    state: np.ndarray  # (T,) int8: NOBODY / FIRST / SECOND / BOTH
    confidence: np.ndarray  # (T,) float32: posterior probability of the decoded state
    vad: np.ndarray  # (T,) float32 speech probability of the mix
    talk_prob: np.ndarray  # (T, 2) float32 per-face probability of talking (before smoothing)

    def speaks(self, face: int) -> np.ndarray:
        """(T,) bool: frames where face 0 (first) or 1 (second) speaks, overlap included."""
        own = FIRST if face == 0 else SECOND
        return (self.state == own) | (self.state == BOTH)

    def for_party(self, face: int) -> np.ndarray:
        """(T,) int8 codes relative to one face: CLIP_NOBODY / CLIP_SELF / CLIP_OTHER / CLIP_BOTH."""
        own, other = (FIRST, SECOND) if face == 0 else (SECOND, FIRST)
        codes = np.full(len(self.state), CLIP_NOBODY, np.int8)
        codes[self.state == own] = CLIP_SELF
        codes[self.state == other] = CLIP_OTHER
        codes[self.state == BOTH] = CLIP_BOTH
        return codes

    def shares(self, face: int) -> dict:
        """Shares of frames where this face speaks alone, the other alone, both, nobody."""
        codes = self.for_party(face)
        speech = codes != CLIP_NOBODY
        return {
            "self": round(float((codes == CLIP_SELF).mean()), 4),
            "other": round(float((codes == CLIP_OTHER).mean()), 4),
            "both": round(float((codes == CLIP_BOTH).mean()), 4),
            "nobody": round(float((codes == CLIP_NOBODY).mean()), 4),
            "confidence": round(float(self.confidence[speech].mean()), 4) if speech.any() else 1.0,
        }


# --------------------------------------------------------------------------- cues


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs (nearest value at the ends); all-NaN stays all-NaN."""
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x.astype(np.float64)
    t = np.arange(len(x))
    return np.interp(t, t[ok], x[ok])


def _moving(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean with edge padding (same length)."""
    if window <= 1 or len(x) == 0:
        return x.astype(np.float64)
    pad = window // 2
    xp = np.pad(x.astype(np.float64), (pad, window - 1 - pad), mode="edge")
    c = np.cumsum(np.concatenate([[0.0], xp]))
    return (c[window:] - c[:-window]) / window


def mouth_activity(opening: np.ndarray, window: int) -> np.ndarray:
    """(T,) moving standard deviation of the mouth opening over ``window`` frames (NaN gaps interpolated)."""
    x = _fill_gaps(opening)
    if not np.isfinite(x).any():
        return np.full(len(opening), np.nan)
    mean = _moving(x, window)
    var = np.maximum(_moving(x * x, window) - mean * mean, 0.0)
    return np.sqrt(var)


def loudness(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """(T,) log RMS (dB) of each frame's 640 samples."""
    a = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
    a[: min(len(audio), len(a))] = audio[: len(a)]
    rms = np.sqrt(np.mean(a.reshape(n_frames, SAMPLES_PER_FRAME).astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(rms + 1e-4)


def sync_score(opening: np.ndarray, envelope: np.ndarray, window: int, max_lag: int) -> np.ndarray:
    """(T,) windowed correlation of mouth opening and loudness, best over lags in [-max_lag, max_lag]."""
    x = _fill_gaps(opening)
    if not np.isfinite(x).any():
        return np.full(len(opening), np.nan)
    best = np.full(len(x), -1.0)
    for lag in range(-max_lag, max_lag + 1):
        y = np.roll(envelope.astype(np.float64), lag)
        mx, my = _moving(x, window), _moving(y, window)
        cov = _moving(x * y, window) - mx * my
        vx = np.maximum(_moving(x * x, window) - mx * mx, 1e-12)
        vy = np.maximum(_moving(y * y, window) - my * my, 1e-12)
        best = np.maximum(best, cov / np.sqrt(vx * vy))
    return best


def talk_probability(openings: list[np.ndarray], envelope: np.ndarray, vad: np.ndarray, cfg: TurnConfig) -> np.ndarray:
    """(T, 2) probability that each face talks, calibrated on this recording's speech frames.

    Score = standardised log mouth activity + ``sync_weight`` x sync. During speech one face usually
    talks and the other listens, so the median of the higher score over speech frames is the
    recording's "talking" level and the median of the lower one its "listening" level; the probability
    is a logistic between them. A face without landmarks on a frame gets 0.5 (no evidence)."""
    scores = []
    for op in openings:
        act = np.log(mouth_activity(op, cfg.activity_window) + 1e-3)
        scores.append((act, sync_score(op, envelope, cfg.sync_window, cfg.max_lag)))
    speech = vad > SPEECH_THRESHOLD
    if not speech.any():
        speech = np.ones(len(vad), bool)
    acts = np.stack([a for a, _ in scores], axis=1)
    ref = acts[speech][np.isfinite(acts[speech]).all(axis=1)]
    spread = float(np.std(ref)) if len(ref) > 1 else 1.0
    combined = (acts - (float(np.mean(ref)) if len(ref) else 0.0)) / max(spread, 1e-3)
    combined = combined + cfg.sync_weight * np.stack([s for _, s in scores], axis=1)
    both = combined[speech][np.isfinite(combined[speech]).all(axis=1)]
    if len(both) < 2:
        out = np.full(combined.shape, 0.5)
    else:
        hi = float(np.median(both.max(axis=1)))
        lo = float(np.median(both.min(axis=1)))
        mid, scale = (hi + lo) / 2, max((hi - lo) / 4, 0.05)
        out = 1 / (1 + np.exp(-(combined - mid) / scale))
    for i, op in enumerate(openings):  # frames without this face: no evidence
        out[~np.isfinite(op), i] = 0.5
    out = np.where(np.isfinite(out), out, 0.5)
    return np.clip(out, 0.02, 0.98).astype(np.float32)


# --------------------------------------------------------------------------- decoding


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


def emissions(vad: np.ndarray, talk: np.ndarray, cfg: TurnConfig) -> np.ndarray:
    """(T, 4) log-likelihoods of NOBODY / FIRST / SECOND / BOTH.

    The VAD alone decides speech against silence; the faces' evidence is normalised over the three
    speech states, so it only decides who."""
    v = np.clip(vad.astype(np.float64), 0.02, 0.98)
    qa, qb = talk[:, 0].astype(np.float64), talk[:, 1].astype(np.float64)
    face = cfg.face_weight * np.stack([
        np.log(qa) + np.log1p(-qb),
        np.log1p(-qa) + np.log(qb),
        np.log(qa) + np.log(qb) - cfg.both_penalty / max(cfg.face_weight, 1e-6),
    ], axis=1)
    face -= _logsumexp(face, axis=1)[:, None]
    return np.concatenate([np.log1p(-v)[:, None], np.log(v)[:, None] + face], axis=1)


def _transitions(cfg: TurnConfig) -> np.ndarray:
    trans = np.full((4, 4), -cfg.switch_cost)
    np.fill_diagonal(trans, 0.0)
    return trans - _logsumexp(trans, axis=1)[:, None]


def viterbi(log_emit: np.ndarray, log_trans: np.ndarray) -> np.ndarray:
    """Most likely state sequence (T,) of an HMM with a uniform start."""
    n, k = log_emit.shape
    if n == 0:
        return np.zeros(0, np.int8)
    back = np.zeros((n, k), np.int8)
    score = log_emit[0].copy()
    for t in range(1, n):
        cand = score[:, None] + log_trans
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(k)] + log_emit[t]
    path = np.zeros(n, np.int8)
    path[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def posteriors(log_emit: np.ndarray, log_trans: np.ndarray) -> np.ndarray:
    """(T, K) posterior state probabilities (forward-backward in log space)."""
    n, k = log_emit.shape
    fwd = np.zeros((n, k))
    bwd = np.zeros((n, k))
    if n == 0:
        return fwd
    fwd[0] = log_emit[0] - np.log(k)
    for t in range(1, n):
        fwd[t] = log_emit[t] + _logsumexp(fwd[t - 1][:, None] + log_trans, axis=0)
    for t in range(n - 2, -1, -1):
        bwd[t] = _logsumexp(log_trans + (log_emit[t + 1] + bwd[t + 1])[None, :], axis=1)
    post = fwd + bwd
    return np.exp(post - _logsumexp(post, axis=1)[:, None])


def assign_turns(landmarks: list[np.ndarray], mix: np.ndarray, n_frames: int, vad: np.ndarray | None = None,
                 cfg: TurnConfig | None = None) -> Turns:
    """Who speaks on each frame: ``landmarks`` of the two faces ((T, 478, 2), NaN = no face), the mix (N,).

    ``vad`` (T,) is the mix's speech probability (computed with silero when not given)."""
    from infp.face.landmarks import mouth_opening

    cfg = cfg or TurnConfig()
    if len(landmarks) != 2:
        raise ValueError(f"turns are assigned between two faces, got {len(landmarks)}")
    if vad is None:
        from infp.audio.vad import frame_speech_prob

        vad = frame_speech_prob(mix, n_frames)[:, 0]
    vad = np.asarray(vad, np.float32)[:n_frames]
    openings = [mouth_opening(np.asarray(lm[:n_frames], np.float32)) for lm in landmarks]
    talk = talk_probability(openings, loudness(mix, n_frames), vad, cfg)
    log_emit, log_trans = emissions(vad, talk, cfg), _transitions(cfg)
    state = viterbi(log_emit, log_trans)
    post = posteriors(log_emit, log_trans)
    conf = post[np.arange(n_frames), state].astype(np.float32)
    return Turns(state.astype(np.int8), conf, vad, talk)


# --------------------------------------------------------------------------- tracks


def gate(mix: np.ndarray, speaks: np.ndarray, cfg: TurnConfig | None = None, blocked: np.ndarray | None = None) -> np.ndarray:
    """The mix where ``speaks`` (T,) is true, silence elsewhere, with ``fade_ms`` linear fades.

    The gate stays open ``hangover`` frames into following frames that are not ``blocked`` (the other
    party's turns), so a word's tail is not cut where the VAD falls a frame early."""
    cfg = cfg or TurnConfig()
    open_ = np.asarray(speaks, bool).copy()
    blocked = np.zeros_like(open_) if blocked is None else np.asarray(blocked, bool)
    for _ in range(cfg.hangover):
        nxt = np.concatenate([[False], open_[:-1]]) & ~blocked
        open_ |= nxt
    gain = np.repeat(open_.astype(np.float32), SAMPLES_PER_FRAME)
    fade = int(round(cfg.fade_ms * 1e-3 * SAMPLE_RATE))
    if fade > 1:
        kernel = np.ones(fade, np.float32) / fade
        gain = np.convolve(np.pad(gain, (fade // 2, fade - 1 - fade // 2), mode="edge"), kernel, mode="valid")
    n = min(len(mix), len(gain))
    out = np.zeros(len(mix), np.float32)
    out[:n] = mix[:n] * gain[:n]
    return out


def party_tracks(mix: np.ndarray, turns: Turns, cfg: TurnConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first face's voice, second face's voice): the mix gated by each face's turns (overlap in both)."""
    a, b = turns.speaks(0), turns.speaks(1)
    return gate(mix, a, cfg, blocked=b & ~a), gate(mix, b, cfg, blocked=a & ~b)
