"""Tests for autograder/chapters/07_flow_matching/solutions.py against diffusers, the reference library: the
path against FlowMatchEulerDiscreteScheduler.scale_noise, the samplers against the
FlowMatchEuler and FlowMatchHeun schedulers' sampling loops, the bridge against
DDIMScheduler.step; against torch.distributions and scipy for the logit-normal draws;
plus properties (convergence orders, exact flows, guidance's limits, straightness of
straight flows)."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler
from scipy import stats

from autograder import chapters
from workbook.ch07 import sliced_wasserstein, toy_data, uniform_timesteps

S = chapters.module("07_flow_matching", "solutions")


def field(x, t):
    """A nonlinear velocity field, elementwise."""
    tb = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return torch.tanh(x) * (1 + tb) - 0.3 * tb * tb + 0.2 * x


def lib_sample(lib, x):
    for i, ts in enumerate(lib.timesteps):
        x = lib.step(field(x, torch.full((len(x),), float(lib.sigmas[i]))), ts, x).prev_sample
    return x


def test_path_matches_scale_noise():
    lib = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    lib.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    idx = torch.tensor([0, 3, 7, 11, 15, 19])
    got = S.flow_path(x0, eps, lib.sigmas[idx].double())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, lib.scale_noise(x0, lib.timesteps[idx], eps), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(S.velocity_target(x0, eps), eps - x0)


def test_path_derivative_is_the_velocity_target():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = torch.rand(5, generator=g, dtype=torch.float64) * 0.9
    h = 1e-6
    deriv = (S.flow_path(x0, eps, t + h) - S.flow_path(x0, eps, t - h)) / (2 * h)
    torch.testing.assert_close(deriv, S.velocity_target(x0, eps), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 4, 10])
def test_euler_matches_flow_match_euler_scheduler(shift, n):
    lib = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    lib.set_timesteps(n)
    x1 = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(S.euler_sample(field, x1, lib.sigmas), lib_sample(lib, x1.clone()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 2, 6])
def test_heun_matches_flow_match_heun_scheduler(shift, n):
    lib = FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    lib.set_timesteps(n)
    assert len(lib.timesteps) == 2 * n - 1  # diffusers' Heun: 2n - 1 evaluations
    times = torch.cat([lib.sigmas[:1], lib.sigmas[1:-1:2], lib.sigmas[-1:]])
    assert len(times) == n + 1
    calls = []
    counted = lambda x, t: calls.append(1) or field(x, t)  # noqa: E731
    x1 = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    got = S.heun_sample(counted, x1, times)
    assert len(calls) == 2 * n - 1
    torch.testing.assert_close(got, lib_sample(lib, x1.clone()), atol=1e-5, rtol=1e-5)


def test_orders_of_convergence():
    """dx/dt = -x from x(1) = x1 ends at x(0) = e x1: Euler's error halves with the step,
    Heun's (all steps second order but the last, first-order one) falls faster."""
    x1 = torch.ones(1, 1, dtype=torch.float64)
    exact = math.e
    errs = {name: [abs(float(fn(lambda x, t: -x, x1, uniform_timesteps(n))) - exact) for n in (16, 32, 64)]
            for name, fn in (("euler", S.euler_sample), ("heun", S.heun_sample))}
    ratio = [a / b for a, b in zip(errs["euler"], errs["euler"][1:])]
    assert all(1.8 < r < 2.2 for r in ratio), errs
    assert all(h < e / 10 for h, e in zip(errs["heun"], errs["euler"])), errs


def test_straight_flow_is_exact_in_one_step():
    """The exact velocity of a single pair (x0, eps) is constant: one Euler step lands on x0."""
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    v = S.velocity_target(x0, eps)
    torch.testing.assert_close(S.euler_sample(lambda x, t: v, eps, uniform_timesteps(1)), x0)
    s, end = S.straightness(lambda x, t: v, eps, uniform_timesteps(7))
    assert float(s) < 1e-25
    torch.testing.assert_close(end, x0)


def test_straightness_of_a_curved_flow():
    """v = -x on [1, .5, 0]: S = ||x1||^2 / 16 in closed form."""
    x1 = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    s, end = S.straightness(lambda x, t: -x, x1, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    assert float(s) == pytest.approx(float((x1 ** 2).sum(1).mean()) / 16, rel=1e-12)
    torch.testing.assert_close(end, 2.25 * x1)


def test_loss_draws_replay_and_the_exact_velocity_has_zero_loss():
    """With one data point c, the exact velocity at x_t is (x_t - c) / t: zero loss."""
    c = torch.tensor([[0.5, -1.0]], dtype=torch.float64).expand(256, 2).clone()
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    seen = []

    def exact(x_t, t):
        seen.append((x_t, t))
        return (x_t - c) / t[:, None]

    loss = S.flow_matching_loss(exact, c, generator=g)
    assert float(loss) < 1e-20
    replay = torch.Generator().set_state(state)
    t = torch.rand(256, generator=replay, dtype=torch.float64)
    eps = torch.randn(256, 2, generator=replay, dtype=torch.float64)
    torch.testing.assert_close(seen[0][1], t)
    torch.testing.assert_close(seen[0][0], (1 - t[:, None]) * c + t[:, None] * eps)


def test_logit_normal_draws_follow_the_distribution():
    ln = torch.distributions.TransformedDistribution(torch.distributions.Normal(0.0, 1.0),
                                                     [torch.distributions.SigmoidTransform()])
    seen = []
    S.flow_matching_loss(lambda x, t: seen.append(t) or x, torch.zeros(20000, 1, dtype=torch.float64),
                         generator=torch.Generator().manual_seed(6), logit_normal=True)
    t = seen[0].float()
    cdf = lambda v: ln.cdf(torch.as_tensor(v, dtype=torch.float32)).numpy()  # noqa: E731
    assert stats.kstest(t.numpy(), cdf).pvalue > 1e-3
    assert stats.kstest(t.numpy(), "uniform").pvalue < 1e-6


def test_bridge_matches_ddim_and_round_trips():
    lib = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                        set_alpha_to_one=True, timestep_spacing="trailing")
    lib.set_timesteps(10)
    g = torch.Generator().manual_seed(7)
    for t_now in (899, 499, 199):
        z = torch.randn(16, 3, generator=g, dtype=torch.float64)
        e = torch.randn(16, 3, generator=g, dtype=torch.float64)
        a, a_prev = lib.alphas_cumprod[t_now].double(), lib.alphas_cumprod[t_now - 100].double()
        x, tau = S.ddpm_to_flow(z, a.repeat(16))
        x_next, tau_next = S.ddpm_to_flow(lib.step(e, t_now, z).prev_sample, a_prev.repeat(16))
        v = S.eps_to_velocity(e, x, tau)
        torch.testing.assert_close(S.euler_sample(lambda x_, t_: v, x, torch.stack([tau[0], tau_next[0]])), x_next,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(S.velocity_to_eps(v, x, tau), e)
    # a DDPM point of known (x0, eps) lands on the path, and the true noise gives the true velocity
    x0, eps = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    a = torch.rand(5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    x, tau = S.ddpm_to_flow(a.sqrt()[:, None] * x0 + (1 - a).sqrt()[:, None] * eps, a)
    torch.testing.assert_close(x, S.flow_path(x0, eps, tau))
    torch.testing.assert_close(S.eps_to_velocity(eps, x, tau), eps - x0)


def test_guidance_limits_and_label_dropout():
    net = lambda x, t, y: x * (y.to(x.dtype) + 1)[:, None] + t[:, None]  # noqa: E731
    x, t, y = torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 2, 3])
    null = torch.full_like(y, 9)
    torch.testing.assert_close(S.guided_velocity(net, x, t, y, 0.0, 9), net(x, t, null))
    torch.testing.assert_close(S.guided_velocity(net, x, t, y, 1.0, 9), net(x, t, y))
    labels = torch.arange(50000) % 7
    out = S.drop_labels(labels, 0.25, 7, torch.Generator().manual_seed(8))
    assert abs((out == 7).double().mean().item() - 0.25) < 0.01
    assert torch.equal(out[out != 7], labels[out != 7]) and torch.equal(labels, torch.arange(50000) % 7)


def test_sliced_wasserstein_separates_distributions():
    a = toy_data(2000, torch.Generator().manual_seed(9))[0]
    b = toy_data(2000, torch.Generator().manual_seed(10))[0]
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(11))
    assert sliced_wasserstein(a, b) < 0.05 < 0.2 < sliced_wasserstein(a, noise)
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(a, b[:10])
