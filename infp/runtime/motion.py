"""Motion generation from dyadic audio, offline and streaming, with the same windows and the same noise.

``MotionStream`` is the stateful generator: push audio of both channels in chunks of any size; every
time a full hop (``window`` frames) of audio has arrived, it generates that hop's latents conditioned
on the previous ``context`` frames. ``generate_motion`` runs the same stream over whole files, so a
file fed chunk by chunk gives exactly the offline result for the same seed.

With lip following (``AudioToMotionNet.follow_lips``), frame t leaves the stream once the audio up to
frame t + ``delay`` has arrived (the lip reader's reading of what comes just after it); the windows are
generated as before, and the frames of a window leave one by one as the audio arrives. The look-ahead
of every frame stays within the window's: at most (window - 1) frames.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from infp.audio.lipreader import FORMANT_FEATURES, MEL_PER_FRAME, formant_tracks
from infp.constants import FPS, SAMPLES_PER_FRAME
from infp.diffusion import CosineSchedule, combine_rows, sample_ddim
from infp.face.expression import CONTROL_NAMES
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import Controls
from infp.models.motion_dit import DiTWindow, MotionDiT
from infp.models.steering import ControlSteering

CONTROL_SCALE = 4.0
"""Default guidance weight of the controls (the audio's is ``cfg_scale``, 2): measured, a weight of 2 moves
the rendered head motion and smile by about half of what 4 does (docs/RESULTS.md)."""

STEERED_ONLY = [CONTROL_NAMES.index("head_motion"), CONTROL_NAMES.index("smile")]
"""Controls that steering meets alone, left out of the network's conditioning while it steers: conditioned on
either, the network turns the head aside (docs/RESULTS.md, "Head motion by steering alone", "The smile by
steering alone")."""

TRACE_STEP = True
"""Run the motion transformer's sampling steps traced (``TracedStep``); False: eagerly (the same result)."""

CONTROL_STEER = 1.0
"""Default strength of control steering (``infp.models.steering``): the controls' targets are met in full."""


class TracedStep:
    """``MotionDiT.step`` for inference: traced with TorchScript on the CPU, the weights frozen in, one trace
    per number of network rows (1 to 3), traced again when a stream starts after the weights changed. The
    trace gives the eager result to the bit and saves most of the Python overhead of the transformer's small
    operations, about a third of a step's time on two cores (docs/RESULTS.md). Elsewhere (a GPU, autocast,
    tracing unavailable) the step runs eagerly."""

    def __init__(self, dit: MotionDiT) -> None:
        self.dit = dit
        self._traces: dict[int, torch.jit.ScriptModule] = {}
        self._weights: tuple = ()

    def __call__(self, x: torch.Tensor, conditioning: list, window: DiTWindow) -> torch.Tensor:
        traced = self._trace(x, conditioning, window)
        if traced is None:
            return self.dit.step(x, conditioning, window)
        return traced(x, window.prev_tokens, window.guide_tokens, window.key_mask, *_flat(conditioning, window))

    def __getstate__(self) -> dict:
        """Copies and pickles leave the traces behind (TorchScript modules do not pickle); they are made again."""
        return {**self.__dict__, "_traces": {}, "_weights": ()}

    def check_weights(self) -> None:
        """Forget the traces if the transformer's weights changed since they were made (a stream calls this
        when it starts)."""
        weights = tuple((p.data_ptr(), p._version) for p in self.dit.parameters())
        if weights != self._weights:
            self._traces, self._weights = {}, weights

    def _trace(self, x: torch.Tensor, conditioning: list, window: DiTWindow) -> torch.jit.ScriptModule | None:
        """The trace for x's number of rows (made on first use; None: run eagerly)."""
        if not TRACE_STEP or x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return None
        rows = x.shape[0]
        if rows not in self._traces:
            args = (x, window.prev_tokens, window.guide_tokens, window.key_mask, *_flat(conditioning, window))
            try:
                with warnings.catch_warnings():  # TorchScript's deprecation notices
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(_FlatStep(self.dit), args, check_trace=False)
                    self._traces[rows] = torch.jit.freeze(traced.eval())
            except Exception:  # noqa: BLE001 - any failure to trace: the eager step is the same computation
                self._traces[rows] = None
        return self._traces[rows]


def _flat(conditioning: list, window: DiTWindow) -> list[torch.Tensor]:
    return [*(m for block in conditioning for mod in block for m in mod), *(k for kv in window.cross_keys for k in kv)]


class _FlatStep(nn.Module):
    """``MotionDiT.step`` with its arguments as a flat list of tensors (what tracing takes)."""

    def __init__(self, dit: MotionDiT) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, x, prev_tokens, guide_tokens, key_mask, *rest):
        depth = len(self.dit.blocks)
        mods, keys = rest[: 9 * depth], rest[9 * depth:]
        conditioning = [[tuple(mods[9 * b + 3 * i: 9 * b + 3 * i + 3]) for i in range(3)] for b in range(depth)]
        window = DiTWindow(prev_tokens, guide_tokens, key_mask, [tuple(keys[2 * b: 2 * b + 2]) for b in range(depth)])
        return self.dit.step(x, conditioning, window)


class MotionStream:
    """Streaming stage-2 generator; algorithmic look-ahead = max(window - 1, ``delay``) frames."""

    def __init__(self, net: AudioToMotionNet, rest: torch.Tensor, spread: torch.Tensor | None = None,
                 steps: int = 6, cfg_scale: float = 2.0, seed: int = 0, device: str | torch.device = "cpu",
                 controls: Controls | None = None, control_scale: float = CONTROL_SCALE,
                 lip_follow: float | None = None, control_steer: float = CONTROL_STEER,
                 decode_keypoints: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.net = net.eval().to(device)
        # how far the controls are held to their level in the latents (control steering; weights with
        # measure axes only)
        self.control_steer = float(control_steer)
        self._steering = None
        if net.can_steer:
            # steering leaves the mouth probe's reading as it is: the lip reader alone sets the mouth
            hold = (net.mouth_probe, net.mouth_axis) if net.can_follow_lips else (None, None)
            self._steering = ControlSteering(net.measure_probe, net.measure_axis, net.control_lo, net.control_hi, *hold)
        # how far each generated mouth follows the lip reader (None: the weights' own ``lip_follow``)
        self.lip_follow = net.lip_follow if lip_follow is None else float(lip_follow)
        self._silence = net.lip_reader.silence_reading() if net.can_follow_lips else 0.0
        self.device = torch.device(device)
        self.steps, self.cfg_scale = steps, cfg_scale
        self.schedule = CosineSchedule()
        self.rest = rest.reshape(1, -1).to(self.device)  # (1, D) stage-1 latent of the portrait
        # the mouth probe's reading of this portrait's closed mouth, held in silence (``decode_keypoints``: the
        # stage-1 keypoint decoder, so that the hold stops where the portrait's lips meet)
        self._closed = net.closed_mouth(self.rest[0], decode_keypoints) if net.can_follow_lips else None
        # how far above the rest mouth speech targets start (``infp.runtime.mouth.speech_onset``; set by the
        # caller that can render the portrait)
        self.mouth_onset = 0.0
        self.mouth_gain = 1.0  # the portrait's factor of speech targets above the onset (infp.runtime.mouth)
        with torch.no_grad():
            self.style = net.style(self.rest, None if spread is None else spread.reshape(1, -1).to(self.device))
        self.seed = seed
        self._conditionings: dict = {}
        self._traced = _traced_step(net.dit)
        # guidance weight of the controls: equal to cfg_scale, one guided term (two network rows per step);
        # another value costs a third row, only while controls are set
        self.control_scale = control_scale
        self.set_controls(controls)
        self.reset()
        self._prepare_traces()

    def _prepare_traces(self) -> None:
        """Trace the sampling step now for every number of rows this stream may use (2; 3 once controls are set),
        so that a live session does not stall for the tracing at its first hop or its first control."""
        rows = [1] if self.cfg_scale == 1.0 else [2]
        if self.net.has_controls and self.control_scale != self.cfg_scale:
            rows.append(3)
        net, dit = self.net, self.net.dit
        ts = self.schedule.timesteps(self.steps, self.device)
        conditioning = self._conditioning(ts)[float(ts[0])]
        with torch.no_grad():
            for n in rows:
                window = dit.window(torch.zeros(n, net.context, net.motion_dim, device=self.device),
                                    torch.ones(n, dtype=torch.bool, device=self.device),
                                    net.null_guide.expand(n, net.context + net.window, -1), net.window)
                self._traced(torch.zeros(n, net.window, net.motion_dim, device=self.device), conditioning, window)

    def set_controls(self, controls: Controls | None) -> None:
        """Expression / behaviour controls from the next hop on (None or empty: the model's own choice).
        A network trained without controls ignores them (``controls_active`` is then False).

        With control steering, the controls of ``STEERED_ONLY`` (``head_motion``, ``smile``) are met by steering
        alone and left out of the network's conditioning."""
        self.controls = controls if controls else None
        self._control_values = None if self.controls is None else self.controls.array()  # (2, K), NaN = absent
        values = self._control_values
        if values is not None and self._steering is not None and self.control_steer > 0:
            values = values.copy()
            values[:, STEERED_ONLY] = np.nan
        # what the network is conditioned on (None: nothing, one network row less per step)
        self._controls = None if values is None or not np.isfinite(values).any() else \
            torch.from_numpy(values)[None].to(self.device)

    @property
    def controls_active(self) -> bool:
        return self._control_values is not None and self.net.has_controls

    @property
    def window(self) -> int:
        return self.net.window

    @property
    def delay(self) -> int:
        """Frames of audio after frame t that frame t waits for (lip following; 0 without)."""
        return self.net.follow_delay(self.lip_follow)

    @property
    def lookahead_ms(self) -> float:
        return max(self.net.window - 1, self.delay) * 1000 / FPS

    @property
    def waiting(self) -> int:
        """Frames generated but held back until their lip reading's audio arrives."""
        return self.frames_done - self.frames_emitted

    def releasable(self, more_samples: int = 0) -> int:
        """Generated frames that may leave once ``more_samples`` more samples per channel have arrived."""
        heard = (self.received + more_samples) // SAMPLES_PER_FRAME
        return max(0, min(self.frames_done, heard - self.delay) - self.frames_emitted)

    def reset(self) -> None:
        """Start a new conversation: no audio, no previous motion, the noise sequence from the seed."""
        ctx = self.net.context + self.net.audio_context
        self.audio = np.zeros((2, ctx * SAMPLES_PER_FRAME), dtype=np.float32)  # (self, other) history
        self.ready = 0  # samples of audio received beyond the history, not yet turned into frames
        self.prev = torch.zeros(1, self.net.context, self.net.motion_dim, device=self.device)
        self.frames_done = 0
        self.frames_emitted = 0
        self.received = 0  # samples per channel pushed so far: self.audio ends there
        self.pending = torch.zeros(1, 0, self.net.motion_dim, device=self.device)  # generated, not yet emitted (offsets)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._tracks, self._tracks_from = torch.zeros(1, 0, FORMANT_FEATURES, device=self.device), 0  # lip reader's
        if self._steering is not None:
            self._steering.reset()
        self._traced.check_weights()

    def push(self, self_audio: np.ndarray, other_audio: np.ndarray) -> np.ndarray:
        """Feed equal-length chunks (16 kHz mono float32); return the new latents (k, D) (absolute, stage-1 space)."""
        if len(self_audio) != len(other_audio):
            raise ValueError("self and other chunks must have the same length")
        self.audio = np.concatenate([self.audio, np.stack([self_audio, other_audio]).astype(np.float32)], axis=1)
        self.ready += len(self_audio)
        self.received += len(self_audio)
        hop = self.net.window * SAMPLES_PER_FRAME
        out = []
        while self.ready >= hop:
            self._step()
            self.ready -= hop
            out.append(self._emit())
        out.append(self._emit())
        return np.concatenate(out)

    def flush(self) -> np.ndarray:
        """End of a file: pad the pending audio with silence to a full hop, generate it, and let every
        frame out (those still waiting for audio read silence after the end)."""
        out = []
        if self.ready:
            pad = self.net.window * SAMPLES_PER_FRAME - self.ready
            out.append(self.push(np.zeros(pad, np.float32), np.zeros(pad, np.float32)))
        out.append(self._emit(final=True))
        return np.concatenate(out)

    @torch.no_grad()
    def _emit(self, final: bool = False) -> np.ndarray:
        """The latents (k, D) of the generated frames whose lip reading can be made now (``final``: all)."""
        net = self.net
        k = self.waiting if final else self.releasable()
        if k <= 0:
            return np.zeros((0, net.motion_dim), dtype=np.float32)
        x, self.pending = self.pending[:, :k], self.pending[:, k:]
        if self._steering is not None:  # followed every frame, so that controls set later start from a level
            own = self._own_audio(self.frames_emitted, self.frames_emitted + k)
            rms = np.sqrt(np.mean(own.reshape(k, SAMPLES_PER_FRAME) ** 2, axis=1))
            active = self.controls_active and self.control_steer > 0
            steered = self._steering.apply(x[0].double().cpu().numpy(), rms,
                                           self._control_values if active else None, self.control_steer)
            if active:
                x = torch.from_numpy(steered).to(x)[None]
        if self.delay:
            x = net.follow_lips(x, self._heard(self.frames_emitted, k), self.lip_follow, self._silence, self._closed,
                                self.mouth_onset, self.mouth_gain)
        self.frames_emitted += k
        latents = self.rest + x[0] * net.motion_scale
        return latents.cpu().numpy().astype(np.float32)

    def _heard(self, first: int, k: int) -> torch.Tensor:
        """(1, k): the lip reader's value for frames first .. first + k - 1, i.e. its read-out of the frames
        ``lip_lead`` later, from the own channel's audio (silence beyond what has arrived)."""
        reader, lead = self.net.lip_reader, self.net.lip_lead
        c = reader.context_frames
        f0, f1 = first + lead - c, first + k + lead + reader.ahead
        chunk = self._own_audio(f0, f1)
        tracks = self._formant_tracks(f0, f1) if reader.formants else None
        read = reader(torch.from_numpy(chunk)[None].to(self.device), tracks=tracks)
        return read[:, c: c + k, 0]

    def _formant_tracks(self, f0: int, f1: int) -> torch.Tensor:
        """(1, 4 (f1 - f0), 4): the own channel's ``formant_tracks`` of frames f0 .. f1 - 1, each 10 ms step
        from its own 400 samples. Those of frames whose audio has arrived are computed once and kept: read
        frame by frame, as a live stream does, the reader's context would otherwise be analysed again for
        every frame. (Frame f0's first steps reach into frame f0 - 1, which the reader's output never uses.)"""
        have = self._tracks.shape[1] // MEL_PER_FRAME
        if not self._tracks_from <= f0 <= self._tracks_from + have:
            self._tracks, self._tracks_from, have = self._tracks[:, :0], f0, 0
        end = self._tracks_from + have  # the first frame not kept
        tracks = self._tracks
        if end < f1:  # from one frame earlier, so that every step's window lies in real audio
            fresh = formant_tracks(torch.from_numpy(self._own_audio(end - 1, f1))[None].to(self.device))
            fresh = fresh[:, MEL_PER_FRAME:]
            tracks = torch.cat([tracks, fresh], dim=1)
            arrived = max(0, min(f1, self.received // SAMPLES_PER_FRAME) - end)  # frames fully heard: kept
            self._tracks = torch.cat([self._tracks, fresh[:, : arrived * MEL_PER_FRAME]], dim=1)
        tracks = tracks[:, (f0 - self._tracks_from) * MEL_PER_FRAME: (f1 - self._tracks_from) * MEL_PER_FRAME]
        # what the next reading will not need: frames before f0
        self._tracks = self._tracks[:, (f0 - self._tracks_from) * MEL_PER_FRAME:]
        self._tracks_from = f0
        return tracks

    def _own_audio(self, first: int, end: int) -> np.ndarray:
        """The own channel's samples of frames first .. end - 1 (silence beyond what has arrived)."""
        a0, a1 = first * SAMPLES_PER_FRAME, end * SAMPLES_PER_FRAME
        start = self.received - self.audio.shape[1]  # sample index of self.audio[:, 0] (negative: the initial silence)
        if a0 < start:
            raise RuntimeError("the motion stream's audio history no longer reaches back to the frames it holds")
        chunk = self.audio[0, a0 - start: a1 - start]
        return np.pad(chunk, (0, a1 - a0 - len(chunk)))

    @torch.no_grad()
    def _step(self) -> None:
        net = self.net
        w, p = net.window, net.context
        need = (p + net.audio_context + w) * SAMPLES_PER_FRAME
        end = self.audio.shape[1] - self.ready + w * SAMPLES_PER_FRAME
        chunk = torch.from_numpy(self.audio[:, end - need:end]).to(self.device)
        a_self, a_other = net.audio_features(chunk[:1], chunk[1:])
        a_self, a_other = a_self[:, -(p + w):], a_other[:, -(p + w):]
        guide = net.guide(a_self, a_other, self.style, self._controls)
        has_prev = torch.tensor([self.frames_done > 0], device=self.device)
        noise = torch.randn(1, w, net.motion_dim, generator=self.generator).to(self.device)
        # the network's rows of every step (classifier-free guidance, ``infp.diffusion.guidance``); what the steps
        # share is computed once per window, the diffusion times' conditioning once per stream
        control_scale = None
        if self._controls is not None and self.net.has_controls and self.control_scale != self.cfg_scale:
            control_scale = self.control_scale
            guides, drop = [guide, net.guide(a_self, a_other, self.style)], [False, False, True]
            guides.append(guides[1])
        elif self.cfg_scale != 1.0:
            guides, drop = [guide, guide], [False, True]
        else:
            guides, drop = [guide], [False]
        ts = self.schedule.timesteps(self.steps, self.device)
        rows = len(drop)
        denoise = net.denoise_window(self.prev.expand(rows, -1, -1), has_prev.expand(rows), torch.cat(guides),
                                     torch.tensor(drop, device=self.device), self._conditioning(ts), self._traced)

        def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = denoise(x.expand(rows, -1, -1), t)
            return v if rows == 1 else combine_rows(v, self.cfg_scale, control_scale)

        x = sample_ddim(model, noise, ts, self.schedule)
        self.prev = torch.cat([self.prev, x], dim=1)[:, -p:]
        self.pending = torch.cat([self.pending, x], dim=1)
        self.frames_done += w
        # keep only the audio history the next step and the frames still waiting need
        back = p + net.audio_context
        if net.lip_reader is not None:
            back = max(back, w + self.delay + net.lip_reader.context_frames + 1)  # + 1: ``_formant_tracks``
        keep = back * SAMPLES_PER_FRAME + self.ready - w * SAMPLES_PER_FRAME
        self.audio = self.audio[:, -keep:] if keep > 0 else self.audio[:, :0]


    @torch.no_grad()
    def _conditioning(self, ts: torch.Tensor) -> dict:
        """The network's conditioning at each diffusion time of ``ts`` for this stream's style (kept per number
        of steps)."""
        key = tuple(ts.tolist())
        if key not in self._conditionings:
            dit = self.net.dit
            self._conditionings[key] = {t: dit.conditioning(ts[i: i + 1], self.style) for i, t in enumerate(key)}
        return self._conditionings[key]


def _traced_step(dit: MotionDiT) -> TracedStep:
    """The network's ``TracedStep``, shared by its streams (kept on the transformer, outside its parameters)."""
    if not isinstance(getattr(dit, "_traced_step", None), TracedStep):
        dit.__dict__["_traced_step"] = TracedStep(dit)
    return dit.__dict__["_traced_step"]


def generate_motion(net: AudioToMotionNet, self_audio: np.ndarray, other_audio: np.ndarray, rest: torch.Tensor,
                    steps: int = 6, cfg_scale: float = 2.0, seed: int = 0, spread: torch.Tensor | None = None,
                    device: str | torch.device = "cpu", controls: Controls | None = None,
                    control_scale: float = CONTROL_SCALE, lip_follow: float | None = None,
                    control_steer: float = CONTROL_STEER,
                    decode_keypoints: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Latents (T, D) for T = ceil(N / 640) frames of dyadic audio (self, other), offline (``decode_keypoints``
    as for ``MotionStream``)."""
    n_frames = -(-len(self_audio) // SAMPLES_PER_FRAME)
    stream = MotionStream(net, rest, spread, steps, cfg_scale, seed, device, controls, control_scale, lip_follow,
                          control_steer, decode_keypoints)
    lat = np.concatenate([stream.push(self_audio, other_audio), stream.flush()])
    return lat[:n_frames]
