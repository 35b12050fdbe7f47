"""Hydra front end of training (like cli.py for the command line): config -> objects -> fit -> export."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _last_checkpoint(cfg: DictConfig) -> str | None:
    if not cfg.get("resume", False):
        return None
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured LightningModule; returns the final metrics (also written to metrics.json)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    ckpt = _last_checkpoint(cfg)
    if ckpt:
        log.info("resuming from %s", ckpt)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    # A final validation of the end state, so every run reports the same, complete metrics.
    trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    metrics["global_step"] = float(trainer.global_step)
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a hyper-parameter sweeper optimises (``optimized_metric``)."""
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
