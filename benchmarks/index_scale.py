"""Data layer at scale: open an index of 100k clips and set up both data modules, timed.

    python benchmarks/index_scale.py [--clips 100000] [--motion-dim 4] [--dir DIR] [--keep]

Writes a synthetic ``index.jsonl`` (no clip folders: the data modules must not read any to set up) and,
for stage 2, a latents folder with one small ``(T, D)`` file per clip (the stage-2 module lists it
and reads the latents of at most ``stats_clips`` clips for the scale). Prints wall times and the Python
memory allocated (tracemalloc peak) of each step.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from infp.audio.features import AudioEncoder
from infp.data.clips import ClipIndex
from infp.data.datamodules import DyadicMotionData, HeadImitationData
from infp.data.synthetic import write_stage2_clips, write_synthetic_index


def timed(label: str, fn):
    """Run ``fn`` twice: once timed, once under tracemalloc (which slows Python down) for its memory."""
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    del out
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"{label:<48} {dt:8.2f} s   {peak:8.1f} MB allocated (peak)", flush=True)
    return out


def setup(dm):
    dm.setup()
    return dm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--motion-dim", type=int, default=4)
    ap.add_argument("--stats-clips", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="where to write the corpus (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the corpus")
    args = ap.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="infp_index_scale_"))
    try:
        t = time.perf_counter()
        rows = write_synthetic_index(root, args.clips)
        print(f"{'write index.jsonl (' + str(args.clips) + ' clips)':<48} {time.perf_counter() - t:8.2f} s   "
              f"{(root / 'index.jsonl').stat().st_size / 2**20:8.1f} MB on disk")
        index = timed("ClipIndex(root)", lambda: ClipIndex(root))
        timed("ClipIndex(root, 'train')", lambda: ClipIndex(root, "train"))
        assert len(index) == args.clips

        dm1 = timed("stage 1: HeadImitationData.setup()", lambda: setup(HeadImitationData(
            root, size=256, batch_size=32, samples_per_epoch=200_000, val_pairs_per_clip=8)))
        assert not (root / "clips").exists(), "no clip folder may be needed to set up"
        print(f"    train: {len(dm1.train_set.src.index)} clips, {len(dm1.train_set)} pairs per epoch; "
              f"val: {len(dm1.val_set.src.index)} clips, {len(dm1.val_set)} fixed pairs")

        t = time.perf_counter()
        write_stage2_clips(root, rows, motion_dim=args.motion_dim, audio=False)
        print(f"{'write motion/ (' + str(args.clips) + ' latent files)':<48} {time.perf_counter() - t:8.2f} s")
        dm2 = timed("stage 2: DyadicMotionData.setup()", lambda: setup(DyadicMotionData(
            root, batch_size=256, samples_per_epoch=1_000_000, val_windows_per_clip=16, stats_clips=args.stats_clips,
            audio_context=AudioEncoder().context_frames)))
        ds = dm2.train_subset("all")
        print(f"    train: {len(ds.ids)} clips with latents (D={dm2.motion_dim}), {len(ds)} windows per epoch; "
              f"val: {len(dm2.val_set.ids)} clips, {len(dm2.val_set)} fixed windows; "
              f"latents open: {len(ds._open)}")
        timed("stage 2: one-sided subset (warm-up epochs)",
              lambda: (dm2._train_sets.pop("one_sided", None), dm2.train_subset("one_sided"))[1])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("corpus kept in", root)


if __name__ == "__main__":
    main()
