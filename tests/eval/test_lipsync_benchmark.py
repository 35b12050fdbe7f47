"""benchmarks/eval_lipsync.py: which clips a report may count, and the means it gives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from infp.data.sample_corpus import HELD_OUT_TALKING
from infp.eval.lipsync import LipSyncScore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("eval_lipsync", REPO / "benchmarks" / "eval_lipsync.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _score(clip: str, portrait: str, r: float) -> LipSyncScore:
    return LipSyncScore(clip=clip, portrait=portrait, frames=100, valid=100, r=r, lag=0, std_ratio=1.0,
                        loudness_r=0.1, loudness_lag=0)


def test_means_are_also_given_over_the_clips_no_choice_has_seen(bench):
    val, other = f"talking/{HELD_OUT_TALKING[0]}", "talking_eval/filby89+spectre__samples__MEAD__W015_level_1_neutral_030.mp4"
    scores = [_score(val, bench.OWN, 0.2), _score(val, "lp_s1", 0.3), _score(other, bench.OWN, 0.6), _score(other, "lp_s1", 0.7)]
    m = bench.means(scores)
    assert m["(a) own first frame"]["r"] == pytest.approx(0.4) and m["(b) unseen portraits"]["r"] == pytest.approx(0.5)
    assert m["(a) own first frame, unseen by any choice"]["r"] == pytest.approx(0.6)
    assert m["(b) unseen portraits, unseen by any choice"]["clips"] == 1
    assert set(bench.means(scores[2:])) == {"(a) own first frame", "(b) unseen portraits"}  # nothing to split off


def test_a_reader_fitted_on_the_validation_speakers_is_noticed(bench, tmp_path):
    assert not bench.reader_saw_validation_speakers(REPO / "weights")  # the starter's reader: training speakers only
    assert not bench.reader_saw_validation_speakers(REPO / "weights" / "v2")
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "config.yaml").write_text("kind: stage2\ntraining:\n  hparams:\n    lip_reader_fit_val: true\n")
    assert bench.reader_saw_validation_speakers(tmp_path)


def test_a_late_voice_is_scored_against_the_mouth_moved_by_its_offset(bench):
    """A voice 4 frames late: the avatar follows the voice, so against the recorded mouth its best lag within
    ±2 frames misses; against the track moved by the sync check's lag it lines up at lag 0."""
    from infp.eval.lipsync import score_clip

    rng = np.random.default_rng(0)
    real = np.convolve(rng.standard_normal(140), np.ones(5) / 5, mode="same").astype(np.float32)
    avatar = np.concatenate([np.zeros(4, np.float32), real[:96]])  # what the real mouth did, 4 frames later
    loud = rng.standard_normal(100).astype(np.float32)
    as_recorded = score_clip("clip", "lp_s1", avatar, real[:100], loud)
    moved = bench.synced_track(real, 4, 100)
    assert np.isnan(moved[:4]).all() and np.array_equal(moved[4:], real[:96])
    in_sync = score_clip("clip", "lp_s1", avatar, moved, loud)
    assert in_sync.lag == 0 and in_sync.r > 0.99 and as_recorded.r < 0.8
    early = bench.synced_track(real, -3, 100)  # a voice 3 frames early: frame t goes with real frame t + 3
    assert np.array_equal(early, real[3:103])


@pytest.mark.slow
def test_the_sync_check_finds_the_benchmark_clips_whose_voice_is_late(bench, shared_media):
    """On the benchmark's own clips (no infp weights involved): MEAD M030 angry's voice comes about 4 frames late, and
    the reused 20 s mouth track begins with the track of the scored seconds."""
    from infp.eval.lipsync import held_out_clips, video_mouth_track

    clips = [c for c in held_out_clips(shared_media)
             if any(k in c.name for k in ("M030_level_3_angry", "M024_level_2", "W036_level_3", "German_20s", "Demo5",
                                          "listening_01", "driving2", "M030_sad"))]
    checks, mouths = bench.sync_checks([(c, None) for c in clips])
    angry = next(c for c in clips if "M030_level_3_angry" in c.name)
    assert checks[angry.name].decision == "shift" and 3 <= checks[angry.name].lag <= 6  # 4 when judged by all 29
    assert checks[next(c for c in clips if "M024" in c.name).name].decision == "keep"
    short = video_mouth_track(angry, 4.0)
    np.testing.assert_array_equal(mouths[angry.name][: len(short)], short)
