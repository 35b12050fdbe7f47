"""benchmarks/eval_lipsync.py: which clips a report may count, and the means it gives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
