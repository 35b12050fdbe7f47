"""Classifier-free guidance as a wrapper around a conditional denoiser."""

from __future__ import annotations

from typing import Callable

import torch


def cfg_denoiser(model: Callable[..., torch.Tensor], scale: float) -> Callable[..., torch.Tensor]:
    """v = v_uncond + scale * (v_cond - v_uncond); one batched call with ``drop_cond`` = [False, True]."""

    def denoise(x: torch.Tensor, t: torch.Tensor, **extra) -> torch.Tensor:
        if scale == 1.0:
            return model(x, t, drop_cond=torch.zeros(x.shape[0], dtype=torch.bool, device=x.device), **extra)
        b = x.shape[0]
        doubled = {k: torch.cat([v, v]) if torch.is_tensor(v) else v for k, v in extra.items()}
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
        v = model(torch.cat([x, x]), torch.cat([t, t]), drop_cond=drop, **doubled)
        cond, uncond = v[:b], v[b:]
        return uncond + scale * (cond - uncond)

    return denoise
