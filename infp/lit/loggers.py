"""A CSV logger that survives resuming: Lightning's CSVLogger deletes an existing metrics.csv when it starts."""

from __future__ import annotations

import csv
import logging
import os

from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

log = logging.getLogger(__name__)


def _step(row: dict) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class _KeepingWriter(ExperimentWriter):
    """Appends to an existing metrics.csv (its header is read back) instead of deleting it."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])

    def _check_log_dir_exists(self) -> None:  # the parent deletes metrics.csv here
        pass

    def rewind(self, step: int) -> int:
        """Drop the rows logged at ``step`` or later (pending and on disk); returns how many were on disk."""
        self.metrics = [m for m in self.metrics if int(m.get("step", -1)) < step]
        if not self._fs.isfile(self.metrics_file_path):
            return 0
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        keep = [r for r in rows if _step(r) is not None and _step(r) < step]  # a row cut by a kill goes too
        if len(keep) < len(rows):
            tmp = self.metrics_file_path + ".tmp"
            with self._fs.open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(keep)
            os.replace(tmp, self.metrics_file_path)
        return len(rows) - len(keep)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that keeps ``metrics.csv`` when a run resumes in the same folder.

    :class:`infp.lit.callbacks.RewindLogsOnResume` then calls :meth:`rewind` with the restored step, so
    the file holds every step exactly once: the interrupted run's rows up to its checkpoint, then the
    resumed run's rows (``rewind(0)`` on a fresh start clears rows of an earlier run in the same folder).
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def rewind(self, step: int) -> None:
        self.save()  # rows still pending go to the file first, so that one pass drops all of them
        dropped = self.experiment.rewind(step)
        if dropped:
            log.info("%s: dropped %d rows logged at step >= %d by the interrupted run", self.log_dir, dropped, step)
