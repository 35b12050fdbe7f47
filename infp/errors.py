"""User-facing errors: one clear line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class InfpError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits non-zero."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class MediaError(InfpError):
    """Unreadable, truncated, empty or otherwise unusable audio/video/image."""


class NoFaceError(InfpError):
    """No face found where one is required."""


class ManifestError(InfpError):
    """A manifest that is malformed or names missing files."""


class OutputError(InfpError):
    """An output path that cannot be written, has the wrong container, or would overwrite an input."""


class SettingsError(InfpError, ValueError):
    """A setting out of its valid range (a ValueError too, for callers of the Python API)."""
