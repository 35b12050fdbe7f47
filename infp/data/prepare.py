"""Turn conversation recordings (a manifest) into DyConv-format clips, in parallel and resumably.

Per recording: track each party's face on every frame (pass 1, landmarks kept in a disk-backed
array, so memory does not grow with the recording), smooth the crop boxes, then re-read the video
(pass 2) and write one clip per party and segment: face crop video, ``self``/``other`` audio,
per-frame VAD of both, landmarks, crop boxes and metadata. The clip format is documented in
``data/dyconv/README.md``. A finished clip is never redone; a bad recording is logged and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.data.manifest import Party, Recording, load_manifest
from infp.errors import InfpError, MediaError
from infp.face.landmarks import NUM_LANDMARKS
from infp.io import (
    VideoWriter,
    atomic_dir,
    atomic_write_text,
    count_frames,
    iter_frames,
    pad_to,
    read_audio,
    video_info,
    write_wav,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CLIPS_DIR = "clips"
RECORDINGS_DIR = "recordings"
WORK_DIR = ".work"
LOG_FILE = "prepare_log.jsonl"
SHARDS_DIR = "shards"  # per-shard logs and completion markers of a sharded run (infp.data.shards)
CLIP_GOP = FPS  # one key frame a second: cheap random access to clip frames during training


@dataclass
class PrepareConfig:
    """Settings of a preparation run (all recorded in each clip's meta.json)."""

    size: int = 256  # face crop side in pixels (256 or 512)
    clip_seconds: float = 20.0  # segment length; 0 = one clip per party for the whole recording
    min_clip_seconds: float = 2.0  # a shorter tail is merged into the previous segment
    min_face_ratio: float = 0.5  # clips where the face is found in fewer frames are skipped
    val_fraction: float = 0.1  # share of recordings in the validation split (by id hash)
    crop_scale: float = 1.8  # crop side relative to the face's landmark extent
    workers: int = 1  # parallel worker processes (recordings are the unit of work)

    def __post_init__(self) -> None:
        if self.size not in (256, 512):
            raise InfpError(f"crop size must be 256 or 512, got {self.size}")
        if not 0 <= self.val_fraction < 1:
            raise InfpError(f"val fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise InfpError(f"workers must be at least 1, got {self.workers}")


@dataclass
class RecordingResult:
    """What happened to one recording."""

    recording: str
    status: str  # "done" | "skipped"
    clips: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # clips already present from an earlier run
    skipped: list[dict] = field(default_factory=list)  # {"party"|"clip": ..., "reason": ...}
    reason: str | None = None
    frames: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------- splits and segments


def split_of(recording_id: str, val_fraction: float) -> str:
    """Deterministic split by recording id: 'val' if sha1(id) falls in the lowest ``val_fraction``."""
    h = int(hashlib.sha1(recording_id.encode()).hexdigest()[:12], 16) / float(16**12)
    return "val" if h < val_fraction else "train"


def assign_splits(recordings: Sequence[Recording], val_fraction: float) -> dict[str, str]:
    """Split of every recording: the manifest's own, else by id hash; at least one 'val' if any asked."""
    splits = {r.id: r.split or split_of(r.id, val_fraction) for r in recordings}
    free = [r.id for r in recordings if r.split is None]
    if val_fraction > 0 and len(recordings) > 1 and "val" not in splits.values() and free:
        pick = min(free, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
        splits[pick] = "val"
    return splits


def segment_bounds(n_frames: int, clip_frames: int, min_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of ``clip_frames`` each; a tail under ``min_frames`` joins the previous."""
    if clip_frames <= 0 or n_frames <= clip_frames:
        return [(0, n_frames)]
    bounds = [(s, min(s + clip_frames, n_frames)) for s in range(0, n_frames, clip_frames)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_frames:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def clip_id(recording: str, party: str, segment: int) -> str:
    return f"{recording}__{party}__{segment:03d}"


# --------------------------------------------------------------------------- shards


def shard_of(recording_id: str, n_shards: int) -> int:
    """Shard (0 .. n_shards - 1) of a recording: a hash of its id, so the same on every machine and run."""
    h = hashlib.sha1(f"shard:{recording_id}".encode()).hexdigest()[:12]
    return int(h, 16) % n_shards


def shard_name(k: int, n_shards: int) -> str:
    return f"{k:05d}-of-{n_shards:05d}"


def _owner(cid: str, ids: Sequence[str]) -> str | None:
    """The recording a clip id belongs to: the longest id that prefixes ``cid`` as ``<id>__``."""
    owners = [i for i in ids if cid.startswith(f"{i}__")]
    return max(owners, key=len) if owners else None


# --------------------------------------------------------------------------- audio


def load_party_audio(rec: Recording, party: Party, n_samples: int) -> np.ndarray:
    """A party's voice as mono 16 kHz (n_samples,), aligned to the video; zeros for a silent party."""
    spec = party.audio
    if spec is None:
        return np.zeros(n_samples, dtype=np.float32)
    src = rec.video if spec.path is None else spec.path
    if spec.path is None and not video_info(rec.video).has_audio:
        raise MediaError("has no audio track, but a party's audio is 'video'", rec.video)
    audio = read_audio(src, SAMPLE_RATE, channels=spec.channel)
    mono = audio.mean(axis=0)
    shift = int(round(spec.offset * SAMPLE_RATE))
    if shift > 0:
        mono = np.concatenate([np.zeros(shift, dtype=np.float32), mono])
    elif shift < 0:
        mono = mono[-shift:]
    if len(mono) < 0.5 * n_samples:
        log.warning("%s: audio covers only %.1f s of a %.1f s video; the rest is silence",
                    src, len(mono) / SAMPLE_RATE, n_samples / SAMPLE_RATE)
    return pad_to(mono, n_samples).astype(np.float32)


# --------------------------------------------------------------------------- face tracking


def _region_px(region: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = region
    return int(round(x0 * width)), int(round(y0 * height)), int(round(x1 * width)), int(round(y1 * height))


def track_faces(
    rec: Recording,
    parties: Sequence[Party],
    work: Path,
    capacity: int,
    on_frame: Callable[[], None] | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Pass 1: landmarks (T, 478, 2) in frame pixels (NaN = no face) for each face party, disk-backed."""
    from infp.face import FaceDetector, choose_face

    store = {
        p.name: np.lib.format.open_memmap(work / f"landmarks_{p.name}.npy", mode="w+", dtype=np.float32,
                                          shape=(capacity, NUM_LANDMARKS, 2))
        for p in parties
    }
    for arr in store.values():
        arr[:] = np.nan
    detectors = {p.name: FaceDetector(max_faces=max(1, (p.face_index or 0) + 1), video=True) for p in parties}
    n = 0
    try:
        for t, frame in enumerate(iter_frames(rec.video, fps=FPS)):
            if t >= capacity:
                log.warning("%s: more frames than announced; stopping at %d", rec.video, capacity)
                break
            h, w = frame.shape[:2]
            for p in parties:
                x0, y0, x1, y1 = _region_px(p.region, w, h)
                faces = detectors[p.name].detect(np.ascontiguousarray(frame[y0:y1, x0:x1]))
                if not faces:
                    continue
                try:
                    face = choose_face(faces, p.face_index)
                except InfpError:
                    continue
                store[p.name][t] = face.landmarks[:NUM_LANDMARKS] + np.array([x0, y0], dtype=np.float32)
            n = t + 1
            if on_frame is not None:
                on_frame()
    finally:
        for d in detectors.values():
            d.close()
    return {k: v[:n] for k, v in store.items()}, n


def boxes_from_landmarks(landmarks: np.ndarray, scale: float) -> np.ndarray:
    """(T, 478, 2) landmarks -> (T, 3) crop boxes [cx, cy, side]; NaN rows where no face."""
    from infp.face import crop_box_from_face

    boxes = np.full((len(landmarks), 3), np.nan, dtype=np.float32)
    for t, lm in enumerate(landmarks):
        if np.isfinite(lm).all():
            boxes[t] = crop_box_from_face(lm, scale=scale).as_array()
    return boxes


def fill_nearest(boxes: np.ndarray) -> np.ndarray:
    """Replace NaN rows of (T, 3) boxes by the nearest finite row in time (all-NaN stays NaN)."""
    from infp.data.clips import nearest_valid_index

    ok = np.isfinite(boxes).all(axis=1)
    if ok.all() or not ok.any():
        return boxes
    return boxes[nearest_valid_index(ok)]


# --------------------------------------------------------------------------- one recording


@dataclass
class _ClipPlan:
    cid: str
    party: Party
    segment: int
    start: int
    end: int
    face_ratio: float
    writer: VideoWriter | None = None
    dir_ctx: object | None = None
    tmp: Path | None = None


def _clip_done(out: Path, cid: str) -> bool:
    return (out / CLIPS_DIR / cid / "meta.json").is_file()


def process_recording(
    rec: Recording,
    out: str | Path,
    cfg: PrepareConfig,
    split: str = "train",
    on_frame: Callable[[], None] | None = None,
) -> RecordingResult:
    """Prepare every clip of one recording; raises InfpError for a recording that cannot be used."""
    out = Path(out)
    t0 = time.time()
    info = video_info(rec.video)
    capacity = count_frames(info) + int(0.05 * count_frames(info)) + 50
    face_parties = [p for p in rec.parties if p.face]
    work = out / WORK_DIR / rec.id
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    result = RecordingResult(rec.id, "done")
    try:
        # Audio first: a broken audio file should fail fast, before tracking.
        n_audio = capacity * SAMPLES_PER_FRAME
        loaded: dict = {}  # one read per distinct audio spec (mixed parties share theirs)
        for p in rec.parties:
            if p.audio not in loaded:
                loaded[p.audio] = load_party_audio(rec, p, n_audio)
        tracks = {p.name: loaded[p.audio] for p in rec.parties}
        landmarks, n_frames = track_faces(rec, face_parties, work, capacity, on_frame)
        result.frames = n_frames
        if n_frames == 0:
            raise MediaError("no video frames", rec.video)
        n_samples = n_frames * SAMPLES_PER_FRAME
        tracks = {k: v[:n_samples] for k, v in tracks.items()}
        turns = _mixed_turns(rec, landmarks, tracks, n_frames)
        bounds = segment_bounds(n_frames, int(round(cfg.clip_seconds * FPS)), int(round(cfg.min_clip_seconds * FPS)))

        from infp.audio.vad import frame_speech_prob
        from infp.face import smooth_boxes

        plans: list[_ClipPlan] = []
        party_data: dict[str, dict] = {}
        for p in face_parties:
            raw = boxes_from_landmarks(landmarks[p.name], cfg.crop_scale)
            found = np.isfinite(raw[:, 0])
            if not found.any():
                result.skipped.append({"party": p.name, "reason": "no face found in any frame"})
                log.warning("%s: no face found for party %r in any frame; skipped", rec.video, p.name)
                continue
            boxes, valid = smooth_boxes(raw)
            boxes = fill_nearest(boxes)
            others = [tracks[q.name] for q in rec.parties if q.name != p.name]
            other = np.clip(np.sum(others, axis=0), -1, 1) if others else np.zeros(n_samples, np.float32)
            own = tracks[p.name]
            vad = frame_speech_prob(np.stack([own, other]), n_frames)
            party_data[p.name] = {"boxes": boxes, "found": found, "valid": valid, "self": own, "other": other, "vad": vad}
            if p.name in turns:
                party_data[p.name]["turns"] = turns[p.name]
            for s, (a, b) in enumerate(bounds):
                cid = clip_id(rec.id, p.name, s)
                ratio = float(found[a:b].mean())
                if _clip_done(out, cid):
                    result.reused.append(cid)
                    continue
                if ratio < cfg.min_face_ratio or not valid[a:b].any():
                    result.skipped.append({"clip": cid, "reason": f"face found in only {ratio:.0%} of frames"})
                    continue
                plans.append(_ClipPlan(cid, p, s, a, b, ratio))
        if not plans and not result.reused:
            reasons = "; ".join(sorted({s["reason"] for s in result.skipped})) or "nothing to write"
            raise InfpError(f"no usable clip ({reasons})", rec.video)
        if plans:
            _write_clips(rec, out, cfg, split, plans, party_data, landmarks, n_frames, on_frame)
        result.clips = sorted([pl.cid for pl in plans])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.time() - t0
    return result


def _mixed_turns(rec: Recording, landmarks: dict[str, np.ndarray], tracks: dict[str, np.ndarray],
                 n_frames: int) -> dict[str, tuple]:
    """For the two parties sharing one track (``audio: mixed``): assign turns from their faces, replace
    their tracks by the gated mix (in place) and return {party: (Turns, face 0 or 1)}."""
    mixed = [p for p in rec.parties if p.audio is not None and p.audio.mixed]
    if not mixed:
        return {}
    from infp.data.turns import assign_turns, party_tracks

    mix = tracks[mixed[0].name]
    turns = assign_turns([landmarks[p.name] for p in mixed], mix, n_frames)
    for p, voice in zip(mixed, party_tracks(mix, turns)):
        tracks[p.name] = voice
    return {p.name: (turns, i) for i, p in enumerate(mixed)}


def _write_clips(rec, out, cfg, split, plans, party_data, landmarks, n_frames, on_frame) -> None:
    """Pass 2: re-read the video, crop each planned clip's frames and write the clip folders."""
    from infp.face import CropBox, crop, crop_matrix, transform_points

    size = cfg.size
    by_start: dict[int, list[_ClipPlan]] = {}
    for pl in plans:
        by_start.setdefault(pl.start, []).append(pl)
    active: list[_ClipPlan] = []
    last_end = max(pl.end for pl in plans)
    try:
        for t, frame in enumerate(iter_frames(rec.video, fps=FPS)):
            if t >= last_end:
                break
            for pl in by_start.get(t, []):
                pl.dir_ctx = atomic_dir(out / CLIPS_DIR / pl.cid)
                pl.tmp = pl.dir_ctx.__enter__()
                pl.writer = VideoWriter(pl.tmp / "face.mp4", fps=FPS, gop=CLIP_GOP)
                active.append(pl)
            for pl in active:
                cx, cy, side = party_data[pl.party.name]["boxes"][t]
                img, _ = crop(frame, CropBox(float(cx), float(cy), float(side)), size)
                pl.writer.write(img)
            for pl in [pl for pl in active if pl.end == t + 1]:
                _finish_clip(rec, cfg, split, pl, party_data[pl.party.name], landmarks[pl.party.name],
                             crop_matrix, CropBox, transform_points)
                pl.dir_ctx.__exit__(None, None, None)
                active.remove(pl)
            if on_frame is not None:
                on_frame()
        if active:
            raise MediaError(f"video ended at frame {t + 1} on the second read; expected {n_frames}", rec.video)
    except BaseException as e:
        for pl in active:
            if pl.writer is not None:
                pl.writer.abort()
            pl.dir_ctx.__exit__(type(e), e, e.__traceback__)
        raise


def _finish_clip(rec, cfg, split, pl, data, landmarks, crop_matrix, CropBox, transform_points) -> None:
    a, b = pl.start, pl.end
    pl.writer.close()
    s0, s1 = a * SAMPLES_PER_FRAME, b * SAMPLES_PER_FRAME
    write_wav(pl.tmp / "self.wav", data["self"][s0:s1])
    write_wav(pl.tmp / "other.wav", data["other"][s0:s1])
    vad = data["vad"][a:b]
    np.save(pl.tmp / "vad.npy", vad.astype(np.float16))
    boxes = data["boxes"][a:b].astype(np.float32)
    np.save(pl.tmp / "boxes.npy", boxes)
    lm = np.full((b - a, NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    for i, t in enumerate(range(a, b)):
        if data["found"][t]:
            m = crop_matrix(CropBox(*map(float, boxes[i])), cfg.size)
            lm[i] = transform_points(landmarks[t], m)
    np.save(pl.tmp / "landmarks.npy", lm.astype(np.float16))
    p = pl.party
    mixed = {}
    if "turns" in data:
        turns, face = data["turns"]
        np.save(pl.tmp / "turns.npy", turns.for_party(face)[a:b])
        np.save(pl.tmp / "turn_conf.npy", turns.confidence[a:b].astype(np.float16))
        from infp.data.turns import Turns

        part = Turns(turns.state[a:b], turns.confidence[a:b], turns.vad[a:b], turns.talk_prob[a:b])
        mixed = {"turns": part.shares(face)}
    meta = {
        "format_version": FORMAT_VERSION,
        "id": pl.cid,
        "recording": rec.id,
        "party": p.name,
        "segment": pl.segment,
        "split": split,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "size": cfg.size,
        "n_frames": b - a,
        "duration": (b - a) / FPS,
        "start_frame": a,
        "start_time": a / FPS,
        "face_ratio": round(pl.face_ratio, 4),
        "self_speech": round(float((vad[:, 0] > SPEECH_THRESHOLD).mean()), 4),
        "other_speech": round(float((vad[:, 1] > SPEECH_THRESHOLD).mean()), 4),
        "self_voice": bool(p.self_voice),
        "mixed_audio": bool(p.audio is not None and p.audio.mixed),
        **mixed,
        "partners": [q.name for q in rec.parties if q.name != p.name],
        "source_video": str(rec.video),
        "crop_scale": cfg.crop_scale,
        "meta": rec.meta,
    }
    (pl.tmp / "meta.json").write_text(json.dumps(meta, indent=1))


# --------------------------------------------------------------------------- the run


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")


def _run_one(rec: Recording, out: Path, cfg: PrepareConfig, split: str) -> RecordingResult:
    """Worker entry: never raises; a failure becomes a 'skipped' result with one clear reason."""
    try:
        return process_recording(rec, out, cfg, split)
    except InfpError as e:
        return RecordingResult(rec.id, "skipped", reason=str(e))
    except Exception as e:  # one bad file must never stop a run over thousands
        log.debug("%s", traceback.format_exc())
        return RecordingResult(rec.id, "skipped", reason=f"{rec.video}: unexpected {type(e).__name__}: {e}")


def _append_log(out: Path, res: RecordingResult, log_file: str = LOG_FILE) -> None:
    with open(out / log_file, "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **asdict(res)}) + "\n")


def _clean_stale(out: Path, mine: Sequence[str] | None = None, every: Sequence[str] = ()) -> None:
    """Remove half-written clip folders and work files left by an interrupted run.

    ``mine``: only those of these recordings (a shard; other shards may be writing into the same
    folder right now), telling them apart from the others by ``every`` recording id of the manifest."""
    clips = out / CLIPS_DIR
    if mine is None:
        shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    else:
        for rid in mine:
            shutil.rmtree(out / WORK_DIR / rid, ignore_errors=True)
    if clips.is_dir():
        own = None if mine is None else set(mine)
        for d in clips.iterdir():
            if not (d.name.startswith(".") and d.name.endswith(".tmp")):
                continue
            cid = d.name[1:].rsplit(".", 2)[0]
            if own is None or _owner(cid, every) in own:
                shutil.rmtree(d, ignore_errors=True)


def write_index(out: str | Path) -> dict:
    """Rebuild ``index.jsonl``, ``train.txt`` and ``val.txt`` from the clip folders; return totals."""
    out = Path(out)
    rows = []
    clips = out / CLIPS_DIR
    for d in sorted(clips.iterdir()) if clips.is_dir() else []:
        meta_path = d / "meta.json"
        if d.name.startswith(".") or not meta_path.is_file():
            continue
        m = json.loads(meta_path.read_text())
        rows.append({k: m[k] for k in ("id", "recording", "party", "split", "n_frames", "face_ratio",
                                       "self_speech", "other_speech", "self_voice")})
    atomic_write_text(out / "index.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for split in ("train", "val"):
        atomic_write_text(out / f"{split}.txt", "".join(r["id"] + "\n" for r in rows if r["split"] == split))
    frames = sum(r["n_frames"] for r in rows)
    return {
        "clips": len(rows),
        "recordings": len({r["recording"] for r in rows}),
        "minutes": frames / FPS / 60,
        "train": sum(r["split"] == "train" for r in rows),
        "val": sum(r["split"] == "val" for r in rows),
        "face_ratio": (sum(r["face_ratio"] * r["n_frames"] for r in rows) / frames) if frames else 0.0,
    }


def prepare(
    recordings: str | Path | Sequence[Recording],
    out: str | Path,
    cfg: PrepareConfig | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Prepare all recordings into ``out``; resumable; returns a summary with totals and skips.

    ``shard=(k, n)``: only the recordings of shard k of n (``shard_of``), with the splits of the whole
    manifest; the shard's log and a completion marker go to ``out/shards/`` and the index is left to
    ``infp.data.shards.merge``. Shards may run at the same time into one folder."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    cfg = cfg or PrepareConfig()
    recs = load_manifest(recordings) if isinstance(recordings, (str, Path)) else list(recordings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = assign_splits(recs, cfg.val_fraction)  # of the whole manifest: a shard gets the same splits
    log_file = LOG_FILE
    if shard is not None:
        k, n = shard
        if not 0 <= k < n:
            raise InfpError(f"shard must be K/N with 0 <= K < N, got {k}/{n}")
        every = [r.id for r in recs]
        recs = [r for r in recs if shard_of(r.id, n) == k]
        (out / SHARDS_DIR).mkdir(exist_ok=True)
        log_file = f"{SHARDS_DIR}/{shard_name(k, n)}.log.jsonl"
        (out / SHARDS_DIR / f"{shard_name(k, n)}.done.json").unlink(missing_ok=True)
        _clean_stale(out, [r.id for r in recs], every)
    else:
        _clean_stale(out)
    (out / RECORDINGS_DIR).mkdir(exist_ok=True)
    todo = [r for r in recs if not (out / RECORDINGS_DIR / f"{r.id}.json").is_file()]
    already = len(recs) - len(todo)
    if already:
        log.info("%d of %d recordings already prepared; skipping them", already, len(recs))
    results: list[RecordingResult] = []

    def record(res: RecordingResult) -> None:
        results.append(res)
        _append_log(out, res, log_file)
        if res.status == "done":
            atomic_write_text(out / RECORDINGS_DIR / f"{res.recording}.json", json.dumps(asdict(res), indent=1))
            for s in res.skipped:
                log.warning("%s: skipped %s (%s)", res.recording, s.get("clip") or f"party {s.get('party')}", s["reason"])
        else:
            log.warning("skipped recording %s: %s", res.recording, res.reason)

    with logging_redirect_tqdm(), tqdm(total=len(todo), unit="rec", disable=not progress, desc="prepare") as bar:
        if cfg.workers == 1:
            for r in todo:
                record(_run_one(r, out, cfg, splits[r.id]))
                bar.update(1)
        else:
            with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
                futures = {pool.submit(_run_one, r, out, cfg, splits[r.id]): r for r in todo}
                for fut in as_completed(futures):
                    r = futures[fut]
                    try:
                        res = fut.result()
                    except Exception as e:  # a crashed worker process
                        res = RecordingResult(r.id, "skipped", reason=f"{r.video}: worker failed ({type(e).__name__}: {e})")
                    record(res)
                    bar.update(1)
    if shard is not None:
        summary = {"shard": f"{k}/{n}", "recordings_in_shard": len(recs)}
    else:
        shutil.rmtree(out / WORK_DIR, ignore_errors=True)
        summary = write_index(out)
    summary["processed"] = len(todo)
    summary["already_done"] = already
    summary["skipped_recordings"] = [{"recording": r.recording, "reason": r.reason} for r in results if r.status != "done"]
    summary["skipped_clips"] = [{"recording": r.recording, **s} for r in results for s in r.skipped]
    summary["new_clips"] = sum(len(r.clips) for r in results)
    summary["reused_clips"] = sum(len(r.reused) for r in results)
    if shard is not None:
        atomic_write_text(out / SHARDS_DIR / f"{shard_name(k, n)}.done.json", json.dumps(summary, indent=1))
    return summary
