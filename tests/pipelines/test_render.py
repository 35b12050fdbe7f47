import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from infp.io import probe, read_audio, read_frames, write_image, write_wav
from infp.pipelines.render import Pipeline, RenderSettings
from infp.runtime.overlay import conversation_state


@pytest.fixture(scope="module")
def weights(tiny_weights):
    return tiny_weights


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory, samples):
    folder = tmp_path_factory.mktemp("audio")
    own = read_audio(samples / "audio" / "ditto.flac")[0][: int(2.03 * 16000)]
    other = read_audio(samples / "audio" / "hallo_3.flac")[0][: len(own)]
    write_wav(folder / "dialogue.wav", np.stack([own, other]))
    write_wav(folder / "self.wav", own)
    write_wav(folder / "other.wav", other)
    return folder


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "infp.cli", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_render_api_frame_count_audio_and_settings(tmp_path, samples, weights, dialogue):
    pipe = Pipeline.from_pretrained(weights)
    out = pipe.render(samples / "portraits" / "lp_s1.jpg", dialogue / "self.wav", dialogue / "other.wav",
                      out=tmp_path / "o.mp4", settings=RenderSettings(steps=2, seed=3))
    n = math.ceil(2.03 * 25)
    frames = read_frames(out)
    assert len(frames) == n and frames.shape[1:] == (64, 64, 3)
    audio = read_audio(out)
    assert abs(audio.shape[1] / 16000 - n / 25) < 0.05  # muxed and trimmed to the video
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["frames"] == n and report["settings"]["seed"] == 3 and report["checkpoints"]["stage1_id"]
    same = pipe.render(samples / "portraits" / "lp_s1.jpg", dialogue / "self.wav", dialogue / "other.wav",
                       settings=RenderSettings(steps=2, seed=3))
    assert len(same) == n


def test_cli_stereo_dialogue_swap_overlay_and_paste_back(tmp_path, samples, weights, dialogue):
    res = _cli("render", "--portrait", samples / "portraits" / "lp_s5.jpg", "--audio", dialogue / "dialogue.wav",
               "--self-channel", "1", "--out", tmp_path / "a.mp4", "--checkpoint", weights, "--size", "256",
               "--steps", "2", "--quiet")
    assert res.returncode == 1 and "renders 64x64" in res.stderr  # --size must match the checkpoint
    res = _cli("render", "--portrait", samples / "portraits" / "lp_s5.jpg", "--audio", dialogue / "dialogue.wav",
               "--self-channel", "1", "--out", tmp_path / "a.mp4", "--checkpoint", weights, "--steps", "2",
               "--overlay", "--paste-back", "--audio-out", "self", "--quiet")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["self_channel"] == 1 and report["settings"]["overlay"] and report["settings"]["paste_back"]
    assert probe(tmp_path / "a.mp4").width > 64
    pipe = Pipeline.from_pretrained(weights)
    plain = pipe.render(samples / "portraits" / "lp_s5.jpg", dialogue / "self.wav", dialogue / "other.wav",
                        settings=RenderSettings(steps=2, paste_back=True))
    over = pipe.render(samples / "portraits" / "lp_s5.jpg", dialogue / "self.wav", dialogue / "other.wav",
                       settings=RenderSettings(steps=2, paste_back=True, overlay=True))
    assert plain[0].shape[0] > 64  # the whole portrait
    h = plain[0].shape[0]
    diff = np.abs(over[30].astype(int) - plain[30].astype(int)).sum(axis=2)
    assert diff[int(0.8 * h):].sum() > 0 and diff[: int(0.5 * h)].sum() == 0  # lanes at the bottom only


def test_conversation_state():
    vad = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.9], [0.0, 0.0]])
    assert conversation_state(vad) == ["speaking", "listening", "both", "idle"]


def _expect_error(own_lines, res, *needles):
    assert res.returncode == 1, res.stderr
    # mediapipe's native logger may print one INFO line about its CPU delegate; nothing else is allowed
    line = own_lines(res.stderr)
    assert len(line) == 1 and line[0].startswith("infp: error:") and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert str(n) in line[0], line[0]


def test_bad_inputs_give_one_line_and_no_output(tmp_path, samples, weights, dialogue, own_lines):
    portrait = samples / "portraits" / "lp_s1.jpg"
    out = tmp_path / "out.mp4"
    base = ["render", "--checkpoint", weights, "--out", out, "--quiet", "--steps", "1"]
    mono = dialogue / "self.wav"
    _expect_error(own_lines, _cli(*base, "--portrait", portrait, "--audio", mono), mono, "--self")
    wall = tmp_path / "wall.png"
    write_image(wall, np.full((300, 300, 3), 90, np.uint8))
    _expect_error(own_lines, _cli(*base, "--portrait", wall, "--self", mono), wall, "no face")
    pipe = Pipeline.from_pretrained(weights)
    from infp.errors import InfpError, MediaError

    with pytest.raises(InfpError, match="no face") as e:
        pipe.render(wall, mono, out=out)
    assert str(wall) in str(e.value)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000, np.float32), 16000)
    with pytest.raises(MediaError, match="silent on both channels"):
        pipe.render(portrait, silent, out=out)
    short = tmp_path / "short.wav"
    sf.write(str(short), np.full(300, 0.1, np.float32), 16000)
    with pytest.raises(MediaError, match="at least one frame"):
        pipe.render(portrait, short, out=out)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(MediaError) as e:
        pipe.render(portrait, corrupt, out=out)
    assert str(corrupt) in str(e.value)
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_cli_errors_for_missing_and_conflicting_audio(tmp_path, samples, weights, dialogue, own_lines):
    portrait = samples / "portraits" / "lp_s1.jpg"
    base = ["render", "--checkpoint", weights, "--out", tmp_path / "o.mp4", "--portrait", portrait, "--quiet"]
    _expect_error(own_lines, _cli(*base), "--audio")
    _expect_error(own_lines, _cli(*base, "--audio", dialogue / "dialogue.wav", "--self", dialogue / "self.wav"), "not both")
    _expect_error(own_lines, _cli(*base, "--other", dialogue / "other.wav"), "--other needs --self")
    assert not (tmp_path / "o.mp4").exists()
