"""Build a small DyConv-format sample corpus from real faces and real speech.

No real two-person recording is available, so dyadic recordings are composed from single-person
media: a face that speaks keeps its own voice on ``self`` and gets another speaker's voice on
``other`` in its pauses (one turn overlaps); a silent or listening face gets another speaker's
voice on ``other``; a side-by-side video of a speaker and a listener exercises two-face tracking;
a lone talking face with a silent partner is a single-speaker clip. A face that talks without its
voice (no audio track, or a voice heard only now and then) is *dubbed*: another speaker's speech
is laid on ``self`` exactly where its mouth moves, loudness following the mouth opening, and the
partner speaks where its mouth is still. Dubbed speech is not lip-synchronous at the phoneme level;
it teaches when the face talks and when it listens. Faces that speak their own voice (the shared
media's ``talking/`` folder) teach what the lips do with the words: they keep their real voice on
``self`` after an audio-video sync check (``infp.data.sync``: shifted or left out when their voice is
off their lips), the partner speaks in their pauses, and the speakers of ``HELD_OUT_TALKING`` form
the validation split. The composed recordings and
their manifest are written to ``<out>/raw`` and ``<out>/manifest.yaml``, then ``prepare`` runs.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from infp.audio.vad import frame_speech_prob, speech_segments
from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.data.prepare import PrepareConfig, prepare
from infp.errors import InfpError
from infp.face.expression import runs, talking_frames  # noqa: F401  (talking_frames: part of this module's API)
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
    mute_speakers: dict[str, str] = field(default_factory=dict)  # faces that talk without (usable) voice: dubbed
    val: tuple[str, ...] = ()  # recording ids held out for validation
    own_voice_dir: str | None = None  # a folder of faces speaking their own voice (every file: one speaker)
    own_voice_val: tuple[str, ...] = ()  # file names in it whose speakers are held out (validation split)
    mixed: dict[str, str] = field(default_factory=dict)  # split-screen conversations, one shared track (audio: mixed)


HELD_OUT_TALKING: tuple[str, ...] = (
    "yerfor+MimicTalk__data__raw__examples__German_20s.mp4",        # German news anchor, 18.6 s speech
    "JOY-MM+JoyGen__demo__example_15s.mp4",                         # selfie speaker, Mandarin, 14.3 s
    "MeiGen-AI+InfiniteTalk__examples__single__ref_video.mp4",      # politician (HDTF-style), 13.1 s
    "tanshuai0219+EDTalk__test_data__uncrop_Obama.mp4",             # Barack Obama, 14.9 s
    "yerfor+Real3DPortrait__data__raw__examples__May_5s.mp4",       # Theresa May, 4.1 s
    "jixinya+EAMM__test__crop__M030_sad_3_001.mp4",                 # MEAD M030, who also speaks in talking_eval/
)
"""Whole speakers of ``talking/`` never trained on: the validation split of the sample corpus and, with
``talking_eval/``, the clips of the lip-sync benchmark (69 s of own-voice speech, 6 people).

Each file is the only one of its person in ``talking/``, so leaving it out leaves the person out;
MEAD speaker M030 is here because talking_eval/ has another clip of the same man. GRID and
VoxCeleb2 clips are not used: their file names do not identify the speaker (GRID names encode the
sentence, VoxCeleb2 crops carry per-clip ids), so a held-out "speaker" there could reappear in
training under another name.
"""

OWN_VOICE_SUFFIXES = (".mp4", ".mpg", ".mov", ".avi", ".mkv", ".webm")


SHARED_CATALOG = Catalog(
    speakers={"d11": "video/liveportrait_d11.mp4"},
    listeners={k: f"video/liveportrait_{k}.mp4" for k in ("d0", "d3", "d9", "d14", "s13", "s18", "s20", "s29")},
    single={"d12": "video/liveportrait_d12.mp4"},
    voices={
        "joyvasa_001": "audio/joyvasa_001.wav", "joyvasa_002": "audio/joyvasa_002.wav",
        "joyvasa_003": "audio/joyvasa_003.wav", "ditto": "audio/ditto_audio.wav", "hallo_1": "audio/hallo_1.wav",
        "hallo_2": "audio/hallo_2.wav", "hallo_3": "audio/hallo_3.wav",
    },
    composite=("d11", "s18"),
    # d6 and d10 talk most of the time but their voice is audible only now and then
    mute_speakers={"d6": "video/liveportrait_d6.mp4", "d10": "video/liveportrait_d10.mp4",
                   "d13": "video/liveportrait_d13.mp4"},
    val=("talk_d11", "pair_d11_s18", "listen_s18"),
    own_voice_dir="talking",
    own_voice_val=HELD_OUT_TALKING,
    # the three Apache-2.0 split-screen debates of dyadic/ (the others are evaluation only, see SOURCES.md):
    # left and right face share one track; who speaks when comes from the faces (infp.data.turns)
    mixed={
        "iianet": "dyadic/JusperLee+IIANet__test_videos__video.mp4",
        "cbc001": "dyadic/modelscope+ClearerVoice-Studio__clearvoice__samples__path_to_input_videos_tse__001.avi",
        "cbc002": "dyadic/modelscope+ClearerVoice-Studio__clearvoice__samples__path_to_input_videos_tse__002.avi",
    },
)

SUBSET_CATALOG = Catalog(
    speakers={"lp_d11": "video/lp_d11.mp4"},
    listeners={"lp_d3": "video/lp_d3.mp4", "lp_s29": "video/lp_s29.mp4", "lp_s18": "video/lp_s18.mp4"},
    single={"lp_d12": "video/lp_d12.mp4"},
    voices={"joyvasa_001": "audio/joyvasa_001.flac", "ditto": "audio/ditto.flac", "hallo_3": "audio/hallo_3.flac"},
    composite=("lp_d11", "lp_s18"),
    mute_speakers={"lp_d10": "video/lp_d10.mp4"},
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
        files = [*cat.speakers.values(), *cat.listeners.values(), *cat.single.values(), *cat.voices.values(),
                 *cat.mute_speakers.values()]
        if all((media / f).is_file() for f in files):
            return cat
    raise InfpError("is neither the shared sample media nor the in-repository subset (files missing)", media)


class VoicePool:
    """Cycles through partner voices, handing out consecutive speech excerpts."""

    def __init__(self, media: Path, voices: dict[str, str], transform=None) -> None:
        self.tracks = [to_mono(read_audio(media / f)) for f in voices.values()]
        if transform is not None:
            self.tracks = [transform(t) for t in self.tracks]
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


def speech_only(audio: np.ndarray, pad: float = 0.1) -> np.ndarray:
    """The speech segments of a mono track, concatenated (pauses longer than 2 * ``pad`` removed)."""
    segs = speech_segments(frame_speech_prob(audio)[:, 0])
    pieces = [audio[max(0, int((a - pad) * SAMPLE_RATE)): int((b + pad) * SAMPLE_RATE)] for a, b in segs]
    return np.concatenate(pieces) if pieces else audio


def dub_talking_face(opening: np.ndarray, voices: VoicePool, partners: VoicePool, min_pause: float = 0.6,
                     gap: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(self, partner, talking) for a face that talks without its voice, from its per-frame mouth opening.

    ``self`` carries another speaker's speech over the talking frames, its loudness following the mouth
    opening; ``partner`` speaks in the still stretches of at least ``min_pause`` seconds.
    """
    n_frames = len(opening)
    n = n_frames * SAMPLES_PER_FRAME
    talk = talking_frames(opening)
    o = np.nan_to_num(opening, nan=0.0)
    scale = max(float(np.percentile(o[talk], 90)) if talk.any() else 0.0, 1e-3)
    gain = np.clip(0.3 + 0.7 * o / scale, 0.2, 1.2) * talk
    gain = np.convolve(gain, np.ones(3) / 3, mode="same")
    env = np.interp(np.arange(n) / SAMPLES_PER_FRAME, np.arange(n_frames) + 0.5, gain).astype(np.float32)
    own = np.zeros(n, dtype=np.float32)
    partner = np.zeros(n, dtype=np.float32)
    for a, b in runs(talk):
        s0, s1 = a * SAMPLES_PER_FRAME, b * SAMPLES_PER_FRAME
        own[s0:s1] = np.clip(voices.take(s1 - s0) * env[s0:s1], -1.0, 1.0)
    g = int(gap * FPS)
    for a, b in runs(~talk):
        if (b - a) / FPS < min_pause:
            continue
        a2, b2 = (a + g if a > 0 else a), (b - g if b < n_frames else b)
        s0, s1 = a2 * SAMPLES_PER_FRAME, b2 * SAMPLES_PER_FRAME
        if s1 > s0:
            partner[s0:s1] = partners.take(s1 - s0)
    return own, partner, talk


def face_mouth_opening(video: Path) -> np.ndarray:
    """(T,) mouth opening of the largest face at 25 fps (NaN where no face)."""
    from infp.face import FaceDetector
    from infp.face.landmarks import mouth_opening
    from infp.io import iter_frames

    out = []
    with FaceDetector(max_faces=1, video=True) as det:
        for frame in iter_frames(video, fps=FPS):
            faces = det.detect(frame)
            out.append(float(mouth_opening(max(faces, key=lambda f: f.area).landmarks)) if faces else np.nan)
    return np.asarray(out, dtype=np.float32)


def _side_by_side(left: Path, right: Path, out: Path, size: int = 512) -> None:
    """Compose two videos side by side at 25 fps (length of the shorter)."""
    vf = (f"[0:v]fps={FPS},scale={size}:{size},setsar=1[l];[1:v]fps={FPS},scale={size}:{size},setsar=1[r];"
          "[l][r]hstack=inputs=2:shortest=1,format=yuv420p[v]")
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", str(left), "-i", str(right), "-filter_complex", vf,
         "-map", "[v]", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-shortest", str(out)],
        check=True,
    )


def own_voice_id(path: Path) -> str:
    """A recording id for a file of the own-voice folder (manifest ids allow letters, digits, ``_.-``)."""
    return "own_" + re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)


def own_voice_recordings(media: Path, raw: Path, catalog: Catalog, pool: VoicePool) -> list[dict]:
    """Recordings of the faces that speak their own voice, after the audio-video sync check.

    Every clip's voice is checked against its lips (:mod:`infp.data.sync`): clips found out of sync
    are shifted (the manifest's audio ``offset``), clips whose voice does not explain their lips are
    left out; one line per clip goes to the log and to ``raw/sync_check.jsonl``. The partner speaks in
    the pauses. Held-out speakers (``catalog.own_voice_val``) go to the validation split.
    """
    from infp.data.sync import check_sync

    if catalog.own_voice_dir is None or not (media / catalog.own_voice_dir).is_dir():
        return []
    files = sorted(p for p in (media / catalog.own_voice_dir).iterdir() if p.suffix.lower() in OWN_VOICE_SUFFIXES)
    tracks = {}
    for f in files:
        if not video_info(f).has_audio:
            log.warning("%s: no audio track; left out of the own-voice recordings", f)
            continue
        mouth = face_mouth_opening(f)
        tracks[f.name] = (to_mono(read_audio(f)), mouth)
    checks = check_sync(tracks)
    lines = []
    recs = []
    for f in files:
        if f.name not in checks:
            continue
        c = checks[f.name]
        lines.append(json.dumps({"file": str(f), **c.as_dict()}))
        level = logging.INFO if c.decision == "keep" else logging.WARNING
        log.log(level, "sync check %s: %s: %s", f.name, c.decision, c.reason)
        if c.decision == "drop":
            continue
        rid = own_voice_id(f)
        own, _ = tracks[f.name]
        shift = int(round(c.offset_seconds * SAMPLE_RATE))
        own = np.concatenate([np.zeros(shift, np.float32), own]) if shift > 0 else own[-shift:]
        partner = partner_in_pauses(own, pool)
        write_wav(raw / f"{rid}_partner.wav", partner)
        audio = "video" if c.decision == "keep" else {"path": "video", "offset": round(c.offset_seconds, 3)}
        recs.append({"id": rid, "video": str(f.resolve()),
                     "meta": {"kind": "speaks its own voice", "sync": c.as_dict()},
                     "parties": [{"name": "a", "audio": audio},
                                 {"name": "b", "audio": f"{rid}_partner.wav", "face": False}],
                     "split": "val" if f.name in catalog.own_voice_val else "train"})
        pool.next_voice()
    (raw / "sync_check.jsonl").write_text("".join(line + "\n" for line in lines))
    return recs


def compose_recordings(media: Path, raw: Path, catalog: Catalog | None = None) -> Path:
    """Write the composed audio/video files and ``manifest.yaml`` into ``raw``; return the manifest."""
    catalog = catalog or catalog_for(media)
    raw.mkdir(parents=True, exist_ok=True)
    pool = VoicePool(media, catalog.voices)
    recs: list[dict] = []

    def absolute(p: Path) -> str:  # the manifest lies in raw/, the media elsewhere
        return str(Path(p).resolve())

    for name, f in catalog.speakers.items():
        own = to_mono(read_audio(media / f))
        partner = partner_in_pauses(own, pool)
        write_wav(raw / f"talk_{name}_partner.wav", partner)
        recs.append({"id": f"talk_{name}", "video": absolute(media / f), "meta": {"kind": "speaker+partner"},
                     "parties": [{"name": "a", "audio": "video"},
                                 {"name": "b", "audio": f"talk_{name}_partner.wav", "face": False}]})
        pool.next_voice()
    for name, f in catalog.listeners.items():
        dur = video_info(media / f).duration or 0.0
        write_wav(raw / f"listen_{name}_partner.wav", pool.take(int(dur * SAMPLE_RATE)))
        recs.append({"id": f"listen_{name}", "video": absolute(media / f), "meta": {"kind": "listener+partner"},
                     "parties": [{"name": "a", "audio": None},
                                 {"name": "b", "audio": f"listen_{name}_partner.wav", "face": False}]})
    for name, f in catalog.single.items():
        recs.append({"id": f"solo_{name}", "video": absolute(media / f), "meta": {"kind": "single speaker"},
                     "parties": [{"name": "a", "audio": "video"}]})
    dub_voices = VoicePool(media, catalog.voices, speech_only)
    dub_voices.i = len(dub_voices.tracks) // 2  # not the voice the partner pool is on
    for name, f in catalog.mute_speakers.items():
        if not (media / f).is_file():
            continue
        own, partner, talk = dub_talking_face(face_mouth_opening(media / f), dub_voices, pool)
        write_wav(raw / f"dub_{name}_self.wav", own)
        write_wav(raw / f"dub_{name}_partner.wav", partner)
        recs.append({"id": f"dub_{name}", "video": absolute(media / f),
                     "meta": {"kind": "talks without its voice; dubbed where the mouth moves", "lip_sync": False,
                              "talking_fraction": round(float(talk.mean()), 3)},
                     "parties": [{"name": "a", "audio": f"dub_{name}_self.wav"},
                                 {"name": "b", "audio": f"dub_{name}_partner.wav", "face": False}]})
        pool.next_voice()
    recs += own_voice_recordings(media, raw, catalog, pool)
    for name, f in catalog.mixed.items():
        if not (media / f).is_file():
            log.warning("%s: missing; left out of the sample corpus", media / f)
            continue
        recs.append({"id": f"mixed_{name}", "video": absolute(media / f),
                     "meta": {"kind": "split-screen conversation, one shared track"},
                     "parties": [{"name": "left", "region": "left", "audio": "mixed"},
                                 {"name": "right", "region": "right", "audio": "mixed"}],
                     # both CBC clips come from one debate: all three train, so no person is in both splits
                     "split": "train"})
    sp, li = catalog.composite
    pair = f"pair_{sp}_{li}"
    sp_file = media / (catalog.speakers.get(sp) or catalog.single[sp])
    _side_by_side(sp_file, media / catalog.listeners[li], raw / f"{pair}.mp4")
    write_wav(raw / f"{pair}_{sp}.wav", to_mono(read_audio(sp_file)))
    recs.append({"id": pair, "video": f"{pair}.mp4", "meta": {"kind": "two faces side by side"},
                 "parties": [{"name": "a", "region": "left", "audio": f"{pair}_{sp}.wav"},
                             {"name": "b", "region": "right", "audio": None}]})
    for r in recs:
        r.setdefault("split", "val" if r["id"] in catalog.val else "train")
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
