import numpy as np
import pytest

from infp.audio.vad import StreamingVAD, chunk_to_frame_prob, frame_speech_prob, speech_segments
from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME, VAD_CHUNK
from infp.io import read_audio


@pytest.fixture(scope="module")
def speech(samples) -> np.ndarray:
    return read_audio(samples / "audio" / "joyvasa_001.flac")[0][: 8 * SAMPLE_RATE]


def test_real_speech_vs_silence(speech):
    prob = frame_speech_prob(speech)
    assert prob.shape == (-(-len(speech) // SAMPLES_PER_FRAME), 1)
    assert (prob[:, 0] > 0.5).mean() > 0.6
    silent = frame_speech_prob(np.zeros(4 * SAMPLE_RATE, np.float32))
    assert silent.max() < 0.2
    assert len(speech_segments(prob[:, 0])) >= 1 and speech_segments(silent[:, 0]) == []


def test_each_channel_has_its_own_detector(speech):
    half = 4 * SAMPLE_RATE
    ch0 = np.concatenate([speech[:half], np.zeros(half, np.float32)])
    ch1 = np.concatenate([np.zeros(half, np.float32), speech[:half]])
    prob = frame_speech_prob(np.stack([ch0, ch1]))
    first, second = slice(10, 90), slice(110, 190)
    assert prob[first, 0].mean() > 0.5 > prob[second, 0].mean()
    assert prob[second, 1].mean() > 0.5 > prob[first, 1].mean()


def test_streaming_equals_offline(speech):
    rng = np.random.default_rng(0)
    stereo = np.stack([speech, speech[::-1].copy()])
    vad = StreamingVAD(channels=2)
    parts, i = [], 0
    while i < stereo.shape[1]:
        n = int(rng.integers(100, 3000))
        parts.append(vad.push(stereo[:, i:i + n]))
        i += n
    streamed = np.concatenate(parts)
    offline = StreamingVAD(channels=2).push(stereo)
    assert streamed.shape == offline.shape == (stereo.shape[1] // VAD_CHUNK, 2)
    np.testing.assert_allclose(streamed, offline, atol=1e-6)
    vad.reset()
    again = vad.push(stereo)
    np.testing.assert_allclose(again, offline, atol=1e-6)


def test_chunk_to_frame_alignment():
    chunk = np.zeros((50, 1), np.float32)
    chunk[25:] = 1.0  # speech starts at sample 25 * 512 = 12800 = frame 20
    frames = chunk_to_frame_prob(chunk, 40)
    assert frames[:19, 0].max() < 0.5 and frames[21:, 0].min() > 0.5


def test_loading_the_vad_keeps_torch_threads():
    import sys

    sys.modules.pop("silero_vad.model", None)  # its import is what changes the thread count
    sys.modules.pop("silero_vad", None)
    import torch

    from infp.audio.vad import load_vad_model

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        load_vad_model()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
