from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from infp.data.extract import extract_motion
from infp.launch import _fill_from_model, train
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.head_imitation import HeadImitationNet

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="stage2", overrides=overrides)


@pytest.fixture(scope="module")
def stage1_ckpt(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("s1") / "ckpt"
    HeadImitationNet(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                     flow_width=8, decoder_res=1, decoder_widths=(8, 8), keypoints=True).save_pretrained(ckpt)
    return ckpt


@pytest.fixture(scope="module")
def motion_dir(sample_corpus, stage1_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("motion")
    extract_motion(sample_corpus, stage1_ckpt, out, progress=False)
    return out


def test_stage2_training_run_on_cpu(tmp_path, sample_corpus, motion_dir):
    cfg = _cfg(["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                f"paths.output_dir={tmp_path}", "trainer.enable_progress_bar=false"])
    metrics = train(cfg)
    assert metrics["global_step"] == 4 and 0 < metrics["val/loss"] < 10
    net = AudioToMotionNet.from_pretrained(tmp_path / "checkpoint")
    assert net.motion_dim == 8
    assert not (net.motion_scale == 1).all()  # the corpus statistics were stored with the weights


def test_warm_up_uses_one_sided_clips_then_all(sample_corpus, motion_dir):
    cfg = _cfg(["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                "paths.output_dir=/tmp/unused"])
    dm = instantiate(cfg.data)
    with pytest.raises(ValueError, match="audio_context is not set"):
        dm.setup()  # a fact of the model: the training entry fills it in (launch._fill_from_model)
    _fill_from_model(dm, instantiate(cfg.model))
    assert dm.audio_context == instantiate(cfg.model).net.audio_context == 17
    dm.setup()
    warm = dm.train_dataloader().dataset
    dm.warmup_epochs = 0
    full = dm.train_dataloader().dataset
    assert set(warm.ids) < set(full.ids)
    batch = next(iter(dm.train_dataloader()))
    n = cfg.data.context + dm.audio_context + cfg.data.window
    assert batch["self_audio"].shape == (4, n * 640) and batch["x0"].shape == (4, cfg.data.window, 8)


def test_gpu_experiment_composes():
    cfg = _cfg(["experiment=stage2_gpu", "paths.output_dir=/tmp/unused"])
    model = instantiate(cfg.model)
    assert model.net.guider.verbal.shape == (64, 512) and cfg.trainer.precision == "bf16-mixed"


def test_lip_loss_through_the_frozen_keypoint_decoder(sample_corpus, motion_dir, stage1_ckpt):
    import torch


    cfg = _cfg(["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                "paths.output_dir=/tmp/unused", "model.w_lips=1.0", f"model.stage1_checkpoint={stage1_ckpt}"])
    model = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    _fill_from_model(dm, model)
    dm.setup()
    model.net.motion_scale.copy_(torch.as_tensor(dm.scale))
    batch = next(iter(dm.train_dataloader()))
    assert model.lip_loss(batch, batch["x0"]) == 0  # the real window has the real lips
    x0 = batch["x0"].clone().requires_grad_(True)
    off = model.lip_loss(batch, x0 + torch.randn_like(x0))
    assert off > 0.01
    off.backward()
    assert x0.grad.abs().sum() > 0  # the loss reaches the generated latents...
    assert all(p.grad is None for p in model.lip_decoder.parameters())  # ...and leaves the decoder frozen
    t = torch.full((4,), 0.3)
    loss, parts = model.loss(batch, t, torch.randn_like(batch["x0"]), torch.zeros(4, dtype=torch.bool), batch["has_prev"])
    assert set(parts) == {"diffusion", "lips"} and torch.isclose(loss, parts["diffusion"] + parts["lips"])
    with pytest.raises(Exception, match="stage1_checkpoint"):  # wrapped by hydra
        instantiate(_cfg(["experiment=stage2_debug", "paths.output_dir=/tmp/unused", "model.w_lips=1.0"]).model)


def test_lip_and_phone_heads_shape_the_audio_features_and_validation_reports_the_lip_proxy(tmp_path, sample_corpus, motion_dir,
                                                                                  stage1_ckpt):
    import numpy as np
    import torch

    overrides = ["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                 f"paths.output_dir={tmp_path}", "trainer.enable_progress_bar=false", "model.net.lip_head=true",
                 "model.w_audio_lips=1.0", f"model.stage1_checkpoint={stage1_ckpt}", "model.net.phone_head=true",
                 "model.w_phones=0.5", "data.phones=true"]
    cfg = _cfg(overrides)
    dm, module = instantiate(cfg.data), instantiate(cfg.model)
    _fill_from_model(dm, module)
    dm.setup()
    ds = dm.train_subset("all")
    # targets: the face's own mouth where `self` is its own voice, none for a dubbed face
    dubbed = [c for c in ds.ids if c.startswith("dub_")]
    own = [c for c in ds.ids if c.startswith(("talk_", "solo_"))]
    assert dubbed and own
    assert all(np.isnan(ds.mouth(c)).all() for c in dubbed)
    m = ds.mouth(own[0])
    assert np.isfinite(m).mean() > 0.9 and abs(np.nanmean(m)) < 1e-3 and abs(np.nanstd(m) - 1) < 1e-3

    items = [item for item in (ds[i] for i in range(400)) if torch.isfinite(item["mouth"]).any()][:4]
    assert len(items) == 4
    batch = torch.utils.data.default_collate(items)
    b = batch["x0"].shape[0]
    total, parts = module.loss(batch, torch.rand(b), torch.randn_like(batch["x0"]), torch.zeros(b, dtype=torch.bool),
                               batch["has_prev"])
    assert set(parts) == {"diffusion", "audio_lips", "phones"}
    assert (batch["self_phones"] > 0).any() and (batch["self_phones"] >= -1).all()  # phones heard on `self`
    total.backward()
    assert module.net.lip_head.weight.grad.abs().sum() > 0
    assert module.net.audio.out.weight.grad.abs().sum() > 0  # the loss shapes the audio features

    metrics = train(_cfg(overrides + ["data.val_windows_per_clip=8"]))  # enough own-voice frames for an r
    assert np.isfinite(metrics["val/lip_r"]) and -1 <= metrics["val/lip_r"] <= 1
    assert np.isfinite(metrics["val/audio_lips"])


def test_controls_are_measured_around_each_window_dropped_at_random_and_stored_with_the_weights(tmp_path, sample_corpus,
                                                                                                  motion_dir):
    import numpy as np
    import torch

    from infp.face.expression import CONTROL_NAMES

    overrides = ["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                 f"paths.output_dir={tmp_path}", "trainer.enable_progress_bar=false", "model.net.controls=true"]
    cfg = _cfg(overrides)
    assert cfg.data.controls is True  # follows the network
    dm, module = instantiate(cfg.data), instantiate(cfg.model)
    _fill_from_model(dm, module)
    dm.setup()
    lo, hi = dm.control_range
    assert lo.shape == (len(CONTROL_NAMES),) and (hi > lo).all()
    ds = dm.train_subset("all")
    vals = np.stack([ds[i]["controls"].numpy() for i in range(200)])  # (N, 2, K)
    speak_ok = np.isfinite(vals[:, 0]).all(axis=1)
    listen_ok = np.isfinite(vals[:, 1]).all(axis=1)
    assert speak_ok.any() and listen_ok.any()  # windows with speaking frames, and with listening ones
    assert (~speak_ok).any()  # a listening-only window has no speaking level
    # mapped by the corpus percentiles: most values in 0..1, and they vary from window to window
    finite = vals[np.isfinite(vals)]
    assert 0.7 < ((finite >= -0.05) & (finite <= 1.05)).mean() and finite.std() > 0.1
    dropped = module.drop_controls(torch.zeros(1000, 2, len(CONTROL_NAMES)))
    share = torch.isnan(dropped).float().mean().item()
    assert 0.4 < share < 0.65  # 1 - 0.7 * 0.7 = 0.51 absent
    assert torch.isnan(dropped).all(dim=(1, 2)).float().mean().item() > 0.2  # whole windows without controls

    metrics = train(cfg)
    assert np.isfinite(metrics["val/loss"])
    net = AudioToMotionNet.from_pretrained(tmp_path / "checkpoint")
    assert net.has_controls and torch.allclose(net.control_lo, torch.as_tensor(lo))
    assert net.control[-1].weight.abs().sum() > 0  # the control embedding was trained


def test_a_run_with_the_lip_reader_fits_it_on_the_own_voice_clips_and_exports_it(tmp_path, sample_corpus, motion_dir):
    import numpy as np
    import torch

    from infp.audio.lipreader import reader_r

    overrides = ["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                 f"paths.output_dir={tmp_path}", "trainer.enable_progress_bar=false", "model.net.lip_reader=true"]
    metrics = train(_cfg(overrides))
    assert metrics["global_step"] == 4
    net = AudioToMotionNet.from_pretrained(tmp_path / "checkpoint")
    assert net.lip_reader is not None and net.lip_reader.is_fitted
    assert net.can_follow_lips  # the latents' mouth axis was fitted too
    # fitted on the training split's own-voice clips, it reads their mouths from their voices
    cfg = _cfg(overrides)
    dm, module = instantiate(cfg.data), instantiate(cfg.model)
    _fill_from_model(dm, module)
    dm.setup()
    tracks = list(dm.train_subset("all").own_voice_tracks())
    assert tracks and all(np.isfinite(m).any() for _, m in tracks)
    assert reader_r(net.lip_reader, tracks) > 0.3
    # and the guidance moves with its read-out: the projection was trained
    assert net.lip_proj.weight.abs().sum() > 0
    assert not torch.equal(net.lip_reader.weight, torch.zeros_like(net.lip_reader.weight))


def test_a_reader_for_lip_following_alone_is_fitted_again_without_retraining(tmp_path, sample_corpus, motion_dir):
    """train/refit_lip_reader.py: a new reader (2 frames ahead, formants) replaces the weights' own and the
    measure axes of control steering are added; the diffusion network and the style calibration beside it
    stay as they were."""
    import importlib.util

    import numpy as np
    import torch

    overrides = ["experiment=stage2_debug", f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}",
                 f"paths.output_dir={tmp_path}", "trainer.enable_progress_bar=false", "model.net.lip_reader=true",
                 "model.net.lip_cue=false", "model.net.lip_follow=1.0", "model.net.controls=true", "data.controls=true"]
    train(_cfg(overrides))
    before = AudioToMotionNet.from_pretrained(tmp_path / "checkpoint")
    (tmp_path / "checkpoint" / "style_calibration.json").write_text("{}")
    spec = importlib.util.spec_from_file_location("refit", Path(CONF).parent / "train" / "refit_lip_reader.py")
    refit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refit)
    out = tmp_path / "refit"
    assert refit.main(["--weights", str(tmp_path / "checkpoint"), "--out", str(out), "--experiment", "stage2_debug",
                       f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}", "model.net.lip_reader=true",
                       "model.net.lip_cue=false", "model.net.lip_reader_ahead=2", "model.net.lip_reader_formants=true",
                       "model.net.controls=true", "data.controls=true", "model.net.control_axes=true"]) == 0
    after = AudioToMotionNet.from_pretrained(out)
    assert not before.can_steer and after.can_steer
    probe = after.measure_probe.numpy()
    assert np.isfinite(probe).all() and np.abs(probe[:, :-1]).sum() > 0
    assert after.lip_reader.ahead == 2 and after.lip_reader.formants and after.lip_reader.is_fitted
    assert after.follow_delay(1.0) == 3
    old, new = before.state_dict(), after.state_dict()
    for k, v in old.items():
        if not k.startswith("lip_reader."):
            assert torch.equal(v, new[k]), k
    assert (out / "style_calibration.json").read_text() == "{}"
    # --reader-only: the reader alone is fitted again; the mouth axis and the measure axes stay the weights' own
    alone = tmp_path / "reader_only"
    assert refit.main(["--weights", str(out), "--out", str(alone), "--experiment", "stage2_debug", "--reader-only",
                       f"paths.corpus={sample_corpus}", f"data.motion_dir={motion_dir}", "model.net.lip_reader=true",
                       "model.net.lip_cue=false", "model.net.lip_reader_past=3", "model.net.lip_reader_ahead=2",
                       "model.net.lip_reader_formants=true", "model.net.controls=true", "data.controls=true",
                       "model.net.control_axes=true"]) == 0
    third = AudioToMotionNet.from_pretrained(alone)
    assert third.lip_reader.past == 3 and third.lip_reader.is_fitted
    # the record says which speakers the reader saw (benchmarks leave out the clips of the ones it was fitted on)
    import yaml

    assert yaml.safe_load((alone / "config.yaml").read_text())["training"]["hparams"]["lip_reader_fit_val"] is False
    for k, v in after.state_dict().items():
        if not k.startswith("lip_reader."):
            assert torch.equal(v, third.state_dict()[k]), k


def test_the_lip_reader_learns_from_the_validation_speakers_only_when_asked(samples):
    """``model.lip_reader_fit_val``: the reader (used by lip following alone) is fitted on the validation split's
    own-voice clips as well as the training split's; without it on the training split's alone. ``mouth_axis=False``
    (``refit_lip_reader.py --reader-only``) leaves the latents' mouth probe and axis as they were."""
    import numpy as np
    import torch

    from infp.audio.lipreader import LipReader, fit_lip_reader
    from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
    from infp.io import read_audio, to_mono
    from infp.lit.audio_to_motion import AudioToMotion

    def track(name):
        a = to_mono(read_audio(samples / "audio" / name))[: 6 * SAMPLE_RATE]
        t = len(a) // SAMPLES_PER_FRAME
        e = np.log(np.mean(a[: t * SAMPLES_PER_FRAME].reshape(t, -1) ** 2, axis=1) + 1e-6)
        return a, (e - e.mean()) / e.std()

    train_tracks, val_tracks = [track("hallo_3.flac")], [track("joyvasa_001.flac")]

    class Split:
        def __init__(self, tracks):
            self.tracks = tracks

        def own_voice_tracks(self):
            yield from self.tracks

    class Data:
        val_set = Split(val_tracks)

        def train_subset(self, _):
            return Split(train_tracks)

    readers = {}
    for fit_val in (False, True):
        torch.manual_seed(0)
        net = AudioToMotionNet(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8,
                               dit_dim=32, depth=1, lip_reader=True, lip_cue=False, lip_follow=1.0)
        net.mouth_probe.normal_()
        probe = net.mouth_probe.clone()
        AudioToMotion(net, lip_reader_fit_val=fit_val).fit_lip_reader(Data(), mouth_axis=False)
        assert net.lip_reader.is_fitted and torch.equal(net.mouth_probe, probe)
        readers[fit_val] = net.lip_reader
    for fit_val, tracks in ((False, train_tracks), (True, train_tracks + val_tracks)):
        expected = LipReader()
        fit_lip_reader(expected, tracks)
        torch.testing.assert_close(readers[fit_val].weight, expected.weight)
    assert not torch.allclose(readers[False].weight, readers[True].weight)
