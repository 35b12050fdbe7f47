from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from infp.launch import train
from infp.models.head_imitation import HeadImitationNet

ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="stage1", overrides=overrides)


def test_one_training_run_on_cpu_exports_a_checkpoint(tmp_path, sample_corpus):
    cfg = _cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", f"paths.output_dir={tmp_path}",
                "trainer.max_steps=3", "trainer.enable_progress_bar=false"])
    metrics = train(cfg)
    assert metrics["global_step"] == 3
    assert 5 < metrics["val/psnr"] < 60 and 0 < metrics["val/ssim"] <= 1
    net = HeadImitationNet.from_pretrained(tmp_path / "checkpoint")
    assert net.image_size == 64 and net.motion_dim == 16
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "metrics.json").is_file()


def test_a_training_step_updates_every_network(sample_corpus):
    cfg = _cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", "paths.output_dir=/tmp/unused"])
    model = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (2, 3, 64, 64) and batch["driving_masked"].shape == (2, 3, 64, 64)
    pred, m_src, m_drv = model(batch)
    loss, parts = model._generator_loss(batch, pred, m_src, m_drv)
    loss.backward()
    for name in ("motion_encoder", "appearance", "flow", "decoder"):
        grads = [p.grad for p in getattr(model.net, name).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert torch.isfinite(loss) and set(parts) >= {"l1", "ssim", "region_l1"}


@pytest.mark.parametrize("experiment, size", [("stage1_gpu_256", 256), ("stage1_gpu_512", 512)])
def test_gpu_experiments_compose_and_instantiate(experiment, size):
    cfg = _cfg([f"experiment={experiment}", "paths.output_dir=/tmp/unused"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.strategy == "ddp_find_unused_parameters_true"
    assert cfg.data.size == size and cfg.data.cache_frames is False
    model = instantiate(cfg.model)
    assert model.net.image_size == size and model.discriminator is not None
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        assert model.net(x, x, x).shape == (1, 3, size, size)


def test_keypoint_supervision_and_warm_start(tmp_path, sample_corpus):
    """The keypoint decoder is trained against the face-mesh landmarks; init_from copies matching weights."""
    cfg = _cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", "paths.output_dir=/tmp/unused"])
    model = instantiate(cfg.model)
    assert model.net.keypoints is not None and cfg.data.mirror is False
    dm = instantiate(cfg.data)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["driving_kp"].shape == (2, model.net.keypoints.n_keypoints, 2)
    opt = torch.optim.Adam(model.net.keypoints.parameters(), lr=3e-3)
    errors = []
    for _ in range(30):
        _, m_src, m_drv = model(batch)
        err = model.keypoint_error(batch, m_src.detach(), m_drv.detach())
        opt.zero_grad()
        err.backward()
        opt.step()
        errors.append(float(err.detach()))
    assert errors[-1] < 0.5 * errors[0]
    # warm start from a checkpoint without keypoints: everything but the keypoint layers is copied
    plain = HeadImitationNet(**{**model.net.config, "keypoints": False})
    plain.save_pretrained(tmp_path / "plain")
    cfg2 = _cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", "paths.output_dir=/tmp/unused",
                 f"model.init_from={tmp_path / 'plain'}"])
    warm = instantiate(cfg2.model)
    same = [k for k, v in plain.state_dict().items() if torch.equal(warm.net.state_dict()[k], v)]
    assert "motion_encoder.head.2.weight" in same and len(same) >= len(plain.state_dict()) - 4


def test_adversarial_training_with_feature_matching(sample_corpus):
    """Two-scale discriminator: the generator's loss has the hinge term and feature matching, and a
    manual-optimization step moves both networks."""
    cfg = _cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", "paths.output_dir=/tmp/unused",
                "model.w_adv=0.1", "model.w_fm=10", "model.discriminator.base=8"])
    model = instantiate(cfg.model)
    assert len(model.discriminator.discriminators) == 2
    model.discriminator.eval()  # no power iteration of the spectral norm between the calls below
    dm = instantiate(cfg.data)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    feats = model.discriminator.features(batch["driving"])
    assert len(feats) == 2 and feats[0][-1].shape[-1] == 2 * feats[1][-1].shape[-1]  # 64 px -> 4x4 and 2x2 logits
    pred, m_src, m_drv = model(batch)
    loss, parts = model._generator_loss(batch, pred, m_src, m_drv)
    assert {"adv", "fm"} <= set(parts) and parts["fm"] > 0
    _, same = model._generator_loss({**batch, "driving": pred.detach()}, pred, m_src, m_drv)
    assert same["fm"] == 0  # the frame matches itself
    fm_grad = torch.autograd.grad(parts["fm"], pred)[0]
    assert fm_grad.abs().sum() > 0


def test_a_run_started_from_an_export_keeps_its_discriminator(tmp_path, sample_corpus):
    """The export folder of a run with a discriminator holds its weights too, and model.init_from loads
    both networks: a run continued from the folder (e.g. committed weights) resumes the GAN, not only G."""
    gan = ["model.w_adv=0.1", "model.w_fm=10", "model.discriminator.base=8"]
    cfg = _cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", f"paths.output_dir={tmp_path}",
                "trainer.max_steps=2", "trainer.enable_progress_bar=false", *gan])
    train(cfg)
    from safetensors.torch import load_file

    from infp.lit.callbacks import DISCRIMINATOR_FILE

    saved = load_file(str(tmp_path / "checkpoint" / DISCRIMINATOR_FILE))
    fresh = instantiate(_cfg(["experiment=stage1_debug", "paths.output_dir=/tmp/unused", *gan]).model)
    assert any(not torch.equal(fresh.discriminator.state_dict()[k], v) for k, v in saved.items())
    cont = instantiate(_cfg(["experiment=stage1_debug", "paths.output_dir=/tmp/unused", *gan,
                             f"model.init_from={tmp_path / 'checkpoint'}"]).model)
    assert all(torch.equal(cont.discriminator.state_dict()[k], v) for k, v in saved.items())
    exported = HeadImitationNet.from_pretrained(tmp_path / "checkpoint")
    assert all(torch.equal(cont.net.state_dict()[k], v) for k, v in exported.state_dict().items())


@pytest.mark.slow
def test_frozen_parts_keep_their_weights_while_the_renderer_learns(tmp_path, sample_corpus):
    """model.freeze holds the motion encoder and keypoint decoder of init_from: the exported latents' network is
    bit for bit the one it started from, the rest of the renderer (and the discriminator) moved."""
    gan = ["model.w_adv=0.1", "model.w_fm=10", "model.discriminator.base=8", "model.net.keypoints=true"]
    start = tmp_path / "start"
    train(_cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", f"paths.output_dir={start}",
                "trainer.max_steps=2", "trainer.enable_progress_bar=false", *gan]))
    held = ["model.freeze=[motion_encoder,keypoints]", f"model.init_from={start / 'checkpoint'}"]
    out = tmp_path / "frozen"
    train(_cfg(["experiment=stage1_debug", f"paths.corpus={sample_corpus}", f"paths.output_dir={out}",
                "trainer.max_steps=4", "trainer.enable_progress_bar=false", *gan, *held]))
    before = HeadImitationNet.from_pretrained(start / "checkpoint").state_dict()
    after = HeadImitationNet.from_pretrained(out / "checkpoint").state_dict()
    for k, v in after.items():
        same = torch.equal(before[k], v)
        if k.startswith(("motion_encoder.", "keypoints.")):
            assert same, k
    moved = [k for k in after if k.startswith(("flow.", "decoder.", "appearance.")) and not torch.equal(before[k], after[k])]
    assert moved and any(k.startswith("decoder.") for k in moved)
    from infp.lit.head_imitation import HeadImitation

    with pytest.raises(ValueError, match="model.freeze: eyes is not a part of the network; its parts: appearance"):
        HeadImitation(HeadImitationNet.from_pretrained(start / "checkpoint"), freeze=["eyes"])


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_the_renderer_only_recipe_composes_with_its_held_parts(device):
    cfg = _cfg([f"experiment=stage1_v2_renderer_{device}", "paths.output_dir=/tmp/unused", "model.init_from=null"])
    assert list(cfg.model.freeze) == ["motion_encoder", "keypoints"] and cfg.run_name == f"v2_renderer_{device}"
    assert cfg.model.net.flow_stride == 2 and cfg.model.net.pose  # the v2 network, whatever the trainer
    assert cfg.trainer.accelerator == device and cfg.trainer.precision == ("bf16-mixed" if device == "gpu" else "32-true")
    model = instantiate(cfg.model)
    assert not any(p.requires_grad for p in model.net.motion_encoder.parameters())
    assert not any(p.requires_grad for p in model.net.keypoints.parameters())
    assert all(p.requires_grad for p in model.net.decoder.parameters())
    model.train()
    assert not model.net.motion_encoder.training and model.net.decoder.training


def test_ssim_loss_and_metric_stay_float32_under_bf16_autocast():
    """bf16-mixed training autocasts SSIM's convolutions; in bf16 its local variances are rounding noise."""
    import cv2
    import numpy as np

    from infp.lit.head_imitation import image_metrics, ssim_fp32

    img = cv2.cvtColor(cv2.imread(str(ROOT / "data/samples/portraits/lp_s1.jpg")), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(img, (5, 5), 1.2)
    to = lambda a: torch.from_numpy(a.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]  # noqa: E731
    target, pred = to(img), to(blurred)
    ref = image_metrics(pred, target)["ssim"]
    assert 0.5 < float(ref) < 0.99
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = image_metrics(pred.bfloat16(), target)["ssim"]
        loss_ssim = ssim_fp32(pred.add(1).div(2), target.add(1).div(2))
    assert got.dtype == torch.float32 and abs(float(got) - float(ref)) < 0.01
    assert abs(float(loss_ssim) - float(ref)) < 1e-5
