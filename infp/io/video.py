"""Video frames in (constant-memory iterator at a target fps) and mp4 out (H.264 + AAC, atomic)."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from infp.constants import FPS, SAMPLE_RATE
from infp.errors import MediaError
from infp.io.atomic import atomic_output, temp_sibling
from infp.io.audio import pad_to, write_wav
from infp.io.ffmpeg import MediaInfo, ffmpeg_exe, probe

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 8192 * 8192
"""Largest portrait accepted (pixels); bigger images are refused with a clear message."""

TRUNCATION_TOLERANCE = 0.9
"""A video decoding to fewer than this share of its announced frames counts as truncated."""


def video_info(path: str | Path) -> MediaInfo:
    """Probe ``path`` and require a video stream."""
    info = probe(path)
    if not info.has_video:
        raise MediaError("has no video stream", path)
    return info


def count_frames(info: MediaInfo, fps: float = FPS) -> int:
    """Number of frames a resampling to ``fps`` yields for a stream of ``info.duration`` seconds."""
    return max(1, math.ceil(round((info.duration or 0.0) * fps, 6)))


def iter_frames(
    path: str | Path,
    fps: float | None = FPS,
    size: tuple[int, int] | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3) of ``path`` resampled to ``fps`` (None: native rate).

    Frames stream from an ffmpeg pipe, so memory does not grow with the file. ``size`` = (W, H)
    resizes; otherwise frames have the display size (square pixels, rotation applied). Raises
    MediaError if the file cannot be decoded or ends well before its announced duration.
    """
    path = Path(path)
    info = video_info(path)
    width, height = size if size is not None else (info.width, info.height)
    filters = []
    if fps is not None:
        filters.append(f"fps={fps}")
    filters.append(f"scale={width}:{height}:flags=area,setsar=1")
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error"]
    if start > 0:
        cmd += ["-ss", f"{start:.3f}"]
    cmd += ["-i", str(path)]
    if duration is not None:
        cmd += ["-t", f"{duration:.3f}"]
    cmd += ["-an", "-vf", ",".join(filters), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, bufsize=frame_bytes)
        n = 0
        try:
            while True:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                n += 1
                yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
        errf.seek(0)
        err = errf.read().decode(errors="replace").strip().splitlines()
    if n == 0:
        raise MediaError(f"no decodable video frames ({err[-1] if err else 'empty stream'})", path)
    if code not in (0, -9):
        raise MediaError(f"video decoding failed after {n} frames ({err[-1] if err else code})", path)
    if info.duration and fps is not None:
        wanted = info.duration - start if duration is None else min(duration, info.duration - start)
        expected = wanted * fps
        if n < TRUNCATION_TOLERANCE * expected - 1:
            raise MediaError(f"video is truncated: decoded {n} of ~{expected:.0f} frames", path)


def read_frames(path: str | Path, fps: float | None = FPS, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of a (short) video as (T, H, W, 3) uint8; prefer ``iter_frames`` for long files."""
    return np.stack(list(iter_frames(path, fps=fps, size=size)))


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); alpha is dropped, grey is expanded."""
    path = Path(path)
    if not path.is_file():
        raise MediaError("file not found", path)
    raw = np.fromfile(str(path), dtype=np.uint8)
    if raw.size == 0:
        raise MediaError("file is empty (0 bytes)", path)
    # Check the size from the header before decoding, so a huge image is refused cheaply.
    img = cv2.imdecode(raw, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if img is None:
        raise MediaError("cannot read image (not an image, or corrupt)", path)
    if img.shape[0] * img.shape[1] * 64 > max_pixels:
        full = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        h, w = (full.shape[:2] if full is not None else (img.shape[0] * 8, img.shape[1] * 8))
        if h * w > max_pixels:
            raise MediaError(f"image is {w}x{h} pixels; the limit is {max_pixels // 1_000_000} megapixels", path)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("cannot read image (not an image, or corrupt)", path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (format from the suffix) atomically."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError("cannot encode image", path)
    with atomic_output(path) as tmp:
        buf.tofile(str(tmp))
    return path


class VideoWriter:
    """Write RGB frames to a browser-playable mp4 (H.264 yuv420p, +faststart), audio muxed at close.

    Frames are piped to ffmpeg as they come; the file appears at ``path`` only when ``close()``
    succeeds. Audio (mono (N,) or (C, N) float at ``sample_rate``) is padded or trimmed to exactly the
    video's duration, so audio and video stay in sync however long the file is. ``audio`` may also be
    the path of an audio file (e.g. a WAV written while recording), muxed as it is.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = FPS,
        audio: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = 18,
        preset: str = "veryfast",
        gop: int | None = None,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.audio = audio
        self.sample_rate = sample_rate
        self.crf = crf
        self.preset = preset
        self.gop = gop  # key-frame interval; short for fast random access (training clips)
        self.threads = threads  # encoder threads: one leaves the other cores to the renderer
        self.n_frames = 0
        self._proc: subprocess.Popen | None = None
        self._video_tmp = temp_sibling(self.path)
        self._size: tuple[int, int] | None = None
        self._errf = None

    def _start(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height} must be even for yuv420p")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = (width, height)
        self._errf = tempfile.TemporaryFile()
        cmd = [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(self.fps), "-i", "-", "-an", "-c:v", "libx264",
               "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
               "-threads", str(self.threads)]
        if self.gop:
            cmd += ["-g", str(self.gop), "-keyint_min", str(self.gop)]
        cmd.append(str(self._video_tmp))
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._errf)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame (H, W, 3); all frames must share one size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self._proc is None:
            self._start(w, h)
        elif (w, h) != self._size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {self._size}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            raise MediaError(f"ffmpeg stopped: {self._stderr()}", self.path) from None
        self.n_frames += 1

    def _stderr(self) -> str:
        if self._errf is None:
            return ""
        self._errf.seek(0)
        lines = self._errf.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "unknown error"

    def close(self) -> Path:
        """Finish encoding, mux the audio and move the file into place."""
        if self._proc is None:
            raise MediaError("no frames were written", self.path)
        self._proc.stdin.close()
        if self._proc.wait() != 0:
            raise MediaError(f"video encoding failed ({self._stderr()})", self.path)
        try:
            with atomic_output(self.path) as out:
                if self.audio is None:
                    os.replace(self._video_tmp, out)
                else:
                    self._mux(out)
        finally:
            self._cleanup()
        return self.path

    def _mux(self, out: Path) -> None:
        given = isinstance(self.audio, (str, Path))
        wav = Path(self.audio) if given else temp_sibling(self.path.with_suffix(".wav"))
        try:
            if not given:
                n = round(self.n_frames / self.fps * self.sample_rate)
                write_wav(wav, pad_to(np.asarray(self.audio, dtype=np.float32), n), self.sample_rate, subtype="FLOAT")
            proc = subprocess.run(
                [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", str(self._video_tmp), "-i", str(wav),
                 "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "160k",
                 "-movflags", "+faststart", str(out)],
                capture_output=True,
            )
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                raise MediaError(f"muxing audio failed ({err[-1] if err else proc.returncode})", self.path)
        finally:
            if not given:
                wav.unlink(missing_ok=True)

    def _cleanup(self) -> None:
        self._video_tmp.unlink(missing_ok=True)
        if self._errf is not None:
            self._errf.close()
            self._errf = None

    def abort(self) -> None:
        """Stop without producing a file."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    **kwargs,
) -> Path:
    """Encode an iterable of RGB frames (with optional audio) to ``path``; nothing is left on failure."""
    with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
