"""Recording manifests for ``infp prepare``: YAML/JSON/JSONL -> validated ``Recording`` objects.

Every value goes through one declarative schema (:data:`RECORDING_FIELDS`, :data:`PARTY_FIELDS`,
:data:`AUDIO_FIELDS`): a manifest is written by hand, so a wrong value must stop the run with one line
that names the file, the entry and the field, never with a traceback from deep inside ``prepare`` nor,
worse, be taken silently (Python's ``bool("false")`` is true; YAML reads ``name: no`` as false).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from infp.errors import ManifestError

VIDEO_AUDIO = "video"
"""Audio spec meaning "the recording's own audio track"."""

SILENCE = "silence"
"""Audio spec meaning "this party never speaks" (same as ``null``)."""

MIXED = "mixed"
"""Audio spec meaning "the video's own track, shared with the other face party": who speaks when is
assigned from the faces (``infp.data.turns``); same as ``{path: video, mixed: true}``."""

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
    mixed: bool = False  # one track shared by two faces: the party's turns are assigned from the faces


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


# --------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Kind:
    """A value type of the schema: how to recognise it and how to name it in a message."""

    name: str  # as in "offset must be <name>"
    accepts: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML true is an int to Python


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


STRING = Kind("a string", lambda v: isinstance(v, str))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
INTEGER = Kind("a whole number", _is_int)
NUMBER = Kind("a finite number", _is_number)
MAPPING = Kind("a mapping of key: value", lambda v: isinstance(v, dict))
LIST = Kind("a list", lambda v: isinstance(v, list))


@dataclass(frozen=True)
class Field:
    """One manifest key: accepted kinds, whether it is required, its default, its allowed values.

    ``null`` (or leaving the key out) means the default wherever ``nullable``; ``what`` replaces the
    generic type name in messages (``offset must be a number of seconds``)."""

    kinds: tuple[Kind, ...]
    required: bool = False
    default: Any = None
    nullable: bool = True
    minimum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: re.Pattern | None = None
    what: str | None = None

    def describe(self) -> str:
        return self.what or " or ".join(k.name for k in self.kinds)


_NAME = "letters, digits, '_', '-' or '.'"
RECORDING_FIELDS: dict[str, Field] = {
    "id": Field((STRING,), required=True, nullable=False, pattern=_ID, what=f"a string of {_NAME}"),
    "video": Field((STRING,), required=True, nullable=False, what="a path (a string)"),
    "parties": Field((LIST,), required=True, nullable=False, what="a non-empty list of parties"),
    "split": Field((STRING,), choices=("train", "val"), what="'train' or 'val'"),
    "meta": Field((MAPPING,), default={}, what="a mapping (key: value)"),
}
PARTY_FIELDS: dict[str, Field] = {
    "name": Field((STRING,), pattern=_ID, what=f"a string of {_NAME}"),
    "audio": Field((STRING, MAPPING),
                   what="a path, 'video', 'mixed', 'silence', null or {path, channel, offset, mixed}"),
    "face": Field((BOOLEAN,), default=True, nullable=False),
    "region": Field((STRING, LIST), default="full",
                    what=f"one of {sorted(NAMED_REGIONS)} or [x0, y0, x1, y1]"),
    "face_index": Field((INTEGER,), minimum=0, what="a whole number >= 0"),
    "self_voice": Field((BOOLEAN,), default=True, nullable=False),
}
AUDIO_FIELDS: dict[str, Field] = {
    "path": Field((STRING,), required=True, nullable=False, what="a path or 'video' (a string)"),
    "channel": Field((INTEGER,), minimum=0, what="a whole number >= 0 (null: all channels averaged)"),
    "offset": Field((NUMBER,), default=0.0, nullable=False, what="a number of seconds"),
    "mixed": Field((BOOLEAN,), default=False, nullable=False),
}
TOP_FIELDS: dict[str, Field] = {
    "root": Field((STRING,), default=".", what="a folder path (a string)"),
    "recordings": Field((LIST,), required=True, nullable=False, what="a list of recordings"),
}

_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _show(value: Any) -> str:
    """A value as the manifest's author wrote it (YAML words, not Python's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _problem(key: str, value: Any, spec: Field) -> str | None:
    """What is wrong with one present value, or None."""
    if value is None:
        return None if spec.nullable else f"{key} must be {spec.describe()}, got null"
    if not any(k.accepts(value) for k in spec.kinds):
        if BOOLEAN in spec.kinds and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return f"{key} must be true or false written without quotes, got the string {value!r}"
        if spec.kinds == (STRING,) and isinstance(value, (bool, int, float)):
            return f"{key} must be {spec.describe()}, got {_show(value)} (put it in quotes to keep it as text)"
        return f"{key} must be {spec.describe()}, got {_show(value)}"
    outside = ((spec.minimum is not None and value < spec.minimum)
               or (spec.choices is not None and value not in spec.choices)
               or (spec.pattern is not None and not spec.pattern.match(value)))
    return f"{key} must be {spec.describe()}, got {_show(value)}" if outside else None


def _unknown_key(key: Any, schema: Mapping[str, Field]) -> str:
    near = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(schema)})"
    return f"unknown key {str(key)!r}{hint}"


def check_fields(raw: Any, schema: Mapping[str, Field], what: str, fail: Callable[[str], ManifestError]) -> dict[str, Any]:
    """Validate one mapping against ``schema``; returns every schema key with its value or default.

    ``fail(problem)`` makes the error that names the file and the entry; the first problem is raised."""
    if not isinstance(raw, dict):
        raise fail(f"{what} must be a mapping (key: value), got {_show(raw)}")
    for key in raw:
        if key not in schema:
            raise fail(_unknown_key(key, schema))
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        if key not in raw:
            if spec.required:
                raise fail(f"{key} is missing ({spec.describe()})")
            out[key] = spec.default
            continue
        problem = _problem(key, raw[key], spec)
        if problem:
            raise fail(problem)
        out[key] = spec.default if raw[key] is None else raw[key]
    return out


# --------------------------------------------------------------------------- entries


def _err(manifest: Path, where: str, problem: str) -> ManifestError:
    return ManifestError(f"{where}: {problem}", manifest)


def _failer(manifest: Path, where: str) -> Callable[[str], ManifestError]:
    return lambda problem: _err(manifest, where, problem)


def _audio(value: Any, base: Path, manifest: Path, where: str) -> AudioSpec | None:
    """null / 'silence' / 'video' / 'mixed' / a path / {path, channel, offset, mixed} -> AudioSpec (None: silence)."""
    if value is None or value == SILENCE:
        return None
    if value == MIXED:
        value = {"path": VIDEO_AUDIO, "mixed": True}
    if isinstance(value, str):
        value = {"path": value}
    spec = check_fields(value, AUDIO_FIELDS, "audio", _failer(manifest, f"{where}, audio"))
    raw = spec["path"]
    path = None if raw == VIDEO_AUDIO else (base / raw).resolve()
    if path is not None and not path.is_file():
        raise _err(manifest, where, f"audio file not found: {path}")
    return AudioSpec(path, spec["channel"], float(spec["offset"]), spec["mixed"])


def _region(value: str | list, manifest: Path, where: str) -> tuple[float, float, float, float]:
    if isinstance(value, str):
        if value not in NAMED_REGIONS:
            raise _err(manifest, where, f"region must be one of {sorted(NAMED_REGIONS)} or [x0, y0, x1, y1], got {value!r}")
        return NAMED_REGIONS[value]
    if len(value) == 4 and all(_is_number(v) for v in value):
        x0, y0, x1, y1 = (float(v) for v in value)
        if 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1:
            return (x0, y0, x1, y1)
    raise _err(manifest, where, f"region [x0, y0, x1, y1] must be fractions with x0 < x1, y0 < y1 in [0, 1], got {value!r}")


def _meta(value: dict, manifest: Path, where: str) -> dict:
    """The free-form ``meta`` goes into every clip's meta.json: it must be plain JSON (a YAML date is not)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise _err(manifest, where, f"meta must hold only text, numbers, booleans, lists and mappings ({e})") from None


def _party(raw: Any, j: int, names: set[str], base: Path, manifest: Path, where: str) -> Party:
    pw = f"{where}, party {j + 1}"
    v = check_fields(raw, PARTY_FIELDS, "each party", _failer(manifest, pw))
    name = v["name"] if v["name"] is not None else chr(ord("a") + j)
    if name in names:
        raise _err(manifest, pw, f"party name {name!r} is used twice in this recording")
    names.add(name)
    return Party(name=name, audio=_audio(v["audio"], base, manifest, pw), face=v["face"],
                 region=_region(v["region"], manifest, pw), face_index=v["face_index"], self_voice=v["self_voice"])


def _recording(entry: Any, i: int, seen: set[str], base: Path, manifest: Path) -> Recording:
    rid = entry.get("id") if isinstance(entry, dict) else None
    where = f"recording {i + 1}" + (f" (id {rid!r})" if isinstance(rid, str) else "")
    v = check_fields(entry, RECORDING_FIELDS, "each recording", _failer(manifest, where))
    if rid in seen:
        raise _err(manifest, where, "duplicate id")
    seen.add(rid)
    video = (base / v["video"]).resolve()
    if not video.is_file():
        raise _err(manifest, where, f"video file not found: {video}")
    if not v["parties"]:
        raise _err(manifest, where, f"parties must be {RECORDING_FIELDS['parties'].describe()}, got []")
    names: set[str] = set()
    parties = tuple(_party(rp, j, names, base, manifest, where) for j, rp in enumerate(v["parties"]))
    if not any(p.face for p in parties):
        raise _err(manifest, where, "no party has a face (face: false everywhere)")
    _check_mixed(parties, manifest, where)
    return Recording(rid, video, parties, v["split"], _meta(v["meta"], manifest, where))


def _check_mixed(parties: tuple[Party, ...], manifest: Path, where: str) -> None:
    """Mixed-track parties: exactly two, both with a face, both naming the same track."""
    mixed = [(j, p) for j, p in enumerate(parties) if p.audio is not None and p.audio.mixed]
    if not mixed:
        return
    for j, p in mixed:
        if not p.face:
            raise _err(manifest, f"{where}, party {j + 1}",
                       "audio: mixed needs the party's face (turns are assigned from it), got face: false")
    if len(mixed) != 2:
        raise _err(manifest, where, f"audio: mixed is for two faces sharing one track, got {len(mixed)} mixed "
                                    f"part{'y' if len(mixed) == 1 else 'ies'}")
    (_, a), (j, b) = mixed
    if a.audio != b.audio:
        raise _err(manifest, f"{where}, party {j + 1}",
                   f"audio: mixed parties must share one track (same path, channel and offset as party {a.name!r})")


def parse_recordings(entries: list[Any], base: Path, manifest: Path) -> list[Recording]:
    """Validate raw manifest entries (dicts) into Recordings; paths are relative to ``base``."""
    seen: set[str] = set()
    return [_recording(entry, i, seen, base, manifest) for i, entry in enumerate(entries)]


def _read_entries(path: Path) -> tuple[list[Any], Path]:
    """The raw recording entries of a manifest file and the folder their paths are relative to."""
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()], path.parent
        doc = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ManifestError(f"cannot parse ({str(e).splitlines()[0]})", path) from None
    if isinstance(doc, list):
        doc = {"recordings": doc}
    if not isinstance(doc, dict):
        raise ManifestError(f"expected a mapping with a 'recordings' list, got {_show(doc)}", path)
    top = check_fields(doc, TOP_FIELDS, "the manifest", lambda problem: ManifestError(problem, path))
    return top["recordings"], (path.parent / top["root"]).resolve()


def load_manifest(path: str | Path) -> list[Recording]:
    """Read a manifest (.yaml/.yml/.json with a ``recordings`` list, or .jsonl one recording a line)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError("manifest not found", path)
    entries, base = _read_entries(path)
    if not entries:
        raise ManifestError("lists no recordings", path)
    return parse_recordings(entries, base, path)
