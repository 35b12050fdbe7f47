"""AudioToMotion: stage-2 training (v-prediction diffusion loss on windows of motion latents).

Optionally (``w_lips`` > 0 with ``stage1_checkpoint``), a lip loss: the clean window implied by the
v-prediction is decoded into lip keypoints by the frozen keypoint decoder of the stage-1 net that made
the latents, and compared with the lips of the real window. Mouth motion lives in a few directions of
the latent that the plain diffusion loss weighs no more than head pose or brows; this loss weighs them
by what the renderer does with them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from infp.diffusion import CosineSchedule
from infp.models.audio_to_motion import AudioToMotionNet


class AudioToMotion(pl.LightningModule):
    """Condition dropout (for classifier-free guidance) and context dropout (for the first window)."""

    def __init__(self, net: AudioToMotionNet, optimizer: Callable | None = None, p_drop_cond: float = 0.1,
                 p_drop_prev: float = 0.1, motion_dim: int | None = None, w_lips: float = 0.0,
                 stage1_checkpoint: str | None = None) -> None:
        super().__init__()
        if motion_dim is not None and motion_dim != net.motion_dim:
            raise ValueError(f"model.motion_dim={motion_dim} but the network's motion_dim is {net.motion_dim} "
                             "(set model.motion_dim; model.net.motion_dim follows it)")
        self.save_hyperparameters(ignore=["net", "optimizer"])
        self.net = net
        self.lip_decoder = self._lip_decoder(stage1_checkpoint) if w_lips > 0 else None
        self.schedule = CosineSchedule()
        self.optimizer_factory = optimizer or partial(torch.optim.AdamW, lr=3e-4, weight_decay=0.01)

    def _lip_decoder(self, checkpoint: str | None):
        from infp.errors import InfpError
        from infp.models.head_imitation import HeadImitationNet

        if not checkpoint:
            raise InfpError("model.w_lips > 0 needs model.stage1_checkpoint: the stage-1 net that made the latents")
        stage1 = HeadImitationNet.from_pretrained(checkpoint)
        if stage1.keypoints is None:
            raise InfpError("model.w_lips > 0 needs a stage-1 net with a keypoint decoder", Path(checkpoint))
        if stage1.motion_dim != self.net.motion_dim:
            raise InfpError(f"the stage-1 net has motion_dim {stage1.motion_dim}, stage 2 {self.net.motion_dim}",
                            Path(checkpoint))
        return stage1.keypoints.requires_grad_(False)  # an MLP: train/eval mode makes no difference

    def lip_loss(self, batch: dict[str, torch.Tensor], x0_pred: torch.Tensor) -> torch.Tensor:
        """MSE of the lip shape (keypoints about their centre) of predicted vs real windows, in units of
        the batch's lip-shape variance."""
        from infp.models.keypoints import N_LIP_KEYPOINTS

        scale = self.net.motion_scale
        rest = batch["rest"][:, None]

        def lips(x0: torch.Tensor) -> torch.Tensor:  # lip shape: keypoints about their centre (no head motion)
            kp = self.lip_decoder((x0 * scale + rest).flatten(0, 1))[:, :N_LIP_KEYPOINTS]
            return kp - kp.mean(dim=1, keepdim=True)

        kp_pred = lips(x0_pred)
        with torch.no_grad():
            kp_true = lips(batch["x0"])
            var = kp_true.var(dim=0).mean().clamp_min(1e-8)
        return F.mse_loss(kp_pred, kp_true) / var

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        context = getattr(dm, "audio_context", None)
        if context is not None and context != self.net.audio_context:
            raise ValueError(f"data.audio_context must be {self.net.audio_context} for this audio encoder (or null)")
        dim = getattr(dm, "motion_dim", None)
        if dim is not None and dim != self.net.motion_dim:
            folder = dm.motion_dir or Path(dm.root) / "motion"
            raise ValueError(f"the motion latents in {folder} have {dim} dimensions but model.motion_dim is "
                             f"{self.net.motion_dim}: train with model.motion_dim={dim} (the stage-1 encoder's size)")
        if dm is not None and getattr(dm, "scale", None) is not None:
            self.net.motion_scale.copy_(torch.as_tensor(dm.scale))

    def loss(self, batch: dict[str, torch.Tensor], t: torch.Tensor, noise: torch.Tensor,
             drop_cond: torch.Tensor, has_prev: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective and its parts: (total, {"diffusion": ..., "lips": ...}); the parts are
        empty without the lip loss (the total is then the diffusion loss)."""
        net = self.net
        x_t, v = self.schedule.add_noise(batch["x0"], t, noise)
        a_self, a_other = net.audio_features(batch["self_audio"], batch["other_audio"])
        n = net.context + net.window
        style = net.style(batch["rest"], batch["spread"])
        guide = net.guide(a_self[:, -n:], a_other[:, -n:], style)
        pred = net.denoise(x_t, t, batch["prev"], has_prev, guide, style, drop_cond)
        loss = F.mse_loss(pred, v)
        if self.lip_decoder is None:
            return loss, {}
        a, s = (c.view(-1, 1, 1) for c in self.schedule.alpha_sigma(t))
        lips = self.lip_loss(batch, a * x_t - s * pred)  # the clean window the v-prediction implies
        return loss + self.hparams.w_lips * lips, {"diffusion": loss.detach(), "lips": lips.detach()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        b = batch["x0"].shape[0]
        dev = batch["x0"].device
        t = torch.rand(b, device=dev)
        drop = torch.rand(b, device=dev) < self.hparams.p_drop_cond
        has_prev = batch["has_prev"] & (torch.rand(b, device=dev) >= self.hparams.p_drop_prev)
        loss, parts = self.loss(batch, t, torch.randn_like(batch["x0"]), drop, has_prev)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=b)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        b = batch["x0"].shape[0]
        gen = torch.Generator().manual_seed(batch_idx)
        t = (torch.arange(b) + 0.5).div(b).to(batch["x0"].device)
        noise = torch.randn(batch["x0"].shape, generator=gen).to(batch["x0"].device)
        no_drop = torch.zeros(b, dtype=torch.bool, device=t.device)
        loss, parts = self.loss(batch, t, noise, no_drop, batch["has_prev"])
        self.log("val/loss", parts.get("diffusion", loss), prog_bar=True, batch_size=b, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in parts.items() if k != "diffusion"}, batch_size=b, sync_dist=True)

    def configure_optimizers(self):
        return self.optimizer_factory(self.net.parameters())
