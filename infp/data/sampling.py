"""Random streams for datasets that draw their samples at random (stage-1 pairs, stage-2 windows).

Such datasets ignore the index they are given, so Lightning's DistributedSampler, which hands every
rank distinct indices, does not by itself make the ranks see distinct samples: what they see depends on
the random stream. PyTorch seeds each DataLoader worker differently (base seed + worker id), but
``seed_everything(seed)`` gives every rank the same global seed, so with ``num_workers=0`` (or workers
whose base seeds agree) all ranks would draw the same pairs. :func:`sample_rng` mixes the rank in.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def distributed_rank() -> int:
    """This process's global rank: from torch.distributed when initialised, else the launcher's variables."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    try:
        from lightning_fabric.utilities.rank_zero import rank_zero_only

        rank = getattr(rank_zero_only, "rank", None)
        if rank is not None:
            return int(rank)
    except ImportError:  # pragma: no cover - Lightning is a dependency
        pass
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def sample_rng() -> np.random.Generator:
    """A generator for one random sample: a draw from torch's global generator (distinct per draw and per
    DataLoader worker, and reproducible under ``seed_everything``) combined with the distributed rank."""
    return np.random.default_rng([int(torch.randint(0, 2**31 - 1, (1,)).item()), distributed_rank()])
