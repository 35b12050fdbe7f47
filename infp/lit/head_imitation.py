"""HeadImitation: stage-1 training (reconstruct a frame from another frame of the same clip)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from infp.models.discriminator import MultiScaleDiscriminator, PatchDiscriminator
from infp.models.head_imitation import HeadImitationNet
from infp.models.vgg import VGGPerceptual

log = logging.getLogger(__name__)


def multiscale_l1(pred: torch.Tensor, target: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """Mean L1 over the image pyramid (scale 1 = full resolution)."""
    total = pred.new_zeros(())
    for s in scales:
        if s == 1:
            p, t = pred, target
        else:
            p = F.interpolate(pred, scale_factor=s, mode="bilinear", align_corners=False, antialias=True)
            t = F.interpolate(target, scale_factor=s, mode="bilinear", align_corners=False, antialias=True)
        total = total + (p - t).abs().mean()
    return total / len(scales)


def ssim_fp32(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of [0, 1] images in float32, also inside a bf16/fp16 autocast region.

    SSIM takes differences of local means of squares (E[x²] − E[x]²): in bf16 (8 bits of mantissa) they are mostly
    rounding, so under ``precision: bf16-mixed`` the loss and the metric would be noise.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        return structural_similarity_index_measure(pred.float(), target.float(), data_range=1.0)


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR (dB), SSIM and L1 on [0, 1] images of (B, 3, H, W) tensors given in [-1, 1]."""
    p = pred.float().clamp(-1, 1).add(1).div(2)
    t = target.float().add(1).div(2)
    return {
        "psnr": peak_signal_noise_ratio(p, t, data_range=1.0),
        "ssim": ssim_fp32(p, t),
        "l1": (p - t).abs().mean(),
    }


def load_matching(net: torch.nn.Module, folder: str, file: str | None = None) -> None:
    """Initialise ``net`` from a saved checkpoint wherever parameter names and shapes agree."""
    from safetensors.torch import load_file

    from infp.models.pretrained import WEIGHTS_FILE

    own = net.state_dict()
    theirs = load_file(str(Path(folder) / (file or WEIGHTS_FILE)))
    matched = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(matched, strict=False)
    log.info("initialised %d of %d tensors from %s", len(matched), len(own), folder)


class HeadImitation(pl.LightningModule):
    """Losses: multi-scale L1 + SSIM, optional VGG perceptual (local weights), optional hinge GAN with
    feature matching (``w_fm``: L1 between the discriminator's activations on the frame and on the real
    one, a perceptual loss that needs no pretrained weights)."""

    def __init__(
        self,
        net: HeadImitationNet,
        discriminator: PatchDiscriminator | MultiScaleDiscriminator | None = None,
        optimizer: Callable | None = None,
        l1_scales: tuple[float, ...] = (1.0, 0.5, 0.25),
        w_l1: float = 1.0,
        w_region: float = 4.0,
        w_ssim: float = 0.5,
        w_perceptual: float = 0.0,
        perceptual_weights: str | None = None,
        w_adv: float = 0.0,
        w_fm: float = 0.0,
        w_latent: float = 1e-4,
        w_keypoints: float = 10.0,
        init_from: str | None = None,
        identity_pairs: int = 8,
        motion_dim: int | None = None,
        freeze: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if motion_dim is not None and motion_dim != net.motion_dim:
            raise ValueError(f"model.motion_dim={motion_dim} but the network's motion_dim is {net.motion_dim} "
                             "(set model.motion_dim; model.net.motion_dim follows it)")
        self.save_hyperparameters(ignore=["net", "discriminator", "optimizer"])
        self.net = net
        if init_from:
            load_matching(net, init_from)
        self.frozen = self._freeze(tuple(freeze))
        self.discriminator = discriminator if w_adv > 0 else None
        if init_from and self.discriminator is not None:
            from infp.lit.callbacks import DISCRIMINATOR_FILE

            if (Path(init_from) / DISCRIMINATOR_FILE).is_file():  # exported by a run with a discriminator
                load_matching(self.discriminator, init_from, DISCRIMINATOR_FILE)
        self.optimizer_factory = optimizer or partial(torch.optim.AdamW, lr=2e-4, betas=(0.5, 0.999), weight_decay=0.0)
        self.perceptual = VGGPerceptual.from_weights(perceptual_weights) if (w_perceptual > 0 and perceptual_weights) else None
        if w_perceptual > 0 and self.perceptual is None:
            log.warning("perceptual loss requested but no local VGG weights given; training without it")
        self.automatic_optimization = self.discriminator is None
        self._identity_bank: list[dict[str, torch.Tensor]] = []

    def _freeze(self, names: tuple[str, ...]) -> list[torch.nn.Module]:
        """Hold the weights of these parts of the network (e.g. ``motion_encoder`` and ``keypoints``: the renderer
        learns while the motion latents, and so a stage 2 trained on them, stay valid)."""
        parts = {name for name, _ in self.net.named_children()}
        unknown = [n for n in names if n not in parts or getattr(self.net, n) is None]
        if unknown:
            raise ValueError(f"model.freeze: {', '.join(unknown)} is not a part of the network; its parts: "
                             f"{', '.join(sorted(n for n in parts if getattr(self.net, n) is not None))}")
        frozen = [getattr(self.net, n) for n in names]
        for module in frozen:
            module.requires_grad_(False)
        if names:
            log.info("frozen: %s", ", ".join(names))
        return frozen

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:  # held parts keep their inference behaviour
            module.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = self.net.prepare_source(batch["source"], batch["source_masked"])
        m_drv = self.net.encode_motion(batch["driving_masked"])
        return self.net.render(src, m_drv), src.motion, m_drv

    def keypoint_error(self, batch: dict[str, torch.Tensor], m_src: torch.Tensor, m_drv: torch.Tensor) -> torch.Tensor | None:
        """Mean L1 (normalised units) of the keypoints decoded from both latents to the landmarks."""
        if self.net.keypoints is None or "driving_kp" not in batch:
            return None
        kp = self.net.decode_keypoints(torch.cat([m_src, m_drv]))
        return (kp - torch.cat([batch["source_kp"], batch["driving_kp"]])).abs().mean()

    def _generator_loss(self, batch, pred, m_src, m_drv) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hparams
        target = batch["driving"]
        parts = {"l1": multiscale_l1(pred, target, tuple(hp.l1_scales))}
        loss = hp.w_l1 * parts["l1"]
        kp_err = self.keypoint_error(batch, m_src, m_drv) if hp.w_keypoints > 0 else None
        if kp_err is not None:
            parts["keypoints"] = kp_err
            loss = loss + hp.w_keypoints * kp_err
        if hp.w_region > 0 and "driving_region" in batch:
            # eyes and lips are a few percent of the pixels but all of the motion: weigh them up
            region = batch["driving_region"]
            parts["region_l1"] = ((pred - target).abs() * region).sum() / (3 * region.sum()).clamp_min(1.0)
            loss = loss + hp.w_region * parts["region_l1"]
        if hp.w_ssim > 0:
            ssim = ssim_fp32(pred.add(1).div(2), target.add(1).div(2))
            parts["ssim"] = 1 - ssim
            loss = loss + hp.w_ssim * parts["ssim"]
        if self.perceptual is not None:
            parts["perceptual"] = self.perceptual(pred, target)
            loss = loss + hp.w_perceptual * parts["perceptual"]
        if self.discriminator is not None:
            fake = self.discriminator.features(pred)
            parts["adv"] = sum(-f[-1].mean() for f in fake) / len(fake)
            loss = loss + hp.w_adv * parts["adv"]
            if hp.w_fm > 0:
                with torch.no_grad():
                    real = self.discriminator.features(target)
                pairs = [(f, r) for fs, rs in zip(fake, real) for f, r in zip(fs[:-1], rs[:-1])]
                parts["fm"] = sum((f - r).abs().mean() for f, r in pairs) / len(pairs)
                loss = loss + hp.w_fm * parts["fm"]
        if hp.w_latent > 0:
            parts["latent"] = (m_src.pow(2).mean() + m_drv.pow(2).mean()) / 2
            loss = loss + hp.w_latent * parts["latent"]
        return loss, parts

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred, m_src, m_drv = self(batch)
        loss, parts = self._generator_loss(batch, pred, m_src, m_drv)
        if self.discriminator is not None:
            opt_g, opt_d = self.optimizers()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_g.step()
            real = self.discriminator.features(batch["driving"])
            fake = self.discriminator.features(pred.detach())
            d_loss = sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)) / len(real)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
            parts["d"] = d_loss
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=pred.shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred, m_src, m_drv = self(batch)
        metrics = image_metrics(pred, batch["driving"])
        kp_err = self.keypoint_error(batch, m_src, m_drv)
        if kp_err is not None:
            metrics["keypoints_px"] = kp_err * self.net.image_size / 2  # mean error in pixels of the crop
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True, batch_size=pred.shape[0], sync_dist=True)
        if len(self._identity_bank) < self.hparams.identity_pairs:
            self._identity_bank.append({k: batch[k][:1].detach() for k in ("source", "source_masked", "driving", "driving_masked")})

    def on_validation_epoch_end(self) -> None:
        """Identity preservation: sample k's source driven by sample k+1's motion (another clip, mostly)."""
        bank, self._identity_bank = self._identity_bank, []
        if len(bank) < 2 or not self.trainer.is_global_zero:
            return
        from infp.eval import face_id
        from infp.eval.face_metrics import identity_scores
        from infp.models.images import to_image

        src = torch.cat([b["source"] for b in bank])
        src_m = torch.cat([b["source_masked"] for b in bank])
        drv = torch.cat([b["driving"] for b in bank]).roll(1, dims=0)
        drv_m = torch.cat([b["driving_masked"] for b in bank]).roll(1, dims=0)
        with torch.no_grad():
            out = self.net.render(self.net.prepare_source(src, src_m), self.net.encode_motion(drv_m))
        # shape; with the eval extra also a face-recognition embedding (pip install 'infp[eval]')
        distances = ("shape", "face_id") if face_id.available() else ("shape",)
        scores = identity_scores([to_image(o) for o in out], [to_image(s) for s in src], [to_image(d) for d in drv],
                                 distances)
        for name, key in (("shape", "val/identity"), ("face_id", "val/identity_face")):
            if scores.get(name) is not None:
                self.log(key, scores[name], rank_zero_only=True)

    def configure_optimizers(self):
        opt_g = self.optimizer_factory([p for p in self.net.parameters() if p.requires_grad])
        if self.discriminator is None:
            return opt_g
        return [opt_g, self.optimizer_factory(self.discriminator.parameters())]
