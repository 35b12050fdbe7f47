"""The one clock of a live session: audio samples received, when each frame's sound arrived, its deadline,
and whether a frame can still be rendered in time."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

import numpy as np

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME

RECENT_RENDERS = 8
"""Render times the drop decision takes the median of."""

SKIP_SHRINK = 0.8
"""Each frame dropped on the estimate alone shrinks the estimate by this factor."""


class AudioClock:
    """Frame ``k`` shows samples ``[640 k, 640 (k + 1))``; it is due ``delay`` seconds after its first
    sample arrived (less a safety ``margin``). ``samples`` advances as the partner's audio is ingested."""

    def __init__(self, delay: float, margin: float = 0.01, now: Callable[[], float] = time.monotonic) -> None:
        self.delay, self.margin, self.now = delay, margin, now
        self.samples = 0  # samples ingested per channel
        self._arrival: dict[int, float] = {}  # frame index -> wall time its first sample arrived

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def advance(self, n: int) -> int:
        """``n`` more samples arrived; returns the sample they start at."""
        start = self.samples
        self.samples += n
        return start

    def note_arrival(self, start: int, n: int, wall: float) -> None:
        """Remember when the first sample of each frame starting in samples ``[start, start + n)`` arrived
        (the chunk's last sample arrived at ``wall``)."""
        end = start + n
        k = -(-start // SAMPLES_PER_FRAME)
        while k * SAMPLES_PER_FRAME < end:
            self._arrival[k] = wall - (end - k * SAMPLES_PER_FRAME) / SAMPLE_RATE
            k += 1

    def arrival(self, k: int) -> float | None:
        return self._arrival.get(k)

    def forget(self, k: int) -> float | None:
        """Frame ``k`` is done: its arrival time (None if unknown), no longer kept."""
        return self._arrival.pop(k, None)

    def deadline(self, k: int) -> float:
        wall = self._arrival.get(k)
        return math.inf if wall is None else wall + self.delay - self.margin


class DropPredictor:
    """Whether frame ``k`` can still be rendered before its deadline.

    The median of recent render times predicts the next one; each frame dropped on that prediction
    alone shrinks it, so one slow render (a hiccup of a shared CPU) cannot lock out rendering.
    """

    def __init__(self, clock: AudioClock) -> None:
        self.clock = clock
        self._render_times: deque[float] = deque(maxlen=RECENT_RENDERS)
        self._skipped = 0  # frames dropped in a row on the estimate alone

    def rendered(self, seconds: float) -> None:
        self._render_times.append(seconds)

    def reset(self) -> None:
        """Forget the render times (the render size changed)."""
        self._render_times.clear()
        self._skipped = 0

    def __call__(self, k: int) -> bool:
        deadline, now = self.clock.deadline(k), self.clock.now()
        if now > deadline:
            return True
        est = float(np.median(self._render_times)) * SKIP_SHRINK ** self._skipped if self._render_times else 0.0
        if now + est > deadline:
            self._skipped += 1
            return True
        self._skipped = 0
        return False
