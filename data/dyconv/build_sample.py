"""Build the sample corpus from real sample media (same as ``infp sample-corpus``).

    python data/dyconv/build_sample.py [--media ../shared/data] [--out data/sample_corpus]
"""

import sys

from infp.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample-corpus", *sys.argv[1:]]))
