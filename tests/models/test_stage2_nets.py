import numpy as np
import pytest
import torch

from infp.models.audio_to_motion import LIP_CLOSE_MARGIN, AudioToMotionNet
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


def _streamed_in_random_chunks(stream: MotionStream, own: np.ndarray, other: np.ndarray, rng) -> np.ndarray:
    """The latents of ``own`` / ``other`` pushed in chunks of random sizes, then flushed."""
    parts, i = [], 0
    while i < len(own):
        n = int(rng.integers(50, 3000))
        parts.append(stream.push(own[i:i + n], other[i:i + n]))
        i += n
    parts.append(stream.flush())
    return np.concatenate(parts)


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
    stream = MotionStream(net, neutral, steps=3, seed=7)
    streamed = _streamed_in_random_chunks(stream, own, other, rng)[:50]
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


def test_the_lip_reader_adds_a_per_frame_cue_and_streams_as_offline():
    net = _perturbed(lip_reader=True, lip_reader_past=3, lip_follow=1.0, lip_gain=2.0)
    with torch.no_grad():
        net.lip_reader.weight.normal_(0, 0.05)  # a reader that reads something (buffers are not perturbed)
        net.mouth_probe.normal_()
        net.mouth_axis.normal_()
    assert net.audio_context == max(net.audio.context_frames, net.lip_reader.context_frames)
    b, w, p = 1, net.window, net.context
    audio = torch.randn(b, 640 * (p + w)) * 0.1
    a_self, a_other = net.audio_features(audio, torch.zeros_like(audio))
    assert a_self.shape == (b, p + w, 16 + 1)  # the encoder's features, then the read-out
    # the network shares the encoder's log-mel with the reader: the same read-out as the reader alone
    torch.testing.assert_close(a_self[..., -1:], net.lip_reader(audio))
    style = net.style(torch.randn(b, 8))
    guide = net.guide(a_self, a_other, style)
    louder = a_self.clone()
    louder[:, 5, -1] += 1.0  # only frame 5's read-out changes: only frame 5's guidance does
    diff = (net.guide(louder, a_other, style) - guide).abs().sum(-1)[0]
    assert diff[5] > 0 and torch.all(diff[torch.arange(p + w) != 5] == 0)

    rng = np.random.default_rng(1)
    own = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    other = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    neutral = torch.randn(8)
    offline = generate_motion(net, own, other, neutral, steps=2, seed=3)
    streamed = _streamed_in_random_chunks(MotionStream(net, neutral, steps=2, seed=3), own, other, rng)
    # the reading for lip following is made over however much audio has arrived: equal to float precision
    np.testing.assert_allclose(streamed[: len(offline)], offline, atol=1e-5, rtol=0)


def test_a_fitted_lip_reader_is_saved_with_the_weights(tmp_path):
    net = _perturbed(lip_reader=True)
    with torch.no_grad():
        net.lip_reader.weight.normal_()
        net.lip_reader.fitted.fill_(True)
    net.save_pretrained(tmp_path / "s2")
    back = AudioToMotionNet.from_pretrained(tmp_path / "s2")
    assert back.lip_reader is not None and back.lip_reader.is_fitted
    torch.testing.assert_close(back.lip_reader.weight, net.lip_reader.weight)


def test_lip_following_sets_the_mouth_probe_to_what_the_reader_hears_above_silence_and_holds_it_closed_in_silence():
    net = _perturbed(lip_reader=True, lip_gain=2.0, lip_lead=1)
    torch.manual_seed(1)
    with torch.no_grad():
        net.mouth_probe.normal_()
        net.mouth_axis.copy_(net.mouth_probe[:-1] + 0.3 * torch.randn(8))
    x = torch.randn(2, 6, 8)
    silence = net.lip_reader.silence_reading()
    assert silence == float(net.lip_reader(torch.zeros(1, 640 * 5))[0, 3, 0])
    heard = silence + torch.randn(2, 6)
    probe, bias = net.mouth_probe[:-1], net.mouth_probe[-1]
    now = x @ probe + bias
    out = net.follow_lips(x, heard, 1.0)
    called = bias + 2.0 * (heard - silence)
    speech = called > bias
    assert 0 < speech.sum() < speech.numel()
    # above silence: the probe reads what the voice calls for; at or below it: the closed mouth, by default
    # LIP_CLOSE_MARGIN below the rest mouth, from frames above it and below it alike
    closed = bias - LIP_CLOSE_MARGIN
    expected = torch.where(speech, called, closed)
    torch.testing.assert_close(out @ probe + bias, expected, atol=1e-4, rtol=1e-4)
    quiet = net.follow_lips(x, torch.full_like(heard, silence), 1.0) @ probe + bias
    torch.testing.assert_close(quiet, torch.full_like(quiet, float(closed)), atol=1e-4, rtol=1e-4)
    # a silent channel read a float rounding above the reading of silence (read in another batch) is silence too
    hair = net.follow_lips(x, torch.full_like(heard, silence + 1e-6), 1.0) @ probe + bias
    torch.testing.assert_close(hair, torch.full_like(hair, float(closed)), atol=1e-4, rtol=1e-4)
    assert LIP_CLOSE_MARGIN > 0 and (now > closed).any() and (now < closed).any()  # both cases were exercised
    # a portrait's own closed mouth replaces the default
    own_closed = net.follow_lips(x, heard, 1.0, closed=float(bias) - 0.5) @ probe + bias
    torch.testing.assert_close(own_closed, torch.where(speech, called, bias - 0.5), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(net.follow_lips(x, heard, 1.0, silence=silence), out)
    # a portrait whose rendered mouth opens only higher up: speech targets start at that onset, silence stays closed
    lifted = net.follow_lips(x, heard, 1.0, onset=1.5) @ probe + bias
    torch.testing.assert_close(lifted, torch.where(speech, called + 1.5, closed), atol=1e-4, rtol=1e-4)
    # a portrait whose rendered mouth opens faster per unit: what is heard above silence is scaled, from the onset up
    scaled = net.follow_lips(x, heard, 1.0, onset=1.5, gain=0.5) @ probe + bias
    torch.testing.assert_close(scaled, torch.where(speech, bias + 1.5 + 0.5 * (called - bias), closed), atol=1e-4, rtol=1e-4)
    # the change is along the mouth axis only
    delta = (out - x).reshape(-1, 8)
    assert torch.linalg.matrix_rank(delta, atol=1e-4) == 1
    torch.testing.assert_close(net.follow_lips(x, heard, 0.0), x)
    half = net.follow_lips(x, heard, 0.5)
    torch.testing.assert_close((half @ probe + bias)[speech], (0.5 * now + 0.5 * called)[speech], atol=1e-4, rtol=1e-4)
    assert net.follow_delay(1.0) == 1 and net.follow_delay(0.0) == 0
    # without a fitted axis there is nothing to follow, and nothing to wait for
    fresh = _perturbed(lip_reader=True)
    torch.testing.assert_close(fresh.follow_lips(x, heard, 1.0), x)
    assert fresh.follow_delay(1.0) == 0


def test_a_frame_waits_for_its_lip_reading_and_the_stream_still_equals_offline():
    """A reader that looks 2 frames ahead, read 1 frame later: frame t leaves once the audio up to t + 3
    has arrived (the window's own look-ahead, 120 ms), its mouth follows the reading of frame t + 1, and
    any chunking gives the offline latents."""
    net = _perturbed(lip_reader=True, lip_cue=False, lip_reader_ahead=2, lip_reader_formants=True, lip_follow=1.0,
                     lip_gain=2.0, lip_lead=1)
    with torch.no_grad():
        net.lip_reader.weight.normal_(0, 0.05)
        net.mouth_probe.normal_()
        net.mouth_axis.copy_(net.mouth_probe[:-1] + 0.3 * torch.randn(8))
    rng = np.random.default_rng(2)
    own = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    other = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    neutral = torch.randn(8)
    stream = MotionStream(net, neutral, steps=2, seed=3)
    assert stream.delay == 3 and stream.lookahead_ms == 120
    first = stream.push(own[: 640 * 10], other[: 640 * 10])  # frames 0..9 heard, 0..7 generated
    assert len(first) == 10 - 3 and stream.waiting == 1
    assert len(stream.push(own[640 * 10: 640 * 11], other[640 * 10: 640 * 11])) == 1  # frame 7 leaves with frame 10
    offline = generate_motion(net, own, other, neutral, steps=2, seed=3)
    assert len(offline) == 50
    streamed = _streamed_in_random_chunks(MotionStream(net, neutral, steps=2, seed=3), own, other, rng)
    np.testing.assert_allclose(streamed[: len(offline)], offline, atol=1e-5, rtol=0)
    # the mouth probe of each frame reads the reader's value of the frame after it
    read = net.lip_reader(torch.from_numpy(np.concatenate([own, np.zeros(640 * 4, np.float32)]))[None])[0, :, 0]
    rest = neutral.reshape(1, -1)
    x = (torch.from_numpy(offline) - rest) / net.motion_scale
    probe, bias = net.mouth_probe[:-1], net.mouth_probe[-1]
    called = bias + 2.0 * (read[1:51] - net.lip_reader.silence_reading())
    speech = called > bias
    assert speech.sum() > 10
    torch.testing.assert_close((x @ probe + bias)[speech], called[speech], atol=1e-3, rtol=1e-3)
    assert bool(((x @ probe + bias)[~speech] <= bias + 1e-4).all())  # where it reads silence: closed or more
    raw = generate_motion(net, own, other, neutral, steps=2, seed=3, lip_follow=0.0)
    assert not np.allclose(raw, offline)
    with pytest.raises(ValueError, match="causal"):
        AudioToMotionNet(**{**SMALL, "lip_reader": True, "lip_reader_ahead": 1})


def test_without_the_cue_the_reader_feeds_lip_following_only():
    net = _perturbed(lip_reader=True, lip_cue=False)
    assert net.lip_proj is None
    audio = torch.randn(1, 640 * 20) * 0.1
    assert net.audio_features(audio, audio)[0].shape == (1, 20, 16)  # no read-out among the features
    a_self = torch.randn(1, 20, 17)
    a_other = torch.randn(1, 20, 17)
    style = net.style(torch.randn(1, 8))
    other_reading = a_self.clone()
    other_reading[..., -1] += 3.0
    torch.testing.assert_close(net.guide(other_reading, a_other, style), net.guide(a_self, a_other, style))


def test_a_window_split_into_its_shared_parts_denoises_as_one_call():
    """``MotionDiT.step`` on ``window`` and ``conditioning`` (what the stream computes once per window and once
    per diffusion time) is ``forward``, with a different diffusion time and history on every row."""
    net = _perturbed()
    dit, b, w, p = net.dit, 3, net.window, net.context
    torch.manual_seed(1)
    args = (torch.randn(b, w, 8), torch.rand(b), torch.randn(b, p, 8), torch.tensor([True, False, True]),
            torch.randn(b, p + w, 32), torch.randn(b, 8))
    with torch.no_grad():
        whole = dit(*args)
        split = dit.step(args[0], dit.conditioning(args[1], args[5]), dit.window(args[2], args[3], args[4], w))
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    assert not torch.allclose(whole[1], dit(*(a[:1] for a in args))[0], atol=1e-3)  # the rows differ


def test_the_traced_transformer_gives_the_eager_motion_and_follows_new_weights(monkeypatch):
    """Real weights and real speech: the stream's traced sampling steps give the eager latents, with and without
    controls; weights changed in place after a stream ran are traced again."""
    import soundfile as sf

    from infp.models.controls import Controls
    from infp.runtime import motion

    net = AudioToMotionNet.from_pretrained("weights/stage2")
    speech, sr = sf.read("data/samples/audio/hallo_3.flac", dtype="float32", frames=16000 * 3)
    assert sr == 16000
    own = speech if speech.ndim == 1 else speech.mean(axis=1)
    other = np.zeros_like(own)
    rest = torch.zeros(net.motion_dim)
    runs = {}
    for traced in (True, False):
        monkeypatch.setattr(motion, "TRACE_STEP", traced)
        runs[traced] = [generate_motion(net, own, other, rest, controls=c)
                        for c in (None, Controls.parse("smile=0.9"))]
    for a, b in zip(runs[True], runs[False]):  # bit-equal here; other CPUs' kernels may round differently
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert np.abs(runs[True][0] - runs[True][1]).max() > 1e-3  # the control changes the motion
    monkeypatch.setattr(motion, "TRACE_STEP", True)
    with torch.no_grad():
        net.dit.out.weight.mul_(3.0)
    changed = generate_motion(net, own, other, rest)
    monkeypatch.setattr(motion, "TRACE_STEP", False)
    np.testing.assert_allclose(changed, generate_motion(net, own, other, rest), rtol=0, atol=1e-5)
    assert np.abs(changed - runs[True][0]).max() > 1e-3


def test_real_speech_streamed_frame_by_frame_gives_the_offline_motion(monkeypatch):
    """The starter weights read the lips with formant tracks, which a stream computes once per frame of audio
    that has arrived: pushed in chunks of 20 ms to 190 ms, as a live session does, the latents are the
    offline ones, and every reading of the lip reader is that of the whole clip read in one pass."""
    import soundfile as sf

    net = AudioToMotionNet.from_pretrained("weights/stage2")
    assert net.lip_reader is not None and net.lip_reader.formants
    speech, _ = sf.read("data/samples/audio/hallo_3.flac", dtype="float32", frames=16000 * 4)
    own = speech if speech.ndim == 1 else speech.mean(axis=1)
    other = np.zeros_like(own)
    rest = torch.zeros(net.motion_dim)
    offline = generate_motion(net, own, other, rest)
    readings = []
    heard = MotionStream._heard

    def recorded(stream, first, k):
        out = heard(stream, first, k)
        readings.append((first, out[0]))
        return out

    monkeypatch.setattr(MotionStream, "_heard", recorded)
    rng = np.random.default_rng(3)
    stream = MotionStream(net, rest)
    parts, i = [], 0
    while i < len(own):
        n = int(rng.choice([320, 640, 1000, 3000]))
        parts.append(stream.push(own[i:i + n], other[i:i + n]))
        i += n
    parts.append(stream.flush())
    # equal up to float rounding: frames leave in groups of other sizes than offline
    np.testing.assert_allclose(np.concatenate(parts)[: len(offline)], offline, rtol=0, atol=1e-5)
    whole = net.lip_reader(torch.from_numpy(own[: len(own) // 640 * 640])[None])[0, :, 0]
    lead, n_whole = net.lip_lead, len(whole)
    checked = 0
    for first, read in readings:
        for j, value in enumerate(read):
            f = first + j + lead
            if f + net.lip_reader.ahead < n_whole:  # the whole clip's reading of frames inside it
                assert abs(float(value) - float(whole[f])) < 1e-5, f
                checked += 1
    assert checked > 90 and len(readings) > 40  # read in many small groups


def test_a_stream_is_traced_before_its_first_hop_and_its_first_control(monkeypatch):
    """Tracing takes a few tenths of a second: a live session must not stall for it mid-conversation."""
    from infp.models.controls import Controls

    net = AudioToMotionNet.from_pretrained("weights/stage2")
    made = []
    trace = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: made.append(a[1][0].shape[0]) or trace(*a, **k))
    stream = MotionStream(net, torch.zeros(net.motion_dim))
    assert sorted(made) == [2, 3]  # CFG rows, and the third row of controls
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    stream.push(audio[:6400], audio[:6400])
    stream.set_controls(Controls.parse("smile=0.9"))
    assert len(stream.push(audio[6400:], audio[6400:])) > 0
    MotionStream(net, torch.zeros(net.motion_dim))  # the same weights: the traces are kept
    assert sorted(made) == [2, 3]


def test_a_network_that_streamed_still_copies_and_pickles():
    """The traces kept on the transformer are left out of copies and pickles (TorchScript modules do not
    pickle): a copied stream continues exactly like the original, and a saved network generates the same."""
    import copy
    import io

    net = AudioToMotionNet.from_pretrained("weights/stage2")
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    stream = MotionStream(net, torch.zeros(net.motion_dim))
    stream.push(audio[:8000], audio[:8000])
    twin = copy.deepcopy(stream)
    np.testing.assert_array_equal(twin.push(audio[8000:], audio[8000:]), stream.push(audio[8000:], audio[8000:]))
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    rest = torch.zeros(net.motion_dim)
    np.testing.assert_array_equal(generate_motion(back, audio, audio, rest), generate_motion(net, audio, audio, rest))
