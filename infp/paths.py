"""Locations relative to the repository (for an editable install; overridable by environment)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
