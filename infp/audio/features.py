"""Audio encoders shared by both channels: 16 kHz audio (B, N) -> features at 25 fps (B, T, C).

``AudioEncoder`` (built in, trainable, no pretrained weights): a causal log-mel front end and causal
convolutions, so frame t depends only on audio up to the end of frame t — the property that lets the
streaming generator match the offline one. ``PretrainedSpeechEncoder`` wraps a local wav2vec2 / HuBERT
folder through transformers (frozen), with its 50 fps features resampled to 25 fps.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.errors import InfpError

MEL_HOP = 160  # 10 ms: four mel frames per video frame
MEL_WIN = 400  # 25 ms


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only: output t sees inputs <= t (times the stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride, dilation=dilation)
        self.left = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class AudioEncoder(nn.Module):
    """Causal log-mel (80 bins, 10 ms hop) -> conv stack -> (B, T, C) at 25 fps.

    Receptive field: ``context_frames`` video frames into the past; no look-ahead.
    """

    def __init__(self, dim: int = 128, n_mels: int = 80, hidden: int = 128, n_layers: int = 3) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=MEL_WIN, win_length=MEL_WIN, hop_length=MEL_HOP, n_mels=n_mels,
            center=False, power=2.0)
        self.inp = CausalConv1d(n_mels, hidden, 3)
        self.down = nn.Conv1d(hidden, hidden, 4, stride=4)  # 100 fps -> 25 fps: output t = mel frames 4t..4t+3
        self.layers = nn.ModuleList([CausalConv1d(hidden, hidden, 3, dilation=2**i) for i in range(n_layers)])
        self.out = nn.Linear(hidden, dim)
        self.dim = dim
        self.context_frames = 1 + sum(2 * 2**i for i in range(n_layers)) + 2

    def frame_count(self, n_samples: int) -> int:
        return n_samples // SAMPLES_PER_FRAME

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, n_mels, N / 160) causal log-mel: frame k ends at sample 160 (k + 1)."""
        # Left-pad so that mel frame k covers samples [160 k - 240, 160 k + 160): the four mel frames of
        # video frame t end exactly at its last sample.
        return torch.log(self.mel(F.pad(audio, (MEL_WIN - MEL_HOP, 0))) + 1e-6)

    def forward(self, audio: torch.Tensor, log_mel: torch.Tensor | None = None) -> torch.Tensor:
        """audio: (B, N) float at 16 kHz, N a multiple of 640 -> (B, N / 640, C); ``log_mel``: its ``log_mel``
        when already computed."""
        mel = self.log_mel(audio) if log_mel is None else log_mel  # (B, n_mels, 4T)
        mel = (mel + 5.0) / 4.0  # roughly zero-mean, unit-range
        h = F.gelu(self.inp(mel))
        h = F.gelu(self.down(h))[..., : audio.shape[-1] // SAMPLES_PER_FRAME]  # (B, hidden, T)
        for layer in self.layers:
            h = h + F.gelu(layer(h))
        return self.out(h.transpose(1, 2))  # (B, T, C)


class PretrainedSpeechEncoder(nn.Module):
    """A frozen wav2vec2 / HuBERT model from a local folder -> (B, T, C) at 25 fps.

    Note: these models look at the whole input (no causality), so streaming with them needs a
    look-ahead buffer; the built-in ``AudioEncoder`` is the streaming default.
    """

    def __init__(self, path: str | Path, dim: int = 128, layer: int = -1) -> None:
        super().__init__()
        from transformers import AutoModel

        path = Path(path)
        if not (path / "config.json").is_file():
            raise InfpError("not a local transformers model folder (no config.json)", path)
        self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.backbone.requires_grad_(False).eval()
        self.layer = layer
        self.proj = nn.Linear(self.backbone.config.hidden_size, dim)
        self.dim = dim
        self.context_frames = 0

    def frame_count(self, n_samples: int) -> int:
        return n_samples // SAMPLES_PER_FRAME

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.backbone(audio, output_hidden_states=True)
            h = out.hidden_states[self.layer]  # (B, ~50 fps, H)
        t = audio.shape[-1] // SAMPLES_PER_FRAME
        h = F.interpolate(h.transpose(1, 2), size=t, mode="linear", align_corners=False).transpose(1, 2)
        return self.proj(h)
