"""Fixtures of the live-demo tests: small random-weight checkpoints (fast) and real sample voices."""

from __future__ import annotations

import numpy as np
import pytest

from infp.io import read_audio, write_wav
from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.head_imitation import HeadImitationNet


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """stage1/ + stage2/ checkpoints of small networks (64x64 frames): the whole loop runs in real time."""
    folder = tmp_path_factory.mktemp("tiny_weights")
    HeadImitationNet(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                     flow_width=8, decoder_res=1, decoder_widths=(8, 8)).save_pretrained(folder / "stage1")
    AudioToMotionNet(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8,
                     dit_dim=32, depth=1).save_pretrained(folder / "stage2")
    return folder


@pytest.fixture(scope="session")
def voices(tmp_path_factory, samples):
    """Real speech: the agent's voice (ditto) and the user's (hallo_3), 16 kHz mono float32, 4 s each."""
    folder = tmp_path_factory.mktemp("voices")
    agent = read_audio(samples / "audio" / "ditto.flac")[0][: 4 * 16000]
    user = read_audio(samples / "audio" / "hallo_3.flac")[0][: 4 * 16000]
    write_wav(folder / "agent.wav", agent)
    write_wav(folder / "user.wav", user)
    return {"agent": agent, "user": user, "dir": folder}
