"""Checks on an output path before any work starts: container, writable folder, not one of the inputs.

A render takes minutes; finding out at the end that the folder is read-only, or that ``--out`` named
the portrait and has just replaced it, wastes the run or the user's file. Every command that writes a
video (render, reenact, the demo's recordings) goes through ``check_video_output``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from infp.errors import OutputError
from infp.io.atomic import remove_stale_temps

VIDEO_SUFFIX = ".mp4"
"""The one container written: H.264 + AAC in MP4 plays in every browser and player."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """True if ``a`` and ``b`` are one file: same inode (hard and symbolic links too) or the same resolved path."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_writable_folder(folder: str | Path) -> Path:
    """Raise OutputError naming ``folder`` unless files can be created in it (or in the folders that would hold it).

    The folder need not exist yet (outputs create it); its nearest existing parent must be a folder in
    which a file can actually be created: permission bits do not bind root, read-only mounts and /proc
    do, so a real test file is the only honest check.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create the output folder: {existing} is a file, not a folder", folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".infp-write-test.", dir=existing)
    except OSError as e:
        raise OutputError(f"cannot write into this folder ({e.strerror or e})", existing) from None
    os.close(fd)
    os.unlink(probe)
    return folder


Inputs = Mapping[str, "str | Path | Iterable[str | Path] | None"]


def _named(inputs: Inputs | Iterable[str | Path | None]) -> Iterator[tuple[str, Path]]:
    """(name, path) for every input path, whether given by name (one path or several) or as a plain list."""
    if not isinstance(inputs, Mapping):
        inputs = {str(p): p for p in inputs}
    for name, value in inputs.items():
        if value is None:
            continue
        for path in [value] if isinstance(value, (str, Path)) else value:
            yield name, Path(path)


def check_video_output(out: str | Path, inputs: Inputs | Iterable[str | Path | None] = ()) -> Path:
    """Validate ``out`` as a video output: ``.mp4``, not a folder, in a writable folder, and none of ``inputs``.

    ``inputs`` maps a name for the user (an option such as ``--portrait``) to an input path or a list
    of them (a checkpoint's files), or is a plain list of paths. Also removes temporaries of ``out``
    left by runs that were killed (see ``remove_stale_temps``). Raises OutputError naming the path and
    the problem; returns ``out`` as a Path.
    """
    out = Path(out)
    if out.suffix.lower() != VIDEO_SUFFIX:
        got = f"'{out.suffix}'" if out.suffix else "no extension"
        raise OutputError(f"output must be an {VIDEO_SUFFIX} file (H.264 + AAC), got {got}", out)
    if out.is_dir():
        raise OutputError("is a folder; give the path of the .mp4 file to write", out)
    for name, source in _named(inputs):
        if same_file(out, source):
            raise OutputError(f"is also an input ({name}); writing it would destroy that file, choose another output", out)
    check_writable_folder(out.parent)
    remove_stale_temps(out)
    return out


def checkpoint_files(folder: str | Path | None) -> list[Path]:
    """Every file under a checkpoint folder (an output must not replace any of them)."""
    if folder is None or not Path(folder).is_dir():
        return []
    return [p for p in Path(folder).rglob("*") if p.is_file()]
