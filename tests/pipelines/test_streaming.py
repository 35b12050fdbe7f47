"""StreamingSession: one loop for offline and live; frame stamps, dropping, state switching on real speech."""

import math

import numpy as np
import pytest

from infp.audio.vad import frame_speech_prob
from infp.io import read_audio
from infp.pipelines.render import Pipeline, RenderSettings
from infp.runtime.overlay import conversation_state, frame_state
from infp.runtime.portrait import load_portrait
from infp.runtime.streaming import StreamingSession, level_db


@pytest.fixture(scope="module")
def pipe(tiny_weights):
    return Pipeline.from_pretrained(tiny_weights)


@pytest.fixture(scope="module")
def portrait(samples):
    return load_portrait(samples / "portraits" / "lp_s1.jpg", 64)


@pytest.fixture(scope="module")
def turns(samples):
    """A real exchange: the partner talks (2.4 s), a pause, then the portrait's own voice talks (2.4 s)."""
    user = read_audio(samples / "audio" / "hallo_3.flac")[0][: int(2.4 * 16000)]
    agent = read_audio(samples / "audio" / "ditto.flac")[0][: int(2.4 * 16000)]
    gap = np.zeros(int(0.6 * 16000), np.float32)
    own = np.concatenate([np.zeros_like(user), gap, agent]).astype(np.float32)
    other = np.concatenate([user, gap, np.zeros_like(agent)]).astype(np.float32)
    return own, other


def _feed_in_chunks(session, own, other, sizes):
    frames, pos, i = [], 0, 0
    while pos < len(own):
        n = sizes[i % len(sizes)]
        frames += session.push(own[pos:pos + n], other[pos:pos + n])
        pos += n
        i += 1
    return frames + session.flush()


def test_chunked_stream_equals_offline_render(pipe, portrait, turns):
    """Any chunking of the stream gives exactly the offline renderer's frames (same seed, same loop)."""
    own, other = turns[0][:40_000], turns[1][:40_000]  # 2.5 s: not a whole number of hops
    settings = RenderSettings(steps=2, seed=5, overlay=True)
    vad = frame_speech_prob(np.stack([own, other]))
    offline = list(pipe.frames(portrait, own, other, settings, vad))
    session = pipe.session(portrait, settings, vad=vad)
    frames = _feed_in_chunks(session, own, other, [333, 2000, 7, 5120, 640])
    n = math.ceil(len(own) / 640)
    assert len(offline) == n == len(frames)
    assert [f.index for f in frames] == list(range(n))
    assert all(np.array_equal(a, f.image) for a, f in zip(offline, frames))


def test_frames_are_stamped_on_the_audio_clock(pipe, portrait, turns):
    own, other = turns
    session = pipe.session(portrait, RenderSettings(steps=1))
    frames = _feed_in_chunks(session, own, other, [1000])
    assert len(frames) == math.ceil(len(own) / 640) and session.samples_in == len(own)
    for f in frames[::7]:
        seg = slice(640 * f.index, 640 * (f.index + 1))
        assert f.pts == pytest.approx(f.index / 25)
        assert f.level[0] == pytest.approx(level_db(own[seg]), abs=1e-4)
        assert f.level[1] == pytest.approx(level_db(other[seg]), abs=1e-4)
    # the partner talks first, then the portrait: levels follow the audio, not a fixed order
    assert frames[20].level[1] > -40 > frames[20].level[0]
    assert frames[-20].level[0] > -40 > frames[-20].level[1]


def test_dropped_frames_are_not_rendered_but_motion_continues(pipe, portrait, turns):
    own, other = turns[0][:32_000], turns[1][:32_000]
    full = pipe.session(portrait, RenderSettings(steps=2)).push(own, other)
    session = pipe.session(portrait, RenderSettings(steps=2))
    asked = []
    session.drop = lambda k: asked.append(k) or k % 3 == 1
    part = session.push(own, other)
    assert asked == list(range(len(part)))  # asked once per frame, in order
    for a, b in zip(full, part):
        assert np.array_equal(a.latent, b.latent)  # motion does not depend on what was shown
        if b.index % 3 == 1:
            assert b.dropped and b.image is None
        else:  # same picture (rendered in a smaller batch: float rounding only)
            assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 2
    assert sum(f.dropped for f in part) == len([k for k in range(len(part)) if k % 3 == 1])


@pytest.mark.parametrize("batch", [1, 2])
def test_render_batch_changes_grouping_not_frames(pipe, portrait, turns, batch):
    own, other = turns[0][:20_480], turns[1][:20_480]
    ref = pipe.session(portrait, RenderSettings(steps=2)).push(own, other)
    out = pipe.session(portrait, RenderSettings(steps=2), render_batch=batch).push(own, other)
    assert [f.index for f in out] == [f.index for f in ref]
    assert max(np.abs(a.image.astype(int) - b.image.astype(int)).max() for a, b in zip(ref, out)) <= 2


def test_state_switches_from_listening_to_speaking_on_real_speech(pipe, portrait, turns):
    """Streaming VAD of both channels: listening while the partner talks, speaking when the portrait does."""
    own, other = turns
    session = pipe.session(portrait, RenderSettings(steps=1))
    frames = _feed_in_chunks(session, own, other, [640])
    states = [f.state for f in frames]
    first, second = states[: 60], states[75:]
    assert first.count("listening") / len(first) > 0.6 and "speaking" not in first
    assert second.count("speaking") / len(second) > 0.6 and "listening" not in second
    switch = states.index("speaking")
    assert "listening" in states[:switch]
    # the streaming VAD agrees with the offline analysis of the whole file
    offline = frame_speech_prob(np.stack([own, other]))
    stream = np.array([f.vad for f in frames])
    assert np.abs(stream - offline).mean() < 0.03
    agree = np.mean([a == b for a, b in zip(states, conversation_state(offline))])
    assert agree > 0.95


def test_frame_state():
    assert [frame_state(a, b) for a, b in [(0.9, 0.1), (0.1, 0.9), (0.6, 0.7), (0.2, 0.3)]] == \
        ["speaking", "listening", "both", "idle"]


def test_flush_of_a_partial_hop_and_of_nothing(pipe, portrait, turns):
    session = pipe.session(portrait, RenderSettings(steps=1))
    assert session.flush() == []
    assert session.push(turns[0][:1000], turns[1][:1000]) == []  # less than a hop: nothing yet
    frames = session.flush()
    assert [f.index for f in frames] == [0, 1]  # ceil(1000 / 640) frames, the padding is not shown
    with pytest.raises(ValueError):
        session.push(np.zeros(10, np.float32), np.zeros(11, np.float32))
    assert isinstance(session, StreamingSession)


@pytest.fixture(scope="module")
def following_pipe(tiny_weights, tmp_path_factory):
    """The tiny pipeline with a stage 2 whose mouth follows a lip reader that hears 2 frames ahead, read
    1 frame later (random read-out and mouth axis: the timing is what is tested)."""
    import shutil

    import torch

    from infp.models.audio_to_motion import AudioToMotionNet

    folder = tmp_path_factory.mktemp("following_weights")
    shutil.copytree(tiny_weights / "stage1", folder / "stage1")
    torch.manual_seed(0)
    net = AudioToMotionNet(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8,
                           dit_dim=32, depth=1, lip_reader=True, lip_cue=False, lip_reader_ahead=2,
                           lip_reader_formants=True, lip_follow=1.0, lip_lead=1, lip_gain=2.0)
    with torch.no_grad():
        net.lip_reader.weight.normal_(0, 0.05)
        net.lip_reader.fitted.fill_(True)
        net.mouth_probe.normal_()
        net.mouth_axis.copy_(net.mouth_probe[:-1])
    net.save_pretrained(folder / "stage2")
    return Pipeline.from_pretrained(folder)


def test_with_lip_following_each_frame_leaves_when_the_audio_three_frames_later_arrives(following_pipe, portrait, turns):
    own, other = turns[0][:640 * 30], turns[1][:640 * 30]
    session = following_pipe.session(portrait, RenderSettings(steps=1))
    assert session.motion.delay == 3 and session.lookahead_s == pytest.approx(0.12)
    frames = []
    for k in range(1, 31):  # 40 ms messages, as the live page sends them
        session.feed(own[640 * (k - 1):640 * k], other[640 * (k - 1):640 * k])
        while session.ready_hops:
            frames += list(session.step())
        assert len(frames) == max(0, k - 3)  # frame t leaves with the audio of frame t + 3: 120 ms, every frame
    frames += session.flush()
    assert [f.index for f in frames] == list(range(30))
    offline = list(following_pipe.frames(portrait, own, other, RenderSettings(steps=1)))
    assert len(offline) == 30
    assert max(np.abs(a.astype(int) - f.image.astype(int)).max() for a, f in zip(offline, frames)) <= 2
    for f in frames[::5]:  # levels still belong to each frame's own audio
        assert f.level[0] == pytest.approx(level_db(own[640 * f.index:640 * (f.index + 1)]), abs=1e-4)
    # without following, nothing waits
    plain = following_pipe.session(portrait, RenderSettings(steps=1, lip_follow=0.0))
    assert plain.motion.delay == 0 and len(plain.push(own[:2560], other[:2560])) == 4
