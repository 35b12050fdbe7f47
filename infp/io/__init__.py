"""Pure audio/video/image I/O: 16 kHz float32 audio, RGB uint8 frames, atomic outputs."""

from infp.io.atomic import atomic_dir, atomic_output, atomic_write_text
from infp.io.audio import is_silent, pad_to, read_audio, read_dialogue, resample, rms, to_mono, write_wav
from infp.io.ffmpeg import MediaInfo, ffmpeg_exe, probe
from infp.io.outputs import check_video_output
from infp.io.video import (
    VideoWriter,
    count_frames,
    iter_frames,
    read_frames,
    read_image,
    video_info,
    write_image,
    write_video,
)

__all__ = [
    "MediaInfo", "VideoWriter", "atomic_dir", "atomic_output", "atomic_write_text", "check_video_output", "count_frames",
    "ffmpeg_exe", "is_silent",
    "iter_frames", "pad_to", "probe", "read_audio", "read_dialogue", "read_frames", "read_image", "resample",
    "rms", "to_mono", "video_info", "write_image", "write_video", "write_wav",
]
