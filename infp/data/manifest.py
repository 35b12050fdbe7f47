"""Recording manifests for ``infp prepare``: YAML/JSON/JSONL -> validated ``Recording`` objects."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infp.errors import ManifestError

VIDEO_AUDIO = "video"
"""Audio spec meaning "the recording's own audio track"."""

NAMED_REGIONS = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class AudioSpec:
    """Where a party's voice is: a file (or the video's own track), a channel, an offset in seconds."""

    path: Path | None  # None: the video's own audio track
    channel: int | None = None  # None: average of all channels
    offset: float = 0.0  # seconds; > 0 delays the audio against the video


@dataclass(frozen=True)
class Party:
    """One person of a recording: their voice and (optionally) where their face is."""

    name: str
    audio: AudioSpec | None  # None: this person never speaks (silence)
    face: bool = True  # False: an off-screen partner, audio only
    region: tuple[float, float, float, float] = NAMED_REGIONS["full"]  # x0, y0, x1, y1 as fractions
    face_index: int | None = None  # within the region: None = largest, i = i-th from the left
    self_voice: bool = True  # False: the face speaks but ``audio`` is not its voice (motion-only clip)


@dataclass(frozen=True)
class Recording:
    """One conversation recording: a video, its parties and an optional fixed split."""

    id: str
    video: Path
    parties: tuple[Party, ...]
    split: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        out = [self.video]
        out += [p.audio.path for p in self.parties if p.audio is not None and p.audio.path is not None]
        return out


def _err(manifest: Path, where: str, problem: str) -> ManifestError:
    return ManifestError(f"{where}: {problem}", manifest)


def _audio(value: Any, base: Path, manifest: Path, where: str) -> AudioSpec | None:
    if value is None or value == "silence":
        return None
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict) or "path" not in value:
        raise _err(manifest, where, f"audio must be a path, 'video', 'silence' or {{path, channel, offset}}, got {value!r}")
    unknown = set(value) - {"path", "channel", "offset"}
    if unknown:
        raise _err(manifest, where, f"unknown audio keys {sorted(unknown)}")
    raw = value["path"]
    path = None if raw == VIDEO_AUDIO else (base / str(raw)).resolve()
    if path is not None and not path.is_file():
        raise _err(manifest, where, f"audio file not found: {path}")
    channel = value.get("channel")
    if channel is not None and (not isinstance(channel, int) or channel < 0):
        raise _err(manifest, where, f"channel must be a non-negative integer, got {channel!r}")
    return AudioSpec(path, channel, float(value.get("offset", 0.0)))


def _region(value: Any, manifest: Path, where: str) -> tuple[float, float, float, float]:
    if value is None:
        return NAMED_REGIONS["full"]
    if isinstance(value, str):
        if value not in NAMED_REGIONS:
            raise _err(manifest, where, f"region must be one of {sorted(NAMED_REGIONS)} or [x0, y0, x1, y1], got {value!r}")
        return NAMED_REGIONS[value]
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        x0, y0, x1, y1 = (float(v) for v in value)
        if 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1:
            return (x0, y0, x1, y1)
    raise _err(manifest, where, f"region [x0, y0, x1, y1] must be fractions with x0 < x1, y0 < y1 in [0, 1], got {value!r}")


_PARTY_KEYS = {"name", "audio", "face", "region", "face_index", "self_voice"}
_REC_KEYS = {"id", "video", "parties", "split", "meta"}


def parse_recordings(entries: list[Any], base: Path, manifest: Path) -> list[Recording]:
    """Validate raw manifest entries (dicts) into Recordings; paths are relative to ``base``."""
    out: list[Recording] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"recording {i + 1}"
        if not isinstance(entry, dict):
            raise _err(manifest, where, "each recording must be a mapping")
        unknown = set(entry) - _REC_KEYS
        if unknown:
            raise _err(manifest, where, f"unknown keys {sorted(unknown)}")
        rid = str(entry.get("id", ""))
        if not _ID.match(rid):
            raise _err(manifest, where, f"id must be letters, digits, '_', '-' or '.', got {rid!r}")
        where = f"recording {rid!r}"
        if rid in seen:
            raise _err(manifest, where, "duplicate id")
        seen.add(rid)
        if "video" not in entry:
            raise _err(manifest, where, "no video given")
        video = (base / str(entry["video"])).resolve()
        if not video.is_file():
            raise _err(manifest, where, f"video file not found: {video}")
        raw_parties = entry.get("parties")
        if not isinstance(raw_parties, list) or not raw_parties:
            raise _err(manifest, where, "parties must be a non-empty list")
        parties = []
        names: set[str] = set()
        for j, rp in enumerate(raw_parties):
            pw = f"{where}, party {j + 1}"
            if not isinstance(rp, dict):
                raise _err(manifest, pw, "each party must be a mapping")
            unknown = set(rp) - _PARTY_KEYS
            if unknown:
                raise _err(manifest, pw, f"unknown keys {sorted(unknown)}")
            name = str(rp.get("name", chr(ord("a") + j)))
            if not _ID.match(name) or name in names:
                raise _err(manifest, pw, f"party name must be unique letters/digits, got {name!r}")
            names.add(name)
            face_index = rp.get("face_index")
            if face_index is not None and (not isinstance(face_index, int) or face_index < 0):
                raise _err(manifest, pw, f"face_index must be a non-negative integer, got {face_index!r}")
            parties.append(Party(
                name=name,
                audio=_audio(rp.get("audio"), base, manifest, pw),
                face=bool(rp.get("face", True)),
                region=_region(rp.get("region"), manifest, pw),
                face_index=face_index,
                self_voice=bool(rp.get("self_voice", True)),
            ))
        if not any(p.face for p in parties):
            raise _err(manifest, where, "no party has a face (face: false everywhere)")
        split = entry.get("split")
        if split not in (None, "train", "val"):
            raise _err(manifest, where, f"split must be 'train' or 'val', got {split!r}")
        out.append(Recording(rid, video, tuple(parties), split, dict(entry.get("meta") or {})))
    return out


def load_manifest(path: str | Path) -> list[Recording]:
    """Read a manifest (.yaml/.yml/.json with a ``recordings`` list, or .jsonl one recording a line)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError("manifest not found", path)
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            entries = [json.loads(line) for line in text.splitlines() if line.strip()]
            base = path.parent
        else:
            doc = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
            if isinstance(doc, list):
                doc = {"recordings": doc}
            if not isinstance(doc, dict) or not isinstance(doc.get("recordings"), list):
                raise ManifestError("expected a 'recordings' list", path)
            entries = doc["recordings"]
            base = (path.parent / str(doc.get("root", "."))).resolve()
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ManifestError(f"cannot parse ({str(e).splitlines()[0]})", path) from None
    if not entries:
        raise ManifestError("lists no recordings", path)
    return parse_recordings(entries, base, path)
