"""Stage-2 network: dyadic audio (self, other) + style -> windows of motion latents (B, W, D).

Shared audio encoder (both channels, in the fixed order self, other) -> Interactive Motion Guider ->
conditional diffusion transformer. Latents are generated as offsets from the speaker's rest
motion (the portrait's own latent at inference), divided by ``motion_scale`` (per-dim std of the
training offsets).

With ``controls``, a (B, 2, K) array of control values (``infp.models.controls``: smile, brow, ... for
speaking and for listening, NaN where absent) is embedded and added to the guidance of every frame, so
classifier-free guidance strengthens it as it does the audio; ``control_lo`` / ``control_hi`` hold the
corpus percentiles that map the raw measures to 0..1 (set from the training data). With ``control_axes``,
``measure_probe`` / ``measure_axis`` let the stream hold the controls to their level (control steering).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from infp.audio.features import AudioEncoder
from infp.audio.lipreader import LipReader
from infp.audio.phones import PHONES
from infp.face.expression import CONTROL_NAMES, KINDS, MEASURES
from infp.models.keypoints import keypoint_lip_gap
from infp.models.motion_dit import MotionDiT
from infp.models.motion_guider import MotionGuider
from infp.models.pretrained import Pretrained

LIP_CLOSE_MARGIN = 2.0
"""Where the voice reads as silence, the mouth probe's reading is held at most this many standard deviations of
the mouth opening below the rest latent's (the portrait's own mouth, which may be ajar): a slightly open mouth
makes its inner-lip gap flicker from frame to frame, which a viewer sees as mouth motion while the face listens.
With the stage-1 keypoint decoder known, the hold stops where the portrait's inner lips meet
(``AudioToMotionNet.closed_mouth``). Measured in docs/RESULTS.md ("A closed mouth in silence" and "Closed
where the lips meet")."""

SILENCE_TOLERANCE = 1e-4
"""A lip reading within this of the reader's reading of silence counts as silence (reader units; its spread on
speech is about 0.4). The reading of a silent channel equals ``LipReader.silence_reading`` only up to float
rounding, which differs with how many frames are read at once: without the tolerance, a silent frame read
1e-7 above it would be held at the rest mouth instead of the closed one."""


class AudioToMotionNet(Pretrained):
    """Audio encoder + motion guider + motion DiT, with the null guidance used for classifier-free guidance."""

    kind = "stage2"

    def __init__(
        self,
        motion_dim: int = 64,
        audio_dim: int = 128,
        audio_hidden: int = 128,
        guide_dim: int = 256,
        bank_size: int = 64,
        style_dim: int = 64,
        dit_dim: int = 128,
        depth: int = 3,
        heads: int = 4,
        window: int = 4,
        context: int = 16,
        audio_layers: int = 3,
        lip_head: bool = False,
        phone_head: bool = False,
        controls: bool = False,
        lip_reader: bool = False,
        lip_reader_past: int = 4,
        lip_reader_ahead: int = 0,
        lip_reader_formants: bool = False,
        lip_follow: float = 0.0,
        lip_lead: int = 1,
        lip_gain: float = 1.0,
        lip_cue: bool = True,
        control_axes: bool = False,
        mouth_slope: float | None = None,
    ) -> None:
        super().__init__()
        self.config = dict(motion_dim=motion_dim, audio_dim=audio_dim, audio_hidden=audio_hidden, guide_dim=guide_dim,
                           bank_size=bank_size, style_dim=style_dim, dit_dim=dit_dim, depth=depth, heads=heads,
                           window=window, context=context, audio_layers=audio_layers, lip_head=lip_head,
                           phone_head=phone_head, controls=controls, lip_reader=lip_reader,
                           lip_reader_past=lip_reader_past, lip_reader_ahead=lip_reader_ahead,
                           lip_reader_formants=lip_reader_formants, lip_follow=lip_follow, lip_lead=lip_lead, lip_gain=lip_gain,
                           lip_cue=lip_cue, control_axes=control_axes, mouth_slope=mouth_slope)
        self.motion_dim, self.window, self.context = motion_dim, window, context
        self.audio_dim = audio_dim
        self.audio = AudioEncoder(audio_dim, hidden=audio_hidden, n_layers=audio_layers)
        # the mouth read from each channel's voice (a fitted linear read-out, infp.audio.lipreader), added to
        # every frame's guidance: a per-frame cue of what the lips do that the memory banks would blur
        if lip_reader and lip_cue and lip_reader_ahead > 0:
            raise ValueError("the lip reader as a guidance cue (lip_cue) must be causal: set lip_reader_ahead=0 or "
                             "lip_cue=false")
        self.lip_reader = LipReader(lip_reader_past, ahead=lip_reader_ahead, formants=lip_reader_formants) if lip_reader else None
        self.lip_proj = nn.Linear(2, guide_dim) if lip_reader and lip_cue else None
        if self.lip_proj is not None:  # starts as a network without it
            nn.init.zeros_(self.lip_proj.weight)
            nn.init.zeros_(self.lip_proj.bias)
        # lip following (with the lip reader): each generated frame is moved along the latent's mouth axis
        # until a linear mouth probe reads what the lip reader hears, ``lip_follow`` of the way (0: off);
        # both are fitted on the training latents (``fit_mouth_axis``). Frame t takes the reading of frame
        # t + ``lip_lead``, so it waits for the audio up to t + lip_lead + the reader's ``ahead``
        # (``follow_delay``: the stream holds it back that long)
        self.lip_follow, self.lip_lead, self.lip_gain = float(lip_follow), int(lip_lead), float(lip_gain)
        # the rendered mouth opening per unit of the probe's reading on the faces lip_gain was chosen on
        # (train/calibrate_mouth.py): each portrait's speech is scaled to open about as wide (infp.runtime.mouth)
        self.mouth_slope = None if mouth_slope is None else float(mouth_slope)
        if lip_reader:
            self.register_buffer("mouth_probe", torch.zeros(motion_dim + 1))  # weights, then the bias
            self.register_buffer("mouth_axis", torch.zeros(motion_dim))
        # training only: the speaker's mouth opening read from each frame's audio features, which makes
        # the features carry what the lips do (see AudioToMotion.audio_lip_loss); unused at inference
        self.lip_head = nn.Linear(audio_dim, 1) if lip_head else None
        # training only: the phone heard in each frame (pseudo-labels, infp.audio.phones), on both channels
        self.phone_head = nn.Linear(audio_dim, len(PHONES)) if phone_head else None
        self.guider = MotionGuider(audio_dim, guide_dim, bank_size, style_dim, heads)
        self.dit = MotionDiT(motion_dim, dit_dim, depth, heads, guide_dim, style_dim, window, context)
        self.style_proj = nn.Sequential(nn.Linear(2 * motion_dim, style_dim), nn.SiLU(), nn.Linear(style_dim, style_dim))
        self.null_guide = nn.Parameter(torch.zeros(1, 1, guide_dim))
        self.register_buffer("motion_scale", torch.ones(motion_dim))
        self.control = None
        if controls:
            n = len(KINDS) * len(CONTROL_NAMES)
            self.control = nn.Sequential(nn.Linear(2 * n, guide_dim), nn.SiLU(), nn.Linear(guide_dim, guide_dim))
            nn.init.zeros_(self.control[-1].weight)
            nn.init.zeros_(self.control[-1].bias)
            self.register_buffer("control_lo", torch.zeros(len(CONTROL_NAMES)))
            self.register_buffer("control_hi", torch.ones(len(CONTROL_NAMES)))
        # control steering (``infp.models.steering``): probes and axes of the face measures in the latent,
        # fitted on the training latents (``fit_measure_axes``); with them, the controls are also held to
        # their level in the generated latents
        if controls and control_axes:
            self.register_buffer("measure_probe", torch.zeros(len(MEASURES), motion_dim + 1))
            self.register_buffer("measure_axis", torch.zeros(len(MEASURES), motion_dim))

    @property
    def has_controls(self) -> bool:
        return self.control is not None

    @property
    def can_steer(self) -> bool:
        """Controls with fitted measure axes: ``infp.models.steering.ControlSteering`` has something to do."""
        return self.control is not None and hasattr(self, "measure_axis") and bool(self.measure_axis.abs().sum() > 0)

    @property
    def audio_context(self) -> int:
        """Video frames of past audio the encoder needs before the first frame it describes."""
        if self.lip_reader is None:
            return self.audio.context_frames
        return max(self.audio.context_frames, self.lip_reader.context_frames)

    def audio_features(self, self_audio: torch.Tensor, other_audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) each -> (B, N/640, A) each, through one shared encoder (with the lip reader as a cue,
        ``lip_cue``: A + 1, its read-out last)."""
        audio = torch.cat([self_audio, other_audio], dim=0)
        if self.lip_proj is None:
            feats = self.audio(audio)
        else:  # one log-mel for both: the reader's front end is the encoder's
            mel = self.audio.log_mel(audio)
            feats = self.audio(audio, mel)
            feats = torch.cat([feats, self.lip_reader(audio, mel).to(feats.dtype)], dim=-1)
        return feats.chunk(2, dim=0)

    @property
    def can_follow_lips(self) -> bool:
        """A lip reader and a fitted mouth axis: ``follow_lips`` has something to do."""
        return self.lip_reader is not None and bool(self.mouth_axis.abs().sum() > 0)

    def follow_delay(self, strength: float) -> int:
        """Frames of audio beyond frame t that following the lips with ``strength`` needs for frame t."""
        if strength <= 0 or not self.can_follow_lips:
            return 0
        return self.lip_lead + self.lip_reader.ahead

    def follow_lips(self, x: torch.Tensor, heard: torch.Tensor, strength: float,
                    silence: float | None = None, closed: float | None = None, onset: float = 0.0,
                    gain: float = 1.0) -> torch.Tensor:
        """Move generated offsets ``x`` (B, T, D) along the mouth axis toward the mouth the voice calls for,
        ``strength`` of the way. ``heard`` (B, T) is the lip reader's value for each frame (of frame t +
        ``lip_lead``: the lips move ahead of the voice); ``silence`` its value for a silent channel
        (``LipReader.silence_reading``, computed when None); ``closed`` the mouth probe's reading of the
        portrait's closed mouth (``closed_mouth``; None: ``LIP_CLOSE_MARGIN`` below the rest mouth); ``onset`` how
        far above the rest mouth the portrait's rendered mouth starts to open (``infp.runtime.mouth.speech_onset``):
        speech targets start there; ``gain`` the portrait's factor of the targets above it (``infp.runtime.mouth``).

        The target is the rest latent's mouth (offset 0) plus ``onset`` plus ``gain`` x ``lip_gain`` times what the reader hears above
        silence: a regression's read-out of silence is shrunk toward the mean, above the closed mouth, so
        silence itself must read as closed. Where the voice reads as silence or quieter, the target is the
        closed mouth itself: there the probe's reading of the generated frame is noise, and following it
        would draw that noise as mouth motion while the face listens.
        """
        if strength <= 0 or not self.can_follow_lips:
            return x
        if silence is None:
            silence = self.lip_reader.silence_reading()
        probe, bias = self.mouth_probe[:-1].to(x.dtype), self.mouth_probe[-1].to(x.dtype)
        if closed is None:
            closed = bias - LIP_CLOSE_MARGIN
        above = heard.to(x.dtype) - silence
        called = bias + onset + gain * self.lip_gain * above
        axis = self.mouth_axis.to(x.dtype)
        now = x @ probe + bias
        delta = torch.where(above > SILENCE_TOLERANCE, called, torch.as_tensor(closed, dtype=x.dtype)) - now
        step = strength * delta / (axis @ probe)
        return x + step[..., None] * axis

    @torch.no_grad()
    def closed_mouth(self, rest: torch.Tensor, decode_keypoints: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> float:
        """The mouth probe's reading at which the portrait's mouth is closed, for ``follow_lips``: from the
        rest mouth down along the mouth axis to where the inner lips of the decoded keypoints meet
        (``decode_keypoints``: the stage-1 keypoint decoder, CPU latents (B, D) -> keypoints (B, K, 2), e.g.
        ``Stage1Runner.decode_keypoints``), at most
        ``LIP_CLOSE_MARGIN`` below the rest mouth, never above it. Without keypoints, ``LIP_CLOSE_MARGIN`` below."""
        bias = float(self.mouth_probe[-1])
        if decode_keypoints is None or not self.can_follow_lips:
            return bias - LIP_CLOSE_MARGIN
        margins = torch.linspace(0.0, LIP_CLOSE_MARGIN, 41)
        probe, axis = self.mouth_probe[:-1].float().cpu(), self.mouth_axis.float().cpu()
        steps = -margins[:, None] / (axis @ probe) * axis  # offsets that lower the reading by each margin
        latents = rest.reshape(1, -1).float().cpu() + steps * self.motion_scale.float().cpu()
        kp = decode_keypoints(latents)
        if kp is None:
            return bias - LIP_CLOSE_MARGIN
        gap = keypoint_lip_gap(kp.float().cpu()).numpy()
        m = margins.numpy()
        if gap[0] <= 0:  # already closed at rest
            return bias
        below = np.flatnonzero(gap <= 0)
        if not len(below):
            return bias - LIP_CLOSE_MARGIN
        i = int(below[0])  # the lips meet between margins i - 1 and i
        meet = m[i - 1] + (m[i] - m[i - 1]) * gap[i - 1] / (gap[i - 1] - gap[i])
        return bias - float(meet)

    def style(self, rest: torch.Tensor, spread: torch.Tensor | None = None) -> torch.Tensor:
        """Style vector from a rest latent (B, D) (the portrait's) and optionally the spread (B, D) of a reference clip."""
        if spread is None:
            spread = torch.zeros_like(rest)
        return self.style_proj(torch.cat([rest, spread / self.motion_scale], dim=-1))

    def guide(self, a_self: torch.Tensor, a_other: torch.Tensor, style: torch.Tensor,
              controls: torch.Tensor | None = None) -> torch.Tensor:
        """Guidance (B, T, C); ``controls`` (B, 2, K) values with NaN = absent (None: all absent; ignored by a
        network trained without controls)."""
        guide = self.guider(a_self[..., : self.audio_dim], a_other[..., : self.audio_dim], style)
        if self.lip_proj is not None:
            guide = guide + self.lip_proj(torch.cat([a_self[..., self.audio_dim:], a_other[..., self.audio_dim:]], dim=-1))
        if self.control is None:
            return guide
        if controls is None:
            controls = torch.full((guide.shape[0], len(KINDS), len(CONTROL_NAMES)), float("nan"), device=guide.device)
        given = torch.isfinite(controls)
        feats = torch.cat([torch.where(given, controls, 0.0).flatten(1), given.flatten(1).to(guide.dtype)], dim=1)
        return guide + self.control(feats.to(guide.dtype))[:, None]

    def denoise(self, x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor, has_prev: torch.Tensor,
                guide: torch.Tensor, style: torch.Tensor, drop_cond: torch.Tensor | None = None) -> torch.Tensor:
        """v-prediction for a noisy window x (B, W, D); ``drop_cond`` (B,) replaces the guidance by the null one."""
        if drop_cond is not None:
            guide = torch.where(drop_cond[:, None, None], self.null_guide.expand_as(guide), guide)
        return self.dit(x, t, prev, has_prev, guide, style)

    def denoise_window(self, prev: torch.Tensor, has_prev: torch.Tensor, guide: torch.Tensor,
                       drop_cond: torch.Tensor, conditioning: dict, step: Callable | None = None
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``denoise`` for one window, as a function of (x, t): what the window's steps share is computed once.
        ``conditioning`` maps each diffusion time (a float) to ``MotionDiT.conditioning`` at it, for this style;
        ``step``: what runs ``MotionDiT.step`` (itself when None)."""
        guide = torch.where(drop_cond[:, None, None], self.null_guide.expand_as(guide), guide)
        window = self.dit.window(prev, has_prev, guide, self.window)
        step = step or self.dit.step

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return step(x, conditioning[float(t.reshape(-1)[0])], window)

        return denoise
