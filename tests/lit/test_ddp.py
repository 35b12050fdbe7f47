"""Distributed training: 2 CPU processes (trainer=ddp_cpu: ddp_spawn, gloo) against 1 process with the
doubled batch, on the real stage-1 LightningModule and a deterministic dataset; a multirun with
Lightning's script-relaunching DDP."""

import copy
import csv
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from infp.lit.callbacks import DistinctRankSeeds
from infp.lit.head_imitation import HeadImitation
from infp.models.head_imitation import HeadImitationNet

REPO = Path(__file__).resolve().parents[2]
CONF = str(REPO / "conf")
SIZE = 64


class DeterministicPairs(Dataset):
    """Item i is the same in every process: a random image and a shifted, rescaled copy of it."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + i)
        src = torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1
        drv = torch.roll(src, shifts=(i % 5 - 2, i % 3 - 1), dims=(1, 2)) * 0.9
        mask = torch.zeros(1, SIZE, SIZE)
        mask[:, 16:48, 12:52] = 1
        return {"source": src, "source_masked": src * mask, "driving": drv, "driving_masked": drv * mask,
                "index": torch.tensor(i)}


class PairsData(pl.LightningDataModule):
    """Shuffled. Under DDP Lightning puts in a DistributedSampler (seed PL_GLOBAL_SEED or 0): rank r takes
    items r, r + 2, ... of one permutation. The single process draws the same permutation, so its step k
    takes items 4k..4k+3 of it: the union of the two ranks' step-k batches."""

    def __init__(self, batch_size: int, single: bool) -> None:
        super().__init__()
        self.batch_size, self.single = batch_size, single

    def train_dataloader(self) -> DataLoader:
        ds = DeterministicPairs()
        if self.single:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed)
            return DataLoader(ds, batch_size=self.batch_size, sampler=sampler)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True)


class RecordIndices(pl.Callback):
    """Each rank appends the item indices of its batches to <folder>/rank<r>.txt; rank 0 saves the
    weights after every step (<folder>/step<n>.pt)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.txt"), "a") as f:
            f.write(" ".join(str(int(i)) for i in batch["index"]) + "\n")
        if trainer.global_step == 0:  # a draw from this rank's training random stream
            with open(os.path.join(self.folder, f"draw{trainer.global_rank}.txt"), "w") as f:
                f.write(str(torch.rand(1).item()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0:
            torch.save({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()},
                       os.path.join(self.folder, f"step{trainer.global_step}.pt"))


def _model() -> HeadImitation:
    torch.manual_seed(0)
    net = HeadImitationNet(image_size=SIZE, motion_dim=16, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                           flow_width=8, decoder_res=1, decoder_widths=(8, 8))
    # The losses are means over the batch, so the mean of the ranks' gradients is the full batch's
    # gradient. SGD: Adam would turn float rounding of near-zero gradients into whole steps of +-lr.
    return HeadImitation(net, optimizer=partial(torch.optim.SGD, lr=0.02), w_region=0.0, w_ssim=0.5, w_latent=1e-3,
                         identity_pairs=0, motion_dim=16)


def _trainer(name: str, out: Path, steps: int, folder: Path) -> pl.Trainer:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="stage1", overrides=[f"trainer={name}", f"paths.output_dir={out}"])
    return instantiate(cfg.trainer, max_steps=steps, logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                       callbacks=[DistinctRankSeeds(), RecordIndices(str(folder))])


def _read(folder: Path, rank: int) -> list[list[int]]:
    return [list(map(int, line.split())) for line in (folder / f"rank{rank}.txt").read_text().splitlines()]


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_with_the_doubled_batch(tmp_path):
    steps, per_rank = 4, 2
    pl.seed_everything(7, workers=True)  # as train() does: every rank gets this seed
    start = _model()
    one, two = copy.deepcopy(start), copy.deepcopy(start)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()

    t1 = _trainer("cpu", tmp_path / "o1", steps, tmp_path / "one")
    t1.fit(one, datamodule=PairsData(2 * per_rank, single=True))
    t2 = _trainer("ddp_cpu", tmp_path / "o2", steps, tmp_path / "two")
    assert type(t2.strategy).__name__ == "DDPStrategy" and t2.world_size == 2
    assert t2.strategy._start_method == "spawn" and t2.strategy._process_group_backend == "gloo"
    t2.fit(two, datamodule=PairsData(per_rank, single=False))  # ddp_spawn returns rank 0's weights here

    # each rank saw distinct items, together exactly the single process's batches
    single, r0, r1 = _read(tmp_path / "one", 0), _read(tmp_path / "two", 0), _read(tmp_path / "two", 1)
    assert len(single) == len(r0) == len(r1) == steps
    assert all(sorted(a + b) == sorted(s) and not set(a) & set(b) for a, b, s in zip(r0, r1, single))
    assert len({i for b in r0 + r1 for i in b}) == 2 * per_rank * steps  # no item twice
    # same seed everywhere, yet each rank draws its own noise in training
    assert (tmp_path / "two" / "draw0.txt").read_text() != (tmp_path / "two" / "draw1.txt").read_text()

    def max_diff(a: dict, b: dict) -> float:
        return max((a[k].float() - b[k].float()).abs().max().item() for k in a)

    init = {k: v.detach().clone() for k, v in start.net.state_dict().items()}
    rows = []
    for n in range(1, steps + 1):
        w1, w2 = (torch.load(tmp_path / d / f"step{n}.pt") for d in ("one", "two"))
        rows.append((n, max_diff(w1, init), max_diff(w1, w2)))
    print("\nstep  largest change  largest 1-vs-2-process difference")
    for n, moved, diff in rows:
        print(f"{n:4d}  {moved:14.3e}  {diff:.3e}")
    assert all(moved > 1e-3 for _, moved, _ in rows)  # training moves the weights ...
    # ... after one step identically up to float32 rounding (the mean of the ranks' gradients is the
    # full batch's gradient); later steps may drift a little more where a rounding difference moves a
    # warped sample across a pixel boundary (bilinear sampling has kinks there), still far below the steps
    assert rows[0][2] < 1e-6
    assert all(diff < 1e-2 * moved for _, moved, diff in rows)
    assert max_diff(dict(one.net.state_dict()), dict(two.net.state_dict())) == rows[-1][2]  # weights returned by ddp_spawn


def _train_cli(args, cwd, timeout=900):
    env = dict(os.environ, PYTHONWARNINGS="ignore", INFP_ROOT=str(cwd))
    return subprocess.run([sys.executable, str(REPO / "train" / "stage1.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_multirun_with_script_relaunching_ddp(tmp_path, sample_corpus):
    """start_method popen (strategy ddp) starts the other ranks by running the script again: in a sweep
    they must join each run."""
    sweep = tmp_path / "sweep"
    res = _train_cli(["-m", "experiment=stage1_debug", "trainer=ddp_cpu", "trainer.strategy.start_method=popen", "model.motion_dim=16,32",
                      "trainer.max_steps=4", f"paths.corpus={sample_corpus}", f"hydra.sweep.dir={sweep}",
                      "trainer.enable_progress_bar=false"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert sorted(r["model.motion_dim"] for r in rows) == ["16", "32"]
    assert all(r["status"] == "completed" and float(r["global_step"]) == 4 for r in rows)
    for r in rows:  # rank 1 of each run logged into that run's folder, and no extra sweep was started
        assert (sweep / r["folder"] / "train_ddp_process_1.log").is_file()
    assert len([p for p in sweep.iterdir() if p.is_dir()]) == 2


@pytest.mark.slow
def test_gpu_experiment_with_its_gan_runs_under_ddp(tmp_path, sample_corpus):
    """stage1_gpu_256 (DDP, discriminator with manual optimization), shrunk to 2 CPU processes."""
    run = tmp_path / "run"
    res = _train_cli(["experiment=stage1_gpu_256", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                      "data.size=64", "data.batch_size=2", "data.samples_per_epoch=8", "data.val_pairs_per_clip=1",
                      "data.cache_frames=true", "data.num_workers=0", "model.motion_dim=16", "model.net.feat_channels=16",
                      "model.net.encoder_widths=[8,16]", "model.net.encoder_input=64", "model.net.flow_width=8",
                      "model.net.decoder_res=1", "model.net.decoder_widths=[8,8]", "model.discriminator.base=8",
                      "trainer.max_steps=4", f"paths.corpus={sample_corpus}", f"hydra.run.dir={run}",
                      "trainer.enable_progress_bar=false"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and metrics["val/psnr"] > 5
    assert (run / "train_ddp_process_1.log").is_file()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
