"""Lip sync on held-out own-voice speech: the avatar's mouth against the real speaker's, beside the loudness floor.

For every held-out clip (``infp.eval.lipsync.held_out_clips``: ``talking_eval/`` and the held-out
speakers of ``talking/``), the clip's own speech is rendered (a) on the clip's own first frame and
(b) on portraits that are not in the training corpus. The rendered mouth (face-mesh mouth opening
per frame) is compared with the clip's real mouth: Pearson r at the best lag within ±2 frames, the
lag (positive: the avatar is late) and the std ratio (avatar / real). Beside each: the loudness
envelope of the same speech scored against the same real mouth on the same frames — what "open the
mouth with the loudness" would score.

    python benchmarks/eval_lipsync.py --max-clips 8 --max-seconds 8 --out outputs/eval/lipsync.json

``--corpus-val data/sample_corpus`` scores the corpus's validation speakers instead (their face videos and own
voices): speakers held out of training, where settings such as ``--lip-gain`` are chosen. They are also 7 of the
benchmark's 29 clips (``infp.eval.lipsync.validation_speaker``), so the means are given twice: over every clip, and
over the clips of the other speakers ("unseen by any choice"). If the weights' lip reader was fitted on the
validation speakers too (``lip_reader_fit_val``), their clips are left out of the benchmark, with a line saying so.

``--sync-check`` also applies the corpus builder's audio-video sync check (``infp.data.sync``: a regression from the
voice to the mouth, fitted on the other clips, finds each clip's offset from its first 20 s; no infp weights take
part) to the benchmark's clips, and gives a second set of scores and means: a clip whose voice is found late or
early is scored against its real mouth moved by that offset, and a clip whose offset is unclear is left out. The
scores as recorded are kept beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.data.sync import SyncCheck, check_sync
from infp.errors import InfpError
from infp.eval.lipsync import (
    MIN_PAIRS,
    LipSyncScore,
    held_out_clips,
    loudness_envelope,
    mean_scores,
    mouth_track,
    score_clip,
    validation_speaker,
    video_mouth_track,
)
from infp.io import iter_frames, read_audio, read_image, to_mono
from infp.models.controls import Controls
from infp.pipelines.render import Pipeline, RenderSettings

REPO = Path(__file__).resolve().parents[1]
OWN = "own first frame"
SYNC_SECONDS = 20.0
"""Seconds of each clip the sync check reads (from its start)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def first_frame(clip: Path) -> np.ndarray:
    """The clip's first frame at 25 fps (the decoder is stopped right after it)."""
    frames = iter_frames(clip, fps=FPS)
    try:
        return np.array(next(frames))
    finally:
        frames.close()


def render_track(pipe: Pipeline, portrait: np.ndarray, speech: np.ndarray, seed: int, steps: int,
                 controls: Controls | None = None, lip_follow: float | None = None) -> np.ndarray:
    """Mouth track of ``speech`` rendered on ``portrait`` as the avatar's own voice (partner silent)."""
    settings = RenderSettings(seed=seed, steps=steps, controls=controls or Controls(), lip_follow=lip_follow)
    frames = pipe.render(portrait, self_audio=speech, other_audio=None, settings=settings)
    return mouth_track(frames)


def corpus_validation_clips(corpus: Path) -> list[tuple[Path, Path]]:
    """(face video, own voice) of the corpus's validation clips whose face speaks its own voice: speakers held out
    of training, but not the benchmark's, for choosing settings without looking at the benchmark."""
    out = []
    for line in (corpus / "index.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["split"] != "val" or not e.get("self_voice") or not e.get("self_speech", 0) > 0:
            continue
        clip = corpus / "clips" / e["id"]
        meta = json.loads((clip / "meta.json").read_text())
        if meta.get("meta", {}).get("lip_sync", True) and (clip / "face.mp4").is_file():
            out.append((clip / "face.mp4", clip / "self.wav"))
    return out


def synced_track(real: np.ndarray, lag: int, n: int) -> np.ndarray:
    """The first ``n`` frames of the real mouth track as they would be with the voice ``lag`` frames earlier
    (``SyncCheck.lag`` > 0: the voice comes late): frame t of the speech goes with real frame t - lag (NaN where
    the track has none)."""
    out = np.full(n, np.nan, np.float32)
    t = np.arange(n)
    ok = (t - lag >= 0) & (t - lag < len(real))
    out[ok] = np.asarray(real)[t[ok] - lag]
    return out


def sync_checks(pairs: list[tuple[Path, Path | None]]) -> tuple[dict[str, SyncCheck], dict[str, np.ndarray]]:
    """``infp.data.sync.check_sync`` of the clips' first ``SYNC_SECONDS`` (leave-one-out over these clips), and the
    real mouth tracks it read (reused for the scores)."""
    tracks, mouths = {}, {}
    for i, (clip, voice) in enumerate(pairs, 1):
        log(f"sync check [{i}/{len(pairs)}] {clip.name}")
        mouths[clip.name] = video_mouth_track(clip, SYNC_SECONDS)
        tracks[clip.name] = (to_mono(read_audio(voice or clip))[: int(SYNC_SECONDS * SAMPLE_RATE)], mouths[clip.name])
    checks = check_sync(tracks)
    for name, c in checks.items():
        if c.decision != "keep":
            log(f"sync check: {name}: {c.decision} ({c.reason})")
    return checks, mouths


def evaluate_clip(pipe: Pipeline, clip: Path, portraits: dict[str, np.ndarray], args: argparse.Namespace,
                  voice: Path | None = None, sync: SyncCheck | None = None,
                  long_real: np.ndarray | None = None) -> tuple[list[LipSyncScore], list[LipSyncScore]]:
    """Scores of one clip: its own first frame (when it shows a face), then each unseen portrait (``voice``: the
    file of its speech, when not the clip's own sound track); and with a ``sync`` check, the same renderings scored
    in sync (none if the check drops the clip). ``long_real``: the clip's real mouth track over more frames than
    are scored, when already read (its first frames are the track scored)."""
    speech = to_mono(read_audio(voice or clip))
    if args.max_seconds:
        speech = speech[: int(args.max_seconds * SAMPLE_RATE)]
    n = -(-len(speech) // SAMPLES_PER_FRAME)
    if long_real is None:
        long_real = video_mouth_track(clip, args.max_seconds)
    real = long_real[:n]
    loud = loudness_envelope(speech)
    log(f"  real mouth: {np.isfinite(real).sum()}/{len(real)} frames with a face")
    if np.isfinite(real).sum() < MIN_PAIRS:
        log(f"  skip {clip.name}: too few frames with a face to compare mouths")
        return [], []
    in_sync = None
    if sync is not None and sync.decision == "shift":
        in_sync = synced_track(long_real, sync.lag, len(real))
    targets = dict(portraits)
    if np.isfinite(real[:1]).all():
        targets = {OWN: first_frame(clip), **targets}
    else:
        log(f"  skip {OWN}: no face on the first frame of {clip.name}")
    scores, synced = [], []
    label = clip.parent.name if voice else clip.name
    for name, image in targets.items():
        t0 = time.perf_counter()
        try:
            avatar = render_track(pipe, image, speech, args.seed, args.steps, Controls.parse(args.control), args.lip_follow)
        except InfpError as exc:
            log(f"  skip {name}: {exc}")
            continue
        scores.append(score_clip(label, name, avatar, real, loud))
        s = scores[-1]
        log(f"  {name}: r {s.r:+.3f} (lag {s.lag:+d}), std ratio {s.std_ratio:.2f}, loudness r {s.loudness_r:+.3f}"
            f"  [{time.perf_counter() - t0:.0f} s]")
        if sync is not None and sync.decision == "keep":
            synced.append(s)
        elif in_sync is not None:
            synced.append(score_clip(label, name, avatar, in_sync, loud))
            log(f"    in sync (voice {sync.lag:+d} frames): r {synced[-1].r:+.3f} (lag {synced[-1].lag:+d}), "
                f"loudness r {synced[-1].loudness_r:+.3f}")
    return scores, synced


def table(scores: list[LipSyncScore]) -> str:
    """Per-clip rows and the means of (a) own first frame and (b) unseen portraits."""
    lines = [f"{'clip':<58} {'portrait':<16} {'frames':>6} {'r':>7} {'lag':>4} {'std':>5} {'loud r':>7} {'lag':>4}"]
    for s in scores:
        lines.append(f"{s.clip[-58:]:<58} {s.portrait:<16} {s.valid:>6} {s.r:>+7.3f} {s.lag:>+4d} {s.std_ratio:>5.2f}"
                     f" {s.loudness_r:>+7.3f} {s.loudness_lag:>+4d}")
    for label, m in means(scores).items():
        lines.append(f"mean {label:<33} clips {m['clips']:>3}   r {m['r']:+.3f}  |lag| {m['abs_lag']:.2f}  "
                     f"std {m['std_ratio']:.2f}  loudness r {m['loudness_r']:+.3f}")
    return "\n".join(lines)


def means(scores: list[LipSyncScore]) -> dict[str, dict]:
    """Means of (a) the own first frame and (b) the unseen portraits, over every clip and, where the validation
    speakers are among them, over the others' clips alone."""
    out = {}
    others = [s for s in scores if not validation_speaker(s.clip)]
    for label, subset in (("", scores), (", unseen by any choice", others if len(others) < len(scores) else [])):
        if subset:
            out[f"(a) own first frame{label}"] = mean_scores([s for s in subset if s.portrait == OWN])
            out[f"(b) unseen portraits{label}"] = mean_scores([s for s in subset if s.portrait != OWN])
    return out


def reader_saw_validation_speakers(weights: Path) -> bool:
    """Whether the stage-2 weights record a lip reader fitted on the validation speakers as well."""
    import yaml

    path = Path(weights) / "stage2" / "config.yaml"
    if not path.is_file():  # loading the weights reports what is missing
        return False
    doc = yaml.safe_load(path.read_text()) or {}
    return bool(((doc.get("training") or {}).get("hparams") or {}).get("lip_reader_fit_val", False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--portraits", type=Path, nargs="*", default=sorted((REPO / "data/samples/portraits").glob("*.jpg")),
                    help="unseen portraits (default: data/samples/portraits/*.jpg); none: own first frame only")
    ap.add_argument("--clips", nargs="*", default=None, help="only clips whose file name contains one of these, in this order")
    ap.add_argument("--max-clips", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=None, help="seconds of each clip to use (from its start)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--lip-follow", type=float, default=None, help="render with this lip following (default: the weights' own)")
    ap.add_argument("--control", default=None, help="render with these controls (e.g. smile=1 or a preset name)")
    ap.add_argument("--lip-gain", type=float, default=None,
                    help="render with this lip gain (default: the weights' own)")
    ap.add_argument("--corpus-val", type=Path, default=None, metavar="CORPUS",
                    help="score the validation speakers' own-voice clips of this corpus instead of the benchmark's")
    ap.add_argument("--sync-check", action="store_true",
                    help="also score the clips in sync, by the corpus builder's audio-video sync check (see above)")
    ap.add_argument("--out", type=Path, default=None, help="JSON with every score and the means")
    args = ap.parse_args()
    if args.sync_check and args.corpus_val:
        sys.exit("--sync-check is for the benchmark's clips; a prepared corpus was sync-checked when it was built")

    if args.corpus_val:
        if not (args.corpus_val / "index.jsonl").is_file():
            sys.exit(f"{args.corpus_val}: not a prepared corpus (no index.jsonl)")
        pairs = corpus_validation_clips(args.corpus_val)
    else:
        pairs = [(c, None) for c in held_out_clips(args.data)]
        if reader_saw_validation_speakers(args.weights):
            left = [c for c, _ in pairs if validation_speaker(c)]
            pairs = [(c, v) for c, v in pairs if not validation_speaker(c)]
            log(f"{len(left)} clips left out: the lip reader of {args.weights} was fitted on their speakers "
                "(lip_reader_fit_val)")
    if args.clips:  # in the order asked for
        pairs = list(dict.fromkeys(p for k in args.clips for p in pairs if k in str(p[0])))
    pairs = pairs[: args.max_clips]
    clips = [c for c, _ in pairs]
    if not clips:
        sys.exit(f"no clips to score under {args.corpus_val or args.data}")
    pipe = Pipeline.from_pretrained(args.weights)
    if args.lip_gain is not None:
        pipe.stage2.lip_gain = args.lip_gain
    portraits = {p.stem: read_image(p) for p in args.portraits}
    checks, mouths = sync_checks(pairs) if args.sync_check else ({}, {})
    if not args.max_seconds or args.max_seconds > SYNC_SECONDS:
        mouths = {}  # the sync check's tracks are shorter than the scored ones: read those again
    scores: list[LipSyncScore] = []
    synced: list[LipSyncScore] = []
    for i, (clip, voice) in enumerate(pairs, 1):
        log(f"[{i}/{len(clips)}] {clip.parent.name}/{clip.name}")
        a, b = evaluate_clip(pipe, clip, portraits, args, voice, checks.get(clip.name), mouths.get(clip.name))
        scores, synced = scores + a, synced + b
        if args.out:  # after every clip: a long run stopped early keeps what it measured
            write_report(args, clips[:i], scores, synced, checks)
    print(table(scores))
    if args.sync_check:
        moved = sum(c.decision == "shift" for c in checks.values())
        dropped = sum(c.decision == "drop" for c in checks.values())
        print(f"\nin sync ({moved} clips moved by their offset, {dropped} with an unclear offset left out):")
        for label, m in means(synced).items():
            print(f"mean {label:<33} clips {m['clips']:>3}   r {m['r']:+.3f}  |lag| {m['abs_lag']:.2f}  "
                  f"std {m['std_ratio']:.2f}  loudness r {m['loudness_r']:+.3f}")


def write_report(args: argparse.Namespace, clips: list[Path], scores: list[LipSyncScore],
                 synced: list[LipSyncScore] | None = None, checks: dict[str, SyncCheck] | None = None) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    root = args.corpus_val or args.data
    report = {"weights": str(args.weights), "max_seconds": args.max_seconds, "seed": args.seed, "steps": args.steps,
              "lip_follow": args.lip_follow, "lip_gain": args.lip_gain, "control": args.control,
              "clips": [str(c.relative_to(root)) for c in clips], "scores": [s.as_dict() for s in scores],
              "means": means(scores)}
    if checks:
        report.update(sync={name: c.as_dict() for name, c in checks.items()},
                      synced_scores=[s.as_dict() for s in synced or []], synced_means=means(synced or []))
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
