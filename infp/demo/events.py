"""Conversation events of a live session: when the user and the agent start and stop talking.

The live session runs silero VAD on both channels as their audio arrives (``LiveSession.ingest``),
one speech probability per 512-sample step (32 ms). ``SpeechTracker`` turns one channel's
probabilities into speech start / end decisions with an onset hold and a hangover:

* speech **starts** once ``ONSET_CHUNKS`` steps in a row reach ``SPEECH_THRESHOLD`` (0.5); the event is
  stamped with the start of the first of them;
* speech **ends** once ``HANGOVER_CHUNKS`` steps in a row fall below ``SPEECH_END_THRESHOLD`` (0.35:
  silero's usual hysteresis); stamped with the start of the first quiet step. A shorter pause, or a
  step between the two thresholds, keeps the speech going.

Every time is a session sample on the audio clock (``infp.demo.clock``): ``t`` = sample / 16000 s
where the speech started or ended, ``clock_s`` = the clock when the decision was taken (``t`` plus
the detection delay). ``ConversationEvents`` runs one tracker per channel and names the events:
``user_speech_start`` / ``user_speech_end`` for the partner's channel (the microphone, ``other``),
``agent_speech_start`` / ``agent_speech_end`` for the agent's (``self``). When the agent's voice is
cleared (barge-in) its speech ends at once, at the clock's sample, with ``reason: "clear"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infp.constants import SAMPLE_RATE, SPEECH_END_THRESHOLD, SPEECH_THRESHOLD, VAD_CHUNK

ONSET_CHUNKS = 2
"""VAD steps in a row at or above the speech threshold before speech is said to start (64 ms): a click
or a cough of one step does not interrupt the agent."""

HANGOVER_CHUNKS = 10
"""VAD steps in a row below the end threshold before speech is said to end (320 ms, about the pause
``infp.audio.vad.speech_segments`` bridges): the gaps between words do not end a turn."""

CHANNELS = ("agent", "user")
"""Event names of the session's channels, in the audio convention's order (self = agent, other = user)."""


@dataclass
class SpeechTracker:
    """Speech start / end of one channel from its VAD steps; see the module docstring."""

    onset: int = ONSET_CHUNKS
    hangover: int = HANGOVER_CHUNKS
    on: float = SPEECH_THRESHOLD
    off: float = SPEECH_END_THRESHOLD
    speaking: bool = False
    run: int = 0  # steps in a row that point to the other state
    run_start: int = 0  # first sample of that run
    armed: bool = True  # False after a clear until the VAD has fallen quiet (its memory of the cut speech)

    def push(self, prob: float, start: int) -> tuple[str, int] | None:
        """One VAD step covering samples ``[start, start + 512)``: ("start" | "end", sample) when decided."""
        if not self.armed:
            if prob < self.off:
                self.armed = True
            return None
        towards = prob < self.off if self.speaking else prob >= self.on
        if not towards:
            self.run = 0
            return None
        if self.run == 0:
            self.run_start = start
        self.run += 1
        if self.run < (self.hangover if self.speaking else self.onset):
            return None
        self.speaking, self.run = not self.speaking, 0
        return ("start" if self.speaking else "end"), self.run_start

    def cut(self) -> bool:
        """The channel's audio was cut (the agent's voice cleared): speech ends now. True if it was speaking.

        Its VAD still remembers the speech for a step or two, so no new start is decided before the
        probability has fallen below the end threshold once.
        """
        was = self.speaking
        self.speaking, self.run, self.armed = False, 0, False
        return was


class ConversationEvents:
    """Both channels' trackers; ``push`` turns VAD steps into the protocol's event messages."""

    def __init__(self, onset: int = ONSET_CHUNKS, hangover: int = HANGOVER_CHUNKS) -> None:
        self.trackers = [SpeechTracker(onset, hangover) for _ in CHANNELS]
        self.chunks = 0  # VAD steps seen per channel

    def push(self, probs: np.ndarray, clock: int) -> list[dict]:
        """(k, 2) probabilities of the next VAD steps of (agent, user); ``clock``: samples ingested so far."""
        out = []
        for row in np.asarray(probs, np.float32).reshape(-1, len(CHANNELS)):
            start = self.chunks * VAD_CHUNK
            self.chunks += 1
            for who, tracker, p in zip(CHANNELS, self.trackers, row):
                got = tracker.push(float(p), start)
                if got is not None:
                    out.append(event(f"{who}_speech_{got[0]}", got[1], clock, "silence" if got[0] == "end" else None))
        return out

    def cut_agent(self, clock: int) -> list[dict]:
        """The agent's voice was cleared at sample ``clock``: its speech ends there (if it was speaking)."""
        return [event("agent_speech_end", clock, clock, "clear")] if self.trackers[0].cut() else []

    @property
    def speaking(self) -> dict[str, bool]:
        return {who: t.speaking for who, t in zip(CHANNELS, self.trackers)}


def event(kind: str, sample: int, clock: int, reason: str | None = None) -> dict:
    """An event message: ``t``/``s`` where speech started or ended, ``clock_s`` when it was decided."""
    msg = {"type": kind, "t": round(sample / SAMPLE_RATE, 3), "s": int(sample), "clock_s": round(clock / SAMPLE_RATE, 3)}
    if reason is not None:
        msg["reason"] = reason
    return msg
