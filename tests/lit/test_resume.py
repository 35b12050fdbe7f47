"""Resume: a stage-1 run killed (SIGKILL) mid-training, after it logged steps past its last checkpoint,
restarts from checkpoints/last.ckpt when the same command is run again and finishes with the right step
count; its CSV and TensorBoard logs have every step exactly once."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _ckpt_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # noqa: BLE001 - not written yet
        return None


def _train_steps(csv_path: Path) -> list[int]:
    try:
        rows = list(csv.DictReader(open(csv_path)))
        return [int(r["step"]) for r in rows if r.get("train/loss")]
    except (OSError, ValueError, KeyError, TypeError):  # not there yet, or a line being written
        return []


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, sample_corpus):
    run, max_steps, every = tmp_path / "run", 16, 4
    cmd = [sys.executable, str(REPO / "train" / "stage1.py"), "experiment=stage1_debug", f"paths.corpus={sample_corpus}",
           f"hydra.run.dir={run}", f"trainer.max_steps={max_steps}", f"callbacks.last_checkpoint.every_n_train_steps={every}",
           "trainer.enable_progress_bar=false"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    last, log_csv = run / "checkpoints" / "last.ckpt", run / "csv" / "metrics.csv"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while proc.poll() is None and time.time() < deadline:
            k = _ckpt_step(last) if last.is_file() else None
            # kill once steps past the checkpoint were logged: they will be trained (and logged) again
            if k is not None and max(_train_steps(log_csv), default=-1) >= k + 1:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    resumed_from = _ckpt_step(last)
    logged_before = _train_steps(log_csv)
    assert 0 < resumed_from < max_steps and not (run / "metrics.json").exists()
    assert max(logged_before) >= resumed_from  # the interrupted run got past its checkpoint

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert f"resuming from {last}" in out and "Restored all states from the checkpoint" in out
    assert f'"global_step": {float(max_steps)}' in (run / "metrics.json").read_text()
    assert _ckpt_step(last) == max_steps

    steps = _train_steps(log_csv)
    print(f"\nkilled after logging step {max(logged_before)} with last.ckpt at step {resumed_from}; resumed; "
          f"{len(steps)} train rows in the CSV log")
    assert steps == list(range(max_steps))  # each step once, in order: none lost, none repeated
    val = [(r["epoch"], r["step"]) for r in csv.DictReader(open(log_csv)) if r["val/psnr"]]
    assert len(val) == len(set(val))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(max_steps))
