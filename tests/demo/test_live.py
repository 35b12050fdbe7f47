"""LiveSession: the streaming loop against the clock (late frames dropped, quality ladder, agent voice)."""

import threading
import time

import numpy as np
import pytest

from infp.demo.agent import AgentVoice
from infp.demo.live import LiveSession, portraits_for, warm_up
from infp.demo.quality import Level, ladder
from infp.pipelines.render import Pipeline, RenderSettings


@pytest.fixture(scope="module")
def pipe(tiny_weights, samples):
    pipe = Pipeline.from_pretrained(tiny_weights)
    warm_up(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", [Level(64, 2), Level(48, 2), Level(32, 1)]))
    return pipe


def _run_realtime(live, user, chunk=640):
    """Feed the user's voice as a microphone would: each 40 ms chunk when its last sample is captured."""
    live.start()
    t0 = time.monotonic()
    for s in range(0, len(user), chunk):
        due = t0 + (s + chunk) / 16000
        time.sleep(max(0.0, due - time.monotonic()))
        live.ingest(user[s:s + chunk])
    live.finish(timeout=60)


def test_agent_voice_queue():
    v = AgentVoice()
    assert not v.read(5).any() and v.status()["playing"] is None
    v.add(np.ones(3, np.float32), "a")
    v.add(np.full(4, 2.0, np.float32), "b")
    assert v.status() == {"playing": "a", "queued": ["a", "b"], "queued_s": round(7 / 16000, 2)}
    assert v.read(5).tolist() == [1, 1, 1, 2, 2]  # across items
    assert v.status()["playing"] == "b"
    assert v.read(4).tolist() == [2, 2, 0, 0]  # silence once empty
    v.add(np.ones(16000, np.float32), "c")
    assert v.clear() == pytest.approx(1.0) and not v.read(3).any()


def test_ladder():
    assert [(lv.size, lv.steps) for lv in ladder(256, 6)] == [(256, 6), (224, 6), (192, 6), (192, 4), (160, 4)]
    assert [(lv.size, lv.steps) for lv in ladder(224, 4)] == [(224, 4), (192, 4), (160, 4)]
    assert [(lv.size, lv.steps) for lv in ladder(256, 6, adapt=False)] == [(256, 6)]


def test_every_frame_once_on_time_or_dropped(pipe, samples, voices):
    """Generous delay: nearly every frame is delivered, each within the delay of its audio's arrival."""
    levels = [Level(64, 2)]
    seen = []
    live = LiveSession(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(steps=2),
                       delay=0.6, sink=seen.append)
    live.agent.add(voices["agent"][:32000], "agent")
    _run_realtime(live, voices["user"][:48000])
    n = 48000 // 640
    assert [f.index for f in seen] == list(range(n))
    ok = [f for f in seen if f.info["delivered"]]
    assert len(ok) >= 0.9 * n
    assert all(f.info["latency"] <= 0.6 and f.info["jpeg"][:2] == b"\xff\xd8" for f in ok)
    # the agent talks for the first 2 s, the user all along: both, then listening
    assert {f.state for f in seen[5:45]} <= {"both", "speaking", "listening", "idle"}
    assert sum(f.state == "both" for f in seen[:50]) > 20 and sum(f.state == "listening" for f in seen[50:]) > 15
    snap = live.snapshot()
    assert snap["delivered"] == len(ok) and snap["frames"] == n and snap["clock_s"] == pytest.approx(3.0)


def test_late_frames_are_dropped_and_latency_does_not_grow(pipe, samples, voices):
    """A delay shorter than a hop: the first frames of every hop cannot make it and are never rendered."""
    levels = [Level(64, 2)]
    seen = []
    live = LiveSession(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(steps=2),
                       delay=0.1, sink=seen.append)
    _run_realtime(live, voices["user"][:64000])
    assert [f.index for f in seen] == list(range(100))
    first_of_hop = [f for f in seen if f.index % 4 == 0]
    # the first frame of a hop waits 160 ms for the rest of its hop's audio: > 100 ms, never shown
    assert all(f.image is None and not f.info["delivered"] for f in first_of_hop)
    ok = [f for f in seen if f.info["delivered"]]
    assert all(f.info["latency"] <= 0.1 for f in ok)
    # frames are produced as the audio arrives: the backlog does not grow over the session
    lag = [f.info["ready"] - f.info["wall"] for f in seen]
    assert max(lag[-20:]) < 0.5 and live.stats.dropped + live.stats.late >= 25


def test_quality_steps_down_when_frames_are_late(pipe, samples, voices):
    levels = [Level(64, 2), Level(48, 2), Level(32, 1)]
    seen = []
    live = LiveSession(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(steps=2),
                       delay=0.1, sink=seen.append)
    _run_realtime(live, np.concatenate([voices["user"], voices["agent"]]))  # 8 s: the first 2 s are not judged
    assert live.level_index >= 1 and "did not keep up" in live.note
    sizes = [f.image.shape[0] for f in seen if f.image is not None]
    assert sizes[0] == 64 and sizes[-1] < 64


def test_recording_of_a_live_session(pipe, samples, voices, tmp_path):
    from infp.io import probe, read_audio, read_frames

    levels = [Level(64, 2)]
    live = LiveSession(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(steps=2),
                       delay=0.5)
    live.agent.add(voices["agent"], "agent")
    live.start()
    user = voices["user"]
    t0 = time.monotonic()
    rec = stopper = None
    for s in range(0, 56320, 640):  # the microphone goes on after Stop, as on the page
        time.sleep(max(0.0, t0 + (s + 640) / 16000 - time.monotonic()))
        if s == 6400:
            rec = live.start_recording(tmp_path / "rec.mp4")
        if s == 48000:  # stop at 3 s: blocks until the frames up to there are written
            stopper = threading.Thread(target=live.stop_recording)
            stopper.start()
            while rec.end_frame is None:
                time.sleep(0.001)
        live.ingest(user[s:s + 640])
    stopper.join()
    live.close()
    assert rec.first_frame == 10 and rec.frames == 65  # 2.6 s from the frame boundary where it started
    info = probe(tmp_path / "rec.mp4")
    assert info.audio_channels == 2 and len(read_frames(tmp_path / "rec.mp4")) == 65
    audio = read_audio(tmp_path / "rec.mp4")
    ref = [voices["agent"][6400:48000], user[6400:48000]]
    for c in range(2):  # left = the agent's voice, right = the user's, aligned with the video
        n = min(audio.shape[1], len(ref[c])) - 2000
        assert np.corrcoef(audio[c, 1000:n], ref[c][1000:n])[0, 1] > 0.95


def test_recording_completes_when_the_input_stops(pipe, samples, voices, tmp_path):
    """Stop pressed after the microphone went quiet for good: the last picture fills up to the end."""
    from infp.io import read_audio, read_frames

    levels = [Level(64, 2)]
    live = LiveSession(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(steps=2),
                       delay=0.3)
    rec = live.start_recording(tmp_path / "cut.mp4")
    live.start()
    for s in range(0, 30000, 1000):  # 1.875 s: the last hop is incomplete and never generated
        live.ingest(voices["user"][s:s + 1000])
    t0 = time.monotonic()
    live.stop_recording(wait=0.5)
    live.close()
    assert time.monotonic() - t0 < 10 and rec.error is None
    assert len(read_frames(tmp_path / "cut.mp4")) == 47 == rec.frames  # ceil(30000 / 640)
    assert abs(read_audio(tmp_path / "cut.mp4").shape[1] - 47 * 640) < 1100


def test_quality_steps_back_up_when_the_cpu_has_room(pipe, samples, voices):
    """After a forced step down, 20 s (here shortened) of clean hops bring the better level back."""
    levels = [Level(64, 2), Level(48, 2)]
    live = LiveSession(pipe, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(steps=2),
                       delay=0.6)
    live._change(1, "a test asked for it")
    assert live.level.size == 48 and "a test asked for it" in live.note
    live.quality.up_after = 1.28  # seconds of frames
    _run_realtime(live, voices["user"][:48000])
    assert live.level_index == 0 and live.note == ""
    assert [c["size"] for c in live.changes] == [48, 64] and live.changes[-1]["why"] == "the CPU has room again"


def test_a_step_up_that_stays_below_the_best_level_says_so():
    """The page prefixes the note with "Reduced quality": after a step back up that is not yet the best level,
    the note says it went up, not that "the CPU has room again" is why the quality is reduced."""
    from infp.demo.quality import QualityLadder

    q = QualityLadder([Level(256, 6), Level(192, 4), Level(160, 4)])
    q.move(2, "192x192, 4 diffusion steps did not keep up", 1.0)
    assert q.note == "rendering at 160x160, 4 diffusion steps because 192x192, 4 diffusion steps did not keep up"
    q.move(1, "the CPU has room again", 30.0)
    assert q.note == ("rendering at 192x192, 4 diffusion steps, up from 160x160, 4 diffusion steps because the CPU "
                      "has room again")
    q.move(0, "the CPU has room again", 60.0)
    assert q.note == ""


def _ladder_run(q, frames: int, per_step: int, late_every: int = 0, load: float = 0.5):
    """Feed ``frames`` frames to ``q`` in generator steps of ``per_step`` frames (every ``late_every``-th frame not
    delivered, compute ``load`` of real time); (frames fed, move) at the first move, or (frames, None)."""
    from collections import deque

    steps, frame_s = deque(maxlen=100), 0.04
    for first in range(0, frames, per_step):
        idx = range(first, first + per_step)
        late = sum(1 for i in idx if late_every and i % late_every == late_every - 1)
        steps.append((load * per_step * frame_s, late, per_step))
        move = q.after_hop(steps, frame_s)
        if move is not None:
            return first + per_step, move
    return frames, None


@pytest.mark.parametrize("per_step", [1, 4])
def test_the_quality_ladder_judges_frames_and_seconds_whatever_the_generator_steps(per_step):
    """The live generator lets out each frame as soon as its audio allows (one frame per step) or a hop of 4 at once:
    the ladder steps down after 2 s with a fifth of the frames late, or with the load above real time (the session's
    first 2 s are not judged), and not for a twelfth late at 0.97 of real time; it steps back up after 20 s of frames
    with room, and a step down after a step up doubles that wait."""
    from infp.demo.quality import QualityLadder

    def ladder():
        return QualityLadder([Level(256, 6), Level(224, 6), Level(192, 6)])

    at, move = _ladder_run(ladder(), 500, per_step, late_every=5)
    assert at == 100  # the first judgement: 2 s of frames after the session's first 2 s
    assert move[0] == 1 and move[1].startswith("256x256, 6 diffusion steps did not keep up on this CPU (")
    share = int(move[1].split("(")[1].split("%")[0])
    assert 20 <= share <= 21 and move[1].endswith("of frames late, load 0.50)")  # 10 of 50 frames, or 11 of 52
    at, move = _ladder_run(ladder(), 500, per_step, load=1.03)
    assert move is not None and move[0] == 1 and "(0% of frames late, load 1.03)" in move[1] and at == 100
    assert _ladder_run(ladder(), 500, per_step, late_every=12, load=0.97)[1] is None  # 20 s: stays
    q = ladder()
    q.move(1, "a test asked for it", 0.0)
    at, move = _ladder_run(q, 1000, per_step, load=0.3)
    assert move == (0, "the CPU has room again") and at == 500  # 20 s of frames with room
    q.move(0, move[1], 20.0)
    assert _ladder_run(q, 100, per_step, load=1.03)[1][0] == 1  # the step up did not hold
    q.move(1, "again", 24.0)
    assert _ladder_run(q, 996, per_step, load=0.3)[1] is None  # it waits 40 s now
