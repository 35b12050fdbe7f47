"""The audio-video sync check: offsets found from the clips themselves, shifted or dropped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.data.sync import MAX_LAG, check_sync, decide, lag_curve
from infp.io import read_audio, to_mono

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def _speech_like(rng: np.random.Generator, seconds: float, voice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pieces of real speech switched on and off at a syllable rate, and a 'mouth' that opens with them
    (the per-frame loudness, smoothed): a recording whose lips follow its voice."""
    n_frames = int(seconds * 25)
    gate = np.repeat(rng.random(n_frames // 5 + 1) < 0.55, 5)[:n_frames].astype(np.float64)
    gate *= 0.4 + 0.6 * rng.random(n_frames)
    start = int(rng.integers(0, len(voice) - n_frames * SAMPLES_PER_FRAME))
    audio = voice[start: start + n_frames * SAMPLES_PER_FRAME] * np.repeat(gate, SAMPLES_PER_FRAME)
    mouth = np.convolve(gate, [0.25, 0.5, 0.25], mode="same") + 0.02 * rng.standard_normal(n_frames)
    return audio.astype(np.float32), mouth


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return to_mono(read_audio(SAMPLES / "audio" / "joyvasa_001.flac"))


def test_a_late_voice_is_found_and_shifted_and_a_foreign_voice_dropped(voice):
    rng = np.random.default_rng(0)
    tracks = {f"ok{i}": _speech_like(rng, 12.0, voice) for i in range(5)}
    audio, mouth = _speech_like(rng, 12.0, voice)
    late = 6  # frames: the voice comes 240 ms after the lips
    tracks["late"] = (np.concatenate([np.zeros(late * SAMPLES_PER_FRAME, np.float32), audio]), mouth)
    foreign, _ = _speech_like(rng, 12.0, voice)
    tracks["dubbed"] = (foreign, _speech_like(rng, 12.0, voice)[1])  # lips of one take, voice of another

    checks = check_sync(tracks)
    assert checks["late"].decision == "shift" and checks["late"].lag == late
    assert checks["late"].offset_seconds == pytest.approx(-late * SAMPLES_PER_FRAME / SAMPLE_RATE)
    assert checks["dubbed"].decision == "drop"
    for i in range(5):
        assert checks[f"ok{i}"].decision == "keep" and abs(checks[f"ok{i}"].lag) <= 1, checks[f"ok{i}"]


def test_lag_curve_sign_matches_the_shift():
    rng = np.random.default_rng(1)
    y = np.convolve(rng.standard_normal(300), np.ones(4) / 4, mode="same")
    x = np.roll(y, 3)  # x does at t + 3 what y does at t
    curve = lag_curve(x, y)
    assert int(np.nanargmax(curve)) - MAX_LAG == 3


def test_decide_rules():
    flat = np.full(2 * MAX_LAG + 1, 0.05)
    assert decide("a", flat).decision == "drop"
    curve = np.full(2 * MAX_LAG + 1, 0.1)
    curve[MAX_LAG + 1] = 0.5  # best at lag +1: a frame is within what footage and lips allow
    assert decide("b", curve).decision == "keep"
    curve = np.full(2 * MAX_LAG + 1, 0.05)
    curve[MAX_LAG - 4] = 0.25  # far and weak: as likely chance as an offset
    assert decide("c", curve).decision == "drop"
    curve[MAX_LAG - 4] = 0.7
    c = decide("c", curve)
    assert c.decision == "shift" and c.lag == -4 and c.offset_seconds == pytest.approx(0.16)
    assert decide("d", np.full(2 * MAX_LAG + 1, math.nan)).decision == "drop"
    curve = np.full(2 * MAX_LAG + 1, 0.05)
    curve[-1] = 0.7  # strong, but at the edge of the search: the curve may rise further beyond it
    edge = decide("e", curve)
    assert edge.decision == "drop" and "edge of the search" in edge.reason
    curve[-1], curve[-2] = 0.05, 0.7  # one frame inside: an offset
    assert decide("e", curve).decision == "shift"


def test_too_few_clips_is_an_error(voice):
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="at least"):
        check_sync({"a": _speech_like(rng, 5.0, voice)})
