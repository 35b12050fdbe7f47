"""Speaking vs listening on a held-out dialogue: mouth motion generated while self / other speaks.

    python benchmarks/eval_stage2.py --weights weights --corpus data/sample_corpus \
        --motion-dir data/sample_corpus/motion_starter --portrait data/samples/portraits/lp_s1.jpg \
        --self-voice ../shared/data/video/liveportrait_d11.mp4 --other-voice data/samples/audio/ditto.flac [--render]

The dialogue (turns, one overlap, pauses; ``infp.eval.dialogue``) goes through stage 2 with no role
label. Mouth motion is measured up to three ways: (1) on the latents, through a linear mouth-opening
probe fitted on the corpus latents against landmark mouth opening; (2) for a stage-1 net with a
keypoint decoder, from the lip keypoints decoded from the generated latents (what the renderer
warps with); (3) with ``--render``, on rendered frames with the face-mesh landmarker. For each, the mean mouth opening and the mean frame-to-frame
change are compared between frames where only self speaks and frames where only other speaks (ratio,
and the difference in units of the corpus's standard deviation of mouth opening). The same dialogue with the channels swapped is the
control: the ratios must flip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from infp.audio.vad import frame_speech_prob
from infp.constants import SPEECH_THRESHOLD
from infp.eval.dialogue import compose
from infp.eval.mouth_probe import fit_mouth_probe
from infp.face import FaceDetector
from infp.face.landmarks import mouth_opening
from infp.pipelines.render import Pipeline, RenderSettings
from infp.runtime.motion import generate_motion
from infp.runtime.portrait import load_portrait


def _masks(own: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    vad = frame_speech_prob(np.stack([own, other])) > SPEECH_THRESHOLD
    return {"self_only": vad[:, 0] & ~vad[:, 1], "other_only": vad[:, 1] & ~vad[:, 0],
            "overlap": vad[:, 0] & vad[:, 1], "silence": ~vad[:, 0] & ~vad[:, 1]}


def _summary(opening: np.ndarray, spread: float, masks: dict[str, np.ndarray]) -> dict:
    """Mean mouth opening and mean frame-to-frame change per condition; self-only vs other-only."""
    change = np.abs(np.diff(opening, prepend=opening[:1]))
    out = {"opening": {k: float(np.nanmean(opening[m])) for k, m in masks.items() if m.any()},
           "frame_change": {k: float(np.nanmean(change[m])) for k, m in masks.items() if m.any()}}
    for key in ("opening", "frame_change"):
        d = out[key]
        out[f"{key}_ratio_self_over_other"] = d["self_only"] / max(d["other_only"], 1e-6)
    out["opening_difference_in_corpus_std"] = (out["opening"]["self_only"] - out["opening"]["other_only"]) / spread
    return out


def evaluate(pipe: Pipeline, probe, portrait: Path, own: np.ndarray, other: np.ndarray, seeds: list[int],
             steps: int, render: bool, lip_follow: float | None = None) -> dict:
    masks = _masks(own, other)
    pt = load_portrait(portrait, pipe.size)
    src = pipe.stage1.source(pt)
    neutral = src.motion[0]
    lat = [generate_motion(pipe.stage2, own, other, neutral, steps=steps, seed=s, lip_follow=lip_follow,
                           decode_keypoints=pipe.stage1.decode_keypoints) for s in seeds]
    probe_open = np.mean([probe(x) for x in lat], axis=0)
    result = {"frames": {k: int(m.sum()) for k, m in masks.items()},
              "latent_probe": _summary(probe_open, probe.spread, masks)}
    rest = float(np.asarray(probe(np.asarray(neutral, dtype=np.float32).reshape(1, -1))).reshape(-1)[0])
    result["latent_probe"]["rest_opening"] = rest  # the portrait's own mouth, read by the same probe
    result["latent_probe"]["listening_above_rest"] = result["latent_probe"]["opening"].get("other_only", float("nan")) - rest
    net1 = pipe.stage1.net
    if net1.keypoints is not None:
        from infp.models.keypoints import keypoint_mouth_opening

        with torch.inference_mode():
            kp_open = [keypoint_mouth_opening(net1.decode_keypoints(torch.as_tensor(x, dtype=torch.float32))).numpy()
                       for x in lat]
        result["keypoints"] = _summary(np.mean(kp_open, axis=0), probe.spread, masks)
        with torch.inference_mode():  # the portrait's own mouth: how closed "closed" is for this face
            rest = float(keypoint_mouth_opening(net1.decode_keypoints(torch.as_tensor(neutral, dtype=torch.float32)[None]))[0])
        result["keypoints"]["rest_opening"] = rest
        result["keypoints"]["listening_above_rest"] = result["keypoints"]["opening"].get("other_only", float("nan")) - rest
    if render:
        openings = []
        for s in seeds:
            frames = pipe.render(portrait, own, other, settings=RenderSettings(seed=s, steps=steps, lip_follow=lip_follow))
            lm = np.full((len(frames), 478, 2), np.nan, np.float32)
            with FaceDetector(max_faces=1) as det:
                for i, f in enumerate(frames):
                    faces = det.detect(f)
                    if faces:
                        lm[i] = faces[0].landmarks
            openings.append(mouth_opening(lm))
        result["rendered"] = _summary(np.nanmean(openings, axis=0), probe.spread, masks)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--corpus", type=Path, default=Path("data/sample_corpus"))
    ap.add_argument("--motion-dir", type=Path, required=True, help="latents of the same stage-1 checkpoint")
    ap.add_argument("--portrait", type=Path, nargs="+", required=True)
    ap.add_argument("--self-voice", type=Path, required=True)
    ap.add_argument("--other-voice", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--lip-follow", type=float, default=None, help="lip following, 0..1 (default: the weights' own)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = Pipeline.from_pretrained(args.weights)
    probe = fit_mouth_probe(args.corpus, args.motion_dir)
    own, other = compose(args.self_voice, args.other_voice)
    report = {"mouth_probe_r2_train": probe.r2}
    for p in args.portrait:
        report[p.name] = {"dialogue": evaluate(pipe, probe, p, own, other, args.seeds, args.steps, args.render, args.lip_follow),
                          "swapped_channels": evaluate(pipe, probe, p, other, own, args.seeds, args.steps, args.render,
                                                       args.lip_follow)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
