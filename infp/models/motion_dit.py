"""Motion diffusion transformer: noisy window (B, W, D) + previous frames (B, P, D) + guidance (B, P+W, C) -> v (B, W, D).

Tokens are the P previous (clean) frames followed by the W noisy frames; self-attention over all of
them gives the temporal context that makes windows join seamlessly; each token also gets the guider
feature of its own frame added (the frame-aligned path, which needs nothing learned to line up audio and
motion), and cross-attention reads the guider features of all the frames around it; the diffusion time
and the style vector modulate every block (AdaLN).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return self.run(x, self.modulation(cond), self.cross.keys(guide), key_mask)

    def modulation(self, cond: torch.Tensor) -> tuple:
        """The three AdaLN modulations of this block for a conditioning vector (B, Dc)."""
        return tuple(ln.modulation(cond) for ln in (self.ln1, self.ln2, self.ln3))

    def run(self, x, modulation, cross_keys, key_mask):
        """The block on tokens x with its ``modulation`` and the cross-attention's keys and values given."""
        h, g = self.ln1.modulate(x, modulation[0])
        x = x + g * self.attn(h, key_mask=key_mask)
        h, g = self.ln2.modulate(x, modulation[1])
        x = x + g * self.cross.attend(h, *cross_keys)
        h, g = self.ln3.modulate(x, modulation[2])
        return x + g * self.mlp(h)


@dataclass
class DiTWindow:
    """What the steps of one window share (``MotionDiT.window``): the previous frames' tokens (B, P, C), the
    guidance added to every token (B, P+W, C), the key mask (B, P+W) and each block's cross-attention keys."""

    prev_tokens: torch.Tensor
    guide_tokens: torch.Tensor
    key_mask: torch.Tensor
    cross_keys: list


class MotionDiT(nn.Module):
    """A small diffusion transformer over a window of motion latents.

    ``forward`` is one denoising call. A sampler that denoises the same window several times can split it:
    ``window`` once per window, ``conditioning`` once per diffusion time (the same at every window of a
    stream), then ``step`` per call; the result is the same."""

    def __init__(self, motion_dim: int = 64, dim: int = 192, depth: int = 4, heads: int = 4, guide_dim: int = 256,
                 style_dim: int = 64, window: int = 4, context: int = 16) -> None:
        super().__init__()
        self.window_frames, self.context = window, context
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
        return self.step(x, self.conditioning(t, style), self.window(prev, has_prev, guide, x.shape[1]))

    def conditioning(self, t: torch.Tensor, style: torch.Tensor) -> list:
        """Every block's AdaLN modulation for diffusion times t (B,) and style (B, S)."""
        cond = self.cond(torch.cat([timestep_embedding(t, self.dim), style], dim=-1))
        return [block.modulation(cond) for block in self.blocks]

    def window(self, prev: torch.Tensor, has_prev: torch.Tensor, guide: torch.Tensor, w: int) -> DiTWindow:
        """What does not change while a window of w frames is denoised (arguments as for ``forward``)."""
        b, p = prev.shape[0], prev.shape[1]
        key_mask = torch.ones(b, p + w, dtype=torch.bool, device=prev.device)
        key_mask[:, :p] = has_prev[:, None]
        g = guide + self.guide_pos[None, : guide.shape[1]]
        return DiTWindow(self.inp(prev) + self.kind[0] + self.pos[None, :p],
                         self.guide_in(guide[:, -(p + w):]),  # guide frame i belongs to token i
                         key_mask, [block.cross.keys(g) for block in self.blocks])

    def step(self, x: torch.Tensor, conditioning: list, window: DiTWindow) -> torch.Tensor:
        """v (B, W, D) for the noisy window x (B, W, D) with a ``conditioning`` and a ``window``."""
        p, w = window.prev_tokens.shape[1], x.shape[1]
        noisy = self.inp(x) + self.kind[1] + self.pos[None, p: p + w]
        tokens = torch.cat([window.prev_tokens, noisy], dim=1) + window.guide_tokens
        for block, modulation, cross_keys in zip(self.blocks, conditioning, window.cross_keys):
            tokens = block.run(tokens, modulation, cross_keys, window.key_mask)
        return self.out(self.norm(tokens[:, p:]))
