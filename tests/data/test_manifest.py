import json
import subprocess
import sys

import pytest

from infp.data.manifest import NAMED_REGIONS, load_manifest
from infp.errors import ManifestError


def _write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_three_kinds_parse(tmp_path, samples):
    m = _write(tmp_path, f"""
root: {samples}
recordings:
  - id: two_faces
    video: video/lp_d10.mp4
    parties:
      - {{name: a, region: left, audio: audio/ditto.flac}}
      - {{name: b, region: [0.5, 0, 1, 1], audio: {{path: audio/hallo_3.flac, channel: 0, offset: 0.5}}}}
  - id: one_face
    video: video/lp_d11.mp4
    split: val
    parties:
      - {{name: a, audio: video}}
      - {{name: b, audio: audio/ditto.flac, face: false}}
  - id: single
    video: video/lp_d12.mp4
    parties: [{{audio: video}}]
""")
    recs = load_manifest(m)
    assert [r.id for r in recs] == ["two_faces", "one_face", "single"]
    a, b = recs[0].parties
    assert a.region == NAMED_REGIONS["left"] and b.region == (0.5, 0.0, 1.0, 1.0)
    assert b.audio.channel == 0 and b.audio.offset == 0.5
    assert recs[1].parties[0].audio.path is None and recs[1].parties[1].face is False
    assert recs[1].split == "val" and recs[2].parties[0].name == "a"


def test_jsonl_manifest(tmp_path, samples):
    line = {"id": "x", "video": str(samples / "video" / "lp_d10.mp4"), "parties": [{"audio": "video"}]}
    m = _write(tmp_path, json.dumps(line) + "\n", "m.jsonl")
    assert load_manifest(m)[0].video == samples / "video" / "lp_d10.mp4"


@pytest.mark.parametrize("entry, message", [
    ("{id: a, video: nope.mp4, parties: [{audio: video}]}", "video file not found"),
    ("{id: a, video: VID, parties: [{audio: missing.wav}]}", "audio file not found"),
    ("{id: a, video: VID, parties: [{audio: video, colour: red}]}", "unknown key 'colour'"),
    ("{id: a, video: VID, parties: [{audio: video, region: middle}]}", "region must be"),
    ("{id: 'a b', video: VID, parties: [{audio: video}]}", "id must be"),
    ("{id: a, video: VID, parties: [{audio: video, face: false}]}", "no party has a face"),
    ("{id: a, video: VID, parties: []}", "non-empty"),
])
def test_bad_manifest_entries_name_the_manifest(tmp_path, samples, entry, message):
    entry = entry.replace("VID", str(samples / "video" / "lp_d10.mp4"))
    m = _write(tmp_path, f"recordings:\n  - {entry}\n")
    with pytest.raises(ManifestError, match=message) as e:
        load_manifest(m)
    assert str(m) in str(e.value)


def test_duplicate_ids_and_parse_errors(tmp_path, samples):
    vid = samples / "video" / "lp_d10.mp4"
    m = _write(tmp_path, f"recordings:\n  - {{id: a, video: {vid}, parties: [{{audio: video}}]}}\n"
                         f"  - {{id: a, video: {vid}, parties: [{{audio: video}}]}}\n")
    with pytest.raises(ManifestError, match="duplicate"):
        load_manifest(m)
    with pytest.raises(ManifestError, match="cannot parse"):
        load_manifest(_write(tmp_path, "recordings: [unclosed", "bad.yaml"))
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "none.yaml")


# One bad value of each kind: (entry, the field-naming part of the message). VID is a real video.
BAD_VALUES = [
    ("{id: abc, video: VID, meta: [1, 2], parties: [{audio: video}]}",
     "recording 1 (id 'abc'): meta must be a mapping (key: value), got [1, 2]"),
    ("{id: abc, video: VID, parties: [{audio: {path: video, offset: abc}}]}",
     "recording 1 (id 'abc'), party 1, audio: offset must be a number of seconds, got 'abc'"),
    ("{id: abc, video: VID, parties: [{audio: {path: video, offset: .nan}}]}",
     "recording 1 (id 'abc'), party 1, audio: offset must be a number of seconds, got nan"),
    ("{id: abc, video: VID, parties: [{audio: video, self_voice: 'false'}]}",
     "recording 1 (id 'abc'), party 1: self_voice must be true or false written without quotes, got the string 'false'"),
    ("{id: abc, video: VID, parties: [{audio: video, face: 'true'}]}",
     "recording 1 (id 'abc'), party 1: face must be true or false written without quotes, got the string 'true'"),
    ("{id: abc, video: VID, parties: [{audio: video, face: 1}]}",
     "recording 1 (id 'abc'), party 1: face must be true or false, got 1"),
    ("{id: abc, video: VID, parties: [{audio: {path: video, channel: -1}}]}",
     "recording 1 (id 'abc'), party 1, audio: channel must be a whole number >= 0"),
    ("{id: abc, video: VID, parties: [{audio: {path: video, channel: true}}]}",
     "recording 1 (id 'abc'), party 1, audio: channel must be a whole number >= 0"),
    ("{id: abc, video: VID, parties: [{audio: video, face_index: -2}]}",
     "recording 1 (id 'abc'), party 1: face_index must be a whole number >= 0, got -2"),
    ("{id: abc, video: VID, parties: [{audio: video, region: [0, 0, .nan, 1]}]}",
     "recording 1 (id 'abc'), party 1: region [x0, y0, x1, y1] must be fractions"),
    ("{id: abc, video: VID, parties: [{audio: video, self_voise: false}]}",
     "recording 1 (id 'abc'), party 1: unknown key 'self_voise' (did you mean 'self_voice'?)"),
    ("{id: abc, video: VID, partys: [{audio: video}]}",
     "recording 1 (id 'abc'): unknown key 'partys' (did you mean 'parties'?)"),
    ("{id: abc, video: VID, parties: [{audio: {path: video, ofset: 1}}]}",
     "recording 1 (id 'abc'), party 1, audio: unknown key 'ofset' (did you mean 'offset'?)"),
    ("{id: abc, video: VID, parties: [{name: no, audio: video}]}",
     "recording 1 (id 'abc'), party 1: name must be a string of letters, digits, '_', '-' or '.', got false (put it in quotes"),
    ("{id: 7, video: VID, parties: [{audio: video}]}",
     "recording 1: id must be a string of letters, digits, '_', '-' or '.', got 7 (put it in quotes"),
    ("{id: abc, video: VID, split: test, parties: [{audio: video}]}",
     "recording 1 (id 'abc'): split must be 'train' or 'val', got 'test'"),
    ("{id: abc, video: [VID], parties: [{audio: video}]}",
     "recording 1 (id 'abc'): video must be a path (a string), got ["),
    ("{id: abc, video: VID, parties: [{audio: video}], meta: {day: 2024-05-01}}",
     "recording 1 (id 'abc'): meta must hold only text, numbers, booleans, lists and mappings"),
    ("{id: abc, parties: [{audio: video}]}",
     "recording 1 (id 'abc'): video is missing"),
    ("[not, a, mapping]",
     "recording 1: each recording must be a mapping (key: value), got ['not', 'a', 'mapping']"),
]


@pytest.mark.parametrize("entry, message", BAD_VALUES, ids=[m.split(": ", 1)[1][:40] for _, m in BAD_VALUES])
def test_each_bad_value_is_one_line_naming_file_entry_and_field(tmp_path, samples, entry, message):
    entry = entry.replace("VID", str(samples / "video" / "lp_d10.mp4"))
    m = _write(tmp_path, f"recordings:\n  - {entry}\n", "manifest.yaml")
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    text = str(e.value)
    assert text.startswith(f"{m}: {message}") and "\n" not in text


def test_errors_name_the_entry_by_position_and_id(tmp_path, samples):
    vid = samples / "video" / "lp_d10.mp4"
    good = f"{{id: ok, video: {vid}, parties: [{{audio: video}}]}}"
    m = _write(tmp_path, f"recordings:\n  - {good}\n  - {good.replace('ok', 'ok2')}\n"
                         f"  - {{id: abc, video: {vid}, parties: [{{audio: video}}, {{audio: {{path: video, offset: abc}}}}]}}\n")
    with pytest.raises(ManifestError, match=r"recording 3 \(id 'abc'\), party 2, audio: offset must be a number"):
        load_manifest(m)


def test_real_booleans_nulls_and_defaults(tmp_path, samples):
    vid = samples / "video" / "lp_d10.mp4"
    m = _write(tmp_path, f"""recordings:
  - id: a
    video: {vid}
    meta: null
    split: null
    parties:
      - {{audio: video, self_voice: false, face_index: null, region: null}}
      - {{audio: null, face: false}}
      - {{audio: silence, face: true, self_voice: true}}
""")
    a, b, c = load_manifest(m)[0].parties
    assert a.self_voice is False and a.face is True and a.face_index is None and a.region == NAMED_REGIONS["full"]
    assert b.face is False and b.audio is None and c.audio is None and c.self_voice is True
    assert [p.name for p in (a, b, c)] == ["a", "b", "c"]
    assert load_manifest(m)[0].meta == {} and load_manifest(m)[0].split is None


@pytest.mark.parametrize("doc, message", [
    ("recording: []", "unknown key 'recording' (did you mean 'recordings'?)"),
    ("root: [a]\nrecordings: [{id: a}]", "root must be a folder path (a string), got ['a']"),
    ("'just text'", "expected a mapping with a 'recordings' list, got 'just text'"),
])
def test_bad_top_level(tmp_path, doc, message):
    m = _write(tmp_path, doc + "\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    assert str(e.value) == f"{m}: {message}"


def test_jsonl_values_are_checked_too(tmp_path, samples):
    line = {"id": "x", "video": str(samples / "video" / "lp_d10.mp4"), "parties": [{"audio": "video", "self_voice": "false"}]}
    m = _write(tmp_path, json.dumps(line) + "\n", "m.jsonl")
    with pytest.raises(ManifestError, match=r"recording 1 \(id 'x'\), party 1: self_voice must be true or false"):
        load_manifest(m)


def test_prepare_command_refuses_a_bad_value_in_one_line(tmp_path, samples):
    m = _write(tmp_path, f"recordings:\n  - {{id: abc, video: {samples}/video/lp_d10.mp4, "
                         f"parties: [{{audio: video, self_voice: 'false'}}]}}\n", "bad.yaml")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "infp.cli", "prepare", str(m), str(out), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"infp: error: {m}: recording 1 (id 'abc'), party 1: self_voice must be true or false written without quotes, "
        "got the string 'false'"]
    assert not out.exists()
