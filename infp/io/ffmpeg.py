"""Locate ffmpeg and read stream information from its banner (no ffprobe needed)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from infp.errors import MediaError

_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $INFP_FFMPEG, then imageio-ffmpeg's bundled build, then PATH."""
    env = os.environ.get("INFP_FFMPEG")
    if env:
        return env
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise MediaError("ffmpeg not found; install imageio-ffmpeg or Debian's ffmpeg") from None
        return exe


@dataclass(frozen=True)
class MediaInfo:
    """What ffmpeg reports about a media file."""

    duration: float | None
    width: int | None = None  # display width (sample aspect ratio and rotation applied)
    height: int | None = None
    fps: float | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None

    @property
    def has_video(self) -> bool:
        return self.width is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_rate is not None


def probe(path: str | Path, input_args: Sequence[str] = ()) -> MediaInfo:
    """Parse the first video and audio stream of ``path``; raise MediaError if ffmpeg cannot open it.

    ``input_args``: ffmpeg options placed before ``-i`` (e.g. the demo server's format and protocol
    whitelists for files from clients)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError("file not found", path)
    if path.stat().st_size == 0:
        raise MediaError("file is empty (0 bytes)", path)
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args, "-i", str(path)],
        capture_output=True, text=True, errors="replace",
    )
    text = proc.stderr
    if "Duration:" not in text:
        last = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        reason = last[-1].split(": ", 1)[-1] if last else "unknown format"
        raise MediaError(f"cannot read media ({reason})", path)
    duration = None
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    if m:
        duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    width = height = None
    fps = None
    vm = re.search(r"Stream #\S+.*?: Video: (.*)", text)
    if vm:
        line = vm[1]
        sm = re.search(r", (\d{2,5})x(\d{2,5})", line)
        if sm:
            width, height = int(sm[1]), int(sm[2])
            sar = re.search(r"\[SAR (\d+):(\d+)", line)
            if sar and int(sar[1]) > 0 and int(sar[2]) > 0 and sar[1] != sar[2]:
                width = int(round(width * int(sar[1]) / int(sar[2]) / 2)) * 2
            rot = re.search(r"rotation of (-?[\d.]+) degrees", text)
            if rot and abs(abs(float(rot[1])) % 180 - 90) < 1:
                width, height = height, width
        fm = re.search(r"([\d.]+) fps", line) or re.search(r"([\d.]+) tbr", line)
        if fm:
            fps = float(fm[1])
    audio_rate = audio_channels = None
    am = re.search(r"Stream #\S+.*?: Audio: (.*)", text)
    if am:
        line = am[1]
        rm = re.search(r"(\d+) Hz", line)
        audio_rate = int(rm[1]) if rm else None
        parts = [p.strip() for p in line.split(",")]
        for p in parts:
            key = p.split("(")[0].strip()
            if key in _LAYOUT_CHANNELS:
                audio_channels = _LAYOUT_CHANNELS[key]
                break
            cm = re.match(r"(\d+) channels", p)
            if cm:
                audio_channels = int(cm[1])
                break
    return MediaInfo(duration, width, height, fps, audio_rate, audio_channels)
