"""Callbacks: export the network as a safetensors checkpoint folder; last.ckpt for resuming; logs that survive a resume."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

log = logging.getLogger(__name__)

DISCRIMINATOR_FILE = "discriminator.safetensors"
"""Beside an exported stage-1 network: its discriminator's weights (``model.init_from`` loads them too)."""


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
        disc = getattr(pl_module, "discriminator", None)
        if disc is not None:  # so that a run started from this folder (model.init_from) keeps its critic
            from safetensors.torch import save_file

            from infp.io.atomic import atomic_output

            state = {k: v.detach().contiguous().cpu() for k, v in disc.state_dict().items()}
            with atomic_output(self.folder / DISCRIMINATOR_FILE) as tmp:
                save_file(state, str(tmp))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._export(trainer, pl_module)
        log.info("exported %s", self.folder)


class LastCheckpoint(pl.Callback):
    """``<dirpath>/last.ckpt`` every ``every_n_train_steps`` optimizer steps and when fitting ends.

    This is what a rerun of the same command resumes from (``resume: true``), so the steps lost to a crash
    are at most ``every_n_train_steps``. It is written to a temporary file and renamed, so a kill during
    the write leaves the previous one intact; it is always overwritten in place (no ``last-v1.ckpt``), and
    a finished run's file holds the final step, so rerunning a finished run trains no further.
    Only public Trainer API is used (``save_checkpoint``, ``global_step``, ``strategy.barrier``).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 250) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self._saved_at: int | None = None  # global step of the last save by this process

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def _save(self, trainer: pl.Trainer) -> None:
        tmp = self.dirpath / ".last.ckpt.partial"
        trainer.save_checkpoint(tmp)  # every rank takes part; rank zero writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("LastCheckpoint")
        self._saved_at = trainer.global_step

    def _may_save(self, trainer: pl.Trainer) -> bool:
        return (trainer.global_step > 0 and trainer.global_step != self._saved_at and not trainer.fast_dev_run
                and not trainer.sanity_checking)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        every = self.every_n_train_steps
        if every and trainer.global_step % every == 0 and self._may_save(trainer):
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._may_save(trainer):
            self._save(trainer)


class RewindLogsOnResume(pl.Callback):
    """Keep the logs consistent with the checkpoint a run resumes from.

    A run killed after its last checkpoint logged steps that the resumed run trains again. Before the
    first batch this drops them: loggers with a ``rewind(step)`` method (``ResumableCSVLogger``) lose the
    rows at or after the step the loggers are at, and TensorBoard purges those events (``purge_step``).
    A fresh start rewinds to 0 (rows of an earlier run in the same folder go).
    """

    def __init__(self) -> None:
        self._done = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._done = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if self._done:
            return
        self._done = True
        # the step this batch will be logged at (Lightning adjusts it after a restore, before the first batch)
        step = int(trainer.fit_loop.epoch_loop._batches_that_stepped)
        for lg in trainer.loggers:
            if hasattr(lg, "rewind"):
                lg.rewind(step)
            elif isinstance(lg, TensorBoardLogger) and step > 0 and trainer.is_global_zero:
                kwargs = getattr(lg, "_kwargs", None)
                if isinstance(kwargs, dict):  # a new writer that drops the events at step >= ``step``
                    if getattr(lg, "_experiment", None) is not None:
                        lg._experiment.close()
                        lg._experiment = None
                    kwargs["purge_step"] = step


class DistinctRankSeeds(pl.Callback):
    """With several ranks, give each its own random stream for training (diffusion timesteps and noise,
    condition dropout, data drawn in the main process).

    ``seed_everything`` seeds every rank alike, which keeps the initial weights equal, but then every
    rank draws the same timesteps and noise in every step. At the start of training each rank's torch
    generator is reseeded from the common seed and its rank (reproducible; a no-op on one process).
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            torch.manual_seed((torch.initial_seed() + 1_000_003 * trainer.global_rank) % 2**63)
