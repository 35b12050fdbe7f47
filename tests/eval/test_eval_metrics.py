import numpy as np

from infp.audio.vad import frame_speech_prob
from infp.eval.dialogue import DURATION, SCHEDULE, compose
from infp.eval.mouth_probe import fit_mouth_probe
from infp.face.landmarks import mouth_opening


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


def test_face_id_embeddings_tell_people_apart(samples):
    """Two frames of one talking video are the same person; three portraits are three people."""
    import pytest

    from infp.eval import face_id
    from infp.eval.face_metrics import identity_score
    from infp.face import FaceDetector
    from infp.io import iter_frames
    from infp.runtime.portrait import load_portrait

    if not face_id.available():
        pytest.skip("needs the eval extra (dlib-bin, face_recognition_models)")
    emb = face_id.FaceEmbedder()
    portraits = [load_portrait(samples / "portraits" / f"{n}.jpg", 256) for n in ("lp_s1", "lp_s5", "hallo_1")]
    people = [emb.embed(p.crop, p.landmarks) for p in portraits]
    assert people[0].shape == (128,)
    frames = [f for i, f in zip(range(60), iter_frames(samples / "video" / "lp_d11.mp4", fps=25)) if i in (0, 59)]
    with FaceDetector(max_faces=1, video=False) as det:
        same = [emb.embed(f, det.detect(f)[0].landmarks) for f in frames]
    assert face_id.embedding_distance(same[0], same[1]) < face_id.SAME_PERSON
    for i in range(3):
        for j in range(i + 1, 3):
            assert face_id.embedding_distance(people[i], people[j]) > face_id.SAME_PERSON
    a, b = portraits[0].crop, portraits[2].crop
    assert identity_score([a], [a], [b], distance="face_id") == pytest.approx(1.0)
    assert identity_score([b], [a], [b], distance="face_id") == pytest.approx(-1.0)
