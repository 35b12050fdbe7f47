"""A picture of the control presets: one row per preset, frames of one dialogue on one portrait.

Each row renders the same dialogue (``infp.eval.dialogue``: turns, one overlap, pauses) with one preset
(and a first row without controls); the columns are the same instants, half while ``self`` speaks and
half while it listens, labelled on top.

    python benchmarks/preset_grid.py --portrait data/samples/portraits/lp_s1.jpg \
        --self-voice ../shared/data/talking/X.mp4 --other-voice ../shared/data/talking/Y.mp4 \
        --out docs/images/presets.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from infp.audio.vad import frame_speech_prob
from infp.constants import FPS, SPEECH_THRESHOLD
from infp.eval.dialogue import compose
from infp.io.atomic import atomic_output
from infp.models.controls import PRESETS, Controls
from infp.pipelines.render import Pipeline, RenderSettings


def pick_frames(speaking: np.ndarray, listening: np.ndarray, per_kind: int) -> list[tuple[int, str]]:
    """``per_kind`` instants spread over the speaking frames, then as many over the listening ones."""
    out = []
    for mask, label in ((speaking, "speaks"), (listening, "listens")):
        idx = np.flatnonzero(mask)
        if len(idx):
            out += [(int(idx[int(round(q))]), label) for q in np.linspace(0.1, 0.9, per_kind) * (len(idx) - 1)]
    return out


def label(img: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    bar = np.full((height, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--portrait", type=Path, required=True)
    ap.add_argument("--self-voice", type=Path, required=True)
    ap.add_argument("--other-voice", type=Path, required=True)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--per-kind", type=int, default=3, help="columns while speaking (and as many while listening)")
    ap.add_argument("--tile", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/images/presets.jpg"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = Pipeline.from_pretrained(args.weights)
    if not pipe.stage2.has_controls:
        raise SystemExit(f"{args.weights or 'weights'}: the stage-2 weights have no controls")
    own, other = compose(args.self_voice, args.other_voice)
    vad = frame_speech_prob(np.stack([own, other])) > SPEECH_THRESHOLD
    picks = pick_frames(vad[:, 0] & ~vad[:, 1], vad[:, 1] & ~vad[:, 0], args.per_kind)
    rows = []
    for name in ["no controls", *args.presets]:
        ctl = Controls() if name == "no controls" else Controls.preset(name)
        frames = pipe.render(args.portrait, own, other, settings=RenderSettings(seed=args.seed, controls=ctl))
        tiles = [label(cv2.resize(frames[i], (args.tile, args.tile), interpolation=cv2.INTER_AREA), f"{kind} {i / FPS:.1f}s")
                 for i, kind in picks]
        name_column = np.full((tiles[0].shape[0], 110, 3), 255, np.uint8)
        cv2.putText(name_column, name, (6, tiles[0].shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([name_column, *tiles], axis=1))
        print(f"{name}: rendered", flush=True)
    grid = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out) as tmp:
        ok, buf = cv2.imencode(args.out.suffix or ".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise SystemExit(f"{args.out}: could not encode the picture")
        Path(tmp).write_bytes(buf.tobytes())
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
