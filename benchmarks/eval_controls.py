"""Do the stage-2 controls do what they say? Each control swept over settings, measured on rendered frames.

A held-out dialogue (``infp.eval.dialogue``: turns, one overlap, pauses, from two voices) is rendered
on each portrait without controls and with one control at a time set to each of ``--values`` (for
speaking and listening alike). On every rendered frame the face-mesh landmarker gives the expression
and head measures of ``infp.face.expression``; per setting the script reports, separately over the
frames where ``self`` speaks and where it does not, each measure's level relative to the portrait
(smile = mouth-corner lift, brow, eyes, yaw, pitch; in eye distances / ratios) and ``head_motion``
(RMS of the standard deviations of yaw, pitch and roll), plus the mouth's speak/listen contrast (mean
frame-to-frame change of the mouth opening while only ``self`` speaks over while only ``other`` does).
For each control: whether its own measure rises with the setting, and the change from the lowest to the
highest setting in units of the uncontrolled output's standard deviation of that measure over its frames
(for head_motion: the ratio of the highest to the lowest).

With ``--style-videos``, each reference video's style (``infp.pipelines.style``; mapped by the weights'
style calibration when stage2/ has one, and rendered at its control guidance weight) is rendered too,
with ``--style-fit`` rounds (default 3) the style's smile and head motion are first fitted to this portrait
and dialogue as ``infp render`` does (``infp.pipelines.style.fit_style``), and for smile and head_motion the
script reports how far the output moved from the uncontrolled one
toward the reference's own level (1 = all the way; per kind present in the reference). Reference and
output are measured the same way (``infp.pipelines.style.output_levels``: means over 4 s windows,
relative to the face's rest; the output's rest is the portrait); no share is given where the reference
is within ``--min-gap`` of the uncontrolled output. ``--controls`` with no names skips the sweeps.

    python benchmarks/eval_controls.py --weights weights --self-voice ../shared/data/talking/X.mp4 \
        --other-voice ../shared/data/talking/Y.mp4 --portrait data/samples/portraits/lp_s1.jpg \
        [--style-videos REF.mp4 ...] --out outputs/eval/controls.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from infp.audio.vad import frame_speech_prob
from infp.constants import SPEECH_THRESHOLD
from infp.eval.dialogue import compose
from infp.face.expression import CONTROL_NAMES, KINDS, MEASURES, ROTATION, frame_measures, track_landmarks
from infp.face.landmarks import mouth_opening
from infp.io import read_dialogue
from infp.models.controls import Controls
from infp.pipelines.render import Pipeline, RenderSettings
from infp.pipelines.style import (
    FIT_EVERY,
    FIT_ROUNDS,
    STYLE_CONTROLS,
    StyleCalibration,
    fit_style,
    output_levels,
    style_from_video,
)


def summarise(lms: np.ndarray, rest: np.ndarray, speaking: np.ndarray, self_only: np.ndarray,
              other_only: np.ndarray) -> dict:
    m = frame_measures(lms)
    ok = np.isfinite(m).all(axis=1)
    out: dict = {"face_found": float(ok.mean())}
    for kind, mask in zip(KINDS, (speaking, ~speaking)):
        sel = m[mask & ok]
        lv = {name: float(np.mean(sel[:, MEASURES.index(name)]) - rest[MEASURES.index(name)])
              for name in CONTROL_NAMES if name != "head_motion"}
        lv["head_motion"] = float(np.sqrt(np.mean(sel[:, ROTATION].var(axis=0))))
        out[kind] = lv
    out["frame_std"] = {name: float(np.nanstd(m[:, MEASURES.index(name)])) for name in MEASURES}
    opening = mouth_opening(lms)
    change = np.abs(np.diff(opening, prepend=opening[:1]))
    out["mouth_change_self"] = float(np.nanmean(change[self_only]))
    out["mouth_change_other"] = float(np.nanmean(change[other_only]))
    out["mouth_change_self_over_other"] = out["mouth_change_self"] / max(out["mouth_change_other"], 1e-6)
    out["mouth_opening_listening"] = float(np.nanmean(opening[other_only]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--portrait", type=Path, nargs="+", required=True)
    ap.add_argument("--self-voice", type=Path, required=True)
    ap.add_argument("--other-voice", type=Path, required=True)
    ap.add_argument("--controls", nargs="*", default=list(CONTROL_NAMES), choices=CONTROL_NAMES)
    ap.add_argument("--values", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--presets", nargs="*", default=[], help="also render these presets")
    ap.add_argument("--style-videos", type=Path, nargs="*", default=[], help="also render the style of these videos")
    ap.add_argument("--style-controls", nargs="+", default=list(STYLE_CONTROLS), choices=CONTROL_NAMES,
                    help="the controls a style video sets (default: infp.pipelines.style.STYLE_CONTROLS)")
    ap.add_argument("--style-fit", type=int, default=FIT_ROUNDS, metavar="ROUNDS",
                    help="settings a style fit measures on each portrait and this dialogue "
                         "(infp.pipelines.style.fit_style, as infp render does); 0: the calibration's mapping alone")
    ap.add_argument("--style-fit-audio", type=Path, default=None, metavar="DIALOG",
                    help="fit the styles on this stereo dialogue (channel 0: the portrait's voice) instead of the one "
                         "measured, as the live demo fits on its sample dialogue")
    ap.add_argument("--style-fit-every", type=int, default=FIT_EVERY, help="a style fit draws every n-th frame")
    ap.add_argument("--min-gap", type=float, default=0.004,
                    help="a reference level closer than this to the uncontrolled output's counts as reached (no share): "
                         "two seeds of the uncontrolled output differ by up to about this much")
    ap.add_argument("--control-scale", type=float, default=None, help="guidance weight of the controls (default: the renderer's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = Pipeline.from_pretrained(args.weights)
    if not pipe.stage2.has_controls:
        raise SystemExit(f"{args.weights or 'weights'}: the stage-2 weights have no controls")
    own, other = compose(args.self_voice, args.other_voice)
    vad = frame_speech_prob(np.stack([own, other])) > SPEECH_THRESHOLD
    speaking, self_only, other_only = vad[:, 0], vad[:, 0] & ~vad[:, 1], vad[:, 1] & ~vad[:, 0]
    settings = [("none", Controls())]
    settings += [(f"{c}={v:g}", Controls.parse(f"{c}={v}")) for c in args.controls for v in args.values]
    settings += [(p, Controls.preset(p)) for p in args.presets]
    styles = {}
    calibration = StyleCalibration.load(pipe.sources["stage2"])
    for ref in args.style_videos:
        styles[ref.name] = style_from_video(ref, pipe.stage2, calibration=calibration, names=args.style_controls)
        settings.append((f"style:{ref.name}", styles[ref.name].controls))
    fit_audio = (own, other) if args.style_fit_audio is None else read_dialogue(args.style_fit_audio)
    report: dict = {"values": args.values, "portraits": {},
                    "style_fit": {"rounds": args.style_fit, "every": args.style_fit_every,
                                  "dialogue": "the measured one" if args.style_fit_audio is None else str(args.style_fit_audio)}}
    for portrait in args.portrait:
        from infp.runtime.portrait import load_portrait

        pt = load_portrait(portrait, pipe.size)
        rest = frame_measures(pt.landmarks[None])[0]  # the portrait's own face: the rest the levels are taken from
        res = {}
        fits = {}
        for name, ctl in settings:
            t0 = time.time()
            scale = args.control_scale
            if scale is None and name.startswith("style:"):
                scale = styles[name[len("style:"):]].control_scale
            extra = {} if scale is None else {"control_scale": scale}
            if name.startswith("style:") and args.style_fit > 0:
                fit = fit_style(pipe, pt, *fit_audio, styles[name[len("style:"):]],
                                RenderSettings(seed=args.seed, steps=args.steps, controls=ctl, **extra),
                                rounds=args.style_fit, calibration=calibration, every=args.style_fit_every)
                fits[name[len("style:"):]] = fit
                ctl = fit.controls
                print(f"{portrait.name} {name}: fitted in {time.time() - t0:.0f} s, round {fit.chosen + 1} of "
                      f"{len(fit.rounds)}: {ctl}", flush=True)
            frames = pipe.render(portrait, own, other, settings=RenderSettings(seed=args.seed, steps=args.steps,
                                                                               controls=ctl, **extra))
            n = min(len(frames), len(speaking))
            lms = track_landmarks(frames[:n])
            res[name] = summarise(lms, rest, speaking[:n], self_only[:n], other_only[:n])
            windowed = output_levels(lms, pt.landmarks, speaking[:n])
            res[name]["window_levels"] = {kind: dict(zip(CONTROL_NAMES, map(float, row))) for kind, row in zip(KINDS, windowed)}
            print(f"{portrait.name} {name}: {time.time() - t0:.0f} s; smile speak/listen "
                  f"{res[name]['speak']['smile']:+.3f}/{res[name]['listen']['smile']:+.3f}, head_motion "
                  f"{res[name]['speak']['head_motion']:.3f}/{res[name]['listen']['head_motion']:.3f}, mouth contrast "
                  f"{res[name]['mouth_change_self_over_other']:.2f}", flush=True)
        verdict = {}
        for c in args.controls:
            per_kind = {}
            for kind in KINDS:
                levels = [res[f"{c}={v:g}"][kind][c] for v in args.values]
                d = {"levels": levels, "monotonic": bool(np.all(np.diff(levels) > 0))}
                if c == "head_motion":
                    d["ratio_high_over_low"] = levels[-1] / max(levels[0], 1e-9)
                else:
                    d["change_in_frame_std"] = (levels[-1] - levels[0]) / max(res["none"]["frame_std"][c], 1e-9)
                per_kind[kind] = d
            per_kind["min_mouth_contrast"] = min(res[f"{c}={v:g}"]["mouth_change_self_over_other"] for v in args.values)
            verdict[c] = per_kind
        style_verdict = {}
        for ref, st in styles.items():
            moved = {}
            for r, kind in enumerate(KINDS):
                for c in ("smile", "head_motion"):
                    target = float(st.raw[r, CONTROL_NAMES.index(c)])
                    if not np.isfinite(target):
                        continue
                    base = res["none"]["window_levels"][kind][c]
                    got = res[f"style:{ref}"]["window_levels"][kind][c]
                    gap = target - base
                    moved[f"{kind}.{c}"] = {"reference": target, "none": base, "styled": got, "gap": gap,
                                            "share_of_the_way": (got - base) / gap if abs(gap) >= args.min_gap else None}
            style_verdict[ref] = {"controls": (fits[ref].controls if ref in fits else st.controls).to_dict(),
                                  "mapped_controls": st.controls.to_dict(), "mapping": st.to_dict()["mapping"],
                                  **({"fit": fits[ref].to_dict()} if ref in fits else {}),
                                  "control_scale": st.control_scale, "moved": moved}
        report["portraits"][portrait.name] = {"settings": res, "controls": verdict, "style_videos": style_verdict}
        print(json.dumps({portrait.name: {"controls": verdict, "style_videos": style_verdict}}, indent=1), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
