"""Motion diffusion transformer: noisy window (B, W, D) + previous frames (B, P, D) + guidance (B, P+W, C) -> v (B, W, D).

Tokens are the P previous (clean) frames followed by the W noisy frames; self-attention over all of
them gives the temporal context that makes windows join seamlessly; each token also gets the guider
feature of its own frame added (the frame-aligned path, which needs nothing learned to line up audio and
motion), and cross-attention reads the guider features of all the frames around it; the diffusion time
and the style vector modulate every block (AdaLN).
"""

from __future__ import annotations

import torch
from torch import nn

from infp.modules.attention import AdaLN, Attention, mlp, timestep_embedding


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, guide_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.ln1, self.attn = AdaLN(dim, cond_dim), Attention(dim, heads)
        self.ln2, self.cross = AdaLN(dim, cond_dim), Attention(dim, heads, guide_dim)
        self.ln3, self.mlp = AdaLN(dim, cond_dim), mlp(dim)

    def forward(self, x, cond, guide, key_mask):
        h, g = self.ln1(x, cond)
        x = x + g * self.attn(h, key_mask=key_mask)
        h, g = self.ln2(x, cond)
        x = x + g * self.cross(h, guide)
        h, g = self.ln3(x, cond)
        return x + g * self.mlp(h)


class MotionDiT(nn.Module):
    """A small diffusion transformer over a window of motion latents."""

    def __init__(self, motion_dim: int = 64, dim: int = 192, depth: int = 4, heads: int = 4, guide_dim: int = 256,
                 style_dim: int = 64, window: int = 4, context: int = 16) -> None:
        super().__init__()
        self.window, self.context = window, context
        self.inp = nn.Linear(motion_dim, dim)
        self.pos = nn.Parameter(torch.randn(context + window, dim) * 0.02)
        self.kind = nn.Parameter(torch.randn(2, dim) * 0.02)  # previous vs noisy tokens
        self.guide_pos = nn.Parameter(torch.randn(context + window, guide_dim) * 0.02)
        self.guide_in = nn.Linear(guide_dim, dim)
        self.cond = nn.Sequential(nn.Linear(dim + style_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList([DiTBlock(dim, heads, guide_dim, dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, motion_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dim = dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor, has_prev: torch.Tensor,
                guide: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x (B, W, D) noisy; t (B,); prev (B, P, D); has_prev (B,) bool; guide (B, P+W, C); style (B, S)."""
        b, w, _ = x.shape
        p = prev.shape[1]
        tokens = torch.cat([self.inp(prev) + self.kind[0], self.inp(x) + self.kind[1]], dim=1) + self.pos[None, : p + w]
        tokens = tokens + self.guide_in(guide[:, -(p + w):])  # guide frame i belongs to token i
        key_mask = torch.ones(b, p + w, dtype=torch.bool, device=x.device)
        key_mask[:, :p] = has_prev[:, None]
        cond = self.cond(torch.cat([timestep_embedding(t, self.dim), style], dim=-1))
        g = guide + self.guide_pos[None, : guide.shape[1]]
        for block in self.blocks:
            tokens = block(tokens, cond, g, key_mask)
        return self.out(self.norm(tokens[:, p:]))
