"""The live server against hostile and broken input: foreign pages, option injection, NaN PCM,
malformed messages, and uploads that are large, long, stalled or declared larger than they are."""

import asyncio
import json
import math
import re
import sys
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
import soundfile as sf

from infp.demo.agent import AgentVoice
from infp.demo.messages import AGENT, PAGE, MessageError, parse
from infp.demo.server import KIND_FRAME, Access, TooLong, clean_pcm, decode_audio, pack, pcm16, synthesize, tts_available, unpack
from infp.errors import InfpError, MediaError

from demo_helpers import demo_process

LAUNCH = """
import json, sys
from pathlib import Path
import torch
from infp.demo.server import DemoServer, Limits, serve
from infp.paths import REPO_ROOT
from infp.pipelines.render import Pipeline, RenderSettings

cfg = json.loads(sys.argv[1])
torch.set_num_threads(2)
pipe = Pipeline.from_pretrained(Path(cfg["checkpoint"]))
server = DemoServer(pipe, REPO_ROOT / "data/samples/portraits/lp_s1.jpg", RenderSettings(steps=2), delay=0.5,
                    audio_dir=REPO_ROOT / "data/samples/audio", record_dir=Path(cfg["rec"]),
                    allow_origins=cfg["allow"], limits=Limits(**cfg["limits"]))
serve(server, "127.0.0.1", 0)
"""

LIMITS = {"upload_bytes": 8 * 2**20, "body_timeout_s": 1.0, "queue_s": 30.0}  # upload_s: the default 600 s


@pytest.fixture(scope="module")
def server(tiny_weights, tmp_path_factory):
    """The demo server with small limits (8 MB uploads, 1 s body timeout, 30 s agent queue) and one allowed origin."""
    rec = tmp_path_factory.mktemp("recordings")
    cfg = {"checkpoint": str(tiny_weights), "rec": str(rec), "allow": ["https://allowed.example"], "limits": LIMITS}
    with demo_process([sys.executable, "-c", LAUNCH, json.dumps(cfg)]) as server:
        yield server


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


async def _session(http, server):
    """Open the page's session (retrying while a previous one is torn down)."""
    for _ in range(50):
        ws = await http.ws_connect(server["ws"] + "/ws")
        first = await ws.receive_json()
        if first["type"] == "hello":
            return ws
        await ws.close()
        await asyncio.sleep(0.2)
    raise AssertionError("no session")


async def _next_text(ws, timeout=10.0) -> dict:
    """The next JSON message (frames, agent audio and stats are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.TEXT:
            m = json.loads(msg.data)
            if m["type"] != "stats":
                return m
        elif msg.type != aiohttp.WSMsgType.BINARY:
            raise AssertionError(f"connection ended: {msg}")


async def _raw(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, float, str]:
    """Send a hand-made HTTP request; (status, seconds to the answer, answer body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(head.replace("\n", "\r\n").encode() + body)
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        elapsed = time.monotonic() - t0
        rest = await asyncio.wait_for(reader.read(4096), 2)
    finally:
        writer.close()
    return int(status_line.split()[1]), elapsed, rest.decode(errors="replace").split("\r\n\r\n", 1)[-1]


# -- unit tests ---------------------------------------------------------------------------------------
def test_access_rules():
    local = Access("127.0.0.1", ["https://allowed.example"])
    assert local.host_ok("127.0.0.1:8000") and local.host_ok("localhost:8000") and local.host_ok("[::1]:8000")
    assert local.host_ok("allowed.example") and not local.host_ok("evil.example:8000")  # DNS rebinding
    assert not local.host_ok("192.168.1.5:8000") and not local.host_ok("bad host")
    own = "127.0.0.1:8000"
    assert local.origin_ok("http://127.0.0.1:8000", own) and local.origin_ok("http://localhost:8000", own)
    assert local.origin_ok("https://allowed.example", own)
    for foreign in ("http://evil.example", "http://127.0.0.1:9000", "null", "https://allowed.example:444",
                    "http://allowed.example"):
        assert not local.origin_ok(foreign, own), foreign
    everywhere = Access("0.0.0.0")
    assert everywhere.host_ok("192.168.1.5:8000") and not everywhere.host_ok("evil.example:8000")
    assert everywhere.origin_ok("http://192.168.1.5:8000", "192.168.1.5:8000")
    assert not everywhere.origin_ok("http://10.0.0.9:8000", "192.168.1.5:8000")
    named = Access("studio.lan")
    assert named.host_ok("studio.lan:8000") and named.origin_ok("http://studio.lan:8000", "studio.lan:8000")
    assert Access("127.0.0.1", ["*"]).origin_ok("http://evil.example", "evil.example")
    with pytest.raises(InfpError, match="not an origin"):
        Access("127.0.0.1", ["my.site"])


@pytest.mark.parametrize("text", ["[]", "null", '"x"', "1", "true", "{not json", "NaN", '{"a": Infinity}',
                                  "[" * 100000, '{"type": 1}', '{"type": "nonsense"}'])
def test_messages_that_are_not_protocol_objects_are_refused(text):
    for table in (PAGE, AGENT):
        with pytest.raises(MessageError):
            parse(text, table)


def test_message_fields_are_checked():
    assert parse('{"type": "play", "files": ["a.flac"]}', PAGE)["files"] == ["a.flac"]
    bad = {'{"type": "play", "files": "a.flac"}': "must be an array",
           '{"type": "play", "files": [1]}': r"files\[0\] must be a string",
           '{"type": "play", "files": []}': "must not be empty",
           '{"type": "say", "text": "hi", "voice": "-f/etc/passwd"}': "is not valid",
           '{"type": "say", "text": "%s"}' % ("a" * 1001): "at most 1000",
           '{"type": "say"}': "text is missing",
           '{"type": "stop", "x": 1}': "unknown field",
           '{"type": "record", "on": "yes"}': "true or false",
           '{"type": "client_stats", "fps": 1e999}': "finite",
           '{"type": "client_stats", "fps": true}': "must be a number"}
    for text, why in bad.items():
        with pytest.raises(MessageError, match=why):
            parse(text, PAGE)
    with pytest.raises(MessageError, match="between 8000 and 192000"):
        parse('{"type": "format", "sample_rate": 1}', AGENT)
    with pytest.raises(MessageError, match="s16le, f32le"):
        parse('{"type": "format", "encoding": "u8"}', AGENT)


def test_json_out_is_finite_and_pcm_in_is_clean():
    msg = pack(KIND_FRAME, {"vad": [float("nan"), 0.5], "level": [float("-inf"), -20.0]})
    assert b"NaN" not in msg and b"Infinity" not in msg
    assert unpack(msg)[1] == {"vad": [None, 0.5], "level": [None, -20.0]}
    with pytest.raises(ValueError, match="NaN or infinite"):
        clean_pcm(np.array([0.1, np.nan], np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        clean_pcm(np.array([np.inf], np.float32))
    assert clean_pcm(np.array([1e30, -5.0, 0.25], np.float32)).tolist() == [1.0, -1.0, 0.25]


def test_agent_queue_bound():
    voice = AgentVoice(max_seconds=2.0)
    voice.add(np.ones(24000, np.float32), "a")
    with pytest.raises(InfpError, match=r"b: 1.0 s would not fit in the agent's queue \(1.5 s waiting, at most 2 s\)"):
        voice.add(np.ones(16000, np.float32), "b")
    assert len(voice.read(16000)) == 16000 and voice.status()["queued_s"] == 0.5
    voice.add(np.ones(24000, np.float32), "b")  # room again once played
    assert voice.clear() == 2.0 and voice.status()["queued_s"] == 0.0


@pytest.mark.skipif(tts_available() is None, reason="espeak-ng is not installed")
def test_tts_text_is_never_an_option(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("This file must never be read aloud by the server. " * 40)
    assert len(synthesize(story.read_text())) / 16000 > 60  # reading the file would take over a minute
    for text in (f"-f{story}", f"-f {story}", f"--path={tmp_path} -f {story}"):
        assert len(synthesize(text)) / 16000 < 30, text  # the characters themselves, spoken
    with pytest.raises(InfpError, match="not an espeak-ng voice"):
        synthesize("hello", voice=f"-f{story}")
    with pytest.raises(InfpError, match="nothing to say"):
        synthesize("\x01\x02 ")


def test_decoding_is_bounded_before_it_starts(tmp_path):
    long = tmp_path / "long.flac"
    with sf.SoundFile(str(long), "w", 8000, 1, "PCM_16") as f:
        for _ in range(30):
            f.write(np.zeros(8000 * 60, np.int16))  # 30 minutes of silence, a few hundred kB
    t0 = time.monotonic()
    with pytest.raises(TooLong, match="long.flac: 1800 s of audio; at most 600 s"):
        decode_audio(long, 600)
    assert time.monotonic() - t0 < 2
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.1, np.nan, 0.2] * 1000, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN"):
        decode_audio(nan, 600)
    playlist = tmp_path / "list.wav"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n")
    with pytest.raises(MediaError):
        decode_audio(playlist, 600)


# -- the server ---------------------------------------------------------------------------------------
def test_foreign_pages_and_host_names_are_refused(server):
    url, ws, port = server["url"], server["ws"], server["port"]

    async def scenario():
        async with aiohttp.ClientSession() as http:
            for path in ("/ws", "/ws/agent"):
                for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                        await http.ws_connect(ws + path, origin=origin)
                    assert e.value.status == 403, (path, origin)
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:  # DNS rebinding: a foreign name in Host
                    await http.ws_connect(ws + path, headers={"Host": f"evil.example:{port}"})
                assert e.value.status == 403
            r = await http.post(url + "/api/upload?name=a.wav", data=b"RIFF", headers={"Origin": "http://evil.example"})
            assert r.status == 403 and "cross-site" in await r.text()
            r = await http.get(url + "/api/info", headers={"Host": "evil.example"})
            assert r.status == 403 and "not a name of this server" in await r.text()
            # the page's own origin, loopback names, an allowed origin and clients without Origin are served
            for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", "https://allowed.example", None):
                agent = await http.ws_connect(ws + "/ws/agent", origin=origin)
                assert (await agent.receive_json())["type"] == "ready", origin
                await agent.close()
            agent = await http.ws_connect(ws + "/ws/agent", headers={"Host": f"localhost:{port}"})
            assert (await agent.receive_json())["type"] == "ready"
            await agent.close()
            assert (await http.get(url + "/api/info")).status == 200

    asyncio.run(scenario())


def test_malformed_messages_get_errors_and_the_session_goes_on(server):
    kinds = {"[]": "JSON object", "null": "JSON object", '"x"': "JSON object", "1": "JSON object",
             "{nope": "not valid JSON", "[" * 5000: "nested too deeply|not valid JSON",
             '{"type": 7}': "unknown message type"}

    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws = await _session(http, server)
            agent = await http.ws_connect(server["ws"] + "/ws/agent")
            assert (await agent.receive_json())["type"] == "ready"
            for text, why in kinds.items():
                await ws.send_str(text)
                reply = await _next_text(ws)
                assert reply["type"] == "error" and re.search(why, reply["message"]), (text, reply)
                await agent.send_str(text)
                reply = await agent.receive_json(timeout=10)
                assert reply["type"] == "error" and re.search(why, reply["message"]), (text, reply)
            await ws.send_json({"type": "say", "text": 5})
            assert "say: text must be a string, not a number" in (await _next_text(ws))["message"]
            await ws.send_json({"type": "stop"})  # both still answer
            assert (await _next_text(ws))["type"] == "agent"
            await agent.send_json({"type": "status"})
            assert (await agent.receive_json())["type"] == "status"
            await agent.close()
            await ws.close()

    asyncio.run(scenario())
    assert server["proc"].poll() is None


def test_nan_pcm_is_refused_and_frames_stay_normal(server, voices):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws = await _session(http, server)
            agent = await http.ws_connect(server["ws"] + "/ws/agent")
            assert (await agent.receive_json())["type"] == "ready"
            await agent.send_json({"type": "format", "sample_rate": 16000, "encoding": "f32le"})
            assert (await agent.receive_json())["encoding"] == "f32le"
            poison = voices["agent"][:3200].copy()
            poison[100] = np.nan
            for bad in (poison, np.full(640, np.inf, np.float32)):
                await agent.send_bytes(bad.astype("<f4").tobytes())
                reply = await agent.receive_json(timeout=10)
                assert reply["type"] == "error" and "NaN or infinite" in reply["message"]
            await agent.send_bytes((voices["agent"][:48000] * 1e6).astype("<f4").tobytes())  # absurdly loud: clipped
            await agent.send_json({"type": "status"})
            assert (await agent.receive_json())["queued_s"] == 3.0
            frames = []

            async def mic():
                t0 = time.monotonic()
                for i in range(120):
                    await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.04 - time.monotonic()))
                    await ws.send_bytes(pcm16(np.zeros(640, np.float32)))

            task = asyncio.create_task(mic())
            deadline = time.monotonic() + 30
            while len(frames) < 60 and time.monotonic() < deadline:
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[0] == KIND_FRAME:
                    assert b"NaN" not in msg.data[:200] and b"Infinity" not in msg.data[:200]
                    frames.append(unpack(msg.data)[1:])
            task.cancel()
            await agent.close()
            await ws.close()
            return frames

    frames = asyncio.run(scenario())
    assert len(frames) >= 60
    heads = [h for h, _ in frames]
    assert all(math.isfinite(v) for h in heads for v in h["vad"] + h["level"] + [h["lat"], h["pts"]])
    assert sum(h["state"] == "speaking" for h in heads) >= 10  # the agent's voice was heard, not poisoned
    pics = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR).astype(np.float32) for _, p in frames if p]
    assert len(pics) >= 30
    assert all(p.mean() > 10 for p in pics)  # not black
    assert max(np.abs(a - b).mean() for a, b in zip(pics, pics[1:])) > 0.5  # the face moves


def test_the_agent_queue_is_bounded(server, voices):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws = await _session(http, server)  # no microphone: the clock stands, nothing is played
            agent = await http.ws_connect(server["ws"] + "/ws/agent")
            await agent.receive_json()
            second = pcm16(voices["agent"][:16000])
            errors = 0
            for _ in range(35):
                await agent.send_bytes(second)
            await agent.send_json({"type": "status"})
            while (reply := await agent.receive_json(timeout=10))["type"] == "error":
                assert "agent's queue" in reply["message"] and "at most 30 s" in reply["message"]
                errors += 1
            assert errors == 5 and reply["queued_s"] == 30.0
            await ws.send_json({"type": "play", "files": ["ditto.flac"]})
            reply = await _next_text(ws)
            assert reply["type"] == "error" and "ditto.flac" in reply["message"]
            await ws.send_json({"type": "stop"})
            assert (await _next_text(ws))["stopped_s"] == 30.0
            await agent.close()
            await ws.close()

    asyncio.run(scenario())


def test_uploads_are_bounded_in_bytes_time_and_duration(server, tmp_path):
    long = tmp_path / "two_hours.flac"
    with sf.SoundFile(str(long), "w", 16000, 1, "PCM_16") as f:
        for _ in range(120):
            f.write(np.zeros(16000 * 60, np.int16))  # 2 h of silence: 460 MB as 16 kHz float32
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.1, np.nan] * 8000, np.float32), 16000, subtype="FLOAT")
    port, pid, figures = server["port"], server["proc"].pid, {}

    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws = await _session(http, server)
            up = server["url"] + "/api/upload?name="
            before = _rss_mb(pid)
            t0 = time.monotonic()
            r = await http.post(up + "two_hours.flac", data=long.read_bytes())
            figures["long"] = (r.status, time.monotonic() - t0, _rss_mb(pid) - before)
            assert r.status == 413 and "two_hours.flac: 7200 s of audio; at most 600 s" in (await r.json())["error"]

            async def nine_megabytes():  # chunked: no Content-Length to refuse it early
                for _ in range(9):
                    yield b"\0" * 2**20

            r = await http.post(up + "big.wav", data=nine_megabytes())
            assert r.status == 413 and "limited to 8388608 bytes" in (await r.json())["error"]
            after = _rss_mb(pid)
            figures["rss"] = (before, after)
            assert after - before < 50
            r = await http.post(up + "nan.wav", data=nan.read_bytes())
            assert r.status == 400 and "NaN" in (await r.json())["error"]
            r = await http.post(up + "a.wav", data=b"\x1f\x8b" * 10, headers={"Content-Encoding": "gzip"})
            assert r.status == 415
            # declared 2 GB, nothing sent: refused at once, from the header
            status, seconds, body = await _raw(port, f"POST /api/upload?name=huge.wav HTTP/1.1\nHost: 127.0.0.1:{port}\n"
                                                     "Content-Length: 2147483648\n\n")
            figures["declared"] = (status, seconds)
            assert status == 413 and seconds < 2 and "huge.wav: 2147483648 bytes" in body
            # a body that stalls: abandoned after the timeout (1 s here)
            status, seconds, body = await _raw(port, f"POST /api/upload?name=slow.wav HTTP/1.1\nHost: 127.0.0.1:{port}\n"
                                                     "Content-Length: 1000\n\n", b"RIFF")
            figures["stalled"] = (status, seconds)
            assert status == 408 and 0.9 < seconds < 5 and "slow.wav: no data for 1 s" in body
            await ws.close()

    asyncio.run(scenario())
    print(f"\nupload figures: {figures}")
    assert server["proc"].poll() is None


@pytest.mark.skipif(tts_available() is None, reason="espeak-ng is not installed")
def test_say_never_reads_a_file(server, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("This file must never be read aloud by the server. " * 40)

    async def scenario():
        async with aiohttp.ClientSession() as http:
            ws = await _session(http, server)
            await ws.send_json({"type": "say", "text": f"-f{story}"})
            reply = await _next_text(ws, timeout=30)
            assert reply["type"] == "agent" and reply["queued_s"] < 30
            await ws.send_json({"type": "say", "text": "hi", "voice": f"-f{story}"})
            reply = await _next_text(ws)
            assert reply["type"] == "error" and "voice" in reply["message"]
            await ws.close()

    asyncio.run(scenario())
