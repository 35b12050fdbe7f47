"""Sweeps: the summary of a multirun, the Optuna and SLURM configs, and real sweeps of the debug experiment."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from infp.sweep import collect_runs, write_summary

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")


def _run_folder(sweep, num, overrides, metrics=None, status=None, error=None):
    d = sweep / f"{num}_{','.join(overrides)}"
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=stage1_debug", *overrides]))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    if status is not None:
        s = {"num": num, "status": status, "overrides": ["experiment=stage1_debug", *overrides]}
        if error:
            s["error"] = error
        (d / "job_status.json").write_text(json.dumps(s))
    return d


def test_summary_ranks_runs_and_lists_failed_and_unfinished_ones(tmp_path):
    _run_folder(tmp_path, 0, ["model.motion_dim=32", "optim.lr=0.0001"], {"val/psnr": 17.5, "val/l1": 0.1, "train/loss": 3.0, "global_step": 8}, "completed")
    _run_folder(tmp_path, 1, ["model.motion_dim=32", "optim.lr=0.0003"], {"val/psnr": 18.25, "val/l1": 0.09, "global_step": 8}, "completed")
    _run_folder(tmp_path, 2, ["model.motion_dim=64", "optim.lr=0.0001"], None, "failed", "ValueError: Invalid learning rate")
    _run_folder(tmp_path, 3, ["model.motion_dim=64", "optim.lr=0.0003"])  # killed: no status, no metrics
    _run_folder(tmp_path, 4, ["model.motion_dim=16", "optim.lr=0.0003"], {"val/psnr": 16.0, "global_step": 8})  # no status file
    md = write_summary(tmp_path, "val/psnr", "max")
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["run"] for r in rows] == ["1", "0", "4", "2", "3"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "-", "-"]
    assert rows[0]["val/psnr"] == "18.25" and rows[0]["optim.lr"] == "0.0003" and rows[0]["model.motion_dim"] == "32"
    assert rows[3]["status"] == "failed: ValueError: Invalid learning rate" and rows[4]["status"] == "incomplete"
    assert "experiment" not in rows[0] and "train/loss" not in rows[0]  # constant overrides and train metrics left out
    assert list(rows[0])[3:7] == ["model.motion_dim", "optim.lr", "val/psnr", "val/l1"]  # the optimised metric first
    text = (tmp_path / "summary.md").read_text()
    assert "5 runs: 3 completed, 1 failed, 1 incomplete" in text and "`experiment=stage1_debug`" in text
    assert md in text and "Best: run 1" in text
    write_summary(tmp_path, "val/psnr", "min")
    assert [r["run"] for r in csv.DictReader(open(tmp_path / "summary.csv"))][:3] == ["4", "0", "1"]
    assert {r.status for r in collect_runs(tmp_path)} == {"completed", "failed", "incomplete"}


def _compose(config, overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name=config, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("stage, direction", [("stage1", "maximize"), ("stage2", "minimize")])
def test_optuna_configs_compose(stage, direction):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = _compose(stage, [f"hparams_search={stage}_optuna", f"experiment={stage}_debug", "paths.output_dir=/tmp/unused"])
    sw = cfg.hydra.sweeper
    assert sw._target_.endswith("OptunaSweeper") and sw.direction == direction and cfg.hydra.mode.name == "MULTIRUN"
    assert "optim.lr" in sw.params and sw.sampler.seed == cfg.seed
    assert ("model.motion_dim" in sw.params) == (stage == "stage1")  # stage 2 is tied to the latents on disk
    sampler = instantiate(sw.sampler)
    assert type(sampler).__name__ == "TPESampler"


def test_slurm_launcher_follows_the_trainer():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = _compose("stage1", ["hydra/launcher=slurm", "experiment=stage1_gpu_256", "trainer.devices=8",
                              "trainer.num_nodes=2", "hydra.launcher.partition=gpu", "paths.output_dir=/tmp/unused"])
    la = cfg.hydra.launcher
    assert la._target_.endswith("SlurmLauncher") and la.partition == "gpu"
    assert (la.nodes, la.gpus_per_node, la.tasks_per_node) == (2, 8, 8)
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true" and cfg.trainer.precision == "bf16-mixed"
    multinode = _compose("stage1", ["hydra/launcher=slurm", "trainer=multinode", "paths.output_dir=/tmp/unused"])
    assert (multinode.hydra.launcher.nodes, multinode.hydra.launcher.tasks_per_node) == (4, 8)


def test_sweep_keys_reach_the_model():
    cfg = _compose("stage1", ["experiment=stage1_debug", "model.motion_dim=32", "optim.lr=3e-4", "paths.output_dir=/tmp/unused"])
    model = instantiate(cfg.model)
    assert model.net.motion_dim == 32 and model.hparams.motion_dim == 32
    assert model.configure_optimizers().param_groups[0]["lr"] == 3e-4
    cfg = _compose("stage1", ["experiment=stage1_debug", "model.net.motion_dim=24", "paths.output_dir=/tmp/unused"])
    with pytest.raises((InstantiationException, ValueError), match="model.motion_dim=16 but the network's motion_dim is 24"):
        instantiate(cfg.model)
    cfg = _compose("stage2", ["experiment=stage2_debug", "optim.lr=1e-3", "paths.output_dir=/tmp/unused"])
    assert instantiate(cfg.model).configure_optimizers().param_groups[0]["lr"] == 1e-3


def _train_cli(stage, args, cwd, timeout=600):
    env = dict(os.environ, PYTHONWARNINGS="ignore", INFP_ROOT=str(cwd))
    return subprocess.run([sys.executable, str(REPO / "train" / f"{stage}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_multirun_writes_runs_and_a_summary_with_the_failed_run(tmp_path, sample_corpus):
    sweep = tmp_path / "sweep"
    res = _train_cli("stage1", ["-m", "experiment=stage1_debug", "optim.lr=3e-4,-1", "trainer.max_steps=2",
                                f"paths.corpus={sample_corpus}", f"hydra.sweep.dir={sweep}",
                                "trainer.enable_progress_bar=false"], tmp_path)
    assert res.returncode != 0  # a failed run fails the sweep ...
    rows = list(csv.DictReader(open(sweep / "summary.csv")))  # ... but the summary is there
    assert [(r["run"], r["optim.lr"], r["status"].split(":")[0]) for r in rows] == [("0", "0.0003", "completed"), ("1", "-1", "failed")]
    assert "Invalid learning rate" in rows[1]["status"] and float(rows[0]["val/psnr"]) > 5
    run0 = sweep / rows[0]["folder"]
    for name in ("config_resolved.yaml", "metrics.json", "checkpoints/last.ckpt", "checkpoint/model.safetensors", "csv/metrics.csv"):
        assert (run0 / name).is_file(), name
    assert list((run0 / "tensorboard").glob("events.out.tfevents.*"))
    assert yaml.safe_load((run0 / "config_resolved.yaml").read_text())["model"]["optimizer"]["lr"] == 3e-4


@pytest.mark.slow
def test_optuna_sweep_of_the_debug_experiment(tmp_path, sample_corpus):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    res = _train_cli("stage1", ["hparams_search=stage1_optuna", "experiment=stage1_debug", "hydra.sweeper.n_trials=2",
                                "trainer.max_steps=2", f"paths.corpus={sample_corpus}", f"hydra.sweep.dir={sweep}",
                                "trainer.enable_progress_bar=false"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    best = max(float(r["val/psnr"]) for r in rows)
    assert results["best_value"] == pytest.approx(best) and set(results["best_params"]) >= {"optim.lr", "model.motion_dim"}
    assert float(rows[0]["val/psnr"]) == pytest.approx(best)
