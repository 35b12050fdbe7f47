"""Resume: a stage-1 run killed (SIGKILL) mid-training restarts from checkpoints/last.ckpt when the same
command is run again and finishes with the right step count; its CSV log has every step exactly once."""

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
    except Exception:  # noqa: BLE001 - not there yet
        return None


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, sample_corpus):
    run, max_steps = tmp_path / "run", 16
    cmd = [sys.executable, str(REPO / "train" / "stage1.py"), "experiment=stage1_debug", f"paths.corpus={sample_corpus}",
           f"hydra.run.dir={run}", f"trainer.max_steps={max_steps}", "callbacks.last_checkpoint.every_n_train_steps=1",
           "trainer.enable_progress_bar=false"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    last = run / "checkpoints" / "last.ckpt"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while proc.poll() is None and time.time() < deadline:
            step = _ckpt_step(last) if last.is_file() else None
            if step is not None and step >= 5:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    resumed_from = _ckpt_step(last)
    assert 5 <= resumed_from < max_steps and not (run / "metrics.json").exists()

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert "resuming from" in out and "last.ckpt" in out
    metrics = (run / "metrics.json").read_text()
    assert f'"global_step": {float(max_steps)}' in metrics
    assert _ckpt_step(last) == max_steps

    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    train_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    print(f"\nkilled after last.ckpt at step {resumed_from}; resumed; {len(train_steps)} train rows")
    assert train_steps == list(range(max_steps))  # each step once, in order: none lost, none repeated
    val = [(r["epoch"], r["step"]) for r in rows if r["val/psnr"]]
    assert len(val) == len(set(val)) and len(val) >= max_steps // 4  # one validation per epoch of 4 steps
    # the second run trained only the steps after the checkpoint
    assert f"Restored all states from the checkpoint" in out or "Restoring states from the checkpoint" in out
