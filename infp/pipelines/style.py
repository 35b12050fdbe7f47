"""Style from a reference video: the stage-2 control values of the face in a video.

The video's largest face is tracked with the face mesh, its expression and head measures
(``infp.face.expression``) are taken per frame at 25 fps, and the video's own audio track tells, with
the voice activity detector, which frames the face speaks in (frame t = samples [640 t, 640 (t + 1))):
speech on the track while the face's mouth moves like speech (``talking_frames``), so that a video of a
person listening to someone else's voice counts as listening.
As in training, levels are measured over windows of ``WINDOW`` frames (4 s), separately over the
speaking and the listening frames, relative to the face's rest (its frames with the most closed mouth);
their mean per kind is mapped to 0..1 for the controls ``STYLE_CONTROLS``. With a *style calibration* of the weights
(``style_calibration.json`` in the stage-2 folder, made by ``train/calibrate_style.py``) the mapping is
the model's own measured response: for each control, the levels its rendered output shows at a few
settings, measured in the same way; the value chosen is the one whose output level is the reference's
(clipped to the settings' range), and the rendering uses the control guidance weight it was calibrated
at. Without one, or for a control whose output level does not rise with its setting, the level is
mapped by the network's corpus percentiles (``control_lo`` / ``control_hi``) and clipped. A kind with
too few frames (a video in which the face never speaks) stays absent. A video without an audio track
counts as listening throughout.

A calibration is one portrait's response with one control set at a time. ``fit_style`` then tunes the
style's smile and head motion on the user's own portrait and dialogue: a few renderings that draw one
frame in three, measured as the reference was, each moving the controls by their remaining gap.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.errors import InfpError, NoFaceError
from infp.face.expression import (
    CONTROL_NAMES,
    KINDS,
    LEVEL_SPAN,
    MIN_FRAMES,
    frame_measures,
    levels,
    normalise,
    rest_measures,
    talking_frames,
)
from infp.face.expression import track_landmarks as track_frames
from infp.face.landmarks import mouth_opening
from infp.models.controls import Controls
from infp.models.pretrained import WEIGHTS_FILE, checkpoint_id

if TYPE_CHECKING:
    from infp.models.audio_to_motion import AudioToMotionNet
    from infp.pipelines.render import Pipeline

log = logging.getLogger(__name__)

MAX_SECONDS = 60.0
"""Seconds of a reference video that are read (from its start)."""

WINDOW = LEVEL_SPAN
"""Frames (4 s) per measured window: those of the training items."""

WINDOW_STRIDE = 25
"""Frames between the centres of the measured windows."""

STYLE_CONTROLS = ("smile", "brow", "head_motion")
"""The controls a reference video sets: its expression and how much its head moves. Eye openness and
head direction are left to the model: measured against a reference's own rest frames they were often
beyond the range the output reaches, so they were pinned at 0 or 1, and they moved the head and the
smile more than the measures they stand for."""

CALIBRATION_FILE = "style_calibration.json"
"""In a stage-2 checkpoint folder: the model's measured response to its controls (``StyleCalibration``)."""

CALIBRATION_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Control settings at which a calibration renders the output."""

CALIBRATION_SCALE = 6.0
"""Control guidance weight of a calibration (and of a style rendered with it): more reach than the
default weight, so that a lively reference can be followed; the calibration chooses values that
ask no more than the reference shows."""


@dataclass
class VideoStyle:
    """Control values measured from a video, with what they came from."""

    path: str
    controls: Controls
    raw: np.ndarray  # (2, K) raw levels, rows KINDS, columns CONTROL_NAMES (NaN: too few frames of a kind)
    frames: int  # frames read
    face_frames: int  # frames with a face
    speaking_frames: int  # face frames with speech on the video's track
    has_audio: bool
    control_scale: float | None = None  # the calibration's control guidance weight, if the values came from one

    def to_dict(self) -> dict:
        """For reports (OUT.json): the values, the raw levels and the frame counts."""
        raw = {k: {n: round(float(v), 5) for n, v in zip(CONTROL_NAMES, row) if np.isfinite(v)}
               for k, row in zip(KINDS, self.raw)}
        return {"path": self.path, "controls": self.controls.to_dict(), "raw": raw, "frames": self.frames,
                "face_frames": self.face_frames, "speaking_frames": self.speaking_frames, "has_audio": self.has_audio,
                "mapping": "percentiles" if self.control_scale is None else "calibration",
                **({} if self.control_scale is None else {"control_scale": self.control_scale})}


def track_landmarks(path: str | Path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """(T, 478, 2) face-mesh landmarks of the video's largest face at 25 fps (NaN where no face)."""
    from infp.io import iter_frames

    return track_frames(iter_frames(path, fps=FPS, duration=max_seconds))


def speech_frames(path: str | Path, n_frames: int, threshold: float = SPEECH_THRESHOLD) -> np.ndarray | None:
    """(T,) bool: frames whose audio (the video's own track, mixed to mono) has speech; None without a track."""
    from infp.audio.vad import frame_speech_prob
    from infp.io import read_audio, to_mono, video_info

    if not video_info(path).has_audio:
        return None
    audio = to_mono(read_audio(path, allow_empty=True))[: n_frames * SAMPLES_PER_FRAME]
    audio = np.pad(audio, (0, n_frames * SAMPLES_PER_FRAME - len(audio)))
    return frame_speech_prob(audio, n_frames)[:, 0] > threshold


def video_levels(measures: np.ndarray, rest: np.ndarray, speaking: np.ndarray, span: int = WINDOW,
                 stride: int = WINDOW_STRIDE) -> np.ndarray:
    """(2, K) raw levels: the mean over windows of ``span`` frames (as the training windows) per kind."""
    n = len(measures)
    starts = sorted({max(0, min(c - span // 2, n - span)) for c in range(0, max(1, n), stride)})
    per_window = np.stack([levels(measures[s:s + span], rest, speaking[s:s + span]) for s in starts])
    with warnings.catch_warnings():  # a kind absent from every window stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_window, axis=0).astype(np.float32)


def output_levels(landmarks: np.ndarray, portrait_landmarks: np.ndarray, speaking: np.ndarray) -> np.ndarray:
    """(2, K) levels of rendered frames, measured as a reference video's are (windows of ``WINDOW``
    frames, per kind), relative to the portrait: the rest the model's motion starts from."""
    rest = frame_measures(np.asarray(portrait_landmarks)[None])[0]
    return video_levels(frame_measures(landmarks), rest, np.asarray(speaking, dtype=bool))


@dataclass
class StyleCalibration:
    """A stage-2 network's measured response to its controls: ``levels[r, k, j]`` is the output level of
    control ``CONTROL_NAMES[k]`` for kind ``KINDS[r]`` with that control alone set to ``values[j]``
    (NaN: not measured), rendered with the control guidance weight ``control_scale``; ``none`` the
    levels without controls."""

    values: tuple[float, ...]
    levels: np.ndarray  # (2, K, V)
    none: np.ndarray  # (2, K)
    control_scale: float
    source: dict = field(default_factory=dict)

    def usable(self) -> np.ndarray:
        """(2, K) bool: the control's output level was measured and rises from its lowest to its highest setting."""
        lv = self.levels
        return np.isfinite(lv).all(axis=-1) & (lv[..., -1] > lv[..., 0])

    def controls(self, raw: np.ndarray) -> np.ndarray:
        """(2, K) reference levels -> (2, K) control values (NaN where the level or a usable curve is missing).

        The curve is made non-decreasing (running maximum) and inverted piecewise linearly; a level
        beyond the curve's ends gets the end's value."""
        out = np.full(raw.shape, np.nan, np.float32)
        ok = self.usable()
        values = np.asarray(self.values, np.float64)
        for r in range(raw.shape[0]):
            for k in range(raw.shape[1]):
                if not (ok[r, k] and np.isfinite(raw[r, k])):
                    continue
                curve = np.maximum.accumulate(self.levels[r, k].astype(np.float64))
                curve = curve + 1e-9 * np.arange(len(curve))  # strictly increasing for the inversion
                out[r, k] = np.interp(float(raw[r, k]), curve, values)
        return out

    def to_dict(self) -> dict:
        def table(a: np.ndarray) -> dict:
            return {kind: {n: (np.round(row, 6).tolist() if np.ndim(row) else round(float(row), 6))
                           for n, row in zip(CONTROL_NAMES, a[r]) if np.all(np.isfinite(row))}
                    for r, kind in enumerate(KINDS)}

        return {"values": list(self.values), "control_scale": self.control_scale, "levels": table(self.levels),
                "none": table(self.none), "source": self.source}

    @classmethod
    def from_dict(cls, doc: dict) -> StyleCalibration:
        values = tuple(float(v) for v in doc["values"])
        if len(values) < 2 or list(values) != sorted(set(values)):
            raise ValueError("values must be at least two increasing settings")
        levels = np.full((len(KINDS), len(CONTROL_NAMES), len(values)), np.nan, np.float32)
        none = np.full((len(KINDS), len(CONTROL_NAMES)), np.nan, np.float32)
        for r, kind in enumerate(KINDS):
            for name, row in doc["levels"].get(kind, {}).items():
                if len(row) != len(values):
                    raise ValueError(f"levels.{kind}.{name} has {len(row)} entries for {len(values)} values")
                levels[r, CONTROL_NAMES.index(name)] = row
            for name, v in doc["none"].get(kind, {}).items():
                none[r, CONTROL_NAMES.index(name)] = float(v)
        return cls(values, levels, none, float(doc["control_scale"]), dict(doc.get("source", {})))

    def save(self, folder: str | Path) -> Path:
        from infp.io.atomic import atomic_write_text

        path = Path(folder) / CALIBRATION_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path | None) -> StyleCalibration | None:
        """The calibration in the stage-2 folder ``folder``, or None if it has none."""
        if folder is None or not (Path(folder) / CALIBRATION_FILE).is_file():
            return None
        path = Path(folder) / CALIBRATION_FILE
        try:
            cal = cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            raise InfpError(f"not a style calibration ({e}); make it again with train/calibrate_style.py", path) from None
        made_for = cal.source.get("stage2_id")
        if made_for is not None and (Path(folder) / WEIGHTS_FILE).is_file() and made_for != checkpoint_id(folder):
            log.warning("%s was made for other stage-2 weights (%s); style videos use the percentiles until "
                        "train/calibrate_style.py runs again", path, made_for)
            return None
        return cal


def calibrate(pipe: Pipeline, portrait: str | Path, own: np.ndarray, other: np.ndarray,
              names: Sequence[str] = CONTROL_NAMES, values: Sequence[float] = CALIBRATION_VALUES,
              control_scale: float = CALIBRATION_SCALE, seed: int = 0, steps: int = 6,
              done: dict[str, np.ndarray] | None = None,
              on_setting: Callable[[str, np.ndarray], None] | None = None) -> StyleCalibration:
    """Render the dialogue (``own``, ``other``) on ``portrait`` without controls and with each control in
    ``names`` alone at each of ``values`` (speaking and listening alike), and measure the output's levels
    (``output_levels``). ``done`` maps setting names ("none", "smile=0.5") to levels already measured
    (they are not rendered again); ``on_setting`` is called with each new one."""
    from infp.audio.vad import frame_speech_prob
    from infp.face.expression import track_landmarks as track
    from infp.models.controls import Controls
    from infp.pipelines.render import RenderSettings
    from infp.runtime.portrait import load_portrait

    pt = load_portrait(portrait, pipe.size)
    speaking = frame_speech_prob(np.stack([own, other]))[:, 0] > SPEECH_THRESHOLD
    done = dict(done or {})

    def measure(key: str, controls: Controls) -> np.ndarray:
        if key not in done:
            settings = RenderSettings(seed=seed, steps=steps, controls=controls, control_scale=control_scale)
            frames = pipe.render(portrait, own, other, settings=settings)
            n = min(len(frames), len(speaking))
            done[key] = output_levels(track(frames[:n]), pt.landmarks, speaking[:n])
            if on_setting is not None:
                on_setting(key, done[key])
        return done[key]

    none = measure("none", Controls())
    levels = np.full((len(KINDS), len(CONTROL_NAMES), len(values)), np.nan, np.float32)
    for name in names:
        k = CONTROL_NAMES.index(name)
        for j, v in enumerate(values):
            levels[:, k, j] = measure(f"{name}={v:g}", Controls.parse(f"{name}={v}"))[:, k]
    return StyleCalibration(tuple(float(v) for v in values), levels, none, float(control_scale))


def style_from_video(path: str | Path, net: AudioToMotionNet, max_seconds: float = MAX_SECONDS,
                     threshold: float = SPEECH_THRESHOLD, calibration: StyleCalibration | None = None,
                     names: Sequence[str] = STYLE_CONTROLS) -> VideoStyle:
    """The control values (``names``) of the face in the video ``path`` for the stage-2 network ``net``: by
    the network's measured response ``calibration`` where it has one, else by its corpus percentiles
    (``control_lo`` / ``control_hi``). ``raw`` keeps the levels of every control."""
    if not getattr(net, "has_controls", False):
        raise InfpError("the stage-2 network has no controls; a style from a video needs one trained with controls")
    path = Path(path)
    landmarks = track_landmarks(path, max_seconds)
    found = np.isfinite(landmarks).all(axis=(1, 2))
    if not found.any():
        raise NoFaceError(f"no face found in the first {max_seconds:g} s", path)
    if found.sum() < MIN_FRAMES:
        raise NoFaceError(f"a face in only {int(found.sum())} frames; at least {MIN_FRAMES} are needed for a style", path)
    speaking = speech_frames(path, len(landmarks), threshold)
    has_audio = speaking is not None
    if speaking is None:
        log.info("%s: no audio track; every frame counts as listening", path)
        speaking = np.zeros(len(landmarks), bool)
    else:  # speech on the track counts as the face's own only while its mouth moves like speech
        speaking &= talking_frames(mouth_opening(landmarks))
    measures = frame_measures(landmarks)
    raw = video_levels(measures, rest_measures(measures, landmarks), speaking)
    lo = net.control_lo.detach().cpu().numpy()
    hi = net.control_hi.detach().cpu().numpy()
    values = np.clip(normalise(raw, lo, hi), 0.0, 1.0)
    if calibration is not None:
        calibrated = calibration.controls(raw)
        values = np.where(np.isfinite(calibrated), np.clip(calibrated, 0.0, 1.0), values)
    sides = [{n: round(float(v), 3) for n, v in zip(CONTROL_NAMES, row) if np.isfinite(v) and n in names} for row in values]
    for kind, side in zip(KINDS, sides):
        if not side:
            log.info("%s: too few %s frames with a face; %s controls left to the model", path,
                     "speaking" if kind == "speak" else "listening", kind)
    style = VideoStyle(str(path), Controls(*sides), raw, len(landmarks), int(found.sum()),
                       int((speaking & found).sum()), has_audio,
                       None if calibration is None else calibration.control_scale)
    log.info("%s: style %s (%d frames, %d with a face, %d speaking)", path, style.controls or "none",
             style.frames, style.face_frames, style.speaking_frames)
    return style


def controls_from_video(path: str | Path, net: AudioToMotionNet, max_seconds: float = MAX_SECONDS,
                        calibration: StyleCalibration | None = None) -> Controls:
    """``style_from_video(path, net, max_seconds, calibration=calibration).controls``."""
    return style_from_video(path, net, max_seconds, calibration=calibration).controls


FIT_CONTROLS = ("smile", "head_motion")
"""The controls a style fit tunes on the user's own portrait and dialogue: the expression and the head
motion the style should show (the other controls of the style keep their mapped values)."""

FIT_ROUNDS = 3
"""Settings a style fit measures (the mapped one, then two corrections)."""

FIT_EVERY = 3
"""A style fit renders every ``FIT_EVERY``-th frame: levels are means and spreads over 4 s windows, which a third
of the frames measures within a few thousandths."""

FIT_SECONDS = 30.0
"""Seconds of the dialogue (from its start) a style fit renders."""

MIN_STEP = 0.02
"""A style fit stops when no control would move by more than this."""


@dataclass
class StyleFit:
    """The controls a style fit chose, and every setting it measured: ``rounds[i]`` has the controls, the
    rendered levels of the fitted controls per kind and their distance to the reference (in control units)."""

    controls: Controls
    rounds: list[dict]
    chosen: int | None  # None: nothing to tune, no round rendered
    targets: dict

    def to_dict(self) -> dict:
        return {"controls": self.controls.to_dict(), "chosen_round": self.chosen, "targets": self.targets,
                "rounds": self.rounds}


def sampled_levels(pipe: Pipeline, portrait, own: np.ndarray, other: np.ndarray, settings, speaking: np.ndarray,
                   every: int = FIT_EVERY, mouth: dict | None = None, vad: np.ndarray | None = None) -> np.ndarray:
    """(2, K) levels of the rendering of (``own``, ``other``) on ``portrait`` (a loaded ``Portrait``) with
    ``settings``, measured as ``output_levels`` over the frames where ``speaking`` and the others, on every
    ``every``-th frame (the others are generated, not drawn): the frames drawn are those of the full rendering.
    ``mouth``: a dict that keeps the portrait's mouth fit between calls (it does not depend on the controls);
    ``vad``: the (T, 2) speech probabilities the session is given, as ``Pipeline.render`` gives them."""
    from infp.face.expression import track_landmarks as track
    from infp.face.landmarks import NUM_LANDMARKS

    n_frames = len(speaking)
    if vad is None:
        vad = np.zeros((n_frames, 2), np.float32)
        vad[:, 0] = speaking
    cached = None if mouth is None else mouth.get("fit")
    session = pipe.session(portrait, settings, vad=vad, overlay=False, mouth_fit=cached)
    if mouth is not None:
        mouth["fit"] = (session.motion.mouth_onset, session.motion.mouth_gain)
    session.drop = lambda i: i % every != 0
    drawn = {f.index: f.image for f in session.push(own, other) + session.flush()
             if f.image is not None and f.index < n_frames}
    order = sorted(drawn)
    landmarks = np.full((n_frames, NUM_LANDMARKS, 2), np.nan, np.float32)
    if order:
        landmarks[order] = track([drawn[i] for i in order])
    return output_levels(landmarks, portrait.landmarks, speaking)


def fit_style(pipe: Pipeline, portrait, own: np.ndarray, other: np.ndarray, style: VideoStyle, settings,
              names: Sequence[str] = FIT_CONTROLS, fixed: Controls | None = None, rounds: int = FIT_ROUNDS,
              every: int = FIT_EVERY, max_seconds: float = FIT_SECONDS, calibration: StyleCalibration | None = None,
              on_round: Callable[[int, dict], None] | None = None) -> StyleFit:
    """Tune the controls ``names`` that the style sets so that the rendering of this dialogue on this portrait
    shows the reference's levels (``style.raw``). ``style_from_video`` maps a level by the model's response on
    the calibration portrait, but portraits differ (a face whose mouth corners sit low smiles less at the same
    setting), and so do controls set together (a raised brow lowers the measured smile).

    ``settings`` are those of the final rendering, its controls the starting point (the style's, with whatever
    else the user set); the controls in ``fixed`` (set by the user by name) are not tuned. Each round renders
    the first ``max_seconds`` of the dialogue with the current controls, drawing every ``every``-th frame
    (``sampled_levels``), and moves each tuned control by its remaining gap over its slope: first the
    calibration's (or the corpus percentiles'), then the slope between the last two rounds where the control
    moved. The round whose levels lie closest to the reference's (summed over the tuned controls, in control
    units) is chosen. ``portrait``: a loaded ``Portrait``, an image or a path."""
    from dataclasses import replace

    from infp.audio.vad import frame_speech_prob
    from infp.runtime.portrait import load_portrait

    if not hasattr(portrait, "landmarks"):  # a path or an image, not a loaded Portrait
        portrait = load_portrait(portrait, pipe.size, settings.face_index)
    n = min(len(own), int(round(max_seconds * SAMPLE_RATE)))
    own, other = np.asarray(own[:n], np.float32), np.asarray(other[:n], np.float32)
    probs = frame_speech_prob(np.stack([own, other]))
    speaking = probs[:, 0] > settings.vad_threshold
    lo = pipe.stage2.control_lo.detach().cpu().numpy().astype(np.float64)
    hi = pipe.stage2.control_hi.detach().cpu().numpy().astype(np.float64)
    unit = np.maximum(hi - lo, 1e-6)  # level change per control unit by the corpus percentiles
    start = settings.controls
    current = start.array().astype(np.float64)  # (2, K), NaN: absent
    set_by_style = style.controls.array()
    held = (fixed or Controls()).array()
    cols = [CONTROL_NAMES.index(c) for c in names]
    counts = (int(speaking.sum()), int((~speaking).sum()))
    measurable = [c >= MIN_FRAMES * every for c in counts]  # drawn frames of the kind, at least MIN_FRAMES
    targets = [(r, k) for r in range(len(KINDS)) for k in cols
               if np.isfinite(current[r, k]) and np.isfinite(set_by_style[r, k]) and np.isnan(held[r, k])
               and np.isfinite(style.raw[r, k]) and measurable[r]]
    if not targets:
        log.info("style fit: nothing to tune (%d speaking and %d listening frames in the dialogue's first %g s); "
                 "the style's controls are used as mapped", counts[0], counts[1], max_seconds)
        return StyleFit(start, [], None, {})
    slope = np.tile(unit, (len(KINDS), 1))
    if calibration is not None:
        lv = calibration.levels
        rise = (lv[..., -1] - lv[..., 0]) / (calibration.values[-1] - calibration.values[0])
        slope = np.where(calibration.usable() & (rise > 0), rise, slope)
    first = slope.copy()
    history: list[tuple[np.ndarray, np.ndarray]] = []
    entries: list[dict] = []
    errors: list[float] = []
    kinds = sorted({r for r, _ in targets})
    mouth: dict = {}
    for i in range(max(1, rounds)):
        ctl = _controls_from_array(current, start)
        got = sampled_levels(pipe, portrait, own, other, replace(settings, controls=ctl), speaking, every, mouth=mouth,
                             vad=probs)
        err = [abs(got[r, k] - style.raw[r, k]) / unit[k] for r, k in targets]
        errors.append(float(np.sum(err)) if err and np.isfinite(err).all() else np.inf)
        entry = {"controls": ctl.to_dict(), "error": round(errors[-1], 4) if np.isfinite(errors[-1]) else None,
                 "levels": {KINDS[r]: {CONTROL_NAMES[k]: round(float(got[r, k]), 5) if np.isfinite(got[r, k]) else None
                                       for r2, k in targets if r2 == r} for r in kinds}}
        entries.append(entry)
        if on_round is not None:
            on_round(i, entry)
        history.append((current.copy(), got))
        if i + 1 >= rounds:
            break
        nxt = current.copy()
        for r, k in targets:
            if not np.isfinite(got[r, k]):
                continue
            if len(history) >= 2:
                (c0, l0), (c1, l1) = history[-2], history[-1]
                dc, dl = c1[r, k] - c0[r, k], l1[r, k] - l0[r, k]
                if abs(dc) >= 0.05 and np.isfinite(dl) and dl / dc > 0:
                    slope[r, k] = float(np.clip(dl / dc, first[r, k] / 4, first[r, k] * 4))
            nxt[r, k] = float(np.clip(current[r, k] + (style.raw[r, k] - got[r, k]) / slope[r, k], 0.0, 1.0))
        if np.nanmax(np.abs(nxt - current), initial=0.0) < MIN_STEP:
            break
        current = nxt
    best = int(np.argmin(errors))  # all unmeasured (no face drawn): the first, the starting controls
    chosen = _controls_from_array(history[best][0], start)
    targets_doc = {KINDS[r]: {CONTROL_NAMES[k]: round(float(style.raw[r, k]), 5) for r2, k in targets if r2 == r}
                   for r in kinds}
    log.info("style fit: round %d of %d chosen (%s)", best + 1, len(errors), chosen)
    return StyleFit(chosen, entries, best, targets_doc)


def _controls_from_array(values: np.ndarray, like: Controls) -> Controls:
    """``like`` with the values of the (2, K) array ``values`` (rounded to 0.001) in place of its own."""
    sides = []
    for r, kind in enumerate(KINDS):
        side = getattr(like, kind)
        sides.append({n: round(float(np.clip(values[r, CONTROL_NAMES.index(n)], 0.0, 1.0)), 3) for n in side})
    return Controls(*sides)
