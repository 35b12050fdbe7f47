"""A voice agent for the live avatar that stops talking when the user barges in.

    infp demo                                  # the server; open http://127.0.0.1:8000/ and press Start
    python demo/agent_example.py [--url ws://127.0.0.1:8000/ws/agent] [--speech FILE] [--reply FILE]
                                 [--reply-s 1.5] [--seconds N]

It connects to the demo's agent endpoint (``/ws/agent``, docs/PROTOCOL.md), waits for a live session,
and speaks ``--speech`` (any audio file; default: data/samples/audio/ditto.flac) as the avatar's voice,
streamed in 100 ms chunks a little ahead of real time, as a text-to-speech stream would be. It listens
to the avatar's conversation events:

* ``user_speech_start`` while it talks: it sends ``clear`` (barge-in): its queued voice is dropped and
  the avatar stops talking and listens; the ``cleared`` reply says how much was not played
  (``dropped_s``), so it remembers where it was cut;
* ``user_speech_end`` after such an interruption: it answers with a short reply (the first
  ``--reply-s`` seconds of speech of ``--reply``), then goes on with its speech where it was cut.

It prints every event and what it did. It ends when its speech is over, when the live session ends
(or after ``--seconds``).
``BargeInAgent`` can be used from other code (``benchmarks/agent_events.py`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


def load_speech(path: Path, seconds: float | None = None) -> np.ndarray:
    """16 kHz mono float32 of an audio file; with ``seconds``: that much from its first speech on."""
    from infp.io import read_audio

    audio = read_audio(path).mean(axis=0).astype(np.float32)
    if seconds is None:
        return audio
    from infp.audio.vad import frame_speech_prob, speech_segments

    segments = speech_segments(frame_speech_prob(audio)[:, 0])
    start = int(segments[0][0] * RATE) if segments else 0
    return audio[start:start + int(seconds * RATE)]


class BargeInAgent:
    """Streams ``speech`` to ``/ws/agent``; ``clear`` when the user starts talking, a reply when they stop.

    ``log``: every message received and every action, as (time.monotonic(), dict), for callers that
    measure (the benchmark times the events' arrival with it).
    """

    def __init__(self, speech: np.ndarray, reply: np.ndarray, chunk_s: float = 0.1, lead_s: float = 0.3,
                 echo: bool = True) -> None:
        self.speech, self.reply = speech, reply
        self.chunk = int(chunk_s * RATE)
        self.lead_s = lead_s  # how far ahead of real time the voice is streamed
        self.echo = echo
        self.speech_pos = 0  # next sample of the speech to send
        self.reply_left = np.zeros(0, np.float32)  # what is left of the reply, said before the speech goes on
        self.sent: list[tuple[str, int, int]] = []  # (source, first sample, samples) since the last clear
        self.talking = True
        self.interrupted = False
        self.clears = 0
        self.log: list[tuple[float, dict]] = []

    def say(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)

    async def run(self, ws: aiohttp.ClientWebSocketResponse, seconds: float | None = None) -> None:
        ready = await ws.receive_json()
        self.log.append((time.monotonic(), ready))
        while not ready.get("live"):  # no page yet: ask again until a session is live
            await asyncio.sleep(0.5)
            await ws.send_json({"type": "status"})
            ready = await ws.receive_json()
        self.say("live session: speaking")
        sender = asyncio.create_task(self._stream(ws))
        try:
            await asyncio.wait_for(self._listen(ws), seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            sender.cancel()

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = msg.json()
            self.log.append((time.monotonic(), event))
            kind = event["type"]
            if kind.endswith(("_start", "_end")):
                self.say(f"{event['clock_s']:8.2f} s  {kind:<18} at {event['t']:.2f} s")
            if kind == "user_speech_start" and self.talking:
                self.talking, self.interrupted = False, True  # stop sending at once
                await ws.send_json({"type": "clear"})
                self.log.append((time.monotonic(), {"type": "sent_clear"}))
                self.clears += 1
            elif kind == "cleared":
                self._rewind(int(round(event["dropped_s"] * RATE)))
                self.say(f"{'':10}  barge-in: voice cleared at {event['t']:.2f} s, {event['dropped_s']:.2f} s not played")
            elif kind == "user_speech_end" and self.interrupted:
                self.interrupted = False
                self.reply_left = self.reply
                self.talking = True
                self.say(f"{'':10}  the user stopped: a short reply, then the speech goes on")
            elif kind == "error":
                if event["message"].startswith("no live session"):  # the page was closed
                    self.say(f"{'':10}  the live session ended")
                    return
                self.say(f"{'':10}  error: {event['message']}")

    def _rewind(self, dropped: int) -> None:
        """The last ``dropped`` samples sent were never played: the speech goes on from the first of them."""
        while dropped > 0 and self.sent:
            source, first, n = self.sent.pop()
            take = min(n, dropped)
            if source == "speech":
                self.speech_pos = first + n - take
            dropped -= take
        self.sent.clear()
        self.reply_left = np.zeros(0, np.float32)

    def _next_piece(self) -> np.ndarray:
        if len(self.reply_left):
            piece, self.reply_left = self.reply_left[: self.chunk], self.reply_left[self.chunk:]
            self.sent.append(("reply", 0, len(piece)))
            return piece
        piece = self.speech[self.speech_pos:self.speech_pos + self.chunk]
        self.sent.append(("speech", self.speech_pos, len(piece)))
        self.speech_pos += len(piece)
        return piece

    async def _stream(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send the voice in chunks, ``lead_s`` ahead of real time, while talking; close when all is said."""
        await ws.send_json({"type": "format", "sample_rate": RATE, "encoding": "s16le"})
        due = time.monotonic() - self.lead_s
        while True:
            if not self.talking:
                await asyncio.sleep(0.02)
                due = time.monotonic() - self.lead_s
                continue
            piece = self._next_piece()
            if not len(piece):  # all said: let the last words be heard, then stop
                await asyncio.sleep(self.lead_s + 1.0)
                await ws.close()
                return
            await ws.send_bytes((np.clip(piece, -1, 1) * 32767).astype("<i2").tobytes())
            due += len(piece) / RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))


async def main_async(args: argparse.Namespace) -> int:
    agent = BargeInAgent(load_speech(args.speech), load_speech(args.reply, args.reply_s))
    async with aiohttp.ClientSession() as http, http.ws_connect(args.url) as ws:
        await agent.run(ws, args.seconds)
    print(f"done: interrupted {agent.clears} time(s)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8000/ws/agent")
    ap.add_argument("--speech", type=Path, default=REPO / "data" / "samples" / "audio" / "ditto.flac")
    ap.add_argument("--reply", type=Path, default=REPO / "data" / "samples" / "audio" / "joyvasa_001.flac")
    ap.add_argument("--reply-s", type=float, default=1.5, help="seconds of --reply said after an interruption")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this long")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
