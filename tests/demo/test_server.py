"""The demo server over its WebSocket protocol: frames and agent audio on one clock, one session at a time."""

import asyncio
import json
import sys
import time

import aiohttp
import cv2
import numpy as np
import pytest

from infp.demo.server import KIND_FRAME, StreamResampler, pack, pcm16, tts_available, unpack
from infp.io import read_frames

from demo_helpers import connect, demo_process, until_free


@pytest.fixture(scope="module")
def server(tiny_weights, tmp_path_factory, samples):
    """`infp demo` on a free port (small weights, generous delay), stopped after the tests."""
    rec = tmp_path_factory.mktemp("recordings")
    with demo_process([sys.executable, "-m", "infp.cli", "demo", "--port", "0", "--checkpoint", str(tiny_weights),
                       "--steps", "2", "--delay-ms", "500", "--record-dir", str(rec),
                       "--allow-origin", "http://allowed.example"]) as server:
        yield {**server, "rec": rec}


def test_pack_unpack_and_resampler():
    msg = pack(KIND_FRAME, {"k": 3, "state": "both"}, b"\xff\xd8jpeg")
    kind, header, payload = unpack(msg)
    assert (kind, header, payload) == (KIND_FRAME, {"k": 3, "state": "both"}, b"\xff\xd8jpeg")
    assert (len(msg) - len(payload)) % 4 == 0  # payload 4-byte aligned
    # a 24 kHz tone sent in uneven pieces comes out at 16 kHz without gaps or clicks
    t = np.arange(24000) / 24000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    rs = StreamResampler(24000)
    out = np.concatenate([rs(tone[i:i + n]) for i, n in zip(range(0, 24000, 1000), [1000] * 24)])
    assert abs(len(out) - 16000) <= 2
    ref = np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    assert np.abs(out - ref).max() < 0.02


async def _mic(ws, audio, start_at=0.0):
    """Send audio as a microphone: 40 ms chunks at real-time pace."""
    t0 = time.monotonic() - start_at
    for s in range(0, len(audio), 640):
        await asyncio.sleep(max(0.0, t0 + (s + 640) / 16000 - time.monotonic()))
        await ws.send_bytes(pcm16(audio[s:s + 640]))


async def _collect(ws, until, timeout=30.0):
    frames, audio, texts = [], [], []
    deadline = time.monotonic() + timeout
    while not until(frames, audio, texts) and time.monotonic() < deadline:
        try:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.BINARY:
            kind, header, payload = unpack(msg.data)
            (frames if kind == KIND_FRAME else audio).append((header, payload))
        elif msg.type == aiohttp.WSMsgType.TEXT:
            texts.append(json.loads(msg.data))
        else:
            break
    return frames, audio, texts


def test_session_frames_agent_audio_and_refusal_of_a_second_session(server, voices):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws, hello = await connect(http, server["ws"] + "/ws")
            assert hello["type"] == "hello" and hello["sample_rate"] == 16000 and hello["delay_ms"] == 500
            assert "ditto.flac" in hello["files"]
            # the user talks (the partner channel): frames arrive, the avatar listens
            mic = asyncio.create_task(_mic(ws, np.concatenate([voices["user"][:32000], np.zeros(64000, np.float32)])))
            frames, audio, texts = await _collect(ws, lambda f, a, t: len(f) >= 40)
            assert [h["k"] for h, _ in frames] == list(range(len(frames)))
            pics = [(h, p) for h, p in frames if p]
            assert len(pics) >= 30 and cv2.imdecode(np.frombuffer(pics[-1][1], np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
            assert sum(h["state"] == "listening" for h, _ in frames[10:]) > 15
            assert all(h["lat"] <= 500 for h, p in pics)
            # a second page at the same time is refused with a clear message; the first goes on
            other = await http.ws_connect(server["ws"] + "/ws")
            busy = await other.receive_json()
            assert busy["type"] == "busy" and "one" in busy["message"] and "Try again" in busy["message"]
            closing = await other.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and other.close_code == 1013
            info = await (await http.get(server["url"] + "/api/info")).json()
            assert info["busy"] and info["refused"] >= 1
            # the agent's file plays: its audio comes back stamped on the clock and the avatar speaks
            await ws.send_json({"type": "play", "files": ["ditto.flac"]})
            frames2, audio2, texts2 = await _collect(
                ws, lambda f, a, t: len(a) >= 20 and sum(h["state"] == "speaking" for h, _ in f) >= 10)
            assert any(t["type"] == "agent" and t["playing"] == "ditto.flac" for t in texts2)
            starts = [h["s"] for h, _ in audio2]
            assert starts == sorted(starts) and all(s % 640 == 0 and h["n"] == 640 for s, (h, _) in zip(starts, audio2))
            assert all(b - a == 640 for a, b in zip(starts, starts[1:]))  # contiguous agent voice
            assert sum(h["state"] == "speaking" for h, _ in frames2) >= 10
            ks = [h["k"] for h, _ in frames + frames2]
            assert ks == sorted(set(ks))  # every frame once, in order
            stats = [t for t in texts + texts2 if t["type"] == "stats"]
            assert stats and stats[-1]["latency_ms"]["p95"] is not None and stats[-1]["fps"] > 0
            mic.cancel()
            await ws.close()
            # the slot is free again: a new session is served
            ws3, hello3 = await connect(http, server["ws"] + "/ws")
            assert hello3["type"] == "hello"
            await ws3.close()

    asyncio.run(scenario())
    assert server["proc"].poll() is None  # the server is still up


async def _reply(agent):
    """The next reply on /ws/agent, past the conversation events that may come first."""
    while True:
        msg = await agent.receive_json()
        if not msg["type"].endswith(("_speech_start", "_speech_end")):
            return msg


def test_external_agent_pcm_tts_and_recording(server, voices):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            agent = await http.ws_connect(server["ws"] + "/ws/agent")
            ready = await agent.receive_json()
            assert ready["type"] == "ready" and ready["sample_rate"] == 16000
            await until_free(http, server["url"])
            await agent.send_bytes(pcm16(voices["agent"][:1600]))  # no live session yet
            assert "no live session" in (await agent.receive_json())["message"]

            ws, hello = await connect(http, server["ws"] + "/ws")
            assert hello["type"] == "hello"
            mic = asyncio.create_task(_mic(ws, np.zeros(16000 * 120, np.float32)))
            await ws.send_json({"type": "record", "on": True})
            # an external agent streams its voice at 24 kHz, 100 ms per message
            await agent.send_json({"type": "format", "sample_rate": 24000, "encoding": "s16le"})
            assert (await _reply(agent))["sample_rate"] == 24000
            from infp.io import resample

            v24 = resample(voices["agent"][:48000], 16000, 24000)
            for i in range(0, len(v24), 2400):
                await agent.send_bytes(pcm16(v24[i:i + 2400]))
            await agent.send_json({"type": "status"})
            status = await _reply(agent)
            assert status["live"] and status["playing"] == "external" and status["queued_s"] > 1.0
            frames, audio, texts = await _collect(
                ws, lambda f, a, t: sum(h["state"] == "speaking" for h, _ in f) >= 15 and len(a) >= 30)
            assert sum(h["state"] == "speaking" for h, _ in frames) >= 15
            got = np.concatenate([np.frombuffer(p, "<i2") for _, p in audio]).astype(np.float32) / 32768
            ref = voices["agent"][: len(got)]
            assert np.corrcoef(got[2000:], ref[2000:])[0, 1] > 0.9  # the agent's voice, resampled to 16 kHz
            await agent.send_json({"type": "clear"})
            assert (await _reply(agent))["type"] == "cleared"
            # text-to-speech
            await ws.send_json({"type": "say", "text": "Hello there, nice to meet you."})
            _, _, t2 = await _collect(ws, lambda f, a, t: any(m["type"] in ("agent", "error") for m in t))
            reply = [m for m in t2 if m["type"] in ("agent", "error")][0]
            if tts_available():
                assert reply["type"] == "agent" and reply["playing"].startswith("tts:")
            else:
                assert reply["type"] == "error" and "not installed" in reply["message"]
            await ws.send_json({"type": "record", "on": False})
            _, _, t3 = await _collect(ws, lambda f, a, t: any(m["type"] == "recording" and m["state"] == "saved" for m in t))
            saved = [m for m in t3 if m["type"] == "recording" and m["state"] == "saved"][0]
            body = await (await http.get(server["url"] + saved["url"])).read()
            mic.cancel()
            await ws.close()
            await agent.close()
            return saved, body

    saved, body = asyncio.run(scenario())
    path = server["rec"] / saved["name"]
    assert path.read_bytes() == body and len(read_frames(path)) == saved["frames"] > 25
    meta = json.loads(path.with_suffix(".json").read_text())  # beside it: frames and the controls in effect
    assert meta["frames"] == saved["frames"] and meta["controls"] == saved["controls"] == [
        {"k": 0, "t": 0.0, "speak": {}, "listen": {}}]
    assert server["proc"].poll() is None


def test_bad_requests_get_errors_not_crashes(server, voices):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws, hello = await connect(http, server["ws"] + "/ws")
            assert hello["type"] == "hello"
            for bad in ({"type": "play", "files": ["../../etc/passwd"]}, {"type": "nonsense"}, {"type": "say", "text": ""},
                        {"type": "record", "on": False}):
                await ws.send_json(bad)
                _, _, texts = await _collect(ws, lambda f, a, t: any(m["type"] == "error" for m in t), timeout=10)
                assert any(m["type"] == "error" for m in texts), bad
            assert (await http.get(server["url"] + "/recordings/..%2Fsecret")).status == 404
            assert (await http.post(server["url"] + "/api/upload?name=x.wav", data=b"not audio")).status == 400
            # an audio file uploaded from the page is queued as the agent's voice
            good = await http.post(server["url"] + "/api/upload?name=agent.wav", data=(voices["dir"] / "agent.wav").read_bytes())
            assert good.status == 200 and await good.json() == {"queued": "agent.wav", "seconds": 4.0}
            page = await (await http.get(server["url"] + "/")).text()
            assert "avatar" in page and "/static/app.js" in page
            await ws.close()

    asyncio.run(scenario())
    assert server["proc"].poll() is None


def test_controls_are_refused_when_the_weights_have_none(server):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws, hello = await connect(http, server["ws"] + "/ws")
            assert hello["controls_available"] is False and "trained without expression controls" in hello["controls_note"]
            mic = asyncio.create_task(_mic(ws, np.zeros(16000 * 10, np.float32)))
            await ws.send_json({"type": "controls", "preset": "warm"})
            frames, _, texts = await _collect(ws, lambda f, a, t: any(m["type"] == "error" for m in t) and len(f) >= 20)
            errors = [m for m in texts if m["type"] == "error"]
            assert len(errors) == 1 and "trained without expression controls" in errors[0]["message"]
            assert len(frames) >= 20 and not any(m["type"] == "controls" for m in texts)  # the session goes on
            mic.cancel()
            await ws.close()

    asyncio.run(scenario())
    assert server["proc"].poll() is None


def test_other_web_pages_are_refused_unless_allowed(server):
    port = server["url"].rsplit(":", 1)[1]

    async def scenario():
        async with aiohttp.ClientSession() as http:
            for origin in (f"http://127.0.0.1:{port}", "http://allowed.example", None):  # own page, --allow-origin, no browser
                agent = await http.ws_connect(server["ws"] + "/ws/agent", origin=origin)
                assert (await agent.receive_json())["type"] == "ready"
                await agent.close()
            for path in ("/ws", "/ws/agent"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(server["ws"] + path, origin="http://evil.example")
                assert refused.value.status == 403
            r = await http.post(server["url"] + "/api/upload?name=x.wav", data=b"RIFF", headers={"Origin": "http://evil.example"})
            assert r.status == 403 and "--allow-origin" in await r.text()

    asyncio.run(scenario())
