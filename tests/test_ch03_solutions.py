"""Tests for autograder/chapters/03_vae/solutions.py against independent oracles: torch.distributions,
Monte-Carlo estimates, numerical integration and scipy."""

import math
import sys
from pathlib import Path

import pytest
import scipy.stats
import torch
import torch.nn as nn
from torch.distributions import Bernoulli, Normal, kl_divergence
from autograder import chapters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_S = chapters.module("03_vae", "solutions")
VAE = _S.VAE
answer_iwae_bound = _S.answer_iwae_bound
answer_vae_facts = _S.answer_vae_facts
answer_variational_inference = _S.answer_variational_inference
answer_beta_zero = _S.answer_beta_zero
interpolate = _S.interpolate
iwae_log_likelihood = _S.iwae_log_likelihood
kl_to_standard_normal = _S.kl_to_standard_normal
negative_elbo = _S.negative_elbo
reparameterize = _S.reparameterize
sample_prior = _S.sample_prior
vae_step = _S.vae_step

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------
# reparameterize
# ---------------------------------------------------------------------------


def test_reparameterize_value_dtype_and_shape():
    mu = torch.randn(4, 3, generator=gen(0), dtype=F64)
    logvar = torch.randn(4, 3, generator=gen(1), dtype=F64)
    z = reparameterize(mu, logvar, gen(2))
    eps = torch.randn(4, 3, generator=gen(2), dtype=F64)
    assert z.dtype == F64 and z.shape == (4, 3)
    torch.testing.assert_close(z, mu + torch.sqrt(torch.exp(logvar)) * eps, rtol=0, atol=1e-12)
    # any leading shape
    z3 = reparameterize(mu.expand(5, 4, 3), logvar.expand(5, 4, 3), gen(3))
    assert z3.shape == (5, 4, 3)
    # reproducible with a seed, different without
    torch.testing.assert_close(reparameterize(mu, logvar, gen(2)), z, rtol=0, atol=0)
    assert not torch.equal(reparameterize(mu, logvar, gen(9)), z)


def test_reparameterize_distribution_matches_normal():
    n = 50000
    mu = torch.tensor([1.5, -0.5], dtype=F64).expand(n, 2)
    logvar = torch.tensor([math.log(0.09), math.log(2.25)], dtype=F64).expand(n, 2)
    z = reparameterize(mu, logvar, gen(4))
    for j, (m, s) in enumerate([(1.5, 0.3), (-0.5, 1.5)]):
        stat = scipy.stats.kstest(z[:, j].numpy(), "norm", args=(m, s))
        assert stat.pvalue > 1e-3, (j, stat)


def test_reparameterize_gradients_are_pathwise():
    mu = torch.randn(3, 4, generator=gen(5), dtype=F64, requires_grad=True)
    logvar = torch.randn(3, 4, generator=gen(6), dtype=F64, requires_grad=True)
    w = torch.randn(3, 4, generator=gen(7), dtype=F64)
    (w * reparameterize(mu, logvar, gen(8))).sum().backward()
    eps = torch.randn(3, 4, generator=gen(8), dtype=F64)
    torch.testing.assert_close(mu.grad, w)
    torch.testing.assert_close(logvar.grad, w * 0.5 * torch.exp(0.5 * logvar.detach()) * eps)
    # gradcheck on the map (mu, logvar) -> z with fixed noise
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize(m, lv, gen(8)),
                                    (mu.detach().requires_grad_(), logvar.detach().requires_grad_()))


def test_reparameterize_score_free_gradient_of_expectation():
    """d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = sigma^2, estimated through the samples."""
    mu = torch.tensor([0.7], dtype=F64, requires_grad=True)
    logvar = torch.tensor([math.log(0.5)], dtype=F64, requires_grad=True)
    z = reparameterize(mu.expand(200000, 1), logvar.expand(200000, 1), gen(9))
    (z**2).mean().backward()
    assert mu.grad.item() == pytest.approx(1.4, abs=0.01)
    assert logvar.grad.item() == pytest.approx(0.5, abs=0.01)


# ---------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------


def count(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("D,k,hidden", [(784, 2, (512, 256)), (20, 3, (16, 8)), (12, 4, ()), (30, 5, (7,))])
def test_vae_structure(D, k, hidden):
    model = VAE(D=D, k=k, hidden=hidden)
    assert model.k == k
    dims = [D, *hidden]
    assert count(model.encoder) == sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    assert count(model.mu_head) == count(model.logvar_head) == (dims[-1] + 1) * k
    rd = [k, *hidden[::-1], D]
    assert count(model.decoder) == sum(a * b + b for a, b in zip(rd[:-1], rd[1:]))
    assert [type(m) for m in model.encoder] == [nn.Linear, nn.ReLU] * len(hidden)
    assert [type(m) for m in model.decoder] == [nn.Linear] + [nn.ReLU, nn.Linear] * len(hidden)
    assert isinstance(model.mu_head, nn.Linear) and isinstance(model.logvar_head, nn.Linear)
    assert [n for n, _ in model.named_children()] == ["encoder", "mu_head", "logvar_head", "decoder"]


def test_vae_forward_consistency_and_gradients():
    torch.manual_seed(0)
    model = VAE(D=20, k=3, hidden=(16, 8))
    x = torch.rand(6, 20, generator=gen(1)).bernoulli(generator=gen(2))
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (6, 3)
    logits, mu2, logvar2 = model(x, generator=gen(3))
    torch.testing.assert_close(mu2, mu)
    torch.testing.assert_close(logvar2, logvar)
    torch.testing.assert_close(logits, model.decode(reparameterize(mu, logvar, gen(3))))
    assert logits.shape == (6, 20) and (logits < 0).any()  # logits, not probabilities
    negative_elbo(x, logits, mu2, logvar2).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_vae_learns_on_digits():
    """A few hundred steps on binarised MNIST lower the test -ELBO well below its start."""
    from workbook.data import load_mnist  # noqa: E402

    x, _ = load_mnist("train", limit=512)
    X = x.flatten(1).bernoulli(generator=gen(0))
    torch.manual_seed(0)
    model = VAE(784, 4, hidden=(128,))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = gen(1)
    with torch.no_grad():
        start = negative_elbo(X, *model(X, generator=gen(5))).item()
    for _ in range(6):
        for idx in torch.randperm(512, generator=g).split(64):
            logits, mu, logvar = model(X[idx], generator=g)
            loss = negative_elbo(X[idx], logits, mu, logvar)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        end = negative_elbo(X, *model(X, generator=gen(5))).item()
    assert end < start - 200  # 784 log 2 = 543 nats at the start, ~200 after training


# ---------------------------------------------------------------------------
# vae_step
# ---------------------------------------------------------------------------


def _distributions_step(model, x, beta, seed, lr):
    """One SGD step on -E_q[log Bernoulli(x | decode(z))] + beta KL[q || N(0, I)] written with
    torch.distributions (rsample from the same eps), on a copy: (loss, parameters after)."""
    import copy

    m = copy.deepcopy(model)
    mu, logvar = m.encode(x)
    q = Normal(mu, (0.5 * logvar).exp())
    eps = torch.randn(mu.shape, generator=gen(seed), dtype=mu.dtype)
    z = q.loc + q.scale * eps
    rec = -Bernoulli(logits=m.decode(z)).log_prob(x).sum(1)
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    loss = (rec + beta * kl).mean()
    grads = torch.autograd.grad(loss, list(m.parameters()))
    return loss.item(), [p.detach() - lr * g for p, g in zip(m.parameters(), grads)]


@pytest.mark.parametrize("beta", [0.0, 0.4, 2.5])
def test_vae_step_matches_distributions_and_keeps_global_rng(beta):
    torch.manual_seed(0)
    model = VAE(D=12, k=3, hidden=(7,)).double()
    x = torch.rand(5, 12, generator=gen(1), dtype=F64).bernoulli(generator=gen(2))
    for p in model.parameters():  # stale gradients: the step must clear them
        p.grad = torch.randn_like(p)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(2):
        want_loss, want = _distributions_step(model, x, beta, 10 + step, 0.05)
        rng = torch.random.get_rng_state()
        loss = vae_step(model, x, opt, beta=beta, generator=gen(10 + step))
        assert torch.equal(rng, torch.random.get_rng_state())
        assert isinstance(loss, float)
        assert loss == pytest.approx(want_loss, rel=1e-12, abs=1e-10)
        for p, w in zip(model.parameters(), want):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)


def test_vae_step_trains_with_fit():
    from functools import partial

    from workbook.train import fit

    torch.manual_seed(0)
    X = (torch.rand(256, 20, generator=gen(3)) < torch.linspace(0.05, 0.95, 20)).float()
    model = VAE(D=20, k=2, hidden=(16,))
    history = fit(model, X, partial(vae_step, beta=1.0, generator=gen(4)), epochs=15, batch_size=32, lr=1e-2,
                  generator=gen(5), device=torch.device("cpu"))
    assert history[-1] < history[0] - 2.0


# ---------------------------------------------------------------------------
# KL
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("B,k,seed", [(5, 3, 0), (1, 1, 1), (8, 16, 2)])
def test_kl_matches_torch_distributions(B, k, seed):
    g = gen(seed)
    mu = 2 * torch.randn(B, k, generator=g, dtype=F64)
    logvar = 1.5 * torch.randn(B, k, generator=g, dtype=F64)
    kl = kl_to_standard_normal(mu, logvar)
    assert kl.shape == (B,) and kl.dtype == F64
    oracle = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, oracle, rtol=1e-10, atol=1e-10)
    assert (kl >= 0).all()


def test_kl_monte_carlo_and_zero():
    mu = torch.tensor([[0.4, -1.0, 2.0]], dtype=F64)
    logvar = torch.tensor([[0.3, -0.8, 0.1]], dtype=F64)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((400000,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    assert kl_to_standard_normal(mu, logvar).item() == pytest.approx(mc.item(), abs=0.02)
    torch.testing.assert_close(kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


# ---------------------------------------------------------------------------
# negative ELBO
# ---------------------------------------------------------------------------


def _inputs(seed, B=4, k=3, shape=(1, 5, 5)):
    g = gen(seed)
    x = (torch.rand(B, *shape, generator=g) < 0.3).to(F64)
    logits = 2 * torch.randn(B, *shape, generator=g, dtype=F64)
    x_hat = torch.rand(B, *shape, generator=g, dtype=F64)
    mu = torch.randn(B, k, generator=g, dtype=F64)
    logvar = torch.randn(B, k, generator=g, dtype=F64)
    return x, logits, x_hat, mu, logvar


@pytest.mark.parametrize("beta", [1.0, 0.0, 0.3, 4.0])
def test_negative_elbo_bernoulli_matches_distributions(beta):
    x, logits, _, mu, logvar = _inputs(0)
    B = len(x)
    log_lik = Bernoulli(logits=logits).log_prob(x).reshape(B, -1).sum(1)
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    loss = negative_elbo(x, logits, mu, logvar, beta=beta)
    assert loss.shape == () and loss.dtype == F64
    torch.testing.assert_close(loss, (-log_lik + beta * kl).mean(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sigma", [1.0, 0.1, 0.5])
def test_negative_elbo_gaussian_is_nll_without_constant(sigma):
    x, _, x_hat, mu, logvar = _inputs(1)
    B = len(x)
    D = x[0].numel()
    nll = -Normal(x_hat, sigma).log_prob(x).reshape(B, -1).sum(1)
    const = 0.5 * D * math.log(2 * math.pi * sigma**2)
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    loss = negative_elbo(x, x_hat, mu, logvar, likelihood="gaussian", beta=0.7, sigma=sigma)
    torch.testing.assert_close(loss, (nll - const + 0.7 * kl).mean(), rtol=1e-10, atol=1e-10)


def test_negative_elbo_batch_mean_and_errors():
    x, logits, _, mu, logvar = _inputs(2)
    one = negative_elbo(x, logits, mu, logvar)
    twice = negative_elbo(torch.cat([x, x]), torch.cat([logits, logits]), torch.cat([mu, mu]),
                          torch.cat([logvar, logvar]))
    torch.testing.assert_close(one, twice)
    # the same with flattened inputs
    torch.testing.assert_close(negative_elbo(x.flatten(1), logits.flatten(1), mu, logvar), one)
    with pytest.raises(ValueError):
        negative_elbo(x, logits, mu, logvar, likelihood="poisson")


# ---------------------------------------------------------------------------
# sampling and interpolation
# ---------------------------------------------------------------------------


class IdentityDecoder(nn.Module):
    """k = D = 3; decode(z) = z (logits), encode(x) = (x, 0)."""

    k = 3

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return x.clone(), torch.zeros_like(x)

    def decode(self, z):
        return z + 0 * self.dummy


def test_sample_prior_draws_standard_normal_codes():
    model = IdentityDecoder()
    x = sample_prior(model, 20000, gen(0))
    assert x.shape == (20000, 3) and ((x > 0) & (x < 1)).all()
    z = torch.logit(x.double())
    for j in range(3):
        assert scipy.stats.kstest(z[:, j].numpy(), "norm").pvalue > 1e-3
    torch.testing.assert_close(sample_prior(model, 5, gen(1)), sample_prior(model, 5, gen(1)))
    torch.testing.assert_close(sample_prior(model, 5, gen(1)), torch.sigmoid(torch.randn(5, 3, generator=gen(1))))


def test_sample_prior_on_a_vae():
    torch.manual_seed(0)
    model = VAE(D=10, k=2, hidden=(6,))
    x = sample_prior(model, 7, gen(2))
    assert x.shape == (7, 10) and not x.requires_grad
    torch.testing.assert_close(x, torch.sigmoid(model.decode(torch.randn(7, 2, generator=gen(2)))))


def test_interpolate_is_linear_in_latent_space():
    model = IdentityDecoder()
    x_a = torch.tensor([0.5, -1.0, 2.0])
    x_b = torch.tensor([-1.5, 1.0, 0.0])
    out = interpolate(model, x_a, x_b, 6)
    assert out.shape == (6, 3)
    z = torch.logit(out.double())
    torch.testing.assert_close(z[0], x_a.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z[-1], x_b.double(), rtol=1e-5, atol=1e-5)
    second_diff = z[2:] - 2 * z[1:-1] + z[:-2]
    assert second_diff.abs().max() < 1e-4
    torch.testing.assert_close(z[1], (0.8 * x_a + 0.2 * x_b).double(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# IWAE
# ---------------------------------------------------------------------------


class OneDim(nn.Module):
    """1-D latent, 3 pixels, logits = w z + b; q(z|x) = N(a.x + c, s2)."""

    def __init__(self, c=-0.3, s2=2.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -1.5, 1.0], dtype=F64))
        self.b = nn.Parameter(torch.tensor([0.5, 0.0, -1.0], dtype=F64))
        self.a, self.c, self.s2 = torch.tensor([0.8, -0.6, 0.5], dtype=F64), c, s2

    def encode(self, x):
        mu = (x @ self.a + self.c)[:, None]
        return mu, torch.full_like(mu, math.log(self.s2))

    def decode(self, z):
        return z * self.w + self.b


ALL_X = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)], dtype=F64)


def log_px_by_quadrature(model, x):
    import numpy as np
    from scipy.integrate import quad

    w, b = model.w.detach().numpy(), model.b.detach().numpy()
    out = []
    for row in x.numpy():
        def integrand(z):
            p = 1 / (1 + np.exp(-(w * z + b)))
            return np.prod(np.where(row == 1, p, 1 - p)) * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        out.append(math.log(quad(integrand, -15, 15, epsabs=1e-13)[0]))
    return torch.tensor(out, dtype=F64)


def test_iwae_converges_to_log_px():
    model = OneDim()
    truth = log_px_by_quadrature(model, ALL_X)
    est = iwae_log_likelihood(model, ALL_X, 50000, gen(0))
    assert est.shape == (8,) and est.dtype == F64
    torch.testing.assert_close(est, truth, rtol=0, atol=0.02)


def test_iwae_k1_is_one_sample_elbo_and_bound_tightens():
    model = OneDim()
    x = ALL_X.repeat(500, 1)  # (4000, 3)
    # k = 1: log p(x|z) + log p(z) - log q(z|x) for one z, computed with torch.distributions
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(1, len(x), 1, generator=gen(1), dtype=F64)[0]
    with torch.no_grad():
        elbo1 = (Bernoulli(logits=model.decode(z)).log_prob(x).sum(1) + Normal(0.0, 1.0).log_prob(z).sum(1)
                 - Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1))
    torch.testing.assert_close(iwae_log_likelihood(model, x, 1, gen(1)), elbo1, rtol=1e-10, atol=1e-10)
    # E[L_1] <= E[L_5] <= E[L_50] <= log p(x)
    truth = log_px_by_quadrature(model, ALL_X).repeat(500)
    means = [iwae_log_likelihood(model, x, k, gen(10 + k)).mean().item() for k in (1, 5, 50)]
    assert means[0] < means[1] < means[2] < truth.mean().item() + 0.005


def test_iwae_single_estimate_is_not_bounded_by_zero():
    """log p(x) <= 0 for binary x, but one estimate is random: with a q(z|x) far wider than
    the prior, p(z) / q(z|x) is large near the origin and an estimate can exceed log p(x), and
    0, while its mean stays below log p(x) (the docstring promises no bound on the estimate)."""
    model = OneDim(s2=100.0)
    x = ALL_X.repeat(500, 1)  # (4000, 3)
    truth = log_px_by_quadrature(model, ALL_X)
    assert (truth < 0).all()
    est = iwae_log_likelihood(model, x, 1, gen(7))
    assert (est > 0).any()
    assert est.mean().item() < truth.repeat(500).mean().item()


def test_iwae_exact_when_q_is_the_posterior():
    """With a constant decoder the posterior is the prior; q = prior makes every weight p(x)."""

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(torch.tensor([0.3, -1.2, 2.0, 0.0, -0.4], dtype=F64))

        def encode(self, x):
            return torch.zeros(len(x), 4, dtype=F64), torch.zeros(len(x), 4, dtype=F64)

        def decode(self, z):
            return self.logits.expand(len(z), 5) + 0 * z[:, :1]

    model = Constant()
    x = (torch.rand(6, 5, generator=gen(3)) < 0.5).to(F64)
    exact = Bernoulli(logits=model.logits.detach()).log_prob(x).sum(1)
    for k in (1, 3, 100):
        torch.testing.assert_close(iwae_log_likelihood(model, x, k, gen(k)), exact, rtol=1e-10, atol=1e-10)


def test_iwae_on_a_vae_is_finite_and_reproducible():
    torch.manual_seed(0)
    model = VAE(D=16, k=2, hidden=(8,))
    x = (torch.rand(5, 16, generator=gen(4)) < 0.5).float()
    a = iwae_log_likelihood(model, x, 7, gen(5))
    assert a.shape == (5,) and torch.isfinite(a).all() and (a < 0).all()
    torch.testing.assert_close(iwae_log_likelihood(model, x, 7, gen(5)), a)


# ---------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------


def test_quiz_answers():
    assert answer_vae_facts == {"A", "B", "C"}
    assert answer_variational_inference == "B"
    assert answer_iwae_bound == "B"
    assert answer_beta_zero == "B"
