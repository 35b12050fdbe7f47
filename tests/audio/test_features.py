import torch

from infp.audio.features import AudioEncoder
from infp.constants import SAMPLES_PER_FRAME


def test_one_feature_per_video_frame_and_causal():
    enc = AudioEncoder(dim=32, hidden=32).eval()
    x = torch.randn(2, 40 * SAMPLES_PER_FRAME)
    with torch.no_grad():
        y = enc(x)
        assert y.shape == (2, 40, 32)
        changed = x.clone()
        changed[:, 21 * SAMPLES_PER_FRAME:] = torch.randn(2, 19 * SAMPLES_PER_FRAME)
        y2 = enc(changed)
    assert torch.equal(y[:, :21], y2[:, :21])  # no look-ahead: the past is untouched
    assert not torch.allclose(y[:, 21:], y2[:, 21:])


def test_receptive_field_is_bounded_by_context_frames():
    enc = AudioEncoder(dim=16, hidden=16).eval()
    x = torch.randn(1, 60 * SAMPLES_PER_FRAME)
    t = 50
    with torch.no_grad():
        y = enc(x)
        far = x.clone()
        far[:, : (t - enc.context_frames) * SAMPLES_PER_FRAME] = 0
        assert torch.allclose(enc(far)[:, t:], y[:, t:], atol=1e-6)
