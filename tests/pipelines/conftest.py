"""Fixtures of the pipeline tests."""

import shutil

import pytest
import torch

from infp.models.audio_to_motion import AudioToMotionNet
from infp.models.controls import CONTROL_NAMES

TINY = dict(motion_dim=8, audio_dim=16, audio_hidden=16, guide_dim=32, bank_size=8, style_dim=8, dit_dim=32, depth=1)
RANGE = {"smile": (-0.03, 0.05), "brow": (-0.05, 0.05), "eyes": (-0.03, 0.03), "head_motion": (0.005, 0.08),
         "yaw": (-0.1, 0.1), "pitch": (-0.08, 0.08)}
"""Corpus 5th / 95th percentiles of the raw levels, of the size measured on the sample corpus."""


@pytest.fixture(scope="session")
def control_weights(tmp_path_factory, tiny_weights):
    """stage1/ of the tiny weights and a stage-2 network with controls whose control embedding is not zero."""
    folder = tmp_path_factory.mktemp("control_weights")
    shutil.copytree(tiny_weights / "stage1", folder / "stage1")
    torch.manual_seed(0)
    net = AudioToMotionNet(**TINY, controls=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        net.control[-1].weight.normal_(0.0, 0.5)
        net.control_lo.copy_(torch.tensor([RANGE[n][0] for n in CONTROL_NAMES]))
        net.control_hi.copy_(torch.tensor([RANGE[n][1] for n in CONTROL_NAMES]))
    net.save_pretrained(folder / "stage2")
    return folder
