"""Stage-2 runtimes side by side: a sampling step of the motion transformer (the cost of every step) in torch
eager, traced with TorchScript (what ``MotionStream`` runs on the CPU, ``infp.runtime.motion.TracedStep``) and
in OpenVINO, on the same inputs.

Per call of the step at the stream's rows (2: CFG; 3 with controls the network is conditioned on) the script
reports the time in each runtime and the output's PSNR against eager torch; then it generates the motion of
the same random dyadic audio offline with each and reports ms of compute per 1 s of audio and the largest
difference of the latents from the eager ones.

    python benchmarks/stage2_backends.py [--checkpoint weights/stage2] [--threads 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from infp.models.audio_to_motion import AudioToMotionNet
from infp.runtime import motion
from infp.runtime.motion import TracedStep, _flat, _FlatStep, generate_motion


class OpenVINOStep(TracedStep):
    """The step compiled by OpenVINO for the CPU (once per number of rows), called with torch tensors."""

    def __init__(self, dit, threads: int) -> None:
        super().__init__(dit)
        self.threads, self.requests = threads, {}

    def __call__(self, x, conditioning, window):
        import openvino as ov

        args = (x, window.prev_tokens, window.guide_tokens, window.key_mask, *_flat(conditioning, window))
        rows = x.shape[0]
        if rows not in self.requests:
            model = ov.convert_model(_FlatStep(self.dit), example_input=tuple(a.detach().cpu() for a in args))
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
            self.requests[rows] = compiled.create_infer_request()
        out = self.requests[rows].infer([a.detach().cpu().numpy() for a in args])[0]
        return torch.from_numpy(np.array(out))


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    err = float(np.mean((out - ref) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(float(np.max(ref ** 2)) / err))


def time_calls(fn, args, n: int) -> float:
    """Median over 10 blocks of ``n / 10`` calls, in ms per call (this CPU's speed drifts)."""
    for _ in range(10):
        fn(*args)
    blocks = []
    for _ in range(10):
        t = time.perf_counter()
        for _ in range(max(1, n // 10)):
            fn(*args)
        blocks.append((time.perf_counter() - t) / max(1, n // 10) * 1000)
    return float(np.median(blocks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="weights/stage2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = AudioToMotionNet.from_pretrained(args.checkpoint).eval()
    dit = net.dit
    d, w, p = net.motion_dim, net.window, dit.context
    c, s = dit.guide_pos.shape[1], dit.cond[0].in_features - dit.dim
    steps = {"eager": dit.step, "traced": TracedStep(dit), "openvino": OpenVINOStep(dit, args.threads)}
    print(f"motion transformer: {sum(q.numel() for q in dit.parameters()) / 1e6:.2f} M parameters, "
          f"{p + w} tokens, {args.threads} threads")
    with torch.no_grad():
        for b in (2, 3):
            g = torch.Generator().manual_seed(b)
            x = torch.randn(b, w, d, generator=g)
            cond = dit.conditioning(torch.rand(1, generator=g), torch.randn(1, s, generator=g))
            win = dit.window(torch.randn(b, p, d, generator=g), torch.ones(b, dtype=torch.bool),
                             torch.randn(b, p + w, c, generator=g), w)
            ex = (x, cond, win)
            ref = dit.step(*ex).numpy()
            line = []
            for name, step in steps.items():
                out = step(*ex).numpy()
                line.append(f"{name} {time_calls(step, ex, args.calls):.2f} ms (PSNR {psnr(ref, out):.1f} dB)")
            print(f"  {b} rows, per call: " + ", ".join(line))
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    own, other = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(2))
    rest = torch.zeros(d)
    results = {}
    for name in ("eager", "traced", "openvino"):
        motion.TRACE_STEP = name != "eager"
        dit.__dict__["_traced_step"] = steps["openvino"] if name == "openvino" else TracedStep(dit)
        generate_motion(net, own[:16000], other[:16000], rest, steps=6)
        t = time.perf_counter()
        results[name] = generate_motion(net, own, other, rest, steps=6)
        diff = np.abs(results[name] - results["eager"]).max()
        print(f"  offline, {name} steps: {(time.perf_counter() - t) / args.seconds * 1000:.1f} ms of compute "
              f"per 1 s of dyadic audio; largest difference from eager {diff:.2e}")
    motion.TRACE_STEP = True
    dit.__dict__["_traced_step"] = TracedStep(dit)


if __name__ == "__main__":
    main()
