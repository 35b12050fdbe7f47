"""The repository root, where an editable install finds ``data/samples``, ``weights/`` and ``docs/``.

Nothing here reads the environment; ``INFP_WEIGHTS`` (see ``infp.weights``) moves the weights folder.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
