"""Tests for autograder/chapters/05_diffusion/solutions.py against diffusers, the reference library: the
schedules and alphas_cumprod, add_noise, DDPMScheduler.step and DDIMScheduler.step along
its own timestep sequences, get_timestep_embedding and ResnetBlock2D; plus properties
(the forward process' marginal statistics, DDIM's determinism, guidance's limits)."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D

from autograder import chapters
from workbook.ch05 import DIFFUSERS_RESBLOCK_NAMES, ddim_timesteps

S = chapters.module("05_diffusion", "solutions")

KINDS = {"linear": S.linear_betas, "squaredcos_cap_v2": S.cosine_betas}
# diffusers stores its schedules in float32; ours are float64.
SCHEDULE_TOL = dict(atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [10, 1000])
def test_schedules_match_diffusers(kind, T):
    lib = DDPMScheduler(num_train_timesteps=T, beta_schedule=kind)
    betas = KINDS[kind](T)
    alphas, alpha_bars = S.noise_schedule(betas)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    torch.testing.assert_close(betas, lib.betas.double(), **SCHEDULE_TOL)
    torch.testing.assert_close(alphas, lib.alphas.double(), **SCHEDULE_TOL)
    torch.testing.assert_close(alpha_bars, lib.alphas_cumprod.double(), atol=1e-6, rtol=1e-4)


def test_cosine_alpha_bar_is_the_stated_function():
    T, s = 1000, 0.008
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    ab = S.noise_schedule(S.cosine_betas(T))[1]
    for t in (0, 100, 500, 900):  # before the clip at 0.999 matters
        assert ab[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_q_sample_matches_add_noise(kind):
    lib = DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 1, 6, 6, generator=g), torch.randn(8, 1, 6, 6, generator=g)
    t = torch.tensor([0, 1, 2, 100, 500, 900, 998, 999])
    got = S.q_sample(x0, t, eps, lib.alphas_cumprod.double())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, lib.add_noise(x0, eps, t), atol=1e-6, rtol=1e-5)


def test_q_sample_marginals():
    """x_t has mean sqrt(ab) x0 and variance 1 - ab, per example."""
    ab = S.noise_schedule(S.linear_betas())[1]
    x0 = torch.full((20000, 1), 0.7, dtype=torch.float64)
    t = torch.full((20000,), 300)
    x_t = S.q_sample(x0, t, torch.randn(20000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), ab)
    assert x_t.mean().item() == pytest.approx(0.7 * ab[300].sqrt().item(), abs=0.02)
    assert x_t.var().item() == pytest.approx(1 - ab[300].item(), abs=0.02)


@pytest.mark.parametrize("kind", KINDS)
def test_ddpm_step_matches_diffusers(kind):
    lib = DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind, clip_sample=False)
    ab = lib.alphas_cumprod.double()
    g = torch.Generator().manual_seed(2)
    for t in (999, 700, 300, 1, 0):
        x, e = torch.randn(4, 1, 5, 5, generator=g), torch.randn(4, 1, 5, 5, generator=g)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        want = lib.step(e, t, x, generator=torch.Generator().manual_seed(t))
        x_prev, x0_hat = S.ddpm_step(e, t, x, ab, z)
        torch.testing.assert_close(x0_hat, want.pred_original_sample, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(x_prev, want.prev_sample, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("n", [10, 50])
def test_ddim_step_matches_diffusers_along_its_timesteps(kind, eta, n):
    lib = DDIMScheduler(num_train_timesteps=1000, beta_schedule=kind, clip_sample=False, set_alpha_to_one=True,
                        timestep_spacing="trailing")
    lib.set_timesteps(n)
    steps = lib.timesteps.tolist()
    assert steps == ddim_timesteps(1000, n)  # our sub-sequence is diffusers' "trailing" spacing
    ab = lib.alphas_cumprod.double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 1, 4, 4, generator=g)
    ours = x.clone()
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        e = torch.randn(3, 1, 4, 4, generator=g)  # a fixed fake model output per step
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        want = lib.step(e, t, x, eta=eta, generator=torch.Generator().manual_seed(i))
        got, x0_hat = S.ddim_step(e, t, t_prev, x, ab, eta, z if eta > 0 else None)
        torch.testing.assert_close(x0_hat, want.pred_original_sample, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got, want.prev_sample, atol=1e-4, rtol=1e-4)
        x = want.prev_sample
        ours = S.ddim_step(e, t, t_prev, ours, ab, eta, z if eta > 0 else None)[0]
    torch.testing.assert_close(ours, x, atol=1e-3, rtol=1e-3)  # the whole chain


def test_ddim_eta1_one_step_is_ddpm():
    ab = S.noise_schedule(S.cosine_betas())[1]
    g = torch.Generator().manual_seed(4)
    x, e, z = (torch.randn(2, 3, dtype=torch.float64, generator=g) for _ in range(3))
    for t in (500, 1):
        torch.testing.assert_close(S.ddim_step(e, t, t - 1, x, ab, 1.0, z)[0], S.ddpm_step(e, t, x, ab, z)[0])


def test_ddim_timesteps_edge_cases():
    assert ddim_timesteps(1000, 1) == [999]
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert ddim_timesteps(1000, 3) == [999, 666, 332]
    with pytest.raises(ValueError, match="num_steps"):
        ddim_timesteps(10, 11)


@pytest.mark.parametrize("dim", [4, 32, 128])
def test_timestep_embedding_matches_diffusers(dim):
    t = torch.tensor([0, 1, 7, 500, 999])
    torch.testing.assert_close(S.timestep_embedding(t, dim),
                               get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0))


@pytest.mark.parametrize("c_in,c_out", [(16, 32), (24, 24)])
def test_resblock_matches_resnetblock2d(c_in, c_out):
    torch.manual_seed(0)
    ours = S.ResBlock(c_in, c_out, 40)
    theirs = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=40, groups=8, eps=1e-5)
    names = DIFFUSERS_RESBLOCK_NAMES
    mine = dict(ours.named_parameters())
    assert len(mine) == len(dict(theirs.named_parameters()))
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            module, kind = name.split(".")
            mine[f"{names[module]}.{kind}"].copy_(p)
    x, emb = torch.randn(2, c_in, 7, 5), torch.randn(2, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, emb), theirs(x, emb), atol=1e-5, rtol=1e-5)


def test_unet_shapes_and_conditioning():
    torch.manual_seed(0)
    net = S.UNet(1, 16, (1, 2, 2), num_classes=10)
    x = torch.randn(3, 1, 28, 28)
    t = torch.tensor([0, 500, 999])
    y = torch.tensor([1, 2, 3])
    with torch.no_grad():
        out = net(x, t, y)
        assert out.shape == x.shape
        assert not torch.allclose(net(x, t, torch.tensor([4, 2, 3]))[0], out[0])
        torch.testing.assert_close(net(x, t), net(x, t, torch.full_like(y, 10)))


def test_loss_draws_every_t_and_trains():
    """A few steps of training lower the loss of a small U-Net on fixed data."""
    torch.manual_seed(0)
    ab = S.noise_schedule(S.linear_betas(100, 1e-3, 0.2))[1]
    net = S.UNet(1, 8, (1, 2), num_classes=None, groups=4)
    x0 = torch.zeros(32, 1, 8, 8)
    x0[:, :, 2:6, 2:6] = 1.0
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = S.diffusion_loss(net, x0, ab, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:20]) / 20


def test_guidance_limits_and_dropout():
    class Net(torch.nn.Module):
        def forward(self, x, t, y):
            return x * 0 + y.view(-1, 1).float()
    x, t, y = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.tensor([1, 2, 3])
    torch.testing.assert_close(S.guided_eps(Net(), x, t, y, 0.0, 10), torch.full((3, 2), 10.0))
    torch.testing.assert_close(S.guided_eps(Net(), x, t, y, 1.0, 10), y.view(-1, 1).float().expand(3, 2))
    # s = 1 + w: Ho & Salimans' (1 + w) eps_c - w eps_u
    w = 2.5
    torch.testing.assert_close(S.guided_eps(Net(), x, t, y, 1 + w, 10), (1 + w) * y.view(-1, 1).float().expand(3, 2) - w * 10)
    labels = torch.arange(10000) % 10
    dropped = S.drop_labels(labels, 0.1, 10, torch.Generator().manual_seed(0))
    assert abs((dropped == 10).float().mean().item() - 0.1) < 0.01
    assert torch.equal(labels, torch.arange(10000) % 10)


def _embedding64(t, dim, max_period):
    half = dim // 2
    w = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    a = t.double()[:, None] * w
    return torch.cat([a.cos(), a.sin()], dim=-1)


@pytest.mark.parametrize("max_period", [10000, 250.0])
def test_timestep_embedding_within_the_float32_tolerance(max_period):
    """The float32 reference is within the course's float32 tolerance of the float64 formula
    at t up to 999 (scale ~ max t), for int and float64 timesteps alike, and stays float32."""
    from workbook.checks import tolerance
    for t in (torch.arange(0, 1000, 37), torch.linspace(0, 999.5, 13, dtype=torch.float64)):
        emb = S.timestep_embedding(t, 64, max_period)
        assert emb.dtype == torch.float32
        torch.testing.assert_close(emb.double(), _embedding64(t, 64, max_period),
                                   **tolerance(torch.float32, scale=float(t.max())))


def test_loss_draws_only_from_its_generator_and_takes_y_by_keyword():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x_t, t, y=None):
            self.seen.append((t, y))
            return 0.5 * x_t

    ab = S.noise_schedule(S.linear_betas(20))[1]
    x0, y = torch.randn(16, 3, 2, 4), torch.arange(16) % 10
    before = torch.random.get_rng_state()
    net = Net()
    a = S.diffusion_loss(net, x0, ab, y=y, generator=torch.Generator().manual_seed(3))
    b = S.diffusion_loss(net, x0, ab, y=y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(before, torch.random.get_rng_state())
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(net.seen[0][1], y) and torch.equal(net.seen[0][0], net.seen[1][0])


def test_drop_labels_is_the_stated_draw_and_unet_takes_non_square_inputs():
    y = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(1))
    out = S.drop_labels(y, 0.3, 17, torch.Generator().manual_seed(2))
    u = torch.rand(500, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, torch.where(u < 0.3, 17, y))
    net = S.UNet(2, 8, (1, 2, 2), num_classes=3, groups=4)
    assert net(torch.randn(2, 2, 12, 8), torch.tensor([1, 900])).shape == (2, 2, 12, 8)


def _eps_fn(x, t):
    """A fixed nonlinear stand-in noise predictor."""
    return torch.tanh(0.7 * x + torch.cos(t.to(x.dtype) / 7).view(-1, *([1] * (x.dim() - 1))))


def _betas_of(alpha_bars):
    return (1 - alpha_bars / torch.cat([torch.ones(1, dtype=alpha_bars.dtype), alpha_bars[:-1]])).tolist()


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2"])
def test_sample_ddpm_is_diffusers_ddpm_loop(kind):
    T, shape = 30, (3, 2, 4, 4)
    ab = DDPMScheduler(num_train_timesteps=T, beta_schedule=kind).alphas_cumprod.double()
    x, kept = S.sample_ddpm(_eps_fn, shape, ab, torch.Generator().manual_seed(1), keep=(T - 1, 5, 0))
    lib = DDPMScheduler(num_train_timesteps=T, trained_betas=_betas_of(ab), clip_sample=False)
    g = torch.Generator().manual_seed(1)
    want = torch.randn(shape, generator=g)
    start = want
    for t in lib.timesteps:  # diffusers draws no noise at t = 0
        want = lib.step(_eps_fn(want, torch.full((shape[0],), int(t))), t, want, generator=g).prev_sample
    assert x.dtype == torch.float32 and x.shape == shape
    torch.testing.assert_close(x, want, atol=1e-4, rtol=1e-4)
    assert sorted(kept) == [0, 5, T - 1]
    torch.testing.assert_close(kept[T - 1][0], start)
    torch.testing.assert_close(kept[0][1], x, atol=1e-5, rtol=1e-5)  # at t = 0 the mean is x0_hat


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("T,n", [(40, 4), (30, 1), (50, 10)])
def test_sample_ddim_is_diffusers_ddim_loop(eta, T, n):
    shape = (2, 1, 3, 5)
    ab = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    before = torch.random.get_rng_state()
    g_mine = torch.Generator().manual_seed(2)
    x = S.sample_ddim(_eps_fn, shape, ab, n, g_mine, eta=eta)
    assert torch.equal(before, torch.random.get_rng_state())
    lib = DDIMScheduler(num_train_timesteps=T, trained_betas=_betas_of(ab), clip_sample=False, set_alpha_to_one=True,
                        timestep_spacing="trailing")
    lib.set_timesteps(n)
    assert lib.timesteps.tolist() == ddim_timesteps(T, n)
    g = torch.Generator().manual_seed(2)
    want = torch.randn(shape, generator=g)
    for t in lib.timesteps:
        want = lib.step(_eps_fn(want, torch.full((shape[0],), int(t))), t, want, eta=eta, generator=g).prev_sample
    torch.testing.assert_close(x, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(g_mine.get_state(), g.get_state())  # the same draws, the last step's included


def test_sampler_stand_ins_are_the_steps():
    """The checks swap these diffusers-based steps in for the learner's: they must be the steps."""
    from workbook.ch05.checks import stand_in_ddim_step, stand_in_ddpm_step
    ab = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    g = torch.Generator().manual_seed(3)
    x, e, z = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    for t in (99, 50, 1, 0):
        for a, b in zip(stand_in_ddpm_step(e, t, x, ab, z), S.ddpm_step(e, t, x, ab, z)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for t, t_prev, eta in ((99, 60, 0.0), (60, 7, 0.5), (7, -1, 1.0), (30, -1, 0.0)):
        for a, b in zip(stand_in_ddim_step(e, t, t_prev, x, ab, eta, z), S.ddim_step(e, t, t_prev, x, ab, eta, z)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
