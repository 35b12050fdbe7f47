"""Local web server of the live demo (aiohttp): the page, its WebSocket session and the agent-voice endpoint.

One live session at a time (the CPU renders one avatar): a second page is told so and refused, and
the server carries on. The protocol is documented in docs/PROTOCOL.md.

The server drives a microphone page and accepts audio from the network, so it treats every input as
hostile: only its own page (and loopback or explicitly allowed origins) may open a session or post
(``Access``), every JSON message is checked against the protocol's table (``infp.demo.messages``),
PCM with NaN or infinite samples is refused (``clean_pcm``), uploads are bounded in bytes, in time
and in decoded duration, and text to speak never reaches espeak-ng's command line.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import math
import queue
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import numpy as np
from aiohttp import WSMsgType, hdrs, web

from infp.constants import FPS, SAMPLE_RATE
from infp.demo.agent import MAX_AGENT_QUEUE_S
from infp.demo.live import LiveSession, portraits_for, warm_up
from infp.demo.messages import AGENT, MAX_TTS_CHARS, PAGE, VOICE_PATTERN, controls_of, parse
from infp.demo.quality import ladder
from infp.errors import InfpError, MediaError
from infp.models.controls import CONTROL_NAMES, PRESETS, Controls
from infp.runtime.streaming import StreamFrame

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PROTOCOL_VERSION = 1
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aac")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_UPLOAD_SECONDS = 600.0
BODY_TIMEOUT_S = 30.0
MAX_UPLOADS_AT_ONCE = 2
PAGE_MAX_MESSAGE = 4 * 1024 * 1024
AGENT_MAX_MESSAGE = 16 * 1024 * 1024

# binary messages server -> client: kind (u8), 3 zero bytes, header length (u32 LE), JSON header, payload
KIND_FRAME = 1  # payload: JPEG (empty when the frame was dropped)
KIND_AGENT_AUDIO = 2  # payload: int16 LE mono PCM at 16 kHz

NO_CONTROLS = ("these stage-2 weights were trained without expression controls (the sliders and presets need weights "
               "trained with them)")


@dataclass(frozen=True)
class Limits:
    """What one client may make the server hold: upload bytes and decoded seconds, the agent's queue."""

    upload_bytes: int = MAX_UPLOAD_BYTES
    upload_s: float = MAX_UPLOAD_SECONDS
    body_timeout_s: float = BODY_TIMEOUT_S  # an upload that sends nothing this long is abandoned (408)
    queue_s: float = MAX_AGENT_QUEUE_S


# -- JSON and PCM that are safe to send and to use ---------------------------------------------------
def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no such numbers, and browsers refuse them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """JSON of a server message; never contains NaN or Infinity (see ``finite``)."""
    return json.dumps(finite(obj), separators=(",", ":"), allow_nan=False)


def pack(kind: int, header: dict, payload: bytes = b"") -> bytes:
    """One binary message: the JSON header is padded with spaces so the payload starts 4-byte aligned."""
    head = dumps(header).encode()
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


def from_f32(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) // 4 * 4], "<f4").astype(np.float32)


class PcmError(ValueError):
    """PCM that cannot be used (NaN or infinite samples); the chunk is dropped and the sender told."""


def clean_pcm(x: np.ndarray, what: str = "audio") -> np.ndarray:
    """Samples safe for the live loop: refused when any is NaN or infinite, clipped to full scale.

    One NaN sample would reach the voice-activity detector's state and the motion generator and stay
    there (every later frame black), so such a chunk is refused whole rather than patched; samples
    beyond full scale (f32 PCM is unbounded) are clipped like a sound card would.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise PcmError(f"{what}: PCM with NaN or infinite samples was refused (chunk dropped)")
    return np.clip(x, -1.0, 1.0)


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


# -- who may connect ----------------------------------------------------------------------------------
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"", "0.0.0.0", "::"})
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port


def parse_origin(value: str) -> Origin | None:
    """(scheme, host, port) of an Origin such as ``https://my.site``; None when it is not an http(s) origin."""
    try:
        u = urlsplit(value.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme not in DEFAULT_PORTS or not u.hostname or u.path not in ("", "/") or u.query or u.fragment \
            or u.username is not None:
        return None
    return u.scheme, u.hostname, port or DEFAULT_PORTS[u.scheme]


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header (``127.0.0.1:8000``, ``[::1]:8000``, ``localhost``); None when malformed."""
    try:
        u = urlsplit("//" + value.strip())
        port = u.port
    except ValueError:
        return None
    if not u.hostname or u.path or u.query or u.fragment or u.username is not None:
        return None
    return u.hostname, port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Access:
    """Which pages and host names may use the server.

    A browser lets any web page open a WebSocket to 127.0.0.1 or post to it, sending the page's
    ``Origin``: without a check, any site the user visits could drive the live session (the
    microphone, the agent's voice, recordings). And a site can rebind its own name to 127.0.0.1 (DNS
    rebinding) to become "same origin"; its requests then carry its name in ``Host``. So every request
    must name this server in ``Host`` (a loopback name, the address it is bound to, the host of an
    allowed origin, or any IP address when it is bound to all of them: a rebinding needs a name), and
    WebSocket upgrades and POSTs that carry an ``Origin`` must come from the server's own page
    (same host and port as ``Host``), from a loopback page on the same port, or from ``allow_origins``.
    Clients that send no ``Origin`` (a voice agent in Python, curl) are not browsers and pass.
    ``"*"`` in ``allow_origins`` turns both checks off.
    """

    def __init__(self, host: str = "127.0.0.1", allow_origins: Sequence[str] = ()) -> None:
        self.any = "*" in allow_origins
        self.origins: set[Origin] = set()
        for value in allow_origins:
            if value == "*":
                continue
            origin = parse_origin(value)
            if origin is None:
                raise InfpError(f"allowed origin {value!r} is not an origin: give scheme://host[:port], "
                                "such as https://my.site or http://192.168.1.5:8000, or *")
            self.origins.add(origin)
        self.host = host.strip("[]").lower()
        self.hosts = set(LOOPBACK) | {o[1] for o in self.origins}
        if self.host not in WILDCARD:
            self.hosts.add(self.host)

    def host_ok(self, value: str) -> bool:
        if self.any:
            return True
        parts = split_host(value)
        if parts is None:
            return False
        return parts[0] in self.hosts or (self.host in WILDCARD and _is_ip(parts[0]))

    def origin_ok(self, value: str, host: str | None) -> bool:
        if self.any:
            return True
        origin = parse_origin(value)
        if origin is None or host is None:
            return False
        if origin in self.origins:
            return True
        parts = split_host(host)
        if parts is None:
            return False
        served = parts[0], parts[1] or DEFAULT_PORTS[origin[0]]
        if (origin[1], origin[2]) == served:
            return True  # the server's own page
        return origin[1] in LOOPBACK and served[0] in LOOPBACK and origin[2] == served[1]

    def refusal(self, request: web.Request) -> str | None:
        """Why ``request`` is refused (the 403 body), or None when it may go on."""
        host = request.headers.get(hdrs.HOST)
        if host is not None and not self.host_ok(host):
            names = ", ".join(sorted(self.hosts))
            return (f"refused: Host {host[:100]!r} is not a name of this server (it answers to {names}); to serve "
                    "another name, start it with --host NAME or --allow-origin http(s)://NAME[:PORT]")
        upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or (request.method in ("GET", "HEAD", "OPTIONS") and not upgrade):
            return None
        if not self.origin_ok(origin, host):
            return (f"refused: a page from {origin[:100]!r} may not use this server (cross-site request); only its own "
                    "page may, unless the server is started with --allow-origin for that origin")
        return None


# -- text to speech -----------------------------------------------------------------------------------
def tts_available() -> str | None:
    return shutil.which("espeak-ng")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def synthesize(text: str, voice: str = "en-us", rate: int = 165) -> np.ndarray:
    """Speech of ``text`` by espeak-ng (16 kHz mono float32).

    The text goes to espeak-ng on stdin, never on its command line, where text starting with '-'
    would be read as an option (``-f FILE`` speaks a file of the server). The voice is an option
    value, so it must look like a voice name; control characters (espeak-ng's embedded commands start
    with one) are spoken as spaces.
    """
    import soundfile as sf

    from infp.io import resample

    if not re.fullmatch(VOICE_PATTERN, voice):
        raise InfpError(f"voice {voice[:40]!r} is not an espeak-ng voice name such as en-us or en-gb+f3")
    if not 80 <= int(rate) <= 500:
        raise InfpError(f"speech rate {rate} is not between 80 and 500 words per minute")
    text = _CONTROL.sub(" ", text).strip()
    if not text:
        raise InfpError("nothing to say")
    exe = tts_available()
    if exe is None:
        raise InfpError("text-to-speech is not installed (apt-get install espeak-ng)")
    proc = subprocess.run([exe, "--stdout", "--stdin", "-v", voice, "-s", str(int(rate))], input=text.encode(),
                          capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        raise InfpError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), sr)


# -- audio files from clients ----------------------------------------------------------------------
SAFE_INPUT = ("-protocol_whitelist", "file",
              "-format_whitelist", "wav,w64,flac,mp3,ogg,mov,mp4,m4a,matroska,webm,aac,aiff,caf")
"""ffmpeg input options for files from clients: audio containers only, reading nothing but the file itself
(a playlist or concat file could otherwise make ffmpeg open other files of the server)."""


class TooLong(InfpError):
    """Audio longer than a limit (answered with 413)."""


def audio_seconds(path: Path, name: str) -> float | None:
    """Duration an audio file declares in its header (None when it declares none), without decoding it;
    errors name the client's file, not the temporary it was saved as."""
    from infp.io.ffmpeg import probe

    try:
        info = probe(path, input_args=SAFE_INPUT)
    except MediaError as e:
        raise MediaError(e.problem.replace("cannot read media", "cannot read this as audio"), name) from None
    if not info.has_audio:
        raise MediaError("has no audio stream", name)
    return info.duration


def decode_audio(path: Path, max_s: float, name: str | None = None) -> np.ndarray:
    """16 kHz mono float32 of an audio file from a client, at most ``max_s`` seconds.

    The duration in the header is checked before anything is decoded (a 20 MB FLAC of silence holds
    hours: 900 MB of samples), and the decoder stops after ``max_s`` anyway, since a header can lie;
    ffmpeg mixes down and resamples, so memory stays within ``max_s`` seconds of 16 kHz mono.
    """
    from infp.io.ffmpeg import ffmpeg_exe

    name = name or path.name
    declared = audio_seconds(path, name)
    if declared is not None and declared > max_s:
        raise TooLong(f"{declared:.0f} s of audio; at most {max_s:g} s are accepted", name)
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", *SAFE_INPUT, "-i", str(path), "-map", "0:a:0",
                           "-vn", "-t", f"{max_s + 0.5:.3f}", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le",
                           "-acodec", "pcm_f32le", "-"], capture_output=True, timeout=300)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MediaError(f"cannot decode audio ({lines[-1][:120] if lines else 'ffmpeg failed'})", name)
    audio = from_f32(proc.stdout)
    if len(audio) > max_s * SAMPLE_RATE:
        raise TooLong(f"more than {max_s:g} s of audio (its header said otherwise); at most {max_s:g} s are accepted", name)
    if not len(audio):
        raise MediaError("audio is empty (0 samples)", name)
    try:
        return clean_pcm(audio)
    except PcmError:
        raise MediaError("audio contains NaN or infinite samples", name) from None


def upload_name(raw: str) -> str:
    """The name an upload is shown and queued under: a file name, printable, at most 100 characters."""
    name = _CONTROL.sub("", Path(raw.replace("\\", "/")).name)[:100]
    return name if name and not name.startswith(".") else "upload"


class UploadRefused(Exception):
    """An upload answered with ``status`` and ``message`` before its audio was used."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# -- the server ---------------------------------------------------------------------------------------
class DemoServer:
    """The demo's state: models, portrait crops, the one live session, agent inputs and recordings.

    ``host`` is the address the server is bound to and ``allow_origins`` the web origins besides its
    own page that may use it (see ``Access``); ``limits`` bounds what a client may make it hold.
    ``controls``: the expression controls every session starts with (default: ``settings.controls``).
    """

    def __init__(self, pipe, portrait: str | Path, settings, *, size: int | None = None, delay: float = 0.25,
                 render_batch: int = 1, adapt: bool = True, audio_dir: Path | None = None,
                 record_dir: Path = Path("outputs/demo"), host: str = "127.0.0.1",
                 allow_origins: Sequence[str] = (), limits: Limits = Limits(), controls: Controls | None = None) -> None:
        self.access = Access(host, allow_origins)
        self.allow_origins = tuple(allow_origins)
        self.limits = limits
        self.pipe, self.settings = pipe, settings
        self.controls = controls if controls is not None else settings.controls
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
        self.uploads = 0  # uploads being received or decoded
        self.client_stats: dict = {}
        self.compute: queue.Queue | None = None  # sessions for the main thread to run (set by serve)
        self.agent_outboxes: set[asyncio.Queue] = set()  # one per connected /ws/agent socket
        self.page_outbox: asyncio.Queue | None = None  # the live session's page

    def bind(self, host: str) -> None:
        """The address really served on (``serve``): its name is accepted in ``Host``."""
        self.access = Access(host, self.allow_origins)

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
                "controls_available": self.pipe.stage2.has_controls,
                "controls_note": None if self.pipe.stage2.has_controls else NO_CONTROLS,
                "control_names": list(CONTROL_NAMES), "presets": PRESETS,
                "controls": (self.live.controls if self.live is not None else self.controls).to_dict(),
                "sessions_served": self.sessions_served, "refused": self.refused,
                "limits": {"upload_bytes": self.limits.upload_bytes, "upload_s": self.limits.upload_s,
                           "queue_s": self.limits.queue_s, "tts_chars": MAX_TTS_CHARS}}

    def _load_file(self, name: str) -> np.ndarray:
        if self.audio_dir is None or "/" in name or "\\" in name or name.startswith("."):
            raise InfpError("not an audio file of this server", name)
        path = self.audio_dir / name
        if not path.is_file():
            raise InfpError("not an audio file of this server", name)
        return decode_audio(path, self.limits.queue_s, name)

    # -- application ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
            why = self.access.refusal(request)
            if why is not None:
                log.warning("%s %s from %s: %s", request.method, request.path, request.remote, why)
                return web.Response(status=403, text=why + "\n")
            return await handler(request)

        app = web.Application(middlewares=[guard])
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
        return web.json_response({**self.info(), "client_stats": self.client_stats}, dumps=dumps)

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

    # -- uploads ----------------------------------------------------------------------------------
    async def api_upload(self, request: web.Request) -> web.Response:
        """Body: an audio file of any common format; it is queued as the agent's voice.

        The body goes to a temporary file as it arrives (memory does not grow with it) and is refused
        as soon as it is known to be too large, or when it stalls; the audio is decoded only when its
        header declares at most ``limits.upload_s`` seconds.
        """
        name = upload_name(request.query.get("name", "upload"))
        try:
            if self.live is None:
                raise UploadRefused(409, "no live session: start the page first")
            self._check_declared(request, name)
            if self.uploads >= MAX_UPLOADS_AT_ONCE:
                raise UploadRefused(429, f"{name}: {MAX_UPLOADS_AT_ONCE} uploads are already in progress; try again later")
            self.uploads += 1
            try:
                audio = await self._receive_and_decode(request, name)
            finally:
                self.uploads -= 1
            live = self.live
            if live is None:
                raise UploadRefused(409, "no live session: the page was closed during the upload")
            try:
                live.agent.add(audio, name)
            except InfpError as e:
                raise UploadRefused(413, str(e)) from None
        except UploadRefused as e:
            resp = web.json_response({"error": e.message}, status=e.status, dumps=dumps)
            if not request.content.at_eof():
                resp.force_close()  # do not read the rest of a refused body
            return resp
        return web.json_response({"queued": name, "seconds": round(len(audio) / SAMPLE_RATE, 2)}, dumps=dumps)

    def _check_declared(self, request: web.Request, name: str) -> None:
        """Refuse from the headers alone: a declared length over the limit, a compressed body."""
        size = request.content_length
        if size is not None and size > self.limits.upload_bytes:
            raise UploadRefused(413, f"{name}: {size} bytes; uploads are limited to {self.limits.upload_bytes} bytes")
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").lower()
        if encoding != "identity":
            raise UploadRefused(415, f"{name}: send the file as it is, not with Content-Encoding {encoding[:20]}")

    async def _receive_and_decode(self, request: web.Request, name: str) -> np.ndarray:
        suffix = Path(name).suffix.lower()
        with tempfile.TemporaryDirectory(prefix="infp-upload-") as tmp:
            path = Path(tmp) / ("upload" + (suffix if suffix in AUDIO_SUFFIXES else ""))
            await self._receive(request, path, name)
            try:
                return await asyncio.to_thread(decode_audio, path, self.limits.upload_s, name)
            except TooLong as e:
                raise UploadRefused(413, str(e)) from None
            except InfpError as e:
                raise UploadRefused(400, str(e)) from None

    async def _receive(self, request: web.Request, path: Path, name: str) -> None:
        """Write the body to ``path`` chunk by chunk, counting bytes and waiting at most ``body_timeout_s`` for each."""
        got, limit, wait = 0, self.limits.upload_bytes, self.limits.body_timeout_s
        with open(path, "wb") as out:
            while True:
                try:
                    chunk = await asyncio.wait_for(request.content.readany(), wait)
                except asyncio.TimeoutError:
                    raise UploadRefused(408, f"{name}: no data for {wait:g} s after {got} bytes; upload abandoned") from None
                except (ConnectionError, EOFError, ValueError) as e:  # the client went away or broke the framing
                    raise UploadRefused(400, f"{name}: the upload was cut off ({type(e).__name__})") from None
                if not chunk:
                    break
                got += len(chunk)
                if got > limit:
                    raise UploadRefused(413, f"{name}: more than {limit} bytes; uploads are limited to {limit} bytes")
                out.write(chunk)
        if got == 0:
            raise UploadRefused(400, f"{name}: the upload is empty")

    # -- the page's session -----------------------------------------------------------------------
    async def ws_session(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=PAGE_MAX_MESSAGE, heartbeat=20)
        await ws.prepare(request)
        if self.busy:
            self.refused += 1
            await ws.send_json({"type": "busy", "message": "Another session is live on this server; it renders one "
                                "avatar at a time on this CPU. Try again when that session ends."}, dumps=dumps)
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

        web_thread = threading.get_ident()

        def on_event(event: dict) -> None:
            """A conversation event: to the page and to every connected agent, in order."""
            if threading.get_ident() == web_thread:
                self._broadcast(event, outbox)
            else:
                loop.call_soon_threadsafe(self._broadcast, event, outbox)

        self.busy = True  # taken before the first await, so a second page is refused meanwhile
        try:
            live = await asyncio.to_thread(LiveSession, self.pipe, self.portraits, self.levels, self.settings,
                                           delay=self.delay, render_batch=self.render_batch, sink=sink,
                                           agent_queue_s=self.limits.queue_s, on_event=on_event, controls=self.controls)
        except BaseException:
            self.busy = False
            raise
        self.live, self.peer, self.page_outbox = live, request.remote, outbox
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
                    await ws.send_str(dumps(msg))

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
                if msg.type == WSMsgType.ERROR:
                    break
                try:
                    if msg.type == WSMsgType.BINARY:
                        start, own = live.ingest(clean_pcm(from_pcm16(msg.data), "microphone"))
                        if np.any(own):
                            outbox.put_nowait(pack(KIND_AGENT_AUDIO, {"s": start, "n": len(own)}, pcm16(own)))
                    elif msg.type == WSMsgType.TEXT:
                        await self._control(live, parse(msg.data, PAGE), outbox)
                except (InfpError, ValueError, KeyError, TypeError) as e:
                    outbox.put_nowait({"type": "error", "message": str(e)})
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.to_thread(live.close)
            self.live = self.peer = self.page_outbox = None
            self.busy = False
            log.info("session from %s ended", request.remote)
        return ws

    async def _control(self, live: LiveSession, msg: dict, outbox: asyncio.Queue) -> None:
        """Act on a message of the page (already checked against ``messages.PAGE``)."""
        kind = msg["type"]
        if kind == "play":
            for name in msg["files"]:
                audio = await asyncio.to_thread(self._load_file, name)
                live.agent.add(audio, name)
            outbox.put_nowait({"type": "agent", **live.agent.status()})
        elif kind == "say":
            text = msg["text"].strip()
            if not text:
                raise InfpError("nothing to say")
            audio = await asyncio.to_thread(synthesize, text, msg.get("voice", "en-us"))
            live.agent.add(clean_pcm(audio, "speech"), "tts: " + text[:40])
            outbox.put_nowait({"type": "agent", **live.agent.status()})
        elif kind == "stop":
            dropped = live.clear_agent()["dropped_s"]
            outbox.put_nowait({"type": "agent", "stopped_s": dropped, **live.agent.status()})
        elif kind == "record":
            if msg.get("on", True):
                name = time.strftime("session-%Y%m%d-%H%M%S.mp4")
                live.start_recording(self.record_dir / name)
                outbox.put_nowait({"type": "recording", "state": "on", "name": name})
            else:
                rec = await asyncio.to_thread(live.stop_recording)
                outbox.put_nowait({"type": "recording", "state": "saved", "name": rec.path.name,
                                   "url": f"/recordings/{rec.path.name}", "frames": rec.frames,
                                   "seconds": round(rec.frames / FPS, 2), "controls": rec.metadata()["controls"]})
        elif kind == "client_stats":
            self.client_stats = {k: msg[k] for k in msg if k != "type"}
        elif kind == "controls":
            self._set_controls(live, msg, "page")

    def _set_controls(self, live: LiveSession | None, msg: dict, by: str) -> None:
        """A ``controls`` message of the page or an agent: set them and tell the page and every agent."""
        if live is None:
            raise InfpError("no live session: open the demo page first")
        if not live.controls_available:
            raise InfpError(NO_CONTROLS)
        change = live.set_controls(controls_of(msg))
        log.info("controls from the %s: %s", by, live.controls or "none (the model's own)")
        self._broadcast({"type": "controls", **change, "by": by}, self.page_outbox)

    def _broadcast(self, event: dict, outbox: asyncio.Queue | None) -> None:
        """Send a conversation event to the page's session and to every connected agent (on the web thread)."""
        if outbox is not None:
            outbox.put_nowait(event)
        for box in list(self.agent_outboxes):
            box.put_nowait(event)

    # -- an external voice agent ------------------------------------------------------------------
    async def ws_agent(self, request: web.Request) -> web.StreamResponse:
        """PCM of the agent's voice in (binary), control as JSON, conversation events out; see docs/PROTOCOL.md.

        Everything this socket sends (replies, errors, events) goes through one queue, so it arrives in
        the order it was decided; a reply is sent before the next message is read (a client that does not
        read its replies is not answered faster than it reads).
        """
        ws = web.WebSocketResponse(max_msg_size=AGENT_MAX_MESSAGE)
        await ws.prepare(request)
        stream = AgentStream()
        box: asyncio.Queue = asyncio.Queue()
        box.put_nowait({"type": "ready", "sample_rate": stream.rate, "encoding": stream.encoding,
                        "live": self.live is not None, "controls_available": self.pipe.stage2.has_controls})

        async def sender() -> None:
            while True:
                msg = await box.get()
                try:
                    if not ws.closed:
                        await ws.send_str(dumps(msg))
                except (ConnectionError, RuntimeError):  # the agent went away: what is left is dropped
                    pass
                finally:
                    box.task_done()

        task = asyncio.create_task(sender())
        self.agent_outboxes.add(box)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                try:
                    if msg.type == WSMsgType.BINARY:
                        self._agent_pcm(stream, msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        reply = self._agent_control(stream, parse(msg.data, AGENT))
                        if reply is not None:
                            box.put_nowait(reply)
                except (InfpError, ValueError) as e:
                    box.put_nowait({"type": "error", "message": str(e)})
                await box.join()
        finally:
            self.agent_outboxes.discard(box)
            task.cancel()
        return ws

    def _agent_pcm(self, stream: "AgentStream", data: bytes) -> None:
        live = self.live
        if live is None:
            raise InfpError("no live session: open the demo page first")
        x = from_pcm16(data) if stream.encoding == "s16le" else from_f32(data)
        live.agent.add(stream.resampler(clean_pcm(x, "agent")), "external")

    def _agent_control(self, stream: "AgentStream", msg: dict) -> dict | None:
        """The reply to a message of an agent (already checked against ``messages.AGENT``); None when the
        reply went to every agent already (``controls``)."""
        live = self.live
        kind = msg["type"]
        if kind == "format":
            stream.set(msg.get("sample_rate", SAMPLE_RATE), msg.get("encoding", "s16le"))
            return {"type": "format", "sample_rate": stream.rate, "encoding": stream.encoding}
        if kind == "clear":
            return {"type": "cleared", **(live.clear_agent() if live is not None else {"dropped_s": 0.0, "t": None})}
        if kind == "controls":
            self._set_controls(live, msg, "agent")
            return None
        return {"type": "status", "live": live is not None, **(live.agent.status() if live is not None else {}),
                "clock_s": round(live.samples / SAMPLE_RATE, 2) if live is not None else None,
                "speech": live.events.speaking if live is not None else None,
                "controls": live.controls.to_dict() if live is not None else None}


class AgentStream:
    """The PCM format an agent's connection said it sends, and the resampler that brings it to 16 kHz."""

    def __init__(self) -> None:
        self.set(SAMPLE_RATE, "s16le")

    def set(self, rate: int, encoding: str) -> None:
        self.rate, self.encoding = rate, encoding
        self.resampler = StreamResampler(rate)


def serve(server: DemoServer, host: str = "127.0.0.1", port: int = 8000, ready=None,
          stop: threading.Event | None = None) -> None:
    """Run the web server until interrupted (or ``stop`` is set); prints the address (port 0 picks a free one).

    The web server's event loop runs on a second thread; the main thread runs the live sessions'
    generation, where torch's CPU kernels are fastest (see ``LiveSession.start``).
    """
    server.compute = queue.Queue()
    server.bind(host)
    started = threading.Event()
    failed: list[BaseException] = []
    state: dict = {}

    async def main() -> None:
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        state["port"] = runner.addresses[0][1]  # the port really bound (port 0 picks one)
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
        while thread.is_alive() and not (stop is not None and stop.is_set()):
            try:
                live = server.compute.get(timeout=0.5)
            except queue.Empty:
                continue
            live.run()
    finally:
        if "loop" in state and thread.is_alive():
            state["loop"].call_soon_threadsafe(state["stop"].set)
            thread.join(10)
