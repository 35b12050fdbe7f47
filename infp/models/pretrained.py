"""Checkpoint folders: ``config.yaml`` (constructor arguments) + ``model.safetensors`` (weights).

A model is rebuilt from its config alone; weights are never unpickled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from safetensors import SafetensorError
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
        """Rebuild the model from ``folder/config.yaml`` and load ``folder/model.safetensors``.

        Every way a checkpoint folder can be broken (a file missing, YAML that does not parse, a config
        the network rejects, truncated or foreign weights, shapes or names that do not match the config,
        non-finite values) raises one InfpError naming the file at fault, never a library traceback.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise InfpError("checkpoint folder not found" if not folder.exists() else
                            f"is a file; a checkpoint is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}", folder)
        cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for need in (cfg_path, w_path):
            if not need.is_file():
                raise InfpError(f"missing (a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE})", need)
        model = cls._from_config(cfg_path)
        model.load_state_dict(_read_weights(w_path, model, map_location))
        return model.eval()

    @classmethod
    def _from_config(cls: type[T], cfg_path: Path) -> T:
        """The untrained network that ``config.yaml`` describes (InfpError naming the file if it cannot)."""
        try:
            doc = yaml.safe_load(cfg_path.read_text())
        except yaml.MarkedYAMLError as e:
            where = f" at line {e.problem_mark.line + 1}" if e.problem_mark is not None else ""
            raise InfpError(f"cannot parse: {e.problem or e.context}{where}", cfg_path) from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise InfpError(f"cannot parse ({_first_line(e)})", cfg_path) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise InfpError("not a checkpoint config (needs a 'kind' and a 'config' mapping)", cfg_path)
        if doc.get("kind") != cls.kind:
            raise InfpError(f"checkpoint holds a {doc.get('kind')!r}, expected {cls.kind!r}", cfg_path.parent)
        try:
            return cls(**doc["config"])
        except Exception as e:  # noqa: BLE001  (any value a hand-edited config may hold)
            raise InfpError(f"config does not describe a {cls.kind} network ({_first_line(e)})", cfg_path) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_weights(w_path: Path, model: torch.nn.Module, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """The tensors of ``w_path``, checked against ``model`` before loading.

    ``load_state_dict`` would report a shape mismatch as a multi-page RuntimeError and load NaNs
    silently (they render as black frames), so names, shapes and values are compared here first.
    """
    try:
        state = load_file(str(w_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InfpError(f"cannot read weights: truncated, corrupt or not a safetensors file ({_first_line(e)})",
                        w_path) from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise InfpError(f"weights do not match {CONFIG_FILE}: {len(missing)} missing (e.g. {missing[:2]}), "
                        f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})", w_path)
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise InfpError(f"weights do not match {CONFIG_FILE}: {k} is {tuple(state[k].shape)} here but "
                        f"{tuple(own[k].shape)} in the network the config describes ({len(wrong)} tensors differ)", w_path)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InfpError(f"weights contain NaN or infinite values ({len(bad)} tensors, e.g. {bad[0]})", w_path)
    return state


def checkpoint_id(folder: str | Path) -> str:
    """Short content hash of a checkpoint's weights (to tag derived data such as motion latents)."""
    h = hashlib.sha1()
    with open(Path(folder) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
