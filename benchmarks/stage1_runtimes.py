"""Stage-1 renderer on each inference runtime, side by side: ms per frame and PSNR against torch fp32.

    python benchmarks/stage1_runtimes.py [--checkpoint DIR | --arch v1|v2] [--threads 2] [--runs 50]
        [--backends torch,torch-bf16,compile,compile-bf16,onnxruntime,openvino,openvino-bf16] [--batch 1]

Every runtime renders the same inputs: a sample portrait cached once (``Stage1Runner.source``) and the
motion of the first frames of a sample driving video (``runner.encode``, relative to its first frame as
``infp reenact`` does it). Times are the median of ``--runs`` calls after warm-up, one call per batch;
PSNR is over all the frames against torch eager fp32 (channels-last, as ``Stage1Runner`` runs it), with
the worst single call (a frame at batch 1) beside it; setup is the runtime's first call (compilation;
the ONNX export too when the graph is not in the cache yet). ``--arch v2`` without ``--checkpoint``
times a randomly initialised v2 net (the architecture under training); ``--arch v1`` loads the starter
weights. ``torch.compile`` is timed here only; ``Stage1Runner(backend=...)`` offers the others.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from infp.io import iter_frames
from infp.models.head_imitation import ARCHITECTURES, HeadImitationNet
from infp.pipelines.reenact import track_motion_inputs
from infp.runtime.portrait import load_portrait
from infp.runtime.stage1 import Stage1Runner

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "torch-bf16", "compile", "compile-bf16", "onnxruntime", "onnxruntime-spin", "openvino", "openvino-bf16")
DEFAULT = "torch,torch-bf16,compile,compile-bf16,onnxruntime,openvino,openvino-bf16"
V2 = ARCHITECTURES["v2"]


def build_net(args: argparse.Namespace) -> HeadImitationNet:
    if args.checkpoint:
        return HeadImitationNet.from_pretrained(args.checkpoint)
    if args.arch == "v1":
        return HeadImitationNet.from_pretrained(ROOT / "weights" / "stage1")
    torch.manual_seed(0)
    return HeadImitationNet(**V2).eval()


def driving_latents(runner: Stage1Runner, source, frames: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latents (N, D) and keypoints (N, K, 2) of a sample video's first frames, relative to its first frame."""
    video = ROOT / "data" / "samples" / "video" / "lp_d10.mp4"
    inputs = []
    for masked in track_motion_inputs(iter_frames(video), runner.size, video):
        inputs.append(masked)
        if len(inputs) == frames:
            break
    lat = runner.encode(inputs)
    with torch.inference_mode():
        kp = runner.net.relative_keypoints(source, lat, lat[:1].expand_as(lat))
    return source.motion + (lat - lat[:1]), kp


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of frames in [-1, 1] (peak 2)."""
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def make_renderer(name: str, net: HeadImitationNet, threads: int, cache_dir: str | None):
    """(render(source, latents, keypoints) -> frames, note); raises if the runtime is not usable here."""
    if name in ("torch", "torch-bf16"):
        runner = Stage1Runner(net, precision="bf16" if name.endswith("bf16") else "fp32")
        return runner.frames, ""
    if name in ("compile", "compile-bf16"):
        runner = Stage1Runner(net)
        bf16 = name.endswith("bf16")

        def render(source, lat, kp):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return runner.net.render(source, lat, kp_drv=kp).float()

        compiled = torch.compile(render)

        @torch.inference_mode()
        def frames(source, lat, kp):
            return compiled(source, lat, kp)

        return frames, ""
    if name == "onnxruntime-spin":
        from infp.runtime.backends import OnnxRuntimeRender, feeds, onnx_graph

        graph = OnnxRuntimeRender(onnx_graph(net, net.image_size, cache_dir), threads, spinning=True)

        @torch.inference_mode()
        def frames(source, lat, kp):
            return torch.from_numpy(graph(feeds(net, source, lat, kp)))

        return frames, "threads busy-wait between calls"
    backend, _, precision = name.partition("-")
    if backend == "openvino" and precision == "bf16":
        import openvino as ov

        if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeError("this CPU has no bf16 (OpenVINO OPTIMIZATION_CAPABILITIES)")
    runner = Stage1Runner(net, precision=precision or "fp32", backend=backend, cache_dir=cache_dir)
    return runner.frames, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="stage-1 checkpoint folder (overrides --arch)")
    ap.add_argument("--arch", choices=("v1", "v2"), default="v2", help="v1: starter weights; v2: random v2 net")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="frames per render call")
    ap.add_argument("--frames", type=int, default=16, help="driving frames (cycled through; PSNR over all)")
    ap.add_argument("--backends", default=DEFAULT, help=f"comma-separated, of {', '.join(BACKENDS)}")
    ap.add_argument("--cache-dir", default=None, help="for the exported ONNX graphs (default: infp's cache folder)")
    args = ap.parse_args()
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    for n in names:
        if n not in BACKENDS:
            ap.error(f"unknown backend {n!r}; choose from {', '.join(BACKENDS)}")
    torch.set_num_threads(args.threads)

    net = build_net(args)
    reference = Stage1Runner(net)
    pt = load_portrait(ROOT / "data" / "samples" / "portraits" / "lp_s1.jpg", reference.size)
    source = reference.source(pt)
    lat, kp = driving_latents(reference, source, args.frames)
    n_batches = max(1, len(lat) // args.batch)
    batches = [(lat[i * args.batch:(i + 1) * args.batch], None if kp is None else kp[i * args.batch:(i + 1) * args.batch])
               for i in range(n_batches)]
    want = torch.cat([reference.frames(source, lt, k) for lt, k in batches])

    what = args.checkpoint or ("starter weights (v1)" if args.arch == "v1" else "random v2 net")
    print(f"stage-1 render, {what}, {reference.size}x{reference.size}, batch {args.batch}, {args.threads} threads, "
          f"torch {torch.__version__}, {len(want)} driving frames")
    rows = []
    for name in names:
        t0 = time.perf_counter()
        try:
            render, note = make_renderer(name, net, args.threads, args.cache_dir)
            first = render(source, *batches[0])  # compiles / exports on the first call where it does
            setup = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001  (a runtime that does not work here is a result too)
            rows.append((name, None, None, None, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}"))
            print(f"  {name}: failed ({type(e).__name__}: {e})")
            continue
        del first
        for i in range(args.warmup):
            render(source, *batches[i % n_batches])
        times = []
        for i in range(args.runs):
            b = batches[i % n_batches]
            t = time.perf_counter()
            render(source, *b)
            times.append(time.perf_counter() - t)
        got = [render(source, *b) for b in batches]
        worst = min(psnr(g, want[i * args.batch:(i + 1) * args.batch]) for i, g in enumerate(got))
        ms = statistics.median(times) * 1000 / args.batch
        rows.append((name, ms, psnr(torch.cat(got), want), worst, setup, note))
        print(f"  {name}: {ms:.2f} ms/frame (setup {setup:.1f} s)")

    base = next((r[1] for r in rows if r[0] == "torch" and r[1] is not None), None)
    print()
    worst_of = "frame" if args.batch == 1 else "call"
    print(f"| runtime | ms/frame | fps | vs torch fp32 | PSNR vs torch fp32 (dB) | worst {worst_of} (dB) | setup (s) | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, ms, p, worst, setup, note in rows:
        if ms is None:
            print(f"| {name} | - | - | - | - | - | - | {note} |")
            continue
        speed = f"{base / ms:.2f}x" if base else "-"
        ok = "" if p >= 40 else " (below 40)"
        fmt = (lambda v: "ref" if v == float("inf") else f"{v:.1f}")
        print(f"| {name} | {ms:.2f} | {1000 / ms:.1f} | {speed} | {fmt(p)}{ok} | {fmt(worst)} | {setup:.1f} | {note} |")


if __name__ == "__main__":
    main()
