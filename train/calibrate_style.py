"""Measure how a stage-2 network's output answers its controls, for ``--style-video``.

    python train/calibrate_style.py --weights weights

renders a dialogue on a portrait without controls and with each control alone at 0, 0.25, ..., 1
(speaking and listening alike, control guidance weight 6), measures the rendered face as a reference
video is measured (``infp.pipelines.style.output_levels``) and writes ``style_calibration.json`` into
the stage-2 folder: a style from a video then asks for the setting whose output shows the reference's
level. The default portrait and dialogue (``hallo_1.jpg``, ``dialogue.flac``) are not the ones the
controls are evaluated on (``benchmarks/eval_controls.py``). About 25 renders of 15.5 s; each finished
setting is kept in ``<stage2>/.style_calibration.partial.json``, so running the command again after an
interruption goes on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from infp.errors import InfpError
from infp.face.expression import CONTROL_NAMES, KINDS
from infp.io import read_dialogue
from infp.io.atomic import atomic_write_text
from infp.paths import REPO_ROOT
from infp.pipelines.render import Pipeline
from infp.pipelines.style import CALIBRATION_SCALE, CALIBRATION_VALUES, calibrate

PARTIAL = ".style_calibration.partial.json"


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (the calibration file is committed)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="folder with stage1/ and stage2/ (default: the starter weights)")
    ap.add_argument("--portrait", type=Path, default=REPO_ROOT / "data/samples/portraits/hallo_1.jpg")
    ap.add_argument("--audio", type=Path, default=REPO_ROOT / "data/samples/audio/dialogue.flac",
                    help="stereo dialogue, channel 0 the portrait's own voice")
    ap.add_argument("--controls", nargs="+", default=list(CONTROL_NAMES), choices=CONTROL_NAMES)
    ap.add_argument("--values", type=float, nargs="+", default=list(CALIBRATION_VALUES))
    ap.add_argument("--control-scale", type=float, default=CALIBRATION_SCALE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        pipe = Pipeline.from_pretrained(args.weights)
        if not pipe.stage2.has_controls:
            raise InfpError("the stage-2 weights have no controls: nothing to calibrate", pipe.sources["stage2"])
        own, other = read_dialogue(args.audio)
        stage2 = Path(pipe.sources["stage2"])
        partial = stage2 / PARTIAL
        key = {"portrait": _shown(args.portrait), "audio": _shown(args.audio), "control_scale": args.control_scale,
               "seed": args.seed, "steps": args.steps, "stage1_id": pipe.sources["stage1_id"],
               "stage2_id": pipe.sources["stage2_id"]}
        done: dict[str, np.ndarray] = {}
        if partial.is_file():
            doc = json.loads(partial.read_text())
            if doc.get("key") == key:
                done = {k: np.asarray(v, np.float32) for k, v in doc["done"].items()}
                print(f"resuming: {len(done)} settings already measured", flush=True)
        total = 1 + len(args.controls) * len(args.values)
        t0 = time.time()

        def keep(name: str, levels: np.ndarray) -> None:
            done[name] = levels
            atomic_write_text(partial, json.dumps({"key": key, "done": {k: np.where(np.isfinite(v), v, None).tolist()
                                                                       for k, v in done.items()}}))
            rows = ", ".join(f"{kind} smile {lv[0]:+.3f} head_motion {lv[3]:.3f}" for kind, lv in zip(KINDS, levels))
            print(f"[{len(done)}/{total}] {name}: {rows} ({time.time() - t0:.0f} s)", flush=True)

        cal = calibrate(pipe, args.portrait, own, other, names=args.controls, values=args.values,
                        control_scale=args.control_scale, seed=args.seed, steps=args.steps,
                        done=done,
                        on_setting=keep)
    except InfpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cal.source = {k: v for k, v in key.items() if k not in ("control_scale",)}
    path = cal.save(stage2)
    partial.unlink(missing_ok=True)
    usable = cal.usable()
    for r, kind in enumerate(KINDS):
        print(f"{kind}: " + ", ".join(f"{n} {'ok' if usable[r, k] else 'does not rise'}" for k, n in enumerate(CONTROL_NAMES)
                                      if n in args.controls))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
