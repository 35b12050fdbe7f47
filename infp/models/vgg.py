"""VGG-19 perceptual loss: (pred, target) (B, 3, H, W) in [-1, 1] -> scalar; weights only from a local file.

The layer layout matches torchvision's ``vgg19().features``, so its state dict (``features.*`` keys,
as .pth or .safetensors) loads directly. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from infp.errors import InfpError

_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
_TAPS = (3, 8, 17, 26, 35)  # relu1_2, relu2_2, relu3_4, relu4_4, relu5_4
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGGPerceptual(nn.Module):
    """Mean L1 between VGG-19 activations at five depths (frozen)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(v)
        self.features = nn.Sequential(*layers[: max(_TAPS) + 1])
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_weights(cls, path: str | Path) -> "VGGPerceptual":
        path = Path(path)
        if not path.is_file():
            raise InfpError("VGG weights not found", path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        feats = {k: v for k, v in feats.items() if int(k.split(".")[0]) <= max(_TAPS)}
        model.features.load_state_dict(feats)
        return model.eval()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (pred.add(1).div(2) - self.mean) / self.std
        y = (target.add(1).div(2) - self.mean) / self.std
        loss = pred.new_zeros(())
        for i, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if i in _TAPS:
                loss = loss + (x - y.detach()).abs().mean()
        return loss / len(_TAPS)
