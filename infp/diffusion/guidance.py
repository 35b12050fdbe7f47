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
        return combine_rows(v, scale)

    return denoise


def combine_rows(v: torch.Tensor, scale: float, control_scale: float | None = None) -> torch.Tensor:
    """The guided prediction from a batched call's rows: [cond, uncond] (``cfg_denoiser``), or with a
    ``control_scale`` [audio+controls, audio, uncond] (``cfg_control_denoiser``)."""
    if control_scale is None:
        b = v.shape[0] // 2
        cond, uncond = v[:b], v[b:]
        return uncond + scale * (cond - uncond)
    b = v.shape[0] // 3
    ctl, audio, uncond = v[:b], v[b:2 * b], v[2 * b:]
    return uncond + scale * (audio - uncond) + control_scale * (ctl - audio)


def cfg_control_denoiser(model: Callable[..., torch.Tensor], scale: float, control_scale: float,
                         guide_free: torch.Tensor) -> Callable[..., torch.Tensor]:
    """Guidance with a separate weight on the controls (``guide`` with them, ``guide_free`` without):
    v = v_uncond + scale * (v_audio - v_uncond) + control_scale * (v_audio+controls - v_audio); one batched call
    of three. With ``control_scale == scale`` this is ``cfg_denoiser`` on the guide with the controls."""

    def denoise(x: torch.Tensor, t: torch.Tensor, guide: torch.Tensor, **extra) -> torch.Tensor:
        b = x.shape[0]
        tripled = {k: torch.cat([v, v, v]) if torch.is_tensor(v) else v for k, v in extra.items()}
        drop = torch.cat([torch.zeros(2 * b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
        v = model(torch.cat([x, x, x]), torch.cat([t, t, t]), guide=torch.cat([guide, guide_free, guide_free]),
                  drop_cond=drop, **tripled)
        return combine_rows(v, scale, control_scale)

    return denoise
