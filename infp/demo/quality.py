"""The quality ladder of a live session: render size and diffusion steps, stepped down when frames are
late and back up when the CPU has room again."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

LADDER = ((256, 6), (224, 6), (192, 6), (192, 4), (160, 4))
"""Quality levels (render size, diffusion steps), best first; a live session steps down when it must."""

JUDGE_S = 2.0
"""Seconds of frames judged for a step down; a new level also runs this long before it may be judged."""

START_S = 2.0
"""Seconds of frames at a session's start that are not judged: the audio that arrived while the session was set up
comes as one backlog, and its frames are dropped to catch up, whatever the level."""

DOWN_LATE_SHARE = 0.15
"""Step down when more than this share of the judged frames were late or not rendered..."""

DOWN_LOAD = 1.0
"""...or when making them took longer than their duration. A level that takes about 0.95 of real time with a browser
on the same two cores still delivers about 98 % of its frames: lateness, measured, is what steps down."""

UP_LOAD = 0.55
"""Frames count as having room when none was late and the load's running mean is below this."""

UP_AFTER_S = 20.0
"""Seconds of frames with room in a row before stepping back up; doubled after each step up that failed."""

UP_AFTER_MAX_S = 600.0
"""The longest wait before stepping back up (10 minutes)."""

LOAD_SMOOTHING_S = 1.5
"""Time constant of the running mean of the load, in seconds of frames."""


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


class QualityLadder:
    """Where a session is on its levels, and when to move.

    The generator hands out frames in steps of one or more frames (a hop of 4, or each frame as soon as its
    audio allows); every step reports its compute time, its frames and how many of them were not delivered,
    and the ladder judges frames and seconds, whatever the steps. Down one level when, over the last
    ``JUDGE_S`` seconds of frames, more than ``DOWN_LATE_SHARE`` of them were late or making them took more
    than ``DOWN_LOAD`` of their duration; the first ``START_S`` of a session are not judged. Up one level
    after ``up_after`` seconds of frames (20 s at first) without a late frame and with the load below
    ``UP_LOAD``; every step back down after a step up doubles that wait, so a machine that cannot hold the
    better level does not oscillate.
    """

    def __init__(self, levels: list[Level]) -> None:
        self.levels = levels
        self.index = 0
        self.up_after = UP_AFTER_S
        self.note = ""  # why the quality was lowered, if it was
        self.changes: list[dict] = []  # quality changes, for reports
        self._reached_by_step_up = False
        self._settle()
        self._since_change = -START_S

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    def _settle(self) -> None:
        self._since_change = self._clean = 0.0  # seconds of frames
        self._load_ema = 0.5

    def after_hop(self, steps: deque, frame_s: float) -> tuple[int, str] | None:
        """The level to move to and why, given ``steps`` ((compute s, frames not delivered, frames) per step of the
        generator, newest last; enough of them to cover ``JUDGE_S``); None to stay."""
        busy_s, late, n = steps[-1]
        if n == 0:
            return None
        span = n * frame_s
        self._since_change += span
        keep = math.exp(-span / LOAD_SMOOTHING_S)
        self._load_ema = keep * self._load_ema + (1 - keep) * busy_s / span
        self._clean = self._clean + span if late == 0 and self._load_ema < UP_LOAD else 0.0
        if self.index > 0 and self._clean >= self.up_after - 1e-9:
            return self.index - 1, "the CPU has room again"
        if self._since_change < JUDGE_S - 1e-9 or self.index + 1 >= len(self.levels):
            return None
        busy = missed = frames = 0
        for b, d, f in reversed(steps):  # the newest steps covering JUDGE_S
            busy, missed, frames = busy + b, missed + d, frames + f
            if frames * frame_s >= JUDGE_S - 1e-9:
                break
        else:
            return None
        late_share = missed / frames
        load = busy / (frames * frame_s)
        if late_share > DOWN_LATE_SHARE or load > DOWN_LOAD:
            if self._reached_by_step_up:  # it went back up too early: wait twice as long next time
                self.up_after = min(self.up_after * 2, UP_AFTER_MAX_S)
            return self.index + 1, f"{self.level} did not keep up on this CPU ({late_share:.0%} of frames late, load {load:.2f})"
        return None

    def move(self, index: int, why: str, clock_s: float) -> Level:
        """Go to level ``index`` (the caller applies it to the renderer); returns it."""
        new, old = self.levels[index], self.levels[self.index]
        self._reached_by_step_up = index < self.index
        self.index = index
        self._settle()
        if index == 0:
            self.note = ""
        elif self._reached_by_step_up:  # better than before, still below the best level
            self.note = f"rendering at {new}, up from {old} because {why}"
        else:
            self.note = f"rendering at {new} because {why}"
        self.changes.append({"clock_s": round(clock_s, 2), "size": new.size, "steps": new.steps, "why": why})
        return new
