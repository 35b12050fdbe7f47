"""Build a small DyConv-format sample corpus from real faces and real speech.

No real two-person recording is available, so dyadic recordings are composed from single-person
media: a face that speaks keeps its own voice on ``self`` and gets another speaker's voice on
``other`` in its pauses (one turn overlaps); a silent or listening face gets another speaker's
voice on ``other``; a side-by-side video of a speaker and a listener exercises two-face tracking;
a lone talking face with a silent partner is a single-speaker clip. The composed recordings and
their manifest are written to ``<out>/raw`` and ``<out>/manifest.yaml``, then ``prepare`` runs.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from infp.audio.vad import frame_speech_prob, speech_segments
from infp.constants import FPS, SAMPLE_RATE
from infp.data.prepare import PrepareConfig, prepare
from infp.errors import InfpError
from infp.io import ffmpeg_exe, read_audio, to_mono, video_info, write_wav

log = logging.getLogger(__name__)

from infp.paths import REPO_ROOT


@dataclass(frozen=True)
class Catalog:
    """Which media file plays which role (paths relative to the media folder)."""

    speakers: dict[str, str]  # faces that speak with their own voice on the video's track
    listeners: dict[str, str]  # faces that do not speak (silent, expressions, laughing, idle)
    single: dict[str, str]  # talking faces used as single-speaker clips (partner silent)
    voices: dict[str, str]  # other speakers' voices, used as partners
    composite: tuple[str, str]  # (speaker, listener) placed side by side
    mute_speakers: dict[str, str] = field(default_factory=dict)  # faces that speak without their voice
    val: tuple[str, ...] = ()  # recording ids held out for validation


SHARED_CATALOG = Catalog(
    speakers={"d10": "video/liveportrait_d10.mp4", "d11": "video/liveportrait_d11.mp4", "d6": "video/liveportrait_d6.mp4"},
    listeners={k: f"video/liveportrait_{k}.mp4" for k in ("d0", "d3", "d9", "d14", "s13", "s18", "s20", "s29")},
    single={"d12": "video/liveportrait_d12.mp4"},
    voices={
        "joyvasa_001": "audio/joyvasa_001.wav", "joyvasa_002": "audio/joyvasa_002.wav",
        "joyvasa_003": "audio/joyvasa_003.wav", "ditto": "audio/ditto_audio.wav", "hallo_1": "audio/hallo_1.wav",
        "hallo_2": "audio/hallo_2.wav", "hallo_3": "audio/hallo_3.wav", "musetalk_eng": "audio/musetalk_eng.wav",
    },
    composite=("d11", "s18"),
    mute_speakers={"d13": "video/liveportrait_d13.mp4", "musetalk_sun": "video/musetalk_sun.mp4",
                   "musetalk_yongen": "video/musetalk_yongen.mp4"},
    val=("talk_d11", "pair_d11_s18", "listen_s18"),
)

SUBSET_CATALOG = Catalog(
    speakers={"lp_d10": "video/lp_d10.mp4", "lp_d11": "video/lp_d11.mp4"},
    listeners={"lp_d3": "video/lp_d3.mp4", "lp_s29": "video/lp_s29.mp4", "lp_s18": "video/lp_s18.mp4"},
    single={"lp_d12": "video/lp_d12.mp4"},
    voices={"joyvasa_001": "audio/joyvasa_001.flac", "ditto": "audio/ditto.flac", "hallo_3": "audio/hallo_3.flac"},
    composite=("lp_d11", "lp_s18"),
    val=("talk_lp_d11", "pair_lp_d11_lp_s18", "listen_lp_s18"),
)


def default_media_dir() -> Path | None:
    """../shared/data beside the repository if present, else the in-repository subset."""
    for cand in (REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "data" / "samples"):
        if cand.is_dir():
            return cand
    return None


def catalog_for(media: Path) -> Catalog:
    """The catalog whose files are all present in ``media``."""
    for cat in (SHARED_CATALOG, SUBSET_CATALOG):
        files = [*cat.speakers.values(), *cat.listeners.values(), *cat.single.values(), *cat.voices.values()]
        if all((media / f).is_file() for f in files):
            return cat
    raise InfpError("is neither the shared sample media nor the in-repository subset (files missing)", media)


class VoicePool:
    """Cycles through partner voices, handing out consecutive speech excerpts."""

    def __init__(self, media: Path, voices: dict[str, str]) -> None:
        self.tracks = [to_mono(read_audio(media / f)) for f in voices.values()]
        self.names = list(voices)
        self.i = 0
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples of partner speech (moving to the next voice when one runs out)."""
        out = []
        while n > 0:
            track = self.tracks[self.i % len(self.tracks)]
            piece = track[self.pos: self.pos + n]
            out.append(piece)
            n -= len(piece)
            self.pos += len(piece)
            if self.pos >= len(track):
                self.i += 1
                self.pos = 0
        return np.concatenate(out)

    def next_voice(self) -> None:
        self.i += 1
        self.pos = 0


def partner_in_pauses(own: np.ndarray, pool: VoicePool, min_pause: float = 0.6, gap: float = 0.15,
                      overlap: float = 0.3) -> np.ndarray:
    """A partner track that speaks in the pauses of ``own`` (mono 16 kHz); the longest turn overlaps."""
    prob = frame_speech_prob(own)[:, 0]
    segs = speech_segments(prob)
    n = len(own)
    bounds = [0.0] + [t for s in segs for t in s] + [n / SAMPLE_RATE]
    pauses = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]
    pauses = [(a, b) for a, b in pauses if b - a >= min_pause]
    partner = np.zeros(n, dtype=np.float32)
    if not pauses:
        return partner
    longest = max(range(len(pauses)), key=lambda i: pauses[i][1] - pauses[i][0])
    for i, (a, b) in enumerate(pauses):
        start = a + (gap if a > 0 else 0.0)
        end = b - gap if b < n / SAMPLE_RATE else b
        if i == longest and b < n / SAMPLE_RATE:
            end = min(b + overlap, n / SAMPLE_RATE)  # the partner talks into the next turn
        s0, s1 = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        if s1 > s0:
            partner[s0:s1] = pool.take(s1 - s0)
    return partner


def _side_by_side(left: Path, right: Path, out: Path, size: int = 512) -> None:
    """Compose two videos side by side at 25 fps (length of the shorter)."""
    vf = (f"[0:v]fps={FPS},scale={size}:{size},setsar=1[l];[1:v]fps={FPS},scale={size}:{size},setsar=1[r];"
          "[l][r]hstack=inputs=2:shortest=1,format=yuv420p[v]")
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", str(left), "-i", str(right), "-filter_complex", vf,
         "-map", "[v]", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-shortest", str(out)],
        check=True,
    )


def compose_recordings(media: Path, raw: Path, catalog: Catalog | None = None) -> Path:
    """Write the composed audio/video files and ``manifest.yaml`` into ``raw``; return the manifest."""
    catalog = catalog or catalog_for(media)
    raw.mkdir(parents=True, exist_ok=True)
    pool = VoicePool(media, catalog.voices)
    recs: list[dict] = []

    def rel(p: Path) -> str:
        return str(Path(p).resolve())

    for name, f in catalog.speakers.items():
        own = to_mono(read_audio(media / f))
        partner = partner_in_pauses(own, pool)
        write_wav(raw / f"talk_{name}_partner.wav", partner)
        recs.append({"id": f"talk_{name}", "video": rel(media / f), "meta": {"kind": "speaker+partner"},
                     "parties": [{"name": "a", "audio": "video"},
                                 {"name": "b", "audio": f"talk_{name}_partner.wav", "face": False}]})
        pool.next_voice()
    for name, f in catalog.listeners.items():
        dur = video_info(media / f).duration or 0.0
        write_wav(raw / f"listen_{name}_partner.wav", pool.take(int(dur * SAMPLE_RATE)))
        recs.append({"id": f"listen_{name}", "video": rel(media / f), "meta": {"kind": "listener+partner"},
                     "parties": [{"name": "a", "audio": None},
                                 {"name": "b", "audio": f"listen_{name}_partner.wav", "face": False}]})
    for name, f in catalog.single.items():
        recs.append({"id": f"solo_{name}", "video": rel(media / f), "meta": {"kind": "single speaker"},
                     "parties": [{"name": "a", "audio": "video"}]})
    for name, f in catalog.mute_speakers.items():
        if (media / f).is_file():
            recs.append({"id": f"mute_{name}", "video": rel(media / f), "meta": {"kind": "speaks, voice missing"},
                         "parties": [{"name": "a", "audio": None, "self_voice": False}]})
    sp, li = catalog.composite
    pair = f"pair_{sp}_{li}"
    sp_file = media / (catalog.speakers.get(sp) or catalog.single[sp])
    _side_by_side(sp_file, media / catalog.listeners[li], raw / f"{pair}.mp4")
    write_wav(raw / f"{pair}_{sp}.wav", to_mono(read_audio(sp_file)))
    recs.append({"id": pair, "video": f"{pair}.mp4", "meta": {"kind": "two faces side by side"},
                 "parties": [{"name": "a", "region": "left", "audio": f"{pair}_{sp}.wav"},
                             {"name": "b", "region": "right", "audio": None}]})
    for r in recs:
        if r["id"] in catalog.val:
            r["split"] = "val"
        else:
            r["split"] = "train"
    manifest = raw / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"recordings": recs}, sort_keys=False))
    return manifest


def build_sample_corpus(out: str | Path, media: str | Path | None = None, cfg: PrepareConfig | None = None,
                        progress: bool = True) -> dict:
    """Compose dyadic recordings from ``media`` and prepare them into ``out`` (resumable)."""
    media = Path(media) if media is not None else default_media_dir()
    if media is None or not media.is_dir():
        raise InfpError("no sample media found; pass --media (../shared/data or data/samples)")
    out = Path(out)
    manifest = out / "raw" / "manifest.yaml"
    if not manifest.is_file():
        compose_recordings(media, out / "raw")
    cfg = cfg or PrepareConfig(clip_seconds=10.0)
    return prepare(manifest, out, cfg, progress=progress)
