"""The data layer at scale: lazy index and data modules, per-rank and per-worker sample streams."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from infp.data import sampling
from infp.data.clips import ClipIndex
from infp.data.datamodules import DyadicMotionData, HeadImitationData
from infp.data.stage2 import ALL, ONE_SIDED, DyadicMotionWindows, motion_stats, stats_subset
from infp.data.synthetic import write_stage2_clips, write_synthetic_index
from infp.errors import InfpError

KW = dict(window=4, context=16, audio_context=17)


def test_index_of_20k_clips_opens_without_touching_clip_folders(tmp_path):
    rows = write_synthetic_index(tmp_path, 20_000)
    index = ClipIndex(tmp_path)
    assert len(index) == 20_000 and index[123].id == rows[123]["id"]
    assert index.n_frames.tolist() == [r["n_frames"] for r in rows]
    train, val = ClipIndex(tmp_path, "train"), ClipIndex(tmp_path, "val")
    assert len(train) + len(val) == 20_000 and 0 < len(val) < 0.1 * 20_000
    assert {e.recording for e in train.entries}.isdisjoint(e.recording for e in val.entries)
    assert ClipIndex(tmp_path, min_frames=400).n_frames.min() >= 400
    e = index[7]
    assert (e.self_speech, e.other_speech) == (rows[7]["self_speech"], rows[7]["other_speech"])

    dm = HeadImitationData(tmp_path, size=64, batch_size=4, samples_per_epoch=1000, val_pairs_per_clip=3)
    dm.setup()  # reads no clip folder (there is none)
    assert not (tmp_path / "clips").exists()
    assert len(dm.train_set) == 1000 and len(dm.val_set) == 3 * len(val)
    assert dm.train_set.src._landmarks == {}


def test_a_broken_index_line_is_named(tmp_path):
    write_synthetic_index(tmp_path, 5)
    with open(tmp_path / "index.jsonl", "a") as f:
        f.write('{"id": "x", "split": "train"}\n')
    with pytest.raises(InfpError, match="line 6"):
        ClipIndex(tmp_path)


@pytest.fixture(scope="module")
def stage2_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2corpus")
    rows = write_synthetic_index(root, 60, val_share=0.2, frames=(30, 60))
    write_stage2_clips(root, rows, motion_dim=6)
    return root, rows


def test_stage2_windows_are_lazy_and_use_a_bounded_statistics_subset(stage2_corpus):
    root, rows = stage2_corpus
    ds = DyadicMotionWindows(root, "train", stats_clips=10, max_open=4, **KW)
    assert ds.motion_dim == 6 and len(ds._open) == 0  # nothing loaded at construction
    sub = stats_subset(ds.ids, 10)
    assert len(sub) == 10 and sub == stats_subset(ds.ids, 10)
    np.testing.assert_allclose(ds.scale, motion_stats(ds.motion_dir, sub, root)[1])
    assert not np.allclose(ds.scale, motion_stats(ds.motion_dir, ds.ids, root)[1])
    for i in range(20):
        item = ds[i]
        assert item["x0"].shape == (4, 6) and item["self_audio"].shape == ((16 + 17 + 4) * 640,)
    assert len(ds._open) <= 4  # latents are memory-mapped on demand, a bounded number stay open
    one = DyadicMotionWindows(root, "train", scale=ds.scale, subset=ONE_SIDED, **KW)
    by_id = {r["id"]: r for r in rows}
    assert set(one.ids) < set(ds.ids)
    assert all(min(by_id[i]["self_speech"], by_id[i]["other_speech"]) == 0 for i in one.ids)
    val = DyadicMotionWindows(root, "val", scale=ds.scale, fixed_windows_per_clip=3, **KW)
    cid, s = val.fixed_window(4)
    assert cid == val.ids[1] and 0 <= s <= by_id[cid]["n_frames"] - 4
    assert torch.equal(val[4]["x0"], val[4]["x0"])


def test_stage2_module_reports_the_latent_size_and_skips_clips_without_latents(stage2_corpus, tmp_path):
    root, rows = stage2_corpus
    dm = DyadicMotionData(root, batch_size=2, samples_per_epoch=8, val_windows_per_clip=2, stats_clips=10, **KW)
    dm.setup()
    assert dm.motion_dim == 6 and dm.train_subset(ALL) is dm.train_subset(ALL)
    missing = tmp_path / "motion_partial"
    missing.mkdir()
    kept = [r for r in rows if r["split"] == "train"][:5]
    for r in kept:
        (missing / f"{r['id']}.npy").write_bytes((root / "motion" / f"{r['id']}.npy").read_bytes())
    ds = DyadicMotionWindows(root, "train", motion_dir=missing, **KW)
    assert sorted(ds.ids) == sorted(r["id"] for r in kept)


def _draws(ds, n=6):
    return torch.stack([ds[i]["x0"] for i in range(n)])


def test_random_windows_differ_between_ranks_with_the_same_seed(stage2_corpus, monkeypatch):
    root, _ = stage2_corpus
    ds = DyadicMotionWindows(root, "train", samples_per_epoch=64, **KW)
    draws = {}
    for rank in (0, 1, 0):
        monkeypatch.setattr(sampling, "distributed_rank", lambda r=rank: r)
        torch.manual_seed(1234)  # seed_everything gives every rank the same global seed
        draws.setdefault(rank, []).append(_draws(ds))
    assert torch.equal(draws[0][0], draws[0][1])  # reproducible per rank
    assert not torch.equal(draws[0][0], draws[1][0])


def test_random_windows_differ_between_dataloader_workers(stage2_corpus):
    root, _ = stage2_corpus
    ds = DyadicMotionWindows(root, "train", samples_per_epoch=8, **KW)
    torch.manual_seed(0)
    # batch_size 4, 2 workers: worker 0 makes batch 0, worker 1 batch 1 (the indices are ignored)
    b0, b1 = list(DataLoader(ds, batch_size=4, num_workers=2, shuffle=False))
    assert not torch.equal(b0["x0"], b1["x0"])
    assert len({tuple(x.flatten()[:4].tolist()) for x in torch.cat([b0["x0"], b1["x0"]])}) == 8


def test_distributed_sampler_gives_each_rank_distinct_indices(stage2_corpus):
    root, _ = stage2_corpus
    for ds in (DyadicMotionWindows(root, "train", samples_per_epoch=10, **KW),
               DyadicMotionWindows(root, "val", fixed_windows_per_clip=3, **KW)):
        n = len(ds)
        parts = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)]
        both = parts[0] + parts[1]
        assert len(parts[0]) == len(parts[1]) == (n + 1) // 2
        assert set(both) == set(range(n)) and len(both) - len(set(both)) == n % 2  # one repeat pads an odd length


def test_synthetic_rows_roundtrip(tmp_path):
    rows = write_synthetic_index(tmp_path, 4)
    assert [json.loads(x) for x in (tmp_path / "index.jsonl").read_text().splitlines()] == rows
