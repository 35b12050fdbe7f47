"""Shared fixtures: real sample media (in the repository) and a sample corpus built from it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
SHARED = REPO.parent / "shared" / "data"
# mediapipe's C++ start-up lines (absl/glog format); the CLI silences them, but they come from its own threads
NATIVE_LOG = re.compile(r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:\d\d)")


@pytest.fixture(scope="session")
def own_lines():
    """The lines of a stderr text that infp wrote (mediapipe's native start-up log lines left out)."""
    return lambda text: [x for x in text.strip().splitlines() if not NATIVE_LOG.match(x)]


@pytest.fixture(scope="session")
def one_error_line(own_lines):
    """The one line infp wrote to stderr; fails if there are more, or a traceback."""
    def check(text: str) -> str:
        lines = own_lines(text)
        assert len(lines) == 1 and "Traceback" not in text, text
        return lines[0]
    return check


@pytest.fixture(scope="session")
def samples() -> Path:
    """The in-repository real media subset (data/samples)."""
    assert (SAMPLES / "video").is_dir(), "data/samples is part of the repository"
    return SAMPLES


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The full shared sample media, when present beside the repository."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory, samples) -> Path:
    """A corpus prepared from the in-repository media subset (built once per test session)."""
    from infp.data.prepare import PrepareConfig
    from infp.data.sample_corpus import build_sample_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_sample_corpus(out, media=samples, cfg=PrepareConfig(clip_seconds=10.0, workers=1), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """stage1/ + stage2/ checkpoints of small untrained networks (64x64 frames): the whole loop runs in real time."""
    from infp.models.audio_to_motion import AudioToMotionNet
    from infp.models.head_imitation import HeadImitationNet

    folder = tmp_path_factory.mktemp("tiny_weights")
    HeadImitationNet(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                     flow_width=8, decoder_res=1, decoder_widths=(8, 8)).save_pretrained(folder / "stage1")
    AudioToMotionNet(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8,
                     dit_dim=32, depth=1).save_pretrained(folder / "stage2")
    return folder
