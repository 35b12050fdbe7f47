"""Cosine noise schedule in continuous time t in [0, 1] with v-prediction (Salimans & Ho 2022)."""

from __future__ import annotations

import math

import torch


class CosineSchedule:
    """x_t = alpha(t) x0 + sigma(t) eps with alpha = cos(pi/2 * f(t)), sigma = sin(pi/2 * f(t))."""

    def __init__(self, s: float = 0.008, t_max: float = 0.9946) -> None:
        self.s = s
        self.t_max = t_max  # keeps alpha > 0 at the last step

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = (t * self.t_max + self.s) / (1 + self.s)
        return torch.cos(f * math.pi / 2), torch.sin(f * math.pi / 2)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, v target) for clean x0 (B, ...) at times t (B,)."""
        a, s = (v.view(-1, *[1] * (x0.dim() - 1)) for v in self.alpha_sigma(t))
        return a * x0 + s * noise, a * noise - s * x0

    def timesteps(self, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """Sampling times from 1 down to 0, (steps + 1,)."""
        return torch.linspace(1.0, 0.0, steps + 1, device=device)
