"""Silero VAD per channel: audio (C, N) at 16 kHz -> speech probability per 25 fps frame (T, C).

The model ships inside the ``silero-vad`` pip package, so nothing is downloaded. Each channel has
its own model state; the offline path runs the streaming detector over the whole file, so feeding
the same audio chunk by chunk gives the same probabilities.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_HYSTERESIS, SPEECH_THRESHOLD, VAD_CHUNK

log = logging.getLogger(__name__)


def load_vad_model() -> torch.nn.Module:
    """A fresh silero VAD model (TorchScript, from the installed package) with its own state."""
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # importing it sets torch to one thread for the whole process

    model = load_silero_vad(onnx=False)
    torch.set_num_threads(threads)
    model.eval()
    return model


class StreamingVAD:
    """Per-channel streaming VAD: push audio of any length, get one probability per 512-sample step.

    ``push(audio)`` takes (C, n) float32 at 16 kHz and returns (k, C) probabilities for the k
    512-sample chunks completed by this call (samples left over wait for the next call).
    """

    def __init__(self, channels: int = 2, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"silero VAD runs at {SAMPLE_RATE} Hz here, got {sample_rate}")
        self.channels = channels
        self.sample_rate = sample_rate
        self._models = [load_vad_model() for _ in range(channels)]
        self._pending = np.zeros((channels, 0), dtype=np.float32)
        self.chunks_done = 0

    def reset(self) -> None:
        """Forget all state (model memory and buffered samples)."""
        for model in self._models:
            model.reset_states()
        self._pending = np.zeros((self.channels, 0), dtype=np.float32)
        self.chunks_done = 0

    @torch.inference_mode()
    def push(self, audio: np.ndarray) -> np.ndarray:
        """Feed (C, n) samples; return (k, C) speech probabilities of the completed chunks."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {audio.shape[0]}")
        buf = np.concatenate([self._pending, audio], axis=1)
        k = buf.shape[1] // VAD_CHUNK
        out = np.zeros((k, self.channels), dtype=np.float32)
        if k:
            chunks = torch.from_numpy(np.ascontiguousarray(buf[:, : k * VAD_CHUNK])).view(self.channels, k, VAD_CHUNK)
            for c, model in enumerate(self._models):
                for i in range(k):
                    out[i, c] = model(chunks[c, i], self.sample_rate).item()
        self._pending = buf[:, k * VAD_CHUNK:]
        self.chunks_done += k
        return out


def chunk_to_frame_prob(chunk_prob: np.ndarray, n_frames: int, samples_per_frame: int = SAMPLES_PER_FRAME) -> np.ndarray:
    """Resample (K, C) per-chunk probabilities to (n_frames, C) at video-frame centres (linear)."""
    chunk_prob = np.asarray(chunk_prob, dtype=np.float32)
    if chunk_prob.ndim == 1:
        chunk_prob = chunk_prob[:, None]
    channels = chunk_prob.shape[1]
    if len(chunk_prob) == 0:
        return np.zeros((n_frames, channels), dtype=np.float32)
    chunk_t = (np.arange(len(chunk_prob)) + 0.5) * VAD_CHUNK
    frame_t = (np.arange(n_frames) + 0.5) * samples_per_frame
    return np.stack([np.interp(frame_t, chunk_t, chunk_prob[:, c]) for c in range(channels)], axis=1).astype(np.float32)


VAD_PIECE = VAD_CHUNK * 625
"""Samples per progress step of ``frame_speech_prob`` (20 s): a whole multiple of the VAD chunk, so
pushing the file piece by piece runs the model on exactly the chunks of one push."""


def frame_speech_prob(audio: np.ndarray, n_frames: int | None = None, samples_per_frame: int = SAMPLES_PER_FRAME,
                      progress: bool = False) -> np.ndarray:
    """Speech probability per video frame for each channel of 16 kHz audio.

    audio: (N,) or (C, N) float32. Returns (T, C) float32 with T = ``n_frames`` or ceil(N / 640).
    The file goes through the streaming detector in 20 s pieces, so ``progress`` can show a bar (on
    stderr; a 20-minute file takes minutes) with probabilities identical to a single push.
    """
    from tqdm import tqdm

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    n = audio.shape[1]
    if n_frames is None:
        n_frames = -(-n // samples_per_frame)
    padded = np.pad(audio, ((0, 0), (0, (-n) % VAD_CHUNK)))
    vad = StreamingVAD(channels=audio.shape[0])
    parts = [np.zeros((0, audio.shape[0]), np.float32)]
    with tqdm(total=padded.shape[1], unit="s", unit_scale=1 / SAMPLE_RATE, desc="voice activity",
              disable=not progress, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        for start in range(0, padded.shape[1], VAD_PIECE):
            piece = padded[:, start:start + VAD_PIECE]
            parts.append(vad.push(piece))
            bar.update(piece.shape[1])
    return chunk_to_frame_prob(np.concatenate(parts), n_frames, samples_per_frame)


def speech_segments(
    prob: np.ndarray,
    threshold: float = SPEECH_THRESHOLD,
    min_speech: int = 5,
    min_silence: int = 8,
    fps: float = FPS,
) -> list[tuple[float, float]]:
    """Speech segments (start s, end s) from one channel's per-frame probabilities.

    Hysteresis: speech starts above ``threshold`` and ends below ``threshold - SPEECH_HYSTERESIS`` (0.15); gaps shorter
    than ``min_silence`` frames are bridged and segments shorter than ``min_speech`` frames dropped.
    """
    prob = np.asarray(prob, dtype=np.float32).reshape(-1)
    off = threshold - SPEECH_HYSTERESIS
    segs: list[list[int]] = []
    active = False
    for i, p in enumerate(prob):
        if not active and p >= threshold:
            active = True
            segs.append([i, len(prob)])
        elif active and p < off:
            active = False
            segs[-1][1] = i
    merged: list[list[int]] = []
    for s in segs:
        if merged and s[0] - merged[-1][1] < min_silence:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [(s / fps, e / fps) for s, e in merged if e - s >= min_speech]
