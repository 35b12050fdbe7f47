"""Measure how far the renderer opens the mouth per unit of the mouth probe on held-out faces, for lip following.

    python train/calibrate_mouth.py --weights weights [--corpus data/sample_corpus] [--split val]

renders the first frame of each own-voice clip of the corpus's ``--split`` (the speakers the lip gain was chosen
on; held out of training) along the latents' mouth axis, above each face's speech onset
(``infp.runtime.mouth.fit_mouth``), and writes the median rendered opening per unit into the stage-2 config as
``mouth_slope``. A portrait's speech is then scaled by that over its own slope, so that a face whose rendered mouth
opens fast (a closed-lipped one, once its lips part) opens about as wide as these faces. Run it again after the mouth
axis or the renderer changes; weights without ``mouth_slope`` keep every portrait's gain at 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from infp.errors import InfpError
from infp.io.atomic import atomic_write_text
from infp.paths import REPO_ROOT

MIN_FACES = 3
"""Fewest measured faces for a calibration."""


def corpus_first_frames(corpus: Path, split: str) -> dict[str, np.ndarray]:
    """First frame of each own-voice clip with speech of ``split`` (clip id -> RGB image)."""
    from infp.io import iter_frames

    index = corpus / "index.jsonl"
    if not index.is_file():
        raise InfpError("not a prepared corpus (no index.jsonl)", corpus)
    out = {}
    for line in index.read_text().splitlines():
        e = json.loads(line)
        face = corpus / "clips" / e["id"] / "face.mp4"
        if e["split"] != split or not e.get("self_voice") or not e.get("self_speech", 0) > 0 or not face.is_file():
            continue
        frames = iter_frames(face)
        try:
            out[e["id"]] = np.array(next(frames))
        finally:
            frames.close()
    return out


def measure(weights: Path, corpus: Path, split: str, log=print) -> dict:
    """Each face's onset and rendered opening per unit, and their median (see the module doc)."""
    from infp.pipelines.render import Pipeline, RenderSettings
    from infp.runtime.mouth import fit_mouth
    from infp.runtime.portrait import load_portrait

    pipe = Pipeline.from_pretrained(weights)
    net = pipe.stage2
    if not net.can_follow_lips:
        raise InfpError("these stage-2 weights do not follow the lips (no lip reader or mouth axis)", weights / "stage2")
    faces = {}
    for clip, image in corpus_first_frames(corpus, split).items():
        try:
            session = pipe.session(load_portrait(image, pipe.size, 0), RenderSettings(steps=2))
        except InfpError as e:
            log(f"  {clip}: skipped ({e})")
            continue
        fit = fit_mouth(pipe.stage1, session.source, net, session.motion.rest[0], session.motion._closed)
        if fit.slope is None or fit.slope <= 0:
            log(f"  {clip}: skipped (no slope: onset {fit.onset}, slope {fit.slope})")
            continue
        faces[clip] = {"onset": fit.onset, "slope": round(fit.slope, 5)}
        log(f"  {clip}: onset {fit.onset:.1f}, opening per unit {fit.slope:.4f}")
    if len(faces) < MIN_FACES:
        raise InfpError(f"{len(faces)} faces measured, at least {MIN_FACES} needed (split {split!r})", corpus)
    return {"mouth_slope": round(float(np.median([f["slope"] for f in faces.values()])), 5), "split": split,
            "faces": faces}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=REPO_ROOT / "weights", help="folder with stage1/ and stage2/")
    ap.add_argument("--corpus", type=Path, default=REPO_ROOT / "data/sample_corpus")
    ap.add_argument("--split", default="val", help="the corpus split whose faces are measured")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg_path = args.weights / "stage2" / "config.yaml"
    try:
        if not cfg_path.is_file():
            raise InfpError("no stage-2 config (expected a folder with stage1/ and stage2/)", cfg_path)
        result = measure(args.weights, args.corpus, args.split, log=lambda m: print(m, file=sys.stderr, flush=True))
    except InfpError as e:
        sys.exit(str(e))
    doc = yaml.safe_load(cfg_path.read_text())
    doc["config"]["mouth_slope"] = result["mouth_slope"]
    atomic_write_text(cfg_path, yaml.safe_dump(doc, sort_keys=False))
    print(f"mouth_slope {result['mouth_slope']} (median of {len(result['faces'])} faces of the {args.split} split) "
          f"written to {cfg_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
