"""Fixtures of the live-demo tests: small random-weight checkpoints (fast) and real sample voices."""

from __future__ import annotations

import aiohttp
import pytest

from infp.io import read_audio, write_wav


WS_RECEIVE_TIMEOUT = 60.0
"""Seconds a test waits for a WebSocket message before it fails (a reply that never comes fails, not hangs)."""


@pytest.fixture(autouse=True)
def _bounded_websocket_waits(monkeypatch):
    """Every WebSocket these tests open waits at most ``WS_RECEIVE_TIMEOUT`` for a message unless a receive says
    otherwise: a missing reply becomes a test failure instead of a suite that never ends."""
    connect = aiohttp.ClientSession.ws_connect

    def ws_connect(self, url, **kwargs):
        kwargs.setdefault("timeout", aiohttp.ClientWSTimeout(ws_receive=WS_RECEIVE_TIMEOUT, ws_close=10.0))
        return connect(self, url, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "ws_connect", ws_connect)


@pytest.fixture(scope="session")
def voices(tmp_path_factory, samples):
    """Real speech: the agent's voice (ditto) and the user's (hallo_3), 16 kHz mono float32, 4 s each."""
    folder = tmp_path_factory.mktemp("voices")
    agent = read_audio(samples / "audio" / "ditto.flac")[0][: 4 * 16000]
    user = read_audio(samples / "audio" / "hallo_3.flac")[0][: 4 * 16000]
    write_wav(folder / "agent.wav", agent)
    write_wav(folder / "user.wav", user)
    return {"agent": agent, "user": user, "dir": folder}



@pytest.fixture(scope="session")
def controls_weights(tmp_path_factory):
    """Small checkpoints (as ``tiny_weights``) with a stage 2 that takes controls. The layers that are zero at
    initialisation (the control embedding, the motion output, the warp field) get fixed random weights, so
    that the motion follows the controls and the picture the motion."""
    import torch

    from infp.models.audio_to_motion import AudioToMotionNet
    from infp.models.head_imitation import HeadImitationNet

    folder = tmp_path_factory.mktemp("controls_weights")
    torch.manual_seed(0)
    stage1 = HeadImitationNet(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                              flow_width=8, decoder_res=1, decoder_widths=(8, 8))
    stage2 = AudioToMotionNet(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8,
                              dit_dim=32, depth=1, controls=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer, scale in ((stage2.control[-1], 10.0), (stage2.dit.out, 0.5), (stage1.flow.out, 0.1)):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)
    stage1.save_pretrained(folder / "stage1")
    stage2.save_pretrained(folder / "stage2")
    return folder
