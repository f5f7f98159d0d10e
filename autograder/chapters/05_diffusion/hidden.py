"""Chapter 05 hidden checks: the learner's schedules, forward process and samplers against
diffusers (DDPMScheduler, DDIMScheduler, get_timestep_embedding, ResnetBlock2D), the rest
against the reference, all on inputs drawn from the grading seed; catalogued mistakes are
recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back. What the learner's code acts on (the loss's stand-in model that
records its inputs, the guidance's random network, the stand-ins of ResBlock and
timestep_embedding under the U-Net) is built in the kernel by harness snippets from torch
and diffusers alone (`twin`, `run`); the judge keeps its own copy to compute the expected
values with the reference and the catalogue's mutants."""
from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.resnet import ResnetBlock2D

from autograder.hidden import COPY_WEIGHTS, draw_int, family, generators, grade_choice, here, hidden_seed, in_kernel
from autograder.mutants import known_mistakes
from autograder.remote import run, twin
from . import solutions as ref
from workbook.ch05 import DIFFUSERS_RESBLOCK_NAMES
from workbook import ch05
from workbook.ch05 import ddim_timesteps
from workbook.ch05.checks import _ddim_loop, _ddpm_loop
from workbook.checks import Checks, describe, tolerance

CH = "05_diffusion"
_gen = generators(CH)
KINDS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
# diffusers keeps its schedules in float32: values agree to float32 rounding.
TOL = dict(atol=1e-6, rtol=1e-5)



NAMED_SHAPES = '05_diffusion.named_shapes'


def schedules(linear_betas, cosine_betas, noise_schedule) -> None:
    c = Checks("schedules (hidden)")
    g = _gen("schedules")
    for T in (draw_int(g, 20, 200), 1000):
        for kind, fn in (("linear", linear_betas), ("cosine", cosine_betas)):
            lib = DDPMScheduler(num_train_timesteps=T, beta_schedule=KINDS[kind])
            inputs = f"{kind} schedule, T = {T} (vs diffusers' DDPMScheduler(beta_schedule={KINDS[kind]!r}))"
            betas = c.call(fn, T, inputs=inputs)
            c.tensor("betas", betas, shape=(T,), dtype=torch.float64, inputs=inputs)
            target = {"linear": "linear_betas", "cosine": "cosine_betas"}[kind]
            c.close("betas", betas, lib.betas.double(), inputs=inputs, **TOL,
                    mistakes=known_mistakes(CH, target, lambda f: f(T)))
            out = c.call(noise_schedule, betas.clone(), inputs=inputs)
            c.true(isinstance(out, tuple) and len(out) == 2, "noise_schedule must return (alphas, alpha_bars)",
                   inputs=inputs)
            alphas, alpha_bars = out
            c.tensor("alphas", alphas, shape=(T,), dtype=torch.float64, inputs=inputs)
            c.close("alphas", alphas, lib.alphas.double(), inputs=inputs, **TOL)
            c.tensor("alpha_bars", alpha_bars, shape=(T,), dtype=torch.float64, inputs=inputs)
            c.close("alpha_bars (diffusers' alphas_cumprod)", alpha_bars, lib.alphas_cumprod.double(), inputs=inputs,
                    atol=1e-6, rtol=1e-4,
                    mistakes=known_mistakes(CH, "noise_schedule", lambda f: f(lib.betas.double())[1]))
    beta_1, beta_T = 1e-4 * (1 + torch.rand(1, generator=g).item()), 0.01 + 0.02 * torch.rand(1, generator=g).item()
    inputs = f"linear_betas(T=50, beta_1={beta_1:.6f}, beta_T={beta_T:.6f})"
    betas = c.call(linear_betas, 50, beta_1, beta_T, inputs=inputs)
    c.close("betas", betas, ref.linear_betas(50, beta_1, beta_T), atol=1e-12, inputs=inputs,
            hint=ch05.DIAGNOSES["linear_args"])
    s = 0.001 + 0.02 * torch.rand(1, generator=g).item()
    inputs = f"cosine_betas(T=64, s={s:.5f}, max_beta=0.5)"
    betas = c.call(cosine_betas, 64, s, 0.5, inputs=inputs)
    c.close("betas", betas, ref.cosine_betas(64, s, 0.5), atol=1e-12, inputs=inputs,
            hint=ch05.DIAGNOSES["cosine_args"])
    c.done()


# The learner's function called in the kernel, bringing back its arguments as they are
# after the call (an in-place change of an input would not travel back otherwise).
KEEP_INPUTS = '05_diffusion.keep_inputs'


def _call_keeping_inputs(c: Checks, name: str, fn, args: tuple, names: tuple, inputs: str):
    """Call the learner's `fn(*args)` in the kernel, fail if it changed a tensor argument
    in place, and return what it returned."""
    out, after = c.call(in_kernel(name, KEEP_INPUTS, fn=fn, args=list(args)), inputs=inputs)
    for arg_name, before, now in zip(names, args, after):
        if isinstance(before, torch.Tensor):
            same = isinstance(now, torch.Tensor) and now.shape == before.shape and torch.equal(now, before)
            c.true(same, f"{name} modified its input {arg_name} in place", inputs=inputs,
                   expected=f"{arg_name} unchanged", got=f"{arg_name} after the call: {now!r}"[:200],
                   hint=ch05.DIAGNOSES["inputs_in_place"])
    return out


def q_sample(fn) -> None:
    c = Checks("q_sample (hidden)")
    g = _gen("q_sample")
    for kind in ("linear", "cosine"):
        lib = DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind])
        ab = lib.alphas_cumprod.double()
        B, C, H, W = draw_int(g, 3, 9), draw_int(g, 1, 4), draw_int(g, 2, 6), draw_int(g, 2, 6)
        x0 = torch.randn(B, C, H, W, generator=g)
        eps = torch.randn(B, C, H, W, generator=g)
        t = torch.randint(0, 1000, (B,), generator=g)
        t[0] = 0
        inputs = f"x0, eps ({B}, {C}, {H}, {W}) float32, random t with t[0] = 0, {kind} alpha_bars (T = 1000) float64"
        x_t = _call_keeping_inputs(c, "q_sample", fn, (x0, t, eps, ab), ("x0", "t", "eps", "alpha_bars"), inputs)
        c.tensor("x_t", x_t, shape=(B, C, H, W), dtype=torch.float32, inputs=inputs)
        scale = float(x0.abs().max() + eps.abs().max())
        c.close("x_t (vs diffusers' add_noise, in float64)", x_t, lib.add_noise(x0.double(), eps.double(), t),
                inputs=inputs, **tolerance(torch.float32, scale=scale),
                mistakes=known_mistakes(CH, "q_sample", lambda f: f(x0.clone(), t.clone(), eps.clone(), ab.clone())))
    B = draw_int(g, 1, 5)
    x0 = torch.randn(B, 3, dtype=torch.float64, generator=g)
    eps = torch.randn(B, 3, dtype=torch.float64, generator=g)
    t = torch.randint(0, 10, (B,), generator=g)
    ab = torch.linspace(0.99, 0.1, 10, dtype=torch.float32)
    inputs = f"x0, eps ({B}, 3) float64, T = 10, alpha_bars float32"
    x_t = _call_keeping_inputs(c, "q_sample", fn, (x0, t, eps, ab), ("x0", "t", "eps", "alpha_bars"), inputs)
    c.tensor("x_t", x_t, shape=(B, 3), dtype=torch.float64, inputs=inputs)
    c.close("x_t", x_t, ref.q_sample(x0, t, eps, ab), inputs=inputs, **tolerance(torch.float64, scale=4.0),
            mistakes=known_mistakes(CH, "q_sample", lambda f: f(x0.clone(), t.clone(), eps.clone(), ab.clone())))
    c.done()


# The loss's stand-in noise predictor, built in the kernel (and in the judge) from torch
# alone: eps_hat = a x_t + b tanh(t / 7), recording what it is called with (labels given
# as the third argument or as y=...).
RECORDER = '05_diffusion.recorder'
# The learner's loss on the stand-in, kept in the kernel for the backward pass; whether
# the global random generator was left alone, and what the stand-in was called with.
LOSS = '05_diffusion.loss'
BACKWARD = '05_diffusion.backward'


FAMILIES = {
    "diffusion_loss": ("an unconditional model, forward(x_t, t) only", "a class-conditional model given labels",
                       "float64 x0 of rank 3", "float32 image-shaped x0 (B, C, H, W)"),
}


def diffusion_loss(fn) -> None:
    c = Checks("diffusion_loss (hidden)")
    g = _gen("diffusion_loss")
    T = draw_int(g, 6, 16)
    ab = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 0.9 + 0.05, descending=True).values
    a, b = 0.2 + 0.6 * torch.rand(1, generator=g).item(), torch.rand(1, generator=g).item()
    seeds = [hidden_seed(f"{CH}/diffusion_loss/run/{k}") for k in range(3)]
    y = torch.randint(0, 10, (384,), generator=g)
    for dtype, shape, labels in ((torch.float64, (512, 2, 3), None), (torch.float32, (384, 3, 2, 4), y)):
        x0 = torch.randn(*shape, generator=g, dtype=dtype).sign()
        B = shape[0]
        kinds = FAMILIES["diffusion_loss"]
        family("diffusion_loss", kinds[0] if labels is None else kinds[1])
        family("diffusion_loss", kinds[2] if dtype == torch.float64 and len(shape) == 3 else
               kinds[3] if dtype == torch.float32 and len(shape) == 4 else "?")
        inputs = f"x0 {shape} of +-1 ({dtype}), T = {T} random alpha_bars, a stand-in model " \
                 f"eps_hat = {a:.3f} x_t + {b:.3f} tanh(t / 7)" + (", random labels y" if labels is not None else "")
        _, model = twin(RECORDER, a=a, b=b, dtype=dtype, labelled=labels is not None)

        def learner(seed):
            out = c.call(in_kernel("diffusion_loss", LOSS, fn=fn, model=model, x0=x0, alpha_bars=ab, y=labels,
                                    generator=torch.Generator().manual_seed(seed)), inputs=inputs)
            loss, kept_rng, calls = out
            c.true(kept_rng, "the global random generator was used: every draw must come from the generator "
                   "passed in", inputs=inputs, hint=ch05.DIAGNOSES["global_rng"])
            c.true(len(calls) == 1, "the model should be called exactly once, on the whole batch", inputs=inputs,
                   got=f"{len(calls)} calls")
            return loss, calls[0]

        loss, (x_t, t, y_seen) = learner(seeds[0])
        c.tensor("loss", loss, shape=(), dtype=dtype, inputs=inputs)
        c.tensor("t passed to the model", t, shape=(B,), dtype=torch.int64, inputs=inputs)
        c.true(bool(((t >= 0) & (t < T)).all()), "t must lie in {0, ..., T-1}", inputs=inputs,
               got=f"t from {int(t.min())} to {int(t.max())}")
        counts = torch.bincount(t, minlength=T).double()
        chi2 = (((counts - B / T) ** 2) / (B / T)).sum().item()
        c.true(bool((counts > 0).all()) and chi2 < T + 6 * (2 * T) ** 0.5, "t is not drawn uniformly from "
               "{0, ..., T-1}", inputs=inputs, got=f"counts {counts.long().tolist()}", hint=ch05.DIAGNOSES["t_uniform"])
        c.tensor("x_t passed to the model", x_t, shape=shape, dtype=dtype, inputs=inputs)
        if labels is None:
            c.true(y_seen is None, "without labels the model must get none", inputs=inputs, got=describe(y_seen))
        else:
            c.true(isinstance(y_seen, torch.Tensor) and y_seen.shape == labels.shape and torch.equal(y_seen, labels),
                   ch05.DIAGNOSES["labels_not_passed"], inputs=inputs,
                   got="no labels" if y_seen is None else describe(y_seen))
        al = ab[t].view(-1, *([1] * (len(shape) - 1)))
        eps = (x_t.double() - al.sqrt() * x0.double()) / (1 - al).sqrt()
        m, s = eps.mean().item(), eps.std().item()
        c.true(abs(m) < 0.08 and abs(s - 1) < 0.08, "the noise implied by x_t is not standard normal",
               inputs=inputs, got=f"mean {m:.3f}, std {s:.3f}",
               hint=ch05.DIAGNOSES["implied_noise"])
        eps_hat = a * x_t.double() + b * torch.tanh(t.double() / 7).view(-1, *([1] * (len(shape) - 1)))

        def mutant_value(f):  # a mutant's value on the same draws
            rec = here(RECORDER, a=a, b=b, dtype=dtype, labelled=labels is not None)
            return f(rec, x0, ab, labels, torch.Generator().manual_seed(seeds[0]))

        c.close("loss", loss, ((eps_hat - eps) ** 2).mean(), inputs=inputs, **tolerance(dtype, scale=4.0, ops=8),
                mistakes=known_mistakes(CH, "diffusion_loss", mutant_value))
        grad = c.call(in_kernel("backward", BACKWARD, model=model), inputs=inputs)
        c.true(isinstance(grad, torch.Tensor) and bool(grad.abs() > 0), "no gradient reached the model's parameters",
               inputs=inputs)
        # The draws come from the generator: the same seed gives the same draws, another seed others.
        again, (x_again, t_again, _) = learner(seeds[0])
        c.true(isinstance(again, torch.Tensor) and torch.equal(t_again, t) and torch.equal(x_again, x_t),
               "two calls with generators of the same seed gave different draws", inputs=inputs + ", called twice",
               hint=ch05.DIAGNOSES["global_rng"])
        _, (_, t_other, _) = learner(seeds[1])
        c.true(not torch.equal(t_other, t), "a generator with another seed gave the same timesteps",
               inputs=inputs + ", another seed", hint=ch05.DIAGNOSES["global_rng"])
    c.done()


def _reverse_inputs(g: torch.Generator, shape: tuple, dtype: torch.dtype):
    """x_t, eps_hat and a seed for the noise: the noise is drawn in float64 (as diffusers
    draws it for float64 samples) and given to the learner in `dtype`."""
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    e = torch.randn(*shape, generator=g, dtype=torch.float64)
    seed = draw_int(g, 0, 2**31)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, e, z, seed


def ddpm_step(fn) -> None:
    c = Checks("ddpm_step (hidden)")
    g = _gen("ddpm_step")
    for kind in ("linear", "cosine"):
        lib = DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind], clip_sample=False)
        ab = lib.alphas_cumprod.double()
        for t in sorted({0, 1, draw_int(g, 2, 998), 999 if kind == "linear" else 990}, reverse=True):
            shape = (draw_int(g, 1, 4), draw_int(g, 1, 4), draw_int(g, 2, 5), draw_int(g, 2, 5))
            x, e, z, seed = _reverse_inputs(g, shape, torch.float32)
            want = lib.step(e, t, x, generator=torch.Generator().manual_seed(seed))  # float64 throughout
            inputs = f"{kind} schedule (T = 1000), t = {t}, random x_t, eps_hat, noise {shape} float32"
            args = (e.float(), t, x.float(), ab.clone(), z.float())
            out = _call_keeping_inputs(c, "ddpm_step", fn, args, ("eps_hat", "t", "x_t", "alpha_bars", "noise"),
                                       inputs)
            c.true(isinstance(out, tuple) and len(out) == 2, "ddpm_step must return (x_prev, x0_hat)", inputs=inputs,
                   got=describe(out))
            x_prev, x0_hat = out
            c.tensor("x_prev", x_prev, shape=shape, dtype=torch.float32, inputs=inputs)
            c.tensor("x0_hat", x0_hat, shape=shape, dtype=torch.float32, inputs=inputs)
            tol = tolerance(torch.float32, scale=float((x.abs().max() + e.abs().max()) / ab[t].sqrt()), ops=4)
            c.close("x0_hat (vs diffusers' pred_original_sample)", x0_hat, want.pred_original_sample, inputs=inputs,
                    **tol)
            c.close("x_prev (vs diffusers' DDPMScheduler.step)", x_prev, want.prev_sample, inputs=inputs, **tol,
                    mistakes=known_mistakes(CH, "ddpm_step", lambda f: f(*args)[0]))
    # float64 samples stay float64, at float64 precision.
    ab = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod.double()
    t, shape = draw_int(g, 1, 999), (2, 3, 2, 5)
    x, e, z, _ = _reverse_inputs(g, shape, torch.float64)
    inputs = f"linear schedule, t = {t}, random x_t, eps_hat, noise {shape} float64"
    args = (e, t, x, ab, z)
    out = _call_keeping_inputs(c, "ddpm_step", fn, args, ("eps_hat", "t", "x_t", "alpha_bars", "noise"), inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "ddpm_step must return (x_prev, x0_hat)", inputs=inputs)
    want = ref.ddpm_step(*args)
    for k, what in enumerate(("x_prev", "x0_hat")):
        c.tensor(what, out[k], shape=shape, dtype=torch.float64, inputs=inputs)
        c.close(what, out[k], want[k], inputs=inputs, **tolerance(torch.float64, scale=1e3, ops=16),
                mistakes=known_mistakes(CH, "ddpm_step", lambda f: f(*args)[k]))
    c.done()


def ddim_step(fn) -> None:
    c = Checks("ddim_step (hidden)")
    g = _gen("ddim_step")
    for kind, eta, n in (("linear", 0.0, 10), ("cosine", 0.0, 20), ("linear", 0.5, 50), ("cosine", 1.0, 10)):
        lib = DDIMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind], clip_sample=False,
                            set_alpha_to_one=True, timestep_spacing="trailing")
        lib.set_timesteps(n)
        ab = lib.alphas_cumprod.double()
        steps = lib.timesteps.tolist()
        picks = sorted({0, draw_int(g, 1, n - 1), n - 1})
        for i in picks:
            t = steps[i]
            t_prev = t - 1000 // n  # diffusers' previous timestep (< 0 at the last step)
            shape = (draw_int(g, 1, 4), draw_int(g, 1, 4), draw_int(g, 2, 5), draw_int(g, 2, 5))
            x, e, z, _ = _reverse_inputs(g, shape, torch.float32)
            want = lib.step(e, t, x, eta=eta, variance_noise=z if eta > 0 else None)  # float64 throughout
            inputs = f"{kind} schedule, {n} DDIM steps, t = {t} -> t_prev = {t_prev}, eta = {eta}, " \
                     f"random {shape} float32"
            args = (e.float(), t, t_prev, x.float(), ab.clone(), eta, z.float() if eta > 0 else None)
            out = _call_keeping_inputs(c, "ddim_step", fn, args,
                                       ("eps_hat", "t", "t_prev", "x_t", "alpha_bars", "eta", "noise"), inputs)
            c.true(isinstance(out, tuple) and len(out) == 2, "ddim_step must return (x_prev, x0_hat)", inputs=inputs,
                   got=describe(out))
            x_prev, x0_hat = out
            c.tensor("x_prev", x_prev, shape=shape, dtype=torch.float32, inputs=inputs)
            tol = tolerance(torch.float32, scale=float((x.abs().max() + e.abs().max()) / ab[t].sqrt()), ops=4)
            c.close("x0_hat (vs diffusers' pred_original_sample)", x0_hat, want.pred_original_sample, inputs=inputs,
                    **tol)
            c.close("x_prev (vs diffusers' DDIMScheduler.step)", x_prev, want.prev_sample, inputs=inputs, **tol,
                    mistakes=known_mistakes(CH, "ddim_step", lambda f: f(*args)[0]))
    ab = DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS["cosine"]).alphas_cumprod.double()
    t = draw_int(g, 100, 999)
    t_prev, eta, shape = t - draw_int(g, 1, 100), 0.3 + 0.7 * float(torch.rand(1, generator=g)), (3, 2, 4, 3)
    x, e, z, _ = _reverse_inputs(g, shape, torch.float64)
    inputs = f"cosine schedule, t = {t} -> t_prev = {t_prev}, eta = {eta:.3f}, random {shape} float64"
    args = (e, t, t_prev, x, ab, eta, z)
    out = _call_keeping_inputs(c, "ddim_step", fn, args, ("eps_hat", "t", "t_prev", "x_t", "alpha_bars", "eta",
                                                          "noise"), inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "ddim_step must return (x_prev, x0_hat)", inputs=inputs)
    want = ref.ddim_step(*args)
    for k, what in enumerate(("x_prev", "x0_hat")):
        c.tensor(what, out[k], shape=shape, dtype=torch.float64, inputs=inputs)
        c.close(what, out[k], want[k], inputs=inputs, **tolerance(torch.float64, scale=1e3, ops=16),
                mistakes=known_mistakes(CH, "ddim_step", lambda f: f(*args)[k]))
    c.done()


# The samplers: the learner's ddpm_step and ddim_step (graded apart) are replaced in the
# kernel by diffusers' steps (workbook.ch05.checks.stand_in_*), `result` undoing the swap;
# a stand-in noise predictor eps_fn(x_t, t) = tanh(a x_t + b cos(t / 7)) that refuses t
# other than a (B,) int64 tensor; the learner's sampler called with a seeded generator,
# bringing back the generator's state after the call and whether the global one was left alone.
SAMPLER_STAND_INS = '05_diffusion.sampler_stand_ins'
EPS_FN = '05_diffusion.eps_fn'
SAMPLE = '05_diffusion.sample'


def _sample(c: Checks, name: str, fn, args: list, kwargs: dict, seed: int, inputs: str):
    """The learner's sampler in the kernel with a generator of `seed`: (its result, the
    generator's state after the call); fails if the global random generator was used."""
    out, state, kept_rng = c.call(in_kernel(name, SAMPLE, fn=fn, args=args, kwargs=kwargs,
                                            generator=torch.Generator().manual_seed(seed)), inputs=inputs)
    c.true(kept_rng, "the global random generator was used: every draw must come from the generator passed in",
           inputs=inputs, hint=ch05.DIAGNOSES["global_rng"])
    return out, state


def _random_alpha_bars(g: torch.Generator, T: int) -> torch.Tensor:
    return torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 0.9 + 0.05, descending=True).values


def sample_ddpm(fn) -> None:
    """With diffusers' step in place of the learner's ddpm_step (graded apart), swapped in the kernel."""
    swap = run(SAMPLER_STAND_INS, fn=fn)
    try:
        _sample_ddpm(fn)
    finally:
        run(UNDO, swap=swap)


def _sample_ddpm(fn) -> None:
    c = Checks("sample_ddpm (hidden)")
    g = _gen("sample_ddpm")
    a, b = 0.3 + 0.6 * float(torch.rand(1, generator=g)), 0.5 + float(torch.rand(1, generator=g))
    eps_here, eps_there = twin(EPS_FN, a=a, b=b)
    for kind in ("cosine", "random"):
        T = draw_int(g, 5, 40)
        if kind == "cosine":
            ab = DDPMScheduler(num_train_timesteps=T, beta_schedule=KINDS["cosine"]).alphas_cumprod.double()
            shape = (draw_int(g, 1, 4), draw_int(g, 1, 3), draw_int(g, 2, 4), draw_int(g, 2, 4))
        else:
            ab = _random_alpha_bars(g, T)
            shape = (draw_int(g, 1, 9), 2)
        keep = tuple(sorted({T - 1, 0, draw_int(g, 1, T - 2)}, reverse=True))
        seed = hidden_seed(f"{CH}/sample_ddpm/{kind}")
        inputs = f"{kind} alpha_bars (T = {T}), shape = {shape}, a stand-in eps_fn = tanh({a:.3f} x_t + " \
                 f"{b:.3f} cos(t / 7)), a seeded generator, keep = {keep}, device = 'cpu'"
        out, _ = _sample(c, "sample_ddpm", fn, [eps_there, shape, ab], dict(keep=keep, device="cpu"), seed, inputs)
        c.true(isinstance(out, tuple) and len(out) == 2, "sample_ddpm must return a pair (x, kept)", inputs=inputs,
               got=describe(out))
        x, kept = out

        def run_here(f, part=0):
            return f(eps_here, shape, ab, torch.Generator().manual_seed(seed), keep=keep, device="cpu")[part]

        c.tensor("x", x, shape=shape, dtype=torch.float32, inputs=inputs)
        tol = tolerance(torch.float32, scale=4.0, ops=T)
        c.close("x (vs diffusers' DDPMScheduler loop from the same generator)", x,
                _ddpm_loop(eps_here, shape, ab, seed), inputs=inputs, **tol,
                mistakes=known_mistakes(CH, "sample_ddpm", run_here))
        want = run_here(ref.sample_ddpm, 1)
        c.true(isinstance(kept, dict) and sorted(kept) == sorted(keep), "kept must have one entry per t in keep",
               inputs=inputs, expected=f"keys {sorted(keep)}", got=sorted(kept) if isinstance(kept, dict)
               else describe(kept), hint=ch05.DIAGNOSES["kept"])
        for t in keep:
            pair = kept[t]
            c.true(isinstance(pair, tuple) and len(pair) == 2, f"kept[{t}] must be a pair (x_t, x0_hat)",
                   inputs=inputs, got=describe(pair), hint=ch05.DIAGNOSES["kept"])
            for k, what in enumerate(("x_t", "x0_hat")):
                c.tensor(f"kept[{t}][{k}]", pair[k], shape=shape, inputs=inputs)
                c.close(f"kept[{t}][{k}], {what} at t = {t}", pair[k], want[t][k], inputs=inputs,
                        **tolerance(torch.float32, scale=4.0 / float(ab[t].sqrt()), ops=T),
                        mistakes=known_mistakes(CH, "sample_ddpm", lambda f: run_here(f, 1)[t][k]),
                        hint=ch05.DIAGNOSES["kept"])
    c.done()


def sample_ddim(fn) -> None:
    """With diffusers' step in place of the learner's ddim_step (graded apart), swapped in the kernel."""
    swap = run(SAMPLER_STAND_INS, fn=fn)
    try:
        _sample_ddim(fn)
    finally:
        run(UNDO, swap=swap)


def _sample_ddim(fn) -> None:
    c = Checks("sample_ddim (hidden)")
    g = _gen("sample_ddim")
    a, b = 0.3 + 0.6 * float(torch.rand(1, generator=g)), 0.5 + float(torch.rand(1, generator=g))
    eps_here, eps_there = twin(EPS_FN, a=a, b=b)
    n = draw_int(g, 2, 6)
    cases = [(n * draw_int(g, 2, 8), n, eta, "diffusers") for eta in (0.0, 0.5, 1.0)]
    n = draw_int(g, 2, 6)  # T not a multiple of num_steps: diffusers steps by T // n, ddim_timesteps does not
    cases += [(n * draw_int(g, 2, 8) + draw_int(g, 1, n), n, eta, "reference") for eta in (0.0, 1.0)]
    cases.append((draw_int(g, 3, 30), 1, 1.0, "diffusers"))  # one step, T-1 -> -1
    for i, (T, n, eta, oracle) in enumerate(cases):
        ab = _random_alpha_bars(g, T)
        shape = (draw_int(g, 1, 4), draw_int(g, 1, 3), draw_int(g, 2, 4), draw_int(g, 2, 4))
        seed = hidden_seed(f"{CH}/sample_ddim/{i}")
        inputs = f"random alpha_bars (T = {T}), num_steps = {n} (ddim_timesteps: {ddim_timesteps(T, n)}), " \
                 f"eta = {eta:g}, shape = {shape}, a stand-in eps_fn = tanh({a:.3f} x_t + {b:.3f} cos(t / 7)), " \
                 "a seeded generator, device = 'cpu'"
        x, state = _sample(c, "sample_ddim", fn, [eps_there, shape, ab, n], dict(eta=eta, device="cpu"), seed,
                           inputs)

        def run_here(f):
            return f(eps_here, shape, ab, n, torch.Generator().manual_seed(seed), eta=eta, device="cpu")

        c.tensor("x", x, shape=shape, dtype=torch.float32, inputs=inputs)
        want = _ddim_loop(eps_here, shape, ab, n, eta, seed) if oracle == "diffusers" \
            else run_here(ref.sample_ddim)
        c.close(f"x (vs {'diffusers DDIMScheduler loop' if oracle == 'diffusers' else 'the reference'} from the "
                "same generator)", x, want, inputs=inputs, **tolerance(torch.float32, scale=4.0, ops=T),
                mistakes=known_mistakes(CH, "sample_ddim", run_here))
        if eta == 0:
            after = torch.Generator().manual_seed(seed)
            torch.randn(shape, generator=after)
            c.true(isinstance(state, torch.Tensor) and torch.equal(state, after.get_state()),
                   "with eta = 0, sample_ddim should draw the starting noise and nothing else", inputs=inputs,
                   hint=ch05.DIAGNOSES["ddim_eta_zero_draws"])
    c.done()


# Copy weights, by name, into a model of the kernel.
LOAD_NAMED = '05_diffusion.load_named'


def _embedding64(t: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """The docstring's formula in float64 (the oracle: diffusers' function runs in float32)."""
    half = dim // 2
    w = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    angles = t.double()[:, None] * w[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def time_embedding(timestep_embedding, ResBlock) -> None:
    c = Checks("time_embedding (hidden)")
    g = _gen("time_embedding")
    B = draw_int(g, 2, 7)
    cases = [  # (t, dim, max_period or None for the default)
        (torch.randint(0, 1000, (B,), generator=g), 2 * draw_int(g, 2, 9), None),
        (torch.randint(0, 1000, (1,), generator=g), 2 * draw_int(g, 16, 64), None),
        (1000 * torch.rand(B, generator=g), 2 * draw_int(g, 3, 12), float(draw_int(g, 50, 5000))),
        (1000 * torch.rand(B, generator=g, dtype=torch.float64), 2 * draw_int(g, 3, 12), None),
    ]
    for t, dim, max_period in cases:
        extra = () if max_period is None else (max_period,)
        inputs = f"t = {[round(v, 3) for v in t.tolist()]} ({t.dtype}), dim = {dim}" + \
                 ("" if max_period is None else f", max_period = {max_period:g}")
        emb = c.call(timestep_embedding, t.clone(), dim, *extra, inputs=inputs)
        c.tensor("emb", emb, shape=(len(t), dim), dtype=torch.float32, inputs=inputs)
        c.close("emb (vs the formula in float64)", emb, _embedding64(t, dim, max_period or 10000), inputs=inputs,
                **tolerance(torch.float32, scale=float(t.abs().max())),
                mistakes=known_mistakes(CH, "timestep_embedding", lambda f: f(t.clone(), dim, *extra)))
    c.exercise = "ResBlock (hidden)"
    names = DIFFUSERS_RESBLOCK_NAMES
    for c_in, c_out, groups in ((8 * draw_int(g, 1, 4), 8 * draw_int(g, 1, 4), 8), (16, 16, 4)):
        emb_dim = draw_int(g, 4, 40)
        H, W = draw_int(g, 2, 7), draw_int(g, 2, 7)
        inputs = f"ResBlock({c_in}, {c_out}, {emb_dim}, groups={groups}) with random weights, " \
                 f"x (3, {c_in}, {H}, {W}), emb (3, {emb_dim})"
        block = c.call(ResBlock, c_in, c_out, emb_dim, groups, inputs=inputs)
        with torch.random.fork_rng():  # its weights are drawn below; the RNG is left alone
            theirs = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=emb_dim, groups=groups,
                                   eps=1e-5)
        mine = dict(c.call(in_kernel("named_parameters", NAMED_SHAPES, model=block), inputs=inputs))
        weights = {}
        with torch.no_grad():
            for name, p in theirs.named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() > 1 else 0.5))
                module, kind = name.split(".")
                key = f"{names[module]}.{kind}"
                c.true(key in mine and mine[key] == tuple(p.shape), f"parameter {key} missing or of the wrong shape",
                       inputs=inputs, expected=f"{key} of shape {tuple(p.shape)}",
                       got=str(mine[key]) if key in mine else "missing")
                weights[key] = p.detach().clone()
        c.true(len(mine) == len(dict(theirs.named_parameters())), "the block has parameters the contract does not state",
               inputs=inputs, got=sorted(set(mine) - {f"{names[n.split('.')[0]]}.{n.split('.')[1]}"
                                                        for n, _ in theirs.named_parameters()}))
        c.call(in_kernel("load_state_dict", LOAD_NAMED, model=block, weights=weights), inputs=inputs)
        x = torch.randn(3, c_in, H, W, generator=g)
        emb = torch.randn(3, emb_dim, generator=g)
        out = c.call(block, x, emb, inputs=inputs)
        with torch.no_grad():
            want = theirs(x, emb)
        c.tensor("block(x, emb)", out, shape=tuple(want.shape), inputs=inputs)
        c.close("block(x, emb) (vs diffusers' ResnetBlock2D)", out, want, atol=1e-4, inputs=inputs,
                mistakes=known_mistakes(CH, "ResBlock", lambda cls: _block_with(cls, theirs, names, c_in, c_out,
                                                                                emb_dim, groups, x, emb)))
    c.done()


def _block_with(cls, theirs, names, c_in, c_out, emb_dim, groups, x, emb):
    block = cls(c_in, c_out, emb_dim, groups)
    mine = dict(block.named_parameters())
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            module, kind = name.split(".")
            mine[f"{names[module]}.{kind}"].copy_(p)
        return block(x, emb)


# Stand-ins for the learner's ResBlock and timestep_embedding while the U-Net is checked
# (they have their own check), built in the kernel from diffusers: its ResnetBlock2D with
# its layers registered under the contract's names (so the reference's weights load by
# name) and its get_timestep_embedding. `result` is the context that undoes the swap.
UNET_STAND_INS = '05_diffusion.unet_stand_ins'
UNDO = '05_diffusion.undo'
LOAD_STATE = '05_diffusion.load_state'


def unet(UNet) -> None:
    """With diffusers' ResnetBlock2D and embedding in place of the learner's ResBlock and
    timestep_embedding (graded apart), swapped in the kernel."""
    swap = run(UNET_STAND_INS, UNet=UNet)
    try:
        _unet(UNet)
    finally:
        run(UNDO, swap=swap)


def _unet(UNet) -> None:
    c = Checks("UNet (hidden)")
    g = _gen("unet")
    seed = int(torch.randint(0, 2**31, (1,), generator=g))
    for i, (kw, (H, W)) in enumerate(((dict(in_channels=1, ch=8, mults=(1, 2, 2), num_classes=5, groups=4), (12, 8)),
                                      (dict(in_channels=2, ch=16, mults=(1, 1), num_classes=None, groups=8), (6, 10)))):
        with torch.random.fork_rng():
            torch.manual_seed(seed + i)
            reference = ref.UNet(**kw)
        inputs = f"UNet({', '.join(f'{k}={v}' for k, v in kw.items())}), x (3, {kw['in_channels']}, {H}, {W}), " \
                 "the reference's weights"
        model = c.call(UNet, **kw, inputs=inputs)
        _load_unet(c, model, reference, inputs)
        x = torch.randn(3, kw["in_channels"], H, W, generator=g)
        t = torch.randint(0, 1000, (3,), generator=g)
        y = torch.randint(0, 5, (3,), generator=g) if kw["num_classes"] else None
        out = c.call(model, x, t, y, inputs=inputs)
        with torch.no_grad():
            want = reference(x, t, y)
        c.tensor("output", out, shape=tuple(want.shape), inputs=inputs)
        c.close("output (vs the reference with the same weights)", out, want, atol=1e-4, inputs=inputs,
                hint=ch05.DIAGNOSES["unet_computation"])
        if kw["num_classes"]:
            inputs_null = inputs + ", y = None (the 'no label' id num_classes)"
            out = c.call(model, x, t, None, inputs=inputs_null)
            with torch.no_grad():
                want = reference(x, t, None)
                as_zero = reference(x, t, torch.zeros_like(t))
                as_other = {f"y = None treated as label {k} instead of the 'no label' id num_classes = "
                            f"{kw['num_classes']}": reference(x, t, torch.full_like(t, k))
                            for k in range(kw["num_classes"]) if k != 0}
            c.tensor("output with y = None", out, shape=tuple(want.shape), inputs=inputs_null)
            c.close("output with y = None (vs the reference with the same weights and y = None)", out, want,
                    atol=1e-4, inputs=inputs_null,
                    hint=ch05.DIAGNOSES["null_label_id"],
                    mistakes={ch05.DIAGNOSES["null_as_zero"]: as_zero, **as_other})
    c.done()


def _load_unet(c: Checks, model, reference: torch.nn.Module, inputs: str) -> None:
    """The reference's weights into the learner's U-Net: by name when the names are the
    stated ones, else by order when the same parameter shapes come in the same order (an
    upsampling conv inside an nn.Sequential, other names for the same layers)."""
    rp = [(k, tuple(v.shape)) for k, v in reference.named_parameters()]
    lp = [tuple(kv) for kv in c.call(in_kernel("named_parameters", NAMED_SHAPES, model=model), inputs=inputs)]
    if dict(lp) == dict(rp):
        c.call(in_kernel("load_state_dict", LOAD_STATE, model=model, state=dict(reference.state_dict())),
               inputs=inputs)
        return
    if [s for _, s in lp] == [s for _, s in rp]:
        c.call(in_kernel("load_state_dict", COPY_WEIGHTS, model=model,
                          weights=[p.detach() for p in reference.parameters()]), inputs=inputs)
        return
    rd, ld = dict(rp), dict(lp)
    c.fail("the parameters (names or shapes) differ from the stated architecture", inputs=inputs,
           expected=f"{len(rp)} tensors, {sum(math.prod(v) for _, v in rp)} parameters",
           got=f"{len(lp)} tensors, {sum(math.prod(v) for _, v in lp)} parameters; missing "
               f"{sorted(set(rd) - set(ld))[:3]}, unexpected {sorted(set(ld) - set(rd))[:3]}, wrong shapes "
               f"{[k for k in set(rd) & set(ld) if rd[k] != ld[k]][:3]}",
           hint=ch05.DIAGNOSES["unet_layers"])


# A random network of (x, t, y) whose outputs depend on all three, per example: built in
# the kernel (for the learner's guided_eps) and in the judge (for the reference's) from
# the same random table.
NET = '05_diffusion.net'


# The learner's drop_labels, called in the kernel, bringing back the labels it was given
# as they are after the call (an in-place change of y would not travel back otherwise),
# and whether the global random generator was left alone.
DROP = '05_diffusion.drop'


def guidance(drop_labels, guided_eps) -> None:
    c = Checks("guidance (hidden)")
    g = _gen("guidance")
    p = 0.05 + 0.5 * torch.rand(1, generator=g).item()
    null = draw_int(g, 10, 100)
    n = draw_int(g, 3000, 6000)
    y = torch.randint(0, 10, (n,), generator=g)
    seed = draw_int(g, 0, 2**31)
    inputs = f"{n} random labels, p_uncond = {p:.3f}, null_label = {null}, a seeded generator"
    res = c.call(in_kernel("drop_labels", DROP, fn=drop_labels, y=y.clone(), p_uncond=p, null_label=null,
                            generator=torch.Generator().manual_seed(seed)), inputs=inputs)
    out, y_after, kept_rng = res
    c.tensor("labels", out, shape=(n,), dtype=torch.int64, inputs=inputs)
    changed = int((y_after != y).sum()) if isinstance(y_after, torch.Tensor) and y_after.shape == y.shape else -1
    c.true(changed == 0, "drop_labels must not modify its input y in place", inputs=inputs + ", y after the call",
           expected="y unchanged", got=f"{changed} of {n} labels of y changed" if changed >= 0 else "y replaced",
           hint=ch05.DIAGNOSES["labels_in_place"])
    c.true(kept_rng, "the global random generator was used: every draw must come from the generator passed in",
           inputs=inputs, hint=ch05.DIAGNOSES["global_rng"])
    changed = out != y
    c.true(bool((out[changed] == null).all()), "the dropped labels must become null_label", inputs=inputs,
           expected=f"null_label = {null}", got=f"labels changed to {sorted(set(out[changed].tolist()))[:5]}",
           hint=ch05.DIAGNOSES["drop_below"])
    frac = (out == null).double().mean().item()
    c.true(abs(frac - p) < 0.05, "the fraction of dropped labels should be p_uncond", inputs=inputs,
           expected=f"{p:.3f}", got=f"{frac:.3f}",
           hint=ch05.DIAGNOSES["drop_below"])
    keep = out != null
    c.true(torch.equal(out[keep], y[keep]), "labels that are not dropped must stay unchanged", inputs=inputs)
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    want = torch.where(u < p, torch.full_like(y, null), y)
    c.true(torch.equal(out, want), "the dropped labels are not those of the stated draw", inputs=inputs,
           expected=f"labels dropped where u < p_uncond, u = torch.rand(B, generator=generator): "
                    f"{int((want == null).sum())} dropped", got=f"{int((out == null).sum())} dropped, "
                                                              f"{int((out != want).sum())} labels differ",
           hint=ch05.DIAGNOSES["stated_draw"])
    null = draw_int(g, 11, 31)  # never the usual 10: a hard-coded null label shows
    net, net_there = twin(NET, table=torch.randn(null + 1, 4, generator=g))
    for scale in (1.0 + 6 * torch.rand(1, generator=g).item(), 0.0, 1.0):
        B, H, W = draw_int(g, 1, 6), draw_int(g, 2, 5), draw_int(g, 2, 5)
        x = torch.randn(B, 4, H, W, generator=g)
        t = torch.randint(0, 1000, (B,), generator=g)
        yy = torch.randint(0, 10, (B,), generator=g)
        inputs = f"a random network, x ({B}, 4, {H}, {W}), random t and y, scale = {scale:.3f}, null_label = {null}"
        args = (net_there, x, t, yy, scale, null)
        out = _call_keeping_inputs(c, "guided_eps", guided_eps, args, ("model", "x_t", "t", "y", "scale",
                                                                          "null_label"), inputs)
        c.tensor("eps", out, shape=(B, 4, H, W), dtype=torch.float32, inputs=inputs)
        c.close("eps", out, ref.guided_eps(net, x.double(), t, yy, scale, null), inputs=inputs,
                **tolerance(torch.float32, scale=1.0 + scale),
                mistakes=known_mistakes(CH, "guided_eps", lambda f: f(net, x.clone(), t.clone(), yy.clone(), scale,
                                                                      null)))
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=ch05.QUIZ_EXPLAIN[name])
