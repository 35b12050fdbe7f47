import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import yaml

from infp.constants import SAMPLES_PER_FRAME
from infp.data.manifest import load_manifest
from infp.data.prepare import PrepareConfig, assign_splits, fill_nearest, prepare, segment_bounds, split_of
from infp.io import iter_frames, write_video


def test_segment_bounds_and_splits():
    assert segment_bounds(100, 0, 10) == [(0, 100)]
    assert segment_bounds(250, 100, 60) == [(0, 100), (100, 250)]  # short tail merged
    assert segment_bounds(300, 100, 60) == [(0, 100), (100, 200), (200, 300)]
    assert split_of("conv_0001", 0.5) == split_of("conv_0001", 0.5)
    shares = np.mean([split_of(f"rec{i}", 0.2) == "val" for i in range(2000)])
    assert 0.17 < shares < 0.23


def test_fill_nearest_covers_long_gaps():
    boxes = np.full((10, 3), np.nan, np.float32)
    boxes[2] = 1.0
    boxes[7] = 2.0
    out = fill_nearest(boxes)
    assert np.isfinite(out).all()
    assert (out[:5, 0] == 1).all() and (out[5:, 0] == 2).all()
    assert np.isnan(fill_nearest(np.full((3, 3), np.nan))).all()


def test_sample_corpus_is_consistent(sample_corpus):
    index = [json.loads(line) for line in (sample_corpus / "index.jsonl").read_text().splitlines()]
    assert len(index) >= 8
    train = set((sample_corpus / "train.txt").read_text().split())
    val = set((sample_corpus / "val.txt").read_text().split())
    assert train and val and not train & val and train | val == {r["id"] for r in index}
    by_rec = {}
    for r in index:
        by_rec.setdefault(r["recording"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_rec.values())  # split by recording
    kinds = {r["id"].split("_")[0] for r in index}
    assert {"talk", "listen", "solo", "pair"} <= kinds
    for r in index:
        d = sample_corpus / "clips" / r["id"]
        meta = json.loads((d / "meta.json").read_text())
        t = meta["n_frames"]
        for name in ("self.wav", "other.wav"):
            info = sf.info(str(d / name))
            assert info.samplerate == 16000 and info.channels == 1 and info.frames == t * SAMPLES_PER_FRAME
        assert np.load(d / "vad.npy").shape == (t, 2)
        lm = np.load(d / "landmarks.npy").astype(np.float32)
        assert lm.shape == (t, 478, 2)
        ok = np.isfinite(lm).all(axis=(1, 2))
        assert ok.mean() >= 0.5
        assert (lm[ok] > -0.1 * meta["size"]).all() and (lm[ok] < 1.1 * meta["size"]).all()
        frames = list(iter_frames(d / "face.mp4"))
        assert len(frames) == t and frames[0].shape == (meta["size"], meta["size"], 3)
    # dyadic content: listeners hear a partner and stay silent; a talker speaks and hears a partner
    listen = [r for r in index if r["id"].startswith("listen_")]
    assert all(r["self_speech"] == 0 and r["other_speech"] > 0.2 for r in listen)
    talk = [r for r in index if r["id"].startswith(("talk_", "dub_"))]
    assert any(r["self_speech"] > 0.2 and r["other_speech"] > 0.05 for r in talk)


def test_dubbed_speech_lies_where_the_mouth_moves(sample_corpus):
    """A face that talks without its voice gets speech on self where its lips move, the partner elsewhere."""
    from infp.face.landmarks import mouth_opening

    dubbed = [d for d in (sample_corpus / "clips").iterdir() if d.name.startswith("dub_")]
    assert dubbed
    moving = {"self": [], "other": []}
    for d in dubbed:
        lm = np.load(d / "landmarks.npy").astype(np.float32)
        vad = np.load(d / "vad.npy") > 0.5
        change = np.abs(np.diff(mouth_opening(lm), prepend=np.nan))
        moving["self"].append(change[vad[:, 0] & ~vad[:, 1]])
        moving["other"].append(change[vad[:, 1] & ~vad[:, 0]])
        assert (vad[:, 0] & vad[:, 1]).mean() < 0.1  # dubbing and partner take turns
    self_move, other_move = (np.nanmean(np.concatenate(v)) for v in (moving["self"], moving["other"]))
    assert self_move > 3 * other_move


def test_landmarks_follow_the_mouth(sample_corpus):
    """Mouth opening from the stored landmarks is larger while the clip's own voice speaks."""
    d = sample_corpus / "clips" / "pair_lp_d11_lp_s18__a__000"  # left face of a two-face video
    lm = np.load(d / "landmarks.npy").astype(np.float32)
    vad = np.load(d / "vad.npy").astype(np.float32)
    opening = np.linalg.norm(lm[:, 13] - lm[:, 14], axis=1)  # inner upper / lower lip
    speaking = vad[:, 0] > 0.5
    assert speaking.sum() > 20 and (~speaking).sum() > 20
    assert opening[speaking].mean() > 1.25 * opening[~speaking].mean()


def _faceless_video(path, seconds=2.0):
    rng = np.random.default_rng(0)
    frames = []
    for t in range(int(seconds * 25)):
        x = np.linspace(0, 255, 256)[None, :, None] * np.ones((256, 1, 3))
        frames.append(np.clip(x + t + rng.normal(0, 8, (256, 256, 3)), 0, 255).astype(np.uint8))
    write_video(path, iter(frames), audio=np.zeros(int(seconds * 16000), np.float32))


def _manifest(tmp_path, recs):
    m = tmp_path / "manifest.yaml"
    m.write_text(yaml.safe_dump({"recordings": recs}))
    return m


def test_bad_recordings_are_logged_and_skipped(tmp_path, samples):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 255, 40_000, dtype=np.uint8).tobytes())
    faceless = tmp_path / "faceless.mp4"
    _faceless_video(faceless)
    m = _manifest(tmp_path, [
        {"id": "corrupt", "video": str(corrupt), "parties": [{"audio": None}]},
        {"id": "good", "video": str(samples / "video" / "lp_s29.mp4"),
         "parties": [{"audio": None}, {"audio": str(samples / "audio" / "ditto.flac"), "face": False}]},
        {"id": "faceless", "video": str(faceless), "parties": [{"audio": "video"}]},
    ])
    out = tmp_path / "corpus"
    summary = prepare(m, out, PrepareConfig(workers=1), progress=False)
    skipped = {s["recording"]: s["reason"] for s in summary["skipped_recordings"]}
    assert set(skipped) == {"corrupt", "faceless"}
    assert str(corrupt) in skipped["corrupt"] and str(faceless) in skipped["faceless"]
    assert "no face" in skipped["faceless"]
    assert summary["clips"] == 1 and (out / "clips" / "good__a__000" / "meta.json").is_file()
    log = [json.loads(line) for line in (out / "prepare_log.jsonl").read_text().splitlines()]
    assert {r["recording"]: r["status"] for r in log} == {"corrupt": "skipped", "good": "done", "faceless": "skipped"}
    assert not [p for p in (out / "clips").iterdir() if p.name.startswith(".")]  # nothing half-written


def test_rerun_skips_finished_recordings_and_clips(tmp_path, samples):
    rec = {"id": "s29", "video": str(samples / "video" / "lp_s29.mp4"), "parties": [{"audio": None}]}
    m = _manifest(tmp_path, [rec])
    out = tmp_path / "corpus"
    prepare(m, out, PrepareConfig(workers=1), progress=False)
    face = out / "clips" / "s29__a__000" / "face.mp4"
    stamp = face.stat().st_mtime_ns
    again = prepare(m, out, PrepareConfig(workers=1), progress=False)
    assert again["already_done"] == 1 and again["processed"] == 0 and again["clips"] == 1
    # a recording interrupted after some of its clips were written redoes only the missing ones
    (out / "recordings" / "s29.json").unlink()
    third = prepare(m, out, PrepareConfig(workers=1), progress=False)
    assert third["processed"] == 1 and third["reused_clips"] == 1 and third["new_clips"] == 0
    assert face.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_killed_run_resumes_without_redoing(tmp_path, samples):
    recs = [{"id": f"r{i}_{name}", "video": str(samples / "video" / f"{name}.mp4"), "parties": [{"audio": None}]}
            for i, name in enumerate(["lp_s29", "lp_d3", "lp_d10", "lp_s18"])]
    m = _manifest(tmp_path, recs)
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "infp.cli", "prepare", str(m), str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "recordings" / "r0_lp_s29.json").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_first = sorted(p.stem for p in (out / "recordings").glob("*.json"))
    assert "r0_lp_s29" in done_first and len(done_first) < 4, "kill came too late to test resuming"
    stamp = (out / "clips" / "r0_lp_s29__a__000" / "face.mp4").stat().st_mtime_ns
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{len(done_first)} already done" in res.stdout
    assert (out / "clips" / "r0_lp_s29__a__000" / "face.mp4").stat().st_mtime_ns == stamp
    assert len((out / "train.txt").read_text().split()) + len((out / "val.txt").read_text().split()) == 4
    assert not [p for p in (out / "clips").iterdir() if p.name.startswith(".")]
    assert not (out / ".work").exists()


def test_parallel_workers(tmp_path, samples):
    recs = [{"id": name, "video": str(samples / "video" / f"{name}.mp4"), "parties": [{"audio": None}]}
            for name in ["lp_s29", "lp_d12"]]
    summary = prepare(_manifest(tmp_path, recs), tmp_path / "c", PrepareConfig(workers=2), progress=False)
    assert summary["clips"] == 2 and not summary["skipped_recordings"]
    assert assign_splits(load_manifest(tmp_path / "manifest.yaml"), 0.1)  # deterministic mapping exists


def test_talking_frames_and_dubbing_on_a_synthetic_mouth():
    from infp.constants import SAMPLES_PER_FRAME
    from infp.data.sample_corpus import VoicePool, dub_talking_face, talking_frames

    t = np.arange(250)
    opening = np.full(250, 0.02)
    opening[50:150] = 0.12 + 0.1 * np.sin(t[50:150] * 1.3)  # 4 s of speech-like lip motion
    opening[200:203] = 0.3  # a 3-frame twitch is not speech
    talk = talking_frames(opening)
    assert talk[55:145].all() and not talk[:40].any() and not talk[160:].any()

    class Pool(VoicePool):
        def __init__(self, value):
            self.value = value

        def take(self, n):
            return np.full(n, self.value, np.float32)

    own, partner, talk = dub_talking_face(opening, Pool(0.5), Pool(0.25))
    assert len(own) == len(partner) == 250 * SAMPLES_PER_FRAME
    per_frame = lambda x: np.abs(x).reshape(250, -1).max(axis=1)  # noqa: E731
    assert (per_frame(own)[talk] > 0).mean() > 0.95 and per_frame(own)[~talk].max() < 0.2
    assert per_frame(partner)[talk].max() == 0 and (per_frame(partner)[:40] > 0).all()
    loud = per_frame(own)[50:150]
    assert np.corrcoef(loud, opening[50:150])[0, 1] > 0.5  # loudness follows the mouth
