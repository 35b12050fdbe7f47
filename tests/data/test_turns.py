"""Mixed-track recordings: turns assigned from the faces, gated self/other tracks, the manifest form."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.data.manifest import load_manifest
from infp.data.prepare import PrepareConfig, prepare
from infp.data.turns import (
    BOTH,
    CLIP_OTHER,
    CLIP_SELF,
    FIRST,
    NOBODY,
    SECOND,
    TurnConfig,
    assign_turns,
    emissions,
    gate,
    posteriors,
    viterbi,
)
from infp.errors import ManifestError
from infp.face.landmarks import LEFT_EYE_OUTER, LOWER_INNER_LIP, NUM_LANDMARKS, RIGHT_EYE_OUTER, UPPER_INNER_LIP
from infp.io import iter_frames, read_audio, write_video

REPO = Path(__file__).resolve().parents[2]


def _face(opening: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks with eyes 100 px apart and the given inner-lip gap (in eye distances)."""
    lm = np.zeros((len(opening), NUM_LANDMARKS, 2), np.float32)
    lm[:, RIGHT_EYE_OUTER] = (0, 0)
    lm[:, LEFT_EYE_OUTER] = (100, 0)
    lm[:, UPPER_INNER_LIP] = (50, 80)
    lm[:, LOWER_INNER_LIP, 0] = 50
    lm[:, LOWER_INNER_LIP, 1] = 80 + 100 * opening
    return lm


def test_viterbi_and_posteriors_on_a_known_sequence():
    rng = np.random.default_rng(0)
    truth = np.repeat([NOBODY, FIRST, SECOND, FIRST, NOBODY], 30)
    log_emit = np.log(np.full((len(truth), 4), 0.1))
    log_emit[np.arange(len(truth)), truth] = np.log(0.7)
    flips = rng.choice(len(truth), 10, replace=False)  # isolated wrong frames are smoothed away
    log_emit[flips] = log_emit[flips][:, ::-1]
    trans = np.log(np.full((4, 4), 0.01) + np.eye(4) * 0.96)
    path = viterbi(log_emit, trans)
    assert (path == truth).mean() > 0.97
    post = posteriors(log_emit, trans)
    np.testing.assert_allclose(post.sum(axis=1), 1, atol=1e-6)
    assert post[np.arange(len(truth)), truth].mean() > 0.9


def test_faces_decide_who_and_the_vad_decides_when():
    t = 200
    rng = np.random.default_rng(1)
    talking = lambda n: np.abs(0.15 * np.sin(np.arange(n) * 0.9) + 0.03 * rng.standard_normal(n))  # noqa: E731
    still = lambda n: 0.01 + 0.002 * rng.standard_normal(n)  # noqa: E731
    a = np.concatenate([talking(80), still(120)])
    b = np.concatenate([still(100), talking(80), still(20)])
    vad = np.zeros(t, np.float32)
    vad[5:78] = 0.95
    vad[102:178] = 0.95
    mix = (0.1 * rng.standard_normal(t * SAMPLES_PER_FRAME)).astype(np.float32)
    turns = assign_turns([_face(a), _face(b)], mix, t, vad=vad)
    assert (turns.state[10:70] == FIRST).mean() > 0.9
    assert (turns.state[110:170] == SECOND).mean() > 0.9
    assert (turns.state[185:] == NOBODY).all() and (turns.state[85:98] == NOBODY).all()
    assert turns.confidence[10:70].mean() > 0.8
    codes = turns.for_party(1)  # relative to the second face
    assert (codes[110:170] == CLIP_SELF).mean() > 0.9 and (codes[10:70] == CLIP_OTHER).mean() > 0.9
    shares = turns.shares(0)
    assert shares["self"] > shares["both"] and abs(sum(shares[k] for k in ("self", "other", "both", "nobody")) - 1) < 1e-3
    # a face lost for a while gives no evidence (0.5), not a turn
    lost = _face(a)
    lost[20:40] = np.nan
    again = assign_turns([lost, _face(b)], mix, t, vad=vad)
    assert np.allclose(again.talk_prob[25:35, 0], 0.5)


def test_overlap_needs_both_faces_talking():
    vad = np.full(10, 0.95)
    talk = np.array([[0.97, 0.97]] * 5 + [[0.97, 0.05]] * 5)
    e = emissions(vad, talk, TurnConfig(both_penalty=0.5))
    assert np.argmax(e[:5], axis=1).tolist() == [BOTH] * 5
    assert np.argmax(e[5:], axis=1).tolist() == [FIRST] * 5
    # the default prior against overlap gives such frames to one face (measured better on real debates)
    assert BOTH not in np.argmax(emissions(vad, talk, TurnConfig()), axis=1).tolist()


def test_gate_fades_and_keeps_the_other_party_out():
    mix = np.ones(10 * SAMPLES_PER_FRAME, np.float32)
    own = np.zeros(10, bool)
    own[2:5] = True
    other = np.zeros(10, bool)
    other[5:8] = True
    g = gate(mix, own, blocked=other)
    assert g[3 * SAMPLES_PER_FRAME] == pytest.approx(1)
    assert np.all(g[6 * SAMPLES_PER_FRAME:] == 0)  # no hangover into the partner's turn
    assert np.all(g[:SAMPLES_PER_FRAME] == 0)
    edge = g[2 * SAMPLES_PER_FRAME - 200: 2 * SAMPLES_PER_FRAME + 200]
    assert 0 < edge[200] < 1 and np.all(np.diff(edge) >= 0)  # a ramp, not a click
    free = gate(mix, own)  # followed by silence: stays open for the hangover frames
    assert free[6 * SAMPLES_PER_FRAME] == pytest.approx(1) and free[8 * SAMPLES_PER_FRAME] == 0


def _write(tmp_path, text):
    m = tmp_path / "manifest.yaml"
    m.write_text(text)
    return m


def test_manifest_mixed_form(tmp_path, samples):
    vid = samples / "video" / "lp_d11.mp4"
    m = _write(tmp_path, f"recordings:\n  - id: x\n    video: {vid}\n    parties:\n"
                         "      - {name: l, region: left, audio: mixed}\n      - {name: r, region: right, audio: mixed}\n")
    rec = load_manifest(m)[0]
    assert all(p.audio.mixed and p.audio.path is None for p in rec.parties)
    bad = [
        ("[{audio: mixed}, {audio: video}]", "two faces sharing one track, got 1 mixed party"),
        ("[{audio: mixed}, {audio: mixed, face: false}]", "needs the party's face"),
        ("[{audio: mixed}, {audio: {path: video, mixed: true, offset: 0.5}}]", "must share one track"),
        ("[{audio: mixed}, {audio: mixed}, {audio: mixed, region: right}]", "got 3 mixed parties"),
        ("[{audio: {path: video, mixed: 'yes'}}]", "mixed must be true or false"),
    ]
    for parties, msg in bad:
        m = _write(tmp_path, f"recordings:\n  - {{id: x, video: {vid}, parties: {parties}}}\n")
        with pytest.raises(ManifestError, match=msg) as e:
            load_manifest(m)
        assert "recording 1 (id 'x')" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_prepare_a_split_screen_recording_with_one_track(tmp_path, samples):
    """Real faces and voices side by side: the left person talks for 2 s while the right one is still,
    then the right one talks; one track carries both voices in turn."""
    seconds, n = 2.0, 50
    left = list(iter_frames(samples / "video" / "lp_d11.mp4", duration=seconds))[:n]
    right = list(iter_frames(samples / "video" / "lp_d10.mp4", duration=seconds))[:n]
    frames = [np.concatenate([left[i], right[0]], axis=1) for i in range(n)]  # right listens, still
    frames += [np.concatenate([left[-1], right[i]], axis=1) for i in range(n)]  # left listens, still
    k = n * SAMPLES_PER_FRAME
    mix = np.concatenate([read_audio(samples / "video" / "lp_d11.mp4").mean(axis=0)[:k],
                          read_audio(samples / "video" / "lp_d10.mp4").mean(axis=0)[:k]])
    write_video(tmp_path / "talk.mp4", iter(frames), audio=mix)
    m = _write(tmp_path, yaml.safe_dump({"recordings": [{"id": "talk", "video": "talk.mp4", "parties": [
        {"name": "l", "region": "left", "audio": "mixed"}, {"name": "r", "region": "right", "audio": "mixed"}]}]}))
    summary = prepare(m, tmp_path / "c", PrepareConfig(workers=1, clip_seconds=0), progress=False)
    assert summary["clips"] == 2 and not summary["skipped_clips"]
    clips = {p: tmp_path / "c" / "clips" / f"talk__{p}__000" for p in ("l", "r")}
    codes = {p: np.load(d / "turns.npy") for p, d in clips.items()}
    conf = np.load(clips["l"] / "turn_conf.npy")
    assert codes["l"].shape == conf.shape == (2 * n,) and codes["l"].dtype == np.int8
    speech = (codes["l"] != 0) & (codes["r"] != 0)
    first, second = np.arange(2 * n) < n, np.arange(2 * n) >= n
    assert (codes["l"][speech & first] == CLIP_SELF).mean() > 0.8
    assert (codes["l"][speech & second] == CLIP_OTHER).mean() > 0.8
    assert (codes["r"][speech & second] == CLIP_SELF).mean() > 0.8
    # the left clip's own voice is the mix where it speaks and silence where the right one does
    own, _ = sf.read(str(clips["l"] / "self.wav"), dtype="float32")
    other, _ = sf.read(str(clips["l"] / "other.wav"), dtype="float32")
    assert len(own) == len(other) == 2 * n * SAMPLES_PER_FRAME
    inner = lambda x: x & np.roll(x, 1) & np.roll(x, -1)  # noqa: E731 -- away from the fades at turn changes
    talk_r = np.repeat(inner(codes["l"] == CLIP_OTHER), SAMPLES_PER_FRAME)
    talk_l = np.repeat(inner(codes["l"] == CLIP_SELF), SAMPLES_PER_FRAME)
    assert np.abs(own[talk_r]).max() < 0.02 * np.abs(mix).max() + 1e-4
    track = np.clip(read_audio(tmp_path / "talk.mp4").mean(axis=0)[:len(own)], -1, 1)  # the mix as encoded in the video
    assert np.abs(own[talk_l] - track[talk_l]).max() < 2e-3  # PCM-16 rounding
    # the right clip's self is the left clip's other
    r_own, _ = sf.read(str(clips["r"] / "self.wav"), dtype="float32")
    np.testing.assert_allclose(r_own, other, atol=1e-4)
    meta = json.loads((clips["l"] / "meta.json").read_text())
    assert meta["mixed_audio"] is True and meta["self_voice"] is True
    t = meta["turns"]
    assert t["self"] > 0.2 and t["other"] > 0.2 and 0 <= t["confidence"] <= 1
    vad = np.load(clips["l"] / "vad.npy").astype(np.float32)
    assert (vad[first & speech, 0] > 0.5).mean() > (vad[second & speech, 0] > 0.5).mean()
    assert SAMPLE_RATE == 16000


@pytest.mark.slow
def test_real_split_screen_debate_agrees_with_the_hand_labels(tmp_path, shared_media):
    """A real two-person recording with one soundtrack (Apache-2.0): both parties get clips, tracks and
    shares, and the assignment agrees with the hand-labelled spans on most labelled speech frames."""
    from infp.constants import FPS

    ref = json.loads((REPO / "benchmarks" / "data" / "dyadic_turns.json").read_text())["recordings"]["cv_002"]
    m = _write(tmp_path, yaml.safe_dump({"recordings": [{"id": "cv_002", "video": str(shared_media / ref["video"]),
                                                         "parties": [{"name": "left", "region": "left", "audio": "mixed"},
                                                                     {"name": "right", "region": "right", "audio": "mixed"}]}]}))
    summary = prepare(m, tmp_path / "c", PrepareConfig(workers=1, clip_seconds=0), progress=False)
    assert summary["clips"] == 2
    left, right = (tmp_path / "c" / "clips" / f"cv_002__{p}__000" for p in ("left", "right"))
    codes = np.load(left / "turns.npy")
    np.testing.assert_array_equal(np.load(right / "turns.npy"),
                                  np.select([codes == CLIP_SELF, codes == CLIP_OTHER], [CLIP_OTHER, CLIP_SELF], codes))
    ml, mr = (json.loads((d / "meta.json").read_text())["turns"] for d in (left, right))
    assert ml["self"] == mr["other"] and ml["other"] == mr["self"]
    assert ml["self"] + ml["other"] + ml["both"] > 0.5  # a debate: mostly speech
    labelled = np.zeros(len(codes), bool)
    want = np.zeros(len(codes), int)
    for a, b, who in ref["spans"]:
        if who in ("left", "right"):
            labelled[int(a * FPS):int(b * FPS)] = True
            want[int(a * FPS):int(b * FPS)] = CLIP_SELF if who == "left" else CLIP_OTHER
    scored = labelled & (codes != 0)
    assert scored.sum() > 50 and (codes[scored] == want[scored]).mean() > 0.8
