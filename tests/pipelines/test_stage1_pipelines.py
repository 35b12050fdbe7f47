import json

import numpy as np
import pytest

from infp.data.extract import extract_motion
from infp.errors import InfpError
from infp.io import probe, read_audio, read_frames, write_video
from infp.models.head_imitation import HeadImitationNet
from infp.pipelines.reenact import reenact
from infp.runtime.stage1 import Stage1Runner


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "s1"
    HeadImitationNet(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                     flow_width=8, decoder_res=1, decoder_widths=(8, 8)).save_pretrained(folder)
    return folder


def test_reenact_writes_one_frame_per_driving_frame_with_audio(tmp_path, samples, tiny_ckpt):
    frames = read_frames(samples / "video" / "lp_d11.mp4")[:30]
    audio = read_audio(samples / "video" / "lp_d11.mp4")[0][: 30 * 640]
    write_video(tmp_path / "drv.mp4", iter(frames), audio=audio)
    runner = Stage1Runner.from_pretrained(tiny_ckpt)
    out = reenact(runner, samples / "portraits" / "lp_s1.jpg", tmp_path / "drv.mp4", tmp_path / "out.mp4", progress=False)
    info = probe(out)
    assert info.has_audio and (info.width, info.height) == (64, 64)
    assert len(read_frames(out)) == 30
    pasted = reenact(runner, samples / "portraits" / "lp_s1.jpg", tmp_path / "drv.mp4", tmp_path / "pasted.mp4",
                     paste=True, progress=False)
    assert probe(pasted).width > 300  # the whole portrait


def test_reenact_without_a_face_in_the_portrait(tmp_path, samples, tiny_ckpt):
    from infp.io import write_image

    write_image(tmp_path / "wall.png", np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(InfpError, match="no face"):
        reenact(Stage1Runner.from_pretrained(tiny_ckpt), tmp_path / "wall.png", samples / "video" / "lp_s29.mp4",
                tmp_path / "o.mp4", progress=False)
    assert not (tmp_path / "o.mp4").exists()


def test_extract_motion_over_a_corpus_resumes(sample_corpus, tiny_ckpt, tmp_path):
    out = tmp_path / "motion"
    summary = extract_motion(sample_corpus, tiny_ckpt, out, progress=False)
    assert summary["written"] == summary["clips"] > 0 and not summary["failed"]
    for line in (sample_corpus / "index.jsonl").read_text().splitlines():
        r = json.loads(line)
        lat = np.load(out / f"{r['id']}.npy")
        assert lat.shape == (r["n_frames"], 8) and np.isfinite(lat).all()
    again = extract_motion(sample_corpus, tiny_ckpt, out, progress=False)
    assert again["written"] == 0 and again["already_done"] == summary["clips"]
    other = tmp_path / "other_ckpt"
    HeadImitationNet(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
                     flow_width=8, decoder_res=1, decoder_widths=(8, 8)).save_pretrained(other)
    with pytest.raises(InfpError, match="another checkpoint"):
        extract_motion(sample_corpus, other, out, progress=False)
