"""Style fit: the style's smile and head motion tuned on the user's portrait and dialogue."""

import json
import types

import numpy as np
import pytest
import torch

import infp.pipelines.style as style_mod
from infp.face.expression import CONTROL_NAMES, KINDS
from infp.io import read_audio, read_dialogue
from infp.models.controls import Controls
from infp.pipelines.render import Pipeline, RenderSettings
from infp.pipelines.style import VideoStyle, fit_style, sampled_levels
from infp.runtime.portrait import load_portrait

SMILE, MOTION, BROW = (CONTROL_NAMES.index(n) for n in ("smile", "head_motion", "brow"))
LO = np.array([-0.03, -0.05, -0.03, 0.005, -0.1, -0.08])
HI = np.array([0.05, 0.05, 0.03, 0.08, 0.1, 0.08])


def _style(controls: Controls, raw: dict) -> VideoStyle:
    levels = np.full((len(KINDS), len(CONTROL_NAMES)), np.nan, np.float32)
    for (kind, name), v in raw.items():
        levels[KINDS.index(kind), CONTROL_NAMES.index(name)] = v
    return VideoStyle("ref.mp4", controls, levels, 100, 100, 50, True)


def _portrait_response(controls: np.ndarray) -> np.ndarray:
    """A portrait unlike the calibration's: its smile sits lower and rises half as fast, a raised brow
    lowers it, and its head moves 1.5 times as much per setting."""
    c = np.nan_to_num(controls, nan=0.5)
    out = np.zeros((len(KINDS), len(CONTROL_NAMES)), np.float32)
    out[:, SMILE] = -0.005 + 0.5 * (LO[SMILE] + c[:, SMILE] * (HI[SMILE] - LO[SMILE])) - 0.01 * c[:, BROW]
    out[:, MOTION] = 1.5 * (LO[MOTION] + c[:, MOTION] * (HI[MOTION] - LO[MOTION]))
    return out


def _fake_pipe():
    stage2 = types.SimpleNamespace(control_lo=torch.tensor(LO, dtype=torch.float32),
                                   control_hi=torch.tensor(HI, dtype=torch.float32))
    return types.SimpleNamespace(stage2=stage2, size=256)


def test_a_fit_reaches_the_reference_on_a_portrait_unlike_the_calibrations(monkeypatch, samples):
    measured = []

    def fake_levels(pipe, portrait, own, other, settings, speaking, every, mouth=None, vad=None):
        measured.append(settings.controls)
        return _portrait_response(settings.controls.array())

    monkeypatch.setattr(style_mod, "sampled_levels", fake_levels)
    speech = read_audio(samples / "audio" / "ditto.flac")[0][: 3 * 16000]
    own = np.concatenate([speech, np.zeros_like(speech)])  # speaking, then listening
    start = Controls({"smile": 0.5, "brow": 0.8, "head_motion": 0.5}, {"smile": 0.5, "brow": 0.8, "head_motion": 0.6})
    style = _style(start, {("speak", "smile"): 0.01, ("speak", "head_motion"): 0.03,
                           ("listen", "smile"): 0.0, ("listen", "head_motion"): 0.05})
    user = Controls(listen={"head_motion": 0.6})  # set by name: not tuned
    fit = fit_style(_fake_pipe(), types.SimpleNamespace(landmarks=None), own, np.zeros_like(own), style,
                    RenderSettings(controls=start), fixed=user, rounds=4)
    assert len(fit.rounds) == len(measured) >= 3 and measured[0] == start  # the mapped controls are measured first
    got = _portrait_response(fit.controls.array())
    assert abs(got[0, SMILE] - 0.01) < 0.002 and abs(got[1, SMILE] - 0.0) < 0.002
    assert abs(got[0, MOTION] - 0.03) < 0.002
    before = _portrait_response(start.array())
    assert abs(got[0, SMILE] - 0.01) < abs(before[0, SMILE] - 0.01) / 5
    assert fit.controls.listen["head_motion"] == 0.6 and fit.controls.speak["brow"] == 0.8  # held, not fitted
    assert set(fit.targets) == {"speak", "listen"} and set(fit.targets["listen"]) == {"smile"}
    errors = [r["error"] for r in fit.rounds]
    assert errors[fit.chosen] == min(errors) and errors[fit.chosen] < errors[0] / 5
    json.dumps(fit.to_dict())  # goes into OUT.json


def test_a_fit_keeps_the_mapped_controls_when_the_output_shows_no_face(monkeypatch, samples):
    monkeypatch.setattr(style_mod, "sampled_levels",
                        lambda *a, **k: np.full((len(KINDS), len(CONTROL_NAMES)), np.nan, np.float32))
    own = read_audio(samples / "audio" / "ditto.flac")[0][: 2 * 16000]
    start = Controls({"smile": 0.3}, {"smile": 0.7})
    style = _style(start, {("speak", "smile"): 0.02, ("listen", "smile"): 0.03})
    fit = fit_style(_fake_pipe(), types.SimpleNamespace(landmarks=None), own, np.zeros_like(own), style,
                    RenderSettings(controls=start), rounds=3)
    assert fit.controls == start and fit.chosen == 0 and fit.rounds[0]["error"] is None


def test_a_fit_renders_nothing_when_the_dialogue_has_too_few_frames_of_the_styles_kinds(monkeypatch, samples):
    drawn = []
    monkeypatch.setattr(style_mod, "sampled_levels", lambda *a, **k: drawn.append(1))
    own = read_audio(samples / "audio" / "ditto.flac")[0][: 2 * 16000]  # speech throughout: no listening frames
    start = Controls(listen={"smile": 0.7})
    fit = fit_style(_fake_pipe(), types.SimpleNamespace(landmarks=None), own, np.zeros_like(own),
                    _style(start, {("listen", "smile"): 0.03}), RenderSettings(controls=start))
    assert fit.controls == start and fit.chosen is None and fit.rounds == [] and not drawn


@pytest.mark.slow
def test_a_fit_on_the_starter_weights_moves_the_listening_smile_toward_a_smiling_reference(samples):
    """Real weights, portrait and dialogue: asked for a broad listening smile from a mapped value that gives
    less, the fit raises the control and the drawn frames' smile comes closer to the reference."""
    pipe = Pipeline.from_pretrained()
    own, other = read_dialogue(samples / "audio" / "dialogue.flac")
    own, other = own[: 10 * 16000], other[: 10 * 16000]
    portrait = load_portrait(samples / "portraits" / "lp_s1.jpg", pipe.size)
    start = Controls(listen={"smile": 0.3})
    style = _style(start, {("listen", "smile"): 0.03})
    settings = RenderSettings(controls=start, control_scale=6.0)
    fit = fit_style(pipe, portrait, own, other, style, settings, rounds=2)
    first, second = (r["levels"]["listen"]["smile"] for r in fit.rounds)
    assert fit.controls.listen["smile"] > 0.5 and second > first + 0.005
    assert abs(second - 0.03) < abs(first - 0.03) and fit.chosen == 1
    # the drawn frames are those of the full rendering: every third frame measures the same levels within 0.005
    from infp.audio.vad import frame_speech_prob

    speaking = frame_speech_prob(np.stack([own, other]))[:, 0] > settings.vad_threshold
    tuned = RenderSettings(controls=fit.controls, control_scale=6.0)
    third = sampled_levels(pipe, portrait, own, other, tuned, speaking, every=3)
    every = sampled_levels(pipe, portrait, own, other, tuned, speaking, every=1)
    assert third[1, SMILE] == pytest.approx(second, abs=1e-5)
    assert abs(third[1, SMILE] - every[1, SMILE]) < 0.005
