"""The networks' image convention: RGB uint8 (H, W, 3) <-> float (3, H, W) in [-1, 1].

Training data and the inference runtime both convert with these, so both sides agree on the exact
rounding (a rendered frame goes back to uint8 the same way in validation and in a render).
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [-1, 1] -> RGB uint8 (H, W, 3)."""
    return tensor.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()
