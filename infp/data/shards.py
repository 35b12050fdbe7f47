"""Preparation spread over a cluster: shards of a manifest, their merge, and a submitit launcher.

A recording belongs to shard ``shard_of(id, N)`` (a hash of its id: the same on every machine). Every
shard writes its clips into the one corpus folder (on a shared file system) exactly as an unsharded
run would, its log to ``shards/<k>-of-<N>.log.jsonl`` and, when it has gone through all its
recordings, ``shards/<k>-of-<N>.done.json``. ``merge`` then builds ``index.jsonl``,
``train.txt``/``val.txt`` and ``prepare_log.jsonl`` from them: the same clips and index as one
unsharded run. A shard is resumable like any run (finished recordings and clips are kept), so a
failed or killed shard is rerun alone.

``launch`` submits the shards as one job array through submitit: SLURM (``AutoExecutor``), or local
processes (``LocalExecutor``, for a single machine and the tests). The command line is
``infp prepare MANIFEST OUT --shard K/N`` (one shard here), ``--shards N --launcher slurm|local`` and
``infp prepare-merge OUT --shards N``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from infp.data.manifest import load_manifest
from infp.data.prepare import LOG_FILE, SHARDS_DIR, PrepareConfig, prepare, shard_name, shard_of, write_index
from infp.errors import InfpError
from infp.io import atomic_write_text

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "slurm")


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N; raises ValueError with a one-line reason."""
    parts = text.split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected K/N (shard K of N, counted from 0), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"expected K/N with 0 <= K < N, got {text!r}")
    return k, n


def done_marker(out: Path, k: int, n: int) -> Path:
    return Path(out) / SHARDS_DIR / f"{shard_name(k, n)}.done.json"


def shard_log(out: Path, k: int, n: int) -> Path:
    return Path(out) / SHARDS_DIR / f"{shard_name(k, n)}.log.jsonl"


def pending_shards(out: str | Path, n: int) -> list[int]:
    """Shards of ``n`` that have not finished (no completion marker)."""
    return [k for k in range(n) if not done_marker(Path(out), k, n).is_file()]


def run_shard(manifest: str | Path, out: str | Path, cfg: PrepareConfig, k: int, n: int, progress: bool = False) -> dict:
    """One shard (the job of an array): prepare its recordings into ``out``; returns its summary."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return prepare(manifest, out, cfg, progress=progress, shard=(k, n))


def merge(out: str | Path, n: int, manifest: str | Path | None = None) -> dict:
    """index.jsonl, train/val.txt and prepare_log.jsonl of a corpus prepared in ``n`` shards.

    Refuses (one line, nothing written) while a shard has not finished. With ``manifest``, also checks
    that every recording of it is accounted for (prepared, or skipped with a reason in a shard log)."""
    out = Path(out)
    if not out.is_dir():
        raise InfpError("corpus folder not found", out)
    missing = pending_shards(out, n)
    if missing:
        names = ", ".join(f"{k}/{n}" for k in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise InfpError(f"{len(missing)} of {n} shards have not finished ({names}); run them "
                        f"(infp prepare MANIFEST {out} --shard K/{n}) before merging", out)
    shards = [json.loads(done_marker(out, k, n).read_text()) for k in range(n)]
    logs = [shard_log(out, k, n) for k in range(n)]
    lines = [line for p in logs if p.is_file() for line in p.read_text().splitlines() if line.strip()]
    if manifest is not None:
        ids = {r.id for r in load_manifest(manifest)}
        finished = {p.stem for p in (out / "recordings").glob("*.json")}
        logged = {json.loads(line)["recording"] for line in lines}
        lost = sorted(ids - finished - logged)
        if lost:
            raise InfpError(f"{len(lost)} recordings of the manifest are in no shard's output (first: {lost[0]}); "
                            f"were the shards run with another manifest or another N?", out)
    atomic_write_text(out / LOG_FILE, "".join(line + "\n" for line in lines))
    summary = write_index(out)
    summary["shards"] = n
    # the latest outcome of each recording, from the shard logs (a rerun supersedes a failure)
    latest: dict[str, dict] = {}
    for line in lines:
        row = json.loads(line)
        latest[row["recording"]] = row
    summary["processed"] = sum(s["processed"] for s in shards)
    summary["already_done"] = sum(s["already_done"] for s in shards)
    summary["new_clips"] = sum(s["new_clips"] for s in shards)
    summary["reused_clips"] = sum(s["reused_clips"] for s in shards)
    summary["skipped_recordings"] = [{"recording": r, "reason": row["reason"]} for r, row in sorted(latest.items())
                                     if row["status"] != "done"]
    summary["skipped_clips"] = [{"recording": r, **s} for r, row in sorted(latest.items()) if row["status"] == "done"
                                for s in row["skipped"]]
    return summary


@dataclass
class SlurmOptions:
    """Resources of each shard's job on SLURM (submitit ``AutoExecutor`` parameters)."""

    partition: str | None = None
    timeout_min: int = 24 * 60
    mem_gb: float = 16.0
    array_parallelism: int = 256  # shards running at once
    account: str | None = None
    qos: str | None = None


def _executor(launcher: str, folder: Path, cpus: int, slurm: SlurmOptions):
    try:
        import submitit
    except ImportError:
        raise InfpError("running shards needs submitit: pip install -e '.[sweep]' (or run each shard with "
                        "--shard K/N and merge with infp prepare-merge)") from None

    if launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=slurm.timeout_min)
        return ex
    if launcher != "slurm":
        raise InfpError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {"timeout_min": slurm.timeout_min, "cpus_per_task": cpus, "mem_gb": slurm.mem_gb, "tasks_per_node": 1,
              "nodes": 1, "slurm_array_parallelism": slurm.array_parallelism, "name": "infp-prepare"}
    if slurm.partition:
        params["slurm_partition"] = slurm.partition
    extra = {k: v for k, v in (("account", slurm.account), ("qos", slurm.qos)) if v}
    if extra:
        params["slurm_additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def launch(
    manifest: str | Path,
    out: str | Path,
    n: int,
    cfg: PrepareConfig | None = None,
    launcher: str = "local",
    slurm: SlurmOptions | None = None,
    wait: bool = True,
    shards: Sequence[int] | None = None,
) -> dict:
    """Run the unfinished shards of ``n`` as one submitit job array, wait for them and merge.

    Each job runs ``run_shard`` with ``cfg.workers`` worker processes (on SLURM: that many CPUs per
    task). Shards that finished earlier are not submitted again, so the same call after a failure
    reruns only the failed shards. ``wait=False`` returns the job ids right after submission (merge
    later with ``merge``). Raises InfpError naming the shards that failed, after the others finished."""
    cfg = cfg or PrepareConfig()
    slurm = slurm or SlurmOptions()
    manifest, out = Path(manifest).resolve(), Path(out).resolve()
    recs = load_manifest(manifest)  # a broken manifest stops here, before anything is submitted
    out.mkdir(parents=True, exist_ok=True)
    todo = [k for k in (pending_shards(out, n) if shards is None else shards)]
    counts = {k: sum(shard_of(r.id, n) == k for r in recs) for k in todo}
    summary: dict = {"submitted": [], "launcher": launcher}
    if todo:
        ex = _executor(launcher, out / SHARDS_DIR / "submitit", cfg.workers, slurm)
        jobs = ex.map_array(run_shard, [manifest] * len(todo), [out] * len(todo), [cfg] * len(todo), todo, [n] * len(todo))
        summary["submitted"] = [{"shard": f"{k}/{n}", "job": job.job_id, "recordings": counts[k]} for k, job in zip(todo, jobs)]
        for s in summary["submitted"]:
            log.info("shard %s (%d recordings): job %s", s["shard"], s["recordings"], s["job"])
        if not wait:
            return summary
        failed = []
        for k, job in zip(todo, jobs):
            try:
                job.result()
            except Exception as e:  # a job that crashed, was killed or timed out
                first = str(e).strip().splitlines()
                failed.append(f"{k}/{n} (job {job.job_id}: {type(e).__name__}{': ' + first[-1] if first else ''})")
        if failed:
            raise InfpError(f"{len(failed)} of {len(todo)} shards failed: {'; '.join(failed)}; the others are kept: "
                            f"run the same command again to rerun only the failed ones (logs in "
                            f"{out / SHARDS_DIR / 'submitit'})", out)
    merged = merge(out, n, manifest)
    merged.update(summary)
    return merged

