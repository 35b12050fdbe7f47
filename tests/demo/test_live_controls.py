"""Expression controls in the live demo: the ``controls`` message, its checks, and the motion following it
from the hop at the session clock (small weights whose stage 2 takes controls)."""

import asyncio
import json
import re
import sys
import time

import aiohttp
import numpy as np
import pytest

from infp.demo.live import LiveSession, portraits_for
from infp.demo.messages import AGENT, PAGE, MessageError, controls_of, parse
from infp.demo.quality import Level
from infp.demo.server import pcm16
from infp.models.controls import CONTROL_NAMES, PRESETS, Controls
from infp.pipelines.render import Pipeline, RenderSettings

from demo_helpers import demo_process

LEVELS = [Level(64, 2)]


def _msg(**fields) -> str:
    return json.dumps({"type": "controls", **fields})


def test_controls_messages_are_checked():
    for table in (PAGE, AGENT):
        msg = parse(_msg(speak={"smile": 0.8, "yaw": 0}, listen={"head_motion": None}), table)
        assert controls_of(msg) == Controls(speak={"smile": 0.8, "yaw": 0.0})
    # a preset, values on top of it, null: back to the model's own choice
    msg = parse(_msg(preset="warm", speak={"smile": 0.2, "head_motion": None}), PAGE)
    warm = PRESETS["warm"]
    assert controls_of(msg).to_dict() == {"speak": {"smile": 0.2, "brow": warm["speak"]["brow"]}, "listen": warm["listen"]}
    assert not controls_of(parse(_msg(), PAGE))  # nothing given: all left to the model
    refused = {
        _msg(speak={"smile": 1.5}): "controls: speak.smile must be between 0 and 1, not 1.5",
        _msg(listen={"grin": 0.5}): "controls: listen: unknown name 'grin'",
        _msg(speak={"smile": "high"}): "controls: speak.smile must be a number, not a string",
        _msg(speak={"smile": True}): "controls: speak.smile must be a number, not a boolean",
        _msg(speak=[0.5]): "controls: speak must be an object, not an array",
        _msg(preset="angry"): "controls: preset must be one of neutral, warm, calm, excited, serious",
        _msg(mood="warm"): "controls: unknown field 'mood'",
        '{"type": "controls", "speak": {"smile": NaN}}': "not a number JSON allows",
        '{"type": "controls", "speak": {"smile": 1e999}}': "finite",
    }
    for text, why in refused.items():
        with pytest.raises(MessageError, match=re.escape(why)):
            parse(text, PAGE)


# -- the live session -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe(controls_weights):
    return Pipeline.from_pretrained(controls_weights)


@pytest.fixture(scope="module")
def portraits(samples):
    return portraits_for(samples / "portraits" / "lp_s1.jpg", LEVELS)


def _run(pipe, portraits, changes=None, chunks=60, record=None):
    """Silence on both channels, 40 ms at a time; ``changes``: {chunk: Controls} set before that chunk."""
    seen, replies = [], []
    live = LiveSession(pipe, portraits, LEVELS, RenderSettings(steps=2), delay=5.0, sink=seen.append).start()
    for i in range(chunks):
        if record is not None and i == record[0]:
            live.start_recording(record[2])
        if changes and i in changes:
            replies.append(live.set_controls(changes[i]))
        live.ingest(np.zeros(640, np.float32))
        if record is not None and i + 1 == record[1]:
            rec = live.stop_recording(wait=30)
            replies.append(rec.metadata())
    live.finish(timeout=60)
    return live, np.stack([f.latent for f in seen]), replies


def test_controls_change_the_motion_from_the_hop_at_the_clock(pipe, portraits):
    live, ref, _ = _run(pipe, portraits)
    assert live.controls_available and not live.controls and live.snapshot()["controls"] == {"speak": {}, "listen": {}}
    smile = Controls(speak={"smile": 1.0})
    live, moved, (change,) = _run(pipe, portraits, {30: smile})
    # set at sample 30 * 640 = 19200, in hop 7: frames 28 .. on are generated with the controls
    assert change == {"k": 28, "t": 1.12, "speak": {"smile": 1.0}, "listen": {}}
    assert np.array_equal(moved[:28], ref[:28])
    step = np.abs(np.diff(ref[8:], axis=0)).mean()  # how much the motion moves from frame to frame without them
    assert np.abs(moved[28:32] - ref[28:32]).mean() > 2 * step  # the first hop with controls moves already
    assert np.abs(moved[32:].mean(0) - ref[32:].mean(0)).mean() > 2 * step
    assert live.controls == smile and live.snapshot()["controls"] == smile.to_dict()
    assert [c["k"] for c in live.controls_log] == [0, 28]
    # other controls, other motion; back to none: the model's own choice again, from that hop on
    _, calm, _ = _run(pipe, portraits, {30: Controls.preset("calm")})
    assert np.abs(calm[32:].mean(0) - moved[32:].mean(0)).mean() > 2 * step
    live, back, (c1, c2) = _run(pipe, portraits, {30: smile, 45: None})
    assert c2["k"] == 44 and c2["speak"] == {} and np.array_equal(back[:44], moved[:44])
    assert not np.array_equal(back[44:48], moved[44:48])


def test_a_recording_keeps_the_controls_in_effect(pipe, portraits, tmp_path):
    path = tmp_path / "session.mp4"
    warm = Controls.preset("warm")
    live, _, (change, meta) = _run(pipe, portraits, {30: warm}, chunks=52, record=(10, 48, path))
    assert meta["frames"] == 38 and meta["first_session_frame"] == 10
    assert meta["controls"] == [{"k": 0, "t": 0.0, "speak": {}, "listen": {}},
                                {"k": 18, "t": 0.72, **warm.to_dict()}]  # session frame 28 = frame 18 of the recording
    assert json.loads(path.with_suffix(".json").read_text()) == meta


# -- over the protocol ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(controls_weights):
    with demo_process([sys.executable, "-m", "infp.cli", "demo", "--port", "0", "--checkpoint", str(controls_weights),
                       "--steps", "2", "--delay-ms", "500"]) as server:
        yield server


async def _mic(ws):
    """Silence as a microphone, 40 ms at a time in real time: the session's clock."""
    t0 = time.monotonic()
    for i in range(10**6):
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.04 - time.monotonic()))
        await ws.send_bytes(pcm16(np.zeros(640, np.float32)))


async def _text(ws, kinds, timeout=15.0, frames=None) -> dict:
    """The next JSON message of one of ``kinds`` (frames are counted into ``frames``, other messages skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.BINARY:
            if frames is not None:
                frames.append(msg.data)
        elif msg.type == aiohttp.WSMsgType.TEXT:
            m = json.loads(msg.data)
            if m["type"] in kinds:
                return m
        else:
            raise AssertionError(f"connection ended: {msg}")


def test_controls_over_the_page_and_agent_sockets(server):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            info = await (await http.get(server["url"] + "/api/info")).json()
            assert info["controls_available"] and info["controls_note"] is None
            assert info["control_names"] == list(CONTROL_NAMES) and info["presets"] == PRESETS
            ws = await http.ws_connect(server["ws"] + "/ws")
            hello = await ws.receive_json()
            assert hello["type"] == "hello" and hello["controls_available"]
            assert hello["controls"] == {"speak": {}, "listen": {}}
            mic = asyncio.create_task(_mic(ws))
            frames = []
            await ws.send_str(_msg(speak={"smile": 0.8, "eyes": None}, listen={"head_motion": 0.3}))
            reply = await _text(ws, {"controls", "error"}, frames=frames)
            assert reply["type"] == "controls" and reply["by"] == "page"
            assert reply["speak"] == {"smile": 0.8} and reply["listen"] == {"head_motion": 0.3}
            assert reply["k"] % 4 == 0 and reply["t"] == pytest.approx(reply["k"] / 25)
            # bad values: one error each, the controls stay, frames keep coming
            for text in (_msg(speak={"smile": 1.5}), _msg(listen={"grin": 0.5}), _msg(preset="angry"), _msg(speak=3)):
                await ws.send_str(text)
                err = await _text(ws, {"controls", "error"}, frames=frames)
                assert err["type"] == "error" and err["message"].startswith("controls:"), err
            n = len(frames)
            stats = await _text(ws, {"stats"}, frames=frames)
            stats = await _text(ws, {"stats"}, frames=frames)
            assert len(frames) > n and stats["controls"] == {"speak": {"smile": 0.8}, "listen": {"head_motion": 0.3}}
            # an agent sets a mood: it and the page are told
            agent = await http.ws_connect(server["ws"] + "/ws/agent")
            assert (await agent.receive_json())["controls_available"] is True
            await agent.send_json({"type": "controls", "preset": "calm"})
            mine = await _text(agent, {"controls", "error"})
            seen = await _text(ws, {"controls"})
            assert mine == seen and mine["by"] == "agent" and mine["speak"] == PRESETS["calm"]["speak"]
            await agent.send_json({"type": "controls", "listen": {"smile": -1}})
            assert "controls: listen.smile must be between 0 and 1" in (await _text(agent, {"error"}))["message"]
            await agent.send_json({"type": "status"})
            status = await _text(agent, {"status"})
            assert status["controls"] == {"speak": PRESETS["calm"]["speak"], "listen": PRESETS["calm"]["listen"]}
            # the page clears them
            await ws.send_str(_msg())
            assert (await _text(ws, {"controls"}))["speak"] == {}
            assert (await _text(agent, {"controls"}))["by"] == "page"
            mic.cancel()
            await agent.close()
            await ws.close()

    asyncio.run(scenario())
    assert server["proc"].poll() is None
