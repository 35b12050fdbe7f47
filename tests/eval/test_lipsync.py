"""Lip-sync measures on real sample media: best-lag r, NaN handling, the loudness floor, held-out clips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.eval.lipsync import (
    HELD_OUT_TALKING,
    best_lag_r,
    held_out_clips,
    loudness_envelope,
    mean_scores,
    mouth_track,
    score_clip,
    std_ratio,
    validation_speaker,
    video_mouth_track,
)
from infp.io import read_audio, read_frames, to_mono, video_info

SECONDS = 4.0


@pytest.fixture(scope="module")
def speaking(samples) -> tuple[np.ndarray, np.ndarray]:
    """lp_d11 (a woman speaking her own voice): the real mouth track and the speech of its first seconds."""
    path = samples / "video" / "lp_d11.mp4"
    speech = to_mono(read_audio(path))[: int(SECONDS * SAMPLE_RATE)]
    return video_mouth_track(path, SECONDS), speech


def _late(track: np.ndarray, k: int) -> np.ndarray:
    """The same track ``k`` frames later (NaN where it has not started yet)."""
    return np.concatenate([np.full(k, np.nan), track[:-k]])


def test_real_mouth_track_has_a_value_per_frame_and_moves(speaking):
    real, _ = speaking
    assert len(real) == pytest.approx(SECONDS * FPS, abs=1)
    assert np.isfinite(real).mean() > 0.9
    assert np.nanmax(real) - np.nanmin(real) > 0.05  # she speaks: the mouth opens and closes


def test_best_lag_recovers_a_known_shift_with_its_sign(speaking):
    real, _ = speaking
    r, lag = best_lag_r(_late(real, 2), real)
    assert lag == 2 and r > 0.999  # x late by 2 frames: positive lag
    r, lag = best_lag_r(real, _late(real, 2))
    assert lag == -2 and r > 0.999
    r, lag = best_lag_r(_late(real, 2), real, max_lag=1)
    assert abs(lag) <= 1 and r < 0.99  # outside the window: no perfect match to be found


def test_nan_frames_are_left_out_pairwise(speaking):
    real, _ = speaking
    rng = np.random.default_rng(0)
    noisy = real + rng.normal(0, np.nanstd(real), len(real))
    holes = noisy.copy()
    gone = rng.random(len(real)) < 0.3
    holes[gone] = np.nan
    r_holes, _ = best_lag_r(holes, real, max_lag=0)
    keep = ~gone & np.isfinite(real)
    assert math.isfinite(r_holes)
    assert r_holes == pytest.approx(np.corrcoef(noisy[keep], real[keep])[0, 1], abs=1e-9)


def test_flat_or_empty_tracks_give_nan():
    flat = np.zeros(50)
    moving = np.sin(np.arange(50) / 3.0)
    assert math.isnan(best_lag_r(flat, moving)[0])
    assert math.isnan(best_lag_r(np.full(50, np.nan), moving)[0])
    assert math.isnan(std_ratio(moving, flat))


def test_std_ratio_measures_how_wide_the_mouth_opens(speaking):
    real, _ = speaking
    assert std_ratio(0.5 * real + 0.1, real) == pytest.approx(0.5)
    assert std_ratio(real, real) == pytest.approx(1.0)


def test_loudness_envelope_has_one_value_per_40ms_frame(speaking):
    _, speech = speaking
    env = loudness_envelope(speech)
    assert len(env) == math.ceil(len(speech) / SAMPLES_PER_FRAME)
    assert len(loudness_envelope(speech[: 3 * SAMPLES_PER_FRAME + 1])) == 4
    assert len(loudness_envelope(speech, n_frames=7)) == 7
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)  # 200 Hz: 16 periods per frame
    assert np.allclose(loudness_envelope(tone), 0.5 / math.sqrt(2), atol=1e-3)


def test_real_mouth_follows_its_own_loudness(speaking):
    """Positively but weakly (r 0.14 here, 0.19 over the whole clip): loudness is a crude mouth proxy,
    which is why it serves as the floor of the benchmark."""
    real, speech = speaking
    r, lag = best_lag_r(loudness_envelope(speech, len(real)), real)
    assert 0.1 < r < 0.9 and abs(lag) <= 2


def test_mouth_track_is_nan_where_no_face(samples):
    face = read_frames(samples / "video" / "lp_d11.mp4")[0]
    blank = np.full_like(face, 127)
    track = mouth_track([blank, face, blank])
    assert math.isnan(track[0]) and math.isfinite(track[1]) and math.isnan(track[2])


def test_score_clip_puts_the_loudness_floor_on_the_same_frames(speaking):
    real, speech = speaking
    avatar = _late(real, 1)
    avatar[40:60] = np.nan
    s = score_clip("lp_d11", "self", avatar, real, loudness_envelope(speech))
    assert s.lag == 1 and s.r > 0.999 and s.std_ratio == pytest.approx(1.0, abs=0.05)
    assert s.valid == int((np.isfinite(avatar) & np.isfinite(real)).sum())
    assert math.isfinite(s.loudness_r) and s.loudness_r < s.r
    assert s.as_dict()["clip"] == "lp_d11"
    means = mean_scores([s, s])
    assert means["clips"] == 2 and means["r"] == pytest.approx(s.r) and means["abs_lag"] == 1


def test_held_out_clips_name_whole_speakers_with_a_minute_of_speech(shared_media):
    clips = held_out_clips(shared_media)
    evals = sorted(p for p in (shared_media / "talking_eval").iterdir() if p.is_file())
    assert clips[: len(evals)] == evals  # all of the evaluation-only collection
    held = [shared_media / "talking" / n for n in HELD_OUT_TALKING]
    assert len(held) >= 5 and all(p.is_file() for p in held) and clips[len(evals):] == held
    assert sum(video_info(p).duration for p in held) > 60
    assert not any("GRID" in n or "PC-AVS" in n for n in HELD_OUT_TALKING)  # names that do not identify a speaker


def test_the_validation_speakers_are_told_apart_among_the_held_out_clips(shared_media):
    """The corpus's validation speakers (where settings are chosen) are 7 of the benchmark's clips: their 6 files of
    talking/ and MEAD M030's clip of talking_eval/; every other clip is of a person no choice has seen."""
    clips = held_out_clips(shared_media)
    theirs = [c for c in clips if validation_speaker(c)]
    assert {c.name for c in theirs} >= set(HELD_OUT_TALKING)
    assert [c.name for c in theirs if c.name not in HELD_OUT_TALKING] == \
        ["filby89+spectre__samples__MEAD__M030_level_3_angry_016.mp4"]
    assert not any(validation_speaker(c) for c in clips if "M003" in c.name or "Wav2Lip" in c.name)
    assert len(clips) - len(theirs) >= 20
