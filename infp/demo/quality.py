"""The quality ladder of a live session: render size and diffusion steps, stepped down when frames are
late and back up when the CPU has room again."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

LADDER = ((256, 6), (224, 6), (192, 6), (192, 4), (160, 4))
"""Quality levels (render size, diffusion steps), best first; a live session steps down when it must."""

JUDGE_HOPS = 12
"""Hops judged for a step down (2 s), and hops a new level runs before it may be judged."""

DOWN_LATE_SHARE = 0.15
"""Step down when more than this share of the judged frames were late..."""

DOWN_LOAD = 0.95
"""...or when the judged hops took more than this share of real time."""

UP_LOAD = 0.55
"""A hop counts as having room when no frame was late and the load's running mean is below this."""

UP_AFTER_HOPS = 125
"""Hops with room in a row before stepping back up (20 s); doubled after each step up that failed."""

UP_AFTER_MAX_HOPS = 3750
"""The longest wait before stepping back up (10 minutes)."""

LOAD_SMOOTHING = 0.9
"""Weight of the past in the running mean of the load."""


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

    Down one level when, over the last ``JUDGE_HOPS`` hops (2 s), more than ``DOWN_LATE_SHARE`` of the
    frames were late or the hops took more than ``DOWN_LOAD`` of real time. Up one level after
    ``up_after`` hops (20 s at first) without a late frame and with the load below ``UP_LOAD``; every
    step back down after a step up doubles that wait, so a machine that cannot hold the better level
    does not oscillate.
    """

    def __init__(self, levels: list[Level]) -> None:
        self.levels = levels
        self.index = 0
        self.up_after = UP_AFTER_HOPS
        self.note = ""  # why the quality was lowered, if it was
        self.changes: list[dict] = []  # quality changes, for reports
        self._reached_by_step_up = False
        self._settle()

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    def _settle(self) -> None:
        self._since_change = self._clean = 0
        self._load_ema = 0.5

    def after_hop(self, hop_busy: deque, hop_s: float, frames_per_hop: int) -> tuple[int, str] | None:
        """The level to move to and why, given ``hop_busy`` ((compute s, frames late) per hop, newest last);
        None to stay."""
        self._since_change += 1
        busy_s, dropped = hop_busy[-1]
        self._load_ema = LOAD_SMOOTHING * self._load_ema + (1 - LOAD_SMOOTHING) * busy_s / hop_s
        self._clean = self._clean + 1 if dropped == 0 and self._load_ema < UP_LOAD else 0
        if self.index > 0 and self._clean >= self.up_after:
            return self.index - 1, "the CPU has room again"
        busy = list(hop_busy)[-JUDGE_HOPS:]
        if self._since_change < JUDGE_HOPS or len(busy) < JUDGE_HOPS or self.index + 1 >= len(self.levels):
            return None
        late_share = sum(d for _, d in busy) / (len(busy) * frames_per_hop)
        load = sum(b for b, _ in busy) / (len(busy) * hop_s)
        if late_share > DOWN_LATE_SHARE or load > DOWN_LOAD:
            if self._reached_by_step_up:  # it went back up too early: wait twice as long next time
                self.up_after = min(self.up_after * 2, UP_AFTER_MAX_HOPS)
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
