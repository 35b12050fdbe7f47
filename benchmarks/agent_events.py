"""Conversation events and barge-in in a served live session: how soon an agent hears that the user
started talking, and how soon the avatar's mouth closes after the agent's ``clear``.

    python benchmarks/agent_events.py [--onsets 60] [--weights weights] [--size 256] [--delay-ms 250] [--out FILE]

The demo server (``infp demo``: the page's session on ``/ws``, the agent endpoint ``/ws/agent``) runs in
this process on 127.0.0.1 with its live loop on the main thread, as ``infp demo`` does (streaming VAD,
motion, rendering, JPEG, late-frame dropping, quality ladder). Two clients talk to it over real
WebSockets:

* the page: the user's voice as its microphone, 40 ms messages, each sent when its last sample would
  have been captured. The user says ``--onsets`` utterances at known samples, 2.5-4 s apart (and at
  random places of the 32 ms VAD grid), over a -60 dBFS noise floor: 1-2.5 s excerpts, taken in turn,
  of the speech of ditto and joyvasa_001 (their frames with VAD > 0.5, as the held-out dialogue of
  ``infp.eval.dialogue`` is cut, so each excerpt starts with speech), with a 5 ms fade-in;
* the agent: the example agent (``demo/agent_example.py``), which speaks lp_d11's voice (the agent
  of ``benchmarks/demo_session.py``, whose user is ditto), sends ``clear``
  on ``user_speech_start``, and replies (1.5 s of joyvasa_001) on ``user_speech_end``.

Figures:

* **onset latency**: from the user's speech onset (the wall time its first sample was captured) to
  the arrival of ``user_speech_start`` at the agent's socket, p50/p95/max over the onsets; misses and
  starts without an onset; also on the page's socket, and the part of it that is detection on the
  audio clock (``clock_s`` minus the onset);
* **clear -> mouth closed**, on the audio clock: from the sample where the agent's voice stops (``t``
  of ``cleared``) to the first frame whose mouth is closed (``infp.eval.barge_in``: keypoint mouth
  opening of the generated latents at most its 95th percentile in the session's listening frames,
  3 frames in a row); beside it, the same rule at points of ongoing agent speech (how often a mouth
  that keeps talking would pass for closed that soon), the frames until the state badge leaves
  speaking/both, and the times as presented (from sending ``clear`` to the voice stopping and to the
  closed mouth on the page: the presentation delay included);
* what else the CPU was doing: the load average and the share of the CPUs used by other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import torch

from infp.audio.vad import frame_speech_prob
from infp.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEECH_THRESHOLD
from infp.demo.server import KIND_FRAME, DemoServer, pcm16, serve, unpack
from infp.eval.barge_in import CLOSED_HOLD, closed_threshold, first_closed, mouth_openings, seconds_to_close
from infp.io import read_audio
from infp.paths import REPO_ROOT
from infp.pipelines.render import Pipeline, RenderSettings

SAMPLES = REPO_ROOT / "data" / "samples"
CHUNK = SAMPLES_PER_FRAME  # 40 ms microphone messages, as the page sends
NOISE_DBFS = -60.0
FADE_IN_S = 0.005
USER_VOICES = (SAMPLES / "audio" / "ditto.flac", SAMPLES / "audio" / "joyvasa_001.flac")
AGENT_VOICE = SAMPLES / "video" / "lp_d11.mp4"


def load_example():
    spec = importlib.util.spec_from_file_location("agent_example", REPO_ROOT / "demo" / "agent_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def speech_only(path: Path) -> np.ndarray:
    """A recording's speech with everything else left out: its frames with VAD > 0.5, in order (as
    ``infp.eval.dialogue.compose`` cuts its excerpts), so every excerpt of it is talking."""
    audio = read_audio(path).mean(axis=0).astype(np.float32)
    keep = np.repeat(frame_speech_prob(audio)[:, 0] > SPEECH_THRESHOLD, SAMPLES_PER_FRAME)[: len(audio)]
    return audio[: len(keep)][keep]


def user_track(n_onsets: int, seed: int, paths=USER_VOICES) -> tuple[np.ndarray, list[int], list[int]]:
    """The user's microphone: utterances of real speech at known samples; (audio, onsets, ends)."""
    rng = np.random.default_rng(seed)
    voices = [speech_only(path) for path in paths]
    pos_in = [0] * len(voices)
    fade, tail = int(FADE_IN_S * SAMPLE_RATE), int(0.02 * SAMPLE_RATE)
    out, onsets, ends, pos = [np.zeros(int(4.0 * SAMPLE_RATE), np.float32)], [], [], int(4.0 * SAMPLE_RATE)
    for i in range(n_onsets):
        v = i % len(voices)
        length = int(rng.uniform(1.0, 2.5) * SAMPLE_RATE)
        src = voices[v]
        if pos_in[v] + length > len(src):
            pos_in[v] = 0
        piece = src[pos_in[v]:pos_in[v] + length].copy()
        pos_in[v] += length
        piece[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
        piece[-tail:] *= np.linspace(1, 0, tail, dtype=np.float32)
        gap = np.zeros(int(rng.uniform(2.5, 4.0) * SAMPLE_RATE) + int(rng.integers(0, 512)), np.float32)
        onsets.append(pos)
        ends.append(pos + len(piece))
        out += [piece, gap]
        pos += len(piece) + len(gap)
    audio = np.concatenate(out)
    audio += rng.normal(0, 10 ** (NOISE_DBFS / 20), len(audio)).astype(np.float32)
    return audio, onsets, ends


def cpu_busy() -> tuple[float, float]:
    """(seconds all CPUs were busy, seconds this process used) since boot / start."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    hz = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return busy / hz, own.user + own.system + own.children_user + own.children_system


def pct(x, q) -> float | None:
    return round(float(np.percentile(x, q)), 1) if len(x) else None


def summary_ms(x) -> dict:
    x = np.asarray(x, np.float64) * 1000
    return {"n": int(len(x)), "p50": pct(x, 50), "p95": pct(x, 95), "max": round(float(x.max()), 1) if len(x) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onsets", type=int, default=60)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--portrait", type=Path, default=SAMPLES / "portraits" / "lp_s1.jpg")
    ap.add_argument("--size", type=int, default=None, help="start size (default: the checkpoint's)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--delay-ms", type=float, default=250.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--user-voice", type=Path, action="append", default=None,
                    help="the user's voices, taken in turn (repeatable; default: ditto and joyvasa_001)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--dump", type=Path, default=None, help="write per-frame mouth opening, states and the cuts (npz)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    example = load_example()
    user, onsets, ends = user_track(args.onsets, args.seed, args.user_voice or USER_VOICES)
    duration = len(user) / SAMPLE_RATE
    speech = example.load_speech(AGENT_VOICE)
    speech = np.tile(speech, int(np.ceil((duration + 10) * SAMPLE_RATE / len(speech))))
    reply = example.load_speech(SAMPLES / "audio" / "joyvasa_001.flac", 1.5)
    agent = example.BargeInAgent(speech, reply, echo=False)
    delay = args.delay_ms / 1000
    pipe = Pipeline.from_pretrained(args.weights)
    tmp = tempfile.TemporaryDirectory()
    server = DemoServer(pipe, args.portrait, RenderSettings(steps=args.steps), size=args.size, delay=delay,
                        record_dir=Path(tmp.name))
    stop = threading.Event()
    run: dict = {"frames": {}, "page": [], "failure": None}

    async def clients(port: int) -> None:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws")
            hello = await ws.receive_json()
            assert hello["type"] == "hello", hello
            live = server.live
            page_sink = live.sink

            def sink(f) -> None:  # the generated motion and state of every frame, for the mouth measure
                run["frames"][f.index] = (f.latent.copy(), f.state, f.image is not None and f.info.get("delivered", False))
                page_sink(f)

            live.sink = sink
            agent_ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws/agent")
            talk = asyncio.create_task(agent.run(agent_ws, duration + 2.0))
            while not any(m.get("type") == "format" for _, m in agent.log):  # the agent is live and streaming
                await asyncio.sleep(0.01)

            async def receive() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        run["page"].append((time.monotonic(), json.loads(msg.data)))
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        kind, header, _ = unpack(msg.data)
                        if kind == KIND_FRAME and "size" in header:
                            run["size"] = header["size"]
                    else:
                        break

            rx = asyncio.create_task(receive())
            t0 = time.monotonic()
            run["t0"], run["cpu0"] = t0, cpu_busy()
            run["load0"] = os.getloadavg()
            for s in range(0, len(user), CHUNK):
                await asyncio.sleep(max(0.0, t0 + (s + CHUNK) / SAMPLE_RATE - time.monotonic()))
                await ws.send_bytes(pcm16(user[s:s + CHUNK]))
                if s % (60 * SAMPLE_RATE) == 0 and s:
                    print(f"  {s / SAMPLE_RATE:5.0f} s of {duration:.0f} s, {agent.clears} clears", flush=True)
            run["wall"] = time.monotonic() - t0
            run["cpu1"], run["load1"] = cpu_busy(), os.getloadavg()
            await asyncio.sleep(delay + 0.5)
            run["snapshot"] = live.snapshot()
            talk.cancel()
            await agent_ws.close()
            await ws.close()
            rx.cancel()

    def client_thread(port: int) -> None:
        try:
            asyncio.run(clients(port))
        except BaseException as e:  # noqa: BLE001  (reported after the server stops)
            run["failure"] = e
        finally:
            stop.set()

    print(f"user: {len(onsets)} utterances over {duration:.0f} s; serving and talking in real time ...", flush=True)
    serve(server, "127.0.0.1", 0, ready=lambda port: threading.Thread(target=client_thread, args=(port,), daemon=True).start(),
          stop=stop)
    if run["failure"] is not None:
        raise run["failure"]
    result = analyse(run, agent, onsets, ends, delay, pipe, server, args.dump)
    result["settings"] = {"onsets": len(onsets), "duration_s": round(duration, 1), "delay_ms": args.delay_ms,
                          "threads": args.threads, "steps": args.steps, "portrait": args.portrait.name,
                          "user_voices": [p.name for p in (args.user_voice or USER_VOICES)], "agent_voice": AGENT_VOICE.name}
    report(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


def analyse(run: dict, agent, onsets: list[int], ends: list[int], delay: float, pipe, server, dump: Path | None = None) -> dict:
    t0 = run["t0"]
    at_agent = [(w, m) for w, m in agent.log if m.get("type") == "user_speech_start"]
    at_page = [(w, m) for w, m in run["page"] if m.get("type") == "user_speech_start"]

    def match(events, onset_s):
        """The first start event stamped within [-0.25, +0.5] s of the onset."""
        return next(((w, m) for w, m in events if -0.25 <= m["t"] - onset_s <= 0.5), None)

    lat_agent, lat_page, detect, stamp, used = [], [], [], [], set()
    for o in onsets:
        o_s = o / SAMPLE_RATE
        hit = match(at_agent, o_s)
        if hit is None:
            continue
        used.add(id(hit[1]))
        lat_agent.append(hit[0] - (t0 + o_s))
        detect.append(hit[1]["clock_s"] - o_s)
        stamp.append(hit[1]["t"] - o_s)
        page = match(at_page, o_s)
        if page is not None:
            lat_page.append(page[0] - (t0 + o_s))
    ends_at_agent = [m for _, m in agent.log if m.get("type") == "user_speech_end"]
    end_stamp = []
    for e in ends:
        e_s = e / SAMPLE_RATE
        hit = next((m for m in ends_at_agent if -0.25 <= m["t"] - e_s <= 0.5), None)
        if hit is not None:
            end_stamp.append(hit["t"] - e_s)

    # the mouth after each clear, from the generated latents of every frame (rendered or not)
    frames = run["frames"]
    ks = np.array(sorted(frames))
    first = int(ks[0])
    latents = np.stack([frames[k][0] for k in ks])
    states = [frames[k][1] for k in ks]
    opening = mouth_openings(pipe.stage1.net, latents)
    rest_latent = pipe.stage1.source(server.portraits[server.levels[0].size]).motion.numpy()
    rest = float(mouth_openings(pipe.stage1.net, rest_latent)[0])
    speaking = np.array([s == "speaking" for s in states])
    listening = np.array([s == "listening" for s in states])
    threshold = closed_threshold(opening[listening])
    clears = [(w, m) for w, m in agent.log if m.get("type") == "cleared"]
    sent = [w for w, m in agent.log if m.get("type") == "sent_clear"]
    closed, badge, presented_voice, presented_mouth, never = [], [], [], [], 0
    cut_frames = []
    for i, (_, m) in enumerate(clears):
        s_cut = round(m["t"] * SAMPLE_RATE)
        k_cut = s_cut // SAMPLES_PER_FRAME
        cut_frames.append(k_cut)
        k_rel = first_closed(opening, k_cut - first, threshold)
        if k_rel is None:
            never += 1
            continue
        k_closed = k_rel + first
        closed.append(max(0.0, (k_closed * SAMPLES_PER_FRAME - s_cut) / SAMPLE_RATE))
        k_badge = next((k for k, s in zip(ks, states) if k >= k_cut and s not in ("speaking", "both")), None)
        if k_badge is not None:
            badge.append(max(0.0, (k_badge * SAMPLES_PER_FRAME - s_cut) / SAMPLE_RATE))
        if i < len(sent):  # frame k is shown, and the agent's sample s played, at t0 + (k / 25 | s / 16000) + delay
            presented_voice.append(t0 + m["t"] + delay - sent[i])
            presented_mouth.append(t0 + max(k_closed / FPS, m["t"]) + delay - sent[i])
    # the same rule inside ongoing agent speech, away from any clear: a mouth that keeps talking
    control = []
    for j in range(0, len(ks) - 2 * FPS, 10):
        k = int(ks[j])
        if all(s == "speaking" for s in states[j:j + FPS]) and not any(0 <= c - k < 2 * FPS for c in cut_frames):
            sec = seconds_to_close(opening, (k - first) * SAMPLES_PER_FRAME, threshold)
            control.append(sec if sec is not None else np.inf)
    control = np.array(control)
    # does it stay closed? the share of closed frames in the second from 200 ms after the cut, against
    # the same share at the control points of ongoing speech
    def closed_share(k_rel: int) -> float:
        return float((opening[k_rel:k_rel + FPS] <= threshold).mean())

    stay_cut = [closed_share(c - first + 5) for c in cut_frames if c - first + 5 + FPS <= len(opening)]
    stay_ctl = []
    for j in range(0, len(ks) - 2 * FPS, 10):
        if all(s == "speaking" for s in states[j:j + FPS]) and not any(0 <= c - int(ks[j]) < 2 * FPS for c in cut_frames):
            stay_ctl.append(closed_share(j + 5))
    if dump is not None:
        np.savez(dump, frame=ks, opening=opening, state=np.array(states), cut_sample=np.array([round(m["t"] * SAMPLE_RATE) for _, m in clears]),
                 onset=np.array(onsets), end=np.array(ends), threshold=threshold, rest=rest)
    busy0, own0 = run["cpu0"]
    busy1, own1 = run["cpu1"]
    ncpu = os.cpu_count() or 1
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (run["wall"] * ncpu)
    snap = run["snapshot"]
    return {
        "onset_latency_at_agent_ms": summary_ms(lat_agent),
        "onset_latency_at_page_ms": summary_ms(lat_page),
        "onset_detection_on_clock_ms": summary_ms(detect),
        "onset_stamp_minus_onset_ms": summary_ms(stamp),
        "missed_onsets": len(onsets) - len(lat_agent),
        "starts_without_onset": sum(id(m) not in used for _, m in at_agent),
        "end_stamp_minus_end_ms": summary_ms(end_stamp),
        "clears": len(clears),
        "clear_to_mouth_closed_ms": summary_ms(closed),
        "never_closed": never,
        "clear_to_badge_not_speaking_ms": summary_ms(badge),
        "as_presented_from_sending_clear_ms": {"voice_stops": summary_ms(presented_voice),
                                               "mouth_closed": summary_ms(presented_mouth)},
        "control_ongoing_speech": {"points": int(len(control)),
                                   "closed_within_200ms_share": round(float((control <= 0.2).mean()), 3) if len(control) else None,
                                   "p50_ms": pct(control[np.isfinite(control)] * 1000, 50) if np.isfinite(control).any() else None,
                                   "closed_share_next_second_p50": round(float(np.median(stay_ctl)), 2) if stay_ctl else None},
        "after_clear_closed_share_next_second": {"p50": round(float(np.median(stay_cut)), 2) if stay_cut else None,
                                                 "min": round(float(np.min(stay_cut)), 2) if stay_cut else None},
        "mouth": {"rest": round(rest, 4), "speaking_median": round(float(np.median(opening[speaking])), 4),
                  "listening_median": round(float(np.median(opening[listening])), 4),
                  "threshold": round(threshold, 4), "hold_frames": CLOSED_HOLD},
        "session": {"fps": snap["fps"], "delivered": snap["delivered"], "frames": snap["frames"], "size_at_end": snap["size"],
                    "steps_at_end": snap["steps"], "note": snap["note"]},
        "cpu": {"cores": ncpu, "load_avg_start": [round(x, 2) for x in run["load0"]],
                "load_avg_end": [round(x, 2) for x in run["load1"]], "other_processes_share": round(others, 3),
                "this_process_share": round((own1 - own0) / (run["wall"] * ncpu), 3)},
    }


def report(r: dict) -> None:
    a, p, d = r["onset_latency_at_agent_ms"], r["onset_latency_at_page_ms"], r["onset_detection_on_clock_ms"]
    print(f"\nuser_speech_start after the user's onset ({a['n']} of {r['settings']['onsets']} onsets; "
          f"{r['missed_onsets']} missed, {r['starts_without_onset']} starts without an onset):")
    print(f"  arrival at the agent's socket: p50 {a['p50']} ms, p95 {a['p95']} ms, max {a['max']} ms")
    print(f"  arrival on the page's socket:  p50 {p['p50']} ms, p95 {p['p95']} ms, max {p['max']} ms")
    print(f"  decided on the audio clock:    p50 {d['p50']} ms, p95 {d['p95']} ms, max {d['max']} ms")
    s, e = r["onset_stamp_minus_onset_ms"], r["end_stamp_minus_end_ms"]
    print(f"  stamp t minus the onset: p50 {s['p50']} ms, max {s['max']} ms; user_speech_end t minus the end: "
          f"p50 {e['p50']} ms, p95 {e['p95']} ms ({e['n']} ends)")
    c, b = r["clear_to_mouth_closed_ms"], r["clear_to_badge_not_speaking_ms"]
    print(f"clear -> mouth closed on the audio clock ({c['n']} of {r['clears']} clears, {r['never_closed']} never): "
          f"p50 {c['p50']} ms, p95 {c['p95']} ms, max {c['max']} ms")
    print(f"  state badge leaves speaking/both: p50 {b['p50']} ms, p95 {b['p95']} ms, max {b['max']} ms")
    ctl = r["control_ongoing_speech"]
    print(f"  control: at {ctl['points']} points of ongoing agent speech the same rule finds the mouth closed within "
          f"200 ms {100 * (ctl['closed_within_200ms_share'] or 0):.0f} % of the time")
    st = r["after_clear_closed_share_next_second"]
    print(f"  it stays closed: in the second from 200 ms after the clear, {st['p50']} of the frames are closed (p50; min "
          f"{st['min']}); in ongoing speech {ctl['closed_share_next_second_p50']} (p50)")
    v, m = r["as_presented_from_sending_clear_ms"]["voice_stops"], r["as_presented_from_sending_clear_ms"]["mouth_closed"]
    print(f"  as presented, from sending clear: voice stops p50 {v['p50']} ms (p95 {v['p95']}), mouth closed p50 {m['p50']} ms "
          f"(p95 {m['p95']}); the presentation delay is {r['settings']['delay_ms']:.0f} ms")
    mo = r["mouth"]
    print(f"  mouth opening: rest {mo['rest']}, median speaking {mo['speaking_median']}, listening {mo['listening_median']}; "
          f"closed: at most {mo['threshold']} (listening p95) for {mo['hold_frames']} frames")
    ss, cpu = r["session"], r["cpu"]
    print(f"session: {ss['delivered']} of {ss['frames']} frames delivered, {ss['size_at_end']}² {ss['steps_at_end']} steps at the "
          f"end{' (' + ss['note'] + ')' if ss['note'] else ''}")
    print(f"CPU: {cpu['cores']} cores, load average {cpu['load_avg_start'][0]} at the start, {cpu['load_avg_end'][0]} at the end; "
          f"other processes used {100 * cpu['other_processes_share']:.0f} % of the CPUs, this one "
          f"{100 * cpu['this_process_share']:.0f} %")


if __name__ == "__main__":
    main()
