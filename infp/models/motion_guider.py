"""Interactive Motion Guider: (self audio feats (B, T, A), other audio feats (B, T, A), style (B, S)) -> guidance (B, T, C).

``self`` audio queries the verbal memory bank, ``other`` audio the non-verbal bank (cross-attention);
the two read-outs are summed and mixed by an MLP. The style vector modulates both banks (FiLM), so
the same audio can drive different speaking and listening manners.
"""

from __future__ import annotations

import torch
from torch import nn

from infp.modules.attention import Attention, mlp


class MotionGuider(nn.Module):
    """Verbal and non-verbal memory banks (``bank_size`` x ``dim``; INFP uses 64 x 512)."""

    def __init__(self, audio_dim: int = 128, dim: int = 256, bank_size: int = 64, style_dim: int = 64, heads: int = 4) -> None:
        super().__init__()
        # Unit-scale entries: with tiny ones every query attends uniformly, every entry gets the same
        # gradient, and the read-out never starts to depend on the audio.
        self.verbal = nn.Parameter(torch.randn(bank_size, dim))
        self.nonverbal = nn.Parameter(torch.randn(bank_size, dim))
        self.style = nn.Linear(style_dim, 4 * dim)
        nn.init.zeros_(self.style.weight)
        nn.init.zeros_(self.style.bias)
        self.q_self = nn.Linear(audio_dim, dim)
        self.q_other = nn.Linear(audio_dim, dim)
        self.read_verbal = Attention(dim, heads)
        self.read_nonverbal = Attention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.mix = mlp(dim, 2)
        self.dim = dim

    def banks(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Style-modulated banks: (B, K, C) each."""
        sv, bv, sn, bn = self.style(style)[:, None, :].chunk(4, dim=-1)
        return self.verbal[None] * (1 + sv) + bv, self.nonverbal[None] * (1 + sn) + bn

    def forward(self, a_self: torch.Tensor, a_other: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        verbal, nonverbal = self.banks(style)
        f_v = self.read_verbal(self.q_self(a_self), verbal)  # (B, T, C)
        f_n = self.read_nonverbal(self.q_other(a_other), nonverbal)  # (B, T, C)
        h = f_v + f_n
        return h + self.mix(self.norm(h))
