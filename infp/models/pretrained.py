"""Checkpoint folders: ``config.yaml`` (constructor arguments) + ``model.safetensors`` (weights).

A model is rebuilt from its config alone; weights are never unpickled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from safetensors.torch import load_file, save_file

from infp.errors import InfpError
from infp.io.atomic import atomic_dir

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"

T = TypeVar("T", bound="Pretrained")


class Pretrained(torch.nn.Module):
    """Base for networks saved as checkpoint folders; subclasses store their kwargs in ``self.config``."""

    config: dict[str, Any]
    kind: str = "model"

    def save_pretrained(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.yaml`` and ``model.safetensors`` into ``folder`` (atomically)."""
        folder = Path(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        doc = {"kind": self.kind, "config": dict(self.config), **(extra or {})}
        with atomic_dir(folder) as tmp:
            save_file(state, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(yaml.safe_dump(doc, sort_keys=False))
        return folder

    @classmethod
    def from_pretrained(cls: type[T], folder: str | Path, map_location: str | torch.device = "cpu") -> T:
        """Rebuild the model from ``folder/config.yaml`` and load ``folder/model.safetensors``."""
        folder = Path(folder)
        cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise InfpError(f"not a checkpoint folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})", folder)
        doc = yaml.safe_load(cfg_path.read_text()) or {}
        if doc.get("kind") != cls.kind:
            raise InfpError(f"checkpoint holds a {doc.get('kind')!r}, expected {cls.kind!r}", folder)
        model = cls(**doc["config"])
        state = load_file(str(w_path), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InfpError(f"weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})", folder)
        return model.eval()


def checkpoint_id(folder: str | Path) -> str:
    """Short content hash of a checkpoint's weights (to tag derived data such as motion latents)."""
    h = hashlib.sha1()
    with open(Path(folder) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
