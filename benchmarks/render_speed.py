"""Offline real-time factor of `infp render` at 256x256, split by stage, on a long composed dialogue.

    python benchmarks/render_speed.py [--weights weights] [--seconds 60] [--threads 2] [--precision bf16] [--backend openvino]

Prints the wall time, the real-time factor (wall / audio duration), the time in stage 2, stage 1 and
the rest (VAD, face crop, encoding), and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from infp.eval.dialogue import DURATION, compose
from infp.paths import REPO_ROOT
from infp.pipelines.render import Pipeline, RenderSettings
from infp.runtime.backends import BACKENDS

SAMPLES = REPO_ROOT / "data" / "samples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of the stage-1 renderer")
    ap.add_argument("--backend", choices=BACKENDS, default="torch", help="runtime of the stage-1 renderer")
    ap.add_argument("--portrait", type=Path, default=SAMPLES / "portraits" / "lp_s1.jpg")
    ap.add_argument("--out", type=Path, default=None, help="keep the video here (default: a temporary file)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    own, other = compose(SAMPLES / "video" / "lp_d11.mp4", SAMPLES / "audio" / "ditto.flac")
    reps = int(np.ceil(args.seconds / DURATION))
    n = int(args.seconds * 16000)
    own, other = np.tile(own, reps)[:n], np.tile(other, reps)[:n]
    pipe = Pipeline.from_pretrained(args.weights, precision=args.precision, backend=args.backend)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "bench.mp4"
        t = time.perf_counter()
        pipe.render(args.portrait, own, other, out=out, settings=RenderSettings())
        wall = time.perf_counter() - t
        rep = json.loads(out.with_suffix(".json").read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rest = wall - rep["stage1_s"] - rep["stage2_s"]
    print(f"render of a {args.seconds:.0f} s dialogue at {pipe.size}x{pipe.size}, {args.threads} threads: "
          f"{rep['frames']} frames")
    print(f"  wall {wall:.1f} s -> real-time factor {wall / args.seconds:.2f}")
    print(f"  stage 2 (motion) {rep['stage2_s']:.1f} s, stage 1 (rendering) {rep['stage1_s']:.1f} s, "
          f"rest (VAD, crop, encode) {rest:.1f} s")
    print(f"  peak resident memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
