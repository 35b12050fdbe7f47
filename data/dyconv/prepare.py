"""Prepare DyConv-format clips from a manifest of recordings (same as ``infp prepare``).

    python data/dyconv/prepare.py MANIFEST OUT [--size 256] [--workers 2] [--clip-seconds 20]
"""

import sys

from infp.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
