"""Expression and behaviour controls of stage 2: what the user asks for, as the model's control array.

A control is a number in [0, 1] per name (``CONTROL_NAMES``: smile, brow, eyes, head_motion, yaw,
pitch), separately for speaking and for listening. 0 is the 5th and 1 the 95th percentile of that
measure over the training corpus (``infp.face.expression``: smile = mouth-corner lift, brow = eyebrow
height, eyes = eye openness, each relative to the face at rest; head_motion = how much the head turns
and nods; yaw / pitch = where the head points, 0.5 about straight). An absent control leaves it to the
model, as without controls.

Text form (CLI, config, the live page): ``smile=0.8,head_motion=0.5``; a name may carry a kind,
``speak.smile=0.2,listen.smile=0.9``; a preset name (``warm``) may come first: ``warm,head_motion=0.2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from infp.errors import SettingsError
from infp.face.expression import CONTROL_NAMES, KINDS

__all__ = ["CONTROL_NAMES", "KINDS", "PRESETS", "Controls"]


PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "neutral": {"speak": {"smile": 0.3, "brow": 0.4, "head_motion": 0.4},
                "listen": {"smile": 0.3, "brow": 0.4, "head_motion": 0.3}},
    "warm": {"speak": {"smile": 0.8, "brow": 0.6, "head_motion": 0.35},
             "listen": {"smile": 0.9, "brow": 0.6, "head_motion": 0.4}},
    "calm": {"speak": {"smile": 0.4, "head_motion": 0.1},
             "listen": {"smile": 0.4, "head_motion": 0.05}},
    "excited": {"speak": {"smile": 0.9, "brow": 0.9, "eyes": 0.8, "head_motion": 1.0},
                "listen": {"smile": 0.8, "brow": 0.8, "eyes": 0.8, "head_motion": 0.8}},
    "serious": {"speak": {"smile": 0.0, "brow": 0.2, "head_motion": 0.1},
                "listen": {"smile": 0.0, "brow": 0.2, "head_motion": 0.05}},
}
"""Named settings (a warm listener smiles and nods; a calm speaker moves the head little; ...)."""


def _check(name: str, value: object) -> float:
    if name not in CONTROL_NAMES:
        raise SettingsError(f"unknown control {name!r}; the controls are {', '.join(CONTROL_NAMES)}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingsError(f"control {name} must be a number in [0, 1], not {value!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise SettingsError(f"control {name} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class Controls:
    """Control values for speaking and for listening (names missing from a dict: absent)."""

    speak: Mapping[str, float] = field(default_factory=dict)
    listen: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "speak", {k: _check(k, v) for k, v in dict(self.speak).items()})
        object.__setattr__(self, "listen", {k: _check(k, v) for k, v in dict(self.listen).items()})

    @classmethod
    def preset(cls, name: str) -> Controls:
        if name not in PRESETS:
            raise SettingsError(f"unknown preset {name!r}; the presets are {', '.join(PRESETS)}")
        return cls(**PRESETS[name])

    @classmethod
    def parse(cls, text: str | None, kind: str | None = None) -> Controls:
        """``"smile=0.8,listen.head_motion=0.5"`` / ``"warm,smile=0.2"`` -> Controls; ``kind`` ("speak" or
        "listen") puts names without a kind on that side only (default: both)."""
        if kind is not None and kind not in KINDS:
            raise SettingsError(f"kind must be one of {KINDS}, not {kind!r}")
        out = cls()
        for part in (p.strip() for p in (text or "").split(",")):
            if not part:
                continue
            if "=" not in part:
                if kind is not None:
                    raise SettingsError(f"a preset ({part!r}) sets both speaking and listening; use --control")
                out = out.merged(cls.preset(part))
                continue
            key, _, raw = (s.strip() for s in part.partition("="))
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"control {key}: {raw!r} is not a number") from None
            sides = (kind,) if kind else KINDS
            if "." in key:
                side, _, key = key.partition(".")
                if side not in KINDS:
                    raise SettingsError(f"control {side}.{key}: the kind must be one of {KINDS}")
                sides = (side,)
            out = out.merged(cls(**{s: {key: value} for s in sides}))
        return out

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Controls:
        """``{"speak": {...}, "listen": {...}}`` (as in OUT.json and the WebSocket protocol)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or set(data) - set(KINDS):
            raise SettingsError(f"controls must be an object with keys {KINDS}, not {data!r}")
        for k in KINDS:
            if not isinstance(data.get(k, {}), Mapping):
                raise SettingsError(f"controls.{k} must be an object of name: value, not {data[k]!r}")
        return cls(speak=data.get("speak", {}), listen=data.get("listen", {}))

    def merged(self, other: Controls) -> Controls:
        """These controls with ``other``'s values on top."""
        return Controls({**self.speak, **other.speak}, {**self.listen, **other.listen})

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"speak": dict(self.speak), "listen": dict(self.listen)}

    def __bool__(self) -> bool:
        return bool(self.speak or self.listen)

    def array(self) -> np.ndarray:
        """(2, K) float32 in ``KINDS`` x ``CONTROL_NAMES`` order, NaN where absent."""
        out = np.full((len(KINDS), len(CONTROL_NAMES)), np.nan, dtype=np.float32)
        for r, side in enumerate((self.speak, self.listen)):
            for name, value in side.items():
                out[r, CONTROL_NAMES.index(name)] = value
        return out

    def __str__(self) -> str:
        parts = [f"{k}.{n}={v:g}" for k, side in zip(KINDS, (self.speak, self.listen)) for n, v in side.items()]
        return ",".join(parts)
