"""Conversation events (user / agent speech start and end) and barge-in: the state machine on real
speech, a live session with the starter weights, the server's sockets and the example agent."""

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pytest

from infp.audio.vad import StreamingVAD, frame_speech_prob, speech_segments
from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.demo.events import HANGOVER_CHUNKS, ONSET_CHUNKS, ConversationEvents, SpeechTracker
from infp.demo.messages import EVENTS, MessageError, parse
from infp.demo.server import KIND_AGENT_AUDIO, KIND_FRAME, pcm16, unpack
from infp.io import read_audio
from infp.paths import REPO_ROOT

from demo_helpers import connect, demo_process

CHUNK_S = 512 / SAMPLE_RATE
HOP_FRAMES = 4


def _track(probs):
    tracker, out = SpeechTracker(), []
    for i, p in enumerate(probs):
        got = tracker.push(float(p), i * 512)
        if got:
            out.append((got[0], got[1] / SAMPLE_RATE, (i + 1) * CHUNK_S))  # kind, t, decided at
    return out


def test_events_follow_the_silero_speech_segments(samples):
    """joyvasa_001 has six stretches of speech: each start and end within two VAD steps of silero's
    offline segments, decided 64 ms (onset hold) and 320 ms (hangover) after them."""
    audio = read_audio(samples / "audio" / "joyvasa_001.flac")[0]
    segments = speech_segments(frame_speech_prob(audio)[:, 0])
    assert len(segments) == 6
    events = _track(StreamingVAD(1).push(audio[None])[:, 0])
    starts = [(t, at) for kind, t, at in events if kind == "start"]
    ends = [(t, at) for kind, t, at in events if kind == "end"]
    assert len(starts) == len(segments) and len(ends) == len(segments) - 1  # the last one runs to the end of the file
    for (a, b), (t, at) in zip(segments, starts):
        assert abs(t - a) <= 2 * CHUNK_S and at - t == pytest.approx(ONSET_CHUNKS * CHUNK_S)
    for (a, b), (t, at) in zip(segments, ends):
        assert abs(t - b) <= 2 * CHUNK_S and at - t == pytest.approx(HANGOVER_CHUNKS * CHUNK_S)


def test_state_machine_onset_hangover_and_clear():
    hi, lo, mid = 0.9, 0.05, 0.4
    # one loud step is not speech; two are; a pause shorter than the hangover and a step between the
    # thresholds keep it going; the hangover ends it at its first quiet step
    probs = [lo, hi, lo, hi, hi, hi] + [lo] * (HANGOVER_CHUNKS - 1) + [mid, hi] + [lo] * HANGOVER_CHUNKS
    events = _track(probs)
    assert [(k, round(t / CHUNK_S)) for k, t, _ in events] == [("start", 3), ("end", 6 + HANGOVER_CHUNKS + 1)]
    # a clear ends the agent's speech at once; its VAD's memory of the cut speech starts nothing new
    conv = ConversationEvents()
    got = conv.push(np.array([[hi, lo]] * 3), clock=3 * 512)
    assert [e["type"] for e in got] == ["agent_speech_start"] and conv.speaking == {"agent": True, "user": False}
    cut = conv.cut_agent(clock=1600)
    assert cut == [{"type": "agent_speech_end", "t": 0.1, "s": 1600, "clock_s": 0.1, "reason": "clear"}]
    assert conv.cut_agent(clock=1700) == []  # not speaking any more
    assert conv.push(np.array([[hi, lo]] * 3), clock=6 * 512) == []  # still the cut speech
    again = conv.push(np.array([[lo, lo], [hi, lo], [hi, lo]]), clock=9 * 512)
    assert [e["type"] for e in again] == ["agent_speech_start"]  # new speech after a quiet step
    for e in got + cut + again:
        assert parse(json.dumps(e), EVENTS) == e
    with pytest.raises(MessageError):
        parse(json.dumps({**cut[0], "reason": "other"}), EVENTS)


# -- a live session with the starter weights: events, the clear, the avatar's state and mouth ---------
@pytest.fixture(scope="module")
def starter():
    from infp.pipelines.render import Pipeline

    return Pipeline.from_pretrained(REPO_ROOT / "weights")


def _speech_from_first_onset(path, seconds):
    audio = read_audio(path)[0]
    start = int(speech_segments(frame_speech_prob(audio)[:, 0])[0][0] * SAMPLE_RATE)
    return audio[start:start + int(seconds * SAMPLE_RATE)]


def test_barge_in_in_a_live_session_closes_the_mouth(starter, samples):
    """The agent talks; the user starts at 3 s; on user_speech_start the voice is cleared (as an agent
    does). Frames are not rendered (motion only), the audio goes in faster than real time: every
    figure is counted on the audio clock."""
    from infp.demo.live import LiveSession, portraits_for
    from infp.demo.quality import Level
    from infp.eval.barge_in import closed_threshold, first_closed, mouth_openings
    from infp.pipelines.render import RenderSettings

    onset = 3 * SAMPLE_RATE
    agent = _speech_from_first_onset(samples / "audio" / "ditto.flac", 7.0)
    user = np.zeros(7 * SAMPLE_RATE, np.float32)
    user[onset:] = _speech_from_first_onset(samples / "audio" / "hallo_3.flac", 4.0)
    levels = [Level(256, 6)]
    frames, events, cleared = [], [], []

    def on_event(e):
        events.append(e)
        if e["type"] == "user_speech_start":
            cleared.append(live.clear_agent())

    live = LiveSession(starter, portraits_for(samples / "portraits" / "lp_s1.jpg", levels), levels, RenderSettings(),
                       sink=frames.append, encode=False, on_event=on_event, keep_records=True)
    live.session.drop = lambda k: True  # motion only
    live.agent.add(agent, "agent")
    live.start()
    for s in range(0, len(user), SAMPLES_PER_FRAME):
        live.ingest(user[s:s + SAMPLES_PER_FRAME])
        while s // SAMPLES_PER_FRAME - len(frames) > 25:  # at most 1 s ahead of generation, as in real time
            time.sleep(0.005)
    live.finish(timeout=300)

    assert [e["type"] for e in events] == ["agent_speech_start", "user_speech_start", "agent_speech_end"]
    assert events == live.event_log
    start = events[1]
    assert abs(start["t"] - 3.0) <= 0.1 and start["clock_s"] - 3.0 <= 0.3  # decided within 300 ms of the onset
    cut = cleared[0]
    assert events[2] == {"type": "agent_speech_end", "t": cut["t"], "s": round(cut["t"] * SAMPLE_RATE), "clock_s": cut["t"],
                         "reason": "clear"}
    assert cut["t"] == start["clock_s"] and cut["dropped_s"] > 2.0
    s_cut = round(cut["t"] * SAMPLE_RATE)
    k_cut = s_cut // SAMPLES_PER_FRAME
    assert [f.index for f in frames] == list(range(len(user) // SAMPLES_PER_FRAME))
    states = [f.state for f in frames]
    assert states[25:k_cut].count("speaking") > 30  # the agent talked alone before the onset
    # back to listening within one hop of the cut, and listening from there on (idle in the user's short pauses)
    after = states[k_cut + HOP_FRAMES:]
    assert set(after) <= {"listening", "idle"} and after.count("listening") > 0.8 * len(after)
    # the mouth: closed (keypoints of the generated latents) within 200 ms of the voice's end
    # (closed: as while listening, as benchmarks/agent_events.py measures it)
    opening = mouth_openings(starter.stage1.net, np.stack([f.latent for f in frames]))
    speaking = opening[[i for i, s in enumerate(states) if s == "speaking"]]
    threshold = closed_threshold(opening[[i for i, s in enumerate(states) if s == "listening"]])
    assert np.median(speaking) > 1.3 * threshold  # the mouth moved while the agent spoke
    k = first_closed(opening, k_cut, threshold)
    assert k is not None and (k * SAMPLES_PER_FRAME - s_cut) / SAMPLE_RATE <= 0.2


# -- the server: events on /ws and /ws/agent, and the example agent against it -------------------------
@pytest.fixture(scope="module")
def server(tiny_weights):
    with demo_process([sys.executable, "-m", "infp.cli", "demo", "--port", "0", "--checkpoint", str(tiny_weights),
                       "--steps", "2", "--delay-ms", "500"]) as server:
        yield server


def test_example_agent_stops_on_barge_in(server, samples):
    """The example agent talks; the page's microphone waits until the avatar speaks, then the user talks
    for 3 s: the agent clears its voice, the avatar listens, and the agent replies after the user stops."""
    user = _speech_from_first_onset(samples / "audio" / "hallo_3.flac", 3.0)
    example = subprocess.Popen([sys.executable, str(REPO_ROOT / "demo" / "agent_example.py"), "--url",
                                server["ws"] + "/ws/agent", "--seconds", "16"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws, hello = await connect(http, server["ws"] + "/ws")
            assert hello["type"] == "hello"
            watcher = await http.ws_connect(server["ws"] + "/ws/agent")  # a second agent socket sees the events too
            assert (await watcher.receive_json())["type"] == "ready"
            page = {"frames": [], "texts": [], "agent_audio": 0}
            mic_state = {"onset": None}

            async def mic():
                t0, s, speak_at = time.monotonic(), 0, None
                while s < 60 * SAMPLE_RATE and (speak_at is None or s - speak_at < 9 * SAMPLE_RATE):
                    if speak_at is None and page["agent_audio"] >= 25:  # the avatar has spoken for 1 s
                        speak_at = s
                        mic_state["onset"] = s
                    chunk = np.zeros(SAMPLES_PER_FRAME, np.float32)
                    if speak_at is not None:
                        piece = user[s - speak_at:s - speak_at + SAMPLES_PER_FRAME]
                        chunk[:len(piece)] = piece
                    await ws.send_bytes(pcm16(chunk))
                    s += SAMPLES_PER_FRAME
                    await asyncio.sleep(max(0.0, t0 + s / SAMPLE_RATE - time.monotonic()))

            async def receive():
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        kind, header, _ = unpack(msg.data)
                        if kind == KIND_FRAME:
                            page["frames"].append(header)
                        elif kind == KIND_AGENT_AUDIO:
                            page["agent_audio"] += 1
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        page["texts"].append(json.loads(msg.data))
                    else:
                        break

            async def watch():
                seen = []
                async for msg in watcher:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    seen.append(json.loads(msg.data))
                return seen

            rx, wt = asyncio.create_task(receive()), asyncio.create_task(watch())
            await mic()
            # malformed messages on /ws/agent are still answered with an error while events flow
            for bad in ('{"type": "clear", "x": 1}', "[]", "not json", '{"type": "user_speech_start"}'):
                await watcher.send_str(bad)
            await asyncio.sleep(1.0)
            await watcher.close()
            await ws.close()
            rx.cancel()
            return page, await wt, mic_state["onset"]

    page, watched, onset = asyncio.run(scenario())
    out, err = example.communicate(timeout=90)
    assert example.returncode == 0, err
    assert onset is not None, out
    # the example's own account: interrupted once, cleared, replied
    assert "user_speech_start" in out and "barge-in: voice cleared" in out and "the user stopped" in out, out
    assert "done: interrupted 1 time(s)" in out, out
    # the events, on the page's socket and on a second agent socket: valid, in order, on the clock
    for events in ([m for m in page["texts"] if m["type"].endswith(("_start", "_end"))],
                   [m for m in watched if m["type"].endswith(("_start", "_end"))]):
        for e in events:
            assert parse(json.dumps(e), EVENTS) == e
        clocks = [e["clock_s"] for e in events]
        assert clocks == sorted(clocks)
        for who in ("user", "agent"):
            mine = [e for e in events if e["type"].startswith(who)]
            assert [e["type"].rsplit("_", 1)[1] for e in mine] == ["start", "end"] * (len(mine) // 2) + ["start"] * (len(mine) % 2)
            assert [e["t"] for e in mine] == sorted(e["t"] for e in mine)
        kinds = [e["type"] for e in events]
        assert kinds[:4] == ["agent_speech_start", "user_speech_start", "agent_speech_end", "user_speech_end"]
        assert kinds[4] == "agent_speech_start"  # the reply
        user_start, agent_end, user_end = events[1], events[2], events[3]
        assert abs(user_start["t"] - onset / SAMPLE_RATE) <= 0.1 and user_start["clock_s"] - onset / SAMPLE_RATE <= 0.3
        assert agent_end["reason"] == "clear" and agent_end["t"] >= user_start["clock_s"]
    errors = [m for m in watched if m["type"] == "error"]
    assert len(errors) == 4 and "unknown field" in errors[0]["message"] and "unknown message type" in errors[3]["message"]
    # the avatar: back to listening within one hop of the clear, listening until the user stops
    k_cut = round(agent_end["t"] * SAMPLE_RATE) // SAMPLES_PER_FRAME
    k_end = round(user_end["t"] * SAMPLE_RATE) // SAMPLES_PER_FRAME
    states = {h["k"]: h["state"] for h in page["frames"]}
    window = [states[k] for k in range(k_cut + HOP_FRAMES, k_end) if k in states]
    assert len(window) > 30 and set(window) <= {"listening", "idle"} and window.count("listening") > 0.8 * len(window)
    assert server["proc"].poll() is None
    print(out)  # the example's own account of the session (pytest -s shows it)
