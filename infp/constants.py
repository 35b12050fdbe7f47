"""Shared numeric contracts: sample rate, frame rate and samples per video frame."""

SAMPLE_RATE = 16_000
"""Internal audio sample rate (Hz); every channel is mono float32 at this rate."""

FPS = 25
"""Video frame rate of clips, motion latents and rendered output."""

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
"""Audio samples covered by one video frame (640)."""

VAD_CHUNK = 512
"""Samples per silero-VAD step at 16 kHz (32 ms)."""

SPEECH_THRESHOLD = 0.5
"""A frame has speech when its VAD probability exceeds this (clip statistics, overlay, speaking/listening state)."""
