"""A held-out two-speaker test dialogue: turns, one overlap and pauses, composed from real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infp.audio.vad import frame_speech_prob
from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.io import read_audio

# (channel, start s, end s): 0 = self, 1 = other
SCHEDULE = [(0, 0.0, 2.5), (1, 3.0, 5.5), (0, 4.9, 7.5), (1, 8.2, 10.7), (0, 10.7, 12.5), (1, 13.1, 15.0)]
DURATION = 15.5


def compose(self_voice: Path, other_voice: Path) -> tuple[np.ndarray, np.ndarray]:
    """(self, other) mono 16 kHz tracks following SCHEDULE, cut from the two recordings' speech."""
    tracks = [np.zeros(int(DURATION * SAMPLE_RATE), np.float32) for _ in range(2)]
    sources = [read_audio(self_voice).mean(axis=0), read_audio(other_voice).mean(axis=0)]
    speech = []
    for src in sources:  # keep only speech frames, so every excerpt is talking
        prob = frame_speech_prob(src)[:, 0]
        keep = np.repeat(prob > SPEECH_THRESHOLD, SAMPLES_PER_FRAME)[: len(src)]
        speech.append(src[: len(keep)][keep])
    pos = [0, 0]
    for ch, a, b in SCHEDULE:
        n = int((b - a) * SAMPLE_RATE)
        src = speech[ch]
        piece = np.resize(src[pos[ch]:], n) if pos[ch] + n > len(src) else src[pos[ch]: pos[ch] + n]
        pos[ch] = (pos[ch] + n) % max(len(src), 1)
        tracks[ch][int(a * SAMPLE_RATE): int(a * SAMPLE_RATE) + n] = piece
    return tracks[0], tracks[1]
