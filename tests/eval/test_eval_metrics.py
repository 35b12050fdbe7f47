import numpy as np

from infp.eval.dialogue import DURATION, SCHEDULE, compose
from infp.eval.face_metrics import mouth_opening
from infp.eval.mouth_probe import fit_mouth_probe
from infp.audio.vad import frame_speech_prob


def test_mouth_probe_recovers_a_linear_mouth_code(sample_corpus, tmp_path):
    rng = np.random.default_rng(0)
    for line in (sample_corpus / "train.txt").read_text().split():
        lm = np.load(sample_corpus / "clips" / line / "landmarks.npy").astype(np.float32)
        op = np.nan_to_num(mouth_opening(lm))
        lat = rng.standard_normal((len(lm), 6)).astype(np.float32)
        lat[:, 2] = 3 * op - 1  # one latent dimension carries the mouth
        np.save(tmp_path / f"{line}.npy", lat)
    probe = fit_mouth_probe(sample_corpus, tmp_path, ridge=1e-6)
    assert probe.r2 > 0.99
    assert np.argmax(np.abs(probe.weights)) == 2


def test_composed_dialogue_follows_its_schedule(samples):
    own, other = compose(samples / "audio" / "joyvasa_001.flac", samples / "audio" / "ditto.flac")
    assert len(own) == len(other) == int(DURATION * 16000)
    vad = frame_speech_prob(np.stack([own, other])) > 0.5
    for ch, a, b in SCHEDULE:
        mid = slice(int(a * 25) + 5, int(b * 25) - 5)
        assert vad[mid, ch].mean() > 0.8  # each turn is speech on its own channel
    assert (vad[:, 0] & vad[:, 1]).sum() >= 5  # the overlap
    assert (~vad[:, 0] & ~vad[:, 1]).sum() >= 10  # the pauses
