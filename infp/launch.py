"""Hydra front end of training (like cli.py for the command line): config -> objects -> fit -> export."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import hydra
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from infp.io.atomic import atomic_write_text

log = logging.getLogger(__name__)


def _last_checkpoint(cfg: DictConfig) -> str | None:
    """The newest of ``checkpoints/last.ckpt`` and a SLURM pre-emption checkpoint (``hpc_ckpt_*.ckpt``)."""
    if not cfg.get("resume", False):
        return None
    out = Path(cfg.paths.output_dir)
    found = [p for p in [out / "checkpoints" / "last.ckpt", *out.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


# Set by Lightning's DDP launcher in the launching process; left set, the next trainer of a sweep in
# this process would take LOCAL_RANK as "processes are started externally" and wait for ranks forever.
_DIST_ENV = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def _distributed_state_restored() -> Iterator[None]:
    """Run one training as if alone in the process: afterwards the process group Lightning leaves up is
    destroyed and the launcher's environment variables are reset (several runs of a sweep, one process)."""
    saved = {k: os.environ.get(k) for k in _DIST_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _trusted_checkpoint(trainer: pl.Trainer, ckpt: str | None) -> dict:
    """Resume from this run's own last.ckpt with a full load: checkpoints of older versions hold
    OmegaConf containers in their hyper-parameters, which torch.load(weights_only=True) refuses."""
    if ckpt is None or "weights_only" not in inspect.signature(trainer.fit).parameters:
        return {}
    return {"weights_only": False}


def _checkpoint_step(path: Path) -> int:
    """``global_step`` of a Lightning checkpoint (memory-mapped: the weights are not read). With a spawn
    strategy (``ddp_spawn``) training runs in child processes and the parent's trainer stays at step 0."""
    if not path.is_file():
        return 0
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False).get("global_step", 0))


@contextmanager
def _ddp_relaunch_as_single_run() -> Iterator[None]:
    """Make Lightning's DDP launcher work inside a Hydra multirun.

    For ranks > 0 Lightning (strategy ``ddp`` on one machine) starts ``sys.argv`` again with
    ``hydra.run.dir=<HydraConfig run.dir>``. In a multirun ``sys.argv`` is the whole sweep (``-m a=1,2``)
    and run.dir is not this run's folder: the other ranks would start a sweep of their own. While the
    trainer runs, ``sys.argv`` holds this run's overrides and run.dir its folder, so every rank joins it.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import read_write
    except ImportError:  # pragma: no cover - hydra is a dependency
        yield
        return
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hc = HydraConfig.get()
    argv = list(sys.argv)
    sys.argv = [argv[0], *hc.overrides.task]
    with read_write(hc):
        hc.run.dir = str(hc.runtime.output_dir)
    try:
        yield
    finally:
        sys.argv = argv


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured LightningModule; returns the final metrics (also written to metrics.json)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # under SLURM every task runs this function
        atomic_write_text(out / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # plain lists and dicts, not OmegaConf containers: the hyper-parameters stored in checkpoints must load
    # with torch.load(weights_only=True), which Lightning uses to resume
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    ckpt = _last_checkpoint(cfg)
    if ckpt:
        log.info("resuming from %s", ckpt)
    with _ddp_relaunch_as_single_run(), _distributed_state_restored():
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, **_trusted_checkpoint(trainer, ckpt))
        # A final validation of the end state, so every run reports the same, complete metrics.
        trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    metrics["global_step"] = float(trainer.global_step or _checkpoint_step(out / "checkpoints" / "last.ckpt"))
    if trainer.is_global_zero:
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a hyper-parameter sweeper optimises (``optimized_metric``)."""
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
