"""A portrait's mouth fit (``infp.runtime.mouth.fit_mouth``) from rendered responses given in closed form: where speech
starts, how fast the rendered mouth opens from there, and the gain that brings it to the calibrated opening."""

import numpy as np
import pytest
import torch

from infp.runtime import mouth
from infp.runtime.mouth import GAIN_RANGE, ONSET_STEPS, SLOPE_SPAN, MouthFit, fit_mouth


class _Net:
    """What ``fit_mouth`` reads of an ``AudioToMotionNet``."""

    can_follow_lips = True

    def __init__(self, mouth_slope):
        self.mouth_slope = mouth_slope
        self.mouth_probe = torch.tensor([0.0, 0.0, 0.25])  # weights, then the bias


def _renderer(monkeypatch, sealed_until: float, slope: float, nan_at: float | None = None) -> list:
    """Replace the renderer + face mesh: closed (0.001) below ``sealed_until``, then 0.05 + ``slope`` per unit above it.
    Returns the list of readings asked for, call by call."""
    asked = []

    def rendered(stage1, source, net, rest, readings):
        r = np.asarray(readings, dtype=np.float64)
        asked.append(list(readings))
        out = np.where(r < sealed_until, 0.001, 0.05 + slope * (r - sealed_until))
        return np.where(np.isclose(r, nan_at), np.nan, out) if nan_at is not None else out

    monkeypatch.setattr(mouth, "rendered_openings", rendered)
    return asked


def _fit(net):
    return fit_mouth(None, None, net, torch.zeros(3), closed=0.0)


def test_parted_lips_open_from_rest_and_the_gain_brings_them_to_the_calibrated_opening(monkeypatch):
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.04)
    fit = _fit(_Net(mouth_slope=0.05))
    assert fit.onset == 0.0 and fit.slope == pytest.approx(0.04) and fit.gain == pytest.approx(0.05 / 0.04)
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.10)  # a mouth opening twice as fast as calibrated: half the speech
    assert _fit(_Net(mouth_slope=0.05)).gain == pytest.approx(0.5)
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.05)
    assert _fit(_Net(mouth_slope=0.05)).gain == pytest.approx(1.0)


def test_the_gain_is_bounded_and_1_without_a_calibration(monkeypatch):
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.001)
    assert _fit(_Net(mouth_slope=0.05)).gain == GAIN_RANGE[1]
    _renderer(monkeypatch, sealed_until=-1.0, slope=1.0)
    assert _fit(_Net(mouth_slope=0.05)).gain == GAIN_RANGE[0]
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.04)
    uncalibrated = _fit(_Net(mouth_slope=None))
    assert uncalibrated.gain == 1.0 and uncalibrated.slope == pytest.approx(0.04)


def test_a_closed_lipped_face_is_measured_above_its_onset_with_the_renders_it_lacks(monkeypatch):
    asked = _renderer(monkeypatch, sealed_until=4.0, slope=0.05)
    fit = _fit(_Net(mouth_slope=0.05))
    assert fit.onset == 3.0  # one unit below the first step that renders open
    ladder, extra = asked
    assert ladder[1:] == list(ONSET_STEPS) and max(ONSET_STEPS) < fit.onset + SLOPE_SPAN
    assert extra == [6.5, 7.0]  # only the readings above the ladder, up to onset + SLOPE_SPAN
    # over onset .. onset + 4 the lips part (at 4) and then open: faster per unit than the open part alone
    readings = np.arange(3.0, 7.01, 0.5)
    response = np.where(readings < 4.0, 0.001, 0.05 + 0.05 * (readings - 4.0))
    assert fit.slope == pytest.approx(np.polyfit(readings, response, 1)[0]) and fit.slope > 0.05
    assert fit.gain == pytest.approx(0.05 / fit.slope) and fit.gain < 1.0


def test_no_face_on_a_render_leaves_the_speech_unscaled(monkeypatch):
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.04, nan_at=2.0)
    assert _fit(_Net(mouth_slope=0.05)) == MouthFit(0.0)
    _renderer(monkeypatch, sealed_until=-1.0, slope=0.04, nan_at=7.5)  # outside both: measured as usual
    assert _fit(_Net(mouth_slope=0.05)).gain == pytest.approx(0.05 / 0.04)
