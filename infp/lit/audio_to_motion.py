"""AudioToMotion: stage-2 training (v-prediction diffusion loss on windows of motion latents).

Optionally (``w_lips`` > 0 with ``stage1_checkpoint``), a lip loss: the clean window implied by the
v-prediction is decoded into lip keypoints by the frozen keypoint decoder of the stage-1 net that made
the latents, and compared with the lips of the real window. Mouth motion lives in a few directions of
the latent that the plain diffusion loss weighs no more than head pose or brows; this loss weighs them
by what the renderer does with them.

Two losses on the audio features themselves (training-only heads of the network): ``w_audio_lips``,
the face's own mouth opening read from each frame's ``self`` features on clips where ``self`` is the
face's own voice; ``w_phones``, the phone heard in each frame (pocketsphinx pseudo-labels,
``infp.audio.phones``) on both channels. With a few minutes of own-voice video, the diffusion loss alone
does not teach the audio encoder what the lips do with the words; these make the features carry it.

Validation logs ``val/lip_r`` when the stage-1 checkpoint is given: the correlation, over own-voice
frames, of the mouth opening of the window predicted in one step from pure noise and the audio alone
(no previous frames) with the real one (a cheap proxy for the lip-sync benchmark).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from infp.diffusion import CosineSchedule
from infp.models.audio_to_motion import AudioToMotionNet


class AudioToMotion(pl.LightningModule):
    """Condition dropout (for classifier-free guidance) and context dropout (for the first window)."""

    def __init__(self, net: AudioToMotionNet, optimizer: Callable | None = None, p_drop_cond: float = 0.1,
                 p_drop_prev: float = 0.1, motion_dim: int | None = None, w_lips: float = 0.0,
                 stage1_checkpoint: str | None = None, w_audio_lips: float = 0.0, w_phones: float = 0.0,
                 p_drop_control: float = 0.3, p_drop_controls: float = 0.3, lip_reader_ridge: float = 1.0,
                 lip_reader_fit_val: bool = False) -> None:
        super().__init__()
        if motion_dim is not None and motion_dim != net.motion_dim:
            raise ValueError(f"model.motion_dim={motion_dim} but the network's motion_dim is {net.motion_dim} "
                             "(set model.motion_dim; model.net.motion_dim follows it)")
        self.save_hyperparameters(ignore=["net", "optimizer"])
        self.net = net
        if w_audio_lips > 0 and net.lip_head is None:
            raise ValueError("model.w_audio_lips > 0 needs the network's lip head (model.net.lip_head=true)")
        if w_phones > 0 and net.phone_head is None:
            raise ValueError("model.w_phones > 0 needs the network's phone head (model.net.phone_head=true)")
        self.lip_decoder = self._lip_decoder(stage1_checkpoint) if w_lips > 0 or stage1_checkpoint else None
        self._val_mouths: list[tuple[torch.Tensor, torch.Tensor]] = []
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

    def audio_lip_loss(self, batch: dict[str, torch.Tensor], a_self: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE of the mouth opening read from each frame's ``self`` audio features by the lip head against the
        face's own (standardised) opening, over frames whose ``self`` is the face's own voice; and the
        prediction (B, P+W)."""
        pred = self.net.lip_head(a_self[..., : self.net.audio_dim]).squeeze(-1)
        target = batch["mouth"]
        ok = torch.isfinite(target)
        if not bool(ok.any()):
            return pred.sum() * 0.0, pred
        return F.mse_loss(pred[ok], target[ok]), pred

    def mouth_opening(self, batch: dict[str, torch.Tensor], x0: torch.Tensor) -> torch.Tensor:
        """(B, W) mouth opening of a window of offsets, through the stage-1 keypoint decoder."""
        from infp.models.keypoints import keypoint_mouth_opening

        lat = x0 * self.net.motion_scale + batch["rest"][:, None]
        return keypoint_mouth_opening(self.lip_decoder(lat.flatten(0, 1))).view(x0.shape[:2])

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
        if self.hparams.w_phones > 0 and dm is not None and not getattr(dm, "phones", False):
            raise ValueError("model.w_phones > 0 needs phone labels in the batches: set data.phones=true")
        if dm is not None and getattr(dm, "scale", None) is not None:
            self.net.motion_scale.copy_(torch.as_tensor(dm.scale))
        if stage == "fit" and self.net.lip_reader is not None and not self.net.lip_reader.is_fitted:
            self.fit_lip_reader(dm)
        if self.net.has_controls and dm is not None and not getattr(dm, "controls", False):
            raise ValueError("model.net.controls=true needs the control values in the batches: set data.controls=true")
        if self.net.has_controls and getattr(dm, "control_range", None) is not None:
            lo, hi = torch.as_tensor(dm.control_range)
            self.net.control_lo.copy_(lo)
            self.net.control_hi.copy_(hi)
        if stage == "fit" and hasattr(self.net, "measure_axis") and not bool(self.net.measure_axis.abs().sum() > 0):
            self.fit_control_axes(dm)

    def fit_control_axes(self, dm) -> None:
        """Fit the probes and axes of the face measures in the latents (control steering,
        ``infp.models.steering``) on the training split's clips, and report the probes on the validation clips."""
        import logging

        from infp.data.stage2 import ALL
        from infp.face.expression import MEASURES
        from infp.models.steering import fit_measure_axes, probe_r

        if dm is None or not hasattr(dm, "train_subset"):
            raise ValueError("model.net.control_axes=true needs the stage-2 data module to fit the measure axes on")
        probe, axis, stats = fit_measure_axes(dm.train_subset(ALL).measure_offsets())
        self.net.measure_probe.copy_(torch.from_numpy(probe))
        self.net.measure_axis.copy_(torch.from_numpy(axis))
        val = ""
        if dm.val_set is not None:
            rs = probe_r(probe, dm.val_set.measure_offsets())
            val = ", on the validation clips " + " ".join(f"{n} {rs[n + '_r']:.2f}" for n in MEASURES)
        logging.getLogger(__name__).info("measure axes of the latents fitted on %d frames (probe r %s%s)", stats["frames"],
                                         " ".join(f"{n} {stats[n + '_r']:.2f}" for n in MEASURES), val)

    def fit_lip_reader(self, dm, mouth_axis: bool = True) -> None:
        """Fit the network's lip reader on the training split's own-voice clips (once: a resumed or
        initialised run keeps the fitted one) and report how well it reads the validation speakers; with
        ``lip_reader_fit_val`` on the validation split's own-voice clips as well (more speakers for a reader
        that only lip following uses; its validation r is then no longer a held-out figure). ``mouth_axis``:
        also fit the latents' mouth probe and axis (needs the latents of the stage-1 net the weights go with)."""
        import itertools
        import logging

        from infp.audio.lipreader import fit_lip_reader, fit_mouth_axis, reader_r
        from infp.data.stage2 import ALL

        if dm is None or not hasattr(dm, "train_subset"):
            raise ValueError("model.net.lip_reader=true needs the stage-2 data module to fit the lip reader on")
        tracks = dm.train_subset(ALL).own_voice_tracks()
        on_val = bool(self.hparams.get("lip_reader_fit_val", False)) and dm.val_set is not None
        if on_val:
            tracks = itertools.chain(tracks, dm.val_set.own_voice_tracks())
        stats = fit_lip_reader(self.net.lip_reader, tracks, self.hparams.lip_reader_ridge)
        val_r = reader_r(self.net.lip_reader, dm.val_set.own_voice_tracks()) if dm.val_set is not None else float("nan")
        logging.getLogger(__name__).info(
            "lip reader fitted on %d own-voice clips%s (%d frames): r %.3f on them, %.3f on the validation clips%s",
            stats["clips"], " of the training and validation speakers" if on_val else "", stats["frames"],
            stats["train_r"], val_r, " (fitted on them too)" if on_val else "")
        if not mouth_axis:
            return
        probe, axis, mstats = fit_mouth_axis(self._mouth_tracks(dm.train_subset(ALL)))
        self.net.mouth_probe.copy_(torch.from_numpy(probe))
        self.net.mouth_axis.copy_(torch.from_numpy(axis))
        logging.getLogger(__name__).info("mouth axis of the latents fitted on %d frames (probe r %.3f, on the %s)",
                                         mstats["frames"], mstats["probe_r"],
                                         "renderer's mouth" if self.lip_decoder is not None else "real mouth")

    @torch.no_grad()
    def _mouth_tracks(self, ds):
        """(latent offsets, standardised mouth) of the own-voice clips for the mouth axis: with the stage-1
        keypoint decoder, the mouth its keypoints show for those latents (what the renderer will draw: a
        closer linear fit than the real face's mouth); else the real one."""
        from infp.models.keypoints import keypoint_mouth_opening

        for x, mouth, rest in ds.own_voice_offsets():
            if self.lip_decoder is not None:
                dev = next(self.lip_decoder.parameters()).device
                lat = torch.from_numpy(x * ds.scale + rest).float().to(dev)
                o = keypoint_mouth_opening(self.lip_decoder(lat)).double().cpu().numpy()
                mouth = np.where(np.isfinite(mouth), (o - o.mean()) / max(float(o.std()), 1e-9), np.nan)
            yield x, mouth

    def drop_controls(self, controls: torch.Tensor) -> torch.Tensor:
        """Condition dropout of the controls: each value absent with ``p_drop_control``, all of a window's with
        ``p_drop_controls`` (absent = the model's own choice, as without controls)."""
        b = controls.shape[0]
        keep = torch.rand(controls.shape, device=controls.device) >= self.hparams.p_drop_control
        keep &= (torch.rand(b, 1, 1, device=controls.device) >= self.hparams.p_drop_controls)
        return torch.where(keep, controls, torch.full_like(controls, float("nan")))

    def loss(self, batch: dict[str, torch.Tensor], t: torch.Tensor, noise: torch.Tensor,
             drop_cond: torch.Tensor, has_prev: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective and its parts: (total, {"diffusion": ..., "lips": ...}); the parts are
        empty without the lip loss (the total is then the diffusion loss)."""
        net = self.net
        x_t, v = self.schedule.add_noise(batch["x0"], t, noise)
        a_self, a_other = net.audio_features(batch["self_audio"], batch["other_audio"])
        n = net.context + net.window
        style = net.style(batch["rest"], batch["spread"])
        guide = net.guide(a_self[:, -n:], a_other[:, -n:], style, batch.get("controls"))
        pred = net.denoise(x_t, t, batch["prev"], has_prev, guide, style, drop_cond)
        loss = F.mse_loss(pred, v)
        total, parts = loss, {}
        if self.hparams.w_lips > 0:
            a, s = (c.view(-1, 1, 1) for c in self.schedule.alpha_sigma(t))
            lips = self.lip_loss(batch, a * x_t - s * pred)  # the clean window the v-prediction implies
            total = total + self.hparams.w_lips * lips
            parts["lips"] = lips.detach()
        if self.hparams.w_audio_lips > 0:
            audio_lips, _ = self.audio_lip_loss(batch, a_self[:, -n:])
            total = total + self.hparams.w_audio_lips * audio_lips
            parts["audio_lips"] = audio_lips.detach()
        if self.hparams.w_phones > 0:
            logits = net.phone_head(torch.cat([a_self[:, -n:], a_other[:, -n:]])[..., : net.audio_dim])
            labels = torch.cat([batch["self_phones"], batch["other_phones"]])
            phones = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-1)
            total = total + self.hparams.w_phones * phones
            parts["phones"] = phones.detach()
        if parts:
            parts["diffusion"] = loss.detach()
        return total, parts

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        b = batch["x0"].shape[0]
        dev = batch["x0"].device
        t = torch.rand(b, device=dev)
        drop = torch.rand(b, device=dev) < self.hparams.p_drop_cond
        has_prev = batch["has_prev"] & (torch.rand(b, device=dev) >= self.hparams.p_drop_prev)
        if "controls" in batch:
            batch = {**batch, "controls": self.drop_controls(batch["controls"])}
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
        if self.lip_decoder is not None and "mouth" in batch:
            self._collect_mouths(batch, noise)

    def _collect_mouths(self, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> None:
        """The lip-sync proxy: the mouth of the window predicted from pure noise in one step, without its
        previous frames (what the model expects from the audio alone), against the real window's, on
        frames whose ``self`` is the face's own voice."""
        net, b = self.net, batch["x0"].shape[0]
        t = torch.ones(b, device=noise.device)
        a_self, a_other = net.audio_features(batch["self_audio"], batch["other_audio"])
        n = net.context + net.window
        style = net.style(batch["rest"], batch["spread"])
        guide = net.guide(a_self[:, -n:], a_other[:, -n:], style, batch.get("controls"))
        x_t, _ = self.schedule.add_noise(batch["x0"], t, noise)
        no_prev = torch.zeros_like(batch["has_prev"])  # from the audio alone: continuing the previous frames
        pred = net.denoise(x_t, t, batch["prev"], no_prev, guide, style)  # would score by autocorrelation
        a, s = (c.view(-1, 1, 1) for c in self.schedule.alpha_sigma(t))
        x0 = a * x_t - s * pred
        ok = torch.isfinite(batch["mouth"][:, -net.window:])
        self._val_mouths.append((self.mouth_opening(batch, x0)[ok].detach().cpu(),
                                 self.mouth_opening(batch, batch["x0"])[ok].detach().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_mouths:
            return
        pred = torch.cat([p for p, _ in self._val_mouths])
        real = torch.cat([r for _, r in self._val_mouths])
        self._val_mouths.clear()
        if len(pred) >= 10 and pred.std() > 0 and real.std() > 0:
            r = torch.corrcoef(torch.stack([pred, real]))[0, 1]
            self.log("val/lip_r", r, sync_dist=True)

    def configure_optimizers(self):
        return self.optimizer_factory(self.net.parameters())
