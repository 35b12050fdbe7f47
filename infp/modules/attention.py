"""Attention blocks on token sequences (B, L, C): multi-head attention, AdaLN modulation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None. Optional key padding mask (B, Lk)."""

    def __init__(self, dim: int, heads: int = 4, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, *self.keys(x if context is None else context), key_mask=key_mask)

    def keys(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, heads, Lk, C / heads) of a context (B, Lk, Cc): computed once for a context that
        several queries read."""
        b, n, _ = context.shape
        c = self.q.out_features
        k, v = self.kv(context).view(b, n, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of the queries of x (B, L, C) over the keys and values from ``keys``."""
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class AdaLN(nn.Module):
    """LayerNorm whose scale/shift (and a residual gate) come from a conditioning vector (B, Dc)."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.mod = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.modulate(x, self.modulation(cond))

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1 + scale, shift, 1 + gate), each (B, 1, C), from the conditioning vector (B, Dc)."""
        scale, shift, gate = self.mod(cond)[:, None, :].chunk(3, dim=-1)
        return 1 + scale, shift, 1 + gate

    def modulate(self, x: torch.Tensor, modulation: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised, scaled and shifted x and the residual gate, from a ``modulation``."""
        scale, shift, gate = modulation
        return self.norm(x) * scale + shift, gate


def mlp(dim: int, hidden_mult: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden_mult * dim), nn.GELU(), nn.Linear(hidden_mult * dim, dim))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion times t in [0, 1] (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-torch.log(torch.tensor(max_period)) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
