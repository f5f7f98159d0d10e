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
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograder.hidden import (
    call_keeping_global_rng, draw_seed, draw_size, generators, grade_choice, here, in_kernel,
    learner_name, load_reference_weights, parameters, seeded)
from autograder.hidden.properties import describe_tensor, dtypes, for_all, image_shapes, tensors
from autograder.mutants import known_mistakes
from autograder.remote import twin
from . import solutions as ref
from workbook import ch02
from workbook.checks import CheckFailed, Checks, tolerance

CH = "02_denoising"
_gen = generators(CH)





def _call_hinting(c: Checks, fn, *args, inputs: str, hint: str | None = None, name: str = "the function",
                  explain=None):
    """Like `c.call`, with the likely mistake `hint` when the learner's code raises. `explain(e)`, when
    given, may return a (message, hint) pair that words a known cause of the exception instead."""
    name = getattr(fn, "__name__", name)
    try:
        return fn(*args)
    except NotImplementedError:
        c.fail(f"{name} is not implemented yet", inputs=inputs)
    except CheckFailed:
        raise
    except Exception as e:  # the learner's code raised, or something it called did
        known = explain(e) if explain is not None else None
        if known is not None:
            c.fail(known[0], inputs=inputs, hint=known[1])
        c.fail(f"calling {name} raised {type(e).__name__}: {e}", inputs=inputs, hint=hint)


# The call and the input after it: in-place effects on x happen in the kernel and do not
# travel back on their own (a plain `c.call` sends a copy of x and never sees it again).
KEEP_X_CALL = '02_denoising.keep_x_call'

IN_PLACE_HINT = ("work on a copy: build a new tensor (x + ..., torch.where, x.masked_fill, or x.clone() "
                 "then index it) instead of changing x (x += ..., add_, x[mask] = ..., masked_fill_)")


def _call_keeping_x(c: Checks, fn, x: torch.Tensor, *args, inputs: str):
    """fn(x, *args) called in the kernel on a copy of x; fails if the call changed that x
    in place (the inputs are "Not modified" in every corruption's contract); returns the
    learner's result."""
    out, x_after = c.call(in_kernel(learner_name(fn), KEEP_X_CALL, fn=fn, x=x, args=args), inputs=inputs)
    unchanged = isinstance(x_after, torch.Tensor) and x_after.shape == x.shape and x_after.dtype == x.dtype \
        and torch.equal(x_after, x)
    changed = int((x_after != x).sum()) if isinstance(x_after, torch.Tensor) and x_after.shape == x.shape else None
    c.true(unchanged, f"your {getattr(fn, '__name__', 'function')} changed its input x in place",
           inputs=inputs, expected="x exactly as it was before the call",
           got=f"{changed} of {x.numel()} entries of x changed after the call" if changed is not None
           else "x replaced by a tensor of another shape", hint=IN_PLACE_HINT)
    return out



def _shape(g: torch.Generator, B: int, C: int, low: int = 9, high: int = 24) -> tuple[int, int, int, int]:
    """(B, C, H, W) with H != W drawn in [low, high]: rows and columns must not be confused."""
    H = draw_size(g, low, high)
    W = draw_size(g, low, high - 1)
    return B, C, H, W if W < H else W + 1


def _describe(shape, dtype: torch.dtype) -> str:
    return f"random x {tuple(shape)} {str(dtype).replace('torch.', '')}"


def _values(c: Checks, what: str, out, shape, dtype: torch.dtype, inputs: str, hint: str | None = None,
            dtype_hint: str = ch02.DIAGNOSES["keep_dtype"]) -> None:
    """A returned tensor of this shape and of the input's dtype."""
    c.true(isinstance(out, torch.Tensor), f"{what} should be a torch.Tensor", inputs=inputs,
           got=f"{type(out).__name__}")
    c.true(tuple(out.shape) == tuple(shape), f"{what} has the wrong shape", inputs=inputs,
           expected=f"shape {tuple(shape)}", got=f"shape {tuple(out.shape)}", hint=hint)
    c.true(out.dtype == dtype, f"{what} has dtype {out.dtype}, expected {dtype} (the dtype of x)",
           inputs=inputs, hint=dtype_hint)


def _pair(c: Checks, out, name: str, inputs: str):
    """The two returns (corrupted x, mask) of a corruption, or a failure saying what came back."""
    c.true(isinstance(out, (tuple, list)) and len(out) == 2, f"{name} should return two values (the corrupted x, mask)",
           inputs=inputs, got=f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__)
    return out[0], out[1]


def gaussian_noise(fn) -> None:
    c = Checks("add_gaussian_noise (hidden)")
    g = _gen("gaussian_noise")
    cases = [(torch.float32, "float", _shape(g, draw_size(g, 2, 5), 3)),
             (torch.float64, "tensor", _shape(g, draw_size(g, 2, 5), 2)),
             (torch.float32, "tensor", _shape(g, 1, 1)),
             (torch.float64, "float", _shape(g, draw_size(g, 2, 5), 1)),
             (torch.float32, "float64 tensor", _shape(g, draw_size(g, 1, 4), 2))]
    for i, (dtype, kind, shape) in enumerate(cases):
        B = shape[0]
        x = torch.rand(shape, generator=g, dtype=dtype) * 2 - 0.5
        sigma = 0.05 + float(torch.rand(1, generator=g)) if kind == "float" \
            else 0.05 + torch.rand(B, generator=g, dtype=torch.float64 if kind == "float64 tensor" else dtype)
        seed = draw_seed(g)
        inputs = f"{_describe(shape, dtype)}, sigma " + \
                 (f"= {sigma:.3f} (a float)" if kind == "float" else f"a random ({B},) {kind}") + ", a seeded generator"
        if i == 0:  # every draw from the generator passed in, none from the global one
            out = call_keeping_global_rng(c, fn, x, sigma, seeded(seed), inputs=inputs)
        else:
            out = _call_keeping_x(c, fn, x, sigma, seeded(seed), inputs=inputs)
        _values(c, "x_noisy", out, shape, dtype, inputs,
                dtype_hint=ch02.DIAGNOSES["sigma_dtype" if kind == "float64 tensor" else "keep_dtype"])
        want = ref.add_gaussian_noise(x, sigma, seeded(seed))
        # float32 tolerance in both dtypes: a float sigma may be rounded to float32 on its way
        c.close("x_noisy", out, want, **tolerance(torch.float32, scale=4.0), inputs=inputs,
                mistakes=known_mistakes(CH, "add_gaussian_noise", lambda f: f(x.clone(), sigma, seeded(seed))),
                hint=ch02.DIAGNOSES["same_seed_differs"])
    c.done()


def salt_pepper(fn) -> None:
    c = Checks("salt_and_pepper (hidden)")
    g = _gen("salt_pepper")
    # (dtype, shape, black-and-white): a 0/1 image has pixels replaced by their own value
    cases = [(torch.float32, _shape(g, draw_size(g, 2, 5), 3), False), (torch.float64, _shape(g, draw_size(g, 2, 5), 1), False),
             (torch.float32, _shape(g, 1, 2), False), (torch.float64, _shape(g, draw_size(g, 2, 4), 2), True)]
    for i, (dtype, shape, binary) in enumerate(cases):
        x = torch.rand(shape, generator=g, dtype=dtype)
        if binary:
            x = (x < 0.3).to(dtype)  # mostly black, some white, as MNIST
        p = (0.3 if binary else 0.05) + 0.6 * float(torch.rand(1, generator=g))
        seed = draw_seed(g)
        inputs = ("black-and-white (0/1) " if binary else "") + f"{_describe(shape, dtype)}, p={p:.3f}, " \
                 "a seeded generator"
        if i == 0:
            out = call_keeping_global_rng(c, fn, x, p, seeded(seed), inputs=inputs)
        else:
            out = _call_keeping_x(c, fn, x, p, seeded(seed), inputs=inputs)
        x_noisy, mask = _pair(c, out, "salt_and_pepper", inputs)
        want_x, want_m = ref.salt_and_pepper(x, p, seeded(seed))
        diag = known_mistakes(CH, "salt_and_pepper", lambda f: f(x.clone(), p, seeded(seed)))
        c.tensor("mask", mask, shape=shape, inputs=inputs)
        c.true(mask.dtype == torch.bool, "mask must be a bool tensor", inputs=inputs, got=str(mask.dtype),
               hint=ch02.DIAGNOSES["mask_bool"])
        c.close("mask", mask, want_m, atol=0, rtol=0, inputs=inputs, hint=ch02.DIAGNOSES["sp_draws"],
                mistakes={d: m[1] for d, m in diag.items() if m[1].shape == want_m.shape})
        _values(c, "x_noisy", x_noisy, shape, dtype, inputs)
        c.close("x_noisy", x_noisy, want_x, atol=0, rtol=0, inputs=inputs, hint=ch02.DIAGNOSES["sp_draws"],
                mistakes={d: m[0] for d, m in diag.items()})
    c.done()


def occlusion(fn) -> None:
    c = Checks("occlude_boxes (hidden)")
    g = _gen("occlusion")
    cases = [(torch.float32, _shape(g, draw_size(g, 3, 6), 3, 12, 28)), (torch.float64, _shape(g, draw_size(g, 2, 5), 1, 12, 28)),
             (torch.float32, _shape(g, 1, 2, 12, 28))]
    for i, (dtype, shape) in enumerate(cases):
        B, C, H, W = shape
        n_boxes = (3, 1, 2)[i]
        size = (draw_size(g, 2, min(H, W) // 2), min(H, W), draw_size(g, 1, min(H, W) - 1))[i]
        x = torch.rand(shape, generator=g, dtype=dtype) + 0.1  # no pixel is 0 before the boxes
        seed = draw_seed(g)
        inputs = f"{_describe(shape, dtype)}, n_boxes={n_boxes}, size={size}, a seeded generator"
        if i == 0:
            out = call_keeping_global_rng(c, fn, x, n_boxes, size, seeded(seed), inputs=inputs)
        else:
            out = _call_keeping_x(c, fn, x, n_boxes, size, seeded(seed), inputs=inputs)
        x_occ, mask = _pair(c, out, "occlude_boxes", inputs)
        want_x, want_m = ref.occlude_boxes(x, n_boxes, size, seeded(seed))
        diag = known_mistakes(CH, "occlude_boxes", lambda f: f(x.clone(), n_boxes, size, seeded(seed)))
        c.tensor("mask", mask, shape=(B, 1, H, W), inputs=inputs)
        c.true(mask.dtype == torch.bool, "mask must be a bool tensor", inputs=inputs, got=str(mask.dtype),
               hint=ch02.DIAGNOSES["mask_bool"])
        c.close("mask", mask, want_m, atol=0, rtol=0, inputs=inputs, hint=ch02.DIAGNOSES["box_draws"],
                mistakes={d: m[1] for d, m in diag.items() if m[1].shape == want_m.shape})
        _values(c, "x_occluded", x_occ, shape, dtype, inputs)
        c.close("x_occluded", x_occ, want_x, atol=0, rtol=0, inputs=inputs, hint=ch02.DIAGNOSES["all_channels"],
                mistakes={d: m[0] for d, m in diag.items()})
    c.done()


def _degraded(g: torch.Generator, shape, dtype: torch.dtype, L: float):
    """Images in [0, L] and noisy copies, a different noise level per image, in `dtype`."""
    B = shape[0]
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    level = 0.02 + 0.3 * torch.rand(B, 1, 1, 1, generator=g, dtype=torch.float64)
    x_hat = x + level * torch.randn(shape, generator=g, dtype=torch.float64)
    return (L * x_hat).to(dtype), (L * x).to(dtype)


def psnr(fn) -> None:
    c = Checks("psnr (hidden)")
    g = _gen("psnr")
    cases = [(torch.float64, _shape(g, draw_size(g, 3, 5), 1), 1.0), (torch.float32, _shape(g, draw_size(g, 3, 5), 3), 255.0),
             (torch.float32, _shape(g, 1, 2), 2.0)]
    for i, (dtype, shape, L) in enumerate(cases):
        x_hat, x = _degraded(g, shape, dtype, L)
        if i == 1:
            x_hat[-1] = x[-1]  # identical images: PSNR +inf
        inputs = f"{_describe(shape, dtype)} in [0, {L:g}], noisy copies x_hat (a different level per image" + \
                 (", the last one identical to x" if i == 1 else "") + f"), data_range={L:g}"
        out = c.call(fn, x_hat.clone(), x.clone(), L, inputs=inputs)
        _values(c, "psnr", out, (shape[0],), dtype, inputs, hint=ch02.DIAGNOSES["per_image"])
        mse = ((x_hat.double() - x.double()) ** 2).numpy().reshape(shape[0], -1).mean(1)
        with np.errstate(divide="ignore"):
            oracle = torch.from_numpy(10 * np.log10(L**2 / mse))
        c.close("psnr", out, oracle, **tolerance(dtype, ops=4), inputs=inputs,
                mistakes=known_mistakes(CH, "psnr", lambda f: f(x_hat.clone(), x.clone(), L)))
    for_all(c, "psnr", _image_pairs(), lambda ce, ex: _psnr_matches(ce, fn, *ex))
    c.done()


@st.composite
def _image_pairs(draw):
    """(x_hat, x, data_range): 8-bit-like images of any small shape and either dtype."""
    shape, dtype, L = draw(image_shapes()), draw(dtypes), draw(st.sampled_from([1.0, 2.0, 255.0]))
    return draw(tensors(shape, dtype, 0.0, L)), draw(tensors(shape, dtype, 0.0, L)), L


def _psnr_matches(c: Checks, fn, x_hat: torch.Tensor, x: torch.Tensor, L: float) -> None:
    inputs = f"x_hat = {describe_tensor(x_hat)}, x = {describe_tensor(x)}, data_range={L:g}"
    out = c.call(fn, x_hat.clone(), x.clone(), L, inputs=inputs)
    _values(c, "psnr", out, (x.shape[0],), x.dtype, inputs, hint=ch02.DIAGNOSES["per_image"])
    mse = ((x_hat.double() - x.double()) ** 2).flatten(1).mean(1).numpy()
    with np.errstate(divide="ignore"):
        oracle = torch.from_numpy(10 * np.log10(L**2 / mse))
    c.close("psnr", out, oracle, **tolerance(x.dtype, ops=4), inputs=inputs,
            mistakes=known_mistakes(CH, "psnr", lambda f: f(x_hat.clone(), x.clone(), L)))


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
    cases = [(torch.float64, _shape(g, 3, 1, 16, 28), 1.0), (torch.float32, _shape(g, draw_size(g, 2, 3), 3, 14, 24), 255.0),
             (torch.float32, _shape(g, 1, 2, 14, 24), 2.0)]
    for dtype, shape, L in cases:
        x = torch.rand(shape, generator=g, dtype=torch.float64) ** 3  # dark, MNIST-like
        x_hat = (x + 0.25 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        x_hat[0] = x[0] * 0.7 + 0.1  # contrast and luminance change only
        x_hat, x = (L * x_hat).to(dtype), (L * x).to(dtype)
        inputs = f"{_describe(shape, dtype)} in [0, {L:g}] and distorted copies, data_range={L:g}"
        out = c.call(fn, x_hat.clone(), x.clone(), L, inputs=inputs)
        _values(c, "ssim", out, (shape[0],), dtype, inputs, hint=ch02.DIAGNOSES["per_image"])
        oracle = torch.from_numpy(_ssim_oracle(x_hat.double().numpy(), x.double().numpy(), L))
        # float32: E[x^2] - mu^2 loses digits where the local variance is small next to C2
        c.close("ssim", out, oracle, **tolerance(dtype, ops=64), inputs=inputs,
                mistakes=known_mistakes(CH, "ssim", lambda f: f(x_hat.clone(), x.clone(), L)),
                hint=ch02.DIAGNOSES["ssim_channels"] if shape[1] > 1 else ch02.DIAGNOSES["ssim_window_hint"])
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
    torch.manual_seed(draw_seed(g))
    ch = draw_size(g, 3, 6)
    reference = ref.SigmaConditionedDenoiser(c=ch)
    with torch.no_grad():  # outputs of both signs, so that an activation at the end shows
        reference.decoder[-1].bias -= reference(torch.rand(8, 1, 28, 28, generator=g), torch.rand(8, generator=g)).mean()
    inputs = f"SigmaConditionedDenoiser(c={ch}) with the reference's weights"
    model = c.call(SigmaConditionedDenoiser, c=ch, inputs=inputs)
    load_reference_weights(c, model, reference, inputs)  # shapes in order, then the weights (in the kernel)
    for B in (draw_size(g, 2, 5), 1):
        sigma = torch.rand(B, generator=g)
        x = torch.rand(B, 1, 28, 28, generator=g) + sigma.view(B, 1, 1, 1) * torch.randn(B, 1, 28, 28, generator=g)
        inputs = f"SigmaConditionedDenoiser(c={ch}) with the reference's weights, noisy x ({B}, 1, 28, 28), " \
                 f"random sigma ({B},)"
        out = c.call(model, x, sigma, inputs=inputs)
        with torch.no_grad():
            want = reference(x, sigma)
        c.tensor("model(x, sigma)", out, shape=(B, 1, 28, 28), inputs=inputs)
        c.close("model(x, sigma) with the reference's weights", out, want, atol=1e-5, inputs=inputs,
                mistakes=known_mistakes(CH, "SigmaConditionedDenoiser",
                                        lambda cls: _copy_and_run(cls(c=ch), reference, x, sigma)),
                hint=ch02.DIAGNOSES["denoiser_forward"])
    c.done()


# A model of the stated SigmaConditionedDenoiser layout and forward for C-channel images,
# built from torch alone (no solution code reaches the kernel), seeded, holding stale
# gradients that the step must clear, with its SGD optimizer: `twin` builds one in the
# kernel for the learner's denoising_step and an identical one here.
DENOISER_MODEL = '02_denoising.denoiser_model'


def _model_raised(e: Exception):
    """Where the stated model (built by the harness) raised on what the learner's denoising_step
    gave it: says so and how the model must be called."""
    if f"<harness {DENOISER_MODEL}>" in str(getattr(e, "where", "")):
        return (f"the model raised {type(e).__name__}: {e}, called from your denoising_step",
                ch02.DIAGNOSES["step_sigma_b"])
    return None


def denoising_step(fn) -> None:
    c = Checks("denoising_step (hidden)")
    g = _gen("denoising_step")
    # (dtype, image channels, batch, kinds of sigma at each step)
    for dtype, C, B, kinds in [(torch.float32, 3, draw_size(g, 2, 5), ("float", "tensor")),
                               (torch.float64, 1, 1, ("tensor",))]:
        init = draw_seed(g)
        (twin_model, opt_t), (model, opt) = twin(DENOISER_MODEL, seed=init, c=3, C=C, dtype=dtype)
        H, W = 4 * draw_size(g, 2, 4), 4 * draw_size(g, 5, 7)
        x = torch.rand(B, C, H, W, generator=g, dtype=dtype)
        sigmas = [0.3 + float(torch.rand(1, generator=g)) if kind == "float"
                  else 0.3 + torch.rand(B, generator=g, dtype=dtype) for kind in kinds]
        seeds = [draw_seed(g) for _ in kinds]
        inputs = f"a denoiser of the stated layout for x ({B}, {C}, {H}, {W}) {str(dtype).replace('torch.', '')}, " \
                 f"its parameters holding stale gradients, SGD(lr=0.5), sigma {' then '.join(kinds)}, " \
                 f"{len(kinds)} step(s)"

        def first_loss(f):
            m, o = here(DENOISER_MODEL, seed=init, c=3, C=C, dtype=dtype)
            return torch.tensor(float(f(m, x.clone(), sigmas[0], o, seeded(seeds[0]))), dtype=torch.float64)

        for step, (sigma, seed) in enumerate(zip(sigmas, seeds)):
            expected = ref.denoising_step(twin_model, x, sigma, opt_t, seeded(seed))
            got = _call_hinting(c, fn, model, x.clone(), sigma, opt, seeded(seed), inputs=inputs,
                                name="denoising_step", explain=_model_raised)
            c.true(isinstance(got, float), "denoising_step must return a Python float", inputs=inputs,
                   got=type(got).__name__, hint=ch02.DIAGNOSES["loss_float"])
            c.close(f"loss returned at step {step + 1}", got, expected, **tolerance(dtype, ops=8), inputs=inputs,
                    mistakes=known_mistakes(CH, "denoising_step", first_loss) if step == 0 else None,
                    hint=ch02.DIAGNOSES["step_loss"])
            for a, b in zip(parameters(model), twin_model.parameters()):
                c.close(f"parameters after step {step + 1}", a, b, **tolerance(dtype, ops=8), inputs=inputs,
                        hint=ch02.DIAGNOSES["zero_grad"])
    c.done()


def masked_mse(fn) -> None:
    c = Checks("masked_mse (hidden)")
    g = _gen("masked_mse")
    D = ch02.DIAGNOSES
    # (dtype, image channels, mask channels)
    for dtype, C, mC in [(torch.float32, 1, 1), (torch.float32, 3, 1), (torch.float64, 2, 2)]:
        B, _, H, W = _shape(g, draw_size(g, 3, 5), C)
        x = torch.rand(B, C, H, W, generator=g, dtype=dtype)
        x_hat = torch.rand(B, C, H, W, generator=g, dtype=dtype)
        mask = torch.rand(B, mC, H, W, generator=g) < 0.2
        mask[1] = False  # an image with nothing masked
        mask[0, :, 0, 0] = True  # at least one masked pixel
        inputs = f"random x, x_hat ({B}, {C}, {H}, {W}) {str(dtype).replace('torch.', '')}, a random mask " \
                 f"({B}, {mC}, {H}, {W}) with about 20% True (none in image 1)" + \
                 (f", which covers all {C} channels of a masked pixel" if mC < C else "")
        out = _call_hinting(c, fn, x_hat.clone(), x.clone(), mask.clone(), inputs=inputs,
                            hint=D["mask_broadcast"] if mC < C else None)
        c.tensor("masked_mse", out, shape=(), inputs=inputs)
        d2 = ((x_hat.double() - x.double()) ** 2).numpy()
        keep = np.broadcast_to(mask.numpy(), d2.shape)
        oracle = torch.tensor(np.ma.masked_array(d2, mask=~keep).mean())
        wrong = dict(known_mistakes(CH, "masked_mse", lambda f: f(x_hat, x, mask)))
        if mC < C:
            wrong[D["mask_count"]] = torch.tensor(d2[keep].sum() / mask.numpy().sum())
            wrong[D["mask_first_channel"]] = torch.tensor(d2[:, :1][mask.numpy()].mean())
        c.close("masked_mse", out, oracle, **tolerance(dtype, ops=16), inputs=inputs, mistakes=wrong,
                hint=D["mask_broadcast"] if mC < C else None)
    for_all(c, "masked_mse", _masked_pairs(), lambda ce, ex: _masked_mse_matches(ce, fn, *ex))
    c.done()


@st.composite
def _masked_pairs(draw):
    """(x_hat, x, mask): any small shape and dtype, a (B, 1, H, W) or (B, C, H, W) mask with at
    least one True."""
    shape, dtype = draw(image_shapes()), draw(dtypes)
    B, C, H, W = shape
    mask_shape = (B, draw(st.sampled_from([1, C])), H, W)
    mask = torch.from_numpy(draw(hnp.arrays(np.bool_, mask_shape, fill=st.nothing())).copy())
    mask.view(-1)[draw(st.integers(0, mask.numel() - 1))] = True
    return draw(tensors(shape, dtype, 0.0, 1.0)), draw(tensors(shape, dtype, 0.0, 1.0)), mask


def _masked_mse_matches(c: Checks, fn, x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> None:
    D = ch02.DIAGNOSES
    inputs = f"x_hat = {describe_tensor(x_hat)}, x = {describe_tensor(x)}, mask = {describe_tensor(mask)}"
    broadcast = mask.shape[1] < x.shape[1]
    out = _call_hinting(c, fn, x_hat.clone(), x.clone(), mask.clone(), inputs=inputs,
                        hint=D["mask_broadcast"] if broadcast else None)
    c.tensor("masked_mse", out, shape=(), inputs=inputs)
    d2 = (x_hat.double() - x.double()) ** 2
    oracle = d2[mask.expand_as(x)].mean()
    c.true(out.dtype == x.dtype, f"masked_mse has dtype {out.dtype}, expected {x.dtype} (the dtype of x)",
           inputs=inputs, hint=D["keep_dtype"])
    c.close("masked_mse", out, oracle, **tolerance(x.dtype, ops=16), inputs=inputs,
            mistakes=known_mistakes(CH, "masked_mse", lambda f: f(x_hat, x, mask)),
            hint=D["mask_broadcast"] if broadcast else None)


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=ch02.QUIZ_EXPLAIN[name])
