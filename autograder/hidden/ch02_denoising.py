"""Chapter 02 hidden checks: the learner's code against the reference (and, for the
metrics, independent numpy/scipy formulas) on fresh random inputs, with known mistakes
recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back, and harness snippets (`run`, `twin`) do in the kernel what needs
the learner's objects there: a call whose in-place effect on its input is checked, the
reference's weights copied into the learner's model, a model and optimizer (built from
torch alone) handed to `denoising_step`, parameters read back."""
from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch

from autograder.hidden import grade_choice, load_reference_weights, parameters
from autograder.mutants import hidden_seed, known_mistakes
from autograder.remote import harness_scope, run, twin
from solutions import ch02_denoising as ref
from workbook.checks import CheckFailed, Checks

CH = "02_denoising"


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(hidden_seed(f"{CH}/{name}"))


def _seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def _fresh(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _in_kernel(fn, code: str, **vars):
    """A call of the learner's `fn` inside a harness snippet in the kernel (which sees `fn`
    and `vars`), named like `fn` so that `Checks.call` reports it as the learner's call."""
    def call():
        return run(code, fn=fn, **vars)
    call.__name__ = getattr(fn, "__name__", "the function")
    return call


def _call_hinting(c: Checks, fn, *args, inputs: str, hint: str):
    """Like `c.call`, with the likely mistake `hint` when the learner's code raises."""
    name = getattr(fn, "__name__", "the function")
    try:
        return fn(*args)
    except NotImplementedError:
        c.fail(f"{name} is not implemented yet", inputs=inputs)
    except CheckFailed:
        raise
    except Exception as e:  # the learner's code raised
        c.fail(f"calling {name} raised {type(e).__name__}: {e}", inputs=inputs, hint=hint)


def _here(code: str, **vars):
    """A harness snippet run in the judge only (the `here` half of `twin`): fresh copies of
    the harness objects for the known-mistake diagnoses."""
    scope = harness_scope(**vars)
    exec(compile(code, "<judge harness>", "exec"), scope)
    return scope["result"]


# The call and the input after it: in-place effects on x happen in the kernel and do not
# travel back on their own (a plain `c.call` sends a copy of x and never sees it again).
KEEP_X_CALL = """
result = (fn(x, *args), x)
"""

IN_PLACE_HINT = ("work on a copy: build a new tensor (x + ..., torch.where, x.masked_fill, or x.clone() "
                 "then index it) instead of changing x (x += ..., add_, x[mask] = ..., masked_fill_)")


def _call_keeping_x(c: Checks, fn, x: torch.Tensor, *args, inputs: str):
    """fn(x, *args) called in the kernel on a copy of x; fails if the call changed that x
    in place (the inputs are "Not modified" in every corruption's contract); returns the
    learner's result."""
    out, x_after = c.call(_in_kernel(fn, KEEP_X_CALL, x=x, args=args), inputs=inputs)
    unchanged = isinstance(x_after, torch.Tensor) and x_after.shape == x.shape and x_after.dtype == x.dtype \
        and torch.equal(x_after, x)
    changed = int((x_after != x).sum()) if isinstance(x_after, torch.Tensor) and x_after.shape == x.shape else None
    c.true(unchanged, f"your {getattr(fn, '__name__', 'function')} changed its input x in place",
           inputs=inputs, expected="x exactly as it was before the call",
           got=f"{changed} of {x.numel()} entries of x changed after the call" if changed is not None
           else "x replaced by a tensor of another shape", hint=IN_PLACE_HINT)
    return out


def gaussian_noise(fn) -> None:
    c = Checks("add_gaussian_noise (hidden)")
    g = _gen("gaussian_noise")
    B = 5
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(B, 1, 28, 28, generator=g, dtype=dtype)
        for sigma in (float(torch.rand(1, generator=g)) + 0.05, torch.rand(B, generator=g, dtype=dtype)):
            seed = _seed(g)
            inputs = f"random x ({B}, 1, 28, 28) {dtype}, sigma " + \
                     ("a float" if isinstance(sigma, float) else f"a random ({B},) tensor") + ", a seeded generator"
            out = _call_keeping_x(c, fn, x, sigma, _fresh(seed), inputs=inputs)
            c.tensor("x_noisy", out, shape=(B, 1, 28, 28), dtype=dtype, inputs=inputs)
            c.close("x_noisy", out, ref.add_gaussian_noise(x, sigma, _fresh(seed)), atol=1e-6, inputs=inputs,
                    mistakes=known_mistakes(CH, "add_gaussian_noise",
                                            lambda f: f(x.clone(), sigma, _fresh(seed))))
    c.done()


def salt_pepper(fn) -> None:
    c = Checks("salt_and_pepper (hidden)")
    g = _gen("salt_pepper")
    x = torch.rand(6, 1, 28, 28, generator=g)
    for p in (0.05 + 0.4 * float(torch.rand(1, generator=g)), 0.7):
        seed = _seed(g)
        inputs = f"random x (6, 1, 28, 28), p={p:.3f}, a seeded generator"
        out = _call_keeping_x(c, fn, x, p, _fresh(seed), inputs=inputs)
        c.true(isinstance(out, tuple) and len(out) == 2, "salt_and_pepper should return (x_noisy, mask)",
               inputs=inputs)
        want_x, want_m = ref.salt_and_pepper(x, p, _fresh(seed))
        diag = known_mistakes(CH, "salt_and_pepper", lambda f: f(x.clone(), p, _fresh(seed)))
        c.tensor("mask", out[1], shape=(6, 1, 28, 28), inputs=inputs)
        c.close("mask", out[1], want_m, atol=0, rtol=0, inputs=inputs,
                mistakes={d: m[1] for d, m in diag.items() if m[1].shape == want_m.shape})
        c.true(out[1].dtype == torch.bool, "mask must be a bool tensor", inputs=inputs, got=str(out[1].dtype))
        c.close("x_noisy", out[0], want_x, atol=1e-7, inputs=inputs,
                mistakes={d: m[0] for d, m in diag.items()})
    c.done()


def occlusion(fn) -> None:
    c = Checks("occlude_boxes (hidden)")
    g = _gen("occlusion")
    for B, n_boxes, size in [(6, 3, 7), (4, 1, 12)]:
        x = torch.rand(B, 1, 28, 28, generator=g) + 0.1
        seed = _seed(g)
        inputs = f"random x ({B}, 1, 28, 28), n_boxes={n_boxes}, size={size}, a seeded generator"
        out = _call_keeping_x(c, fn, x, n_boxes, size, _fresh(seed), inputs=inputs)
        c.true(isinstance(out, tuple) and len(out) == 2, "occlude_boxes should return (x_occluded, mask)",
               inputs=inputs)
        want_x, want_m = ref.occlude_boxes(x, n_boxes, size, _fresh(seed))
        diag = known_mistakes(CH, "occlude_boxes", lambda f: f(x.clone(), n_boxes, size, _fresh(seed)))
        c.tensor("mask", out[1], shape=(B, 1, 28, 28), inputs=inputs)
        c.close("mask", out[1], want_m, atol=0, rtol=0, inputs=inputs,
                mistakes={d: m[1] for d, m in diag.items() if m[1].shape == want_m.shape})
        c.close("x_occluded", out[0], want_x, atol=1e-7, inputs=inputs,
                mistakes={d: m[0] for d, m in diag.items()})
    c.done()


def psnr(fn) -> None:
    c = Checks("psnr (hidden)")
    g = _gen("psnr")
    B = 4
    x = torch.rand(B, 1, 28, 28, generator=g, dtype=torch.float64)
    x_hat = x + torch.rand(B, 1, 1, 1, generator=g, dtype=torch.float64) * 0.3 \
        * torch.randn(B, 1, 28, 28, generator=g, dtype=torch.float64)
    mse = ((x_hat - x) ** 2).numpy().reshape(B, -1).mean(1)
    for L in (1.0, 255.0):
        inputs = f"random x ({B}, 1, 28, 28) float64 times {L:g}, noise of a different level per image, data_range={L:g}"
        out = c.call(fn, L * x_hat, L * x, L, inputs=inputs)
        c.tensor("psnr", out, shape=(B,), dtype=torch.float64, inputs=inputs)
        oracle = torch.from_numpy(10 * np.log10(1.0 / mse))  # PSNR does not change when both scale with L
        c.close("psnr", out, oracle, atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "psnr", lambda f: f(L * x_hat, L * x, L)))
    c.done()


def _ssim_oracle(a: np.ndarray, b: np.ndarray, L: float) -> np.ndarray:
    """Independent SSIM: scipy's Gaussian filter (sigma 1.5, truncated at 3.5 sigma = 11 taps),
    then the border of 5 pixels cropped, as skimage does with gaussian_weights=True."""
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    out = []
    for p, q in zip(a, b):  # (C, H, W) each
        def filt(t):
            return np.stack([scipy.ndimage.gaussian_filter(ch, 1.5, truncate=3.5) for ch in t])[:, 5:-5, 5:-5]
        mp, mq = filt(p), filt(q)
        spp, sqq, spq = filt(p * p) - mp**2, filt(q * q) - mq**2, filt(p * q) - mp * mq
        s = (2 * mp * mq + C1) * (2 * spq + C2) / ((mp**2 + mq**2 + C1) * (spp + sqq + C2))
        out.append(s.mean())
    return np.array(out)


def ssim(fn) -> None:
    c = Checks("ssim (hidden)")
    g = _gen("ssim")
    B = 3
    x = torch.rand(B, 1, 28, 28, generator=g, dtype=torch.float64) ** 3  # dark, MNIST-like
    x_hat = (x + 0.25 * torch.randn(B, 1, 28, 28, generator=g, dtype=torch.float64)).clamp(0, 1)
    x_hat[0] = x[0] * 0.7 + 0.1  # contrast and luminance change only
    for L in (1.0, 255.0):
        inputs = f"random x ({B}, 1, 28, 28) float64 times {L:g} and distorted copies, data_range={L:g}"
        out = c.call(fn, L * x_hat, L * x, L, inputs=inputs)
        c.tensor("ssim", out, shape=(B,), dtype=torch.float64, inputs=inputs)
        oracle = torch.from_numpy(_ssim_oracle(L * x_hat.numpy(), L * x.numpy(), L))
        c.close("ssim", out, oracle, atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "ssim", lambda f: f(L * x_hat, L * x, L)))
    c.done()


def _copy_and_run(model: torch.nn.Module, reference: torch.nn.Module, x, sigma):
    """Local (judge-side) only: a catalogued mutant's model with the reference's weights."""
    with torch.no_grad():
        for a, b in zip(model.parameters(), reference.parameters()):
            a.copy_(b)
        return model(x, sigma)


def denoiser(SigmaConditionedDenoiser) -> None:
    c = Checks("SigmaConditionedDenoiser (hidden)")
    g = _gen("denoiser")
    torch.manual_seed(_seed(g))
    ch = 5
    reference = ref.SigmaConditionedDenoiser(c=ch)
    x = torch.rand(4, 1, 28, 28, generator=g)
    sigma = torch.rand(4, generator=g)
    inputs = f"SigmaConditionedDenoiser(c={ch}) with the reference's weights, x (4, 1, 28, 28), random sigma (4,)"
    model = c.call(SigmaConditionedDenoiser, c=ch, inputs=inputs)
    load_reference_weights(c, model, reference, inputs)  # shapes in order, then the weights (in the kernel)
    out = c.call(model, x, sigma, inputs=inputs)
    with torch.no_grad():
        want = reference(x, sigma)
    c.tensor("model(x, sigma)", out, shape=(4, 1, 28, 28), inputs=inputs)
    c.close("model(x, sigma) with the reference's weights", out, want, atol=1e-5, inputs=inputs,
            mistakes=known_mistakes(CH, "SigmaConditionedDenoiser",
                                    lambda cls: _copy_and_run(cls(c=ch), reference, x, sigma)),
            hint="same layers but a different forward: concat [x_noisy, sigma map], ReLU after each layer "
                 "but the last, no activation at the end")
    c.done()


# A model of the stated SigmaConditionedDenoiser(c) layout and forward, built from torch
# alone (no solution code reaches the kernel), seeded, with its Adam optimizer: `twin`
# builds one in the kernel for the learner's denoising_step and an identical one here.
DENOISER_MODEL = """
class Denoiser(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(2, c, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1))

    def forward(self, x_noisy, sigma):
        B, _, H, W = x_noisy.shape
        sigma_map = sigma.to(x_noisy.dtype).view(B, 1, 1, 1).expand(B, 1, H, W)
        return self.decoder(self.encoder(torch.cat([x_noisy, sigma_map], dim=1)))

with torch.random.fork_rng():
    torch.manual_seed(seed)
    model = Denoiser(c)
result = (model, torch.optim.Adam(model.parameters(), lr=0.01))
"""


def denoising_step(fn) -> None:
    c = Checks("denoising_step (hidden)")
    g = _gen("denoising_step")
    init = _seed(g)
    (twin_model, opt_t), (model, opt) = twin(DENOISER_MODEL, seed=init, c=3)
    x = torch.rand(5, 1, 28, 28, generator=g)
    sigma = torch.rand(5, generator=g)
    seeds = [_seed(g), _seed(g)]
    inputs = "SigmaConditionedDenoiser(c=3), x (5, 1, 28, 28), random sigma (5,), Adam(lr=0.01), two steps"

    def first_loss(f):
        m, o = _here(DENOISER_MODEL, seed=init, c=3)
        return torch.tensor(f(m, x.clone(), sigma.clone(), o, _fresh(seeds[0])))

    for step, seed in enumerate(seeds):
        expected = ref.denoising_step(twin_model, x, sigma, opt_t, _fresh(seed))
        got = c.call(fn, model, x.clone(), sigma.clone(), opt, _fresh(seed), inputs=inputs)
        c.true(isinstance(got, float), "denoising_step must return a Python float", inputs=inputs,
               got=type(got).__name__)
        c.close(f"loss returned at step {step + 1}", torch.tensor(got), torch.tensor(expected), atol=1e-6,
                inputs=inputs, mistakes=known_mistakes(CH, "denoising_step", first_loss) if step == 0 else None,
                hint="mean squared error between model(x_noisy, sigma_b) and the clean x, before optimizer.step()")
        for a, b in zip(parameters(model), twin_model.parameters()):
            c.close(f"parameters after step {step + 1}", a, b, atol=1e-6, inputs=inputs,
                    hint="zero the gradients, backward the loss, then step")
    c.done()


def masked_mse(fn) -> None:
    c = Checks("masked_mse (hidden)")
    g = _gen("masked_mse")
    x = torch.rand(4, 1, 28, 28, generator=g)
    x_hat = torch.rand(4, 1, 28, 28, generator=g)
    mask = torch.rand(4, 1, 28, 28, generator=g) < 0.2
    mask[0] = False  # an image with nothing masked
    inputs = "random x, x_hat (4, 1, 28, 28), a random mask with about 20% True (none in image 0)"
    out = c.call(fn, x_hat.clone(), x.clone(), mask.clone(), inputs=inputs)
    c.tensor("masked_mse", out, shape=(), inputs=inputs)
    d2 = ((x_hat - x) ** 2).numpy()
    oracle = torch.tensor(np.ma.masked_array(d2, mask=~mask.numpy()).mean())
    c.close("masked_mse", out, oracle, atol=1e-6, inputs=inputs,
            mistakes=known_mistakes(CH, "masked_mse", lambda f: f(x_hat, x, mask)))

    # Several channels under a (B, 1, H, W) mask: every channel of a masked pixel counts.
    B, C = 4, 3
    x = torch.rand(B, C, 28, 28, generator=g)
    x_hat = torch.rand(B, C, 28, 28, generator=g)
    mask = torch.rand(B, 1, 28, 28, generator=g) < 0.2
    mask[1] = False
    inputs = f"random x, x_hat ({B}, {C}, 28, 28), a random mask ({B}, 1, 28, 28) with about 20% True " \
             f"(none in image 1), which covers all {C} channels of a masked pixel"
    broadcast = "a (B, 1, H, W) mask covers every channel: broadcast it over the channels first " \
                "(mask = mask.expand_as(x)), then average over all the masked values"
    out = _call_hinting(c, fn, x_hat.clone(), x.clone(), mask.clone(), inputs=inputs, hint=broadcast)
    c.tensor("masked_mse", out, shape=(), inputs=inputs)
    d2 = ((x_hat - x) ** 2).numpy()
    keep = np.broadcast_to(mask.numpy(), d2.shape)
    oracle = torch.tensor(np.ma.masked_array(d2, mask=~keep).mean())
    wrong = dict(known_mistakes(CH, "masked_mse", lambda f: f(x_hat, x, mask)))
    wrong[broadcast + " (you divided by the number of masked pixels, not of masked values)"] = \
        torch.tensor(d2[keep].sum() / mask.numpy().sum())
    wrong[broadcast + " (you scored the first channel only)"] = torch.tensor(d2[:, :1][mask.numpy()].mean())
    c.close("masked_mse", out, oracle, atol=1e-6, inputs=inputs, mistakes=wrong, hint=broadcast)
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name))
