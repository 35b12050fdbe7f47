"""The sample corpus takes from ../shared/data only what SOURCES.md allows in shipped weights."""

import re

from infp.data.sample_corpus import HELD_OUT_TALKING, SHARED_CATALOG


def _licences(shared):
    """file path (relative to the data folder) -> (licence, 'in shipped weights' column) from SOURCES.md."""
    rows = {}
    for line in (shared / "SOURCES.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and re.match(r"^[\w.-]+/\S+\.\w+$", cells[0]):
            rows[cells[0]] = (cells[2], cells[6])
    return rows


def test_mixed_recordings_are_the_permissive_split_screen_clips(shared_media):
    rows = _licences(shared_media)
    dyadic = {f: v for f, v in rows.items() if f.startswith("dyadic/")}
    assert len(dyadic) == 6
    allowed = {f for f, (lic, ship) in dyadic.items() if ship.startswith("yes") and re.search(r"Apache|MIT", lic)}
    assert set(SHARED_CATALOG.mixed.values()) == allowed and len(allowed) == 3
    for f in SHARED_CATALOG.mixed.values():
        assert (shared_media / f).is_file()


def test_mixed_recordings_enter_the_manifest_as_two_parties_of_one_track(tmp_path, shared_media, monkeypatch):
    import yaml

    from infp.data import sample_corpus as sc

    monkeypatch.setattr(sc, "own_voice_recordings", lambda *a, **k: [])  # the sync check is slow and tested elsewhere
    monkeypatch.setattr(sc, "dub_talking_face", lambda opening, voices, pool: (pool.take(16000), pool.take(16000),
                                                                                 opening > 0))
    manifest = sc.compose_recordings(shared_media, tmp_path, SHARED_CATALOG)
    recs = {r["id"]: r for r in yaml.safe_load(manifest.read_text())["recordings"]}
    mixed = [r for rid, r in recs.items() if rid.startswith("mixed_")]
    assert len(mixed) == 3
    for r in mixed:
        assert [p["audio"] for p in r["parties"]] == ["mixed", "mixed"]
        assert [p["region"] for p in r["parties"]] == ["left", "right"]
        assert r["split"] == "train"  # the held-out speakers are those of HELD_OUT_TALKING
    assert not any(name in r["video"] for r in mixed for name in HELD_OUT_TALKING)

