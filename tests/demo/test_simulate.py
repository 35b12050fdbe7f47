"""`infp demo --simulate`: the live loop paced in real time from files, recorded with both voices."""

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from infp.cli import main
from infp.io import probe, read_audio, read_frames


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "infp.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_simulate_records_both_voices_with_the_right_frame_count(tmp_path, samples, tiny_weights, voices):
    out = tmp_path / "session.mp4"
    agent, user = voices["dir"] / "agent.wav", voices["dir"] / "user.wav"
    res = _cli("demo", "--simulate", "--self", agent, "--other", user, "--record", out, "--checkpoint", tiny_weights,
               "--steps", "2", "--delay-ms", "600", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "frames delivered" in res.stdout and f"wrote {out}" in res.stdout
    n = math.ceil(4.0 * 25)
    assert len(read_frames(out)) == n
    info = probe(out)
    assert info.audio_channels == 2 and abs(info.duration - 4.0) < 0.1
    audio = read_audio(out)
    for c, ref in enumerate((voices["agent"], voices["user"])):  # left = agent (self), right = user (other)
        m = min(audio.shape[1], len(ref)) - 1000
        assert np.corrcoef(audio[c, 1000:m], ref[1000:m])[0, 1] > 0.95
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["frames"] == report["expected_frames"] == n and report["recording"]["frames"] == n
    assert report["delivered"] + report["dropped"] + report["late"] == n
    # frames are shown, and never later than the presentation delay (the rate depends on the machine:
    # benchmarks/demo_session.py measures it)
    assert report["delivered"] > 0 and report["latency_ms"]["p95"] <= 600
    assert report["states"]["both"] > 30  # both talk over most of the 4 s


def test_simulate_errors_are_one_line(tmp_path, tiny_weights, voices):
    for args, needle in [
        (["--simulate"], "--simulate needs the voices"),
        (["--simulate", "--self", voices["dir"] / "agent.wav", "--record", tmp_path / "x.avi"], ".mp4"),
        (["--record", tmp_path / "x.mp4"], "go with --simulate"),
        (["--simulate", "--self", tmp_path / "missing.wav"], "missing.wav"),
    ]:
        res = _cli("demo", "--checkpoint", tiny_weights, *args)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("infp: error:") and needle in lines[0], res.stderr
    assert not list(tmp_path.iterdir())


class _Started(Exception):
    """Raised by the stand-in session once it has seen how the threads were set."""


@pytest.mark.parametrize("backend,motion_threads,torch_threads", [("openvino", "1", 1), ("openvino", "0", 2),
                                                                  ("torch", "1", 2)])
def test_motion_generation_gets_its_own_thread_count_beside_an_exported_renderer(
        monkeypatch, tmp_path, tiny_weights, voices, backend, motion_threads, torch_threads):
    """With the renderer on OpenVINO (its own pool of --threads), torch keeps --motion-threads for motion generation
    and voice activity; with the renderer in torch both share --threads."""
    if backend == "openvino" and not all(importlib.util.find_spec(p) for p in ("onnx", "openvino")):
        pytest.skip("needs onnx, openvino")
    import torch

    import infp.demo.simulate

    seen = {}

    def session(pipe, *args, **kwargs):
        seen.update(torch=torch.get_num_threads(), renderer=pipe.stage1.threads, backend=pipe.stage1.backend)
        raise _Started

    monkeypatch.setattr(infp.demo.simulate, "simulate", session)
    monkeypatch.setenv("INFP_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    try:
        with pytest.raises(_Started):
            main(["demo", "--simulate", "--self", str(voices["dir"] / "agent.wav"), "--checkpoint", str(tiny_weights),
                  "--backend", backend, "--threads", "2", "--motion-threads", motion_threads, "--quiet"])
    finally:
        torch.set_num_threads(before)
    assert seen == {"torch": torch_threads, "renderer": 2, "backend": backend}
