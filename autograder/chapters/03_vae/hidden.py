"""Chapter 03 hidden checks: the learner's code against the reference and independent
oracles (torch.distributions, float64 formulas) on fresh random inputs, with known
mistakes named.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back. Where the learner's code needs an object to act on (a random
latent model for `sample_prior`, `interpolate` and `iwae_log_likelihood`), `twin` builds
it from torch alone on both sides; gradients and weight loading happen in harness
snippets (`run`) in the kernel.

What every check varies, because the contracts allow it: float32 and float64 inputs (the
result keeps the input's dtype; float32 results are compared with a float64 computation
within `workbook.checks.tolerance`), shapes other than (B, k) where the docstring says
(..., k), a batch of one, non-default arguments, and magnitudes where formulations that
are right on paper overflow in float32 (log of a sigmoid, log of a mean of exponentials).
Random draws are replayed by value from a seeded generator, and the global generator must
stay untouched when a generator is passed in."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from autograder.hidden import (call_keeping_global_rng, draw_int, family, draw_seed, draw_size, generators, grade_choice,
                               in_kernel, seeded)
from autograder.mutants import known_mistakes
from autograder.remote import twin
from . import solutions as ref
from workbook import ch03
from workbook.checks import Checks, tolerance

CH = "03_vae"
_gen = generators(CH)
F32, F64 = torch.float32, torch.float64
DIAG = ch03.DIAGNOSES





def _pair(c: Checks, out, what: str, inputs: str) -> tuple:
    """A returned pair (a, b), or a failure saying what came back."""
    c.true(isinstance(out, (tuple, list)) and len(out) == 2, f"{what} must return a pair", inputs=inputs,
           expected="a tuple of 2 tensors",
           got=type(out).__name__ + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    return tuple(out)


def _f32_close(c: Checks, what: str, got, want64: torch.Tensor, dtype: torch.dtype, ops: float, inputs: str,
               mistakes=None, hint=None) -> None:
    """`got` (computed in `dtype`) against a float64 value, within the course's tolerance."""
    scale = float(want64.abs().max()) if want64.numel() else 1.0
    c.close(what, got, want64, **tolerance(dtype, scale=scale, ops=ops), inputs=inputs, mistakes=mistakes,
            hint=hint)


# ----------------------------------------------------------------------------- reparameterize

# The gradients of (w * z).sum() with respect to mu and logvar, z = reparameterize(mu, logvar, generator),
# computed in the kernel (gradients do not cross the boundary).
REPARAM_GRADS = '03_vae.reparam_grads'


def _z64(mu: torch.Tensor, logvar: torch.Tensor, seed: int) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps in float64, eps drawn as the docstring says (in mu's dtype)."""
    eps = torch.randn(mu.shape, generator=seeded(seed), dtype=mu.dtype)
    return mu.double() + torch.exp(0.5 * logvar.double()) * eps.double()


def reparameterize(fn) -> None:
    c = Checks("reparameterize (hidden)")
    g = _gen("reparameterize")
    B, k = 7, 3
    mu = 2 * torch.randn(B, k, generator=g, dtype=F64)
    logvar = 20 * torch.rand(B, k, generator=g, dtype=F64) - 12  # in [-12, 8], as trained encoders give
    logvar[0, :2] = torch.tensor([-11.5, 7.5], dtype=F64)
    w = torch.randn(B, k, generator=g, dtype=F64)
    seed = draw_seed(g)
    inputs = f"random mu, logvar ({B}, {k}) float64 (logvar in [-12, 8]), a seeded generator"
    mistakes = known_mistakes(CH, "reparameterize", lambda f: f(mu, logvar, seeded(seed)))
    z = call_keeping_global_rng(c, fn, mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True),
                                seeded(seed), inputs=inputs)
    c.tensor("z", z, shape=(B, k), dtype=F64, inputs=inputs)
    c.close("z", z, _z64(mu, logvar, seed), atol=1e-10, rtol=1e-12, inputs=inputs, mistakes=mistakes,
            hint=DIAG["reparam_draw"])
    c.true(z.requires_grad, "no gradient reaches mu and logvar", inputs=inputs, hint=DIAG["reparam_no_grad"])
    grads = c.call(in_kernel("backward", REPARAM_GRADS), reparameterize=fn, mu=mu, logvar=logvar, w=w,
                   generator=seeded(seed), inputs=inputs)
    grads = _pair(c, grads, "the gradient computation", inputs)
    mu_r, lv_r = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    (w * ref.reparameterize(mu_r, lv_r, seeded(seed))).sum().backward()
    for name, mine, want in [("mu", grads[0], mu_r), ("logvar", grads[1], lv_r)]:
        c.true(isinstance(mine, torch.Tensor) and bool(mine.abs().sum() > 0), f"no gradient reaches {name}",
               inputs=inputs, hint=DIAG["reparam_no_grad"])
        c.close(f"d loss / d {name}", mine, want.grad, atol=1e-8, inputs=inputs)
    # float32, a leading shape (S, B, k): the dtype is kept, the noise drawn in float32
    S, B, k = 2, 4, 5
    mu = (3 * torch.randn(S, B, k, generator=g)).float()
    logvar = torch.randn(S, B, k, generator=g).float()
    seed = draw_seed(g)
    inputs = f"random mu, logvar ({S}, {B}, {k}) float32, a seeded generator"
    z = c.call(fn, mu.clone(), logvar.clone(), seeded(seed), inputs=inputs)
    c.tensor("z", z, shape=(S, B, k), dtype=F32, inputs=inputs)
    _f32_close(c, "z", z, _z64(mu, logvar, seed), F32, ops=4, inputs=inputs,
               mistakes=known_mistakes(CH, "reparameterize", lambda f: f(mu, logvar, seeded(seed))),
               hint=DIAG["reparam_draw"])
    z = c.call(fn, mu.clone(), logvar.clone(), inputs=inputs + ", no generator (the global one)")
    c.tensor("z without a generator", z, shape=(S, B, k), dtype=F32, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- VAE

def _outputs(model: nn.Module, x: torch.Tensor, z0: torch.Tensor, reparameterize, seed: int) -> dict:
    with torch.no_grad():
        mu, logvar = model.encode(x)
        out = tuple(model(x, generator=seeded(seed)))
        return {"mu": mu, "logvar": logvar, "decode": model.decode(z0), "forward": out,
                "sampled": model.decode(reparameterize(mu, logvar, seeded(seed)))}


# The reference's weights into the learner's model, by name (strict), in the kernel; on a
# mismatch, the learner's parameter names and shapes.
LOAD_STATE = '03_vae.load_state'
# `_outputs` of the learner's model, in the kernel (generators travel as their states), with
# a stand-in (torch alone) for the learner's reparameterize: a mistake there costs the points
# of its own exercise only.
OUTPUTS = '03_vae.outputs'


def vae(VAE, reparameterize) -> None:
    """`reparameterize` (the learner's) is replaced by a stand-in while their VAE runs."""
    c = Checks("VAE (hidden)")
    g = _gen("vae")
    for D, k, hidden, B in [(30, 3, (17, 9), 6), (11, 2, (), 1)]:
        inputs = f"VAE(D={D}, k={k}, hidden={hidden}) with the reference's weights, x ({B}, {D})"
        x = torch.rand(B, D, generator=g)
        z0 = torch.randn(4, k, generator=g)
        seed = draw_seed(g)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            reference = ref.VAE(D=D, k=k, hidden=hidden)
        state = reference.state_dict()
        model = c.call(VAE, D=D, k=k, hidden=hidden, inputs=inputs)
        mismatch = c.call(in_kernel("load_state_dict", LOAD_STATE), model=model,
                          state={n: t.detach() for n, t in state.items()}, inputs=inputs)
        if mismatch is not None:
            c.fail("the parameter names or shapes differ from the stated architecture", inputs=inputs,
                   expected=str({n: tuple(t.shape) for n, t in state.items()}),
                   got=str(mismatch[1]) if isinstance(mismatch, (tuple, list)) and len(mismatch) == 2 else None,
                   hint=DIAG["vae_names"])
        mine = c.call(in_kernel("_outputs", OUTPUTS), model=model, x=x, z0=z0, g_forward=seeded(seed), g_sample=seeded(seed), inputs=inputs)
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
                    mistakes={d: m[key] for d, m in diag.items()}, hint=DIAG["vae_layers"])
        out = mine["forward"]
        c.true(len(out) == 3, "forward must return a tuple (logits, mu, logvar)", inputs=inputs,
               got=f"a tuple of length {len(out)}")
        c.close("forward's logits", out[0], mine["sampled"], atol=1e-5,
                inputs=inputs + "; expected decode(reparameterize(mu, logvar, generator))",
                mistakes={d: m["forward"][0] for d, m in diag.items()}, hint=DIAG["vae_forward"])
        for i, name in [(1, "mu"), (2, "logvar")]:
            c.close(f"forward's {name}", out[i], want[name], atol=1e-5, inputs=inputs,
                    mistakes={d: m["forward"][i] for d, m in diag.items() if len(m["forward"]) == 3},
                    hint=DIAG["vae_forward_order"])
    c.done()


# ----------------------------------------------------------------------------- KL

def _kl64(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """torch.distributions' KL in float64, summed over the latent dimensions."""
    mu, logvar = mu.double(), logvar.double()
    return kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)


def kl(fn) -> None:
    c = Checks("kl_to_standard_normal (hidden)")
    g = _gen("kl")
    # k = 4 and B = 6: summing, averaging and the factor 1/2 give different values; B = 1
    for B, k, dtype in [(6, 4, F64), (3, 1, F64), (5, 3, F32), (1, 4, F32)]:
        mu = 1.5 * torch.randn(B, k, generator=g, dtype=F64)
        logvar = 2 * torch.randn(B, k, generator=g, dtype=F64)
        mu, logvar = mu.to(dtype), logvar.to(dtype)
        inputs = f"random mu, logvar ({B}, {k}) {str(dtype).replace('torch.', '')}"
        got = c.call(fn, mu.clone(), logvar.clone(), inputs=inputs)
        c.tensor("kl", got, shape=(B,), dtype=dtype, inputs=inputs)
        mistakes = known_mistakes(CH, "kl_to_standard_normal", lambda f: f(mu, logvar))
        if dtype == F64:
            c.close("kl", got, _kl64(mu, logvar), atol=1e-8, inputs=inputs + " (oracle: torch.distributions)",
                    mistakes=mistakes, hint=DIAG["kl_formula"])
        else:
            _f32_close(c, "kl", got, _kl64(mu, logvar), dtype, ops=2 * k, inputs=inputs, mistakes=mistakes,
                       hint=DIAG["kl_formula"])
    c.done()


# ----------------------------------------------------------------------------- negative ELBO

# `fn(*args, **kwargs)` in the kernel: the name of the exception it raised, or None.
RAISED = '03_vae.raised'


def _elbo64(args, kwargs) -> torch.Tensor:
    """The reference in float64 (the oracle for float32 inputs)."""
    return ref.negative_elbo(*[a.double() for a in args], **kwargs)


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
    # float32, 3 channels, logits as large as a confident decoder gives (|logit| of 100 and more):
    # log(sigmoid(l)) and log(1 + exp(l)) overflow there
    B32, k32 = 4, 2
    x32 = (torch.rand(B32, 3, 2, 5, generator=g) < 0.5).float()
    big = 40 * torch.randn(B32, 3, 2, 5, generator=g)
    big[0, 0, 0, 0], x32[0, 0, 0, 0] = 50.0, 0.0
    big[1, 0, 0, 1], x32[1, 0, 0, 1] = -120.0, 1.0
    big[2, 0, 0, 2], x32[2, 0, 0, 2] = 95.0, 1.0
    mu32, logvar32 = torch.randn(B32, k32, generator=g), torch.randn(B32, k32, generator=g)
    x_hat32 = torch.rand(B32, 3, 2, 5, generator=g)
    cases = [("bernoulli, beta=1", (x, out, mu, logvar), {}),
             (f"bernoulli, beta={beta:.3f}", (x, out, mu, logvar), {"beta": beta}),
             (f"gaussian, sigma={sigma:.3f}, beta={beta:.3f}", (x, x_hat, mu, logvar),
              {"likelihood": "gaussian", "sigma": sigma, "beta": beta}),
             ("gaussian, default sigma and beta", (x, x_hat, mu, logvar), {"likelihood": "gaussian"})]
    for label, args, kwargs in cases:
        inputs = f"random x ({B}, 1, 4, 4), decoder output, mu, logvar ({B}, {k}) float64; {label}"
        got = c.call(fn, *[a.clone() for a in args], inputs=inputs, **kwargs)
        c.tensor("loss", got, shape=(), dtype=F64, inputs=inputs)
        c.close("loss", got, ref.negative_elbo(*args, **kwargs), atol=1e-8, inputs=inputs,
                mistakes=known_mistakes(CH, "negative_elbo", lambda f: f(*args, **kwargs)))
    cases = [("bernoulli, logits up to +-120", (x32, big, mu32, logvar32), {}),
             (f"gaussian, sigma={sigma:.3f}", (x32, x_hat32, mu32, logvar32),
              {"likelihood": "gaussian", "sigma": sigma})]
    for label, args, kwargs in cases:
        inputs = f"random x ({B32}, 3, 2, 5), decoder output, mu, logvar ({B32}, {k32}) float32; {label}"
        got = c.call(fn, *[a.clone() for a in args], inputs=inputs, **kwargs)
        c.tensor("loss", got, shape=(), dtype=F32, finite=False, inputs=inputs)  # inf: a diagnosed overflow
        _f32_close(c, "loss", got, _elbo64(args, kwargs), F32, ops=8, inputs=inputs,
                   mistakes=known_mistakes(CH, "negative_elbo", lambda f: f(*args, **kwargs)),
                   hint=DIAG["elbo_stable"] if not bool(torch.isfinite(got)) or not kwargs else None)
    inputs = "likelihood='laplace'"
    raised = c.call(in_kernel(getattr(fn, "__name__", "negative_elbo"), RAISED), fn=fn,
                    args=[x, out, mu, logvar], kwargs={"likelihood": "laplace"}, inputs=inputs)
    c.true(raised == "ValueError", "an unknown likelihood must raise ValueError", inputs=inputs,
           got="no exception" if raised is None else str(raised), hint=DIAG["elbo_value_error"])
    c.done()


# ----------------------------------------------------------------------------- training step

# A small VAE (encode, decode, forward(x, generator) drawing eps as reparameterize does) in
# `dtype`, seeded without touching the global RNG, its .grad holding stale gradients that a
# step must clear, with its SGD(lr, momentum, weight_decay) optimizer that keeps the gradients
# each step() applies: built from torch alone in the judge and in the kernel (`twin`).
VAE_STEP_MODEL = '03_vae.vae_step_model'
# The learner's vae_step called in the kernel with stand-ins (torch alone) for their
# negative_elbo and reparameterize, so a mistake there costs its own exercise only:
# (what it returned, whether the global RNG was left alone, the parameters after the step,
# the gradients of every optimizer.step() it made).
VAE_STEP_CALL = '03_vae.vae_step_call'


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _oracle_steps(model: nn.Module, x: torch.Tensor, beta: float, seeds: list, eps_dtype, **sgd) -> list:
    """Correct steps in float64 on a float64 copy of `model` with torch's SGD(**sgd), its stale
    gradients ignored; eps drawn in the learner's dtype, as the contract says. Per step: (loss,
    the gradients applied, flat; the parameters after it, flat)."""
    m = copy.deepcopy(model).double()
    opt = torch.optim.SGD(m.parameters(), **sgd)
    out = []
    for seed in seeds:
        mu, logvar = m.encode(x.double())
        eps = torch.randn(mu.shape, generator=seeded(seed), dtype=eps_dtype).double()
        logits = m.decode(mu + torch.exp(0.5 * logvar) * eps)
        loss = ref.negative_elbo(x.double(), logits, mu, logvar, beta=beta)
        grads = torch.autograd.grad(loss, list(m.parameters()))
        for p, g in zip(m.parameters(), grads):
            p.grad = g
        opt.step()
        out.append((loss.item(), _flat(grads), _flat(m.parameters())))
    return out


def _beta(g: torch.Generator) -> float:
    """A KL weight clearly away from 1 (so that ignoring it shows): in [0.2, 0.7] or [1.6, 3]."""
    u = float(torch.rand(1, generator=g))
    return 0.2 + 0.5 * u if draw_int(g, 0, 2) == 0 else 1.6 + 1.4 * u


FAMILIES = {
    "vae_step": ("float32", "float64 with gradients in the tens", "float32 with decoder logits near +-30"),
}


def vae_step(fn) -> None:
    c = Checks("vae_step (hidden)")
    g = _gen("vae_step")
    steps = 2
    # momentum and weight decay: an update written by hand (p -= lr * grad) is not the optimizer's
    sgd = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}
    # the float64 case's mu head is shifted (by 20-40): a gradient norm in the tens, which
    # clipping or rescaling the gradients would change
    # the last float32 case's decoder logits lie near +-(25 to 35): the contract's loss is stable
    # there (binary_cross_entropy_with_logits); one computed through sigmoid(logits) is not
    for dtype, D, k, B, shift, logit in [
            (F32, draw_size(g, 8, 14), 3, draw_size(g, 2, 5), 0.0, 0.0),
            (F64, draw_size(g, 5, 9), 2, 1, 20.0 + 20.0 * float(torch.rand(1, generator=g)), 0.0),
            (F32, draw_size(g, 6, 12), 2, draw_size(g, 2, 4), 0.0, 25.0 + 10.0 * float(torch.rand(1, generator=g)))]:
        family("vae_step", FAMILIES["vae_step"][2 if logit else 1 if shift else 0])
        seed, beta = draw_seed(g), _beta(g)
        seeds = [draw_seed(g) for _ in range(steps)]
        x = (torch.rand(B, D, generator=g) < 0.5).to(dtype)
        (model, opt), (model_k, opt_k) = twin(VAE_STEP_MODEL, seed=seed, D=D, k=k, h=6, dtype=dtype, shift=shift,
                                              logit_shift=logit, **sgd)
        name = str(dtype).replace("torch.", "")
        inputs = (f"a random VAE (D={D}, k={k}, Tanh{f', mu head shifted by {shift:.1f}' if shift else ''}"
                  f"{f', decoder logits near +-{logit:.1f}' if logit else ''}) in "
                  f"{name} whose .grad hold an earlier step's gradients, "
                  f"binary x ({B}, {D}), SGD(lr={sgd['lr']}, momentum={sgd['momentum']}, weight_decay="
                  f"{sgd['weight_decay']}), beta={beta:.3f}, a seeded generator, {steps} steps in a row")

        def run_mutant(f, model=model, x=x, beta=beta, seeds=seeds):
            m = copy.deepcopy(model)
            o = torch.optim.SGD(m.parameters(), **sgd)
            out = {"loss": [], "params": []}
            with torch.random.fork_rng():
                for s in seeds:
                    out["loss"].append(f(m, x.clone(), o, beta=beta, generator=seeded(s)))
                    out["params"].append(_flat(m.parameters()))
            return out

        diag = known_mistakes(CH, "vae_step", run_mutant)
        oracle = _oracle_steps(model, x, beta, seeds, dtype, **sgd)
        for step, s in enumerate(seeds):
            want, want_g, want_p = oracle[step]
            got = c.call(in_kernel(getattr(fn, "__name__", "vae_step"), VAE_STEP_CALL), fn=fn, model=model_k,
                         x=x.clone(), optimizer=opt_k, beta=beta, generator=seeded(s), inputs=inputs)
            c.true(isinstance(got, (tuple, list)) and len(got) == 4, "vae_step could not be run", inputs=inputs)
            out, kept, params, applied = got
            c.true(kept, "the global random generator was used: the draw of z must come from the generator "
                   "passed in", inputs=inputs, hint=DIAG["step_generator"])
            c.true(isinstance(out, float), "vae_step must return the loss as a Python float", inputs=inputs,
                   got=type(out).__name__, hint=DIAG["step_float"])
            c.close(f"loss returned at step {step + 1}", out, want, **tolerance(dtype, scale=abs(want), ops=16),
                    inputs=inputs, mistakes={d: m["loss"][step] for d, m in diag.items()}, hint=DIAG["step_loss"])
            c.close(f"parameters after step {step + 1}", _flat(params), want_p,
                    **tolerance(dtype, scale=float(want_p.abs().max()), ops=16), inputs=inputs,
                    mistakes={d: m["params"][step] for d, m in diag.items()},
                    hint=DIAG["step_zero_grad"] if step else DIAG["step_update"])
            c.true(isinstance(applied, list) and len(applied) == 1, f"optimizer.step() was not called exactly "
                   f"once at step {step + 1}", inputs=inputs, got=f"{len(applied)} call(s)",
                   hint=DIAG["step_own_update"])
            c.close(f"the gradients optimizer.step() applied at step {step + 1}", _flat(applied[0]), want_g,
                    **tolerance(dtype, scale=float(want_g.abs().max()), ops=16), inputs=inputs,
                    hint=DIAG["step_grad_changed"])
    c.done()


# ----------------------------------------------------------------------------- sampling, interpolation

# encode(x) = (x A, x C - 1); decode(z) = z W^T + b, with the given (random) weights: built
# from torch alone in the judge and in the kernel (`twin`).
RANDOM_LINEAR_MODEL = '03_vae.random_linear_model'


def sampling(sample_prior, interpolate) -> None:
    c = Checks("sample_prior / interpolate (hidden)")
    g = _gen("sampling")
    D, k = 6, 3
    A = torch.randn(D, k, generator=g) / 2
    C = torch.randn(D, k, generator=g) / 2
    W = torch.randn(D, k, generator=g)
    b = torch.randn(D, generator=g)
    model, there = twin(RANDOM_LINEAR_MODEL, A=A, C=C, W=W, b=b)
    for n in (9, 1):
        seed = draw_seed(g)
        inputs = f"a random linear model (k=3, D=6), n={n}, a seeded generator"
        got = call_keeping_global_rng(c, sample_prior, there, n, seeded(seed), inputs=inputs)
        c.tensor("samples", got, shape=(n, 6), dtype=F32, inputs=inputs)
        c.close("samples", got, ref.sample_prior(model, n, seeded(seed)), atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "sample_prior", lambda f: f(model, n, seeded(seed))))
    for dtype in (F32, F64):
        model, there = twin(RANDOM_LINEAR_MODEL, A=A.to(dtype), C=C.to(dtype), W=W.to(dtype), b=b.to(dtype))
        x_a, x_b = torch.randn(6, generator=g, dtype=dtype), torch.randn(6, generator=g, dtype=dtype)
        inputs = f"the same model in {str(dtype).replace('torch.', '')}, random x_a, x_b (6,), steps=7"
        got = c.call(interpolate, there, x_a, x_b, 7, inputs=inputs)
        c.tensor("interpolation", got, shape=(7, 6), dtype=dtype, inputs=inputs)
        c.close("interpolation", got, ref.interpolate(model, x_a, x_b, 7), atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "interpolate", lambda f: f(model, x_a, x_b, 7)))
    c.done()


# ----------------------------------------------------------------------------- IWAE

# A random VAE(D, k, hidden=(h,)) in `dtype` with encode and decode, its last decoder layer
# scaled by `gain` (a confident decoder: large logits, log-weights far below 0), built from
# torch alone in the judge and in the kernel (`twin`), its weights seeded without touching
# the global RNG.
RANDOM_VAE = '03_vae.random_vae'


def _iwae64(model: nn.Module, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """The importance-weighted estimate computed in float64 (a float64 copy of the model,
    torch.distributions' log-densities), the noise drawn as the docstring says: in the dtype
    of the model's own mu."""
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        dtype = model.encode(x[:1])[0].dtype
        mu, logvar = m64.encode(x.double())
        B, d = mu.shape
        eps = torch.randn(k, B, d, generator=seeded(seed), dtype=dtype).double()
        std = torch.exp(0.5 * logvar)
        z = mu + std * eps  # (k, B, d)
        logits = m64.decode(z.reshape(k * B, d)).reshape(k, B, -1)
        target = x.double().reshape(1, B, -1).expand_as(logits)
        log_w = (torch.distributions.Bernoulli(logits=logits).log_prob(target).sum(-1)
                 + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mu, std).log_prob(z).sum(-1))  # (k, B)
        return torch.logsumexp(log_w, 0) - math.log(k)


def iwae(fn) -> None:
    c = Checks("iwae_log_likelihood (hidden)")
    g = _gen("iwae")
    # (dtype, D, gain, B, ks): a plain float64 VAE; a confident float64 decoder whose
    # log-weights lie near -2000 (exp underflows even in float64); float32 with log-weights
    # in the hundreds (exp underflows in float32) and a batch of one
    for dtype, D, gain, B, ks in [(F64, 12, 1.0, 5, (1, 9)), (F64, 40, 200.0, 3, (5,)), (F32, 40, 30.0, 1, (6,))]:
        seed = draw_seed(g)
        model, there = twin(RANDOM_VAE, seed=seed, D=D, k=2, h=8, dtype=dtype, gain=gain)
        x = (torch.rand(B, D, generator=g) < 0.5).to(dtype)
        for k in ks:
            name = str(dtype).replace("torch.", "")
            inputs = (f"a random VAE(D={D}, k=2, hidden=(8,)) in {name}, last decoder layer scaled by {gain:g}, "
                      f"binary x ({B}, {D}), k={k}, a seeded generator")
            got = call_keeping_global_rng(c, fn, there, x.clone(), k, seeded(seed + k), inputs=inputs)
            c.tensor("log p(x)", got, shape=(B,), dtype=dtype, finite=False, inputs=inputs)
            want = _iwae64(model, x, k, seed + k)
            mistakes = known_mistakes(CH, "iwae_log_likelihood", lambda f: f(model, x, k, seeded(seed + k)))
            tol = tolerance(dtype, scale=float(want.abs().max()), ops=8)
            c.close("log p(x)", got, want, atol=max(tol["atol"], 1e-8 * (dtype == F64)), rtol=tol["rtol"],
                    inputs=inputs, mistakes=mistakes,
                    hint=DIAG["iwae_formula"] if bool(torch.isfinite(got).all()) else DIAG["iwae_overflow"])
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=ch03.QUIZ_EXPLAIN.get(name))
