"""Running the streaming loop in real time: one audio clock, the agent's voice, late frames dropped.

``LiveSession`` wraps a ``StreamingSession``. Audio arrives through ``ingest(other)``: the partner's
samples (a microphone, or a file paced in real time) advance the session's audio clock, and for every
sample of the partner the same number of samples of the agent's voice is taken from ``AgentVoice``
(silence when the agent is quiet). So both channels, and every frame, live on one clock: frame ``k``
shows samples ``[640 k, 640 (k + 1))`` of both voices and is presented ``delay`` seconds after those
samples arrived, together with the agent's audio of the same samples.

A worker thread turns complete hops (4 frames) into frames. A frame that cannot be ready by its
presentation time is not rendered (``StreamingSession.drop``); one rendered too late is marked late
and not shown. Latency therefore stays bounded instead of growing when the CPU falls behind, and if
frames keep being late the session steps down a quality ladder (smaller render size, then fewer
diffusion steps) and says why.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import soundfile as sf

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.errors import InfpError
from infp.io import VideoWriter
from infp.io.atomic import temp_sibling
from infp.pipelines.portrait import Portrait, load_portrait
from infp.pipelines.streaming import STATES, StreamFrame

log = logging.getLogger(__name__)

LADDER = ((256, 6), (224, 6), (192, 6), (192, 4), (160, 4))
"""Quality levels (render size, diffusion steps), best first; a live session steps down when it must."""

JPEG_QUALITY = 85

MAX_AGENT_QUEUE_S = 1200.0
"""Most seconds of the agent's voice that may wait in its queue (20 minutes, 77 MB of samples)."""


@dataclass
class Level:
    size: int
    steps: int

    def __str__(self) -> str:
        return f"{self.size}x{self.size}, {self.steps} diffusion steps"


def ladder(start_size: int, steps: int, adapt: bool = True) -> list[Level]:
    """The quality levels a session may use, starting at (start_size, steps)."""
    levels = [Level(start_size, steps)]
    if adapt:
        for size, st in LADDER:
            if size < start_size or (size == start_size and st < steps):
                st = min(st, steps)
                if (size, st) != (levels[-1].size, levels[-1].steps):
                    levels.append(Level(size, st))
    return levels


def portraits_for(image: str | Path | np.ndarray, levels: list[Level], face_index: int | None = None) -> dict[int, Portrait]:
    """The portrait cropped at every render size of ``levels`` (face detection once per size)."""
    return {s: load_portrait(image, s, face_index) for s in sorted({lv.size for lv in levels}, reverse=True)}


class AgentVoice:
    """The agent's voice (the ``self`` channel) waiting to be heard: a queue read at the session clock.

    At most ``max_seconds`` of audio wait at a time: audio comes from the network (an agent's stream,
    uploads), and a queue without a bound would let a client grow the server's memory without limit.
    """

    def __init__(self, max_seconds: float | None = MAX_AGENT_QUEUE_S) -> None:
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._items: deque[list] = deque()  # [name, audio (float32), read position]
        self._left = 0  # samples queued and not yet read

    def add(self, audio: np.ndarray, name: str = "agent") -> None:
        """Queue 16 kHz mono audio after what is already queued; InfpError if the queue would exceed its bound."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        if not len(audio):
            return
        with self._lock:
            if self.max_seconds is not None and self._left + len(audio) > self.max_seconds * SAMPLE_RATE:
                raise InfpError(f"{name}: {len(audio) / SAMPLE_RATE:.1f} s would not fit in the agent's queue "
                                f"({self._left / SAMPLE_RATE:.1f} s waiting, at most {self.max_seconds:g} s): "
                                "send it once the queue has played, or stop it first")
            self._items.append([name, audio, 0])
            self._left += len(audio)

    def clear(self) -> float:
        """Stop the agent (barge-in); returns the seconds of audio dropped."""
        with self._lock:
            left = self._left
            self._items.clear()
            self._left = 0
        return left / SAMPLE_RATE

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (silence where nothing is queued)."""
        out = np.zeros(n, np.float32)
        got = 0
        with self._lock:
            while got < n and self._items:
                item = self._items[0]
                take = min(n - got, len(item[1]) - item[2])
                out[got:got + take] = item[1][item[2]:item[2] + take]
                item[2] += take
                got += take
                if item[2] >= len(item[1]):
                    self._items.popleft()
            self._left -= got
        return out

    def status(self) -> dict:
        with self._lock:
            names = [name for name, _, _ in self._items]
            left = self._left
        names = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]  # a stream's pieces count once
        return {"playing": names[0] if names else None, "queued": names, "queued_s": round(left / SAMPLE_RATE, 2)}


class SessionRecorder:
    """An mp4 of a live session: the frames as presented and both voices as a stereo track (0 = self, 1 = other).

    Frames that were dropped repeat the previous picture, so the video keeps exactly one frame per
    40 ms of audio. Audio goes to a temporary WAV as it arrives (memory does not grow).
    """

    def __init__(self, path: str | Path, first_frame: int, still: np.ndarray) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise InfpError("recording must be an .mp4 file", self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.first_frame = self.next_frame = first_frame
        self.end_frame: int | None = None  # set by stop()
        self._last = still
        self._size = still.shape[1], still.shape[0]
        self._wav_path = temp_sibling(self.path.with_suffix(".wav"))
        self._wav = sf.SoundFile(str(self._wav_path), "w", SAMPLE_RATE, 2, "FLOAT")
        self._samples = 0
        self._video = VideoWriter(self.path, fps=FPS, audio=self._wav_path)
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.error: Exception | None = None

    @property
    def start_sample(self) -> int:
        return self.first_frame * SAMPLES_PER_FRAME

    def audio(self, start: int, own: np.ndarray, other: np.ndarray) -> None:
        """Both channels' samples from ``start`` on the session clock (called as audio arrives)."""
        with self._lock:
            if self._wav.closed or self.end_frame is not None:
                return
            lo = max(0, self.start_sample + self._samples - start)
            if lo < len(own):
                chunk = np.stack([own[lo:], other[lo:]], axis=1)
                self._wav.write(chunk)
                self._samples += len(chunk)

    def frame(self, f: StreamFrame) -> None:
        """A frame of the session (in order); dropped frames repeat the previous picture."""
        with self._lock:
            if self.done.is_set() or f.index < self.next_frame or (self.end_frame is not None and f.index >= self.end_frame):
                return
            if f.image is not None:
                img = f.image
                if (img.shape[1], img.shape[0]) != self._size:
                    img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
                self._last = img
            try:
                self._video.write(self._last)
            except Exception as e:  # noqa: BLE001  (reported by stop())
                self.error = e
                self.done.set()
                return
            self.next_frame = f.index + 1
            if self.end_frame is not None and self.next_frame >= self.end_frame:
                self._close_soon()

    def stop(self, end_sample: int) -> None:
        """No audio after ``end_sample``; the file is closed once the frames up to it are written."""
        with self._lock:
            if self.end_frame is not None:
                return
            n = max(0, end_sample - self.start_sample)
            self.end_frame = self.first_frame + max(1, -(-n // SAMPLES_PER_FRAME))
            if self.next_frame >= self.end_frame:
                self._close_soon()

    def complete(self) -> None:
        """Close now, repeating the last picture up to the end (when the input stopped before the frames caught up)."""
        with self._lock:
            if self.done.is_set() or self.end_frame is None or self.next_frame >= self.end_frame:
                return
            try:
                while self.next_frame < self.end_frame:
                    self._video.write(self._last)
                    self.next_frame += 1
            except Exception as e:  # noqa: BLE001
                self.error = e
        self._close()

    def _close_soon(self) -> None:
        """Mux on another thread, so the live loop does not wait for ffmpeg."""
        threading.Thread(target=self._close, name="infp-record", daemon=True).start()

    def _close(self) -> None:
        try:
            want = (self.end_frame - self.first_frame) * SAMPLES_PER_FRAME
            if self._samples < want:  # pad the audio to exactly the video's duration
                self._wav.write(np.zeros((want - self._samples, 2), np.float32))
            self._wav.close()
            self._video.close()
        except Exception as e:  # noqa: BLE001
            self.error = e
            self._video.abort()
        finally:
            self._wav_path.unlink(missing_ok=True)
            self.done.set()

    def abort(self) -> None:
        with self._lock:
            if not self._wav.closed:
                self._wav.close()
            self._video.abort()
            self._wav_path.unlink(missing_ok=True)
            self.done.set()

    @property
    def frames(self) -> int:
        return (self.end_frame or self.next_frame) - self.first_frame


class LiveStats:
    """Counters and rolling figures of a live session (thread-safe enough for reporting)."""

    def __init__(self, keep_records: bool = False) -> None:
        self.frames = self.delivered = self.dropped = self.late = 0
        self.latency = deque(maxlen=250)  # seconds, the last 10 s of delivered frames
        self.delivered_at = deque(maxlen=200)  # wall times of recent delivered frames
        self.hop_busy = deque(maxlen=25)  # (hop compute seconds, frames dropped in it)
        self.render_ms = deque(maxlen=100)
        self.keep_records = keep_records
        # per-frame records for reports (index, state, arrival of its audio, ready time, latency, delivered)
        self.rec_index, self.rec_state = array("l"), array("b")
        self.rec_wall, self.rec_ready, self.rec_latency, self.rec_ok = array("d"), array("d"), array("d"), array("b")

    def add(self, f: StreamFrame, ready: float, latency: float, delivered: bool, wall: float | None = None) -> None:
        self.frames += 1
        if delivered:
            self.delivered += 1
            self.latency.append(latency)
            self.delivered_at.append(ready)
        elif f.image is None:
            self.dropped += 1
        else:
            self.late += 1
        if f.image is not None:
            self.render_ms.append(f.render_s * 1000)
        if self.keep_records:
            self.rec_index.append(f.index)
            self.rec_state.append(STATES.index(f.state))
            self.rec_wall.append(ready - latency if wall is None else wall)
            self.rec_ready.append(ready)
            self.rec_latency.append(latency)
            self.rec_ok.append(int(delivered))

    def fps(self, now: float, span: float = 2.0) -> float:
        recent = [t for t in list(self.delivered_at) if now - t <= span]
        return len(recent) / span

    def snapshot(self, now: float) -> dict:
        lat = np.array(list(self.latency)) * 1000
        busy = list(self.hop_busy)
        return {"frames": self.frames, "delivered": self.delivered, "dropped": self.dropped, "late": self.late,
                "fps": round(self.fps(now), 1),
                "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                               "p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None},
                "load": round(sum(b for b, _ in busy) / (len(busy) * 0.16), 2) if busy else None,
                "render_ms": round(float(np.mean(list(self.render_ms))), 1) if self.render_ms else None}


class LiveSession:
    """A ``StreamingSession`` run against the clock; see the module docstring.

    ``sink(frame)`` is called on the worker thread for every frame, in order, after it was rendered
    and encoded (``frame.info``: ``jpeg`` bytes or None, ``latency`` s, ``late``, ``wall`` of its audio).
    """

    def __init__(self, pipe, portraits: dict[int, Portrait], levels: list[Level], settings, *, delay: float = 0.25,
                 render_batch: int = 1, sink: Callable[[StreamFrame], None] | None = None, keep_records: bool = False,
                 margin: float = 0.01, encode: bool = True, clock: Callable[[], float] = time.monotonic,
                 agent_queue_s: float | None = MAX_AGENT_QUEUE_S) -> None:
        self.levels = levels
        self.level_index = 0
        self.portraits = portraits
        self.delay, self.margin, self.encode = delay, margin, encode
        self.clock = clock
        self.sink = sink
        self.session = pipe.session(portraits[levels[0].size], settings, vad=None, overlay=False, render_batch=render_batch)
        self.session.set_steps(levels[0].steps)
        self.session.warm_up_vad()
        self.session.drop = self._should_drop
        self.agent = AgentVoice(agent_queue_s)
        self.stats = LiveStats(keep_records)
        self.note = ""  # why the quality was lowered, if it was
        self.samples = 0  # the audio clock: samples ingested per channel
        self.recorder: SessionRecorder | None = None
        self._frame_wall: dict[int, float] = {}  # frame index -> wall time its first sample arrived
        self._inbox: deque = deque()
        self._cond = threading.Condition()
        self._lock = threading.Lock()
        self._stop = False
        self._flush = False
        self._finished = threading.Event()
        self._render_times: deque[float] = deque(maxlen=8)  # recent seconds per rendered frame
        self._skipped = 0  # frames dropped in a row on the estimate alone
        self._since_change = 0
        self._load_ema, self._clean, self._up_after = 0.5, 0, 125  # stepping back up (see _adapt)
        self._reached_by_step_up = False
        self.changes: list[dict] = []  # quality changes, for reports
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self.run, name="infp-live", daemon=True)

    # -- control ----------------------------------------------------------------------------------
    @property
    def level(self) -> Level:
        return self.levels[self.level_index]

    def start(self, thread: bool = True) -> "LiveSession":
        """Start generating: on a thread of its own, or (``thread=False``) when the caller runs ``run()``.

        Rendering is markedly faster on the process's main thread (torch's CPU kernels run about
        1.4x slower from a secondary thread here), so the demo's server and ``--simulate`` call
        ``run()`` on the main thread and do their I/O on other threads.
        """
        if thread:
            self._thread.start()
        return self

    def run(self) -> None:
        """Generate frames until the input ends (``end_input``/``finish``) or ``close()``; blocks."""
        self._started.set()
        self._run()

    def end_input(self) -> None:
        """No more audio: the worker generates what is left (last hop padded with silence) and returns."""
        with self._cond:
            self._flush = True
            self._cond.notify()

    def ingest(self, other: np.ndarray, wall: float | None = None) -> tuple[int, np.ndarray]:
        """The partner's next samples arrived (16 kHz mono float32); the clock advances by as many.

        Returns (start sample, the agent's voice for the same samples), to be played with the frames.
        """
        other = np.asarray(other, np.float32).reshape(-1)
        own = self.agent.read(len(other))
        wall = self.clock() if wall is None else wall
        with self._lock:
            start = self.samples
            self.samples += len(other)
            if self.recorder is not None:
                self.recorder.audio(start, own, other)
        with self._cond:
            self._inbox.append((own, other, start, wall))
            self._cond.notify()
        return start, own

    def finish(self, timeout: float | None = None) -> None:
        """End of input: generate what is left (the last hop padded with silence) and stop the worker."""
        self.end_input()
        self._finished.wait(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop now (a live page went away); an unfinished recording is discarded."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        elif self._started.is_set():
            self._finished.wait(5)
        with self._lock:
            if self.recorder is not None and not self.recorder.done.is_set():
                self.recorder.abort()

    def start_recording(self, path: str | Path) -> SessionRecorder:
        """Record from the next frame boundary of the audio clock."""
        with self._lock:
            if self.recorder is not None and not self.recorder.done.is_set():
                raise InfpError("already recording")
            first = -(-self.samples // SAMPLES_PER_FRAME)
            still = self.portraits[self.levels[0].size].crop
            if self.session.paste_back:
                still = self.portraits[self.levels[0].size].paste(still)
            self.recorder = SessionRecorder(path, first, still)
            return self.recorder

    def stop_recording(self, wait: float | None = None) -> SessionRecorder:
        """End the recording at the current audio clock; blocks until its last frame is written.

        The frames up to the end need a hop of audio more; if the input stops before they come
        (``wait`` s, default: the delay plus a second), the last picture is repeated up to the end.
        """
        with self._lock:
            rec = self.recorder
            if rec is None or rec.end_frame is not None:
                raise InfpError("not recording")
            rec.stop(self.samples)
        if not rec.done.wait(self.delay + 1.0 if wait is None else wait):
            rec.complete()
            rec.done.wait(60)
        if rec.error is not None:
            raise InfpError(f"recording failed ({rec.error})", rec.path)
        return rec

    def snapshot(self) -> dict:
        """Figures for the page: throughput, latency, drops, quality level and the agent's queue."""
        snap = self.stats.snapshot(self.clock())
        snap.update(size=self.level.size, steps=self.level.steps, delay_ms=round(self.delay * 1000), note=self.note,
                    clock_s=round(self.samples / SAMPLE_RATE, 2), agent=self.agent.status(),
                    recording=self.recorder is not None and not self.recorder.done.is_set())
        return snap

    # -- worker -----------------------------------------------------------------------------------
    def _deadline(self, k: int) -> float:
        wall = self._frame_wall.get(k)
        return math.inf if wall is None else wall + self.delay - self.margin

    def _should_drop(self, k: int) -> bool:
        deadline, now = self._deadline(k), self.clock()
        if now > deadline:
            return True
        # the median of recent renders predicts this one; each frame dropped on that prediction alone
        # shrinks it, so one slow render (a hiccup of a shared CPU) cannot lock out rendering
        est = float(np.median(self._render_times)) * 0.8 ** self._skipped if self._render_times else 0.0
        if now + est > deadline:
            self._skipped += 1
            return True
        self._skipped = 0
        return False

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._inbox and not self._stop and not self._flush:
                        self._cond.wait(0.5)
                    if self._stop:
                        return
                    chunks = list(self._inbox)
                    self._inbox.clear()
                    flush = self._flush and not chunks
                for own, other, start, wall in chunks:
                    self._note_arrival(start, len(own), wall)
                    self.session.feed(own, other)
                while self.session.ready_hops and not self._stop:
                    self._hop(self.session.step())
                if flush:
                    self._hop(iter(self.session.flush()))
                    return
        except BaseException as e:  # noqa: BLE001  (reported by finish() and the server)
            log.exception("live session failed")
            self.error = e
        finally:
            self._finished.set()

    def _note_arrival(self, start: int, n: int, wall: float) -> None:
        """Remember when the first sample of each frame starting in this chunk arrived."""
        end = start + n
        k = -(-start // SAMPLES_PER_FRAME)
        while k * SAMPLES_PER_FRAME < end:
            self._frame_wall[k] = wall - (end - k * SAMPLES_PER_FRAME) / SAMPLE_RATE
            k += 1

    def _hop(self, frames) -> None:
        t0 = time.perf_counter()
        dropped = 0
        for f in frames:
            self._emit(f)
            dropped += int(not f.info.get("delivered", False))
        self.stats.hop_busy.append((time.perf_counter() - t0, dropped))
        self._adapt()

    def _emit(self, f: StreamFrame) -> None:
        wall = self._frame_wall.pop(f.index, None)
        if f.image is not None:
            self._render_times.append(f.render_s)
        jpeg = None
        if f.image is not None and self.encode:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            jpeg = buf.tobytes() if ok else None
        now = self.clock()
        latency = now - wall if wall is not None else 0.0
        late = f.image is not None and wall is not None and latency > self.delay - self.margin
        delivered = f.image is not None and not late
        f.info.update(jpeg=jpeg if delivered else None, latency=latency, late=late, wall=wall, ready=now,
                      delivered=delivered, size=self.level.size)
        self.stats.add(f, now, latency, delivered, wall)
        with self._lock:
            rec = self.recorder
        if rec is not None and not rec.done.is_set():
            rec.frame(f)
        if self.sink is not None:
            self.sink(f)

    def _adapt(self) -> None:
        """Move along the quality ladder.

        Down one level when, over the last 2 s (12 hops), more than 15 % of the frames were late or the
        hops took more than 95 % of real time. Up one level after ``_up_after`` hops (20 s at first)
        without a late frame and with the load below 0.55; every step back down doubles that wait, so
        a machine that cannot hold the better level does not oscillate.
        """
        self._since_change += 1
        busy_s, dropped = self.stats.hop_busy[-1]
        self._load_ema = 0.9 * self._load_ema + 0.1 * busy_s / self.session.hop_s
        self._clean = self._clean + 1 if dropped == 0 and self._load_ema < 0.55 else 0
        if self.level_index > 0 and self._clean >= self._up_after:
            self._change(self.level_index - 1, "the CPU has room again")
            return
        busy = list(self.stats.hop_busy)[-12:]
        if self._since_change < 12 or len(busy) < 12 or self.level_index + 1 >= len(self.levels):
            return
        frames = len(busy) * self.session.window
        drop_share = sum(d for _, d in busy) / frames
        load = sum(b for b, _ in busy) / (len(busy) * self.session.hop_s)
        if drop_share > 0.15 or load > 0.95:
            if self._reached_by_step_up:  # it went back up too early: wait twice as long next time
                self._up_after = min(self._up_after * 2, 3750)
            self._change(self.level_index + 1, f"{self.level} did not keep up on this CPU "
                                               f"({drop_share:.0%} of frames late, load {load:.2f})")

    def _change(self, index: int, why: str) -> None:
        new = self.levels[index]
        self._reached_by_step_up = index < self.level_index
        self.level_index = index
        if new.size != self.session.size:
            self.session.set_portrait(self.portraits[new.size])
        self.session.set_steps(new.steps)
        self._render_times.clear()
        self._skipped = 0
        self._since_change = self._clean = 0
        self._load_ema = 0.5
        self.note = "" if index == 0 else f"rendering at {new} because {why}"
        self.changes.append({"clock_s": round(self.samples / SAMPLE_RATE, 2), "size": new.size, "steps": new.steps,
                             "why": why})
        log.warning("quality: %s (%s)", new, why)


def warm_up(pipe, portraits: dict[int, Portrait], render_batch: int = 1) -> None:
    """Run motion generation and each render size once, so the first live frames do not pay for start-up."""
    from infp.pipelines.motion import MotionStream

    for i, pt in enumerate(portraits.values()):
        src = pipe.stage1.source(pt)
        if i == 0:
            stream = MotionStream(pipe.stage2, src.motion[0], steps=2, device=pipe.device)
            silence = np.zeros(2 * stream.window * SAMPLES_PER_FRAME, np.float32)
            stream.push(silence, silence)
        for _ in range(2):
            pipe.stage1.render(src, src.motion.expand(render_batch, -1).clone())
