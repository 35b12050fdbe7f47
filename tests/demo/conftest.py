"""Fixtures of the live-demo tests: small random-weight checkpoints (fast) and real sample voices."""

from __future__ import annotations

import pytest

from infp.io import read_audio, write_wav


@pytest.fixture(scope="session")
def voices(tmp_path_factory, samples):
    """Real speech: the agent's voice (ditto) and the user's (hallo_3), 16 kHz mono float32, 4 s each."""
    folder = tmp_path_factory.mktemp("voices")
    agent = read_audio(samples / "audio" / "ditto.flac")[0][: 4 * 16000]
    user = read_audio(samples / "audio" / "hallo_3.flac")[0][: 4 * 16000]
    write_wav(folder / "agent.wav", agent)
    write_wav(folder / "user.wav", user)
    return {"agent": agent, "user": user, "dir": folder}
