"""The agent's voice waiting to be heard: a bounded queue read at the pace of the session's audio clock."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from infp.constants import SAMPLE_RATE
from infp.errors import InfpError

MAX_AGENT_QUEUE_S = 1200.0
"""Most seconds of the agent's voice that may wait in its queue (20 minutes, 77 MB of samples)."""


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
