"""The live loop without a browser: both voices from files, paced in real time (tests, recordings, benchmarks).

The partner's file plays the part of the microphone: it is fed in 40 ms chunks, each at the wall-clock
moment its last sample would have been captured. The agent's file is queued as if chosen on the page.
Everything else is the live demo's loop (``LiveSession``): streaming VAD, motion, rendering, JPEG
encoding, late-frame dropping, quality ladder, recording.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.demo.live import LiveSession, portraits_for, warm_up
from infp.demo.quality import ladder
from infp.io.atomic import atomic_write_text
from infp.runtime.overlay import STATES

log = logging.getLogger(__name__)

CHUNK = SAMPLES_PER_FRAME  # 40 ms per microphone message, as the page sends


def simulate(pipe, portrait, own: np.ndarray, other: np.ndarray, settings, *, size: int | None = None,
             delay: float = 0.25, render_batch: int = 1, adapt: bool = True, record: str | Path | None = None,
             report: str | Path | None = None, progress: Callable[[LiveSession], None] | None = None,
             progress_every: float = 10.0, chunk: int = CHUNK, sessions: list | None = None,
             started: Callable[[LiveSession], None] | None = None) -> dict:
    """Run a simulated live session over (own, other) 16 kHz audio; returns (and writes) its report.

    ``sessions``: if given, the finished ``LiveSession`` is appended (its per-frame records, for benchmarks).
    """
    n = max(len(own), len(other))
    own = np.pad(np.asarray(own, np.float32), (0, n - len(own)))
    other = np.pad(np.asarray(other, np.float32), (0, n - len(other)))
    levels = ladder(size or pipe.size, settings.steps, adapt)
    portraits = portraits_for(portrait, levels, settings.face_index)
    warm_up(pipe, portraits, render_batch)
    live = LiveSession(pipe, portraits, levels, settings, delay=delay, render_batch=render_batch, keep_records=True)
    if sessions is not None:
        sessions.append(live)
    live.agent.add(own, "self")
    rec = live.start_recording(record) if record is not None else None
    live.start(thread=False)  # generation runs on this (the main) thread: see LiveSession.start
    if started is not None:
        started(live)
    t0 = time.monotonic()
    lateness: list[float] = []
    failure: list[BaseException] = []

    def microphone() -> None:
        """The partner's file, chunk by chunk at the moment its last sample would have been captured."""
        next_progress = t0 + progress_every
        try:
            for start in range(0, n, chunk):
                piece = other[start:start + chunk]
                due = t0 + (start + len(piece)) / SAMPLE_RATE
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                now = time.monotonic()
                lateness.append(now - due)
                live.ingest(piece, wall=now)
                if progress is not None and now >= next_progress:
                    progress(live)
                    next_progress += progress_every
                if live.error is not None:
                    return
            if rec is not None:
                rec.stop(n)
        except BaseException as e:  # noqa: BLE001  (re-raised on the main thread)
            failure.append(e)
        finally:
            live.end_input()

    feeder = threading.Thread(target=microphone, name="infp-microphone", daemon=True)
    feeder.start()
    try:
        live.run()
        feeder.join()
        if failure:
            raise failure[0]
        if live.error is not None:
            raise live.error
        if rec is not None and not rec.done.wait(60):
            raise RuntimeError("the recording did not finish")
        if rec is not None and rec.error is not None:
            raise rec.error
    finally:
        live.close()
    wall = time.monotonic() - t0
    live.t0 = t0
    out = summarise(live, n, wall, np.array(lateness))
    out["recording"] = None if rec is None else {"path": str(rec.path), "frames": rec.frames}
    if report is not None:
        atomic_write_text(report, json.dumps(out, indent=1))
    return out


def summarise(live: LiveSession, n_samples: int, wall: float, lateness: np.ndarray) -> dict:
    """Figures of a finished live session (from its per-frame records)."""
    st = live.stats
    ok = np.frombuffer(st.rec_ok, np.int8).astype(bool)
    lat = np.frombuffer(st.rec_latency, np.float64)
    ready = np.frombuffer(st.rec_ready, np.float64)
    duration = n_samples / SAMPLE_RATE
    dl = lat[ok] * 1000
    minutes = []
    index = np.array(st.rec_index, dtype=np.int64)
    for m in range(int(np.ceil(duration / 60))):
        sel = ok & (index >= m * 60 * FPS) & (index < (m + 1) * 60 * FPS)
        if sel.any():
            minutes.append({"minute": m + 1, "fps": round(sel.sum() / min(60.0, duration - 60 * m), 2),
                            "latency_p50_ms": round(float(np.percentile(lat[sel] * 1000, 50)), 1),
                            "latency_p95_ms": round(float(np.percentile(lat[sel] * 1000, 95)), 1)})
    return {
        "duration_s": round(duration, 3), "wall_s": round(wall, 2), "frames": st.frames,
        "expected_frames": -(-n_samples // SAMPLES_PER_FRAME), "delivered": st.delivered, "dropped": st.dropped,
        "late": st.late, "fps": round(st.delivered / duration, 2),
        "latency_ms": {"p50": _pct(dl, 50), "p95": _pct(dl, 95), "max": round(float(dl.max()), 1) if len(dl) else None},
        "delay_ms": round(live.delay * 1000), "level": {"size": live.level.size, "steps": live.level.steps},
        "levels": [{"size": lv.size, "steps": lv.steps} for lv in live.levels], "note": live.note,
        "quality_changes": live.changes,
        "clock_lateness_ms": {"p50": _pct(lateness * 1000, 50), "max": round(float(lateness.max() * 1000), 1) if len(lateness) else None},
        "states": {s: int((np.frombuffer(st.rec_state, np.int8) == i).sum()) for i, s in enumerate(STATES)},
        "per_minute": minutes,
        "ready_span_s": round(float(ready.max() - ready.min()), 2) if len(ready) else 0.0,
    }


def _pct(x: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(x, q)), 1) if len(x) else None
