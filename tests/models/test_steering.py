"""Control steering: measure axes fitted from latents, levels held to the controls' targets, head motion scaled."""

import numpy as np
import pytest
import torch

from infp.face.expression import CONTROL_NAMES, MEASURES
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import Controls
from infp.models.steering import ROTATION, ControlSteering, fit_measure_axes
from infp.runtime.motion import MotionStream, generate_motion

D = 8
SMALL = dict(motion_dim=D, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8, dit_dim=32, depth=1)
LO = torch.tensor([-0.01, -0.03, -0.02, 0.006, -0.07, -0.04])  # control_lo / hi, CONTROL_NAMES order
HI = torch.tensor([0.04, 0.02, 0.02, 0.13, 0.09, 0.02])


def synthetic_tracks(n_clips=6, t=200, seed=0, mixing=None):
    """Latents made from 6 measures through a fixed random linear map plus noise: the axes are known."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((len(MEASURES), D)) if mixing is None else mixing
    tracks = []
    for _ in range(n_clips):
        m = 0.03 * rng.standard_normal((t, len(MEASURES)))
        x = m @ mixing + 0.001 * rng.standard_normal((t, D))
        tracks.append((x, m))
    return tracks, mixing


def test_fit_measure_axes_recovers_a_linear_latent():
    tracks, mixing = synthetic_tracks()
    probe, axis, stats = fit_measure_axes(tracks, ridge=1e-6)
    assert probe.shape == (len(MEASURES), D + 1) and axis.shape == (len(MEASURES), D)
    assert all(stats[f"{n}_r"] > 0.99 for n in MEASURES)
    assert np.allclose(axis, mixing, atol=0.05)  # latent change per unit of each measure
    x, m = synthetic_tracks(n_clips=1, seed=1, mixing=mixing)[0][0]
    assert np.allclose(x @ probe[:, :-1].T + probe[:, -1], m, atol=0.01)  # unseen frames read back (m: std 0.03)
    with pytest.raises(ValueError, match="at least 50 frames"):
        fit_measure_axes([(np.zeros((10, D)), np.zeros((10, 6)))])


def steering(seed=0):
    tracks, _ = synthetic_tracks(seed=seed)
    probe, axis, _ = fit_measure_axes(tracks, ridge=1e-6)
    return ControlSteering(torch.from_numpy(probe), torch.from_numpy(axis), LO, HI), probe


def readings(probe, x):
    return x @ probe[:, :-1].T + probe[:, -1]


def wobbling_latents(t=400, seed=2):
    """Latents of a face whose measures wander around zero, head turning with spread ~0.02."""
    rng = np.random.default_rng(seed)
    m = 0.005 * rng.standard_normal((t, len(MEASURES)))
    m[:, list(ROTATION)] = 0.02 * np.sin(np.arange(t)[:, None] / 6.0 + np.arange(3))
    return m @ synthetic_tracks(seed=0)[1]  # the mixing ``steering()`` fits its axes on


def controls(**values):
    return Controls(speak=values, listen=values).array()


def test_a_level_control_brings_its_measure_to_the_target_and_holds_the_others():
    steer, probe = steering()
    x = wobbling_latents()
    loud = np.full(len(x), 0.1)  # the own channel speaks throughout
    plain = readings(probe, x)
    out = readings(probe, steer.apply(x, loud, controls(smile=1.0)))
    j = MEASURES.index("smile")
    target = float(HI[CONTROL_NAMES.index("smile")])
    late = slice(200, None)  # after the running level has settled
    assert abs(out[late, j].mean() - target) < 0.004 < abs(plain[late, j].mean() - target)
    # the frame-to-frame motion of the measure is kept, and the other measures stay as they were
    assert np.allclose(np.diff(out[late, j]), np.diff(plain[late, j]), atol=2e-3)
    others = [i for i in range(len(MEASURES)) if i != j]
    assert np.allclose(out[:, others], plain[:, others], atol=1e-6)


def test_steering_leaves_a_held_read_out_as_it_is():
    """The mouth's probe, handed over as a held read-out: steering smile and head motion does not move it."""
    probe, axes, _ = fit_measure_axes(synthetic_tracks()[0], ridge=1e-6)
    rng = np.random.default_rng(5)
    mouth = torch.from_numpy(np.concatenate([rng.standard_normal(D), [0.2]]))
    axis = mouth[:-1] + 0.3 * torch.from_numpy(rng.standard_normal(D))
    steer = ControlSteering(torch.from_numpy(probe), torch.from_numpy(axes), LO, HI)
    held = ControlSteering(torch.from_numpy(probe), torch.from_numpy(axes), LO, HI, mouth, axis)
    x = wobbling_latents()
    loud = np.full(len(x), 0.1)
    ctl = controls(smile=1.0, head_motion=1.0, eyes=0.0)
    free, kept = steer.apply(x, loud, ctl), held.apply(x, loud, ctl)
    m = mouth[:-1].numpy()
    assert np.abs((free - x) @ m).max() > 1e-3  # unheld, steering moves the mouth's reading
    assert np.allclose((kept - x) @ m, 0.0, atol=1e-9)
    assert np.allclose(readings(probe, kept), readings(probe, free), atol=1e-9)  # the steered measures alike


def sweep(name, measure, values=(0.0, 0.5, 1.0)):
    """``measure(probe, steered latents)`` for a fresh steering state at each setting of control ``name``."""
    x = wobbling_latents()
    loud = np.full(len(x), 0.1)
    out = []
    for v in values:
        steer, probe = steering()
        out.append(measure(probe, steer.apply(x, loud, controls(**{name: v}))))
    return out


def test_level_controls_are_monotonic_and_absent_ones_change_nothing():
    levels = sweep("brow", lambda probe, y: readings(probe, y)[200:, MEASURES.index("brow")].mean())
    assert levels[0] < levels[1] < levels[2]
    x = wobbling_latents()
    loud = np.full(len(x), 0.1)
    steer, _ = steering()
    assert np.array_equal(steer.apply(x, loud, None), x)
    steer, _ = steering()
    assert np.allclose(steer.apply(x, loud, Controls().array()), x)


def rotation_spread(probe, x):
    r = readings(probe, x)[200:, list(ROTATION)]
    return float(np.sqrt(np.mean(r.var(axis=0))))


def test_head_motion_scales_the_head_rotation_monotonically():
    # targets 0.006 / 0.018 / 0.031 about a wobble of 0.014: gains within GAIN_RANGE
    spreads = sweep("head_motion", rotation_spread, values=(0.0, 0.1, 0.2))
    assert spreads[0] < spreads[1] < spreads[2]
    assert spreads[2] > 2.5 * spreads[0]
    x = wobbling_latents()
    loud = np.full(len(x), 0.1)
    steer, probe = steering()
    assert rotation_spread(probe, x) == pytest.approx(rotation_spread(probe, steer.apply(x, loud, None)))


def test_head_motion_below_the_own_spread_also_calms_what_no_probe_reads(monkeypatch):
    """A latent direction that no probe reads (the renderer may turn the head along it): head_motion = 0 scales its
    deviation down with the rotation's, and every probe reads what it read with the rotation steered alone; a gain
    above 1 leaves that direction as it is."""
    import infp.models.steering as steering_module

    steer, probe = steering()
    unseen = np.linalg.svd(probe[:, :-1])[2][-1]  # (D,): no probe reads it
    assert np.abs(probe[:, :-1] @ unseen).max() < 1e-9
    t = np.arange(400)
    x = wobbling_latents() + 0.02 * np.sin(t / 9.0)[:, None] * unseen
    loud = np.full(len(x), 0.1)
    out = {}
    for unread in (False, True):
        monkeypatch.setattr(steering_module, "UNREAD", unread)
        for v in (0.0, 1.0):
            steer, _ = steering()
            out[unread, v] = steer.apply(x, loud, controls(head_motion=v))
    late = slice(200, None)
    own = (x[late] @ unseen).std()
    assert (out[True, 0.0][late] @ unseen).std() < 0.5 * own
    assert (out[False, 0.0][late] @ unseen).std() > 0.9 * own  # the rotation alone steered: the direction kept
    assert np.allclose(readings(probe, out[True, 0.0]), readings(probe, out[False, 0.0]), atol=1e-9)
    assert np.allclose(out[True, 1.0], out[False, 1.0], atol=1e-12)


def test_head_motion_meets_its_target_level_within_seconds():
    """The running spread starts from the output's own frames and is measured as a control level is (spans
    of LEVEL_SPAN frames): from the second span on, the steered head motion is at the target, not held back
    by a corpus-typical start value."""
    from infp.face.expression import LEVEL_SPAN, level

    hm = CONTROL_NAMES.index("head_motion")
    target = 0.04  # about 2.5x the wobble's own level; the corpus midpoint the spread used to start from: 0.068
    value = (target - float(LO[hm])) / float(HI[hm] - LO[hm])
    x = wobbling_latents(t=500)
    loud = np.full(len(x), 0.1)
    steer, probe = steering()
    out = readings(probe, steer.apply(x, loud, controls(head_motion=value)))
    spans = [level(out[s:s + LEVEL_SPAN], np.zeros(len(MEASURES)))[hm] for s in range(LEVEL_SPAN, len(x), LEVEL_SPAN)]
    own = level(readings(probe, x)[LEVEL_SPAN:], np.zeros(len(MEASURES)))[hm]
    assert own < 0.5 * target
    assert np.allclose(spans, target, rtol=0.15), spans


def test_speaking_and_listening_frames_take_their_own_targets():
    steer, probe = steering()
    x = wobbling_latents(t=600)
    rms = np.where(np.arange(600) < 300, 0.1, 0.0)  # speech, then silence
    ctl = Controls(speak={"smile": 1.0}, listen={"smile": 0.0}).array()
    out = readings(probe, steer.apply(x, rms, ctl))[:, MEASURES.index("smile")]
    assert out[200:300].mean() > float(HI[0]) - 0.005
    assert out[500:].mean() < float(LO[0]) + 0.005


def steer_net(seed=0) -> AudioToMotionNet:
    torch.manual_seed(seed)
    net = AudioToMotionNet(**SMALL, controls=True, control_axes=True).eval()
    probe, axis, _ = fit_measure_axes(synthetic_tracks()[0], ridge=1e-6)
    with torch.no_grad():
        net.measure_probe.copy_(torch.from_numpy(probe))
        net.measure_axis.copy_(torch.from_numpy(axis))
        net.control_lo.copy_(LO)
        net.control_hi.copy_(HI)
    return net


@pytest.fixture(scope="module")
def speech():
    rng = np.random.default_rng(0)
    n = 640 * 60
    env = (np.sin(np.arange(n) / 3000.0) > -0.3).astype(np.float32)
    return (0.1 * env * rng.standard_normal(n)).astype(np.float32), (0.05 * rng.standard_normal(n)).astype(np.float32)


def test_stream_steers_the_same_chunked_as_offline_and_moves_the_probed_level(speech, tmp_path):
    net = steer_net()
    assert net.can_steer and not AudioToMotionNet(**SMALL, controls=True).can_steer
    rest = torch.zeros(D)
    ctl = Controls.parse("smile=1")
    offline = generate_motion(net, *speech, rest, steps=2, seed=3, controls=ctl)
    stream = MotionStream(net, rest, steps=2, seed=3, controls=ctl)
    own, other = speech
    chunks = [stream.push(own[i:i + 333], other[i:i + 333]) for i in range(0, len(own), 333)]
    assert np.allclose(np.concatenate([*chunks, stream.flush()])[:len(offline)], offline, atol=1e-6)
    # strength 0 is the conditioned network alone; the steered frames differ from it
    unsteered = generate_motion(net, *speech, rest, steps=2, seed=3, controls=ctl, control_steer=0.0)
    with torch.no_grad():
        net.measure_axis.zero_()
    assert not net.can_steer
    assert np.array_equal(unsteered, generate_motion(net, *speech, rest, steps=2, seed=3, controls=ctl))
    assert not np.allclose(unsteered, offline, atol=1e-3)
    net = steer_net()
    # the weights keep their probes and axes
    net.save_pretrained(tmp_path / "w")
    again = AudioToMotionNet.from_pretrained(tmp_path / "w")
    assert again.can_steer and torch.equal(again.measure_axis, net.measure_axis)


def test_head_motion_and_smile_are_met_by_steering_alone_and_the_network_sees_the_other_controls(speech):
    """While steering, head_motion and smile are left out of the network's conditioning: either alone generates
    the uncontrolled network's latents, steered; with brow set too, the network sees brow only."""
    net = steer_net()
    rest = torch.zeros(D)
    hm, sm, br = (CONTROL_NAMES.index(n) for n in ("head_motion", "smile", "brow"))
    plain = generate_motion(net, *speech, rest, steps=2, seed=3)
    for name in ("head_motion", "smile"):
        stream = MotionStream(net, rest, steps=2, seed=3, controls=Controls.parse(f"{name}=1"))
        assert stream._controls is None and stream.controls_active
    moving = generate_motion(net, *speech, rest, steps=2, seed=3, controls=Controls.parse("head_motion=1"))
    still = generate_motion(net, *speech, rest, steps=2, seed=3, controls=Controls.parse("head_motion=0"))
    # one network output, steered two ways: the rotation readings differ, every other reading is the same
    probe = net.measure_probe.double().numpy()
    read = [readings(probe, x.astype(np.float64)) for x in (still, plain, moving)]
    other = [MEASURES.index(n) for n in MEASURES if MEASURES.index(n) not in ROTATION]
    np.testing.assert_allclose(read[0][:, other], read[2][:, other], atol=1e-6)
    spreads = [float(np.sqrt(np.mean(r[10:, list(ROTATION)].var(axis=0)))) for r in read]
    assert spreads[0] < min(spreads[1], spreads[2]), spreads
    # smile steered alone: smile 0 and 1 steer one network output, so the head turns the same and only the smile
    # reading differs
    low, high = (readings(probe, generate_motion(net, *speech, rest, steps=2, seed=3, controls=Controls.parse(f"smile={v}")
                                                 ).astype(np.float64)) for v in (0, 1))
    np.testing.assert_allclose(low[:, list(ROTATION)], high[:, list(ROTATION)], atol=1e-6)
    smile = MEASURES.index("smile")
    assert high[20:, smile].mean() > low[20:, smile].mean() + 0.5 * float(HI[sm] - LO[sm])
    # conditioned on head_motion (no steering), the network's own output would differ
    conditioned = generate_motion(net, *speech, rest, steps=2, seed=3, controls=Controls.parse("head_motion=0"),
                                  control_steer=0.0)
    assert not np.allclose(readings(probe, conditioned.astype(np.float64))[:, other], read[0][:, other], atol=1e-3)
    both = MotionStream(net, rest, steps=2, seed=3, controls=Controls.parse("brow=1,smile=1,head_motion=1"))
    given = torch.isfinite(both._controls[0])
    assert given[:, br].all() and not given[:, hm].any() and not given[:, sm].any()
    # without steering, the network is conditioned on head_motion and smile as on any other control
    raw = MotionStream(net, rest, steps=2, seed=3, controls=Controls.parse("head_motion=1,smile=1"), control_steer=0.0)
    assert torch.isfinite(raw._controls[0][:, [hm, sm]]).all()
