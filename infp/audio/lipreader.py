"""A lip reader: the speaker's mouth opening read linearly from a few frames of their voice.

Own-voice talking-face video is scarce (minutes), and a learned audio encoder trained on it through the
diffusion loss overfits the training speakers. A strongly regularised linear read-out generalises
better: a ridge regression from the log-mel (and optionally the formant tracks, ``formant_tracks``) of
the frames t - ``past`` .. t + ``ahead`` (40 ms each) to the face's standardised mouth opening, fitted in
closed form on the corpus's own-voice clips. Reading 2 frames ahead with the formants, it follows the
mouth of unseen speakers at r ~ 0.48 (docs/RESULTS.md, "Hearing ahead"), 3.5 times the loudness envelope.
Stage 2 uses it for lip following (``AudioToMotionNet.follow_lips``) and, when causal (``ahead`` = 0),
optionally as a per-frame guidance cue.

The read-out is stateless: each frame depends only on the audio from ``past`` frames before it to
``ahead`` frames after it, so streaming and offline generation give the same values. Its parameters
are buffers, saved with the stage-2 weights; ``fit_lip_reader`` sets them (``AudioToMotion.setup`` does
it once, before training starts; ``train/refit_lip_reader.py`` again for trained weights).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME

MEL_HOP = 160  # 10 ms: four mel frames per video frame (as infp.audio.features.AudioEncoder)
MEL_WIN = 400
MEL_PER_FRAME = SAMPLES_PER_FRAME // MEL_HOP
SILENCE = math.log(1e-6)  # log-mel of digital silence: the value before the audio starts


FORMANT_ORDER = 12  # LPC order of the formant tracker (16 kHz)
FORMANT_DEFAULT = (0.3, 1.5, 2.5)  # kHz, for formants not found (and silence)
FORMANT_FEATURES = 4  # F1, F2, F3 (kHz) and the number of formant-like resonances below 8 kHz
PRE_EMPHASIS = 0.97


def formant_tracks(audio: torch.Tensor) -> torch.Tensor:
    """(B, N) 16 kHz audio, N a multiple of 160 -> (B, N / 160, 4): per 10 ms step (the log-mel's 25 ms
    windows, frame k ending at 160 (k + 1)), the three lowest formants in kHz and the number of resonances.

    Formants are the roots of a 12th-order LPC polynomial of the pre-emphasised, Hamming-windowed frame
    with a frequency above 150 Hz and a bandwidth below 500 Hz; F1 rises as the jaw opens, which a linear
    read-out of the log-mel cannot see by itself. Each step depends only on its own 400 samples.
    """
    b, n = audio.shape
    x = F.pad(audio.double(), (MEL_WIN - MEL_HOP, 0))
    fr = x.unfold(-1, MEL_WIN, MEL_HOP)  # (B, S, 400)
    fr = (fr[..., 1:] - PRE_EMPHASIS * fr[..., :-1]) * torch.hamming_window(MEL_WIN - 1, periodic=False,
                                                                              dtype=fr.dtype, device=fr.device)
    # autocorrelation (lags 0 .. p) through the power spectrum: 1024 points leave no circular overlap
    spec = torch.fft.rfft(fr, n=1024)
    r = torch.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=1024)[..., : FORMANT_ORDER + 1]
    silent = r[..., 0] < 1e-8
    r = torch.where(silent[..., None], torch.eye(1, FORMANT_ORDER + 1, dtype=r.dtype, device=r.device)[0], r)
    r[..., 0] = r[..., 0] * 1.0001  # a little white noise: a stable, well-conditioned fit
    # the LPC normal equations (Toeplitz in the autocorrelation), solved at once for every frame: a1 .. ap
    lag = torch.arange(FORMANT_ORDER, device=r.device)
    a = torch.linalg.solve(r[..., (lag[:, None] - lag[None, :]).abs()], -r[..., 1:])
    # roots of z^p + a1 z^(p-1) + ... + ap: eigenvalues of the companion matrix
    comp = torch.zeros(*a.shape[:-1], FORMANT_ORDER, FORMANT_ORDER, dtype=a.dtype, device=a.device)
    comp[..., 0, :] = -a
    comp[..., 1:, :-1] = torch.eye(FORMANT_ORDER - 1, dtype=a.dtype, device=a.device)
    roots = torch.linalg.eigvals(comp)
    freq = torch.angle(roots) * SAMPLE_RATE / (2 * math.pi)
    bw = -torch.log(roots.abs().clamp_min(1e-12)) * SAMPLE_RATE / math.pi
    valid = (roots.imag > 0) & (freq > 150.0) & (bw < 500.0) & ~silent[..., None]
    khz = torch.where(valid, freq / 1000.0, torch.full_like(freq, math.inf)).sort(dim=-1).values[..., :3]
    default = torch.tensor(FORMANT_DEFAULT, dtype=khz.dtype, device=khz.device)
    khz = torch.where(torch.isfinite(khz), khz, default)
    out = torch.cat([khz, valid.sum(-1, keepdim=True).to(khz.dtype)], dim=-1)
    return out[:, : n // MEL_HOP].float()


class LipReader(nn.Module):
    """(B, N) 16 kHz audio, N a multiple of 640 -> (B, N / 640, 1): the predicted standardised mouth opening.

    Frame t reads the log-mel (and, with ``formants``, the formant tracks) of frames t - ``past`` ..
    t + ``ahead``; ``ahead`` = 0 is causal. Frames beyond the audio read as silence.
    """

    def __init__(self, past: int = 4, n_mels: int = 80, ahead: int = 0, formants: bool = False) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=MEL_WIN, win_length=MEL_WIN, hop_length=MEL_HOP, n_mels=n_mels,
            center=False, power=2.0)
        self.past, self.ahead, self.formants = past, ahead, formants
        self.context_frames = past + 1  # the first mel window of a frame reaches 15 ms into the frame before
        per_frame = MEL_PER_FRAME * (n_mels + (FORMANT_FEATURES if formants else 0))
        n = (past + 1 + ahead) * per_frame
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("weight", torch.zeros(1, n))
        self.register_buffer("bias", torch.zeros(1))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def features(self, audio: torch.Tensor, log_mel: torch.Tensor | None = None,
                 tracks: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) -> (B, T, (past + 1 + ahead) * 4 * (n_mels [+ 4])): the log-mel of frames t - past .. t +
        ahead, oldest first (then, with ``formants``, their formant tracks); frames outside the audio count as
        silence. ``log_mel``: the same causal log-mel already computed (``AudioEncoder.log_mel``); ``tracks``:
        the audio's ``formant_tracks`` (B, 4 T, 4) already computed (a stream keeps those of the audio it has)."""
        b, t = audio.shape[0], audio.shape[-1] // SAMPLES_PER_FRAME
        if log_mel is None:
            log_mel = torch.log(self.mel(F.pad(audio.float(), (MEL_WIN - MEL_HOP, 0))) + 1e-6)  # frame k ends at 160 (k + 1)
        mel = log_mel[..., : t * MEL_PER_FRAME]  # (B, n_mels, 4T)
        frames = mel.transpose(1, 2).reshape(b, t, -1)  # (B, T, 4 n_mels)
        parts = [self._stack(frames, SILENCE)]
        if self.formants:
            if tracks is None:
                tracks = formant_tracks(audio[..., : t * SAMPLES_PER_FRAME].float())
            tracks = tracks[:, : t * MEL_PER_FRAME].reshape(b, t, -1)
            silence = torch.tensor([*FORMANT_DEFAULT, 0.0], dtype=tracks.dtype, device=tracks.device).repeat(MEL_PER_FRAME)
            parts.append(self._stack(tracks, silence))
        return torch.cat(parts, dim=-1)

    def _stack(self, frames: torch.Tensor, fill) -> torch.Tensor:
        b, t, d = frames.shape
        pad = torch.as_tensor(fill, dtype=frames.dtype, device=frames.device).expand(b, 1, d)
        x = torch.cat([pad.expand(b, self.past, d), frames, pad.expand(b, self.ahead, d)], dim=1)
        return torch.cat([x[:, i: i + t] for i in range(self.past + 1 + self.ahead)], dim=-1)

    def forward(self, audio: torch.Tensor, log_mel: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        h = (self.features(audio, log_mel, tracks) - self.mean) / self.std
        return F.linear(h, self.weight, self.bias)

    @torch.no_grad()
    def silence_reading(self) -> float:
        """The read-out of a silent channel (every frame of digital silence reads the same)."""
        return float(self(torch.zeros(1, SAMPLES_PER_FRAME, device=self.mean.device))[0, 0, 0])


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the frames where both are finite; NaN with fewer than 10 or a flat track."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 10:
        return math.nan
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 1e-12 else math.nan


@torch.no_grad()
def fit_lip_reader(reader: LipReader, tracks: Iterable[tuple[np.ndarray, np.ndarray]], ridge: float = 1.0,
                   min_frames: int = 50) -> dict[str, float]:
    """Fit ``reader`` in place from (mono 16 kHz own-voice audio, (T,) standardised mouth opening with NaN
    where unknown) pairs; ridge penalty ``ridge`` per frame of data on standardised features.

    Returns {"frames", "clips", "train_r"} (train_r: mean per-clip r of the fitted read-out).
    """
    feats, targets = [], []
    for audio, mouth in tracks:
        mouth = np.asarray(mouth, dtype=np.float64)
        t = len(mouth)
        a = np.zeros(t * SAMPLES_PER_FRAME, dtype=np.float32)
        a[: min(len(a), len(audio))] = np.asarray(audio, dtype=np.float32)[: len(a)]
        x = reader.features(torch.from_numpy(a)[None].to(reader.mean.device))[0].double().cpu().numpy()
        ok = np.isfinite(mouth)
        if ok.sum() >= 10:
            feats.append(x[ok])
            targets.append(mouth[ok])
    n = sum(len(y) for y in targets)
    if n < min_frames:
        raise ValueError(f"the lip reader needs at least {min_frames} frames of own-voice speech with a mouth track, got {n}")
    x = np.concatenate(feats)
    y = np.concatenate(targets)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xn = (x - mean) / std
    w = np.linalg.solve(xn.T @ xn + ridge * n * np.eye(x.shape[1]), xn.T @ (y - y.mean()))
    reader.mean.copy_(torch.from_numpy(mean))
    reader.std.copy_(torch.from_numpy(std))
    reader.weight.copy_(torch.from_numpy(w)[None])
    reader.bias.fill_(float(y.mean()))
    reader.fitted.fill_(True)
    rs = [pearson(((f - mean) / std) @ w, t) for f, t in zip(feats, targets)]
    return {"frames": float(n), "clips": float(len(targets)), "train_r": float(np.nanmean(rs))}


@torch.no_grad()
def reader_r(reader: LipReader, tracks: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean per-clip Pearson r (lag 0) of the reader's read-out against the (T,) mouth tracks; NaN without any."""
    rs = []
    for audio, mouth in tracks:
        t = len(mouth)
        a = np.zeros(t * SAMPLES_PER_FRAME, dtype=np.float32)
        a[: min(len(a), len(audio))] = np.asarray(audio, dtype=np.float32)[: len(a)]
        pred = reader(torch.from_numpy(a)[None].to(reader.weight.device))[0, :, 0].double().cpu().numpy()
        rs.append(pearson(pred, np.asarray(mouth, dtype=np.float64)))
    rs = [r for r in rs if math.isfinite(r)]
    return float(np.mean(rs)) if rs else math.nan


def fit_mouth_axis(tracks: Iterable[tuple[np.ndarray, np.ndarray]], ridge: float = 1e-2
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The mouth in a motion latent, from ((T, D) latent offsets, (T,) standardised mouth opening) pairs.

    Returns ``probe`` (D + 1,): a ridge regression reading the mouth opening from a latent (weights, then
    bias); ``axis`` (D,): the mean latent change per unit of mouth opening (regression of the latent on
    the opening); and {"frames", "probe_r"} (probe_r: r of the probe on the data it was fitted on).
    """
    xs, zs = [], []
    for x, z in tracks:
        z = np.asarray(z, dtype=np.float64)
        ok = np.isfinite(z)
        if ok.any():
            xs.append(np.asarray(x, dtype=np.float64)[: len(z)][ok[: len(x)]])
            zs.append(z[: len(x)][ok[: len(x)]])
    if not xs or sum(len(z) for z in zs) < 50:
        raise ValueError("the mouth axis needs at least 50 own-voice frames with latents and a mouth track")
    x, z = np.concatenate(xs), np.concatenate(zs)
    xm, zm = x.mean(axis=0), z.mean()
    xc, zc = x - xm, z - zm
    n = len(z)
    w = np.linalg.solve(xc.T @ xc + ridge * n * np.eye(x.shape[1]), xc.T @ zc)
    probe = np.concatenate([w, [zm - xm @ w]])
    axis = xc.T @ zc / float(zc @ zc)
    return probe, axis, {"frames": float(n), "probe_r": pearson(x @ w + probe[-1], z)}
