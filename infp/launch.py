"""Hydra front end of training (like cli.py for the command line): config -> objects -> fit -> export."""

from __future__ import annotations

import json
import logging
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
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    ckpt = _last_checkpoint(cfg)
    if ckpt:
        log.info("resuming from %s", ckpt)
    with _ddp_relaunch_as_single_run():
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        # A final validation of the end state, so every run reports the same, complete metrics.
        trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    metrics["global_step"] = float(trainer.global_step)
    if trainer.is_global_zero:
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a hyper-parameter sweeper optimises (``optimized_metric``)."""
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
