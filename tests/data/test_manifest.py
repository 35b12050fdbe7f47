import json

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
    ("{id: a, video: VID, parties: [{audio: video, colour: red}]}", "unknown keys"),
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
