"""Sharded preparation: the same clips and index as one run, merged from shards; a killed shard reruns alone."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from infp.data.prepare import PrepareConfig, prepare, shard_of
from infp.data.shards import done_marker, launch, merge, pending_shards
from infp.errors import InfpError
from infp.io import iter_frames, read_audio, write_video

CFG = PrepareConfig(workers=1, val_fraction=0.3)
SOURCES = ["lp_s29", "lp_d12", "lp_d3", "lp_s18"]


def _ids_for_two_shards() -> list[str]:
    """Recording ids whose shards (of 2) both get at least one recording."""
    ids = [f"conv_{i}_{name}" for i, name in enumerate(SOURCES)]
    shards = {shard_of(i, 2) for i in ids}
    assert shards == {0, 1}, "pick other ids: the test needs both shards populated"
    return ids


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory, samples):
    """Four short real recordings (1.2 s of the sample videos, with their own voice)."""
    folder = tmp_path_factory.mktemp("tiny_manifest")
    recs = []
    for rid, name in zip(_ids_for_two_shards(), SOURCES):
        src = samples / "video" / f"{name}.mp4"
        frames = list(iter_frames(src, duration=1.2))
        audio = read_audio(src).mean(axis=0)[: int(1.2 * 16000)]
        write_video(folder / f"{rid}.mp4", iter(frames), audio=audio)
        recs.append({"id": rid, "video": f"{rid}.mp4", "parties": [{"audio": "video"}]})
    m = folder / "manifest.yaml"
    m.write_text(yaml.safe_dump({"recordings": recs}))
    return m


@pytest.fixture(scope="module")
def unsharded(tiny_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsharded")
    prepare(tiny_manifest, out, CFG, progress=False)
    return out


def _assert_same_corpus(a, b):
    for name in ("index.jsonl", "train.txt", "val.txt"):
        assert (a / name).read_text() == (b / name).read_text(), name
    clips_a = sorted(p.name for p in (a / "clips").iterdir())
    assert clips_a == sorted(p.name for p in (b / "clips").iterdir())
    assert not [c for c in clips_a if c.startswith(".")]
    for cid in clips_a:
        da, db = a / "clips" / cid, b / "clips" / cid
        assert sorted(p.name for p in da.iterdir()) == sorted(p.name for p in db.iterdir())
        assert json.loads((da / "meta.json").read_text()) == json.loads((db / "meta.json").read_text())
        for f in da.iterdir():
            if f.suffix == ".npy":
                np.testing.assert_array_equal(np.load(f), np.load(db / f.name))
            elif f.suffix == ".wav":
                assert f.read_bytes() == (db / f.name).read_bytes(), f
        fa = np.stack(list(iter_frames(da / "face.mp4")))
        fb = np.stack(list(iter_frames(db / "face.mp4")))
        assert fa.shape == fb.shape and np.abs(fa.astype(int) - fb.astype(int)).max() <= 2


def test_shard_assignment_is_deterministic_and_a_partition():
    ids = [f"conv_{i:04d}" for i in range(1000)]
    for n in (1, 3, 16):
        shards = [shard_of(i, n) for i in ids]
        assert shards == [shard_of(i, n) for i in ids]
        assert set(shards) == set(range(n))
        counts = np.bincount(shards, minlength=n)
        assert counts.min() > 0.5 * len(ids) / n  # spread, not all in one


def test_shards_in_process_merge_to_the_unsharded_corpus(tiny_manifest, unsharded, tmp_path):
    out = tmp_path / "sharded"
    with pytest.raises(InfpError, match="2 of 2 shards have not finished"):
        merge(tmp_path, 2)
    for k in (1, 0):  # any order
        s = prepare(tiny_manifest, out, CFG, progress=False, shard=(k, 2))
        assert s["processed"] == s["recordings_in_shard"] > 0
        assert not (out / "index.jsonl").exists()  # the merge writes it
    summary = merge(out, 2, tiny_manifest)
    assert summary["clips"] == 4 and summary["shards"] == 2 and not summary["skipped_recordings"]
    _assert_same_corpus(unsharded, out)
    logged = [json.loads(line)["recording"] for line in (out / "prepare_log.jsonl").read_text().splitlines()]
    assert sorted(logged) == sorted(_ids_for_two_shards())


@pytest.mark.slow
def test_submitit_local_executor_two_shards_then_a_lost_shard_reruns_alone(tiny_manifest, unsharded, tmp_path):
    """Two shards through submitit's LocalExecutor; then one shard's work is lost (as when its job is killed
    mid-way: marker gone, a clip and its recording marker gone, half-written temporaries left) and the same
    launch runs only that shard again."""
    out = tmp_path / "sharded"
    summary = launch(tiny_manifest, out, 2, CFG, launcher="local")
    assert [s["shard"] for s in summary["submitted"]] == ["0/2", "1/2"]
    _assert_same_corpus(unsharded, out)

    lost = [i for i in _ids_for_two_shards() if shard_of(i, 2) == 1][0]
    kept = [i for i in _ids_for_two_shards() if shard_of(i, 2) == 0][0]
    stamp_kept = (out / "clips" / f"{kept}__a__000" / "face.mp4").stat().st_mtime_ns
    done_marker(out, 1, 2).unlink()
    (out / "recordings" / f"{lost}.json").unlink()
    shutil.rmtree(out / "clips" / f"{lost}__a__000")
    (out / "clips" / f".{lost}__a__000.999999-deadbeef.tmp").mkdir()  # half-written clip of a killed job
    (out / ".work" / lost).mkdir(parents=True)
    (out / "index.jsonl").unlink()
    assert pending_shards(out, 2) == [1]

    again = launch(tiny_manifest, out, 2, CFG, launcher="local")
    assert [s["shard"] for s in again["submitted"]] == ["1/2"]
    assert again["processed"] + again["already_done"] == 4
    _assert_same_corpus(unsharded, out)
    assert (out / "clips" / f"{kept}__a__000" / "face.mp4").stat().st_mtime_ns == stamp_kept
    assert not (out / ".work" / lost).exists()


@pytest.mark.slow
def test_killed_shard_process_is_completed_by_a_rerun(tiny_manifest, unsharded, tmp_path):
    """A shard's process killed outright (SIGKILL) mid-way; launching again runs only that shard."""
    out = tmp_path / "sharded"
    prepare(tiny_manifest, out, CFG, progress=False, shard=(0, 2))
    mine = [i for i in _ids_for_two_shards() if shard_of(i, 2) == 1]
    cmd = [sys.executable, "-m", "infp.cli", "prepare", str(tiny_manifest), str(out), "--shard", "1/2", "--workers", "1",
           "--quiet", "--val-fraction", "0.3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any((out / "recordings" / f"{i}.json").exists() for i in mine):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert pending_shards(out, 2) == [1]
    res = subprocess.run([sys.executable, "-m", "infp.cli", "prepare", str(tiny_manifest), str(out), "--shards", "2",
                          "--launcher", "local", "--workers", "1", "--val-fraction", "0.3"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "shard 1/2" in res.stdout and "shard 0/2" not in res.stdout
    _assert_same_corpus(unsharded, out)


def test_cli_shard_options_are_checked_when_parsed(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "infp.cli", "prepare", "m.yaml", str(tmp_path / "o"), *args],
                              capture_output=True, text=True)

    for args, msg in [(["--shard", "2/2"], "0 <= K < N"), (["--shard", "1"], "expected K/N"),
                      (["--shard", "0/2", "--shards", "2"], "not allowed with"), (["--launcher", "slurm"], "needs --shards"),
                      (["--shards", "2", "--partition", "cpu"], "needs --launcher slurm")]:
        res = run(*args)
        assert res.returncode == 2 and msg in res.stderr and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
    assert not (tmp_path / "o").exists()
    res = subprocess.run([sys.executable, "-m", "infp.cli", "prepare-merge", str(tmp_path), "--shards", "3"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "3 of 3 shards have not finished" in res.stderr
    assert not (tmp_path / "index.jsonl").exists()
