"""Stage-2 runtimes side by side: the motion transformer (the cost of every sampling step) in torch eager
and in OpenVINO, on the same inputs.

Per call of the motion transformer at the stream's batch (2 rows: CFG; 3 with controls the network is
conditioned on) the script reports the time in each runtime and the output's PSNR against torch; then it
generates the motion of the same random dyadic audio offline with each (the transformer swapped, every
other part in torch) and reports ms of compute per 1 s of audio and the largest difference of the latents.
Nothing here changes what ``infp`` ships: stage 2 runs in torch.

    python benchmarks/stage2_backends.py [--checkpoint weights/stage2] [--threads 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from infp.models.audio_to_motion import AudioToMotionNet
from infp.runtime.motion import generate_motion


class OpenVINODiT(nn.Module):
    """The motion transformer compiled by OpenVINO for the CPU (once per batch size: the traced graph fixes
    it), called with torch tensors."""

    def __init__(self, dit: nn.Module, threads: int) -> None:
        super().__init__()
        self.window, self.context, self.dim = dit.window, dit.context, dit.dim
        self.dit, self.threads, self.requests = dit, threads, {}

    def forward(self, x, t, prev, has_prev, guide, style):
        import openvino as ov

        args = (x, t, prev, has_prev, guide, style)
        b = x.shape[0]
        if b not in self.requests:
            model = ov.convert_model(self.dit, example_input=tuple(a.detach().cpu() for a in args))
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
            self.requests[b] = compiled.create_infer_request()
        out = self.requests[b].infer([a.detach().cpu().numpy() for a in args])[0]
        return torch.from_numpy(np.array(out))


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10(float(np.max(ref ** 2)) / max(float(np.mean((out - ref) ** 2)), 1e-30)))


def time_calls(fn, args, n: int) -> float:
    for _ in range(10):
        fn(*args)
    t = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - t) / n * 1000


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
    d, w, p = net.motion_dim, dit.window, dit.context
    c, s = dit.guide_pos.shape[1], dit.cond[0].in_features - dit.dim

    def example(b: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(b)
        return (torch.randn(b, w, d, generator=g), torch.rand(b, generator=g), torch.randn(b, p, d, generator=g),
                torch.ones(b, dtype=torch.bool), torch.randn(b, p + w, c, generator=g), torch.randn(b, s, generator=g))

    ov_dit = OpenVINODiT(dit, args.threads)
    print(f"motion transformer: {sum(q.numel() for q in dit.parameters()) / 1e6:.2f} M parameters, "
          f"{p + w} tokens, {args.threads} threads")
    with torch.no_grad():
        for b in (2, 3):
            ex = example(b)
            ref = dit(*ex).numpy()
            out = ov_dit(*ex).numpy()
            print(f"  batch {b}: torch {time_calls(dit, ex, args.calls):.2f} ms, openvino "
                  f"{time_calls(ov_dit, ex, args.calls):.2f} ms per call; PSNR {psnr(ref, out):.1f} dB")
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    own, other = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(2))
    rest = torch.zeros(d)
    results = {}
    for name, module in (("torch", dit), ("openvino", ov_dit)):
        net.dit = module
        generate_motion(net, own[:16000], other[:16000], rest, steps=6)
        t = time.perf_counter()
        results[name] = generate_motion(net, own, other, rest, steps=6)
        print(f"  offline, {name} transformer: {(time.perf_counter() - t) / args.seconds * 1000:.1f} ms of compute "
              f"per 1 s of dyadic audio")
    net.dit = dit
    diff = float(np.abs(results["torch"] - results["openvino"]).max())
    rms = float(np.sqrt(np.mean(results["torch"] ** 2)))
    print(f"  latents: largest difference {diff:.2e} (RMS of the latents {rms:.3f})")


if __name__ == "__main__":
    main()
