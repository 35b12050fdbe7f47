"""Fit the lip reader, the latents' mouth axis and the measure axes of trained stage-2 weights again, without retraining.

    python train/refit_lip_reader.py --weights weights/stage2 [--out DIR] [--reader-only] [hydra overrides ...]

A lip reader used only for lip following (``model.net.lip_cue=false``) is not read by the diffusion
network, so it can change after training. This composes the stage-2 training config
(``experiment=stage2_cpu_starter`` and the overrides given, e.g. ``model.net.lip_reader_ahead=2``), builds
its data module, loads the weights into the network the config describes (the reader's settings come
from the config, everything else from the weights) and fits the reader and the mouth axis as training
does (``AudioToMotion.fit_lip_reader``: the training split's own-voice clips, and the validation split's
with ``model.lip_reader_fit_val=true``, the starter's). ``--reader-only`` fits the reader alone, which
reads the voices and the real mouths but no latents. With
``model.net.control_axes=true`` in the config (the starter's), it also fits the probes and axes of the face
measures that control steering uses (``AudioToMotion.fit_control_axes``, ``infp.models.steering``): they are
not read by the diffusion network either. The result replaces ``--weights`` (or goes to ``--out``), with
the weights' training record kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import yaml

from infp.errors import InfpError
from infp.models.audio_to_motion import AudioToMotionNet
from infp.paths import REPO_ROOT

READER_KEYS = ("lip_reader_past", "lip_reader_ahead", "lip_reader_formants", "lip_lead", "lip_gain", "lip_follow",
               "control_axes")
REFITTED = ("lip_reader.", "measure_probe", "measure_axis")
"""State-dict keys this script sets: the weights' own values of them, if any, are not kept."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=REPO_ROOT / "weights/stage2", help="a stage-2 checkpoint folder")
    ap.add_argument("--out", type=Path, default=None, help="where to write the result (default: --weights)")
    ap.add_argument("--experiment", default="stage2_cpu_starter")
    ap.add_argument("--reader-only", action="store_true",
                    help="fit the lip reader alone (from the voices and the real mouths); the mouth axis and the "
                         "measure axes stay the weights' own, so data.motion_dir may hold any renderer's latents")
    ap.add_argument("overrides", nargs="*", help="hydra overrides of the training config (key=value)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    try:
        net = AudioToMotionNet.from_pretrained(args.weights)
    except InfpError as e:
        sys.exit(str(e))
    if net.lip_reader is None or net.lip_proj is not None:
        sys.exit(f"{args.weights}: only a lip reader used for lip following alone (lip_reader true, lip_cue false) "
                 "can be fitted again without retraining")
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("stage2", overrides=[f"experiment={args.experiment}", *args.overrides])
    wanted = {k: cfg.model.net[k] for k in READER_KEYS if k in cfg.model.net}
    config = {**net.config, **wanted}  # lip_reader and lip_cue stay the weights' own
    dm = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    model.net = AudioToMotionNet(**config)
    refitted = ("lip_reader.",) if args.reader_only else REFITTED
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(refitted)}
    missing, unexpected = model.net.load_state_dict(own, strict=False)
    if unexpected or any(not k.startswith(refitted) for k in missing):
        sys.exit(f"{args.weights}: the weights do not fit the composed network ({unexpected or missing})")
    if getattr(dm, "audio_context", 0) is None:  # as the training entry sets it
        dm.audio_context = int(model.net.audio_context)
    dm.setup("fit")
    model.net.motion_scale.copy_(net.motion_scale)
    with torch.no_grad():
        model.fit_lip_reader(dm, mouth_axis=not args.reader_only)
        if hasattr(model.net, "measure_axis") and not args.reader_only:
            model.fit_control_axes(dm)
    doc = yaml.safe_load((args.weights / "config.yaml").read_text())
    extra = {k: v for k, v in doc.items() if k not in ("kind", "config")}
    # what the reader saw: benchmarks leave out the clips of speakers it was fitted on
    training = extra["training"] = dict(extra.get("training") or {})
    training["hparams"] = {**(training.get("hparams") or {}),
                           "lip_reader_fit_val": bool(cfg.model.get("lip_reader_fit_val", False))}
    out = args.out or args.weights
    keep = {p.name: p.read_bytes() for p in args.weights.iterdir() if p.is_file() and p.name not in ("config.yaml", "model.safetensors")}
    model.net.save_pretrained(out, extra=extra)
    for name, data in keep.items():  # the style calibration and anything else beside the weights
        (out / name).write_bytes(data)
    print(f"lip reader ({', '.join(f'{k}={v}' for k, v in wanted.items())}) fitted and written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
