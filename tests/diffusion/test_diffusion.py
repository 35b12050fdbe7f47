import torch

from infp.diffusion import CosineSchedule, cfg_denoiser, sample_ddim


def test_noising_is_invertible():
    sch = CosineSchedule()
    x0, noise = torch.randn(5, 4, 3), torch.randn(5, 4, 3)
    t = torch.rand(5)
    x_t, v = sch.add_noise(x0, t, noise)
    a, s = (u.view(-1, 1, 1) for u in sch.alpha_sigma(t))
    assert torch.allclose(a * x_t - s * v, x0, atol=1e-5)
    a1, s1 = sch.alpha_sigma(torch.tensor([0.0, 1.0]))
    assert a1[0] > 0.999 and s1[1] > 0.99 and a1[1] > 0  # clean at 0, (almost) pure noise at 1


def test_ddim_with_an_oracle_denoiser_recovers_the_target():
    sch = CosineSchedule()
    target = torch.randn(2, 4, 8)

    def oracle(x, t):
        a, s = (u.view(-1, 1, 1) for u in sch.alpha_sigma(t))
        eps = (x - a * target) / s
        return a * eps - s * target

    for steps in (1, 4, 10):
        out = sample_ddim(oracle, torch.randn(2, 4, 8), sch.timesteps(steps), sch)
        assert torch.allclose(out, target, atol=1e-4)
    seen = []
    sample_ddim(oracle, torch.randn(2, 4, 8), sch.timesteps(5), sch, callback=lambda d: seen.append(d["i"]))
    assert seen == [0, 1, 2, 3, 4]


def test_classifier_free_guidance_combines_cond_and_uncond():
    def model(x, t, drop_cond, bias):
        return torch.where(drop_cond[:, None], torch.zeros_like(x), bias.expand_as(x))

    x, t, bias = torch.zeros(3, 2), torch.zeros(3), torch.full((3, 1), 1.5)
    assert torch.allclose(cfg_denoiser(model, 1.0)(x, t, bias=bias), torch.full((3, 2), 1.5))
    assert torch.allclose(cfg_denoiser(model, 3.0)(x, t, bias=bias), torch.full((3, 2), 4.5))
    assert torch.allclose(cfg_denoiser(model, 0.0)(x, t, bias=bias), torch.zeros(3, 2))


def test_control_guidance_weighs_the_controls_apart_from_the_audio():
    import torch

    from infp.diffusion import cfg_control_denoiser, cfg_denoiser

    def model(x, t, guide, drop_cond):  # a denoiser whose output is its guide (the null guide: zeros)
        return torch.where(drop_cond[:, None, None], torch.zeros_like(guide), guide) + 0 * x

    x, t = torch.zeros(1, 4, 3), torch.ones(1)
    with_ctl, without = torch.full((1, 4, 3), 3.0), torch.full((1, 4, 3), 1.0)
    same = cfg_control_denoiser(model, 2.0, 2.0, without)(x, t, guide=with_ctl)
    assert torch.allclose(same, cfg_denoiser(model, 2.0)(x, t, guide=with_ctl))  # one guided term
    strong = cfg_control_denoiser(model, 2.0, 4.0, without)(x, t, guide=with_ctl)
    assert torch.allclose(strong, torch.full_like(x, 2.0 * 1 + 4.0 * (3 - 1)))  # audio x2, controls x4
    off = cfg_control_denoiser(model, 2.0, 0.0, without)(x, t, guide=with_ctl)
    assert torch.allclose(off, cfg_denoiser(model, 2.0)(x, t, guide=without))  # weight 0: as if no controls
