"""Callbacks: export the network as a safetensors checkpoint folder during and after training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class ExportPretrained(pl.Callback):
    """Save ``pl_module.net`` with ``save_pretrained`` every ``every_n_steps`` and at the end of fitting."""

    def __init__(self, folder: str | Path, every_n_steps: int = 500) -> None:
        self.folder = Path(folder)
        self.every_n_steps = every_n_steps

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: round(float(v), 5) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        extra = {"training": {"global_step": int(trainer.global_step), "val_metrics": metrics,
                              "hparams": {k: v for k, v in dict(pl_module.hparams).items() if isinstance(v, (int, float, str, bool, type(None)))}}}
        pl_module.net.save_pretrained(self.folder, extra=extra)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._export(trainer, pl_module)
        log.info("exported %s", self.folder)
