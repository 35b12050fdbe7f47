"""Stage-2 targets are offsets from each clip's rest latent (its most closed mouth), as at inference."""

import numpy as np
import pytest

from infp.data.stage2 import REST_SHARE, DyadicMotionWindows, rest_latent
from infp.face.landmarks import mouth_opening

KW = dict(window=4, context=16, audio_context=17)


def test_rest_latent_is_the_closed_mouth_and_falls_back_to_the_mean():
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((50, 3)).astype(np.float32)
    lm = rng.standard_normal((50, 478, 2)).astype(np.float32) * 5 + 100
    opening = mouth_opening(lm)
    closed = np.argsort(opening)[: int(round(REST_SHARE * 50))]
    np.testing.assert_allclose(rest_latent(lat, lm), lat[closed].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(rest_latent(lat, None), lat.mean(axis=0), rtol=1e-5)
    lm[:10] = np.nan  # frames without a face take no part
    assert np.isfinite(rest_latent(lat, lm)).all()


def test_talking_is_a_positive_mouth_offset_and_listening_is_not(sample_corpus, tmp_path):
    """Latents whose first dimension is the real mouth opening of the sample clips: the targets of windows
    where the face's own voice speaks open the mouth well beyond those where only the partner speaks."""
    rng = np.random.default_rng(0)
    for cid in (sample_corpus / "train.txt").read_text().split():
        op = np.nan_to_num(mouth_opening(np.load(sample_corpus / "clips" / cid / "landmarks.npy").astype(np.float32)))
        lat = rng.standard_normal((len(op), 4)).astype(np.float32) * 0.01
        lat[:, 0] = op
        np.save(tmp_path / f"{cid}.npy", lat)
    ds = DyadicMotionWindows(sample_corpus, "train", motion_dir=tmp_path, fixed_windows_per_clip=24, **KW)
    talk, listen = [], []
    for i in range(len(ds)):
        item = ds[i]
        w = KW["window"] * 640
        own = float(np.sqrt(np.mean(item["self_audio"][-w:].numpy() ** 2)))
        other = float(np.sqrt(np.mean(item["other_audio"][-w:].numpy() ** 2)))
        mouth = float(item["x0"][:, 0].mean()) * float(ds.scale[0])
        if own > 0.01 and other < 0.005:
            talk.append(mouth)
        elif other > 0.01 and own < 0.005:
            listen.append(mouth)
        np.testing.assert_allclose(item["x0"].numpy() * ds.scale + item["rest"].numpy(),
                                   np.load(tmp_path / f"{ds.fixed_window(i)[0]}.npy")[ds.fixed_window(i)[1]:][:4], atol=1e-5)
    assert len(talk) >= 5 and len(listen) >= 5
    assert np.mean(talk) > 0.05 and np.mean(talk) > 2 * max(np.mean(listen), 0.01)


def test_own_voice_clips_can_be_drawn_more_often(sample_corpus, tmp_path):
    """own_voice_weight multiplies the chance of drawing a window from a clip whose face speaks its own
    voice; the other clips keep their share relative to each other."""
    for cid in (sample_corpus / "train.txt").read_text().split():
        n = len(np.load(sample_corpus / "clips" / cid / "landmarks.npy"))
        np.save(tmp_path / f"{cid}.npy", np.zeros((n, 4), np.float32))
    plain = DyadicMotionWindows(sample_corpus, "train", motion_dir=tmp_path, scale=np.ones(4, np.float32), **KW)
    own = plain.own_voice
    assert own.any() and (~own).any()  # the sample corpus has both
    heavy = DyadicMotionWindows(sample_corpus, "train", motion_dir=tmp_path, scale=np.ones(4, np.float32),
                                own_voice_weight=4.0, **KW)
    share, share4 = plain.weights[own].sum(), heavy.weights[own].sum()
    assert share4 == pytest.approx(4 * share / (4 * share + 1 - share))
    np.testing.assert_allclose(heavy.weights[~own] / heavy.weights[~own].sum(), plain.weights[~own] / plain.weights[~own].sum())
    with pytest.raises(ValueError, match="own_voice_weight"):
        DyadicMotionWindows(sample_corpus, "train", motion_dir=tmp_path, scale=np.ones(4, np.float32), own_voice_weight=0, **KW)
