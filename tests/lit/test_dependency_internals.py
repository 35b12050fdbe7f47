"""The few private internals of pytorch-lightning that infp still relies on, checked by name.

Lightning has no public way to (1) keep an existing metrics.csv when a CSV logger starts, (2) read the
step the next batch is logged at after a restore, or (3) make TensorBoard purge the events of steps a
resumed run trains again. ``infp.lit.loggers`` and ``infp.lit.callbacks`` use these; setup.cfg bounds
the version above. When a new Lightning release moves one of them, this test names it and the place
that needs a change, instead of a resumed run silently logging twice or losing its metrics.
"""

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


def _need(obj, name: str, user: str) -> None:
    assert hasattr(obj, name), (f"pytorch-lightning {pl.__version__} no longer has {type(obj).__name__ if not isinstance(obj, type) else obj.__name__}"
                                f".{name}; {user} depends on it: adapt it and the version bound in setup.cfg")


def test_csv_writer_hook_that_deletes_metrics_still_exists(tmp_path):
    _need(ExperimentWriter, "_check_log_dir_exists", "infp.lit.loggers._KeepingWriter (keeps metrics.csv on resume)")
    log_dir = tmp_path / "csv"
    log_dir.mkdir()
    (log_dir / "metrics.csv").write_text("step,loss\n0,1.0\n")
    ExperimentWriter(str(log_dir))  # the parent class still deletes the file: the override is still needed
    assert not (log_dir / "metrics.csv").exists()
    from infp.lit.loggers import _KeepingWriter

    (log_dir / "metrics.csv").write_text("step,loss\n0,1.0\n")
    kept = _KeepingWriter(str(log_dir))
    assert (log_dir / "metrics.csv").read_text() == "step,loss\n0,1.0\n" and kept.metrics_keys == ["step", "loss"]


def test_logged_step_counter_and_tensorboard_writer_arguments_still_exist(tmp_path):
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    _need(trainer.fit_loop.epoch_loop, "_batches_that_stepped", "infp.lit.callbacks.RewindLogsOnResume")
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == 0
    tb = TensorBoardLogger(str(tmp_path), name="tb")
    _need(tb, "_kwargs", "infp.lit.callbacks.RewindLogsOnResume (purge_step)")
    _need(tb, "_experiment", "infp.lit.callbacks.RewindLogsOnResume (reopens the writer)")
    assert isinstance(tb._kwargs, dict)
