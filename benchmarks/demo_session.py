"""A simulated live session of N minutes, paced in real time: what a user of `infp demo` gets on this machine.

    python benchmarks/demo_session.py [--minutes 10] [--weights weights] [--size 256] [--batch 1] [--delay-ms 250]

The user's and the agent's voices are a held-out dialogue with known turns (``infp.eval.dialogue``:
lp_d11 as the agent, ditto as the user; turns, a 0.6 s overlap, pauses) repeated for the whole
duration. It runs the live loop of the demo (``infp demo --simulate``: streaming VAD, motion,
rendering, JPEG encoding, late-frame dropping, quality ladder, recording) and prints:

* delivered fps (frames ready before their presentation time, per second of session);
* latency p50/p95: from the moment the agent's (and user's) sound of a frame arrives to the moment the
  frame showing it is ready (encoded), over delivered frames; per minute, to show it does not grow;
* reaction time to the user's speech onsets (ground truth from the dialogue's schedule): until the
  first presented frame that shows the avatar listening; and until its face first changes because
  of the user's voice (the same motion generated with the user's voice cut at the onset, rendered,
  compared);
* resident memory (RSS) at the start, every minute and at the end;
* audio/video drift: of the recording (video frames vs audio duration, and the offset of the
  recorded voices against the sources in the first and last 10 s), and of presentation (how far the
  shown frame is behind the audio clock, first vs last minute).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.demo.simulate import simulate
from infp.eval.dialogue import DURATION, SCHEDULE, compose
from infp.paths import REPO_ROOT
from infp.pipelines.render import Pipeline, RenderSettings
from infp.runtime.backends import BACKENDS, MOTION_THREADS, set_motion_threads

SAMPLES = REPO_ROOT / "data" / "samples"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self._halt = every, [], threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.is_set():
            self.samples.append((time.monotonic() - t0, rss_mb()))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((self.samples[-1][0] + self.every if self.samples else 0.0, rss_mb()))


def onsets(seconds: float) -> list[float]:
    """The user's speech onsets (s) of the repeated dialogue."""
    starts = [a for ch, a, _ in SCHEDULE if ch == 1]
    out, base = [], 0.0
    while base < seconds:
        out += [base + a for a in starts if base + a < seconds - 1.0]
        base += DURATION
    return out


def indicator_reaction(live, onset_s: list[float], delay: float) -> np.ndarray:
    """Seconds from each onset until the page shows the avatar listening (state badge; dropped frames
    carry the state too): the first frame at or after the onset with state listening/both, presented
    ``delay`` after its audio arrived."""
    st = live.stats
    index = np.array(st.rec_index, dtype=np.int64)
    state = np.array(st.rec_state, dtype=np.int64)
    wall = np.array(st.rec_wall)
    out = []
    for t in onset_s:
        k_on = int(t * FPS)
        hit = np.nonzero((index >= k_on) & (index < k_on + 3 * FPS) & ((state == 2) | (state == 3)))[0]
        if len(hit):
            w_on = wall[k_on] + (t * SAMPLE_RATE - k_on * SAMPLES_PER_FRAME) / SAMPLE_RATE
            out.append(wall[hit[0]] + delay - w_on)
    return np.array(out)


@torch.no_grad()
def face_reaction(pipe, portrait, own, other, onset_s: list[float], steps: int, size: int, delay: float,
                  span_s: float = 2.0) -> dict:
    """How soon the avatar's motion and picture depend on the user's voice after each onset.

    The same stream is continued twice from the hop before the onset: with the user's voice, and
    with it cut at the onset. Motion reacts at the first frame whose latent differs by more than 5 %
    of the typical frame-to-frame latent step; the picture at the first frame where 1 % of the pixels
    differ by 2 levels or more. Times are as presented (onset to presentation, including the delay).
    """
    from infp.runtime.motion import MotionStream
    from infp.runtime.portrait import load_portrait

    pt = load_portrait(portrait, size)
    src = pipe.stage1.source(pt)
    stream = MotionStream(pipe.stage2, src.motion[0], steps=steps, device=pipe.device,
                          decode_keypoints=pipe.stage1.decode_keypoints)
    hop = stream.window * SAMPLES_PER_FRAME
    pos, motion, picture = 0, [], []
    for t in onset_s:
        s_on = int(t * SAMPLE_RATE)
        h0 = s_on // hop * hop
        if h0 > pos:
            stream.push(own[pos:h0], other[pos:h0])
            pos = h0
        span = int(span_s * SAMPLE_RATE) // hop * hop
        cut = other[h0:h0 + span].copy()
        cut[s_on - h0:] = 0
        a, b = copy.deepcopy(stream), copy.deepcopy(stream)
        la = a.push(own[h0:h0 + span], other[h0:h0 + span])
        lb = b.push(own[h0:h0 + span], cut)
        step = np.median(np.linalg.norm(np.diff(la, axis=0), axis=1))
        dl = np.linalg.norm(la - lb, axis=1)
        k = next((j for j, d in enumerate(dl) if d > 0.05 * step), None)
        if k is not None:
            motion.append((h0 + k * SAMPLES_PER_FRAME - s_on) / SAMPLE_RATE + delay)
        fa = pipe.stage1.render(src, torch.from_numpy(la))
        fb = pipe.stage1.render(src, torch.from_numpy(lb))
        changed = [float((np.abs(x.astype(np.int16) - y.astype(np.int16)).max(axis=2) >= 2).mean()) for x, y in zip(fa, fb)]
        k = next((j for j, c in enumerate(changed) if c >= 0.01), None)
        if k is not None:
            picture.append((h0 + k * SAMPLES_PER_FRAME - s_on) / SAMPLE_RATE + delay)
    return {"onsets": len(onset_s), "motion_s": motion, "picture_s": picture}


def presentation_offset(live, first: bool) -> tuple[float, float]:
    """p50/p95 (ms) of how far the presented frame is behind the audio clock, first or last minute."""
    st = live.stats
    index = np.array(st.rec_index, dtype=np.int64)
    ok = np.array(st.rec_ok, dtype=bool)
    n = len(index)
    span = min(60 * FPS, n)
    sel = slice(0, span) if first else slice(n - span, n)
    shown, offs = -1, []
    for k, good in zip(index[sel], ok[sel]):
        if good:
            shown = k
        if shown >= 0:
            offs.append((k - shown) * 1000 / FPS)
    return float(np.percentile(offs, 50)), float(np.percentile(offs, 95))


def recording_drift(path: Path, own: np.ndarray, other: np.ndarray) -> dict:
    """Frames vs audio duration of the mp4 and the lag of its voices against the sources at start and end."""
    from infp.io import probe, read_audio

    info = probe(path)
    audio = read_audio(path)
    frames = None
    from infp.io.video import count_frames

    frames = count_frames(info)
    lags = {}
    for where, sl in (("start", slice(0, 10 * SAMPLE_RATE)), ("end", slice(len(own) - 10 * SAMPLE_RATE, len(own)))):
        for c, ref in enumerate((own, other)):
            x, y = audio[c, sl], ref[sl]
            n = min(len(x), len(y))
            best = max(range(-400, 401, 1), key=lambda d: float(np.dot(x[max(0, d):n + min(0, d)], y[max(0, -d):n - max(0, d)])))
            lags[f"{where}_{'self' if c == 0 else 'other'}_ms"] = round(best * 1000 / SAMPLE_RATE, 2)
    return {"video_s": round(frames / FPS, 3), "audio_s": round(audio.shape[1] / SAMPLE_RATE, 3),
            "frames": frames, "duration_ms_difference": round((audio.shape[1] / SAMPLE_RATE - frames / FPS) * 1000, 1),
            **lags}


def _summary(x: list[float]) -> dict:
    x = np.array(x)
    return {"n": len(x), "p50": round(float(np.median(x)), 3) if len(x) else None,
            "max": round(float(x.max()), 3) if len(x) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--size", type=int, default=None, help="start size (default: the checkpoint's)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=250.0)
    ap.add_argument("--no-adapt", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of the stage-1 renderer")
    ap.add_argument("--backend", choices=BACKENDS, default="torch", help="runtime of the stage-1 renderer")
    ap.add_argument("--motion-threads", type=int, default=MOTION_THREADS,
                    help="torch threads beside a renderer on openvino / onnxruntime (0: --threads), as infp demo")
    ap.add_argument("--portrait", type=Path, default=SAMPLES / "portraits" / "lp_s1.jpg")
    ap.add_argument("--no-record", action="store_true", help="do not record (no mp4 drift figures)")
    ap.add_argument("--onsets", type=int, default=8, help="user onsets checked for the face's reaction")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seconds = args.minutes * 60
    own, other = compose(SAMPLES / "video" / "lp_d11.mp4", SAMPLES / "audio" / "ditto.flac")
    reps = int(np.ceil(seconds / DURATION))
    n = int(seconds * SAMPLE_RATE)
    own, other = np.tile(own, reps)[:n], np.tile(other, reps)[:n]
    pipe = Pipeline.from_pretrained(args.weights, precision=args.precision, backend=args.backend)
    motion_threads = set_motion_threads(args.backend, args.threads, args.motion_threads)
    rss0 = rss_mb()
    sampler = RssSampler()
    sessions: list = []
    delay = args.delay_ms / 1000

    def progress(live) -> None:
        s = live.snapshot()
        print(f"  {s['clock_s']:6.0f} s: {s['fps']:4.1f} fps, latency p50 {s['latency_ms']['p50']} p95 "
              f"{s['latency_ms']['p95']} ms, {s['size']}x{s['size']} {s['steps']} steps, RSS {rss_mb():.0f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        record = None if args.no_record else Path(tmp) / "session.mp4"
        rep = simulate(pipe, args.portrait, own, other, RenderSettings(steps=args.steps), size=args.size, delay=delay,
                       render_batch=args.batch, adapt=not args.no_adapt, record=record, progress=progress,
                       progress_every=60.0, sessions=sessions, started=lambda live: sampler.start())
        sampler.stop()
        live = sessions[0]
        drift = recording_drift(record, own, other) if record is not None else None
    ons = onsets(seconds)
    ind = indicator_reaction(live, ons, delay)
    face = face_reaction(pipe, args.portrait, own, other, ons[: args.onsets], live.level.steps, live.level.size, delay)
    first, last = presentation_offset(live, True), presentation_offset(live, False)
    rss = sampler.samples
    per_min = [round(v, 0) for t, v in rss if abs(t % 60) < sampler.every or t == rss[-1][0]]
    result = {**rep, "rss_mb": {"after_loading_weights": round(rss0, 0), "start": round(rss[0][1], 0), "end": round(rss[-1][1], 0),
                                "max": round(max(v for _, v in rss), 0), "per_minute": per_min},
              "reaction_indicator_s": {"n": len(ind), "p50": round(float(np.median(ind)), 3) if len(ind) else None,
                                       "p95": round(float(np.percentile(ind, 95)), 3) if len(ind) else None,
                                       "max": round(float(ind.max()), 3) if len(ind) else None},
              "reaction_face": {"onsets": face["onsets"],
                                "motion_s": _summary(face["motion_s"]), "picture_s": _summary(face["picture_s"])},
              "presentation_offset_ms": {"first_minute_p50_p95": first, "last_minute_p50_p95": last},
              "recording_drift": drift, "threads": args.threads,
              "motion_threads": motion_threads, "batch": args.batch}
    lat = rep["latency_ms"]
    print(f"\nsimulated session of {args.minutes:g} min ({rep['duration_s']:.0f} s, wall {rep['wall_s']:.0f} s), "
          f"start {live.levels[0]}, batch {args.batch}, delay {args.delay_ms:.0f} ms")
    print(f"  delivered {rep['delivered']}/{rep['frames']} frames = {rep['fps']} fps; dropped {rep['dropped']}, late {rep['late']}")
    print(f"  latency (sound -> frame ready) p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms")
    for m in rep["per_minute"]:
        print(f"    minute {m['minute']}: {m['fps']} fps, p50 {m['latency_p50_ms']} ms, p95 {m['latency_p95_ms']} ms")
    print(f"  quality at the end: {live.level}{' -- ' + live.note if live.note else ''}")
    r = result["reaction_indicator_s"]
    print(f"  reaction to {r['n']} user onsets (shown listening): p50 {r['p50']} s, p95 {r['p95']} s, max {r['max']} s")
    r = result["reaction_face"]
    print(f"  motion reacts to the user's voice ({r['motion_s']['n']} of {r['onsets']} onsets): p50 {r['motion_s']['p50']} s, "
          f"max {r['motion_s']['max']} s; picture changes visibly ({r['picture_s']['n']} of {r['onsets']}): "
          f"p50 {r['picture_s']['p50']} s, max {r['picture_s']['max']} s")
    m = result["rss_mb"]
    print(f"  RSS: {m['start']:.0f} MB at start, {m['end']:.0f} MB at end, max {m['max']:.0f} MB; per minute {m['per_minute']}")
    print(f"  shown frame behind the audio clock p50/p95: first minute {first[0]:.0f}/{first[1]:.0f} ms, "
          f"last minute {last[0]:.0f}/{last[1]:.0f} ms")
    print(f"  pacing: clock lateness p50 {rep['clock_lateness_ms']['p50']} ms, max {rep['clock_lateness_ms']['max']} ms")
    if drift:
        print(f"  recording: {drift['frames']} frames = {drift['video_s']} s video, {drift['audio_s']} s audio; voices vs "
              f"sources: start {drift['start_self_ms']}/{drift['start_other_ms']} ms, end {drift['end_self_ms']}/{drift['end_other_ms']} ms")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
