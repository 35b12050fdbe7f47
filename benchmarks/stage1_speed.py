"""Per-module latency and FLOPs of the stage-1 renderer on this machine (appearance cached, batch 1).

    python benchmarks/stage1_speed.py [--checkpoint DIR | --arch v1|v2] [--size 256] [--threads 2] [--runs 50] [--precision bf16]

FLOPs are counted by ``torch.utils.flop_counter`` (a multiply-add counts 2; convolutions, matmuls);
elementwise work such as the warps, norms and activations is not in them but is in the times.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from infp.models.head_imitation import ARCHITECTURES, HeadImitationNet
from infp.models.keypoints import heatmaps
from infp.modules.warp import warp


def gflop(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def timed(fn, runs: int) -> float:
    for _ in range(5):
        fn()
    t = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - t) / runs * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--arch", choices=sorted(ARCHITECTURES), default="v2", help="without --checkpoint: an untrained net of this design")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: per-frame modules under bfloat16 autocast (Stage1Runner(precision='bf16'))")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = HeadImitationNet.from_pretrained(args.checkpoint) if args.checkpoint else HeadImitationNet(image_size=args.size, **ARCHITECTURES[args.arch])
    net.eval().to(memory_format=torch.channels_last)  # as Stage1Runner runs it
    s = net.image_size
    img = (torch.rand(1, 3, s, s) * 2 - 1).contiguous(memory_format=torch.channels_last)
    rows = []
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with torch.inference_mode():
        src = net.prepare_source(img, img)
        m = net.encode_motion(img)
        h, w = src.feats.shape[-2:]

        def keypoints():
            kp = net.decode_keypoints(m)
            return kp, (None if kp is None else heatmaps(kp, h, w, sigma=net.kp_sigma))

        kp, heat = keypoints()
        flow, occ = net.flow(src.feats, src.motion, m, src.keypoints, kp, heat)
        flow_hi = F.interpolate(flow, size=(s, s), mode="bilinear", align_corners=False)
        warped = warp(src.feats, flow) * occ
        warped_rgb = warp(src.image, flow_hi)
        rows.append(("appearance encoder (once per portrait)", timed(lambda: net.appearance(img), args.runs)))
        rows.append(("motion encoder (reenactment only)", timed(lambda: net.encode_motion(img), args.runs)))
        modules = [
            ("keypoint decoder + heatmaps", keypoints),
            ("flow + occlusion", lambda: net.flow(src.feats, src.motion, m, src.keypoints, kp, heat)),
            ("warp features", lambda: warp(src.feats, flow) * occ),
            ("warp source RGB", lambda: warp(src.image, F.interpolate(flow, size=(s, s), mode="bilinear", align_corners=False))),
            ("decoder", lambda: net.decoder(warped, warped_rgb, m, heat)),
        ]
        flops = {"appearance encoder (once per portrait)": gflop(lambda: net.appearance(img)),
                 "motion encoder (reenactment only)": gflop(lambda: net.encode_motion(img))}
        flops |= {name: gflop(fn) for name, fn in modules}
        total_flops = gflop(lambda: net.render(src, m))
        with autocast:
            per_frame = [(name, timed(fn, args.runs)) for name, fn in modules]
            rows += per_frame
            total = timed(lambda: net.render(src, m), args.runs)
    what = args.checkpoint or f"untrained {args.arch}"
    print(f"stage-1 renderer ({what}) at {s}x{s}, {args.threads} threads, batch 1, {args.precision}, torch {torch.__version__}")
    print(f"  {'module':<40s} {'ms':>7s}   GFLOP")
    for name, ms in rows:
        print(f"  {name:<40s} {ms:7.2f}   {flops[name]:6.3f}")
    print(f"  {'sum of per-frame modules':<40s} {sum(ms for _, ms in per_frame):7.2f}")
    print(f"  {'render() per frame (flow+warp+decode)':<40s} {total:7.2f}   {total_flops:6.3f}  -> {1000 / total:.1f} fps")


if __name__ == "__main__":
    main()
