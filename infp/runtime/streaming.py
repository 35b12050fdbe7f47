"""The one streaming loop: both audio channels in, frames stamped on the audio clock out.

``StreamingSession`` takes audio of both channels in chunks of any size. Each time a full hop of
``window`` frames (4 frames = 160 ms = 2560 samples) has arrived it runs, for that hop:

1. per-channel voice activity (silero, streaming) and level of every frame;
2. stage-2 motion generation (``MotionStream``: the same windows and noise as offline);
3. stage-1 rendering of the frames the motion stream lets out (optionally pasted back and overlaid).

With lip following, frame t leaves the motion stream once the audio up to frame t + ``delay`` has
arrived (at most the window's own look-ahead), so frames leave one by one as audio arrives between
hops, and a hop's step can hand out frames of the hop before.

Every frame is stamped with its index ``k`` on the audio clock: it shows the audio samples
``[640 k, 640 (k + 1))`` of both channels, ``pts = k / 25`` s. A caller that runs in real time passes
a ``drop`` predicate; a frame it declares late is not rendered (its motion is still generated, so the
motion stays continuous), which keeps latency from growing when the CPU cannot keep up.

The offline renderer (``Pipeline.frames``) runs this same loop hop by hop, with the whole file's
voice activity given up front; the live demo (``infp.demo``) runs it with streaming voice activity.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from infp.audio.vad import StreamingVAD
from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD, VAD_CHUNK
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import Controls
from infp.runtime.motion import CONTROL_SCALE, CONTROL_STEER, MotionStream
from infp.runtime.mouth import fit_mouth
from infp.runtime.overlay import OVERLAY_LANE, draw_overlay, frame_state
from infp.runtime.portrait import Portrait
from infp.runtime.stage1 import Stage1Runner


def level_db(x: np.ndarray) -> float:
    """RMS level of a chunk in dBFS (floor -100)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return max(-100.0, 20.0 * math.log10(max(rms, 1e-5)))


@dataclass
class StreamFrame:
    """One output frame, stamped on the audio clock."""

    index: int  # k: shows audio samples [640 k, 640 (k + 1)) of both channels
    vad: tuple[float, float]  # speech probability (self, other)
    level: tuple[float, float]  # RMS dBFS (self, other)
    state: str  # idle / speaking / listening / both
    latent: np.ndarray  # (D,) stage-1 motion latent
    image: np.ndarray | None = None  # (S, S, 3) or the pasted-back portrait; None when dropped
    render_s: float = 0.0  # rendering time spent on this frame (its share of a batch)
    info: dict = field(default_factory=dict)  # free for callers (wall-clock stamps of a live session)

    @property
    def pts(self) -> float:
        """Presentation time in seconds on the audio clock."""
        return self.index / FPS

    @property
    def dropped(self) -> bool:
        return self.image is None


class StreamingSession:
    """Stateful dyadic streaming generator; see the module docstring.

    ``vad``: per-frame (T, 2) speech probabilities known in advance (the offline renderer passes the
    whole file's), or None to run silero VAD on the stream as it arrives.
    ``render_batch``: frames rendered per stage-1 call (4 = one call per hop: best throughput;
    1 = each frame leaves as soon as it is drawn: lowest latency).
    ``controls``: expression / behaviour controls of stage 2 (None or empty: the model's own choice), guided
    with the weight ``control_scale`` and, with weights that have measure axes, held to their level in the
    latents ``control_steer`` of the way (``infp.models.steering``).
    ``mouth_onset``: with lip following on, render the portrait's mouth along the latents' mouth axis once, start
    speech where it opens and scale it to open about as wide per unit as the faces the lip gain was chosen on
    (``infp.runtime.mouth.fit_mouth``: closed-lipped portraits stay sealed over the first units; 14-22 renders and
    face-mesh readings, 1.5-4.5 s on 2 cores). ``mouth_fit``: its (onset, gain) from an earlier session of the
    same portrait and weights, which skips the fit.
    """

    def __init__(self, stage1: Stage1Runner, stage2: AudioToMotionNet, portrait: Portrait, *, steps: int = 6,
                 cfg_scale: float = 2.0, seed: int = 0, paste_back: bool = False, overlay: bool = False,
                 vad: np.ndarray | None = None, vad_threshold: float = SPEECH_THRESHOLD, render_batch: int | None = None,
                 device: str | torch.device = "cpu", timings: dict | None = None, controls: Controls | None = None,
                 control_scale: float = CONTROL_SCALE, lip_follow: float | None = None,
                 control_steer: float = CONTROL_STEER, mouth_onset: bool = True,
                 mouth_fit: tuple[float, float] | None = None) -> None:
        self.stage1 = stage1
        self.device = torch.device(device)
        self.portrait = portrait
        self.source = stage1.source(portrait)
        self.motion = MotionStream(stage2, self.source.motion[0], steps=steps, cfg_scale=cfg_scale, seed=seed,
                                   device=self.device, controls=controls, control_scale=control_scale,
                                   lip_follow=lip_follow, control_steer=control_steer,
                                   decode_keypoints=stage1.decode_keypoints)
        if mouth_fit is not None and self.motion.delay:  # found before for this portrait and these weights
            self.motion.mouth_onset, self.motion.mouth_gain = float(mouth_fit[0]), float(mouth_fit[1])
        elif mouth_onset and self.motion.delay:  # lip following is on: find where this face's rendered mouth opens
            fit = fit_mouth(stage1, self.source, stage2, self.motion.rest[0], self.motion._closed,
                            slope=stage2.mouth_slope is not None)
            self.motion.mouth_onset, self.motion.mouth_gain = fit.onset, fit.gain
        self.paste_back, self.overlay = paste_back, overlay
        self.vad_threshold = vad_threshold
        self.window = self.motion.window
        self.hop = self.window * SAMPLES_PER_FRAME
        self.render_batch = render_batch or self.window
        self._given_vad = None if vad is None else np.asarray(vad, np.float32)
        self._vad = StreamingVAD(2) if vad is None else None
        self._chunk_probs: deque[np.ndarray] = deque(maxlen=64)  # recent 512-sample VAD steps
        self._chunks_seen = 0
        self._buf = np.zeros((2, 0), np.float32)  # received audio not yet handed to the motion stream
        self._recent = np.zeros((2, 0), np.float32)  # handed audio of the frames still to leave (their levels)
        self._history: deque[np.ndarray] = deque(maxlen=OVERLAY_LANE)  # recent per-frame VAD, for the overlay
        self.samples_in = 0  # samples received per channel (the audio clock)
        self.frames_done = 0  # frames that have left (rendered or dropped)
        self.drop: Callable[[int], bool] | None = None
        self.timings = timings if timings is not None else {}
        self.timings.setdefault("stage2_s", 0.0)
        self.timings.setdefault("stage1_s", 0.0)
        self.timings["mouth_onset"] = self.motion.mouth_onset
        self.timings["mouth_gain"] = self.motion.mouth_gain

    # -- audio in ---------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.portrait.crop.shape[0]

    @property
    def frames_out(self) -> int:
        """Frames generated so far: the next hop's first frame (controls set now apply from there)."""
        return self.motion.frames_done

    @property
    def ready_hops(self) -> int:
        """Steps that have work: hops whose audio is complete and not generated yet, plus one when the
        audio received since lets generated frames leave."""
        hops = (self.motion.ready + self._buf.shape[1]) // self.hop
        if hops:
            return hops
        return int(self._buf.shape[1] > 0 and self.motion.releasable(self._buf.shape[1]) > 0)

    def voice_activity(self, own: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Run the streaming VAD on the next equal-length chunks: (k, 2) speech probabilities of the
        512-sample steps they complete. For a caller that needs them as soon as the audio arrives (the
        live demo's conversation events); it then passes them to ``feed`` with the same audio."""
        if self._vad is None:
            raise ValueError("this session was given its voice activity up front")
        t0 = time.perf_counter()
        probs = self._vad.push(np.stack([np.asarray(own, np.float32).reshape(-1), np.asarray(other, np.float32).reshape(-1)]))
        self.timings["vad_s"] = self.timings.get("vad_s", 0.0) + time.perf_counter() - t0
        return probs

    def feed(self, own: np.ndarray, other: np.ndarray, probs: np.ndarray | None = None) -> None:
        """Append equal-length chunks of both channels (16 kHz mono float32); nothing is generated yet.

        ``probs``: their VAD steps, when the caller ran ``voice_activity`` on them already.
        """
        own, other = np.asarray(own, np.float32).reshape(-1), np.asarray(other, np.float32).reshape(-1)
        if len(own) != len(other):
            raise ValueError("self and other chunks must have the same length")
        pair = np.stack([own, other])
        if self._vad is not None:
            if probs is None:
                probs = self.voice_activity(own, other)
            self._chunk_probs.extend(probs)
            self._chunks_seen += len(probs)
        self._buf = np.concatenate([self._buf, pair], axis=1)
        self.samples_in += len(own)

    def push(self, own: np.ndarray, other: np.ndarray) -> list[StreamFrame]:
        """``feed`` then generate every complete hop; returns the new frames."""
        self.feed(own, other)
        out: list[StreamFrame] = []
        while self.ready_hops:
            out.extend(self.step())
        return out

    def flush(self) -> list[StreamFrame]:
        """End of the conversation: pad the pending audio with silence to a full hop, generate it and let
        every frame out.

        Returns only the frames that show received audio (ceil(samples / 640) frames in all).
        """
        total = -(-self.samples_in // SAMPLES_PER_FRAME)
        out: list[StreamFrame] = []
        while self.ready_hops:
            out.extend(f for f in self.step() if f.index < total)
        pending = (self.motion.ready + self._buf.shape[1]) % self.hop
        if pending:
            z = np.zeros(self.hop - pending, np.float32)
            self.feed(z, z)
            self.samples_in -= len(z)
        hand, self._buf = self._buf, self._buf[:, :0]
        out.extend(f for f in self._leave(hand, final=True) if f.index < total)
        return out

    # -- one hop ----------------------------------------------------------------------------------
    def step(self) -> Iterator[StreamFrame]:
        """Generate the next ready hop (or let out the frames the audio received since allows); frames are
        yielded as soon as each is rendered (or dropped)."""
        if not self.ready_hops:
            return
        n = self.hop - self.motion.ready if self.motion.ready + self._buf.shape[1] >= self.hop else self._buf.shape[1]
        hand, self._buf = self._buf[:, :n], self._buf[:, n:]
        yield from self._leave(hand)

    def _leave(self, audio: np.ndarray, final: bool = False) -> Iterator[StreamFrame]:
        """Hand ``audio`` to the motion stream and render the frames it lets out."""
        self._recent = np.concatenate([self._recent, audio], axis=1)
        t0 = time.perf_counter()
        latents = [self.motion.push(audio[0], audio[1])]
        if final:
            latents.append(self.motion.flush())
        latents = np.concatenate(latents)
        self.timings["stage2_s"] += time.perf_counter() - t0
        frames = []
        for j, latent in enumerate(latents):
            k = self.frames_done + j
            seg = self._recent[:, j * SAMPLES_PER_FRAME:(j + 1) * SAMPLES_PER_FRAME]
            vad = self._frame_vad(k)
            self._history.append(vad)
            frames.append(StreamFrame(k, (float(vad[0]), float(vad[1])), (level_db(seg[0]), level_db(seg[1])),
                                      frame_state(vad[0], vad[1], self.vad_threshold), latent,
                                      info={"overlay_vad": np.stack(self._history)} if self.overlay else {}))
        self.frames_done += len(frames)
        self._recent = self._recent[:, len(frames) * SAMPLES_PER_FRAME:]
        for g in range(0, len(frames), self.render_batch):
            group = frames[g:g + self.render_batch]
            keep = [f for f in group if self.drop is None or not self.drop(f.index)]
            if keep:
                t0 = time.perf_counter()
                images = self.stage1.render(self.source, torch.from_numpy(np.stack([f.latent for f in keep])))
                spent = time.perf_counter() - t0
                self.timings["stage1_s"] += spent
                for f, img in zip(keep, images):
                    f.image = self._finish(img, f)
                    f.render_s = spent / len(keep)
            yield from group

    def _finish(self, img: np.ndarray, f: StreamFrame) -> np.ndarray:
        if self.paste_back:
            img = self.portrait.paste(img)
        if self.overlay:
            hist = f.info.pop("overlay_vad")
            img = draw_overlay(img, hist, len(hist) - 1, f.state)
        return img

    def _frame_vad(self, k: int) -> np.ndarray:
        """(self, other) speech probability of frame k: given, or interpolated from the streaming VAD."""
        if self._given_vad is not None:
            return self._given_vad[k] if k < len(self._given_vad) else np.zeros(2, np.float32)
        if not self._chunk_probs:
            return np.zeros(2, np.float32)
        # chunk probabilities resampled at the frame's centre (as infp.audio.vad.chunk_to_frame_prob);
        # chunks not complete yet are held at the last value
        start = self._chunks_seen - len(self._chunk_probs)
        probs = np.stack(self._chunk_probs)
        centres = (np.arange(start, self._chunks_seen) + 0.5) * VAD_CHUNK
        t = (k + 0.5) * SAMPLES_PER_FRAME
        return np.array([np.interp(t, centres, probs[:, c]) for c in range(2)], np.float32)

    def warm_up_vad(self) -> None:
        """Run the streaming VAD on silence once and reset it (its first calls are slow), before a live start."""
        if self._vad is not None:
            self._vad.push(np.zeros((2, 4 * VAD_CHUNK), np.float32))
            self._vad.reset()

    # -- live adjustments -------------------------------------------------------------------------
    def set_portrait(self, portrait: Portrait) -> None:
        """Render from now on with another crop of the portrait (e.g. a smaller size); motion continues."""
        self.portrait = portrait
        self.source = self.stage1.source(portrait)

    def set_steps(self, steps: int) -> None:
        """Diffusion steps of the next hops (fewer: cheaper motion generation)."""
        self.motion.steps = steps

    def set_controls(self, controls: Controls | None) -> None:
        """Expression / behaviour controls from the next hop on (None or empty: the model's own choice)."""
        self.motion.set_controls(controls)

    @property
    def lookahead_s(self) -> float:
        return self.motion.lookahead_ms / 1000

    @property
    def hop_s(self) -> float:
        return self.hop / SAMPLE_RATE
