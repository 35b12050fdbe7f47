"""Sweep summaries: a Hydra callback that tabulates the runs of a multirun.

Every run of a sweep (``python train/stage1.py -m ...``, an Optuna search, a SLURM array) has its own
folder with ``.hydra/overrides.yaml``, ``config_resolved.yaml``, checkpoints, logs and, once finished,
``metrics.json`` (the final validation). :class:`SweepSummary` (``hydra.callbacks`` in ``conf/stage*.yaml``)

* at the end of each run records ``job_status.json`` in its folder (completed or failed, the error);
* after each run and at the end of the sweep writes ``summary.md`` and ``summary.csv`` in the sweep folder:
  one row per run with its overrides, status and final metrics, best first by ``optimized_metric``
  (``optimized_mode``), and logs the table. Failed runs, and runs that never finished (killed), are
  listed as such at the bottom.

``python -m infp.sweep SWEEP_DIR [--metric val/psnr --mode max]`` rebuilds the summary of any sweep folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"
METRICS_FILE = "metrics.json"


@dataclass
class RunRow:
    num: int
    folder: Path
    status: str                      # completed | failed | incomplete
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def _is_rank_zero() -> bool:
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if int(os.environ.get(key, "0") or 0) != 0:
            return False
    return True


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _split_override(s: str) -> tuple[str, str]:
    key, _, value = s.partition("=")
    return key.lstrip("+~"), value


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def collect_runs(sweep_dir: str | Path) -> list[RunRow]:
    """One row per run folder under ``sweep_dir`` (a folder with ``.hydra/overrides.yaml``)."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for ov_file in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        folder = ov_file.parent.parent
        status = _read_yaml(folder / STATUS_FILE) or {}  # JSON is YAML
        overrides = status.get("overrides") or _read_yaml(ov_file) or []
        num = status.get("num")
        if num is None:
            hydra_cfg = _read_yaml(folder / ".hydra" / "hydra.yaml") or {}
            num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
        if num is None:  # the run folder's name starts with the job number (hydra.sweep.subdir)
            m = re.match(r"(\d+)(_|$)", folder.relative_to(sweep_dir).parts[0]) if folder != sweep_dir else None
            num = int(m.group(1)) if m else None
        metrics_path = folder / METRICS_FILE
        metrics = {}
        if metrics_path.is_file():
            try:
                metrics = {k: float(v) for k, v in json.loads(metrics_path.read_text()).items()}
            except (ValueError, TypeError, AttributeError):
                metrics = {}
        state = status.get("status") or ("completed" if metrics else "incomplete")
        if state == "completed" and not metrics:
            state = "failed"
        rows.append(RunRow(num=int(num) if num is not None else -1, folder=folder, status=state,
                           overrides=dict(_split_override(o) for o in overrides), metrics=metrics,
                           error=status.get("error", "") if state == "failed" else ""))
    return rows


def rank_runs(rows: list[RunRow], metric: str | None, mode: str = "min") -> list[RunRow]:
    """Completed runs with the metric, best first; then the others by run number."""
    def has(r: RunRow) -> bool:
        return r.status == "completed" and metric is not None and math.isfinite(r.metrics.get(metric, math.nan))

    scored = sorted((r for r in rows if has(r)), key=lambda r: r.metrics[metric], reverse=(mode == "max"))
    return scored + sorted((r for r in rows if not has(r)), key=lambda r: (r.status != "completed", r.num))


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.5g}"


def varying_overrides(rows: list[RunRow]) -> list[str]:
    """The override keys whose values differ between runs (all of them for a single run)."""
    keys = sorted({k for r in rows for k in r.overrides})
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({r.overrides.get(k) for r in rows}) > 1]


def common_overrides(rows: list[RunRow]) -> list[str]:
    """``key=value`` of the overrides every run shares."""
    keys = set(varying_overrides(rows))
    return sorted({f"{k}={v}" for r in rows for k, v in r.overrides.items() if k not in keys}) if len(rows) > 1 else []


def summary_table(rows: list[RunRow], metric: str | None, mode: str, sweep_dir: Path,
                  metric_prefixes: tuple[str, ...] = ("val/",), extra_metrics: tuple[str, ...] = ("global_step",),
                  precise: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the summary: rank, run, status, overrides, metrics (the optimised one first), folder.

    Metrics are rounded to 5 significant digits unless ``precise``."""
    fmt = repr if precise else _fmt
    ranked = rank_runs(rows, metric, mode)
    keys = varying_overrides(rows)
    names = sorted({k for r in rows for k in r.metrics if k.startswith(metric_prefixes)})
    if metric in names:
        names.remove(metric)
    if metric:
        names.insert(0, metric)
    names += [k for k in extra_metrics if any(k in r.metrics for r in rows)]
    header = ["rank", "run", "status", *keys, *names, "folder"]
    table = []
    rank = 0
    for r in ranked:
        ok = r.status == "completed" and metric is not None and metric in r.metrics
        rank += ok
        cells = [str(rank) if ok else "-", str(r.num), r.status if not r.error else f"{r.status}: {r.error}"]
        cells += [r.overrides.get(k, "") for k in keys]
        cells += [fmt(r.metrics[n]) if n in r.metrics else "" for n in names]
        try:
            cells.append(str(r.folder.relative_to(sweep_dir)))
        except ValueError:
            cells.append(str(r.folder))
        table.append(cells)
    return header, table


def to_markdown(header: list[str], table: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *table]]
    widths = [max(len(row[i]) for row in esc) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(esc[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, esc[1:])])


def write_summary(sweep_dir: str | Path, metric: str | None, mode: str = "min") -> str:
    """Write ``summary.md`` and ``summary.csv`` in ``sweep_dir``; returns the markdown table."""
    sweep_dir = Path(sweep_dir)
    rows = collect_runs(sweep_dir)
    header, table = summary_table(rows, metric, mode, sweep_dir)
    md = to_markdown(header, table)
    n_ok = sum(r.status == "completed" for r in rows)
    best = next((t for t in table if t[0] == "1"), None)
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{len(rows)} runs: {n_ok} completed, {sum(r.status == 'failed' for r in rows)} failed, "
             f"{sum(r.status == 'incomplete' for r in rows)} incomplete. Sorted by {metric} ({mode}).", ""]
    common = common_overrides(rows)
    if common:
        lines += ["Common to all runs: " + " ".join(f"`{c}`" for c in common), ""]
    if best is not None:
        lines += [f"Best: run {best[1]} ({best[-1]}).", ""]
    _atomic_write(sweep_dir / "summary.md", "\n".join(lines) + md + "\n")
    buf = io.StringIO()
    w = csv.writer(buf)
    header, table = summary_table(rows, metric, mode, sweep_dir, precise=True)
    w.writerow(header)
    w.writerows(table)
    _atomic_write(sweep_dir / "summary.csv", buf.getvalue())
    return md


def _sweep_dir(config: DictConfig) -> Path:
    try:
        return Path(str(config.hydra.sweep.dir)).resolve()
    except Exception:  # noqa: BLE001 - fall back on the layout
        return Path(str(config.hydra.runtime.output_dir)).parent


class SweepSummary(Callback):
    """Hydra callback: ``job_status.json`` per run and ``summary.md``/``summary.csv`` per sweep (see module doc)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or not _is_rank_zero():
            return
        out = Path(str(config.hydra.runtime.output_dir))
        ok = job_return.status == JobStatus.COMPLETED
        status = {"num": int(config.hydra.job.num), "status": "completed" if ok else "failed",
                  "overrides": list(config.hydra.overrides.task)}
        if ok:
            value = job_return.return_value
            status["return_value"] = float(value) if isinstance(value, (int, float)) else None
        else:
            try:  # a failed job's return_value re-raises its exception (Hydra's public way to get at it)
                err: BaseException | None = job_return.return_value
            except BaseException as e:  # noqa: BLE001
                err = e
            status["error"] = (f"{type(err).__name__}: {err}".splitlines() or [""])[0][:200]
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / STATUS_FILE, json.dumps(status, indent=1))
        try:  # a partial summary after every run: a sweep stopped by a failure still leaves one
            write_summary(_sweep_dir(config), config.get("optimized_metric"), config.get("optimized_mode", "min"))
        except Exception as e:  # noqa: BLE001 - never fail a run because of the summary
            log.warning("sweep summary not updated: %s", e)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = _sweep_dir(config)
        if not sweep_dir.is_dir():
            return
        metric, mode = config.get("optimized_metric"), config.get("optimized_mode", "min")
        md = write_summary(sweep_dir, metric, mode)
        log.info("sweep summary (%s, %s) in %s:\n%s", metric, mode, sweep_dir / "summary.md", md)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write summary.md/summary.csv of a Hydra sweep folder")
    ap.add_argument("sweep_dir")
    ap.add_argument("--metric", default=None, help="default: optimized_metric of the runs' config")
    ap.add_argument("--mode", default=None, choices=["min", "max"])
    args = ap.parse_args(argv)
    metric, mode = args.metric, args.mode
    if metric is None or mode is None:
        for cfg_file in sorted(Path(args.sweep_dir).rglob("config_resolved.yaml")):
            cfg = OmegaConf.load(cfg_file)
            metric = metric or cfg.get("optimized_metric")
            mode = mode or cfg.get("optimized_mode")
            break
    print(write_summary(args.sweep_dir, metric, mode or "min"))


if __name__ == "__main__":
    main()
