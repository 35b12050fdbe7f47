"""What the avatar is doing in a frame (idle / speaking / listening / both), and the overlay that shows it."""

from __future__ import annotations

import cv2
import numpy as np

from infp.constants import SPEECH_THRESHOLD

STATES = ("idle", "speaking", "listening", "both")
"""Indexed by (self speaks) + 2 * (other speaks)."""

OVERLAY_LANE = 50
"""Frames of voice activity the overlay draws (2 s)."""


def frame_state(vad_self: float, vad_other: float, threshold: float = SPEECH_THRESHOLD) -> str:
    """idle / speaking (self only) / listening (other only) / both, from one frame's two VAD values."""
    return STATES[int(vad_self > threshold) + 2 * int(vad_other > threshold)]


def conversation_state(vad: np.ndarray, threshold: float = SPEECH_THRESHOLD) -> list[str]:
    """``frame_state`` of every frame of (T, 2) VAD."""
    return [frame_state(s, o, threshold) for s, o in np.asarray(vad)]


def draw_overlay(frame: np.ndarray, vad: np.ndarray, t: int, state: str, lane: int = OVERLAY_LANE) -> np.ndarray:
    """VAD lanes of both channels (the last ``lane`` frames) and the avatar's state, drawn at the bottom."""
    out = frame.copy()
    h, w = out.shape[:2]
    bar_h = max(6, h // 40)
    colours = ((80, 200, 120), (90, 150, 255))  # self green, other blue
    for c in range(2):
        y0 = h - (2 - c) * (bar_h + 3) - 4
        cv2.rectangle(out, (4, y0), (w - 4, y0 + bar_h), (30, 30, 30), -1)
        for k in range(lane):
            tt = t - lane + 1 + k
            if tt < 0:
                continue
            x0 = 4 + int(k * (w - 8) / lane)
            x1 = 4 + int((k + 1) * (w - 8) / lane)
            level = float(vad[tt, c])
            cv2.rectangle(out, (x0, y0 + int(bar_h * (1 - level))), (x1, y0 + bar_h), colours[c], -1)
    cv2.putText(out, state, (6, h - 2 * (bar_h + 3) - 10), cv2.FONT_HERSHEY_SIMPLEX, max(0.4, h / 700), (255, 255, 255), 1, cv2.LINE_AA)
    return out
