"""Phone pseudo-labels (pocketsphinx allphone) per 40 ms frame."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")

from infp.audio.phones import PHONES, PhoneLabeller  # noqa: E402
from infp.audio.vad import frame_speech_prob  # noqa: E402
from infp.constants import SPEECH_THRESHOLD  # noqa: E402
from infp.io import read_audio, to_mono  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


@pytest.fixture(scope="module")
def labeller():
    return PhoneLabeller()


def test_speech_gets_phones_and_pauses_silence(labeller):
    audio = to_mono(read_audio(SAMPLES / "audio" / "joyvasa_001.flac"))
    labels = labeller(audio)
    n = len(audio) // 640
    assert labels.shape == (n,) and labels.min() >= 0 and labels.max() < len(PHONES)
    speech = frame_speech_prob(audio)[:n, 0] > SPEECH_THRESHOLD
    m = min(len(speech), n)
    phones = labels[:m] != 0
    assert phones[speech[:m]].mean() > 0.8  # speech frames carry phones ...
    assert phones[~speech[:m]].mean() < 0.5  # ... pauses mostly silence
    assert len(np.unique(labels[:m][speech[:m]])) > 20  # many different phones, not one label


def test_silence_is_silence_and_length_follows_the_frames(labeller):
    assert (labeller(np.zeros(16000, np.float32), 30) == 0).all()
    assert labeller(np.zeros(16000, np.float32), 30).shape == (30,)
