"""Controls: the text form, presets, validation, the model's control array; their effect on MotionStream."""

import math

import numpy as np
import pytest
import torch

from infp.errors import SettingsError
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import CONTROL_NAMES, KINDS, PRESETS, Controls
from infp.runtime.motion import MotionStream, generate_motion

SMALL = dict(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8, dit_dim=32, depth=1)


def test_parse_both_kinds_one_kind_and_presets():
    c = Controls.parse("smile=0.8, head_motion=0.5")
    assert c.speak == c.listen == {"smile": 0.8, "head_motion": 0.5}
    c = Controls.parse("speak.smile=0.2,listen.smile=0.9,brow=1")
    assert c.speak == {"smile": 0.2, "brow": 1.0} and c.listen == {"smile": 0.9, "brow": 1.0}
    assert Controls.parse("smile=0.3", kind="listen") == Controls(listen={"smile": 0.3})
    warm = Controls.parse("warm,smile=0.1")  # a preset first, later names override it
    assert warm.speak == {**PRESETS["warm"]["speak"], "smile": 0.1}
    assert warm.listen == {**PRESETS["warm"]["listen"], "smile": 0.1}
    assert Controls.parse("smile=0.1,warm").speak["smile"] == PRESETS["warm"]["speak"]["smile"]  # later wins
    assert not Controls.parse("") and not Controls.parse(None) and not Controls()
    assert Controls.parse(str(warm)) == warm  # the text form round-trips
    for name in PRESETS:
        assert Controls.preset(name)


@pytest.mark.parametrize("text, needle", [
    ("grin=0.5", "unknown control 'grin'"),
    ("smile=1.5", "must be in [0, 1]"),
    ("smile=-0.1", "must be in [0, 1]"),
    ("smile=nan", "must be in [0, 1]"),
    ("smile=inf", "must be in [0, 1]"),
    ("smile=lots", "not a number"),
    ("talk.smile=0.5", "kind must be one of"),
    ("jolly", "unknown preset 'jolly'"),
])
def test_bad_text_is_refused_with_a_clear_message(text, needle):
    with pytest.raises(SettingsError) as e:
        Controls.parse(text)
    assert needle in str(e.value)


def test_bad_values_kinds_and_dicts():
    with pytest.raises(SettingsError, match="sets both"):
        Controls.parse("warm", kind="speak")
    with pytest.raises(SettingsError, match="kind must be"):
        Controls.parse("smile=0.2", kind="talk")
    with pytest.raises(SettingsError, match="must be a number"):
        Controls(speak={"smile": "0.5"})
    with pytest.raises(SettingsError, match="must be a number"):
        Controls(speak={"smile": True})
    with pytest.raises(SettingsError, match="keys"):
        Controls.from_dict({"speaking": {"smile": 0.5}})
    with pytest.raises(SettingsError, match="an object"):
        Controls.from_dict({"speak": [0.5]})
    c = Controls(speak={"smile": np.float32(0.25)}, listen={"eyes": 1})
    assert Controls.from_dict(c.to_dict()) == c and Controls.from_dict(None) == Controls()
    assert isinstance(c.speak["smile"], float)


def test_array_has_nan_where_absent():
    arr = Controls(speak={"smile": 0.25}, listen={"pitch": 1.0}).array()
    assert arr.shape == (len(KINDS), len(CONTROL_NAMES)) and arr.dtype == np.float32
    assert arr[0, CONTROL_NAMES.index("smile")] == 0.25 and arr[1, CONTROL_NAMES.index("pitch")] == 1.0
    assert np.isfinite(arr).sum() == 2
    assert np.isnan(Controls().array()).all()


def control_net(seed: int = 0) -> AudioToMotionNet:
    """A small network with controls whose control embedding is not zero (untrained: it starts at zero)."""
    torch.manual_seed(seed)
    net = AudioToMotionNet(**SMALL, controls=True).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        net.control[-1].weight.normal_(0.0, 0.5)
    return net


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)
    n = 640 * 20
    return (0.1 * rng.standard_normal(n)).astype(np.float32), (0.1 * rng.standard_normal(n)).astype(np.float32)


def test_controls_change_the_motion_and_empty_ones_do_not(audio):
    net = control_net()
    rest = torch.zeros(8)
    plain = generate_motion(net, *audio, rest, steps=2, seed=1)
    assert np.array_equal(plain, generate_motion(net, *audio, rest, steps=2, seed=1, controls=Controls()))
    smiling = generate_motion(net, *audio, rest, steps=2, seed=1, controls=Controls.parse("smile=1,head_motion=1"))
    serious = generate_motion(net, *audio, rest, steps=2, seed=1, controls=Controls.parse("smile=0,head_motion=0"))
    assert plain.shape == smiling.shape == (20, 8)
    assert not np.allclose(plain, smiling) and not np.allclose(smiling, serious)
    listen_only = generate_motion(net, *audio, rest, steps=2, seed=1, controls=Controls(listen={"smile": 1.0}))
    assert not np.allclose(listen_only, smiling)  # the kind matters


def test_set_controls_takes_effect_from_the_next_hop(audio):
    net = control_net()
    rest = torch.zeros(8)
    own, other = audio
    hop = 640 * net.window
    a = MotionStream(net, rest, steps=2, seed=1)
    b = MotionStream(net, rest, steps=2, seed=1)
    first_a, first_b = a.push(own[:hop], other[:hop]), b.push(own[:hop], other[:hop])
    assert np.array_equal(first_a, first_b)
    b.set_controls(Controls.preset("excited"))
    assert b.controls_active and not a.controls_active
    assert not np.allclose(a.push(own[hop:], other[hop:]), b.push(own[hop:], other[hop:]))
    b.set_controls(Controls())
    assert not b.controls_active


def test_a_network_without_controls_ignores_them(audio):
    torch.manual_seed(0)
    net = AudioToMotionNet(**SMALL).eval()
    assert not net.has_controls
    rest = torch.zeros(8)
    stream = MotionStream(net, rest, steps=2, seed=1, controls=Controls.preset("warm"))
    assert not stream.controls_active
    plain = generate_motion(net, *audio, rest, steps=2, seed=1)
    assert np.array_equal(plain, generate_motion(net, *audio, rest, steps=2, seed=1, controls=Controls.preset("warm")))
    assert all(math.isfinite(v) for v in plain.ravel())


@pytest.mark.parametrize("control_scale", [2.0, 4.0])
def test_streaming_with_controls_equals_offline_and_the_control_weight_scales_their_effect(audio, control_scale):
    net = control_net()
    rest = torch.zeros(8)
    ctl = Controls.parse("warm")
    offline = generate_motion(net, *audio, rest, steps=2, seed=3, controls=ctl, control_scale=control_scale)
    stream = MotionStream(net, rest, steps=2, seed=3, controls=ctl, control_scale=control_scale)
    own, other = audio
    chunks = [stream.push(own[i:i + 333], other[i:i + 333]) for i in range(0, len(own), 333)]
    assert np.allclose(np.concatenate([*chunks, stream.flush()])[:len(offline)], offline, atol=1e-6)
    plain = generate_motion(net, *audio, rest, steps=2, seed=3)
    weak = generate_motion(net, *audio, rest, steps=2, seed=3, controls=ctl, control_scale=1.0)
    # a larger weight moves the motion further from the uncontrolled one
    assert np.abs(offline - plain).mean() > np.abs(weak - plain).mean()
