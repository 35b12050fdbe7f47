"""Style calibration: the model's measured response to its controls, inverted to map a reference video's levels."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from infp.errors import InfpError
from infp.face.expression import CONTROL_NAMES, KINDS
from infp.io import read_audio
from infp.models.pretrained import checkpoint_id
from infp.paths import REPO_ROOT
from infp.pipelines.render import Pipeline
from infp.pipelines.style import CALIBRATION_FILE, STYLE_CONTROLS, StyleCalibration, calibrate, style_from_video

SMILE, MOTION = CONTROL_NAMES.index("smile"), CONTROL_NAMES.index("head_motion")


def _calibration() -> StyleCalibration:
    values = (0.0, 0.5, 1.0)
    levels = np.full((len(KINDS), len(CONTROL_NAMES), 3), np.nan, np.float32)
    levels[:, SMILE] = [0.00, 0.01, 0.05]  # rises, faster at the top
    levels[:, MOTION] = [0.020, 0.018, 0.040]  # dips before it rises: inverted on its running maximum
    levels[0, CONTROL_NAMES.index("yaw")] = [0.01, 0.00, -0.01]  # falls: not usable
    none = np.zeros((len(KINDS), len(CONTROL_NAMES)), np.float32)
    return StyleCalibration(values, levels, none, 6.0, {"portrait": "p.jpg"})


def test_a_calibration_inverts_the_measured_response():
    cal = _calibration()
    usable = cal.usable()
    assert usable[:, SMILE].all() and usable[:, MOTION].all() and not usable[0, CONTROL_NAMES.index("yaw")]
    raw = np.full((2, len(CONTROL_NAMES)), np.nan, np.float32)
    raw[0, SMILE], raw[1, SMILE] = 0.03, 0.2  # 0.03: between the settings 0.5 and 1; 0.2: beyond the top
    raw[0, MOTION], raw[1, MOTION] = 0.019, 0.001  # 0.019: on the dip -> the lowest setting with that level
    raw[0, CONTROL_NAMES.index("yaw")] = 0.0
    got = cal.controls(raw)
    assert got[0, SMILE] == pytest.approx(0.75) and got[1, SMILE] == 1.0
    assert got[0, MOTION] == 0.0 and got[1, MOTION] == 0.0
    assert np.isnan(got[0, CONTROL_NAMES.index("yaw")]) and np.isnan(got[0, CONTROL_NAMES.index("brow")])


def test_a_calibration_file_round_trips_and_a_broken_one_is_named(tmp_path):
    cal = _calibration()
    path = cal.save(tmp_path)
    back = StyleCalibration.load(tmp_path)
    assert path.name == CALIBRATION_FILE and back.values == cal.values and back.control_scale == 6.0
    np.testing.assert_allclose(back.levels, cal.levels, atol=1e-6)
    assert back.source == {"portrait": "p.jpg"}
    assert StyleCalibration.load(tmp_path / "elsewhere") is None and StyleCalibration.load(None) is None
    doc = json.loads(path.read_text())
    doc["levels"]["speak"]["smile"] = [0.1]  # one level for three settings
    path.write_text(json.dumps(doc))
    with pytest.raises(InfpError, match="not a style calibration") as e:
        StyleCalibration.load(tmp_path)
    assert str(path) in str(e.value)
    path.write_text("{")
    with pytest.raises(InfpError, match="not a style calibration"):
        StyleCalibration.load(tmp_path)


def test_a_calibration_of_other_weights_is_not_used(tmp_path, control_weights):
    stage2 = tmp_path / "stage2"
    shutil.copytree(control_weights / "stage2", stage2)
    cal = _calibration()
    cal.source = {"stage2_id": checkpoint_id(stage2)}
    cal.save(stage2)
    assert StyleCalibration.load(stage2) is not None
    cal.source = {"stage2_id": "0123456789ab"}  # made before the weights were retrained
    cal.save(stage2)
    assert StyleCalibration.load(stage2) is None


@pytest.mark.slow
def test_calibrating_the_starter_weights_measures_the_smile_control(samples):
    """Real weights, real speech: the rendered smile rises with the smile setting, and settings already
    measured are not rendered again."""
    pipe = Pipeline.from_pretrained()
    own = read_audio(samples / "audio" / "joyvasa_001.flac")[0][: 3 * 16000]
    other = np.zeros_like(own)
    seen = []
    cal = calibrate(pipe, samples / "portraits" / "hallo_1.jpg", own, other, names=("smile",), values=(0.0, 1.0),
                    on_setting=lambda k, v: seen.append(k))
    assert seen == ["none", "smile=0", "smile=1"]
    assert np.isfinite(cal.levels[0, SMILE]).all() and np.isnan(cal.levels[1, SMILE]).all()  # never listens
    assert cal.levels[0, SMILE, 1] > cal.levels[0, SMILE, 0] + 0.005 and cal.usable()[0, SMILE]
    again = calibrate(pipe, samples / "portraits" / "hallo_1.jpg", own, other, names=("smile",), values=(0.0, 1.0),
                      done={"none": cal.none, "smile=0": cal.levels[:, :, 0], "smile=1": cal.levels[:, :, 1]},
                      on_setting=lambda k, v: seen.append(k))
    assert len(seen) == 3 and np.array_equal(again.levels, cal.levels, equal_nan=True)


@pytest.mark.slow
def test_a_style_video_uses_the_calibration_and_its_guidance_weight(tmp_path, samples, control_weights):
    """With style_calibration.json in stage2/, the style's values come from it and the render uses its
    control guidance weight (unless --control-scale is given)."""
    weights = tmp_path / "w"
    shutil.copytree(control_weights, weights)
    net = Pipeline.from_pretrained(weights).stage2
    ref = samples / "video" / "lp_s29.mp4"
    plain = style_from_video(ref, net, max_seconds=6, names=CONTROL_NAMES)
    cal = _calibration()
    cal.levels[1, SMILE] = [-1.0, 0.0, 1.0]  # listening smile: value 0.5 at level 0, about linear around it
    styled = style_from_video(ref, net, max_seconds=6, calibration=cal, names=CONTROL_NAMES)
    raw = styled.raw[1, SMILE]
    assert styled.controls.listen["smile"] == pytest.approx(float(np.clip(0.5 + raw / 2, 0, 1)), abs=1e-3)
    uncalibrated = {"brow", "eyes", "yaw", "pitch"}  # these keep the corpus percentiles
    assert {k: v for k, v in styled.controls.listen.items() if k in uncalibrated} == \
        {k: v for k, v in plain.controls.listen.items() if k in uncalibrated}
    assert styled.to_dict()["mapping"] == "calibration" and plain.to_dict()["mapping"] == "percentiles"
    assert set(style_from_video(ref, net, max_seconds=6).controls.listen) == set(STYLE_CONTROLS)  # the default
    cal.save(weights / "stage2")
    own = read_audio(samples / "audio" / "ditto.flac")[0][: int(1.2 * 16000)]
    wav = tmp_path / "self.wav"
    from infp.io import write_wav

    write_wav(wav, own)
    for extra, scale in (([], 6.0), (["--control-scale", "3"], 3.0)):
        out = tmp_path / f"s{scale:g}.mp4"
        res = subprocess.run([sys.executable, "-m", "infp.cli", "render", "--portrait", str(samples / "portraits" / "lp_s1.jpg"),
                              "--self", str(wav), "--out", str(out), "--checkpoint", str(weights), "--steps", "1", "--quiet",
                              "--style-video", str(ref), *extra], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
        assert res.returncode == 0, res.stderr
        report = json.loads(out.with_suffix(".json").read_text())
        assert report["settings"]["control_scale"] == scale
        assert report["controls_given"]["style_video"]["mapping"] == "calibration"
