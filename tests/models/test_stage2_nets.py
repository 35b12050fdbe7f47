import numpy as np
import torch

from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.motion_guider import MotionGuider
from infp.runtime.motion import MotionStream, generate_motion

SMALL = dict(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8, dit_dim=32, depth=2)


def _perturbed(**kw) -> AudioToMotionNet:
    torch.manual_seed(0)
    net = AudioToMotionNet(**{**SMALL, **kw}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # zero-initialised outputs would hide mistakes
    return net


def test_guider_banks_and_shapes():
    g = MotionGuider(audio_dim=16, dim=32, bank_size=12, style_dim=8)
    assert g.verbal.shape == (12, 32) and g.nonverbal.shape == (12, 32)
    out = g(torch.randn(3, 7, 16), torch.randn(3, 7, 16), torch.randn(3, 8))
    assert out.shape == (3, 7, 32)


def test_denoiser_shapes_and_condition_dropout():
    net = _perturbed()
    b, w, p = 2, net.window, net.context
    a_self, a_other = net.audio_features(torch.randn(b, 640 * (p + w)), torch.randn(b, 640 * (p + w)))
    assert a_self.shape == (b, p + w, 16)
    style = net.style(torch.randn(b, 8))
    guide = net.guide(a_self, a_other, style)
    args = (torch.randn(b, w, 8), torch.rand(b), torch.randn(b, p, 8), torch.tensor([True, False]), guide, style)
    v = net.denoise(*args)
    assert v.shape == (b, w, 8)
    dropped = net.denoise(*args, drop_cond=torch.tensor([True, True]))
    assert not torch.allclose(v, dropped)
    # with the condition dropped the audio no longer matters
    other_guide = net.guide(*net.audio_features(torch.randn(b, 640 * (p + w)), torch.randn(b, 640 * (p + w))), style)
    args2 = args[:4] + (other_guide, style)
    assert torch.allclose(net.denoise(*args2, drop_cond=torch.tensor([True, True])), dropped)


def test_streaming_equals_offline_for_the_same_seed():
    net = _perturbed()
    rng = np.random.default_rng(0)
    own = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    other = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    neutral = torch.randn(8)
    offline = generate_motion(net, own, other, neutral, steps=3, seed=7)
    assert offline.shape == (50, 8)
    stream, parts, i = MotionStream(net, neutral, steps=3, seed=7), [], 0
    while i < len(own):
        n = int(rng.integers(50, 3000))
        parts.append(stream.push(own[i:i + n], other[i:i + n]))
        i += n
    parts.append(stream.flush())
    streamed = np.concatenate(parts)[:50]
    np.testing.assert_array_equal(streamed, offline)
    assert not np.allclose(generate_motion(net, own, other, neutral, steps=3, seed=8), offline)
    stream.reset()
    np.testing.assert_array_equal(np.concatenate([stream.push(own, other), stream.flush()])[:50], offline)


def test_checkpoint_round_trip_keeps_the_motion_scale(tmp_path):
    net = _perturbed()
    net.motion_scale.copy_(torch.linspace(0.5, 2.0, 8))
    net.save_pretrained(tmp_path / "s2")
    back = AudioToMotionNet.from_pretrained(tmp_path / "s2")
    assert torch.equal(back.motion_scale, net.motion_scale)
    own = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    a = generate_motion(net, own, own[::-1].copy(), torch.zeros(8), steps=2, seed=1)
    b = generate_motion(back, own, own[::-1].copy(), torch.zeros(8), steps=2, seed=1)
    np.testing.assert_array_equal(a, b)


def test_untrained_guider_already_listens_to_its_audio():
    """At initialisation the read-out of each bank must vary with the audio that queries it (relative to
    its size); a degenerate bank attends uniformly, and then no gradient ever teaches it the audio."""
    torch.manual_seed(0)
    g = MotionGuider(audio_dim=128, dim=256, bank_size=64, style_dim=64)
    style = torch.zeros(1, 64)
    quiet, loud = torch.randn(1, 20, 128) * 0.1, torch.randn(1, 20, 128) * 2
    for which in ("self", "other"):
        a, b = (quiet, torch.zeros_like(quiet)), (loud, torch.zeros_like(quiet))
        if which == "other":
            a, b = a[::-1], b[::-1]
        out_a, out_b = g(*a, style), g(*b, style)
        change = (out_a - out_b).norm(dim=-1).mean()
        assert change > 0.1 * out_a.norm(dim=-1).mean(), which
