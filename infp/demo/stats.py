"""Figures of a live session: frames delivered, dropped and late, latency, throughput, load."""

from __future__ import annotations

from array import array
from collections import deque

import numpy as np

from infp.runtime.overlay import STATES
from infp.runtime.streaming import StreamFrame


class LiveStats:
    """Counters and rolling figures of a live session (thread-safe enough for reporting)."""

    def __init__(self, frame_s: float, keep_records: bool = False) -> None:
        self.frame_s = frame_s  # seconds per frame: a step's compute time over its frames' duration is the load
        self.frames = self.delivered = self.dropped = self.late = 0
        self.latency = deque(maxlen=250)  # seconds, the last 10 s of delivered frames
        self.delivered_at = deque(maxlen=200)  # wall times of recent delivered frames
        # (compute seconds, frames not delivered, frames) per step of the generator: a hop, or a frame as soon as
        # its audio allows; enough for the quality ladder's 2 s at one frame per step
        self.hop_busy = deque(maxlen=100)
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
                "load": round(sum(b for b, _, _ in busy) / (sum(n for _, _, n in busy) * self.frame_s), 2)
                if busy and any(n for _, _, n in busy) else None,
                "render_ms": round(float(np.mean(list(self.render_ms))), 1) if self.render_ms else None}
