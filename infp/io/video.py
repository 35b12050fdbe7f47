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
from infp.io.atomic import atomic_output, remove_stale_temps, temp_sibling, unlink_quietly
from infp.io.audio import pad_to, write_wav
from infp.io.ffmpeg import MediaInfo, ffmpeg_exe, probe
from infp.io.outputs import check_writable_folder

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


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, walking the segments before it."""
    i = 2
    while i + 9 < len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(raw[i + 7:i + 9], "big"), int.from_bytes(raw[i + 5:i + 7], "big")
        if marker == 0xDA:  # image data before any frame header
            return None
        i += 2 + int.from_bytes(raw[i + 2:i + 4], "big")
    return None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    kind = raw[12:16]
    if kind == b"VP8X" and len(raw) >= 30:
        return 1 + int.from_bytes(raw[24:27], "little"), 1 + int.from_bytes(raw[27:30], "little")
    if kind == b"VP8L" and len(raw) >= 25:
        bits = int.from_bytes(raw[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and len(raw) >= 30:
        return int.from_bytes(raw[26:28], "little") & 0x3FFF, int.from_bytes(raw[28:30], "little") & 0x3FFF
    return None


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, JPEG, WebP, BMP or GIF file; None for anything else.

    OpenCV only tells an image's size by decoding it, which for a 12000x12000 picture takes seconds and
    gigabytes; these few header bytes let ``read_image`` refuse it first.
    """
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return _webp_size(raw)
    if raw[:2] == b"BM" and len(raw) >= 26:
        if int.from_bytes(raw[14:18], "little") == 12:  # OS/2 header: 16-bit sizes
            return int.from_bytes(raw[18:20], "little"), int.from_bytes(raw[20:22], "little")
        width, height = (int.from_bytes(raw[k:k + 4], "little", signed=True) for k in (18, 22))
        return abs(width), abs(height)  # negative height: rows stored top-down
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        return int.from_bytes(raw[6:8], "little"), int.from_bytes(raw[8:10], "little")
    return None


def _too_big(width: int, height: int, max_pixels: int, path: Path, at_least: bool = False) -> MediaError:
    size = f"{'at least ' if at_least else ''}{width}x{height}"
    return MediaError(f"image is {size} pixels; the limit is {max_pixels // 1_000_000} megapixels", path)


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); alpha is dropped, grey is expanded.

    Images over ``max_pixels`` are refused from their header, before any decoding; formats whose
    header is not parsed here are checked on a 1/8-scale decode first.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError("file not found", path)
    raw = np.fromfile(str(path), dtype=np.uint8)
    if raw.size == 0:
        raise MediaError("file is empty (0 bytes)", path)
    dims = image_size(raw[:1 << 20].tobytes())
    if dims is not None and dims[0] * dims[1] > max_pixels:
        raise _too_big(*dims, max_pixels, path)
    if dims is None:
        small = cv2.imdecode(raw, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if small is None:
            raise MediaError("cannot read image (not an image, or corrupt)", path)
        low_w, low_h = small.shape[1] * 8 - 7, small.shape[0] * 8 - 7  # the 1/8 scale rounds up
        if low_w * low_h > max_pixels:
            raise _too_big(low_w, low_h, max_pixels, path, at_least=True)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("cannot read image (not an image, or corrupt)", path)
    if img.shape[0] * img.shape[1] > max_pixels:  # a header that understated the size
        raise _too_big(img.shape[1], img.shape[0], max_pixels, path)
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
        remove_stale_temps(self.path)

    def _make_folder(self) -> None:
        """Create the output folder, or raise an error naming it (not ffmpeg's, nor mkdir's "File exists")."""
        check_writable_folder(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MediaError(f"cannot create the output folder ({e.strerror or e})", self.path.parent) from None

    def _start(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height} must be even for yuv420p")
        self._make_folder()
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
                unlink_quietly(wav)

    def _cleanup(self) -> None:
        unlink_quietly(self._video_tmp)  # must not replace the error that led here
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
