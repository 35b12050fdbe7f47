"""Agreement of the turn assignment of mixed-track recordings with the hand-labelled reference.

Prepare the six split-screen recordings of ``../shared/data/dyadic`` with two parties ``left`` and
``right``, both ``audio: mixed`` (``--write-manifest`` writes that manifest), then compare each
``left`` clip's ``turns.npy`` with ``benchmarks/data/dyadic_turns.json``:

    python benchmarks/eval_turns.py --write-manifest outputs/turns/mixed.yaml
    infp prepare outputs/turns/mixed.yaml outputs/turns/mixed --clip-seconds 0
    python benchmarks/eval_turns.py --corpus outputs/turns/mixed

Scored frames: inside a labelled span and speech in the mix (VAD > 0.5). A frame is accepted when the
assignment names the labelled speaker (``left``/``right``: that one alone; ``both``: left, right or
both). Also printed: frames assigned to nobody, and the mean confidence of accepted and rejected frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from infp.audio.vad import frame_speech_prob
from infp.constants import FPS, SAMPLE_RATE, SPEECH_THRESHOLD
from infp.data.turns import CLIP_BOTH, CLIP_NOBODY, CLIP_OTHER, CLIP_SELF
from infp.io import read_audio

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "benchmarks" / "data" / "dyadic_turns.json"
SHARED = REPO.parent / "shared" / "data"


def write_manifest(path: Path, media: Path) -> None:
    ref = json.loads(REFERENCE.read_text())["recordings"]
    recs = [{"id": rid, "video": str(media / r["video"]), "meta": {"licence": r["licence"]},
             "parties": [{"name": "left", "region": "left", "audio": "mixed"},
                         {"name": "right", "region": "right", "audio": "mixed"}]} for rid, r in ref.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"recordings": recs}, sort_keys=False))
    print(path)


def reference_labels(spans: list, n: int) -> np.ndarray:
    """(T,) object array: 'left' / 'right' / 'both' / None per frame."""
    lab = np.full(n, None, dtype=object)
    for a, b, who in spans:
        lab[int(round(a * FPS)):int(round(b * FPS))] = who
    return lab


def score(codes: np.ndarray, conf: np.ndarray, vad: np.ndarray, spans: list) -> dict:
    """Agreement of a left clip's turn codes (relative to the left party) with the reference spans."""
    lab = reference_labels(spans, len(codes))
    scored = np.array([x is not None for x in lab]) & (vad > SPEECH_THRESHOLD)
    said = np.where(codes == CLIP_SELF, "left", np.where(codes == CLIP_OTHER, "right",
                    np.where(codes == CLIP_BOTH, "both", "nobody")))
    ok = np.array([(s == lab_ if lab_ in ("left", "right") else s in ("left", "right", "both"))
                   for s, lab_ in zip(said, lab)], bool)
    ok &= scored
    n = int(scored.sum())
    return {"frames": n, "accepted": int(ok.sum()), "speech_frames": int((vad > SPEECH_THRESHOLD).sum()),
            "nobody": int((scored & (codes == CLIP_NOBODY)).sum()),
            "conf_ok": float(conf[ok].mean()) if ok.any() else float("nan"),
            "conf_bad": float(conf[scored & ~ok].mean()) if (scored & ~ok).any() else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="corpus prepared from the manifest of --write-manifest")
    ap.add_argument("--write-manifest", type=Path, help="write the manifest of the six recordings and stop")
    ap.add_argument("--media", type=Path, default=SHARED)
    args = ap.parse_args()
    if args.write_manifest:
        write_manifest(args.write_manifest, args.media)
        return
    if args.corpus is None:
        ap.error("give --corpus (or --write-manifest)")
    ref = json.loads(REFERENCE.read_text())["recordings"]
    total = {"frames": 0, "accepted": 0, "speech_frames": 0}
    print(f"{'recording':15s} {'labelled speech':>16s} {'accepted':>9s} {'agreement':>9s} {'nobody':>6s} "
          f"{'conf ok/bad':>11s}  shares left/right/both (turn confidence)")
    for rid, r in ref.items():
        clip = args.corpus / "clips" / f"{rid}__left__000"
        if not (clip / "turns.npy").is_file():
            print(f"{rid:15s} missing: {clip}/turns.npy")
            continue
        codes = np.load(clip / "turns.npy")
        conf = np.load(clip / "turn_conf.npy").astype(np.float32)
        meta_all = json.loads((clip / "meta.json").read_text())
        meta = meta_all["turns"]
        mix = read_audio(meta_all["source_video"], SAMPLE_RATE).mean(axis=0)  # the mix itself, not the gated tracks
        vad_mix = frame_speech_prob(mix, len(codes))[:, 0]
        s = score(codes, conf, vad_mix, r["spans"])
        for k in total:
            total[k] += s[k]
        agree = s["accepted"] / s["frames"] if s["frames"] else float("nan")
        print(f"{rid:15s} {s['frames']:>7d} of {s['speech_frames']:>5d} {s['accepted']:>9d} {agree:>9.1%} {s['nobody']:>6d} "
              f"{s['conf_ok']:>5.2f}/{s['conf_bad']:<5.2f}  {meta['self']:.2f}/{meta['other']:.2f}/{meta['both']:.2f} "
              f"({meta['confidence']:.2f})")
    if total["frames"]:
        print(f"{'all':15s} {total['frames']:>7d} of {total['speech_frames']:>5d} {total['accepted']:>9d} "
              f"{total['accepted'] / total['frames']:>9.1%}")


if __name__ == "__main__":
    main()
