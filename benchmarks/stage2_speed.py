"""Stage-2 speed: motion for 1 s of dyadic audio offline, and per-hop cost of the streaming generator.

    python benchmarks/stage2_speed.py [--checkpoint weights/stage2] [--steps 6] [--threads 2] [--control warm]
        [--push-ms 20]

The streaming pass pushes one hop of audio at a time, or with ``--push-ms`` chunks of that many ms (a live
session's cadence: the frames then leave one by one, each with its own lip reading).

With ``--control`` (weights trained with controls) the controls are set, and with a control guidance
weight other than the CFG scale (``--control-scale``, default 4) every step batches three rows, not two
(not when ``head_motion`` is the only control: steering meets it alone).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import Controls
from infp.runtime.motion import CONTROL_SCALE, MotionStream, generate_motion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--cfg-scale", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--control", default=None, help="controls to set, e.g. warm or smile=0.8")
    ap.add_argument("--control-scale", type=float, default=CONTROL_SCALE)
    ap.add_argument("--push-ms", type=float, default=None, help="streaming chunk (default: one hop)")
    args = ap.parse_args()
    ctl = dict(controls=Controls.parse(args.control), control_scale=args.control_scale)
    torch.set_num_threads(args.threads)
    net = AudioToMotionNet.from_pretrained(args.checkpoint) if args.checkpoint else AudioToMotionNet()
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    own, other = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(2))
    neutral = torch.zeros(net.motion_dim)
    generate_motion(net, own[:16000], other[:16000], neutral, steps=args.steps, cfg_scale=args.cfg_scale, **ctl)
    t = time.perf_counter()
    generate_motion(net, own, other, neutral, steps=args.steps, cfg_scale=args.cfg_scale, **ctl)
    offline = (time.perf_counter() - t) / args.seconds * 1000
    stream = MotionStream(net, neutral, steps=args.steps, cfg_scale=args.cfg_scale, **ctl)
    hop = stream.window * 640
    push = hop if args.push_ms is None else int(args.push_ms * 16)
    times = []
    for i in range(0, n - push, push):
        t = time.perf_counter()
        stream.push(own[i:i + push], other[i:i + push])
        times.append((time.perf_counter() - t) * 1000)
    streamed = sum(times) / ((n - push) / 16000)
    times = np.array(times[2:])
    hop_ms = stream.window * 40
    push_ms = push / 16
    print(f"stage 2: {net.motion_dim}-d motion, window/hop {stream.window} frames, {args.steps} DDIM steps, "
          f"CFG {args.cfg_scale}, {args.threads} threads"
          + (f", controls {args.control} (guidance {args.control_scale:g}, active: {stream.controls_active})" if args.control else ""))
    print(f"  offline: {offline:.1f} ms of compute per 1 s of dyadic audio")
    if push == hop:
        print(f"  streaming: hop {hop_ms:.0f} ms computed in p50 {np.median(times):.1f} ms, p95 "
              f"{np.percentile(times, 95):.1f} ms ({np.median(times) / hop_ms:.2f} of the hop)")
    else:
        print(f"  streaming in chunks of {push_ms:.0f} ms: {streamed:.1f} ms of compute per 1 s; a chunk p50 "
              f"{np.median(times):.1f} ms, p95 {np.percentile(times, 95):.1f} ms, max {times.max():.1f} ms "
              f"(a hop's window generated in the chunk that completes it)")
    print(f"  algorithmic look-ahead: {stream.lookahead_ms:.0f} ms")


if __name__ == "__main__":
    main()
