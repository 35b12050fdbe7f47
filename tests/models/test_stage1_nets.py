import numpy as np
import pytest
import torch

from infp.errors import InfpError
from infp.face import motion_input, region_mask
from infp.models.head_imitation import ARCHITECTURES, HeadImitationNet
from infp.modules.warp import identity_grid, warp

TINY = dict(image_size=64, motion_dim=8, feat_channels=16, encoder_widths=(8, 16), encoder_input=64,
            flow_width=8, decoder_res=1, decoder_widths=(8, 8))


def test_shapes_of_every_stage():
    net = HeadImitationNet(**TINY)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    src = net.prepare_source(x, x)
    assert src.feats.shape == (3, 16, 16, 16) and src.motion.shape == (3, 8)
    m = net.encode_motion(x)
    frame, flow, occ = net.render(src, m, return_flow=True)
    assert frame.shape == (3, 3, 64, 64) and flow.shape == (3, 2, 16, 16) and occ.shape == (3, 1, 16, 16)
    assert frame.min() >= -1 and frame.max() <= 1
    one = net.prepare_source(x[:1], x[:1])
    assert net.render(one, m).shape == (3, 3, 64, 64)  # one portrait, a batch of latents


def test_untrained_flow_is_identity_and_warp_is_exact():
    net = HeadImitationNet(**TINY)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    src = net.prepare_source(x, x)
    _, flow, _ = net.render(src, net.encode_motion(x), return_flow=True)
    assert flow.abs().max() == 0
    assert torch.allclose(warp(x, torch.zeros(2, 2, 64, 64)), x, atol=1e-5)
    shift = torch.zeros(1, 2, 64, 64)
    shift[:, 0] = 2 / 64  # one pixel to the right
    moved = warp(x[:1], shift)
    assert torch.allclose(moved[..., :-1], x[:1, :, :, 1:], atol=1e-5)
    assert identity_grid(4, 4).shape == (1, 2, 4, 4)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = HeadImitationNet(**TINY).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = net(x, x, x.flip(0))
    net.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.yaml", "model.safetensors"]
    back = HeadImitationNet.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(back(x, x, x.flip(0)), ref)
    with pytest.raises(InfpError, match="config.yaml: missing"):
        HeadImitationNet.from_pretrained(tmp_path)


def test_motion_latent_ignores_identity_regions(samples):
    """Repainting everything but eyes and lips (skin, nose, hair, background) leaves the latent unchanged."""
    from infp.runtime.portrait import load_portrait

    pt = load_portrait(samples / "portraits" / "lp_s5.jpg", 256)
    keep = region_mask(pt.landmarks, 256) > 0
    repainted = pt.crop.copy()
    rng = np.random.default_rng(0)
    repainted[~keep] = rng.integers(0, 255, size=(int((~keep).sum()), 3), dtype=np.uint8)
    a, b = motion_input(pt.crop, pt.landmarks), motion_input(repainted, pt.landmarks)
    assert np.array_equal(a, b)
    nose_tip = pt.landmarks[1].astype(int)
    assert a[nose_tip[1], nose_tip[0]].max() == 0  # the nose is hidden
    net = HeadImitationNet(image_size=256, motion_dim=16).eval()
    to_t = lambda im: torch.from_numpy(im).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        assert torch.equal(net.encode_motion(to_t(a)), net.encode_motion(to_t(b)))
        # ... whereas the eyes and lips do change it
        lips_moved = pt.crop.copy()
        lips_moved[keep] = 255 - lips_moved[keep]
        assert not torch.equal(net.encode_motion(to_t(motion_input(lips_moved, pt.landmarks))), net.encode_motion(to_t(a)))


def test_identity_score_prefers_the_source(samples):
    from infp.eval.face_metrics import identity_score
    from infp.runtime.portrait import load_portrait

    a = load_portrait(samples / "portraits" / "lp_s1.jpg", 256).crop
    b = load_portrait(samples / "portraits" / "hallo_1.jpg", 256).crop
    assert identity_score([a], [a], [b]) == pytest.approx(1.0)
    assert identity_score([b], [a], [b]) == pytest.approx(-1.0)
    assert identity_score([np.zeros_like(a)], [a], [b]) is None


def test_keypoints_of_real_landmarks_and_their_sparse_motion(samples):
    from infp.models.keypoints import KEYPOINTS, N_KEYPOINTS, heatmaps, normalise_keypoints, sparse_motion
    from infp.runtime.portrait import load_portrait

    pt = load_portrait(samples / "portraits" / "lp_s5.jpg", 256)
    kp = normalise_keypoints(pt.landmarks, 256)
    assert kp.shape == (N_KEYPOINTS, 2) and len(set(KEYPOINTS)) == N_KEYPOINTS
    assert np.abs(kp).max() < 1
    # pixel (x, y) -> normalised (x / S * 2 - 1): the mouth corner lands where grid_sample reads it
    assert np.allclose(kp[0], pt.landmarks[61] / 128 - 1)
    kp_t = torch.from_numpy(kp)[None]
    heat = heatmaps(kp_t, 64, 64)
    peak = heat[0, 0].flatten().argmax()
    px, py = (kp[0] + 1) * 32 - 0.5
    assert abs(int(peak % 64) - px) <= 1 and abs(int(peak // 64) - py) <= 1
    # no keypoint moves -> no motion; the lower lip moves down -> the flow there points back up to it
    flow, _ = sparse_motion(kp_t, kp_t, 64, 64)
    assert flow.abs().max() == 0
    moved = kp_t.clone()
    lower_lip = KEYPOINTS.index(17)
    moved[0, lower_lip, 1] += 0.1
    flow, _ = sparse_motion(kp_t, moved, 64, 64)
    x, y = ((moved[0, lower_lip] + 1) * 32 - 0.5).round().long().tolist()
    assert flow[0, 1, y, x] < -0.05 and abs(float(flow[0, 0, y, x])) < 0.02
    assert flow[0, :, 2, 2].abs().max() < 1e-6  # far from the face nothing moves
    # the mouth opening read from keypoints is the landmark one
    from infp.face.landmarks import mouth_opening
    from infp.models.keypoints import keypoint_mouth_opening

    assert float(keypoint_mouth_opening(kp_t)[0]) == pytest.approx(float(mouth_opening(pt.landmarks)), rel=1e-4)


def test_signed_lip_gap_tells_open_from_crossed_lips_at_any_head_tilt(samples):
    """``keypoint_lip_gap``: the inner-lip gap across the eye line, + for an open mouth, - for crossed lips
    (where the unsigned opening reads open too), the same for a tilted or upside-down face."""
    from infp.models.keypoints import KEYPOINTS, keypoint_lip_gap, keypoint_mouth_opening, normalise_keypoints
    from infp.runtime.portrait import load_portrait

    kp = torch.from_numpy(normalise_keypoints(load_portrait(samples / "portraits" / "lp_s1.jpg", 256).landmarks, 256))
    upper, lower = KEYPOINTS.index(13), KEYPOINTS.index(14)
    opened, crossed = kp.clone(), kp.clone()
    opened[lower, 1] = opened[upper, 1] + 0.1
    crossed[lower, 1] = crossed[upper, 1] - 0.1
    both = torch.stack([opened, crossed])
    gap, opening = keypoint_lip_gap(both), keypoint_mouth_opening(both)
    assert gap[0] > 0.1 and gap[1] < -0.1
    torch.testing.assert_close(gap.abs(), opening, rtol=0.05, atol=0)  # upright: |gap| is the opening
    for angle in (0.4, -1.0, 3.1):  # radians, about the face centre
        c, s = np.cos(angle), np.sin(angle)
        turned = both @ torch.tensor([[c, s], [-s, c]], dtype=both.dtype)
        torch.testing.assert_close(keypoint_lip_gap(turned), gap, rtol=1e-4, atol=1e-5)


def test_keypoint_net_round_trip_and_flow_follows_keypoints(tmp_path):
    torch.manual_seed(0)
    net = HeadImitationNet(**TINY, keypoints=True).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    src = net.prepare_source(x, x)
    assert src.keypoints.shape == (2, net.keypoints.n_keypoints, 2)
    m = net.encode_motion(x.flip(0))
    _, flow, _ = net.render(src, m, return_flow=True)
    from infp.models.keypoints import sparse_motion

    prior, _ = sparse_motion(src.keypoints, net.decode_keypoints(m), 16, 16)
    assert torch.allclose(flow, prior, atol=1e-6)  # untrained residual is zero: the flow is the keypoint motion
    with torch.no_grad():
        ref = net(x, x, x.flip(0))
    net.save_pretrained(tmp_path / "kp")
    with torch.no_grad():
        assert torch.equal(HeadImitationNet.from_pretrained(tmp_path / "kp")(x, x, x.flip(0)), ref)


def test_relative_keypoints_keep_the_portrait_shape():
    torch.manual_seed(1)
    net = HeadImitationNet(**TINY, keypoints=True).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        src = net.prepare_source(x[:1], x[:1])
        m = net.encode_motion(x)
        # the driver at its reference frame: the portrait's own keypoints, whatever the driver's face
        rel = net.relative_keypoints(src.expand(3), m, m)
        assert torch.allclose(rel, src.keypoints.expand(3, -1, -1))
        moved = net.relative_keypoints(src.expand(3), m, m[:1].expand(3, -1))
        assert torch.allclose(moved - src.keypoints, net.decode_keypoints(m) - net.decode_keypoints(m[:1]), atol=1e-6)
        _, flow_rel, _ = net.render(src, m, return_flow=True, kp_drv=rel)
        _, flow_abs, _ = net.render(src, m, return_flow=True)
        assert not torch.allclose(flow_rel, flow_abs)



V2 = ARCHITECTURES["v2"]
"""The second-generation renderer (conf/experiment/stage1_v2_cpu.yaml) at its full size."""


def test_head_pose_recovers_a_head_turn_and_moves_the_whole_head(samples):
    """Driving keypoints = the portrait's under a known affine map (a tilt, a shift and the horizontal
    squeeze of a turn): ``head_pose`` finds the map, and the pose prior carries hair and background
    with it where the plain prior leaves them still."""
    from infp.models.keypoints import head_pose, normalise_keypoints, pose_displacement, sparse_motion

    def apply_pose(m, pts):  # an affine map (B, 3, 2): [x y 1] @ M
        return pts @ m[:, :2] + m[:, 2:3]
    from infp.runtime.portrait import load_portrait

    kp = torch.from_numpy(normalise_keypoints(load_portrait(samples / "portraits" / "lp_s5.jpg", 256).landmarks, 256))[None]
    a = torch.tensor([[0.85 * np.cos(0.2), -np.sin(0.2)], [0.85 * np.sin(0.2), np.cos(0.2)]], dtype=torch.float32)
    drv_to_src = torch.cat([a, torch.tensor([[0.05, -0.03]])])[None]  # (1, 3, 2): [x y 1] @ M
    # driving = the inverse map applied to the portrait's keypoints
    inv = torch.linalg.inv(torch.cat([drv_to_src[0], torch.tensor([[0.0], [0.0], [1.0]])], dim=1))[:, :2][None]
    drv = apply_pose(inv, kp)
    assert torch.allclose(apply_pose(drv_to_src, drv), kp, atol=1e-5)
    pose = head_pose(kp, drv)
    assert torch.allclose(pose + torch.eye(3)[None, :, :2], drv_to_src, atol=2e-3)
    assert head_pose(kp, kp).abs().max() < 1e-5  # no motion
    assert torch.allclose(pose_displacement(pose, drv), kp - drv, atol=2e-3)
    plain, _ = sparse_motion(kp, drv, 64, 64)
    posed, _ = sparse_motion(kp, drv, 64, 64, pose=pose)
    corner = identity_grid(64, 64)[0, :, 2, 2]  # far from the face: the top-left corner
    expected = apply_pose(drv_to_src, corner[None, None])[0, 0] - corner
    assert plain[0, :, 2, 2].abs().max() < 1e-6
    assert torch.allclose(posed[0, :, 2, 2], expected, atol=3e-3)
    # on a keypoint both priors move it to where it was in the portrait
    lip = 5
    x, y = ((drv[0, lip] + 1) * 32 - 0.5).round().long().tolist()
    target = kp[0, lip] - drv[0, lip]
    assert (posed[0, :, y, x] - target).abs().max() < (plain[0, :, y, x] - target).abs().max() + 0.01


def test_second_generation_renderer_costs_under_2_gflop_and_round_trips(tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    v1 = HeadImitationNet.from_pretrained("weights/stage1").eval()
    v2 = HeadImitationNet(**V2).eval()
    x = torch.rand(1, 3, 256, 256) * 2 - 1

    def gflop(net):
        with torch.no_grad():
            src = net.prepare_source(x, x)
            m = net.encode_motion(x)
            counter = FlopCounterMode(display=False)
            with counter:
                frame, flow, occ = net.render(src, m, return_flow=True)
        return counter.get_total_flops() / 1e9, frame, flow, occ

    g1, *_ = gflop(v1)
    g2, frame, flow, occ = gflop(v2)
    assert g2 <= 2.0 < 4.0 < g1
    assert frame.shape == (1, 3, 256, 256) and flow.shape == (1, 2, 64, 64) and occ.shape == (1, 1, 64, 64)
    for p in v2.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    with torch.no_grad():
        ref = v2(x, x, x.flip(-1))
    v2.save_pretrained(tmp_path / "v2")
    back = HeadImitationNet.from_pretrained(tmp_path / "v2")
    assert back.config["pose"] is True and back.config["flow_stride"] == 2
    with torch.no_grad():
        assert torch.equal(back(x, x, x.flip(-1)), ref)
