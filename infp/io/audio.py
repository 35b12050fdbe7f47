"""Audio files in and out: any common format to 16 kHz float32 per channel, and atomic WAV writing."""

from __future__ import annotations

import logging
import struct
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from infp.constants import SAMPLE_RATE
from infp.errors import MediaError
from infp.io.atomic import atomic_output
from infp.io.ffmpeg import ffmpeg_exe, probe

log = logging.getLogger(__name__)

SILENCE_RMS = 1e-4
"""RMS below which a channel counts as silent (-80 dBFS)."""


def resample(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of (C, N) or (N,) float32 audio along the last axis."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    out = AF.resample(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), sr_in, sr_out)
    return out.numpy()


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any ffmpeg-readable file to (C, N) float32 at its own rate."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError("has no audio stream", path)
    channels = info.audio_channels or 1
    rate = info.audio_rate or SAMPLE_RATE
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn",
         "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(rate), "-"],
        capture_output=True,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MediaError(f"cannot decode audio ({msg[-1] if msg else 'ffmpeg failed'})", path)
    data = np.frombuffer(proc.stdout, dtype="<f4")
    data = data[: len(data) // channels * channels].reshape(-1, channels).T
    return np.ascontiguousarray(data), rate


def _wav_lengths(path: Path) -> tuple[float, float] | None:
    """(announced, present) seconds of a RIFF/WAVE file's ``data`` chunk; None if the header does not say.

    libsndfile clamps a WAV's frame count to the bytes that are there, so a cut-off file reads as a
    shorter, valid one; only the ``data`` chunk's declared size tells what is missing. Sizes of 0 and
    0xFFFFFFFF mean "unknown" (written to a pipe) and are not checked.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        rate = block = 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(min(length, 16))
                if len(fmt) < 14:
                    return None
                rate, block = struct.unpack("<I", fmt[4:8])[0], struct.unpack("<H", fmt[12:14])[0]
                f.seek(length - len(fmt) + (length & 1), 1)
            elif cid == b"data":
                if not rate or not block or length in (0, 0xFFFFFFFF):
                    return None
                present = max(0, size - f.tell())
                return (length // block) / rate, (min(present, length) // block) / rate
            else:
                f.seek(length + (length & 1), 1)


def _flac_frames(path: Path) -> tuple[int, int] | None:
    """(total samples per channel, sample rate) from a FLAC file's STREAMINFO; None if unknown or not FLAC."""
    with open(path, "rb") as f:
        head = f.read(10)
        if head[:3] == b"ID3" and len(head) == 10:  # ID3v2 tag before the stream: skip it (syncsafe size)
            f.seek(10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F))
        else:
            f.seek(0)
        block = f.read(4 + 4 + 34)
    if len(block) < 42 or block[:4] != b"fLaC" or block[4] & 0x7F != 0:
        return None
    info = block[8:]
    bits = int.from_bytes(info[10:18], "big")  # rate 20 | channels 3 | bits per sample 5 | total 36
    rate, total = bits >> 44, bits & ((1 << 36) - 1)
    return (total, rate) if total and rate else None


def check_complete(path: str | Path, decoded: int, rate: int) -> None:
    """Raise MediaError if ``path`` holds less audio than its header announces.

    A truncated upload or copy otherwise renders silently as a shorter video. WAV: the ``data`` chunk's
    declared size against the bytes present; FLAC: STREAMINFO's total samples against the ``decoded``
    samples (at ``rate``, the file's own rate). Other formats have no reliable length to compare.
    """
    path = Path(path)
    wav = _wav_lengths(path)
    if wav is not None:
        announced, held = wav
    else:
        flac = _flac_frames(path)
        if flac is None:
            return
        total, flac_rate = flac
        announced, held = total / flac_rate, decoded / rate
    if held < announced - 1.5 / rate:
        raise MediaError(f"truncated: header says {announced:.2f} s, file holds {held:.2f} s", path)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(C, N) float32 at the file's own rate: libsndfile first, ffmpeg for the rest.

    When neither decodes a FLAC file whose header announces a length, the message says so: a cut-off
    FLAC is the common case, and "truncated" tells the user more than the decoder's error code.
    """
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), rate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    try:
        return _decode_ffmpeg(path)
    except MediaError:
        flac = _flac_frames(path)
        if flac is None:
            raise
        raise MediaError(f"truncated or corrupt: header says {flac[0] / flac[1]:.2f} s, "
                         "but the audio stops decoding early", path) from None


def read_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    channels: int | Sequence[int] | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Read an audio (or video) file as float32 (C, N) at ``sample_rate``.

    ``channels`` picks one channel (int, returns (1, N)) or several (list); None keeps all.
    WAV/FLAC/OGG/MP3 go through libsndfile; anything else (m4a, aac, mp4, ...) through ffmpeg.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError("file not found", path)
    if path.stat().st_size == 0:
        raise MediaError("file is empty (0 bytes)", path)
    data, rate = _decode(path)
    check_complete(path, data.shape[1], rate)
    if data.shape[1] == 0 and not allow_empty:
        raise MediaError("audio is empty (0 samples)", path)
    if channels is not None:
        wanted = [channels] if isinstance(channels, int) else list(channels)
        for c in wanted:
            if not -data.shape[0] <= c < data.shape[0]:
                raise MediaError(
                    f"has {data.shape[0]} channel{'s' if data.shape[0] != 1 else ''}; channel {c} was asked for", path
                )
        data = data[wanted]
    if rate != sample_rate:
        log.debug("%s: resampling %d Hz -> %d Hz", path, rate, sample_rate)
        data = resample(data, rate, sample_rate)
    if not np.isfinite(data).all():
        raise MediaError("audio contains NaN or infinite samples", path)
    return data


def read_dialogue(
    dialogue: str | Path | None = None,
    self_audio: str | Path | None = None,
    other_audio: str | Path | None = None,
    self_channel: int = 0,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, np.ndarray]:
    """Dyadic audio as (self, other), each mono (N,) float32, equal length (the shorter is zero-padded).

    Either a stereo ``dialogue`` (channel ``self_channel`` = the portrait's voice, the other channel =
    the partner), or ``self_audio`` with an optional ``other_audio`` (absent: a silent partner).
    """
    if dialogue is not None:
        if self_audio is not None or other_audio is not None:
            raise MediaError("give either a stereo dialogue or separate self/other files, not both")
        data = read_audio(dialogue, sample_rate)
        if data.shape[0] != 2:
            raise MediaError(
                f"has {data.shape[0]} channel{'s' if data.shape[0] != 1 else ''}; a dialogue needs 2 "
                "(one = self, other = partner); for a single voice give it as the self audio (--self)",
                dialogue,
            )
        if self_channel not in (0, 1):
            raise MediaError(f"self channel must be 0 or 1, got {self_channel}", dialogue)
        return data[self_channel].copy(), data[1 - self_channel].copy()
    if self_audio is None:
        raise MediaError("no audio given: need a stereo dialogue or a self audio file")
    own = to_mono(read_audio(self_audio, sample_rate))
    if other_audio is None:
        return own, np.zeros_like(own)
    partner = to_mono(read_audio(other_audio, sample_rate))
    n = max(len(own), len(partner))
    if len(own) != len(partner):
        log.info("self and other differ in length (%.2f s vs %.2f s); padding the shorter with silence",
                 len(own) / sample_rate, len(partner) / sample_rate)
    return pad_to(own, n), pad_to(partner, n)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(C, N) -> (N,) by averaging channels."""
    return audio.mean(axis=0) if audio.ndim == 2 else audio


def pad_to(audio: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or trim the last axis of ``audio`` to exactly ``n`` samples."""
    cur = audio.shape[-1]
    if cur >= n:
        return audio[..., :n]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, n - cur)]
    return np.pad(audio, pad)


def rms(audio: np.ndarray) -> float:
    """Root mean square of all samples."""
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def is_silent(audio: np.ndarray, threshold: float = SILENCE_RMS) -> bool:
    """True if the signal's RMS is below ``threshold`` (digital silence or near it)."""
    return rms(audio) < threshold


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    """Write (N,) or (C, N) float audio to a WAV file atomically (clipped to [-1, 1] for PCM)."""
    audio = np.asarray(audio, dtype=np.float32)
    frames = audio.T if audio.ndim == 2 else audio
    if subtype.startswith("PCM"):
        frames = np.clip(frames, -1.0, 1.0)
    with atomic_output(path) as tmp:
        sf.write(str(tmp), frames, sample_rate, subtype=subtype, format="WAV")
    return Path(path)
