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

Voice activity of both channels is computed as the audio is ingested, not when its hop is generated,
so the conversation events (``events``: the user and the agent start / stop talking) do not wait for
rendering; ``clear_agent`` stops the agent's voice at the clock's current sample (barge-in).

``set_controls`` changes the expression / behaviour controls (``infp.models.controls``) on the same
clock: they apply from the hop that holds the clock's current sample, whatever the worker is doing.

The parts: ``clock`` (the audio clock, deadlines, the drop decision), ``quality`` (the ladder),
``agent`` (the agent's voice queue), ``events`` (speech start / end of both channels), ``recorder``
(mp4 of a session), ``stats`` (figures).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.demo.agent import MAX_AGENT_QUEUE_S, AgentVoice
from infp.demo.clock import AudioClock, DropPredictor
from infp.demo.events import ConversationEvents
from infp.demo.quality import Level, QualityLadder
from infp.demo.recorder import SessionRecorder
from infp.demo.stats import LiveStats
from infp.errors import InfpError
from infp.models.controls import Controls
from infp.runtime.portrait import Portrait, load_portrait
from infp.runtime.streaming import StreamFrame

log = logging.getLogger(__name__)

JPEG_QUALITY = 85


def portraits_for(image: str | Path | np.ndarray, levels: list[Level], face_index: int | None = None) -> dict[int, Portrait]:
    """The portrait cropped at every render size of ``levels`` (face detection once per size)."""
    return {s: load_portrait(image, s, face_index) for s in sorted({lv.size for lv in levels}, reverse=True)}


class LiveSession:
    """A ``StreamingSession`` run against the clock; see the module docstring.

    ``sink(frame)`` is called on the worker thread for every frame, in order, after it was rendered
    and encoded (``frame.info``: ``jpeg`` bytes or None, ``latency`` s, ``late``, ``wall`` of its audio).
    ``on_event(message)`` is called with each conversation event (``infp.demo.events``), in order, on
    the thread that called ``ingest`` or ``clear_agent``; with ``keep_records`` they are also kept in
    ``event_log``. ``controls``: the expression / behaviour controls to start with (default:
    ``settings.controls``; see ``set_controls``).
    """

    def __init__(self, pipe, portraits: dict[int, Portrait], levels: list[Level], settings, *, delay: float = 0.25,
                 render_batch: int = 1, sink: Callable[[StreamFrame], None] | None = None, keep_records: bool = False,
                 margin: float = 0.01, encode: bool = True, clock: Callable[[], float] = time.monotonic,
                 agent_queue_s: float | None = MAX_AGENT_QUEUE_S, on_event: Callable[[dict], None] | None = None,
                 controls: Controls | None = None) -> None:
        self.portraits = portraits
        self.encode, self.sink, self.on_event = encode, sink, on_event
        self.session = pipe.session(portraits[levels[0].size], settings, vad=None, overlay=False, render_batch=render_batch)
        self.session.set_steps(levels[0].steps)
        self.session.warm_up_vad()
        self.clock = AudioClock(delay, margin, clock)
        self.predictor = DropPredictor(self.clock)
        self.session.drop = self.predictor
        self.quality = QualityLadder(levels)
        self.agent = AgentVoice(agent_queue_s)
        self.events = ConversationEvents()
        self.event_log: list[dict] | None = [] if keep_records else None
        self._ingest_lock = threading.Lock()  # the agent's voice is read and cleared on one clock
        self.stats = LiveStats(1.0 / FPS, keep_records)
        self._busy_carry = 0.0  # compute time of generator steps that let out no frame, not yet reported
        self.recorder: SessionRecorder | None = None
        self.error: BaseException | None = None
        self._worker = _Worker(self)
        self.controls = controls if controls is not None else settings.controls
        self.session.motion.set_controls(self.controls)
        self.controls_log: list[dict] = [self._control_change(0)]  # every change: first frame, controls

    # -- the parts' figures, by their usual names ---------------------------------------------------
    @property
    def delay(self) -> float:
        return self.clock.delay

    @property
    def samples(self) -> int:
        """The audio clock: samples ingested per channel."""
        return self.clock.samples

    @property
    def levels(self) -> list[Level]:
        return self.quality.levels

    @property
    def level(self) -> Level:
        return self.quality.level

    @property
    def level_index(self) -> int:
        return self.quality.index

    @property
    def note(self) -> str:
        return self.quality.note

    @property
    def changes(self) -> list[dict]:
        return self.quality.changes

    # -- control ----------------------------------------------------------------------------------
    def start(self, thread: bool = True) -> "LiveSession":
        """Start generating: on a thread of its own, or (``thread=False``) when the caller runs ``run()``.

        Rendering is markedly faster on the process's main thread (torch's CPU kernels run about
        1.4x slower from a secondary thread here), so the demo's server and ``--simulate`` call
        ``run()`` on the main thread and do their I/O on other threads.
        """
        if thread:
            self._worker.thread.start()
        return self

    def run(self) -> None:
        """Generate frames until the input ends (``end_input``/``finish``) or ``close()``; blocks."""
        self._worker.run()

    def end_input(self) -> None:
        """No more audio: the worker generates what is left (last hop padded with silence) and returns."""
        self._worker.end_input()

    def ingest(self, other: np.ndarray, wall: float | None = None) -> tuple[int, np.ndarray]:
        """The partner's next samples arrived (16 kHz mono float32); the clock advances by as many.

        Returns (start sample, the agent's voice for the same samples), to be played with the frames.
        """
        other = np.asarray(other, np.float32).reshape(-1)
        with self._ingest_lock:
            own = self.agent.read(len(other))
            wall = self.clock.now() if wall is None else wall
            with self._worker.lock:
                start = self.clock.advance(len(other))
                if self.recorder is not None:
                    self.recorder.audio(start, own, other)
            probs = self.session.voice_activity(own, other)
            events = self.events.push(probs, start + len(other))
            self._worker.put((own, other, start, wall, probs))
        self._announce(events)
        return start, own

    def clear_agent(self) -> dict:
        """Stop the agent's voice (barge-in): drop its queue; from the clock's next sample on the agent is
        silent. Returns ``dropped_s`` (seconds of voice dropped) and ``t`` (session seconds where it stops)."""
        with self._ingest_lock:
            dropped = self.agent.clear()
            clock = self.clock.samples
            events = self.events.cut_agent(clock)
        self._announce(events)
        return {"dropped_s": round(dropped, 2), "t": round(clock / SAMPLE_RATE, 3)}

    @property
    def controls_available(self) -> bool:
        """Whether the stage-2 network was trained with controls (without, they have no effect)."""
        return self.session.motion.net.has_controls

    def set_controls(self, controls: Controls | None) -> dict:
        """Expression / behaviour controls (None or empty: the model's own choice) from the hop that holds
        the clock's current sample on. Returns the change: ``k`` (first frame made with them), ``t`` (its
        session seconds), ``speak`` and ``listen``; it is also kept in ``controls_log`` and the recording."""
        controls = controls or Controls()
        with self._ingest_lock:
            k = self.clock.samples // self.session.hop * self.session.window
            self.controls = controls
            change = self._control_change(k)
            self.controls_log.append(change)
            self._worker.put_controls(k, controls)
            with self._worker.lock:
                if self.recorder is not None and not self.recorder.done.is_set():
                    self.recorder.controls(change)
        return change

    def _control_change(self, k: int) -> dict:
        return {"k": k, "t": round(k / FPS, 3), **self.controls.to_dict()}

    def _announce(self, events: list[dict]) -> None:
        for e in events:
            if self.event_log is not None:
                self.event_log.append(e)
            if self.on_event is not None:
                try:
                    self.on_event(e)
                except Exception:  # noqa: BLE001  (a listener's failure must not stop the audio clock)
                    log.exception("conversation event listener failed")

    def finish(self, timeout: float | None = None) -> None:
        """End of input: generate what is left (the last hop padded with silence) and stop the worker."""
        self.end_input()
        self._worker.join(timeout)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop now (a live page went away); an unfinished recording is discarded."""
        self._worker.stop()
        with self._worker.lock:
            if self.recorder is not None and not self.recorder.done.is_set():
                self.recorder.abort()

    def start_recording(self, path: str | Path) -> SessionRecorder:
        """Record from the next frame boundary of the audio clock."""
        with self._worker.lock:
            if self.recorder is not None and not self.recorder.done.is_set():
                raise InfpError("already recording")
            first = -(-self.samples // SAMPLES_PER_FRAME)
            still = self.portraits[self.levels[0].size].crop
            if self.session.paste_back:
                still = self.portraits[self.levels[0].size].paste(still)
            self.recorder = SessionRecorder(path, first, still)
            self.recorder.controls(self.controls_log[-1])
            return self.recorder

    def stop_recording(self, wait: float | None = None) -> SessionRecorder:
        """End the recording at the current audio clock; blocks until its last frame is written.

        The frames up to the end need a hop of audio more; if the input stops before they come
        (``wait`` s, default: the delay plus a second), the last picture is repeated up to the end.
        """
        with self._worker.lock:
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
        snap = self.stats.snapshot(self.clock.now())
        snap.update(size=self.level.size, steps=self.level.steps, delay_ms=round(self.delay * 1000), note=self.note,
                    clock_s=round(self.clock.seconds, 2), agent=self.agent.status(), speech=self.events.speaking,
                    recording=self.recorder is not None and not self.recorder.done.is_set(),
                    controls=self.controls.to_dict())
        return snap

    # -- called by the worker -----------------------------------------------------------------------
    def _hop(self, frames) -> None:
        t0 = time.perf_counter()
        late = n = 0
        for f in frames:
            self._emit(f)
            late += int(not f.info.get("delivered", False))
            n += 1
        busy = self._busy_carry + time.perf_counter() - t0
        if n == 0:  # work that let out no frame yet (a hop's motion, its frames waiting for audio): counted with the next
            self._busy_carry = busy
            return
        self._busy_carry = 0.0
        self.stats.hop_busy.append((busy, late, n))
        move = self.quality.after_hop(self.stats.hop_busy, 1.0 / FPS)
        if move is not None:
            self._change(*move)

    def _emit(self, f: StreamFrame) -> None:
        wall = self.clock.forget(f.index)
        if f.image is not None:
            self.predictor.rendered(f.render_s)
        jpeg = None
        if f.image is not None and self.encode:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            jpeg = buf.tobytes() if ok else None
        now = self.clock.now()
        latency = now - wall if wall is not None else 0.0
        late = f.image is not None and wall is not None and latency > self.clock.delay - self.clock.margin
        delivered = f.image is not None and not late
        f.info.update(jpeg=jpeg if delivered else None, latency=latency, late=late, wall=wall, ready=now,
                      delivered=delivered, size=self.level.size)
        self.stats.add(f, now, latency, delivered, wall)
        with self._worker.lock:
            rec = self.recorder
        if rec is not None and not rec.done.is_set():
            rec.frame(f)
        if self.sink is not None:
            self.sink(f)

    def _change(self, index: int, why: str) -> None:
        new = self.quality.move(index, why, self.clock.seconds)
        if new.size != self.session.size:
            self.session.set_portrait(self.portraits[new.size])
        self.session.set_steps(new.steps)
        self.predictor.reset()
        log.warning("quality: %s (%s)", new, why)


class _Worker:
    """The generation loop of a ``LiveSession``: takes ingested chunks from an inbox, feeds the streaming
    session and turns complete hops into frames; stops at the end of input or on ``stop()``."""

    def __init__(self, live: LiveSession) -> None:
        self.live = live
        self.lock = threading.Lock()  # the clock's counter and the recorder, shared with the I/O threads
        self._inbox: deque = deque()
        self._cond = threading.Condition()
        self._stop = self._flush = False
        self._controls: deque[tuple[int, Controls]] = deque()  # (first frame, controls) not applied yet
        self._started, self._finished = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, name="infp-live", daemon=True)

    def put(self, chunk: tuple) -> None:
        with self._cond:
            self._inbox.append(chunk)
            self._cond.notify()

    def put_controls(self, k: int, controls: Controls) -> None:
        with self._cond:
            self._controls.append((k, controls))

    def _apply_controls(self, frame: int | None = None) -> None:
        """Controls due by ``frame`` (the next frame to generate; None: all) go to the motion generator."""
        with self._cond:
            while self._controls and (frame is None or self._controls[0][0] <= frame):
                self.live.session.motion.set_controls(self._controls.popleft()[1])

    def end_input(self) -> None:
        with self._cond:
            self._flush = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        elif self._started.is_set():
            self._finished.wait(5)

    def join(self, timeout: float | None) -> None:
        self._finished.wait(timeout)
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def run(self) -> None:
        self._started.set()
        live, session = self.live, self.live.session
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
                for own, other, start, wall, probs in chunks:
                    live.clock.note_arrival(start, len(own), wall)
                    session.feed(own, other, probs)
                while session.ready_hops and not self._stop:
                    self._apply_controls(session.frames_out)
                    live._hop(session.step())
                if flush:
                    self._apply_controls()
                    live._hop(iter(session.flush()))
                    return
        except BaseException as e:  # noqa: BLE001  (reported by finish() and the server)
            live.error = e
            if not isinstance(e, Exception):
                raise  # Ctrl-C or SIGTERM while run() is on the main thread: the server stops
            log.exception("live session failed")
        finally:
            self._finished.set()


def warm_up(pipe, portraits: dict[int, Portrait], render_batch: int = 1) -> None:
    """Run motion generation and each render size once, so the first live frames do not pay for start-up."""
    from infp.runtime.motion import MotionStream

    for i, pt in enumerate(portraits.values()):
        src = pipe.stage1.source(pt)
        if i == 0:
            stream = MotionStream(pipe.stage2, src.motion[0], steps=2, device=pipe.device,
                                  decode_keypoints=pipe.stage1.decode_keypoints)
            silence = np.zeros(2 * stream.window * SAMPLES_PER_FRAME, np.float32)
            stream.push(silence, silence)
        for _ in range(2):
            pipe.stage1.render(src, src.motion.expand(render_batch, -1).clone())
