"""Controls in rendering: RenderSettings and OUT.json, their effect on the frames, the CLI, a style from a video."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from infp.audio.vad import frame_speech_prob
from infp.constants import FPS, SPEECH_THRESHOLD
from infp.errors import InfpError, NoFaceError, SettingsError
from infp.io import read_audio, read_dialogue, write_video, write_wav
from infp.models.controls import CONTROL_NAMES, PRESETS, Controls
from infp.pipelines.render import Pipeline, RenderSettings
from infp.pipelines.style import STYLE_CONTROLS, style_from_video, video_levels
from infp.runtime.portrait import load_portrait


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory, samples):
    folder = tmp_path_factory.mktemp("audio")
    own = read_audio(samples / "audio" / "ditto.flac")[0][: int(1.2 * 16000)]
    other = read_audio(samples / "audio" / "hallo_3.flac")[0][: len(own)]
    write_wav(folder / "self.wav", own)
    write_wav(folder / "other.wav", other)
    return folder


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "infp.cli", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_render_settings_take_controls_in_every_form():
    assert RenderSettings().controls == Controls() and not RenderSettings().controls
    text = RenderSettings(controls="warm,smile=0.2").controls
    assert text.speak["smile"] == 0.2 and text.listen["head_motion"] == PRESETS["warm"]["listen"]["head_motion"]
    assert RenderSettings(controls={"listen": {"eyes": 0.7}}).controls == Controls(listen={"eyes": 0.7})
    assert RenderSettings(controls=None).controls == Controls()
    for bad, needle in [("smile=2", "[0, 1]"), ({"talk": {}}, "keys"), (0.5, "controls must be"),
                        ("listen.grin=0.1", "unknown control")]:
        with pytest.raises(SettingsError) as e:
            RenderSettings(controls=bad)
        assert needle in str(e.value)
    assert RenderSettings(control_steer=0.0).control_steer == 0.0
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(SettingsError, match="control_steer"):
            RenderSettings(control_steer=bad)


def test_render_settings_round_trip_through_json():
    s = RenderSettings(steps=3, seed=7, controls=Controls(speak={"smile": 0.8}, listen={"head_motion": 0.25, "yaw": 1}),
                       control_steer=0.5)
    data = json.loads(json.dumps(s.to_dict()))
    assert data["controls"] == {"speak": {"smile": 0.8}, "listen": {"head_motion": 0.25, "yaw": 1.0}}
    assert RenderSettings.from_dict(data) == s
    assert RenderSettings.from_dict(RenderSettings().to_dict()) == RenderSettings()
    with pytest.raises(SettingsError, match="unknown render settings: colour"):
        RenderSettings.from_dict({**data, "colour": "red"})


def test_controls_change_the_frames_and_empty_controls_change_nothing(tmp_path, samples, control_weights, dialogue):
    pipe = Pipeline.from_pretrained(control_weights)
    assert pipe.stage2.has_controls
    portrait = samples / "portraits" / "lp_s1.jpg"
    own, other = read_audio(dialogue / "self.wav")[0], read_audio(dialogue / "other.wav")[0]
    pt = load_portrait(portrait, pipe.size)
    vad = frame_speech_prob(np.stack([own, other]))
    settings = RenderSettings(steps=2, seed=3, controls="excited,listen.smile=0.1")

    def frames(s):
        return list(pipe.frames(pt, own, other, s, vad))

    plain = frames(RenderSettings(steps=2, seed=3))
    empty = frames(RenderSettings(steps=2, seed=3, controls=Controls()))
    controlled = frames(settings)
    assert len(plain) == len(empty) == len(controlled) == 30
    assert all(np.array_equal(a, b) for a, b in zip(plain, empty))
    assert not all(np.array_equal(a, b) for a, b in zip(plain, controlled))
    # the motion itself: the stage-2 latents of the same stream with and without controls
    latents = []
    for s in (RenderSettings(steps=2, seed=3), settings):
        session = pipe.session(pt, s, vad=vad)
        latents.append(np.stack([f.latent for f in session.push(own, other)]))
    assert np.abs(latents[0] - latents[1]).max() > 0.05
    out = pipe.render(portrait, own, other, out=tmp_path / "c.mp4", settings=settings)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["controls"] == settings.controls.to_dict()
    assert RenderSettings.from_dict(report["settings"]) == settings


def test_controls_with_weights_trained_without_them_are_refused(tmp_path, samples, tiny_weights, dialogue):
    pipe = Pipeline.from_pretrained(tiny_weights)
    assert not pipe.stage2.has_controls
    out = tmp_path / "o.mp4"
    with pytest.raises(SettingsError, match="trained without controls") as e:
        pipe.render(samples / "portraits" / "lp_s1.jpg", dialogue / "self.wav", out=out,
                    settings=RenderSettings(steps=1, controls="smile=0.5"))
    assert str(tiny_weights / "stage2") in str(e.value)
    assert not out.exists() and not out.with_suffix(".json").exists()
    with pytest.raises(InfpError, match="has no controls"):
        style_from_video(samples / "video" / "lp_d11.mp4", pipe.stage2)


def test_cli_controls_merge_in_order_and_are_reported(tmp_path, samples, control_weights, dialogue):
    out = tmp_path / "m.mp4"
    res = _cli("render", "--portrait", samples / "portraits" / "lp_s1.jpg", "--self", dialogue / "self.wav",
               "--other", dialogue / "other.wav", "--out", out, "--checkpoint", control_weights, "--steps", "1",
               "--quiet", "--preset", "calm", "--control", "smile=0.9,eyes=0.2", "--listen-control", "smile=0.3,brow=1")
    assert res.returncode == 0, res.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    calm = PRESETS["calm"]
    assert report["settings"]["controls"] == {"speak": {**calm["speak"], "smile": 0.9, "eyes": 0.2},
                                              "listen": {**calm["listen"], "smile": 0.3, "eyes": 0.2, "brow": 1.0}}
    assert report["controls_given"] == {"preset": "calm", "control": "smile=0.9,eyes=0.2",
                                        "listen_control": "smile=0.3,brow=1"}


def test_cli_refuses_controls_for_weights_without_them_and_bad_values(tmp_path, samples, tiny_weights, dialogue,
                                                                     one_error_line):
    out = tmp_path / "o.mp4"
    base = ["render", "--portrait", samples / "portraits" / "lp_s1.jpg", "--self", dialogue / "self.wav",
            "--out", out, "--checkpoint", tiny_weights, "--steps", "1", "--quiet"]
    for extra in (["--preset", "warm"], ["--speak-control", "smile=0.4"]):
        res = _cli(*base, *extra)
        line = one_error_line(res.stderr)
        assert res.returncode == 1 and line.startswith("infp: error:") and str(tiny_weights / "stage2") in line, line
        assert "trained without controls" in line
    for extra, needle in [(["--control", "smile=3"], "must be in [0, 1]"), (["--control", "grin=0.5"], "unknown control"),
                          (["--speak-control", "warm"], "sets both"), (["--preset", "jolly"], "invalid choice"),
                          (["--listen-control", "listen.smile=x"], "not a number")]:
        res = _cli(*base, *extra)
        line = one_error_line(res.stderr)
        assert res.returncode == 2 and needle in line, line
    res = _cli(*base, "--style-video", tmp_path / "missing.mp4")
    assert res.returncode == 1 and "missing.mp4: file not found" in one_error_line(res.stderr)
    ref = tmp_path / "ref.mp4"
    shutil.copy(samples / "video" / "lp_s29.mp4", ref)
    res = _cli(*[ref if a == out else a for a in base], "--style-video", ref)
    assert res.returncode == 1 and "is also an input (--style-video)" in one_error_line(res.stderr)
    assert ref.stat().st_size == (samples / "video" / "lp_s29.mp4").stat().st_size
    assert not out.exists() and not out.with_suffix(".json").exists()
    # the live demo takes the same flags and refuses them the same way
    rec = tmp_path / "live.mp4"
    res = _cli("demo", "--simulate", "--portrait", samples / "portraits" / "lp_s1.jpg", "--self", dialogue / "self.wav",
               "--checkpoint", tiny_weights, "--record", rec, "--preset", "calm", "--quiet")
    line = one_error_line(res.stderr)
    assert res.returncode == 1 and "trained without controls" in line, line
    assert not rec.exists()


def test_video_levels_average_training_sized_windows():
    from infp.data.stage2 import CONTROL_SPAN
    from infp.pipelines.style import WINDOW

    assert WINDOW == CONTROL_SPAN
    rng = np.random.default_rng(0)
    m = rng.normal(0, 0.01, (300, 6)).astype(np.float32)
    speaking = np.arange(300) < 150
    m[speaking, 0] += 0.05  # smiles while speaking
    raw = video_levels(m, np.zeros(6, np.float32), speaking)
    assert raw.shape == (2, len(CONTROL_NAMES)) and np.isfinite(raw).all()
    assert raw[0, 0] - raw[1, 0] == pytest.approx(0.05, abs=0.01)
    assert np.isnan(video_levels(m, np.zeros(6, np.float32), np.zeros(300, bool))[0]).all()


@pytest.mark.slow
def test_style_from_sample_videos(tmp_path, samples, control_weights):
    net = Pipeline.from_pretrained(control_weights).stage2
    a = style_from_video(samples / "video" / "lp_d11.mp4", net)
    b = style_from_video(samples / "video" / "lp_s29.mp4", net)
    for s in (a, b):
        arr = s.controls.array()
        assert np.nanmin(arr) >= 0 and np.nanmax(arr) <= 1 and np.isfinite(arr).any()
        assert s.face_frames == s.frames and s.has_audio
        assert set(s.controls.listen) == set(STYLE_CONTROLS)
    assert a.speaking_frames > a.frames / 2 and set(a.controls.speak) == set(STYLE_CONTROLS)  # a talking face
    assert b.speaking_frames == 0 and not b.controls.speak  # a listener: no speaking controls
    assert a.controls.listen != b.controls.listen
    json.dumps(a.to_dict())
    # the same video without its audio track: every frame is listening
    silent = tmp_path / "silent.mp4"
    from infp.io import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(samples / "video" / "lp_d11.mp4"), "-an", "-c:v", "copy",
                    "-t", "4", str(silent)], check=True)
    quiet = style_from_video(silent, net)
    assert not quiet.has_audio and quiet.speaking_frames == 0 and not quiet.controls.speak and quiet.controls.listen


def test_style_from_a_video_without_a_face(tmp_path, control_weights):
    wall = tmp_path / "wall.mp4"
    write_video(wall, [np.full((128, 128, 3), 90, np.uint8)] * 20, fps=FPS)
    net = Pipeline.from_pretrained(control_weights).stage2
    with pytest.raises(NoFaceError, match="no face found") as e:
        style_from_video(wall, net)
    assert str(wall) in str(e.value)


@pytest.mark.slow
def test_cli_style_video(tmp_path, samples, control_weights):
    """The video's controls, the user's named control on top, and the fit of the style's others on this dialogue
    (the tiny weights draw no face: every round unmeasured, the mapped controls kept)."""
    speech = read_audio(samples / "audio" / "ditto.flac")[0][: 2 * 16000]
    write_wav(tmp_path / "self.wav", np.concatenate([speech, np.zeros_like(speech)]))  # 2 s speaking, 2 s listening
    out = tmp_path / "s.mp4"
    res = _cli("render", "--portrait", samples / "portraits" / "lp_s1.jpg", "--self", tmp_path / "self.wav",
               "--out", out, "--checkpoint", control_weights, "--steps", "1", "--style-fit", "2",
               "--style-video", samples / "video" / "lp_s29.mp4", "--listen-control", "smile=0.05")
    assert res.returncode == 0, res.stderr
    assert "fitting the style to the portrait on this dialogue (4 s" in res.stdout and "round 2" in res.stdout
    report = json.loads(out.with_suffix(".json").read_text())
    style = report["controls_given"]["style_video"]
    assert style["path"].endswith("lp_s29.mp4") and style["frames"] > 100
    listen = report["settings"]["controls"]["listen"]
    assert listen["smile"] == 0.05  # --listen-control wins over the video
    fit = style["fit"]  # tuned on this portrait and dialogue, the user's smile held
    assert fit["dialogue"] == "this dialogue" and set(fit["targets"]) == {"listen"}
    assert set(fit["targets"]["listen"]) == {"head_motion"}  # the smile was set by name
    assert len(fit["rounds"]) == 2 and all(r["controls"]["listen"]["smile"] == 0.05 for r in fit["rounds"])
    assert listen == fit["controls"]["listen"]
    assert {k: v for k, v in listen.items() if k not in ("smile", "head_motion")} == \
        {k: v for k, v in style["controls"]["listen"].items() if k not in ("smile", "head_motion")}
    plain = tmp_path / "p.mp4"
    res = _cli("render", "--portrait", samples / "portraits" / "lp_s1.jpg", "--self", tmp_path / "self.wav",
               "--out", plain, "--checkpoint", control_weights, "--steps", "1", "--quiet",
               "--style-video", samples / "video" / "lp_s29.mp4", "--style-fit", "0")
    assert res.returncode == 0, res.stderr
    report = json.loads(plain.with_suffix(".json").read_text())
    assert "fit" not in report["controls_given"]["style_video"]
    assert report["settings"]["controls"] == report["controls_given"]["style_video"]["controls"]


@pytest.mark.slow
def test_style_of_a_listener_with_the_partners_voice_on_the_track(shared_media, control_weights):
    """The listening/ clip plays the partner's voice over a face that listens: speech on the track, a still
    mouth; its frames count as listening."""
    clip = next((shared_media / "listening").glob("*.mp4"))
    style = style_from_video(clip, Pipeline.from_pretrained(control_weights).stage2, max_seconds=12)
    assert style.has_audio and style.face_frames > 250
    assert style.speaking_frames < 0.2 * style.face_frames and style.controls.listen


def test_the_live_demo_fits_a_style_video_on_the_sample_dialogue(monkeypatch, samples, control_weights, capsys):
    """Live, the conversation is not known when the page opens: the style is fitted on data/samples/audio/dialogue.flac."""
    import infp.demo.server as server_mod
    from infp.cli import main

    started = {}

    class Server:
        def __init__(self, pipe, portrait, settings, **kw):
            started["settings"] = settings

    monkeypatch.setattr(server_mod, "DemoServer", Server)
    monkeypatch.setattr(server_mod, "serve", lambda server, host, port: started.setdefault("served", True))
    assert main(["demo", "--checkpoint", str(control_weights), "--steps", "1", "--style-video",
                 str(samples / "video" / "lp_s29.mp4"), "--style-fit", "1"]) == 0
    said = capsys.readouterr().out
    assert f"fitting the style to the portrait on {samples / 'audio' / 'dialogue.flac'} (16 s" in said and "round 1" in said
    assert started["served"] and started["settings"].controls.listen  # the style's controls reach the page's session


@pytest.fixture(scope="module")
def starter_on_lp_s5(samples):
    """The starter pipeline, lp_s5, the sample dialogue (own, other) and its own channel's speech per frame."""
    pipe = Pipeline.from_pretrained()
    own, other = read_dialogue(samples / "audio" / "dialogue.flac")
    speaking = frame_speech_prob(np.stack([own, other]))[:, 0] > SPEECH_THRESHOLD
    return pipe, samples / "portraits" / "lp_s5.jpg", own, other, speaking


@pytest.mark.slow
def test_a_smile_on_the_starter_weights_raises_the_mouth_corners_and_leaves_the_head_facing_as_before(starter_on_lp_s5):
    """Real weights, an unseen portrait and the sample dialogue: smile = 1 lifts the mouth corners while speaking and
    while listening, and the head faces where it faces without controls (conditioned on a smile, the network
    turned lp_s5's head aside by about 0.1 of the face width; the smile is now met by steering alone)."""
    from infp.face.expression import MEASURES, frame_measures, track_landmarks

    pipe, portrait, own, other, speaking = starter_on_lp_s5
    measured = []
    for ctl in (Controls(), Controls.parse("smile=1")):
        frames = pipe.render(portrait, own, other, settings=RenderSettings(controls=ctl))
        m = frame_measures(track_landmarks(frames))
        measured.append(m[: len(speaking)])
    smile, yaw = MEASURES.index("smile"), MEASURES.index("yaw")
    n = min(len(m) for m in measured)
    for kind in (speaking[:n], ~speaking[:n]):
        plain, smiling = (np.nanmean(m[:n][kind, smile]) for m in measured)
        assert smiling > plain + 0.01, (plain, smiling)
    plain, smiling = (np.nanmean(m[:n, yaw]) for m in measured)
    assert abs(smiling - plain) < 0.04, (plain, smiling)


@pytest.mark.slow
def test_a_still_head_on_the_starter_weights_also_calms_the_motion_no_probe_reads(starter_on_lp_s5, monkeypatch):
    """Real weights, lp_s5 and the sample dialogue: with head_motion = 0, calming the part of the motion that no
    probe reads (``infp.models.steering.UNREAD``) leaves the rendered listening head stiller than steering the
    probed rotation alone does (on lp_s5 the renderer turns the head along directions the rotation probes miss),
    and the smile where it was."""
    import infp.models.steering as steering
    from infp.face.expression import track_landmarks
    from infp.pipelines.style import output_levels

    pipe, portrait, own, other, speaking = starter_on_lp_s5
    pt = load_portrait(portrait, pipe.size)
    levels = {}
    for unread in (False, True):
        monkeypatch.setattr(steering, "UNREAD", unread)
        frames = pipe.render(portrait, own, other, settings=RenderSettings(controls=Controls.parse("head_motion=0")))
        n = min(len(frames), len(speaking))
        levels[unread] = output_levels(track_landmarks(frames[:n]), pt.landmarks, speaking[:n])[1]  # listening
    motion, smile = CONTROL_NAMES.index("head_motion"), CONTROL_NAMES.index("smile")
    assert levels[True][motion] < 0.85 * levels[False][motion], levels
    assert abs(levels[True][smile] - levels[False][smile]) < 0.005, levels
