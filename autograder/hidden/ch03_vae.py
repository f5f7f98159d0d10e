"""Chapter 03 hidden checks: the learner's code against the reference and independent
oracles (torch.distributions) on fresh random inputs, with known mistakes named.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back. Where the learner's code needs an object to act on (a random
latent model for `sample_prior`, `interpolate` and `iwae_log_likelihood`), `twin` builds
it from torch alone on both sides; gradients and weight loading happen in harness
snippets (`run`) in the kernel."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from autograder.hidden import grade_choice
from autograder.mutants import hidden_seed, known_mistakes
from autograder.remote import run, twin
from solutions import ch03_vae as ref
from workbook.checks import Checks

CH = "03_vae"
F64 = torch.float64


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(hidden_seed(f"{CH}/{name}"))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def _in_kernel(name: str, code: str):
    """A harness snippet run in the learner's kernel, as a callable for `c.call`: an
    exception of the learner's code in it reads as `calling <name> raised ...`."""
    def call(**vars):
        return run(code, **vars)
    call.__name__ = name
    return call


# The gradients of (w * z).sum() with respect to mu and logvar, z = reparameterize(mu, logvar, generator),
# computed in the kernel (gradients do not cross the boundary).
REPARAM_GRADS = """
mu = mu.detach().clone().requires_grad_(True)
logvar = logvar.detach().clone().requires_grad_(True)
z = reparameterize(mu, logvar, generator)
(w * z).sum().backward()
result = (mu.grad, logvar.grad)
"""


def reparameterize(fn) -> None:
    c = Checks("reparameterize (hidden)")
    g = _gen("reparameterize")
    B, k = 7, 3
    mu = 2 * torch.randn(B, k, generator=g, dtype=F64)
    logvar = torch.randn(B, k, generator=g, dtype=F64)
    w = torch.randn(B, k, generator=g, dtype=F64)
    seed = _seed(g)
    inputs = f"random mu, logvar ({B}, {k}) float64, a seeded generator"
    mu_l, lv_l = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    z = c.call(fn, mu_l, lv_l, _seeded(seed), inputs=inputs)
    c.tensor("z", z, shape=(B, k), dtype=F64, inputs=inputs)
    c.close("z", z, ref.reparameterize(mu, logvar, _seeded(seed)), atol=1e-10, inputs=inputs,
            mistakes=known_mistakes(CH, "reparameterize", lambda f: f(mu, logvar, _seeded(seed))),
            hint="eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype); z = mu + exp(0.5 * logvar) * eps")
    c.true(z.requires_grad, "no gradient reaches mu and logvar", inputs=inputs,
           hint="compute z = mu + sigma * eps with torch operations on mu and logvar")
    grads = c.call(_in_kernel("backward", REPARAM_GRADS), reparameterize=fn, mu=mu, logvar=logvar, w=w,
                   generator=_seeded(seed), inputs=inputs)
    mu_r, lv_r = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    (w * ref.reparameterize(mu_r, lv_r, _seeded(seed))).sum().backward()
    for name, mine, want in [("mu", grads[0], mu_r), ("logvar", grads[1], lv_r)]:
        c.true(isinstance(mine, torch.Tensor) and bool(mine.abs().sum() > 0), f"no gradient reaches {name}",
               inputs=inputs, hint="no torch.normal, .sample(), .detach() or torch.no_grad() on the way to z")
        c.close(f"d loss / d {name}", mine, want.grad, atol=1e-8, inputs=inputs)
    c.done()


def _outputs(model: nn.Module, x: torch.Tensor, z0: torch.Tensor, reparameterize, seed: int) -> dict:
    with torch.no_grad():
        mu, logvar = model.encode(x)
        out = model(x, generator=_seeded(seed))
        return {"mu": mu, "logvar": logvar, "decode": model.decode(z0), "forward": out[0],
                "sampled": model.decode(reparameterize(mu, logvar, _seeded(seed)))}


# The reference's weights into the learner's model, by name (strict), in the kernel; on a
# mismatch, the learner's parameter names and shapes.
LOAD_STATE = """
try:
    model.load_state_dict(state)
    result = None
except Exception as e:
    mine = model.state_dict() if isinstance(model, nn.Module) else {}
    result = (type(e).__name__, {n: tuple(t.shape) for n, t in mine.items()})
"""
# `_outputs` of the learner's model, in the kernel (generators travel as their states).
OUTPUTS = """
with torch.no_grad():
    mu, logvar = model.encode(x)
    out = model(x, generator=g_forward)
    result = {"mu": mu, "logvar": logvar, "decode": model.decode(z0), "forward": out[0],
              "sampled": model.decode(reparameterize(mu, logvar, g_sample))}
"""


def vae(VAE, reparameterize) -> None:
    c = Checks("VAE (hidden)")
    g = _gen("vae")
    D, k, hidden = 30, 3, (17, 9)
    inputs = f"VAE(D={D}, k={k}, hidden={hidden}) with the reference's weights, x (6, {D})"
    x = torch.rand(6, D, generator=g)
    z0 = torch.randn(4, k, generator=g)
    seed = _seed(g)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reference = ref.VAE(D=D, k=k, hidden=hidden)
    state = reference.state_dict()
    model = c.call(VAE, D=D, k=k, hidden=hidden, inputs=inputs)
    mismatch = c.call(_in_kernel("load_state_dict", LOAD_STATE), model=model,
                      state={n: t.detach() for n, t in state.items()}, inputs=inputs)
    if mismatch is not None:
        c.fail("the parameter names or shapes differ from the stated architecture", inputs=inputs,
               expected=str({n: tuple(t.shape) for n, t in state.items()}), got=str(mismatch[1]),
               hint=f"attributes encoder, mu_head, logvar_head, decoder as stated ({mismatch[0]})")
    mine = c.call(_in_kernel("_outputs", OUTPUTS), model=model, x=x, z0=z0, reparameterize=reparameterize,
                  g_forward=_seeded(seed), g_sample=_seeded(seed), inputs=inputs)
    want = _outputs(reference, x, z0, ref.reparameterize, seed)

    def run_mutant(cls):
        m = cls(D=D, k=k, hidden=hidden)
        m.load_state_dict(state)
        return _outputs(m, x, z0, ref.reparameterize, seed)

    diag = known_mistakes(CH, "VAE", run_mutant)
    for key, what in [("mu", "encode(x)[0] = mu"), ("logvar", "encode(x)[1] = logvar"),
                      ("decode", "decode(z) (logits)")]:
        c.tensor(what, mine[key], shape=tuple(want[key].shape), inputs=inputs)
        c.close(what, mine[key], want[key], atol=1e-5, inputs=inputs,
                mistakes={d: m[key] for d, m in diag.items()},
                hint="same layers but different activations or order: a ReLU after every encoder Linear, "
                     "no activation on the heads or at the end of the decoder")
    c.close("forward's logits", mine["forward"], mine["sampled"], atol=1e-5,
            inputs=inputs + "; expected decode(reparameterize(mu, logvar, generator))",
            mistakes={d: m["forward"] for d, m in diag.items()},
            hint="forward samples z = reparameterize(mu, logvar, generator) and decodes it")
    c.done()


def kl(fn) -> None:
    c = Checks("kl_to_standard_normal (hidden)")
    g = _gen("kl")
    for B, k in [(6, 4), (3, 1)]:
        mu = 1.5 * torch.randn(B, k, generator=g, dtype=F64)
        logvar = torch.randn(B, k, generator=g, dtype=F64)
        inputs = f"random mu, logvar ({B}, {k}) float64"
        got = c.call(fn, mu.clone(), logvar.clone(), inputs=inputs)
        c.tensor("kl", got, shape=(B,), dtype=F64, inputs=inputs)
        oracle = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
        c.close("kl", got, oracle, atol=1e-8, inputs=inputs + " (oracle: torch.distributions.kl_divergence)",
                mistakes=known_mistakes(CH, "kl_to_standard_normal", lambda f: f(mu, logvar)))
    c.done()


def negative_elbo(fn) -> None:
    c = Checks("negative_elbo (hidden)")
    g = _gen("elbo")
    B, k = 5, 3
    x = (torch.rand(B, 1, 4, 4, generator=g) < 0.4).to(F64)
    out = 2 * torch.randn(B, 1, 4, 4, generator=g, dtype=F64)
    x_hat = torch.rand(B, 1, 4, 4, generator=g, dtype=F64)
    mu = torch.randn(B, k, generator=g, dtype=F64)
    logvar = torch.randn(B, k, generator=g, dtype=F64)
    beta = float(0.2 + 2 * torch.rand(1, generator=g))
    sigma = float(0.1 + torch.rand(1, generator=g))
    cases = [("bernoulli, beta=1", (x, out, mu, logvar), {}),
             (f"bernoulli, beta={beta:.3f}", (x, out, mu, logvar), {"beta": beta}),
             (f"gaussian, sigma={sigma:.3f}, beta={beta:.3f}", (x, x_hat, mu, logvar),
              {"likelihood": "gaussian", "sigma": sigma, "beta": beta})]
    for label, args, kwargs in cases:
        inputs = f"random x ({B}, 1, 4, 4), decoder output, mu, logvar ({B}, {k}); {label}"
        got = c.call(fn, *[a.clone() for a in args], inputs=inputs, **kwargs)
        c.tensor("loss", got, shape=(), inputs=inputs)
        c.close("loss", got, ref.negative_elbo(*args, **kwargs), atol=1e-8, inputs=inputs,
                mistakes=known_mistakes(CH, "negative_elbo", lambda f: f(*args, **kwargs)))
    c.done()


# encode(x) = (x A, x C - 1); decode(z) = z W^T + b, with the given (random) weights: built
# from torch alone in the judge and in the kernel (`twin`).
RANDOM_LINEAR_MODEL = """
class RandomLinearModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.k = A.shape[1]
        self.A, self.C = A.clone(), C.clone()
        self.W = nn.Parameter(W.clone())
        self.b = nn.Parameter(b.clone())

    def encode(self, x):
        return x @ self.A, x @ self.C - 1

    def decode(self, z):
        return z @ self.W.T + self.b


result = RandomLinearModel()
"""


def sampling(sample_prior, interpolate) -> None:
    c = Checks("sample_prior / interpolate (hidden)")
    g = _gen("sampling")
    D, k = 6, 3
    A = torch.randn(D, k, generator=g) / 2
    C = torch.randn(D, k, generator=g) / 2
    W = torch.randn(D, k, generator=g)
    b = torch.randn(D, generator=g)
    model, there = twin(RANDOM_LINEAR_MODEL, A=A, C=C, W=W, b=b)
    seed = _seed(g)
    inputs = "a random linear model (k=3, D=6), n=9, a seeded generator"
    got = c.call(sample_prior, there, 9, _seeded(seed), inputs=inputs)
    c.tensor("samples", got, shape=(9, 6), inputs=inputs)
    c.close("samples", got, ref.sample_prior(model, 9, _seeded(seed)), atol=1e-6, inputs=inputs,
            mistakes=known_mistakes(CH, "sample_prior", lambda f: f(model, 9, _seeded(seed))))
    x_a, x_b = torch.randn(6, generator=g), torch.randn(6, generator=g)
    inputs = "the same model, random x_a, x_b (6,), steps=7"
    got = c.call(interpolate, there, x_a, x_b, 7, inputs=inputs)
    c.tensor("interpolation", got, shape=(7, 6), inputs=inputs)
    c.close("interpolation", got, ref.interpolate(model, x_a, x_b, 7), atol=1e-6, inputs=inputs,
            mistakes=known_mistakes(CH, "interpolate", lambda f: f(model, x_a, x_b, 7)))
    c.done()


# A random VAE(D, k, hidden=(h,)) in float64 with encode and decode, built from torch alone in
# the judge and in the kernel (`twin`), its weights seeded without touching the global RNG.
RANDOM_VAE = """
class RandomVAE(nn.Module):
    def __init__(self, D, k, h):
        super().__init__()
        self.k = k
        self.encoder = nn.Sequential(nn.Linear(D, h), nn.ReLU())
        self.mu_head = nn.Linear(h, k)
        self.logvar_head = nn.Linear(h, k)
        self.decoder = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, D))

    def encode(self, x):
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        return self.decoder(z)


with torch.random.fork_rng():
    torch.manual_seed(seed)
    result = RandomVAE(D, k, h).double()
"""


def iwae(fn) -> None:
    c = Checks("iwae_log_likelihood (hidden)")
    g = _gen("iwae")
    seed = _seed(g)
    model, there = twin(RANDOM_VAE, seed=seed, D=12, k=2, h=8)
    x = (torch.rand(5, 12, generator=g) < 0.5).to(F64)
    for k in (1, 9):
        inputs = f"a random VAE(D=12, k=2, hidden=(8,)) in float64, binary x (5, 12), k={k}, a seeded generator"
        got = c.call(fn, there, x.clone(), k, _seeded(seed + k), inputs=inputs)
        c.tensor("log p(x)", got, shape=(5,), dtype=F64, inputs=inputs)
        c.close("log p(x)", got, ref.iwae_log_likelihood(model, x, k, _seeded(seed + k)), atol=1e-8, inputs=inputs,
                mistakes=known_mistakes(CH, "iwae_log_likelihood", lambda f: f(model, x, k, _seeded(seed + k))),
                hint="eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype); "
                     "log w = log p(x|z) + log p(z) - log q(z|x); logsumexp over the k samples minus log k")
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name))
