"""Offline dyadic rendering: portrait + (self, other) audio -> 25 fps video of the portrait in the conversation.

Layers: ``Pipeline`` (I/O, face crop, paste-back, overlay) over ``MotionStream`` (stage 2) and
``Stage1Runner`` (stage 1). Frames are produced hop by hop and streamed to the encoder, so memory does
not grow with the length of the conversation.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from infp.audio.vad import frame_speech_prob
from infp.constants import FPS, MAX_CFG_SCALE, MAX_SEED, MAX_STEPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.errors import InfpError, MediaError, SettingsError
from infp.io import is_silent, read_dialogue, write_video
from infp.io.atomic import atomic_write_text
from infp.io.outputs import check_video_output, checkpoint_files
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import Controls
from infp.models.pretrained import CONFIG_FILE, checkpoint_id
from infp.runtime.motion import CONTROL_SCALE, CONTROL_STEER
from infp.runtime.portrait import Portrait, load_portrait
from infp.runtime.stage1 import Stage1Runner
from infp.runtime.streaming import StreamingSession

log = logging.getLogger(__name__)


@dataclass
class RenderSettings:
    """Everything that determines a rendering (written beside the output as OUT.json)."""

    steps: int = 6
    cfg_scale: float = 2.0
    seed: int = 0
    paste_back: bool = False
    audio_out: str = "mix"  # mix | self | none
    overlay: bool = False
    face_index: int | None = None
    vad_threshold: float = SPEECH_THRESHOLD
    controls: Controls = field(default_factory=Controls)  # stage-2 expression controls (empty: the model's own)
    control_scale: float = CONTROL_SCALE  # guidance weight of the controls (only used with controls)
    lip_follow: float | None = None  # how far the mouth follows the lip reader, 0..1 (None: the weights' own)
    control_steer: float = CONTROL_STEER  # how far the controls are held to their level in the latents, 0..1

    def __post_init__(self) -> None:
        """Refuse settings that would render garbage: a NaN guidance scale gives black frames, not an error."""
        self.controls = _as_controls(self.controls)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_float("cfg_scale", self.cfg_scale, 0.0, MAX_CFG_SCALE)
        _check_int("seed", self.seed, 0, MAX_SEED)
        if self.face_index is not None:
            _check_int("face_index", self.face_index, None, None)
        _check_float("vad_threshold", self.vad_threshold, 0.0, 1.0)
        _check_float("control_scale", self.control_scale, 0.0, MAX_CFG_SCALE)
        if self.lip_follow is not None:
            _check_float("lip_follow", self.lip_follow, 0.0, 1.0)
        _check_float("control_steer", self.control_steer, 0.0, 1.0)
        if self.audio_out not in AUDIO_OUT:
            raise SettingsError(f"audio_out must be one of {AUDIO_OUT}, not {self.audio_out!r}")

    def to_dict(self) -> dict:
        """As written into OUT.json (controls as ``{"speak": {...}, "listen": {...}}``)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "controls"},
                "controls": self.controls.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> RenderSettings:
        """The settings of ``to_dict`` (e.g. OUT.json's ``settings``) back; unknown names are refused."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingsError(f"unknown render settings: {', '.join(sorted(unknown))}")
        return cls(**data)


AUDIO_OUT = ("mix", "self", "none")


def _as_controls(value: object) -> Controls:
    """Controls from a Controls, its dict form, its text form or None."""
    if value is None:
        return Controls()
    if isinstance(value, Controls):
        return value
    if isinstance(value, str):
        return Controls.parse(value)
    if isinstance(value, dict):
        return Controls.from_dict(value)
    raise SettingsError(f"controls must be Controls, a dict or text like 'smile=0.8', not {value!r}")


def _check_int(name: str, value: object, lo: int | None, hi: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SettingsError(f"{name} must be an integer, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingsError(f"{name} must be in [{lo}, {hi}], got {value}")


def _check_float(name: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingsError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise SettingsError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value}")


class Pipeline:
    """Both stages behind one object: ``Pipeline.from_pretrained(dir).render(portrait, self_audio, other_audio)``."""

    def __init__(self, stage1: Stage1Runner, stage2: AudioToMotionNet, device: str | torch.device = "cpu",
                 sources: dict | None = None) -> None:
        if stage2.motion_dim != stage1.net.motion_dim:
            raise InfpError(f"stage-2 motion_dim {stage2.motion_dim} != stage-1 motion_dim {stage1.net.motion_dim}")
        self.stage1 = stage1
        self.stage2 = stage2.to(device).eval()
        self.device = torch.device(device)
        self.sources = sources or {}

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, device: str | torch.device = "cpu",
                        precision: str = "fp32", backend: str = "torch") -> "Pipeline":
        """``folder`` holds ``stage1/`` and ``stage2/`` checkpoint folders (default: the starter weights);
        ``precision`` and ``backend``: of the stage-1 renderer (see ``Stage1Runner``)."""
        from infp.weights import weights_dir

        folder = Path(folder) if folder is not None else weights_dir()
        if not folder.is_dir():
            raise InfpError("checkpoint folder not found" if not folder.exists() else "is a file, not a checkpoint folder", folder)
        if (folder / CONFIG_FILE).is_file():
            raise InfpError("is a single-stage checkpoint; rendering needs a folder with stage1/ and stage2/", folder)
        s1, s2 = folder / "stage1", folder / "stage2"
        runner = Stage1Runner.from_pretrained(s1, device, precision, backend)
        stage2 = AudioToMotionNet.from_pretrained(s2)
        if stage2.motion_dim != runner.net.motion_dim:
            raise InfpError(f"stage1/ and stage2/ do not fit together: stage 2 makes {stage2.motion_dim}-dim motion, "
                            f"stage 1 expects {runner.net.motion_dim}", folder)
        return cls(runner, stage2, device,
                   {"stage1": str(s1), "stage1_id": checkpoint_id(s1), "stage2": str(s2), "stage2_id": checkpoint_id(s2)})

    @property
    def size(self) -> int:
        return self.stage1.size

    def check_controls(self, controls: Controls | bool | None) -> None:
        """Refuse controls (``True``: any) when the stage-2 network was trained without them (they would be ignored)."""
        if controls and not self.stage2.has_controls:
            raise SettingsError("these stage-2 weights were trained without controls; expression controls (and a style "
                                "from a video) need stage-2 weights trained with them", self.sources.get("stage2"))

    def frames(self, portrait: Portrait, own: np.ndarray, other: np.ndarray, settings: RenderSettings,
               vad: np.ndarray | None = None, timings: dict | None = None) -> Iterator[np.ndarray]:
        """Yield exactly ceil(N / 640) frames for (self, other) audio of N samples each.

        Runs the streaming loop (``StreamingSession``) hop by hop over the file, with the whole file's
        voice activity ``vad`` (T, 2) for the overlay.
        """
        self.check_controls(settings.controls)
        n_frames = -(-len(own) // SAMPLES_PER_FRAME)
        session = self.session(portrait, settings, vad=vad if vad is not None else np.zeros((n_frames, 2), np.float32),
                               overlay=settings.overlay and vad is not None, timings=timings)
        hop = session.hop
        for start in range(0, n_frames * SAMPLES_PER_FRAME, hop):
            session.feed(own[start:start + hop], other[start:start + hop])
            while session.ready_hops:
                for frame in session.step():
                    yield frame.image
        for frame in session.flush():  # the last hop, padded with silence, and the frames still waiting
            yield frame.image

    def session(self, portrait: Portrait, settings: RenderSettings, vad: np.ndarray | None = None,
                overlay: bool | None = None, render_batch: int | None = None, timings: dict | None = None,
                mouth_fit: tuple[float, float] | None = None) -> StreamingSession:
        """A ``StreamingSession`` of this pipeline's two stages for ``portrait`` (streaming VAD if ``vad`` is None;
        ``mouth_fit``: the portrait's mouth onset and gain from an earlier session, see ``StreamingSession``)."""
        return StreamingSession(self.stage1, self.stage2, portrait, steps=settings.steps, cfg_scale=settings.cfg_scale,
                                seed=settings.seed, paste_back=settings.paste_back,
                                overlay=settings.overlay if overlay is None else overlay, vad=vad,
                                vad_threshold=settings.vad_threshold, render_batch=render_batch, device=self.device,
                                timings=timings, controls=settings.controls or None, control_scale=settings.control_scale,
                                lip_follow=settings.lip_follow, control_steer=settings.control_steer,
                                mouth_fit=mouth_fit)

    def render(
        self,
        portrait: str | Path | np.ndarray,
        self_audio: str | Path | np.ndarray,
        other_audio: str | Path | np.ndarray | None = None,
        out: str | Path | None = None,
        settings: RenderSettings | None = None,
        progress: bool = False,
        describe: dict | None = None,
    ) -> Path | list[np.ndarray]:
        """Render to ``out`` (mp4, plus ``out.json`` with the resolved settings) or return the frames."""
        from tqdm import tqdm

        settings = settings or RenderSettings()
        self.check_controls(settings.controls)
        if out is not None:
            check_video_output(out, self._inputs(portrait, self_audio, other_audio))
        own, partner = self._audio(self_audio, other_audio)
        pt = load_portrait(portrait, self.size, settings.face_index)
        vad = frame_speech_prob(np.stack([own, partner]), progress=progress)
        n_frames = len(vad)
        timings: dict = {}
        gen = self.frames(pt, own, partner, settings, vad, timings)
        if out is None:
            return list(gen)
        bar = tqdm(total=n_frames, unit="frame", disable=not progress, desc="render")

        def counted() -> Iterator[np.ndarray]:
            for f in gen:
                bar.update(1)
                yield f

        audio = {"mix": np.clip(own + partner, -1, 1), "self": own, "none": None}[settings.audio_out]
        t0 = time.perf_counter()
        try:
            path = write_video(out, counted(), fps=FPS, audio=audio)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        duration = len(own) / SAMPLE_RATE
        report = {"settings": settings.to_dict(), "portrait": str(portrait) if not isinstance(portrait, np.ndarray) else "array",
                  "self_audio": str(self_audio) if not isinstance(self_audio, np.ndarray) else "array",
                  "other_audio": None if other_audio is None else (str(other_audio) if not isinstance(other_audio, np.ndarray) else "array"),
                  "frames": n_frames, "fps": FPS, "duration_s": round(duration, 3), "size": self.size,
                  "checkpoints": self.sources, "wall_s": round(wall, 2), "real_time_factor": round(wall / max(duration, 1e-9), 3),
                  "stage2_s": round(timings.get("stage2_s", 0.0), 2), "stage1_s": round(timings.get("stage1_s", 0.0), 2),
                  "mouth_onset": timings.get("mouth_onset", 0.0), "mouth_gain": round(timings.get("mouth_gain", 1.0), 4),
                  "speaking_share": float((vad[:, 0] > settings.vad_threshold).mean()),
                  "listening_share": float(((vad[:, 1] > settings.vad_threshold) & (vad[:, 0] <= settings.vad_threshold)).mean()),
                  **(describe or {})}
        atomic_write_text(Path(out).with_suffix(".json"), json.dumps(report, indent=1))
        return path

    def _inputs(self, *sources) -> list[Path]:
        """The files a rendering reads (given paths and checkpoint files): none of them may be the output."""
        files = [Path(s) for s in sources if isinstance(s, (str, Path))]
        for key in ("stage1", "stage2"):
            files += checkpoint_files(self.sources.get(key))
        return files

    def _audio(self, self_audio, other_audio) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self_audio, np.ndarray):
            own = self_audio.astype(np.float32)
            partner = np.zeros_like(own) if other_audio is None else np.asarray(other_audio, np.float32)
            n = max(len(own), len(partner))
            own, partner = np.pad(own, (0, n - len(own))), np.pad(partner, (0, n - len(partner)))
        else:
            own, partner = read_dialogue(self_audio=self_audio, other_audio=other_audio)
        check_dialogue(own, partner, self_audio)
        return own, partner


def check_dialogue(own: np.ndarray, partner: np.ndarray, path=None) -> None:
    """Refuse audio that cannot drive a rendering: shorter than one frame, or silent on both channels."""
    where = None if isinstance(path, np.ndarray) else path
    if len(own) < SAMPLES_PER_FRAME:
        raise MediaError(f"audio is {len(own) / SAMPLE_RATE * 1000:.0f} ms long; at least one frame (40 ms) is needed", where)
    if is_silent(own) and is_silent(partner):
        raise MediaError("audio is silent on both channels (self and other)", where)
