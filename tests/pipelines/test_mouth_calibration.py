"""train/calibrate_mouth.py: the rendered mouth's opening per unit on held-out faces, written into the stage-2 config,
scales each portrait's speech (``infp.runtime.mouth``)."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
import yaml

from infp.io import read_image, write_video
from infp.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("calibrate_mouth", REPO_ROOT / "train" / "calibrate_mouth.py")
calibrate_mouth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate_mouth)


def _corpus(root, samples, faces):
    """A corpus index whose val own-voice clips show ``faces`` (sample portraits), one frame each."""
    lines = []
    for i, name in enumerate(faces):
        clip = root / "clips" / f"c{i}"
        clip.mkdir(parents=True)
        write_video(clip / "face.mp4", [read_image(samples / "portraits" / name)] * 2)
        lines.append(json.dumps({"id": f"c{i}", "split": "val", "self_voice": True, "self_speech": 3.0}))
    lines.append(json.dumps({"id": "t0", "split": "train", "self_voice": True, "self_speech": 3.0}))  # not measured
    (root / "index.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_the_calibration_is_the_median_face_and_scales_each_portrait_toward_it(tmp_path, samples):
    from infp.pipelines.render import Pipeline, RenderSettings
    from infp.runtime.portrait import load_portrait

    weights = tmp_path / "weights"
    shutil.copytree(REPO_ROOT / "weights" / "stage1", weights / "stage1")
    shutil.copytree(REPO_ROOT / "weights" / "stage2", weights / "stage2")
    doc = yaml.safe_load((weights / "stage2" / "config.yaml").read_text())
    doc["config"].pop("mouth_slope", None)
    (weights / "stage2" / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    tensors = (weights / "stage2" / "model.safetensors").read_bytes()
    faces = ["lp_s1.jpg", "lp_s5.jpg", "hallo_1.jpg"]
    corpus = _corpus(tmp_path / "corpus", samples, faces)

    result = calibrate_mouth.measure(weights, corpus, "val", log=lambda m: None)
    slopes = [f["slope"] for f in result["faces"].values()]
    assert len(slopes) == 3 and result["mouth_slope"] == pytest.approx(float(np.median(slopes)))
    assert calibrate_mouth.main(["--weights", str(weights), "--corpus", str(corpus)]) == 0
    after = yaml.safe_load((weights / "stage2" / "config.yaml").read_text())
    assert after["config"]["mouth_slope"] == result["mouth_slope"]
    assert {**after["config"], "mouth_slope": None} == {**doc["config"], "mouth_slope": None}
    assert {k: v for k, v in after.items() if k != "config"} == {k: v for k, v in doc.items() if k != "config"}
    assert (weights / "stage2" / "model.safetensors").read_bytes() == tensors

    # each portrait's speech is scaled by the calibration over its own slope: the median face is left as it is
    pipe = Pipeline.from_pretrained(weights)
    frames = calibrate_mouth.corpus_first_frames(corpus, "val")
    assert list(frames) == list(result["faces"]) == ["c0", "c1", "c2"]
    gains = {}
    for name, clip in zip(faces, result["faces"]):
        session = pipe.session(load_portrait(frames[clip], pipe.size, 0), RenderSettings(steps=2))
        gains[name] = session.motion.mouth_gain
        assert gains[name] == pytest.approx(min(max(result["mouth_slope"] / result["faces"][clip]["slope"], 0.5), 2.0),
                                            rel=1e-3)
    assert sorted(gains.values())[1] == pytest.approx(1.0, rel=1e-3)
    # lp_s5's lips open fast once they part: its speech is turned down; lp_s1's parted lips open slowly: turned up
    assert gains["lp_s5.jpg"] < 1.0 < gains["lp_s1.jpg"]


def test_errors_name_the_corpus_or_the_weights(tmp_path, samples, tiny_weights):
    with pytest.raises(SystemExit, match="not a prepared corpus"):
        calibrate_mouth.main(["--weights", str(REPO_ROOT / "weights"), "--corpus", str(tmp_path)])
    with pytest.raises(SystemExit, match="no stage-2 config"):
        calibrate_mouth.main(["--weights", str(tmp_path), "--corpus", str(tmp_path)])
    corpus = _corpus(tmp_path / "corpus", samples, ["lp_s1.jpg"])
    with pytest.raises(SystemExit, match="do not follow the lips"):
        calibrate_mouth.main(["--weights", str(tiny_weights), "--corpus", str(corpus)])
