"""Recording a live session to mp4 while it runs: frames as presented, both voices in stereo."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.errors import InfpError
from infp.io import VideoWriter
from infp.io.atomic import atomic_write_text, temp_sibling
from infp.runtime.streaming import StreamFrame

log = logging.getLogger(__name__)


class SessionRecorder:
    """An mp4 of a live session: the frames as presented and both voices as a stereo track (0 = self, 1 = other).

    Frames that were dropped repeat the previous picture, so the video keeps exactly one frame per
    40 ms of audio. Audio goes to a temporary WAV as it arrives (memory does not grow). Beside the mp4,
    NAME.json keeps the recording's metadata (``metadata``: frames, seconds, the controls in effect).
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
        self.control_log: list[dict] = []  # {"k": frame of the recording, "t": its seconds, "speak", "listen"}

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

    def controls(self, change: dict) -> None:
        """Controls in effect from session frame ``change["k"]`` on (``LiveSession.set_controls``), for the metadata."""
        with self._lock:
            if self.end_frame is not None and change["k"] >= self.end_frame:
                return
            k = max(0, change["k"] - self.first_frame)
            self.control_log = [c for c in self.control_log if c["k"] < k]
            self.control_log.append({**change, "k": k, "t": round(k / FPS, 3)})

    def metadata(self) -> dict:
        return {"frames": self.frames, "seconds": round(self.frames / FPS, 2), "first_session_frame": self.first_frame,
                "controls": list(self.control_log)}

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
        else:
            try:
                atomic_write_text(self.path.with_suffix(".json"), json.dumps(self.metadata(), indent=1))
            except OSError as e:
                log.warning("%s: metadata not written (%s)", self.path, e)
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
