"""The JSON messages clients may send to the live demo, as a table, and their validation.

Every text message on ``/ws`` (the page) and ``/ws/agent`` (an external voice agent) goes through
``parse`` before the server acts on it, so a malformed message (not JSON, not an object, an unknown
type or field, a wrong type, a non-finite number, a string or list too long) is answered with one
clear error and the session goes on. The tables below are the protocol's messages
(docs/PROTOCOL.md); a message type or field missing from them is refused. ``EVENTS`` lists the
conversation events the server sends, in the same form.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from infp.models.controls import CONTROL_NAMES, KINDS, PRESETS, Controls

MAX_TEXT_BYTES = 64 * 1024
"""Largest text message accepted (bytes); the protocol's messages are a few hundred."""

MAX_TTS_CHARS = 1000
MAX_FILES = 32
MAX_NAME_CHARS = 255

VOICE_PATTERN = r"[a-z]{2,3}(-[a-z0-9]+)*(\+[a-z0-9]+)?"
"""An espeak-ng voice such as ``en-us`` or ``en-gb+f3``: letters, digits, '-' and one '+' variant, never an option."""


class MessageError(ValueError):
    """A client message that does not follow the protocol; the server answers it with an error message."""


@dataclass(frozen=True)
class Field:
    """What one field of a message may hold.

    ``kind`` is ``"str"``, ``"bool"``, ``"int"``, ``"number"`` (int or float), ``"list"`` (of
    ``items``) or ``"object"`` (names in ``choices``, values as ``items``); ``nullable`` also allows
    JSON null. ``lo``/``hi`` bound numbers, ``max_len`` bounds strings (characters) and lists (items),
    ``min_len`` is the fewest; ``pattern`` and ``choices`` restrict strings.
    """

    kind: str
    required: bool = False
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None
    min_len: int = 0
    max_len: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    items: Field | None = None


def _stat() -> Field:
    return Field("number", nullable=True, lo=-1e9, hi=1e9)


def _controls() -> dict[str, Field]:
    """``controls``: a preset and/or values per name for speaking and listening (null: the model's own choice)."""
    values = Field("object", choices=CONTROL_NAMES, items=Field("number", nullable=True, lo=0, hi=1))
    return {"preset": Field("str", choices=tuple(PRESETS)), "speak": values, "listen": values}


PAGE: dict[str, dict[str, Field]] = {
    "play": {"files": Field("list", required=True, min_len=1, max_len=MAX_FILES,
                            items=Field("str", min_len=1, max_len=MAX_NAME_CHARS))},
    "say": {"text": Field("str", required=True, max_len=MAX_TTS_CHARS),
            "voice": Field("str", max_len=40, pattern=VOICE_PATTERN)},
    "stop": {},
    "record": {"on": Field("bool")},
    "client_stats": {k: _stat() for k in ("fps", "latency_p50", "latency_p95", "late_on_page", "av_offset_ms", "received")},
    "controls": _controls(),
}
"""Messages of the page's session (``/ws``)."""

AGENT: dict[str, dict[str, Field]] = {
    "format": {"sample_rate": Field("int", lo=8000, hi=192000), "encoding": Field("str", choices=("s16le", "f32le"))},
    "clear": {},
    "status": {},
    "controls": _controls(),
}
"""Messages of an external voice agent (``/ws/agent``)."""


def _event(*reasons: str) -> dict[str, Field]:
    fields = {"t": Field("number", required=True, lo=0, hi=1e9), "s": Field("int", required=True, lo=0, hi=2**53),
              "clock_s": Field("number", required=True, lo=0, hi=1e9)}
    if reasons:
        fields["reason"] = Field("str", required=True, choices=reasons)
    return fields


EVENTS: dict[str, dict[str, Field]] = {
    "user_speech_start": _event(),
    "user_speech_end": _event("silence"),
    "agent_speech_start": _event(),
    "agent_speech_end": _event("silence", "clear"),
}
"""Conversation events the server sends on ``/ws`` and ``/ws/agent`` (``infp.demo.events``): ``t`` and ``s``
where the speech started or ended (session seconds, session sample), ``clock_s`` when it was decided.
Not client messages: the table documents them and lets a client check them with ``parse``."""


def _short(value: Any) -> str:
    """A value for an error message, cut so that a hostile message cannot make a huge one."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _check(where: str, value: Any, f: Field) -> None:
    """Raise MessageError when ``value`` does not fit ``f`` (``where`` names the field in the message)."""
    if value is None:
        if not f.nullable:
            raise MessageError(f"{where} must not be null")
        return
    if f.kind == "bool":
        ok = isinstance(value, bool)
    elif f.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif f.kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif f.kind == "str":
        ok = isinstance(value, str)
    elif f.kind == "object":
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, list)
    if not ok:
        want = {"bool": "true or false", "int": "an integer", "number": "a number", "str": "a string", "list": "an array",
                "object": "an object"}
        raise MessageError(f"{where} must be {want[f.kind]}, not {_json_kind(value)}")
    if f.kind in ("int", "number"):
        if isinstance(value, float) and not math.isfinite(value):
            raise MessageError(f"{where} must be a finite number")
        if (f.lo is not None and value < f.lo) or (f.hi is not None and value > f.hi):
            raise MessageError(f"{where} must be between {f.lo:g} and {f.hi:g}, not {_short(value)}")
    if f.kind in ("str", "list"):
        unit = "characters" if f.kind == "str" else "items"
        if f.max_len is not None and len(value) > f.max_len:
            raise MessageError(f"{where} has {len(value)} {unit}; at most {f.max_len} are allowed")
        if len(value) < f.min_len:
            raise MessageError(f"{where} must not be empty" if f.min_len == 1
                               else f"{where} needs at least {f.min_len} {unit}")
    if f.kind == "str":
        if f.choices is not None and value not in f.choices:
            raise MessageError(f"{where} must be one of {', '.join(f.choices)}, not {_short(value)}")
        if f.pattern is not None and not re.fullmatch(f.pattern, value):
            raise MessageError(f"{where} {_short(value)} is not valid")
    if f.kind == "list" and f.items is not None:
        for i, item in enumerate(value):
            _check(f"{where}[{i}]", item, f.items)
    if f.kind == "object":
        for key, item in value.items():
            if f.choices is not None and key not in f.choices:
                raise MessageError(f"{where}: unknown name {_short(key)} (allowed: {', '.join(f.choices)})")
            if f.items is not None:
                _check(f"{where}.{key}", item, f.items)


def _no_constant(name: str) -> None:
    raise MessageError(f"{name} is not a number JSON allows")


def loads(data: str | bytes) -> Any:
    """JSON of a client message: bounded in size, NaN/Infinity refused, too deep nesting refused."""
    if len(data) > MAX_TEXT_BYTES:
        raise MessageError(f"message of {len(data)} bytes; at most {MAX_TEXT_BYTES} are allowed")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise MessageError("message is nested too deeply") from None
    except MessageError:
        raise
    except ValueError as e:
        raise MessageError(f"message is not valid JSON ({e})") from None


def parse(data: str | bytes, table: dict[str, dict[str, Field]]) -> dict[str, Any]:
    """The message in ``data`` checked against ``table``; MessageError says what is wrong with it."""
    msg = loads(data)
    if not isinstance(msg, dict):
        example = f'{{"type": "{next(iter(table))}"}}'
        raise MessageError(f"a message must be a JSON object such as {example}, not {_json_kind(msg)}")
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in table:
        raise MessageError(f"unknown message type {_short(kind)} (expected one of: {', '.join(table)})")
    fields = table[kind]
    for key, value in msg.items():
        if key == "type":
            continue
        if key not in fields:
            allowed = ", ".join(fields) or "none"
            raise MessageError(f"{kind}: unknown field {_short(key)} (allowed: {allowed})")
        _check(f"{kind}: {key}", value, fields[key])
    for key, f in fields.items():
        if f.required and key not in msg:
            raise MessageError(f"{kind}: {key} is missing")
    return msg


def controls_of(msg: dict[str, Any]) -> Controls:
    """The controls a ``controls`` message asks for (checked against the table): the preset, if any, with
    the given values on top; a name given as null is left to the model, as one not given at all."""
    out = Controls.preset(msg["preset"]) if "preset" in msg else Controls()
    sides = {k: msg.get(k, {}) for k in KINDS}
    out = out.merged(Controls(**{k: {n: v for n, v in side.items() if v is not None} for k, side in sides.items()}))
    return Controls(**{k: {n: v for n, v in getattr(out, k).items() if sides[k].get(n, 0) is not None} for k in KINDS})
