"""Speaking vs listening on a held-out dialogue: mouth opening of the rendered avatar while self / other speaks.

    python benchmarks/eval_stage2.py --weights weights --portrait data/samples/portraits/lp_s1.jpg \
        --self-voice data/samples/video/lp_d11.mp4 --other-voice data/samples/audio/ditto.flac

Renders the portrait (both stages, no role label) on a composed dialogue (turns, an overlap, pauses),
measures the inner-lip opening of every rendered frame with the face-mesh landmarker, and reports the
mean opening while only ``self`` speaks, while only ``other`` speaks, in the overlap and in silence, and
the ratio self / other. The same dialogue with the channels swapped is the control: the ratio must flip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from infp.audio.vad import frame_speech_prob
from infp.eval.dialogue import compose
from infp.eval.face_metrics import mouth_opening
from infp.face import FaceDetector
from infp.pipelines.render import Pipeline, RenderSettings


def measure(pipe: Pipeline, portrait: Path, own: np.ndarray, other: np.ndarray, seeds: list[int], steps: int) -> dict:
    vad = frame_speech_prob(np.stack([own, other])) > 0.5
    masks = {"self_only": vad[:, 0] & ~vad[:, 1], "other_only": vad[:, 1] & ~vad[:, 0],
             "overlap": vad[:, 0] & vad[:, 1], "silence": ~vad[:, 0] & ~vad[:, 1]}
    openings = []
    for seed in seeds:
        frames = pipe.render(portrait, own, other, settings=RenderSettings(seed=seed, steps=steps))
        lm = np.full((len(frames), 478, 2), np.nan, np.float32)
        with FaceDetector(max_faces=1) as det:
            for i, f in enumerate(frames):
                faces = det.detect(f)
                if faces:
                    lm[i] = faces[0].landmarks
        openings.append(mouth_opening(lm))
    op = np.nanmean(np.stack(openings), axis=0)
    out = {k: float(np.nanmean(op[m])) if m.any() else None for k, m in masks.items()}
    out["frames"] = {k: int(m.sum()) for k, m in masks.items()}
    out["ratio_self_over_other"] = out["self_only"] / max(out["other_only"], 1e-6)
    out["mouth_std_self_only"] = float(np.nanstd(op[masks["self_only"]]))
    out["mouth_std_other_only"] = float(np.nanstd(op[masks["other_only"]]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--portrait", type=Path, nargs="+", required=True)
    ap.add_argument("--self-voice", type=Path, required=True)
    ap.add_argument("--other-voice", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = Pipeline.from_pretrained(args.weights)
    own, other = compose(args.self_voice, args.other_voice)
    report = {}
    for p in args.portrait:
        report[p.name] = {"dialogue": measure(pipe, p, own, other, args.seeds, args.steps),
                          "swapped_channels": measure(pipe, p, other, own, args.seeds, args.steps)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
