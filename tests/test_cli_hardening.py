"""Broken input at the command line: numeric options, checkpoints, outputs, signals; one line each, no traceback."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load, save_file

from infp.cli import MAX_CFG_SCALE, MAX_SEED, MAX_STEPS, build_parser, main
from infp.constants import SAMPLE_RATE, VAD_CHUNK
from infp.errors import InfpError, SettingsError
from infp.io import read_audio, write_wav
from infp.pipelines.render import RenderSettings


@pytest.fixture(scope="module")
def voices(tmp_path_factory, samples):
    """A 2 s stereo dialogue of real speech, and the same voices as a 1 s mono file."""
    folder = tmp_path_factory.mktemp("voices")
    dlg = read_audio(samples / "audio" / "dialogue.flac")[:, : 2 * SAMPLE_RATE]
    write_wav(folder / "dialogue.wav", dlg)
    write_wav(folder / "self.wav", dlg[0, :SAMPLE_RATE])
    return folder


BAD_OPTIONS = [
    (["render", "--cfg-scale", "nan"], "--cfg-scale"),
    (["render", "--cfg-scale", "-5"], "--cfg-scale"),
    (["render", "--cfg-scale", "inf"], "--cfg-scale"),
    (["render", "--lip-follow", "1.5"], "--lip-follow"),
    (["demo", "--lip-follow", "nan"], "--lip-follow"),
    (["render", "--steps", "0"], "--steps"),
    (["render", "--steps", "-3"], "--steps"),
    (["render", "--steps", "2.5"], "--steps"),
    (["render", "--face-index", "-1"], "--face-index"),
    (["render", "--seed", "-1"], "--seed"),
    (["reenact", "--face-index", "-1"], "--face-index"),
    (["demo", "--steps", "0"], "--steps"),
    (["demo", "--cfg-scale", "nan"], "--cfg-scale"),
    (["demo", "--seed", str(MAX_SEED + 1)], "--seed"),
    (["demo", "--face-index", "-2"], "--face-index"),
    (["demo", "--delay-ms", "10"], "--delay-ms"),
    (["demo", "--delay-ms", "nan"], "--delay-ms"),
    (["demo", "--port", "65536"], "--port"),
    (["demo", "--port", "-1"], "--port"),
    (["demo", "--threads", "0"], "--threads"),
    (["demo", "--motion-threads", "-1"], "--motion-threads"),
    (["demo", "--size", "0"], "--size"),
    (["prepare", "m.yaml", "out", "--clip-seconds", "-1"], "--clip-seconds"),
    (["prepare", "m.yaml", "out", "--clip-seconds", "0.5"], "--clip-seconds"),
    (["prepare", "m.yaml", "out", "--min-face-ratio", "1.5"], "--min-face-ratio"),
    (["prepare", "m.yaml", "out", "--min-face-ratio", "nan"], "--min-face-ratio"),
    (["prepare", "m.yaml", "out", "--val-fraction", "1"], "--val-fraction"),
    (["prepare", "m.yaml", "out", "--workers", "0"], "--workers"),
    (["sample-corpus", "--clip-seconds", "nan"], "--clip-seconds"),
    (["sample-corpus", "--workers", "-4"], "--workers"),
    (["vad", "a.wav", "--threshold", "1.5"], "--threshold"),
    (["vad", "a.wav", "--threshold", "nan"], "--threshold"),
]
REQUIRED = {"render": ["--portrait", "p.jpg", "--out", "o.mp4"], "reenact": ["--portrait", "p.jpg", "--driving", "d.mp4",
                                                                             "--out", "o.mp4"]}


@pytest.mark.parametrize("argv,option", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_numbers_fail_at_parse_time_in_one_line(argv, option, capsys, one_error_line):
    with pytest.raises(SystemExit) as e:
        main([*argv, *REQUIRED.get(argv[0], [])])
    assert e.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"infp {argv[0]}: error: argument {option}") and argv[-1] in line, line


def test_boundary_values_are_accepted():
    parse = build_parser().parse_args
    a = parse(["render", *REQUIRED["render"], "--steps", "1", "--cfg-scale", "0", "--seed", "0", "--face-index", "0"])
    assert (a.steps, a.cfg_scale, a.seed, a.face_index) == (1, 0.0, 0, 0)
    a = parse(["demo", "--delay-ms", "50", "--port", "0", "--steps", str(MAX_STEPS), "--cfg-scale", str(MAX_CFG_SCALE)])
    assert (a.delay_ms, a.port, a.steps, a.cfg_scale) == (50.0, 0, MAX_STEPS, MAX_CFG_SCALE)
    a = parse(["prepare", "m", "o", "--clip-seconds", "0", "--val-fraction", "0", "--min-face-ratio", "1"])
    assert (a.clip_seconds, a.val_fraction, a.min_face_ratio) == (0.0, 0.0, 1.0)
    assert parse(["vad", "a", "--threshold", "1"]).threshold == 1.0


@pytest.mark.parametrize("kwargs", [dict(cfg_scale=float("nan")), dict(cfg_scale=-5.0), dict(cfg_scale=MAX_CFG_SCALE + 0.5),
                                    dict(steps=0), dict(steps=-3), dict(steps=MAX_STEPS + 1), dict(steps=2.0),
                                    dict(steps=True), dict(seed=-1), dict(face_index="0"), dict(audio_out="stereo"),
                                    dict(vad_threshold=float("inf"))])
def test_render_settings_refuse_what_the_cli_refuses(kwargs):
    with pytest.raises(SettingsError) as e:
        RenderSettings(**kwargs)
    assert isinstance(e.value, ValueError) and isinstance(e.value, InfpError)
    assert next(iter(kwargs)) in str(e.value)


def test_render_settings_accept_the_cli_limits():
    s = RenderSettings(steps=MAX_STEPS, cfg_scale=MAX_CFG_SCALE, seed=MAX_SEED, face_index=0, vad_threshold=1.0)
    assert s.steps == MAX_STEPS and RenderSettings(steps=1, cfg_scale=0).cfg_scale == 0


def _tensors(path) -> dict:
    """The tensors of a safetensors file, read into memory (rewriting a memory-mapped file would crash)."""
    return load(path.read_bytes())


def _break(kind: str, folder):
    """Damage a copy of a tiny checkpoint in one of the ways a download, a copy or a hand edit does."""
    s1 = folder / "stage1"
    cfg, weights = s1 / "config.yaml", s1 / "model.safetensors"
    if kind == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:3000])
        return weights
    if kind == "pickle renamed":
        torch.save(_tensors(weights), weights)
        return weights
    if kind == "shapes":
        doc = yaml.safe_load(cfg.read_text())
        doc["config"]["feat_channels"] = 24
        cfg.write_text(yaml.safe_dump(doc))
        return weights
    if kind == "missing key":
        state = _tensors(weights)
        state.pop(sorted(state)[0])
        save_file(state, str(weights))
        return weights
    if kind == "nan weights":
        state = _tensors(weights)
        state[sorted(state)[0]] = torch.full_like(state[sorted(state)[0]], float("nan"))
        save_file(state, str(weights))
        return weights
    if kind == "bad yaml":
        cfg.write_text("kind: stage1\nconfig: {image_size: 64,\n")
        return cfg
    if kind == "unknown option":
        doc = yaml.safe_load(cfg.read_text())
        doc["config"]["bogus"] = 3
        cfg.write_text(yaml.safe_dump(doc))
        return cfg
    if kind == "no config":
        cfg.unlink()
        return cfg
    if kind == "no weights":
        weights.unlink()
        return weights
    if kind == "stage mixup":
        shutil.rmtree(folder / "stage2")
        shutil.copytree(s1, folder / "stage2")
        return folder / "stage2"
    raise AssertionError(kind)


BROKEN = ["truncated weights", "pickle renamed", "shapes", "missing key", "nan weights", "bad yaml", "unknown option",
          "no config", "no weights", "stage mixup"]


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_checkpoint_is_one_line_naming_the_file(kind, tmp_path, tiny_weights, voices, samples, capsys, one_error_line):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_weights, ckpt)
    culprit = _break(kind, ckpt)
    code = main(["render", "--portrait", str(samples / "portraits" / "lp_s1.jpg"), "--audio", str(voices / "dialogue.wav"),
                 "--out", str(tmp_path / "o.mp4"), "--checkpoint", str(ckpt), "--quiet"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and line.startswith(f"infp: error: {culprit}:"), line
    assert not (tmp_path / "o.mp4").exists()


def test_reenact_and_render_name_the_checkpoint_folder_problem(tmp_path, tiny_weights, samples, voices, capsys, one_error_line):
    portrait = str(samples / "portraits" / "lp_s1.jpg")
    base = ["--portrait", portrait, "--out", str(tmp_path / "o.mp4"), "--quiet"]
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_weights, ckpt)
    _break("truncated weights", ckpt)
    assert main(["reenact", *base, "--driving", str(samples / "video" / "lp_s29.mp4"), "--checkpoint", str(ckpt / "stage1")]) == 1
    assert "model.safetensors: cannot read weights" in one_error_line(capsys.readouterr().err)
    assert main(["render", *base, "--audio", str(voices / "dialogue.wav"), "--checkpoint", str(tiny_weights / "stage1")]) == 1
    assert "single-stage checkpoint" in one_error_line(capsys.readouterr().err)
    assert main(["render", *base, "--audio", str(voices / "dialogue.wav"), "--checkpoint", str(tmp_path / "nothing")]) == 1
    assert one_error_line(capsys.readouterr().err) == f"infp: error: {tmp_path / 'nothing'}: checkpoint folder not found"


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, samples, tiny_weights, voices, capsys, one_error_line):
    video = tmp_path / "talk.mp4"
    shutil.copy(samples / "video" / "lp_s29.mp4", video)
    before = _digest(video)
    portrait = str(samples / "portraits" / "lp_s1.jpg")
    code = main(["reenact", "--portrait", portrait, "--driving", str(video), "--out", str(video),
                 "--checkpoint", str(tiny_weights / "stage1"), "--quiet"])
    assert code == 1 and "is also an input (--driving)" in one_error_line(capsys.readouterr().err)
    os.link(video, tmp_path / "same.mp4")  # another name for the same file
    code = main(["render", "--portrait", portrait, "--self", str(video), "--out", str(tmp_path / "same.mp4"),
                 "--checkpoint", str(tiny_weights), "--quiet"])
    assert code == 1 and "is also an input (--self)" in one_error_line(capsys.readouterr().err)
    from infp.errors import OutputError
    from infp.pipelines.render import Pipeline

    with pytest.raises(OutputError, match="is also an input"):
        Pipeline.from_pretrained(tiny_weights).render(portrait, video, out=video)
    assert _digest(video) == before


@pytest.mark.parametrize("command", ["render", "reenact", "demo"])
def test_one_container_policy_for_every_command(command, tmp_path, samples, tiny_weights, voices, capsys, one_error_line):
    out = tmp_path / "out.avi"
    portrait = str(samples / "portraits" / "lp_s1.jpg")
    argv = {"render": ["render", "--portrait", portrait, "--audio", str(voices / "dialogue.wav"), "--out", str(out),
                       "--checkpoint", str(tiny_weights)],
            "reenact": ["reenact", "--portrait", portrait, "--driving", str(samples / "video" / "lp_s29.mp4"),
                        "--out", str(out), "--checkpoint", str(tiny_weights / "stage1")],
            "demo": ["demo", "--simulate", "--audio", str(voices / "dialogue.wav"), "--record", str(out),
                     "--checkpoint", str(tiny_weights)]}[command]
    assert main([*argv, "--quiet"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == f"infp: error: {out}: output must be an .mp4 file (H.264 + AAC), got '.avi'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["under a file", "/proc"])
def test_unwritable_out_folder_is_named_up_front(where, tmp_path, samples, tiny_weights, voices, capsys, one_error_line):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    out = tmp_path / "file.txt" / "out.mp4" if where == "under a file" else "/proc/infp-out/out.mp4"
    for argv in (["render", "--audio", str(voices / "dialogue.wav"), "--checkpoint", str(tiny_weights)],
                 ["reenact", "--driving", str(samples / "video" / "lp_s29.mp4"), "--checkpoint", str(tiny_weights / "stage1")]):
        code = main([*argv, "--portrait", str(samples / "portraits" / "lp_s1.jpg"), "--out", str(out), "--quiet"])
        line = one_error_line(capsys.readouterr().err)
        assert code == 1
        if where == "under a file":
            blocker = tmp_path / "file.txt"
            assert line == f"infp: error: {blocker}: cannot create the output folder: {blocker} is a file, not a folder"
        else:
            assert line.startswith("infp: error: /proc: cannot write into this folder")


def test_truncated_audio_fails_the_render(tmp_path, samples, tiny_weights, voices, capsys, one_error_line):
    cut = tmp_path / "cut.wav"
    cut.write_bytes((voices / "dialogue.wav").read_bytes()[:3000])
    code = main(["render", "--portrait", str(samples / "portraits" / "lp_s1.jpg"), "--audio", str(cut),
                 "--out", str(tmp_path / "o.mp4"), "--checkpoint", str(tiny_weights), "--quiet"])
    assert code == 1
    assert one_error_line(capsys.readouterr().err) == f"infp: error: {cut}: truncated: header says 2.00 s, file holds 0.05 s"
    assert not (tmp_path / "o.mp4").exists()


def test_vad_in_pieces_matches_one_pass_and_shows_progress(monkeypatch, samples, capsys):
    import infp.audio.vad as vad

    audio = read_audio(samples / "audio" / "dialogue.flac")[:, : 3 * SAMPLE_RATE + 123]
    padded = np.pad(audio, ((0, 0), (0, (-audio.shape[1]) % VAD_CHUNK)))
    whole = vad.chunk_to_frame_prob(vad.StreamingVAD(channels=2).push(padded), -(-audio.shape[1] // 640))
    monkeypatch.setattr(vad, "VAD_PIECE", VAD_CHUNK * 7)  # many pieces, one of them partial
    pieces = vad.frame_speech_prob(audio, progress=True)
    assert np.array_equal(pieces, whole) and pieces[:, 0].max() > 0.5
    assert "voice activity" in capsys.readouterr().err


def test_render_shows_progress_unless_quiet(tmp_path, samples, tiny_weights, voices, capsys):
    argv = ["render", "--portrait", str(samples / "portraits" / "lp_s1.jpg"), "--self", str(voices / "self.wav"),
            "--out", str(tmp_path / "o.mp4"), "--checkpoint", str(tiny_weights), "--steps", "1"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "voice activity" in err and "render" in err
    assert main([*argv, "--quiet"]) == 0
    assert "voice activity" not in capsys.readouterr().err


def _long_render(tmp_path, samples, tiny_weights, seconds: int = 20) -> tuple[subprocess.Popen, object]:
    """Start a CLI render long enough to be caught midway; returns the process once its temporary mp4 exists."""
    dlg = read_audio(samples / "audio" / "dialogue.flac")
    write_wav(tmp_path / "long.wav", np.tile(dlg, (1, -(-seconds * SAMPLE_RATE // dlg.shape[1])))[:, : seconds * SAMPLE_RATE])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "infp.cli", "render", "--portrait", str(samples / "portraits" / "lp_s1.jpg"),
                             "--audio", str(tmp_path / "long.wav"), "--out", str(out_dir / "talk.mp4"),
                             "--checkpoint", str(tiny_weights), "--steps", "1", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out_dir.glob(".talk.*.tmp.mp4")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the render never started writing"
        time.sleep(0.1)
    return proc, out_dir


@pytest.mark.slow
def test_sigterm_midway_cleans_up_and_says_so(tmp_path, samples, tiny_weights, one_error_line):
    proc, out_dir = _long_render(tmp_path, samples, tiny_weights)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert one_error_line(err) == "infp: terminated"
    assert list(out_dir.iterdir()) == []


@pytest.mark.slow
def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path, samples, tiny_weights, voices):
    proc, out_dir = _long_render(tmp_path, samples, tiny_weights)
    proc.kill()
    proc.communicate(timeout=60)
    left = sorted(p.name for p in out_dir.iterdir())
    assert left and all(n.startswith(f".talk.{proc.pid}-") for n in left)
    assert main(["render", "--portrait", str(samples / "portraits" / "lp_s1.jpg"), "--self", str(voices / "self.wav"),
                 "--out", str(out_dir / "talk.mp4"), "--checkpoint", str(tiny_weights), "--steps", "1", "--quiet"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["talk.json", "talk.mp4"]
