"""Where the starter checkpoints live (committed in the repository under ``weights/``)."""

from __future__ import annotations

import os
from pathlib import Path

from infp.errors import InfpError
from infp.paths import REPO_ROOT


def weights_dir() -> Path:
    """$INFP_WEIGHTS, else the repository's ``weights/`` folder."""
    return Path(os.environ.get("INFP_WEIGHTS", REPO_ROOT / "weights"))


def starter_checkpoint(stage: str) -> Path:
    """The starter checkpoint folder of ``stage`` ('stage1' or 'stage2')."""
    folder = weights_dir() / stage
    if not (folder / "model.safetensors").is_file():
        raise InfpError(f"no starter {stage} weights here; pass --checkpoint DIR or set INFP_WEIGHTS", folder)
    return folder
