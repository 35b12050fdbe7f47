"""Hydra front end of training (like cli.py for the command line): config -> objects -> fit -> export.

torch and Lightning are imported where they are used, not with this module: the data check of
:func:`check_data` then answers a run without data (a fresh clone, a mistyped path) in a second,
and ``python train/stage1.py --cfg job`` prints the config without loading them.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import hydra
from omegaconf import DictConfig, OmegaConf

from infp.errors import InfpError

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from infp.data.clips import ClipIndex

log = logging.getLogger(__name__)

SAMPLE_CORPUS = Path("data/sample_corpus")
"""Where ``make sample-corpus`` (``infp sample-corpus``) writes the sample corpus, relative to the repository."""


class MissingDataError(InfpError):
    """The corpus (or the stage-2 latents) a training run reads is not there.

    Every run of a sweep would fail the same way, so the training scripts stop at the first one with this
    one line, which names the folder and the command that fills it."""


def _corpus_remedy(root: Path) -> str:
    """The command that creates the corpus folder a run was pointed at."""
    if root.resolve() == SAMPLE_CORPUS.resolve():
        return f"create the sample corpus with `make sample-corpus` (or `infp sample-corpus --out {SAMPLE_CORPUS}`)"
    return (f"create it with `infp prepare MANIFEST {root}` from your recordings, "
            f"or put the sample corpus there with `infp sample-corpus --out {root}`")


def require_corpus(root: Path, min_frames: int = 2) -> ClipIndex:
    """The corpus's clip index, with train and val clips, or a MissingDataError naming the folder and the
    command that fills it. Reads only ``index.jsonl`` (well under a second for 100k clips)."""
    if not (root / "index.jsonl").is_file():
        state = ("does not exist" if not root.exists() else "is not a folder" if not root.is_dir()
                 else "is empty" if not any(root.iterdir()) else "has no index.jsonl")
        raise MissingDataError(f"no clip corpus here (the folder {state}); {_corpus_remedy(root)}", root)
    from infp.data.clips import ClipIndex

    index = ClipIndex(root)
    for split in ("train", "val"):
        if not any(e.split == split and e.n_frames >= min_frames for e in index.entries):
            raise MissingDataError(
                f"the corpus has no {split!r} clips of at least {min_frames} frames ({len(index)} clips in all); "
                f"give some recordings `split: {split}` in the manifest and run `infp prepare` again", root)
    return index


def require_motion(root: Path, motion_dir: Path, index: ClipIndex) -> None:
    """Stage 2 reads stage-1 latents: without any for a split, stop with the extract-motion command."""
    on_disk = {n[:-4] for n in os.listdir(motion_dir) if n.endswith(".npy")} if motion_dir.is_dir() else set()
    for split in ("train", "val"):
        if not any(e.split == split and e.self_voice and e.id in on_disk for e in index.entries):
            out = "" if motion_dir == root / "motion" else f" --out {motion_dir}"
            raise MissingDataError(
                f"no motion latents of the corpus's {split!r} clips here; write them with "
                f"`infp extract-motion {root}{out}` (the starter stage-1 weights; `--checkpoint DIR` for yours)",
                motion_dir)


def check_data(data: DictConfig) -> None:
    """Check the folders the ``data`` config names before anything is built or written.

    Without it a missing corpus surfaces inside ``trainer.fit`` as a long traceback, after the model is
    built. Stage 2 (a config with ``motion_dir``) also needs the stage-1 latents of the clips."""
    root = Path(os.path.normpath(str(data.root)))
    if "motion_dir" not in data:
        require_corpus(root)
        return
    index = require_corpus(root, min_frames=int(data.get("window", 4)) + 1)
    motion_dir = Path(str(data.motion_dir)) if data.motion_dir is not None else root / "motion"
    require_motion(root, motion_dir, index)


def _last_checkpoint(cfg: DictConfig) -> str | None:
    """The newest of ``checkpoints/last.ckpt`` and a SLURM pre-emption checkpoint (``hpc_ckpt_*.ckpt``)."""
    if not cfg.get("resume", False):
        return None
    out = Path(cfg.paths.output_dir)
    found = [p for p in [out / "checkpoints" / "last.ckpt", *out.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


# Set by Lightning's DDP launcher in the launching process; left set, the next trainer of a sweep in
# this process would take LOCAL_RANK as "processes are started externally" and wait for ranks forever.
_DIST_ENV = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def _distributed_state_restored() -> Iterator[None]:
    """Run one training as if alone in the process: afterwards the process group Lightning leaves up is
    destroyed and the launcher's environment variables are reset (several runs of a sweep, one process)."""
    import torch

    saved = {k: os.environ.get(k) for k in _DIST_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _trusted_checkpoint(trainer: pl.Trainer, ckpt: str | None) -> dict:
    """Resume from this run's own last.ckpt with a full load: checkpoints of older versions hold
    OmegaConf containers in their hyper-parameters, which torch.load(weights_only=True) refuses."""
    if ckpt is None or "weights_only" not in inspect.signature(trainer.fit).parameters:
        return {}
    return {"weights_only": False}


def _checkpoint_step(path: Path) -> int:
    """``global_step`` of a Lightning checkpoint (memory-mapped: the weights are not read). With a spawn
    strategy (``ddp_spawn``) training runs in child processes and the parent's trainer stays at step 0."""
    if not path.is_file():
        return 0
    import torch

    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False).get("global_step", 0))


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


def _fill_from_model(datamodule, model) -> None:
    """Data settings that are facts of the model, taken from it when the config leaves them null: the
    past audio a stage-2 window carries is what the audio encoder's receptive field needs."""
    net = getattr(model, "net", None)
    if getattr(datamodule, "audio_context", 0) is None and net is not None:
        datamodule.audio_context = int(net.audio_context)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured LightningModule; returns the final metrics (also written to metrics.json).

    The data the config names is checked first (:func:`check_data`: the corpus, the stage-2 latents), so a
    run without data stops with a MissingDataError before torch is loaded or any file written."""
    check_data(cfg.data)
    import pytorch_lightning as pl
    import torch
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from infp.io.atomic import atomic_write_text

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # under SLURM every task runs this function
        atomic_write_text(out / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # plain lists and dicts, not OmegaConf containers: the hyper-parameters stored in checkpoints must load
    # with torch.load(weights_only=True), which Lightning uses to resume
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    _fill_from_model(datamodule, model)
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    ckpt = _last_checkpoint(cfg)
    if ckpt:
        log.info("resuming from %s", ckpt)
    with _ddp_relaunch_as_single_run(), _distributed_state_restored():
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, **_trusted_checkpoint(trainer, ckpt))
        # A final validation of the end state, so every run reports the same, complete metrics.
        trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    metrics["global_step"] = float(trainer.global_step or _checkpoint_step(out / "checkpoints" / "last.ckpt"))
    if trainer.is_global_zero:
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a hyper-parameter sweeper optimises (``optimized_metric``)."""
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_task(cfg: DictConfig) -> float | None:
    """The body of ``train/stage*.py`` under ``@hydra.main``: train, then return the sweep objective.

    Hydra reports an exception from here as a long traceback. A user error (InfpError) is one line on
    stderr and exit status 1 instead: always when data is missing (every run of a sweep would fail alike,
    so a sweep stops at its first run), and for other user errors outside a sweep; inside a sweep those
    fail only their own run, which the sweep summary lists with its message."""
    try:
        return objective(cfg, train(cfg))
    except InfpError as e:
        if _in_multirun() and not isinstance(e, MissingDataError):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(1)
