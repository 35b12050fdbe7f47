"""Rebuild the small in-repository media subset from a copy of the shared sample media.

    python data/samples/make_subset.py --source ../shared/data --out data/samples

Only MIT/Apache-licensed files are used (credited in data/samples/README.md). Videos are
re-encoded to 25 fps H.264 at 512x512 (portrait-format videos are first cropped to a square
around the face), audio to 16 kHz mono FLAC, portraits to JPEG with a longest side of 512.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import cv2
import numpy as np

from infp.io import ffmpeg_exe, read_audio, read_image, write_image
import soundfile as sf

# name -> (source file, crop x, y, side) ; None = the video is already square
VIDEOS = {
    "lp_d10": ("liveportrait_d10.mp4", None),   # speaks with its own voice
    "lp_d11": ("liveportrait_d11.mp4", None),   # speaks with its own voice
    "lp_d12": ("liveportrait_d12.mp4", None),   # mostly silent, a short utterance
    "lp_d3": ("liveportrait_d3.mp4", None),     # expressions, silent
    "lp_s29": ("liveportrait_s29.mp4", (30, 200, 640)),   # laughs at an off-screen partner
    "lp_s18": ("liveportrait_s18.mp4", (470, 0, 560)),    # idle
}
AUDIO = {
    "joyvasa_001": "joyvasa_001.wav",
    "ditto": "ditto_audio.wav",
    "hallo_3": "hallo_3.wav",
}
PORTRAITS = {
    "lp_s1": "liveportrait_s1.jpg",
    "lp_s5": "liveportrait_s5.jpg",
    "hallo_1": "hallo_1.jpg",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    for sub in ("video", "audio", "portraits"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    for name, (src, box) in VIDEOS.items():
        vf = "fps=25"
        if box is not None:
            x, y, side = box
            vf += f",crop={side}:{side}:{x}:{y}"
        vf += ",scale=512:512:flags=area,setsar=1"
        subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", str(args.source / "video" / src), "-vf", vf,
             "-c:v", "libx264", "-preset", "slow", "-crf", "26", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-ar", "16000", "-movflags", "+faststart",
             str(args.out / "video" / f"{name}.mp4")],
            check=True,
        )
    for name, src in AUDIO.items():
        audio = read_audio(args.source / "audio" / src).mean(axis=0)
        sf.write(str(args.out / "audio" / f"{name}.flac"), audio, 16000, subtype="PCM_16")
    # a two-speaker dialogue (stereo: channel 0 = self, 1 = other) with turns, an overlap and pauses
    from infp.eval.dialogue import compose

    own, other = compose(args.out / "audio" / "joyvasa_001.flac", args.out / "audio" / "ditto.flac")
    sf.write(str(args.out / "audio" / "dialogue.flac"), np.stack([own, other], axis=1), 16000, subtype="PCM_16")
    for name, src in PORTRAITS.items():
        img = read_image(args.source / "portraits" / src)
        scale = 512 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        write_image(args.out / "portraits" / f"{name}.jpg", img)


if __name__ == "__main__":
    main()
