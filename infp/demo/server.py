"""Local web server of the live demo (aiohttp): the page, its WebSocket session and the agent-voice endpoint.

One live session at a time (the CPU renders one avatar): a second page is told so and refused, and
the server carries on. The protocol is documented in docs/PROTOCOL.md.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from infp.constants import FPS, SAMPLE_RATE
from infp.demo.live import LiveSession, ladder, portraits_for, warm_up
from infp.errors import InfpError
from infp.pipelines.streaming import StreamFrame

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PROTOCOL_VERSION = 1
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aac")
MAX_TTS_CHARS = 1000
MAX_UPLOAD_BYTES = 200 * 1024 * 1024

# binary messages server -> client: kind (u8), 3 zero bytes, header length (u32 LE), JSON header, payload
KIND_FRAME = 1  # payload: JPEG (empty when the frame was dropped)
KIND_AGENT_AUDIO = 2  # payload: int16 LE mono PCM at 16 kHz


def pack(kind: int, header: dict, payload: bytes = b"") -> bytes:
    """One binary message: the JSON header is padded with spaces so the payload starts 4-byte aligned."""
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-(8 + len(head)) % 4)
    return struct.pack("<B3xI", kind, len(head)) + head + payload


def unpack(message: bytes) -> tuple[int, dict, bytes]:
    """Inverse of ``pack``."""
    kind, n = struct.unpack_from("<B3xI", message)
    return kind, json.loads(message[8:8 + n]), message[8 + n:]


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    n = len(data) // 2
    return np.frombuffer(data[: 2 * n], dtype="<i2").astype(np.float32) / 32768.0


class StreamResampler:
    """Stateful linear resampling of a PCM stream to 16 kHz (no clicks between messages)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._pos = 0.0  # position of the next output sample, in input samples from the start of _last
        self._last = np.zeros(0, np.float32)  # the last input sample (needed to interpolate across messages)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.rate == SAMPLE_RATE:
            return x
        buf = np.concatenate([self._last, x])
        if len(buf) < 2:
            self._last = buf
            return np.zeros(0, np.float32)
        step = self.rate / SAMPLE_RATE
        t = np.arange(self._pos, len(buf) - 1, step)
        out = np.interp(t, np.arange(len(buf)), buf).astype(np.float32)
        self._pos = (t[-1] + step if len(t) else self._pos) - (len(buf) - 1)
        self._last = buf[-1:]
        return out


def tts_available() -> str | None:
    return shutil.which("espeak-ng")


def synthesize(text: str, voice: str = "en-us", rate: int = 165) -> np.ndarray:
    """Speech of ``text`` by espeak-ng (16 kHz mono float32)."""
    import soundfile as sf

    from infp.io import resample

    exe = tts_available()
    if exe is None:
        raise InfpError("text-to-speech is not installed (apt-get install espeak-ng)")
    proc = subprocess.run([exe, "--stdout", "-v", voice, "-s", str(rate), text], capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        raise InfpError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), sr)


class DemoServer:
    """The demo's state: models, portrait crops, the one live session, agent inputs and recordings."""

    def __init__(self, pipe, portrait: str | Path, settings, *, size: int | None = None, delay: float = 0.25,
                 render_batch: int = 1, adapt: bool = True, audio_dir: Path | None = None,
                 record_dir: Path = Path("outputs/demo")) -> None:
        self.pipe, self.settings = pipe, settings
        self.delay, self.render_batch = delay, render_batch
        self.levels = ladder(size or pipe.size, settings.steps, adapt)
        self.portraits = portraits_for(portrait, self.levels, settings.face_index)
        warm_up(pipe, self.portraits, render_batch)
        self.audio_dir = audio_dir
        self.record_dir = Path(record_dir)
        self.live: LiveSession | None = None
        self.busy = False  # a session is live (or starting)
        self.peer: str | None = None
        self.sessions_served = 0
        self.refused = 0
        self.client_stats: dict = {}
        self.compute: queue.Queue | None = None  # sessions for the main thread to run (set by serve)

    # -- helpers ----------------------------------------------------------------------------------
    def audio_files(self) -> list[str]:
        if self.audio_dir is None or not self.audio_dir.is_dir():
            return []
        return sorted(p.name for p in self.audio_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)

    def info(self) -> dict:
        tts = tts_available()
        return {"protocol": PROTOCOL_VERSION, "sample_rate": SAMPLE_RATE, "fps": FPS, "delay_ms": round(self.delay * 1000),
                "size": self.levels[0].size, "steps": self.levels[0].steps,
                "levels": [{"size": lv.size, "steps": lv.steps} for lv in self.levels],
                "tts": tts is not None, "tts_note": None if tts else "text-to-speech is not installed (apt-get install espeak-ng)",
                "files": self.audio_files(), "busy": self.busy, "agent_endpoint": "/ws/agent",
                "sessions_served": self.sessions_served, "refused": self.refused}

    def _load_file(self, name: str) -> np.ndarray:
        from infp.io import read_audio

        if self.audio_dir is None or "/" in name or "\\" in name or name.startswith("."):
            raise InfpError("not an audio file of this server", name)
        path = self.audio_dir / name
        if not path.is_file():
            raise InfpError("not an audio file of this server", name)
        return read_audio(path).mean(axis=0)

    # -- application ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_get("/", self.index)
        app.router.add_get("/api/info", self.api_info)
        app.router.add_post("/api/upload", self.api_upload)
        app.router.add_get("/ws", self.ws_session)
        app.router.add_get("/ws/agent", self.ws_agent)
        app.router.add_get("/recordings/{name}", self.recording)
        app.router.add_get("/protocol", self.protocol)
        app.router.add_static("/static", STATIC)
        return app

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def api_info(self, request: web.Request) -> web.Response:
        return web.json_response({**self.info(), "client_stats": self.client_stats})

    async def protocol(self, request: web.Request) -> web.StreamResponse:
        from infp.paths import REPO_ROOT

        path = REPO_ROOT / "docs" / "PROTOCOL.md"
        if not path.is_file():
            raise web.HTTPNotFound(text="docs/PROTOCOL.md is not installed with this copy of infp")
        return web.FileResponse(path, headers={"Content-Type": "text/markdown; charset=utf-8"})

    async def recording(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self.record_dir / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound(text="no such recording")
        return web.FileResponse(path)

    async def api_upload(self, request: web.Request) -> web.Response:
        """Body: an audio file of any common format; it is queued as the agent's voice."""
        from infp.io import read_audio

        live = self.live
        if live is None:
            return web.json_response({"error": "no live session: start the page first"}, status=409)
        name = Path(request.query.get("name", "upload")).name
        data = await request.read()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / (name if Path(name).suffix else name + ".wav")
            path.write_bytes(data)
            try:
                audio = await asyncio.to_thread(lambda: read_audio(path).mean(axis=0))
            except InfpError as e:
                return web.json_response({"error": f"{name}: {e.problem}"}, status=400)
        live.agent.add(audio, name)
        return web.json_response({"queued": name, "seconds": round(len(audio) / SAMPLE_RATE, 2)})

    # -- the page's session -----------------------------------------------------------------------
    async def ws_session(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024, heartbeat=20)
        await ws.prepare(request)
        if self.busy:
            self.refused += 1
            await ws.send_json({"type": "busy", "message": "Another session is live on this server; it renders one "
                                "avatar at a time on this CPU. Try again when that session ends."})
            await ws.close(code=1013, message=b"busy")
            return ws
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()

        def sink(f: StreamFrame) -> None:
            header = {"k": f.index, "pts": round(f.pts, 3), "state": f.state,
                      "vad": [round(v, 3) for v in f.vad], "level": [round(v, 1) for v in f.level],
                      "late": bool(f.info["late"]), "dropped": f.image is None,
                      "lat": round(f.info["latency"] * 1000, 1), "size": f.info["size"]}
            msg = pack(KIND_FRAME, header, f.info["jpeg"] or b"")
            loop.call_soon_threadsafe(outbox.put_nowait, msg)

        self.busy = True  # taken before the first await, so a second page is refused meanwhile
        try:
            live = await asyncio.to_thread(LiveSession, self.pipe, self.portraits, self.levels, self.settings,
                                           delay=self.delay, render_batch=self.render_batch, sink=sink)
        except BaseException:
            self.busy = False
            raise
        self.live, self.peer = live, request.remote
        self.sessions_served += 1
        if self.compute is not None:
            self.compute.put(live)  # run() on the main thread (see serve)
        else:
            live.start()
        log.info("session from %s started", request.remote)
        outbox.put_nowait({"type": "hello", **self.info(), "busy": False})

        async def sender() -> None:
            while True:
                msg = await outbox.get()
                if isinstance(msg, (bytes, bytearray)):
                    if outbox.qsize() > 100 and msg[0] == KIND_FRAME:
                        continue  # the client does not keep up: old frames would be late anyway
                    await ws.send_bytes(msg)
                else:
                    await ws.send_json(msg)

        async def stats() -> None:
            while True:
                await asyncio.sleep(0.5)
                if live.error is not None:
                    outbox.put_nowait({"type": "error", "message": f"the live loop stopped: {live.error}"})
                    return
                outbox.put_nowait({"type": "stats", **live.snapshot()})

        tasks = [asyncio.create_task(sender()), asyncio.create_task(stats())]
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    start, own = live.ingest(from_pcm16(msg.data))
                    if np.any(own):
                        outbox.put_nowait(pack(KIND_AGENT_AUDIO, {"s": start, "n": len(own)}, pcm16(own)))
                elif msg.type == WSMsgType.TEXT:
                    try:
                        await self._control(live, json.loads(msg.data), outbox)
                    except (InfpError, ValueError, KeyError, TypeError) as e:
                        outbox.put_nowait({"type": "error", "message": str(e)})
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.to_thread(live.close)
            self.live = self.peer = None
            self.busy = False
            log.info("session from %s ended", request.remote)
        return ws

    async def _control(self, live: LiveSession, msg: dict, outbox: asyncio.Queue) -> None:
        kind = msg.get("type")
        if kind == "play":
            names = msg["files"] if isinstance(msg["files"], list) else [msg["files"]]
            for name in names:
                audio = await asyncio.to_thread(self._load_file, str(name))
                live.agent.add(audio, str(name))
            outbox.put_nowait({"type": "agent", **live.agent.status()})
        elif kind == "say":
            text = str(msg.get("text", "")).strip()[:MAX_TTS_CHARS]
            if not text:
                raise InfpError("nothing to say")
            audio = await asyncio.to_thread(synthesize, text, str(msg.get("voice", "en-us")))
            live.agent.add(audio, "tts: " + text[:40])
            outbox.put_nowait({"type": "agent", **live.agent.status()})
        elif kind == "stop":
            dropped = live.agent.clear()
            outbox.put_nowait({"type": "agent", "stopped_s": round(dropped, 2), **live.agent.status()})
        elif kind == "record":
            if msg.get("on", True):
                name = time.strftime("session-%Y%m%d-%H%M%S.mp4")
                live.start_recording(self.record_dir / name)
                outbox.put_nowait({"type": "recording", "state": "on", "name": name})
            else:
                rec = await asyncio.to_thread(live.stop_recording)
                outbox.put_nowait({"type": "recording", "state": "saved", "name": rec.path.name,
                                   "url": f"/recordings/{rec.path.name}", "frames": rec.frames,
                                   "seconds": round(rec.frames / FPS, 2)})
        elif kind == "client_stats":
            self.client_stats = {k: msg[k] for k in msg if k != "type"}
        else:
            raise InfpError(f"unknown message type {kind!r}")

    # -- an external voice agent ------------------------------------------------------------------
    async def ws_agent(self, request: web.Request) -> web.StreamResponse:
        """PCM of the agent's voice in (binary), control as JSON; see docs/PROTOCOL.md."""
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        rate, encoding = SAMPLE_RATE, "s16le"
        resampler = StreamResampler(rate)
        await ws.send_json({"type": "ready", "sample_rate": rate, "encoding": encoding, "live": self.live is not None})
        async for msg in ws:
            live = self.live
            if msg.type == WSMsgType.BINARY:
                if live is None:
                    await ws.send_json({"type": "error", "message": "no live session: open the demo page first"})
                    continue
                if encoding == "s16le":
                    x = from_pcm16(msg.data)
                else:
                    x = np.frombuffer(msg.data[: len(msg.data) // 4 * 4], "<f4").astype(np.float32)
                live.agent.add(resampler(x), "external")
            elif msg.type == WSMsgType.TEXT:
                try:
                    m = json.loads(msg.data)
                    kind = m.get("type")
                    if kind == "format":
                        rate = int(m.get("sample_rate", SAMPLE_RATE))
                        encoding = str(m.get("encoding", "s16le"))
                        if encoding not in ("s16le", "f32le") or not 8000 <= rate <= 192000:
                            raise ValueError("format: encoding s16le or f32le, sample_rate 8000-192000")
                        resampler = StreamResampler(rate)
                        await ws.send_json({"type": "format", "sample_rate": rate, "encoding": encoding})
                    elif kind == "clear":
                        dropped = live.agent.clear() if live is not None else 0.0
                        await ws.send_json({"type": "cleared", "dropped_s": round(dropped, 2)})
                    elif kind == "status":
                        await ws.send_json({"type": "status", "live": live is not None,
                                            **(live.agent.status() if live is not None else {}),
                                            "clock_s": round(live.samples / SAMPLE_RATE, 2) if live else None})
                    else:
                        raise ValueError(f"unknown message type {kind!r}")
                except (ValueError, TypeError, AttributeError) as e:
                    await ws.send_json({"type": "error", "message": str(e)})
        return ws


def serve(server: DemoServer, host: str = "127.0.0.1", port: int = 8000, ready=None) -> None:
    """Run the web server until interrupted; prints the address (port 0 picks a free one).

    The web server's event loop runs on a second thread; the main thread runs the live sessions'
    generation, where torch's CPU kernels are fastest (see ``LiveSession.start``).
    """
    server.compute = queue.Queue()
    started = threading.Event()
    failed: list[BaseException] = []
    state: dict = {}

    async def main() -> None:
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        state["port"] = site._server.sockets[0].getsockname()[1]  # the port really bound (port 0 picks one)
        state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        started.set()
        try:
            await state["stop"].wait()
        finally:
            await runner.cleanup()

    def web_thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001  (reported on the main thread)
            failed.append(e)
        finally:
            started.set()

    thread = threading.Thread(target=web_thread, name="infp-web", daemon=True)
    thread.start()
    started.wait()
    if failed:
        raise InfpError(f"cannot serve on {host}:{port} ({failed[0]})")
    print(f"infp demo: serving on http://{host}:{state['port']}/ (Ctrl-C to stop)", flush=True)
    if ready is not None:
        ready(state["port"])
    try:
        while thread.is_alive():
            try:
                live = server.compute.get(timeout=0.5)
            except queue.Empty:
                continue
            live.run()
    finally:
        if "loop" in state and thread.is_alive():
            state["loop"].call_soon_threadsafe(state["stop"].set)
            thread.join(10)
