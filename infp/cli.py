"""The ``infp`` command: thin front end over the library (one clear line per user error)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

from infp.constants import MAX_CFG_SCALE, MAX_SEED, MAX_STEPS, SAMPLE_RATE, SPEECH_THRESHOLD
from infp.errors import InfpError

if TYPE_CHECKING:
    from infp.models.controls import Controls
    from infp.pipelines.render import Pipeline, RenderSettings

log = logging.getLogger("infp")


def _quiet_native_logs() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Numeric options are checked when the command line is parsed, so a typo fails in a second with one
# line instead of after model loading, or worse, not at all (a NaN guidance scale renders black frames).
# The render limits (infp.constants) are the ones RenderSettings checks again for API callers.
MIN_CLIP_SECONDS = 2.0  # PrepareConfig.min_clip_seconds: a shorter segment is merged into its neighbour
BACKENDS = ("torch", "onnxruntime", "openvino")  # infp.runtime.backends.BACKENDS, without importing torch here
MOTION_THREADS = 1  # infp.runtime.backends.MOTION_THREADS


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for integers in [lo, hi] (None: unbounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {value}")
        return value

    return parse


positive_int = int_range(1)
nonneg_int = int_range(0)


def finite_float(lo: float | None = None, hi: float | None = None, hi_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for finite numbers in [lo, hi] (or [lo, hi) with ``hi_open``); NaN and inf are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = hi is not None and (value >= hi if hi_open else value > hi)
        if not math.isfinite(value) or (lo is not None and value < lo) or above:
            low = "(-inf" if lo is None else f"[{lo:g}"
            high = "inf)" if hi is None else f"{hi:g})" if hi_open else f"{hi:g}]"
            raise argparse.ArgumentTypeError(f"must be a finite number in {low}, {high}, got {text}")
        return value

    return parse


def controls_text(kind: str | None = None) -> Callable[[str], str]:
    """An argparse ``type`` for control text (``warm,smile=0.8,listen.head_motion=0.5``), checked at parse
    time; ``kind`` puts names without a kind on that side only."""

    def parse(text: str) -> str:
        from infp.errors import SettingsError
        from infp.models.controls import Controls

        try:
            Controls.parse(text, kind)
        except SettingsError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return parse


def clip_seconds(text: str) -> float:
    """Segment length for ``prepare``: 0 (whole recordings) or at least MIN_CLIP_SECONDS."""
    value = finite_float(0.0, 24 * 3600.0)(text)
    if 0 < value < MIN_CLIP_SECONDS:
        raise argparse.ArgumentTypeError(f"must be 0 (whole recordings) or at least {MIN_CLIP_SECONDS:g} s, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line with exit status 2; the usage block stays in ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: outputs in progress are removed on the way out."""


def _on_sigterm(signum: int, frame) -> NoReturn:
    raise Terminated()


def _summary_lines(summary: dict) -> str:
    lines = [
        f"clips: {summary['clips']} ({summary['train']} train, {summary['val']} val) from "
        f"{summary['recordings']} recordings, {summary['minutes']:.2f} min, face found in "
        f"{summary['face_ratio']:.1%} of frames",
        f"this run: {summary['processed']} recordings processed, {summary['already_done']} already done, "
        f"{summary['new_clips']} new clips, {summary['reused_clips']} reused",
    ]
    for s in summary["skipped_recordings"]:
        lines.append(f"skipped recording {s['recording']}: {s['reason']}")
    for s in summary["skipped_clips"]:
        lines.append(f"skipped {s.get('clip') or 'party ' + s.get('party', '?')} of {s['recording']}: {s['reason']}")
    return "\n".join(lines)


def shard_spec(text: str) -> tuple[int, int]:
    """``--shard K/N``: shard K (from 0) of N."""
    from infp.data.shards import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


SLURM_ONLY = ("partition", "account", "qos", "timeout_min", "mem_gb", "array_parallelism")


def _check_prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations of prepare's options, refused at parse time like a bad number."""
    if args.launcher is not None and args.shards is None:
        parser.error("--launcher needs --shards N")
    if args.no_wait and args.shards is None:
        parser.error("--no-wait needs --shards N")
    given = [f"--{k.replace('_', '-')}" for k in SLURM_ONLY if getattr(args, k) is not None]
    if given and args.launcher != "slurm":
        parser.error(f"{given[0]} needs --launcher slurm")
    if args.no_wait and args.launcher != "slurm":
        parser.error("--no-wait needs --launcher slurm (local jobs end with this command)")


def _prepare_workers(args: argparse.Namespace) -> int:
    if args.workers is not None:
        return args.workers
    cpus = os.cpu_count() or 2
    if args.shards is not None and args.launcher == "slurm":
        return 4  # CPUs per shard job
    if args.shards is not None:
        return max(1, cpus // args.shards)  # local shards share this machine
    return max(1, cpus - 1)


def cmd_prepare(args: argparse.Namespace) -> int:
    from infp.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(size=args.size, clip_seconds=args.clip_seconds, min_face_ratio=args.min_face_ratio,
                        val_fraction=args.val_fraction, workers=_prepare_workers(args))
    if args.shards is not None:
        from infp.data.shards import SlurmOptions, launch

        slurm = SlurmOptions(**{k: getattr(args, k) for k in SLURM_ONLY if getattr(args, k) is not None})
        summary = launch(args.manifest, args.out, args.shards, cfg, launcher=args.launcher or "local", slurm=slurm,
                         wait=not args.no_wait)
        for s in summary["submitted"]:
            print(f"shard {s['shard']}: job {s['job']} ({s['recordings']} recordings)")
        if "clips" not in summary:
            print(f"submitted; when the jobs are done: infp prepare-merge {args.out} --shards {args.shards} "
                  f"--manifest {args.manifest} (or run this command again: it submits only unfinished shards)")
            return 0
        print(_summary_lines(summary))
        return 0
    if args.shard is not None:
        k, n = args.shard
        summary = prepare(args.manifest, args.out, cfg, progress=not args.quiet, shard=(k, n))
        print(f"shard {k}/{n}: {summary['recordings_in_shard']} recordings, {summary['processed']} processed, "
              f"{summary['already_done']} already done, {summary['new_clips']} new clips, {summary['reused_clips']} reused")
        for s in summary["skipped_recordings"]:
            print(f"skipped recording {s['recording']}: {s['reason']}")
        print(f"when all {n} shards are done: infp prepare-merge {args.out} --shards {n} --manifest {args.manifest}")
        return 0
    summary = prepare(args.manifest, args.out, cfg, progress=not args.quiet)
    print(_summary_lines(summary))
    return 0


def cmd_prepare_merge(args: argparse.Namespace) -> int:
    from infp.data.shards import merge

    summary = merge(args.out, args.shards, args.manifest)
    print(_summary_lines(summary))
    return 0


def cmd_sample_corpus(args: argparse.Namespace) -> int:
    from infp.data.prepare import PrepareConfig
    from infp.data.sample_corpus import build_sample_corpus

    cfg = PrepareConfig(size=args.size, clip_seconds=args.clip_seconds, workers=args.workers)
    summary = build_sample_corpus(args.out, args.media, cfg, progress=not args.quiet)
    print(_summary_lines(summary))
    return 0


def cmd_vad(args: argparse.Namespace) -> int:
    from infp.audio.vad import frame_speech_prob, speech_segments
    from infp.constants import FPS, SAMPLE_RATE
    from infp.io import read_audio

    audio = read_audio(args.audio)
    prob = frame_speech_prob(audio)
    report = []
    for c in range(audio.shape[0]):
        segs = speech_segments(prob[:, c], threshold=args.threshold)
        report.append({"channel": c, "duration": round(audio.shape[1] / SAMPLE_RATE, 3),
                       "speech_seconds": round(float((prob[:, c] > args.threshold).sum()) / FPS, 2),
                       "segments": [[round(a, 2), round(b, 2)] for a, b in segs]})
    print(json.dumps(report, indent=1))
    return 0


def cmd_extract_motion(args: argparse.Namespace) -> int:
    from infp.data.extract import extract_motion

    summary = extract_motion(args.corpus, args.checkpoint or _default_checkpoint("stage1"), args.out,
                             device=args.device, progress=not args.quiet)
    print(f"motion latents: {summary['written']} written, {summary['already_done']} already there, "
          f"{len(summary['failed'])} failed, in {summary['out']}")
    return 0


def cmd_reenact(args: argparse.Namespace) -> int:
    from infp.pipelines.reenact import reenact
    from infp.runtime.stage1 import Stage1Runner

    _check_output(args.out, args.checkpoint, stages=False, **{"--portrait": args.portrait, "--driving": args.driving})
    runner = Stage1Runner.from_pretrained(args.checkpoint or _default_checkpoint("stage1"), args.device, args.precision,
                                          _backend(args))
    out = reenact(runner, args.portrait, args.driving, args.out, relative=not args.absolute,
                  paste=args.paste_back, face_index=args.face_index, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from infp.io import read_dialogue
    from infp.pipelines.render import Pipeline, RenderSettings

    if args.other_audio is not None and args.self_audio is None:
        raise InfpError("--other needs --self (the portrait's own voice)")
    if args.audio is None and args.self_audio is None:
        raise InfpError("give the conversation as --audio DIALOG.wav (stereo) or --self SELF.wav [--other OTHER.wav]")
    if args.audio is not None and (args.self_audio is not None or args.other_audio is not None):
        raise InfpError("give either --audio (stereo dialogue) or --self/--other, not both")
    if args.style_video is not None:
        from infp.io import video_info

        video_info(args.style_video)  # a missing or unreadable reference fails before the models load
    _check_output(args.out, args.checkpoint, stages=True, **{"--portrait": args.portrait, "--audio": args.audio,
                                                             "--self": args.self_audio, "--other": args.other_audio,
                                                             "--style-video": args.style_video})
    if args.audio is not None:
        own, other = read_dialogue(args.audio, self_channel=args.self_channel)
        describe = {"audio": str(args.audio), "self_channel": args.self_channel}
    else:
        own, other = read_dialogue(self_audio=args.self_audio, other_audio=args.other_audio)
        describe = {"self": str(args.self_audio), "other": None if args.other_audio is None else str(args.other_audio)}
    from infp.pipelines.render import check_dialogue

    check_dialogue(own, other, args.audio or args.self_audio)
    pipe = Pipeline.from_pretrained(args.checkpoint, args.device, args.precision, _backend(args))
    if args.size is not None and args.size != pipe.size:
        raise InfpError(f"the checkpoint renders {pipe.size}x{pipe.size}; --size {args.size} needs a checkpoint trained at that size",
                        args.checkpoint or "starter weights")
    controls, given, control_scale, style = _render_controls(args, pipe)
    if given:
        describe["controls_given"] = given
    settings = RenderSettings(steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed, paste_back=args.paste_back,
                              audio_out=args.audio_out, overlay=args.overlay, face_index=args.face_index, controls=controls,
                              control_scale=control_scale, lip_follow=args.lip_follow, control_steer=args.control_steer)
    settings = _fit_style(args, pipe, style, args.portrait, own, other, settings, given, "this dialogue")
    out = pipe.render(args.portrait, own, other, out=args.out, settings=settings, progress=not args.quiet, describe=describe)
    report = json.loads(out.with_suffix(".json").read_text())
    print(f"wrote {out} ({report['frames']} frames, {report['duration_s']} s, real-time factor {report['real_time_factor']})")
    return 0


def _render_controls(args: argparse.Namespace, pipe: Pipeline) -> tuple[Controls, dict, float, tuple | None]:
    """The controls of ``infp render`` / ``infp demo`` (later wins: --preset, --style-video, --control, --speak/--listen-control),
    what they came from (for OUT.json), their guidance weight (--control-scale, else the style calibration's
    when a --style-video was mapped by one, else the default) and, with a --style-video, what ``_fit_style``
    needs: (the video's style, the controls set by name, the calibration)."""
    from infp.models.controls import Controls
    from infp.runtime.motion import CONTROL_SCALE

    texts = {"control": (args.control, None), "speak_control": (args.speak_control, "speak"),
             "listen_control": (args.listen_control, "listen")}
    given = {k: text for k, (text, _) in texts.items() if text is not None}
    if args.preset is not None:
        given = {"preset": args.preset, **given}
    base = Controls.preset(args.preset) if args.preset is not None else Controls()
    top = Controls()
    for text, kind in texts.values():
        top = top.merged(Controls.parse(text, kind))
    pipe.check_controls(bool(base or top) or args.style_video is not None)
    scale = args.control_scale
    fit_from = None
    if args.style_video is not None:
        from infp.pipelines.style import StyleCalibration, style_from_video

        calibration = StyleCalibration.load(pipe.sources.get("stage2"))
        style = style_from_video(args.style_video, pipe.stage2, calibration=calibration)
        base = base.merged(style.controls)
        given["style_video"] = style.to_dict()
        fit_from = (style, top, calibration)
        if scale is None:
            scale = style.control_scale
    return base.merged(top), given, CONTROL_SCALE if scale is None else scale, fit_from


def _fit_style(args: argparse.Namespace, pipe: Pipeline, fit_from: tuple | None, portrait, own, other,
               settings: RenderSettings, given: dict, what: str) -> RenderSettings:
    """``settings`` with the --style-video's smile and head motion tuned on ``portrait`` and the dialogue (``own``,
    ``other``; ``what`` names it) by ``--style-fit`` rounds (``infp.pipelines.style.fit_style``); the fit goes into
    ``given["style_video"]``."""
    if fit_from is None or args.style_fit == 0:
        return settings
    from dataclasses import replace

    from infp.pipelines.style import FIT_EVERY, FIT_SECONDS, fit_style

    style, fixed, calibration = fit_from
    seconds = min(len(own) / SAMPLE_RATE, FIT_SECONDS)
    if not getattr(args, "quiet", False):
        print(f"fitting the style to the portrait on {what} ({seconds:.0f} s, one frame in {FIT_EVERY} drawn, "
              f"{args.style_fit} rounds)", flush=True)

    def report(i: int, entry: dict) -> None:
        if not getattr(args, "quiet", False):
            err = "no face found in the frames drawn" if entry["error"] is None else f"distance {entry['error']:.3f}"
            print(f"  round {i + 1}: {entry['levels']} ({err})", flush=True)

    fit = fit_style(pipe, portrait, own, other, style, settings, fixed=fixed, rounds=args.style_fit,
                    calibration=calibration, on_round=report)
    if fit.chosen is None and not getattr(args, "quiet", False):
        print("  nothing to tune: too few frames of the kinds the style sets, or the controls were set by name", flush=True)
    given["style_video"]["fit"] = {**fit.to_dict(), "dialogue": what}
    return replace(settings, controls=fit.controls)


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from infp.io import read_dialogue
    from infp.paths import REPO_ROOT
    from infp.pipelines.render import Pipeline, RenderSettings, check_dialogue
    from infp.runtime.backends import set_motion_threads

    torch.set_num_threads(args.threads)
    portrait = args.portrait or REPO_ROOT / "data" / "samples" / "portraits" / "lp_s1.jpg"
    if args.delay_ms < 50:
        raise InfpError("--delay-ms must be at least 50")
    if args.simulate:
        if args.audio is None and args.self_audio is None:
            raise InfpError("--simulate needs the voices: --self AGENT.wav [--other USER.wav] or --audio DIALOG.wav")
        if args.audio is not None and (args.self_audio is not None or args.other_audio is not None):
            raise InfpError("give either --audio (stereo dialogue) or --self/--other, not both")
        if args.record is not None:
            _check_output(args.record, args.checkpoint, stages=True, **{"--portrait": portrait, "--audio": args.audio,
                                                                        "--self": args.self_audio, "--other": args.other_audio})
        if args.audio is not None:
            own, other = read_dialogue(args.audio, self_channel=args.self_channel)
        else:
            own, other = read_dialogue(self_audio=args.self_audio, other_audio=args.other_audio)
        check_dialogue(own, other, args.audio or args.self_audio)
    elif args.record is not None or args.self_audio is not None or args.other_audio is not None or args.audio is not None:
        raise InfpError("--self/--other/--audio/--record go with --simulate; on the page, choose the agent's voice and press Record")
    backend = _backend(args)
    pipe = Pipeline.from_pretrained(args.checkpoint, args.device, args.precision, backend)
    set_motion_threads(backend, args.threads, args.motion_threads)
    if args.size is not None and (args.size > pipe.size or args.size % 16):
        raise InfpError(f"--size must be a multiple of 16 and at most the checkpoint's {pipe.size}")
    controls, given, control_scale, style = _render_controls(args, pipe)
    settings = RenderSettings(steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed, face_index=args.face_index,
                              controls=controls, control_scale=control_scale, lip_follow=args.lip_follow,
                              control_steer=args.control_steer)
    if style is not None and args.style_fit:
        if args.simulate:
            settings = _fit_style(args, pipe, style, portrait, own, other, settings, given, "the simulated dialogue")
        else:  # the conversation is not known yet: the sample dialogue stands in for it
            sample = REPO_ROOT / "data" / "samples" / "audio" / "dialogue.flac"
            if sample.is_file():
                own_s, other_s = read_dialogue(sample)
                settings = _fit_style(args, pipe, style, portrait, own_s, other_s, settings, given, str(sample))
            else:
                log.warning("%s is missing: the style video's controls are used as mapped, without a fit", sample)
    delay = args.delay_ms / 1000
    if args.simulate:
        from infp.demo.simulate import simulate

        def progress(live) -> None:
            if not args.quiet:
                snap = live.snapshot()
                print(f"  {snap['clock_s']:.0f} s: {snap['fps']} fps, latency p50 {snap['latency_ms']['p50']} ms "
                      f"p95 {snap['latency_ms']['p95']} ms, {snap['size']}x{snap['size']}", flush=True)

        report_path = args.report or (args.record.with_suffix(".json") if args.record is not None else None)
        rep = simulate(pipe, portrait, own, other, settings, size=args.size, delay=delay, render_batch=args.batch,
                       adapt=not args.no_adapt, record=args.record, report=report_path, progress=progress)
        lat = rep["latency_ms"]
        print(f"simulated {rep['duration_s']} s: {rep['delivered']}/{rep['frames']} frames delivered ({rep['fps']} fps), "
              f"{rep['dropped']} dropped, {rep['late']} late; latency p50 {lat['p50']} ms, p95 {lat['p95']} ms; "
              f"rendered at {rep['level']['size']}x{rep['level']['size']}, {rep['level']['steps']} steps")
        if rep["note"]:
            print(f"note: {rep['note']}")
        if args.record is not None:
            print(f"wrote {args.record} ({rep['recording']['frames']} frames, both voices: left = self, right = other)")
        return 0
    from infp.demo.server import DemoServer, serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the microphone page", args.host)
    audio_dir = args.audio_dir or REPO_ROOT / "data" / "samples" / "audio"
    server = DemoServer(pipe, portrait, settings, size=args.size, delay=delay, render_batch=args.batch,
                        adapt=not args.no_adapt, audio_dir=audio_dir, record_dir=args.record_dir,
                        host=args.host, allow_origins=args.allow_origin)
    serve(server, args.host, args.port)
    return 0


def _backend(args: argparse.Namespace) -> str:
    """The renderer's runtime of --backend, ``auto`` resolved (``infp.runtime.backends.resolve_backend``)."""
    from infp.runtime.backends import resolve_backend

    backend = resolve_backend(args.backend, args.device)
    if args.backend == "auto":
        log.debug("renderer runtime: %s (--backend auto)", backend)
    return backend


def _add_renderer_args(p: argparse.ArgumentParser, backend: str = "torch") -> None:
    """--device, --precision and --backend (default ``backend``): where and how the stage-1 renderer runs."""
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="renderer arithmetic: bf16 is about 2x faster on CPUs with AMX/AVX512-BF16 (and recent GPUs), "
                        "within ~47 dB PSNR of fp32")
    p.add_argument("--backend", choices=(*BACKENDS, "auto"), default=backend,
                   help="runtime of the renderer: torch, or its graph exported to ONNX (cached) and run by onnxruntime or "
                        "openvino on the CPU (pip install 'infp[runtime]'; see docs/RESULTS.md, Stage-1 inference runtimes); "
                        f"auto: openvino on the CPU when installed, else torch (default {backend})")


def _add_control_args(p: argparse.ArgumentParser) -> None:
    from infp.models.controls import CONTROL_NAMES, PRESETS
    from infp.pipelines.style import FIT_EVERY, FIT_ROUNDS, FIT_SECONDS
    from infp.runtime.motion import CONTROL_SCALE, CONTROL_STEER

    g = p.add_argument_group("expression controls (stage-2 weights trained with controls; later ones win, in this order)")
    g.add_argument("--preset", choices=tuple(PRESETS), default=None, help="named controls for speaking and listening")
    g.add_argument("--style-video", type=Path, default=None, metavar="VIDEO",
                   help="controls measured from the face in this video (its first 60 s; its audio tells speaking from listening)")
    g.add_argument("--style-fit", type=nonneg_int, default=FIT_ROUNDS, metavar="ROUNDS",
                   help=f"with --style-video: renderings (of the first {FIT_SECONDS:g} s, one frame in {FIT_EVERY} drawn) "
                        f"that tune its smile and head motion on this portrait and dialogue, so that the output shows "
                        f"the reference's levels (default {FIT_ROUNDS}; 0: the style calibration's mapping alone)")
    g.add_argument("--control", type=controls_text(), default=None, metavar="TEXT",
                   help=f"controls for speaking and listening, 0..1: e.g. 'warm,smile=0.8,listen.head_motion=0.5' "
                        f"({', '.join(CONTROL_NAMES)})")
    g.add_argument("--speak-control", type=controls_text("speak"), default=None, metavar="TEXT",
                   help="controls while the portrait speaks, e.g. 'smile=0.2,head_motion=0.7'")
    g.add_argument("--listen-control", type=controls_text("listen"), default=None, metavar="TEXT",
                   help="controls while the portrait listens")
    g.add_argument("--control-scale", type=finite_float(0.0, MAX_CFG_SCALE), default=None,
                   help=f"guidance weight of the controls (default {CONTROL_SCALE:g}, or the style calibration's with "
                        "--style-video; larger: stronger, 0: ignored)")
    g.add_argument("--control-steer", type=finite_float(0.0, 1.0), default=CONTROL_STEER,
                   help=f"how far the controls are held to their level in the generated motion, 0..1 (default "
                        f"{CONTROL_STEER:g}; stage-2 weights with measure axes; 0: the network's conditioning alone)")


def _check_output(out: Path, checkpoint: Path | None, stages: bool, **inputs: Path | None) -> None:
    """Refuse an output that is not an .mp4, cannot be written, or is one of the inputs (checkpoint files included),
    before any model is loaded."""
    from infp.io.outputs import check_video_output, checkpoint_files
    from infp.weights import weights_dir

    folder = checkpoint if checkpoint is not None else (weights_dir() if stages else weights_dir() / "stage1")
    check_video_output(out, {**inputs, "--checkpoint": checkpoint_files(folder)})


def _default_checkpoint(stage: str) -> Path:
    from infp.weights import starter_checkpoint

    return starter_checkpoint(stage)


def build_parser() -> argparse.ArgumentParser:
    from infp import __version__

    ap = _Parser(prog="infp", description="Dyadic conversational heads: speak and listen from two audio channels.")
    ap.add_argument("--version", action="version", version=f"infp {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="turn recordings (a manifest) into DyConv-format clips")
    p.add_argument("manifest", type=Path, help="manifest .yaml/.json/.jsonl (see data/dyconv/README.md)")
    p.add_argument("out", type=Path, help="corpus folder (created; an existing one is resumed)")
    p.add_argument("--size", type=int, default=256, choices=(256, 512), help="face crop size")
    p.add_argument("--clip-seconds", type=clip_seconds, default=20.0, help="segment length (0: whole recording)")
    p.add_argument("--min-face-ratio", type=finite_float(0.0, 1.0), default=0.5, help="skip clips with fewer face frames")
    p.add_argument("--val-fraction", type=finite_float(0.0, 1.0, hi_open=True), default=0.1, help="share of recordings held out")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes (default: CPUs - 1; per shard job: 4 on SLURM, CPUs / N locally)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--shard", type=shard_spec, default=None, metavar="K/N",
                   help="prepare only shard K (from 0) of N, in this process; then infp prepare-merge")
    g.add_argument("--shards", type=positive_int, default=None, metavar="N",
                   help="run all N shards as a job array (submitit), wait and merge; reruns only unfinished shards")
    p.add_argument("--launcher", choices=("local", "slurm"), default=None, help="with --shards: where the jobs run (local)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--qos", default=None, help="SLURM QOS")
    p.add_argument("--timeout-min", type=positive_int, default=None, help="SLURM time limit per shard job (1440)")
    p.add_argument("--mem-gb", type=finite_float(0.5, 4096.0), default=None, help="SLURM memory per shard job (16)")
    p.add_argument("--array-parallelism", type=positive_int, default=None, help="SLURM jobs running at once (256)")
    p.add_argument("--no-wait", action="store_true", help="SLURM: submit and return; merge later")
    p.set_defaults(func=cmd_prepare, check=_check_prepare)

    p = sub.add_parser("prepare-merge", help="index, splits and log of a corpus prepared in shards")
    p.add_argument("out", type=Path, help="corpus folder the shards wrote into")
    p.add_argument("--shards", type=positive_int, required=True, metavar="N", help="number of shards it was split into")
    p.add_argument("--manifest", type=Path, default=None, help="also check that every recording of it is accounted for")
    p.set_defaults(func=cmd_prepare_merge)

    p = sub.add_parser("sample-corpus", help="build the small sample corpus from real sample media")
    p.add_argument("--media", type=Path, default=None,
                   help="media folder (default: ../shared/data if present, else data/samples)")
    p.add_argument("--out", type=Path, default=Path("data/sample_corpus"))
    p.add_argument("--size", type=int, default=256, choices=(256, 512))
    p.add_argument("--clip-seconds", type=clip_seconds, default=10.0)
    p.add_argument("--workers", type=positive_int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sample_corpus)

    p = sub.add_parser("render", help="portrait + conversation audio -> mp4 of the portrait speaking and listening")
    p.add_argument("--portrait", type=Path, required=True, help="image with a face (the largest is used)")
    p.add_argument("--audio", type=Path, default=None, help="stereo dialogue: channel 0 = the portrait's voice, 1 = partner")
    p.add_argument("--self-channel", type=int, default=0, choices=(0, 1), help="which channel of --audio is the portrait's voice")
    p.add_argument("--self", dest="self_audio", type=Path, default=None, help="the portrait's own voice (mono file)")
    p.add_argument("--other", dest="other_audio", type=Path, default=None, help="the partner's voice (mono file)")
    p.add_argument("--out", type=Path, required=True, help="output .mp4 (settings go to OUT.json)")
    p.add_argument("--checkpoint", type=Path, default=None, help="folder with stage1/ and stage2/ (default: starter weights)")
    p.add_argument("--size", type=int, default=None, choices=(256, 512), help="output crop size (default: the checkpoint's)")
    p.add_argument("--steps", type=int_range(1, MAX_STEPS), default=6, help="diffusion sampling steps")
    p.add_argument("--cfg-scale", type=finite_float(0.0, MAX_CFG_SCALE), default=2.0, help="classifier-free guidance scale")
    p.add_argument("--lip-follow", type=finite_float(0.0, 1.0), default=None,
                   help="how far the mouth follows what the lip reader hears in the portrait's own voice, 0..1 "
                        "(default: the stage-2 weights' own; 0 = the generator's mouth alone)")
    p.add_argument("--seed", type=int_range(0, MAX_SEED), default=0)
    p.add_argument("--face-index", type=nonneg_int, default=None, help="face of the portrait, i-th from the left (default: largest)")
    p.add_argument("--paste-back", action="store_true", help="render into the whole portrait, not only the face crop")
    p.add_argument("--audio-out", choices=("mix", "self", "none"), default="mix", help="audio track of the mp4")
    p.add_argument("--overlay", action="store_true", help="draw both channels' VAD and the speaking/listening state")
    _add_control_args(p)
    _add_renderer_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("reenact", help="animate a portrait with the motion of a driving video (stage 1)")
    p.add_argument("--portrait", type=Path, required=True)
    p.add_argument("--driving", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=None, help="stage-1 checkpoint folder (default: starter weights)")
    p.add_argument("--face-index", type=nonneg_int, default=None, help="face of the portrait, i-th from the left (default: largest)")
    p.add_argument("--paste-back", action="store_true", help="render into the whole portrait, not only the crop")
    p.add_argument("--absolute", action="store_true", help="use the driver's motion as is, not relative to its first frame")
    _add_renderer_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_reenact)

    p = sub.add_parser("extract-motion", help="stage-1 motion latents (T, D) of every clip of a corpus")
    p.add_argument("corpus", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="stage-1 checkpoint folder (default: starter weights)")
    p.add_argument("--out", type=Path, default=None, help="default: <corpus>/motion")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_extract_motion)

    p = sub.add_parser("demo", help="live full-duplex demo: a local web page (microphone = partner), or --simulate from files")
    p.add_argument("--portrait", type=Path, default=None, help="image with a face (default: a sample portrait)")
    p.add_argument("--checkpoint", type=Path, default=None, help="folder with stage1/ and stage2/ (default: starter weights)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin besides the demo's own page that may use the server, such as https://my.site "
                        "(repeatable; * allows any, which lets every web page the user visits drive it)")
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="port (0: any free one)")
    p.add_argument("--size", type=positive_int, default=None, help="render size to start at (default: the checkpoint's)")
    p.add_argument("--steps", type=int_range(1, MAX_STEPS), default=6, help="diffusion sampling steps to start at")
    p.add_argument("--cfg-scale", type=finite_float(0.0, MAX_CFG_SCALE), default=2.0)
    p.add_argument("--lip-follow", type=finite_float(0.0, 1.0), default=None,
                   help="how far the mouth follows what the lip reader hears in the portrait's own voice, 0..1 "
                        "(default: the stage-2 weights' own; 0 = the generator's mouth alone)")
    p.add_argument("--seed", type=int_range(0, MAX_SEED), default=0)
    p.add_argument("--face-index", type=nonneg_int, default=None, help="face of the portrait, i-th from the left")
    p.add_argument("--delay-ms", type=finite_float(50.0, 10_000.0), default=250.0,
                   help="presentation delay: a frame and the agent's audio play this long after their audio arrived")
    p.add_argument("--batch", type=int, default=1, choices=(1, 2, 4), help="frames per rendering call (1: lowest latency)")
    p.add_argument("--no-adapt", action="store_true", help="keep size and steps even when frames are late")
    p.add_argument("--audio-dir", type=Path, default=None, help="agent voice files offered on the page (default: the samples)")
    p.add_argument("--record-dir", type=Path, default=Path("outputs/demo"), help="where the page's recordings go")
    p.add_argument("--simulate", action="store_true", help="no browser: run the live loop paced in real time from files")
    p.add_argument("--self", dest="self_audio", type=Path, default=None, help="--simulate: the agent's voice")
    p.add_argument("--other", dest="other_audio", type=Path, default=None, help="--simulate: the user's voice (the microphone)")
    p.add_argument("--audio", type=Path, default=None, help="--simulate: stereo dialogue (channel 0 = agent, 1 = user)")
    p.add_argument("--self-channel", type=int, default=0, choices=(0, 1), help="which channel of --audio is the agent")
    p.add_argument("--record", type=Path, default=None, help="--simulate: save the session as this .mp4 (both voices)")
    p.add_argument("--report", type=Path, default=None, help="--simulate: figures as JSON (default: beside --record)")
    p.add_argument("--threads", type=int_range(1, 1024), default=2, help="CPU threads of the renderer (and of torch)")
    p.add_argument("--motion-threads", type=int_range(0, 1024), default=MOTION_THREADS,
                   help="torch CPU threads of motion generation and voice activity when the renderer runs on "
                        "openvino or onnxruntime, which keep --threads of their own (0: --threads; default "
                        f"{MOTION_THREADS}: motion generation's many small operations lose more than they gain by "
                        "sharing two cores with the renderer and a browser)")
    _add_renderer_args(p, backend="auto")
    _add_control_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("vad", help="speech per channel of an audio file (silero VAD at 25 fps)")
    p.add_argument("audio", type=Path)
    p.add_argument("--threshold", type=finite_float(0.0, 1.0), default=SPEECH_THRESHOLD)
    p.set_defaults(func=cmd_vad)
    return ap


def main(argv: list[str] | None = None) -> int:
    _quiet_native_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "check", None) is not None:
        args.check(parser._subparsers._group_actions[0].choices[args.command], args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    installed, previous = _handle_sigterm()
    try:
        return args.func(args)
    except InfpError as e:
        print(f"infp: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the system refused a file operation: say which file and why, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"infp: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Terminated:
        print("infp: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("infp: interrupted", file=sys.stderr)
        return 130
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _handle_sigterm() -> tuple[bool, object]:
    """Turn SIGTERM into ``Terminated`` (so ``finally`` blocks remove partial outputs): (installed, old handler).

    Only the main thread may set signal handlers; elsewhere (main() called from a worker thread) SIGTERM
    keeps its default action.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False, None
    return True, signal.signal(signal.SIGTERM, _on_sigterm)


if __name__ == "__main__":
    sys.exit(main())
