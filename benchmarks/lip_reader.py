"""How well the lip reader hears the mouth: fitted on the corpus's own-voice training clips, scored on unseen speakers.

    python benchmarks/lip_reader.py --corpus data/sample_corpus --max-seconds 4 [--ahead 2 --lead 1 --no-formants]
        [--speeds 0.9 1.1] [--noise-snr 15] [--fit-val]

The reader (``infp.audio.lipreader``, as stage 2 fits it) is fitted on the training split's clips whose
face speaks its own voice, then its read-out of the speech alone is correlated with the real mouth
(face-mesh mouth opening) at the best lag within ±2 frames, beside the loudness floor on the same frames:
(1) on the corpus's validation speakers (whole clips), (2) on the lip-sync benchmark's held-out clips
(``infp.eval.lipsync.held_out_clips``, first ``--max-seconds``; needs ../shared/data). Frame t is scored
with the read-out of frame t + ``--lead``, as lip following uses it; the defaults are the starter's reader
(log-mel and formant tracks, 2 frames ahead, lead 1). This is the mouth signal lip following gives
stage 2, before the generator and the renderer.

``--speeds`` adds to the fit a copy of every training clip played at each of these speeds (resampled: pitch and
formants shift with the tempo, the mouth track is stretched with it), ``--noise-snr`` one with white noise at
that signal-to-noise ratio: augmentations of the few minutes of own-voice video (docs/RESULTS.md: neither helps).
``--fit-val`` fits on the validation speakers' clips as well (as ``model.lip_reader_fit_val`` does), so only the
benchmark clips of the other speakers are scored (the validation speakers are 7 of the benchmark's 29 clips).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from infp.audio.lipreader import LipReader, fit_lip_reader
from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.eval.lipsync import best_lag_r, held_out_clips, loudness_envelope, validation_speaker, video_mouth_track
from infp.face.landmarks import mouth_opening
from infp.io import read_audio, to_mono

REPO = Path(__file__).resolve().parents[1]


def corpus_tracks(corpus: Path, split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(clip id, own voice, standardised mouth opening) of the split's clips whose face speaks its own voice."""
    out = []
    for line in (corpus / "index.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["split"] != split or not e.get("self_voice") or not e.get("self_speech", 0) > 0:
            continue
        clip = corpus / "clips" / e["id"]
        meta = json.loads((clip / "meta.json").read_text())
        if not meta.get("meta", {}).get("lip_sync", True) or not (clip / "landmarks.npy").is_file():
            continue
        audio, _ = sf.read(str(clip / "self.wav"), dtype="float32")
        mouth = mouth_opening(np.load(clip / "landmarks.npy")).astype(np.float64)
        if np.nanstd(mouth) > 1e-6:
            out.append((e["id"], audio.reshape(len(audio), -1).mean(axis=1), (mouth - np.nanmean(mouth)) / np.nanstd(mouth)))
    return out


def sped_up(audio: np.ndarray, mouth: np.ndarray, speed: float) -> tuple[np.ndarray, np.ndarray]:
    """The clip played ``speed`` times as fast: audio resampled, the mouth track stretched to match (NaN where
    it touches an unknown frame)."""
    a = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                                       SAMPLE_RATE, int(round(SAMPLE_RATE / speed))).numpy()
    src = np.arange(int(len(mouth) / speed)) * speed
    known = np.isfinite(mouth)
    out = np.interp(src, np.arange(len(mouth)), np.where(known, mouth, 0.0))
    out[np.interp(src, np.arange(len(mouth)), (~known).astype(float)) > 0] = np.nan
    return a, out


def with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    return audio + noise * np.sqrt(np.mean(audio ** 2) / 10 ** (snr_db / 10))


def score(reader: LipReader, name: str, audio: np.ndarray, mouth: np.ndarray, lead: int = 0) -> dict:
    """The read-out of frame t + ``lead`` as frame t's mouth (as lip following uses it)."""
    t = len(mouth)
    a = np.zeros((t + lead) * SAMPLES_PER_FRAME, dtype=np.float32)
    a[: min(len(a), len(audio))] = audio[: len(a)]
    with torch.no_grad():
        read = reader(torch.from_numpy(a)[None])[0, lead:, 0].double().numpy()
    a = a[: t * SAMPLES_PER_FRAME]
    r, lag = best_lag_r(read, mouth)
    floor, _ = best_lag_r(loudness_envelope(a, t), mouth)
    return {"clip": name, "frames": int(np.isfinite(mouth).sum()), "r": r, "lag": lag, "loudness_r": floor}


def summary(rows: list[dict]) -> dict:
    ok = [s for s in rows if np.isfinite(s["r"])]
    return {"clips": len(ok), "r": float(np.mean([s["r"] for s in ok])),
            "loudness_r": float(np.nanmean([s["loudness_r"] for s in ok])),
            "above_floor": int(sum(s["r"] > s["loudness_r"] for s in ok))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "data/sample_corpus")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--max-seconds", type=float, default=4.0, help="seconds of each held-out benchmark clip")
    ap.add_argument("--past", type=int, default=4, help="frames of past audio the reader reads")
    ap.add_argument("--ahead", type=int, default=2, help="frames of future audio the reader reads")
    ap.add_argument("--lead", type=int, default=1, help="frame t shows the read-out of frame t + LEAD")
    ap.add_argument("--no-formants", dest="formants", action="store_false", help="the log-mel only")
    ap.add_argument("--ridge", type=float, nargs="+", default=[1.0], help="ridge penalties to compare")
    ap.add_argument("--speeds", type=float, nargs="*", default=[], help="fit on copies at these speeds as well")
    ap.add_argument("--noise-snr", type=float, default=None, help="fit on a noisy copy too (SNR in dB)")
    ap.add_argument("--fit-val", action="store_true",
                    help="fit on the validation speakers too (then scored on the benchmark clips only)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not (args.corpus / "index.jsonl").is_file():
        sys.exit(f"{args.corpus}: not a prepared corpus (no index.jsonl); build it with: infp sample-corpus --out {args.corpus}")
    train, val = corpus_tracks(args.corpus, "train"), corpus_tracks(args.corpus, "val")
    if not train:
        sys.exit(f"{args.corpus}: no own-voice training clips (build it with: infp sample-corpus --out {args.corpus})")
    bench = []
    if args.data.is_dir():
        for clip in held_out_clips(args.data):
            if args.fit_val and validation_speaker(clip):
                continue  # fitted on this person: not a held-out figure
            speech = to_mono(read_audio(clip))[: int(args.max_seconds * SAMPLE_RATE)]
            bench.append((clip.name, speech, video_mouth_track(clip, args.max_seconds)))
    report = {}
    for ridge in args.ridge:
        reader = LipReader(args.past, ahead=args.ahead, formants=args.formants)
        pairs = [(a, m) for _, a, m in train + (val if args.fit_val else [])]
        pairs += [sped_up(a, m, v) for a, m in pairs[: len(train)] for v in args.speeds]
        if args.noise_snr is not None:
            pairs += [(with_noise(a, args.noise_snr, i), m) for i, (_, a, m) in enumerate(train)]
        stats = fit_lip_reader(reader, pairs, ridge)
        scored_val = [] if args.fit_val else val
        rows = {"corpus validation speakers": [score(reader, n, a, m, args.lead) for n, a, m in scored_val],
                "held-out benchmark clips": [score(reader, n, a, m, args.lead) for n, a, m in bench]}
        if not args.fit_val:  # the benchmark's clips of the validation speakers (where settings are chosen) left out
            rows["benchmark, other speakers"] = [s for s in rows["held-out benchmark clips"]
                                                 if not validation_speaker(s["clip"])]
        report[f"ridge {ridge}"] = {"fit": stats, **{k: {"summary": summary(v), "clips": v} for k, v in rows.items() if v}}
        print(f"ridge {ridge}: fitted on {int(stats['clips'])} clips ({int(stats['frames'])} frames), r {stats['train_r']:.3f} on them")
        for k, v in rows.items():
            if v:
                s = summary(v)
                print(f"  {k:<28} {s['clips']:>3} clips  r {s['r']:+.3f}  loudness floor {s['loudness_r']:+.3f}  "
                      f"above the floor on {s['above_floor']} of {s['clips']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
