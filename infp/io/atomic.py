"""Write-then-rename helpers so that a failed job never leaves a half-written output.

Temporary names carry the writer's process id (``.{stem}.{pid}-{hex}.tmp{suffix}``): a job killed
outright (SIGKILL, power loss) cannot clean up after itself, so the next job writing the same output
removes the temporaries of processes that no longer exist (``remove_stale_temps``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def temp_sibling(path: str | Path) -> Path:
    """A unique temporary path next to ``path`` that keeps its suffix (ffmpeg needs it) and names this process."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def _pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (possibly another user's: then it may still be writing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete temporaries of ``path`` (any suffix: video, audio, report) left by processes that are gone.

    Only names made by ``temp_sibling`` for the same stem are considered, and only when their process
    id is not running, so concurrent jobs writing the same output keep their files. Returns what was removed.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.(\d+)-[0-9a-f]{{8}}\.tmp(\.[^./]*)?")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        log.info("removed %s (left by an interrupted run)", entry.path)
        removed.append(Path(entry.path))
    return removed


def unlink_quietly(path: Path) -> None:
    """Remove a temporary without letting a cleanup failure hide the error that caused the cleanup."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        log.debug("could not remove %s", path, exc_info=True)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; rename it to ``path`` on success, delete it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        unlink_quietly(tmp)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; rename it to ``path`` on success, remove it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that the file appears only complete."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
