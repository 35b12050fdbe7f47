"""Samplers share one signature: (model, x, ts, schedule, extra_args, callback) -> x0."""

from __future__ import annotations

from typing import Callable

import torch

from infp.diffusion.schedule import CosineSchedule


@torch.no_grad()
def sample_ddim(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    ts: torch.Tensor,
    schedule: CosineSchedule,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) for a v-predicting ``model(x, t, **extra_args)``; x starts as noise."""
    extra_args = extra_args or {}
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        a, s = schedule.alpha_sigma(t)
        v = model(x, t.expand(x.shape[0]), **extra_args)
        x0 = a * x - s * v
        eps = s * x + a * v
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
        if t_next <= 0:
            return x0
        a2, s2 = schedule.alpha_sigma(t_next)
        x = a2 * x0 + s2 * eps
    return x
