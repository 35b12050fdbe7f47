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

SPEECH_HYSTERESIS = 0.15
"""Speech that has started goes on until its VAD probability falls this far below the threshold
(silero's usual hysteresis): offline speech segments and the live demo's conversation events."""

SPEECH_END_THRESHOLD = SPEECH_THRESHOLD - SPEECH_HYSTERESIS
"""Below this VAD probability, speech that has started counts as paused (0.35)."""

# Limits of a rendering's settings, checked by the command line at parse time and by RenderSettings.

MAX_STEPS = 1000
"""Most diffusion steps accepted (the sampler's time grid is continuous; more only costs time)."""

MAX_CFG_SCALE = 20.0
"""Largest guidance scale accepted: far beyond useful values, low enough to catch a slipped digit."""

MAX_SEED = 2**63 - 1
"""Seeds are non-negative and fit torch.Generator.manual_seed."""
