"""Chapter 05 visible checks (denoising diffusion): the `check_*` functions the notebook calls,
the chapter's texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the stand-ins the checks
use.

Every check runs on small inputs whose answers are known by construction (written out
from the formulas of the chapter with hand-picked numbers, or from diffusers, the
library the chapter's code must agree with); none uses a reference solution. Hidden
checks, run when grading, use fresh random inputs and diffusers' schedulers.
"""

from __future__ import annotations

import functools
import inspect
import math

import torch
from torch import nn

from ..checks import Checks, check_choice, describe, substituted
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_predicts": "ABCD", "answer_guidance_w": "ABCD", "answer_diffusion_facts": "ABCDEF"}
QUIZ_SETS = {"answer_diffusion_facts"}  # answered with a set of letters
# The idea behind each question, shown with a wrong answer (it does not name the letter).
QUIZ_EXPLAIN = {
    "answer_predicts": "put eps_hat = eps into x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t) and x_t = "
                       "sqrt(a_t) x_0 + sqrt(1 - a_t) eps, and simplify",
    "answer_guidance_w": "expand eps_u + s (eps_c - eps_u) and match the coefficient of eps_c with (1 + w); then put "
                         "w = 0 and see which prediction is left",
    "answer_diffusion_facts": "weigh each statement alone: what eta = 0 removes from DDIM's update, whether the DDPM "
                              "loss depends on the sampler or only on q(x_t | x_0), what s = 0 leaves of the guidance "
                              "formula, how fast each schedule's alpha_bar falls at small t, and what DDPM does at t = 0",
}
_F64 = torch.float64
# What the checks say when they recognise a mistake: one text per diagnosis, used by the
# checks here, the hidden checks and the catalogue of mistakes.
DIAGNOSES: dict[str, str] = {
    "keep_dtype": "keep the input's dtype: avoid torch.tensor(...) copies and .float()/.double()",
    "global_rng": "a draw ignored the generator passed in (torch.randn_like / torch.rand_like take none, or "
                  "generator= was left out): pass generator=generator to every torch.randn, torch.rand and "
                  "torch.randint",
    "inputs_in_place": "an input was changed in place (an operation ending in _, +=, or an assignment into "
                       "an input): compute a new tensor and leave the inputs as they are",
    # schedules
    "linspace": "T values evenly spaced from beta_1 to beta_T, both included (torch.linspace)",
    "linear_args": "use the arguments beta_1 and beta_T, not the default values",
    "cosine_args": "use the arguments s and max_beta, not the default values",
    "not_clipped": "beta_t was not clipped at max_beta (the last beta is 1: the data would vanish at once)",
    "ratio_inverted": "the ratio is inverted: beta_t = 1 - f((t+1)/T) / f(t/T), the later f in the numerator",
    "cosine_offset": "u = (t + s) / (1 + s) inside the cosine, with s = 0.008",
    "cosine_grid": "the grid misses u = 1: u = t / T for t = 0, ..., T (not t / (T + 1))",
    "alphas": "alpha_t = 1 - beta_t",
    "cumprod_betas": "alpha_bars is the cumulative product of the betas; it is the product of the alphas = 1 - betas",
    "cumsum": "alpha_bars is a cumulative product (torch.cumprod), not a sum",
    "ab_shifted": "alpha_bars is shifted by one step (starts at 1): alpha_bars[0] = alpha_0 already",
    # q_sample
    "no_sqrt": "no square roots: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps",
    "sqrt_noise": "the square root is missing on (1 - alpha_bar)",
    "sqrt_signal": "the square root is missing on alpha_bar",
    "swapped": "x0 and eps are swapped: the signal keeps sqrt(alpha_bar), the noise sqrt(1 - alpha_bar)",
    "ab_t_minus_one": "alpha_bar is taken at t - 1: use alpha_bars[t] (timesteps are indexed from 0)",
    "per_example_ab": "one alpha_bar per example: index alpha_bars with t, then reshape it to (B, 1, 1, 1) "
                      "so it broadcasts over channels and pixels",
    "first_ab": "one alpha_bar (of the first example) was used for the whole batch: index alpha_bars with all of t",
    # diffusion_loss
    "t_range": "torch.randint(0, T, (B,)): the upper bound is excluded",
    "t_per_example": "draw B timesteps, shape (B,), not one for the whole batch",
    "t_uniform": "torch.randint(0, T, (B,)); t = 0 (the least noisy step) must be drawn too",
    "implied_noise": "eps must be standard normal, drawn by torch.randn (not torch.rand), and x_t = "
                     "sqrt(alpha_bars[t]) x0 + sqrt(1 - alpha_bars[t]) eps, with the square roots",
    "predict_noise": "the model must be trained to predict the noise eps, not the clean image x0",
    "loss_summed": "the squared error must be averaged over all elements (F.mse_loss), not summed",
    "per_example_mean": "the squared error was averaged per example and summed over the batch: take the mean "
                        "over everything",
    "per_example_sum": "the squared error was summed per example and averaged over the batch: take the mean "
                       "over all elements (F.mse_loss)",
    "loss_graph": "compute the loss from the model's output with torch operations (no .item() or .detach())",
    "labels_not_passed": "the labels y must be passed to the model: model(x_t, t, y)",
    "labels_when_none": "without labels (y is None) call model(x_t, t): an unconditional model takes no y, "
                        "not even None",
    # ddpm_step
    "noise_by_variance": "the noise was scaled by the variance: multiply it by the standard deviation sqrt(variance)",
    "beta_variance": "the variance is beta_t here; the posterior's is beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)",
    "posterior_ratio": "the posterior variance's ratio is inverted: beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)",
    "mean_denominator": "the mean uses beta_t / (1 - alpha_bar_t): the denominator is sqrt(1 - alpha_bar_t)",
    "mean_alpha": "the mean divides by alpha_t: divide by sqrt(alpha_t)",
    "whole_noise": "the mean subtracts the whole noise sqrt(1 - alpha_bar_t) eps_hat: the network predicts the whole "
                   "noise, and one step removes only beta_t / sqrt(1 - alpha_bar_t) of it",
    "ddpm_shifted": "alpha_bar_{t-1} was taken at t (or alpha_bar_t at t - 1): a_t = alpha_bars[t], "
                    "a_prev = alpha_bars[t - 1]",
    "x0_hat": "x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t)",
    "noise_last_step": "noise was added at the last step (t = 0): return the mean there",
    "last_step": "at t = 0, alpha_bar_{t-1} = 1 (no alpha_bars[-1]: that is the last entry) and no noise is added",
    # ddim_step
    "direction_ab_t": "the direction to x_t uses sqrt(1 - alpha_bar_t): it is sqrt(1 - alpha_bar_prev) eps_hat",
    "ddim_no_sqrt": "the square roots are missing: x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps_hat",
    "ab_prev_late": "alpha_bar_prev was taken at t_prev + 1 (or t): it is alpha_bars[t_prev]",
    "ab_minus_one": "t_prev = -1 read alpha_bars[-1], the LAST entry: before the first step alpha_bar = 1, "
                    "so x_prev = x0_hat",
    "t_prev_negative": "when t_prev < 0, alpha_bar_prev = 1 and x_prev = x0_hat",
    "eta_ignored": "eta was ignored: sigma = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)",
    "sigma_direction": "sigma^2 must also be taken out of the direction term: sqrt(1 - a_prev - sigma^2) eps_hat",
    "noise_missing": "the noise term sigma * noise is missing",
    "noise_sigma2": "the noise was scaled by sigma^2: multiply it by sigma",
    # samplers
    "steps_downward": "the steps go from t = T-1 (pure noise) down to 0: for t in reversed(range(T))",
    "all_steps": "one step for every t in T-1, T-2, ..., 0, t = 0 included: reversed(range(T))",
    "t_batch": "give eps_fn the timestep as a (B,) int64 tensor: torch.full((B,), t, dtype=torch.long, "
               "device=device)",
    "first_draw": "the starting noise x_{T-1} is the first draw: x = torch.randn(shape, generator=generator)"
                  ".to(device), before any other",
    "fresh_noise": "draw a fresh noise for every step, noise = torch.randn(shape, generator=generator), after "
                   "the starting noise and in the order of the steps (not one noise reused for all steps)",
    "feed_back": "the x_prev a step returns is the x_t of the next step: x = x_prev inside the loop",
    "step_args": "pass the step its arguments in the stated order: ddpm_step(eps_hat, t, x_t, alpha_bars, noise), "
                 "with eps_hat = eps_fn(x_t, t_batch) and t the Python int of this step",
    "kept": "kept[t] = (the x_t given to the step at t, that step's x0_hat), both .cpu(), for each t in keep",
    "ddim_sequence": "step along steps = ddim_timesteps(T, num_steps): from steps[i] to t_prev = steps[i + 1]",
    "ddim_last_prev": "the last step goes to t_prev = -1 (before the first step, alpha_bar = 1), not to t_prev = 0",
    "ddim_eta_zero_draws": "with eta = 0 draw nothing after the starting noise (pass noise=None): "
                           "noise = torch.randn(...) if eta > 0 else None",
    "ddim_eta_passed": "pass eta and the fresh noise on: ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta, noise)",
    # timestep embedding
    "sin_first": "sin comes first here: the order is [cos(t w_0..), sin(t w_0..)]",
    "half_minus_one": "the frequencies are w_i = max_period ** (-i / half) with half = dim // 2 (not half - 1)",
    "over_dim": "the frequencies are w_i = max_period ** (-i / half) with half = dim // 2 (not dim)",
    "interleaved": "the cosines and sines are interleaved: concatenate all cosines, then all sines",
    "max_period_ignored": "max_period was ignored: the frequencies are w_i = max_period ** (-i / half), with the "
                          "max_period passed in",
    # ResBlock
    "resblock_params": "norm1, conv1 (3x3), time_proj (Linear), norm2, conv2 (3x3) and a 1x1 skip conv when "
                       "c_in != c_out",
    "resblock_names": "use the attribute names of the docstring: norm1, conv1, time_proj, norm2, conv2, skip",
    "resblock_order": "norm -> SiLU -> conv, add the projected SiLU(emb) per channel, norm -> SiLU -> conv, "
                      "add skip(x)",
    "norm1_groups": "norm1 ignored groups: nn.GroupNorm(groups, c_in)",
    "silu_emb": "the embedding is projected after a SiLU: time_proj(F.silu(emb)), neither time_proj(emb) nor "
                "F.silu(time_proj(emb))",
    "silu_conv2": "no SiLU before conv2: conv2(SiLU(norm2(h)))",
    "emb_after_conv2": "the embedding is added after conv1, before norm2 and conv2 (not after conv2)",
    # U-Net
    "unet_params": "follow the stated architecture: one ResBlock per level on the way down, two in the middle, "
                   "one per level on the way up (its input has the skip concatenated), emb_dim = 4 * ch",
    "unet_layers": "keep the layers, their sizes and the order of the levels of the docstring",
    "unet_timestep": "add the embedding of t to every ResBlock; no mixing across the batch",
    "unet_label": "add class_embedding(y) to the time embedding",
    "null_label_id": "y = None means the 'no label' id: y = torch.full_like(t, self.num_classes), the last row "
                     "of class_embedding",
    "null_as_zero": "y = None treated as digit 0: it means the 'no label' id, y = torch.full_like(t, self.num_classes)",
    "unet_computation": "same parameters but a different computation (output vs the reference with the same "
                        "weights): the order of skips, where the embedding is added, nearest-neighbour "
                        "upsampling before the conv",
    "skips_order": "the skips are taken in the wrong order: each up level takes the last skip pushed (skips.pop())",
    # guidance
    "drop_below": "drop where torch.rand(B) < p_uncond (not >=), and use null_label, not a fixed id",
    "stated_draw": "one draw u = torch.rand(B, generator=generator); drop where u < p_uncond",
    "labels_in_place": "labels overwritten in place (y[drop] = null_label): return a new tensor, "
                       "torch.where(drop, torch.full_like(y, null_label), y)",
    "guidance_inverted": "the formula is inverted: eps_u + s (eps_c - eps_u), with eps_c conditional, eps_u "
                         "unconditional",
    "scale_as_w": "the scale was used as Ho & Salimans' w: with scale s, eps = eps_u + s (eps_c - eps_u) = "
                  "(1 + w) eps_c - w eps_u for s = 1 + w",
    "null_not_zero": "the unconditional prediction must use null_label, not label 0",
    "guided_null_label": "use the null_label passed in for the unconditional half, not a fixed id",
}
# diffusers' ResnetBlock2D submodule names -> the chapter's ResBlock attribute names
DIFFUSERS_RESBLOCK_NAMES = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "time_proj", "norm2": "norm2",
                            "conv2": "conv2", "conv_shortcut": "skip"}


def _t(x, dtype=_F64) -> torch.Tensor:
    return torch.tensor(x, dtype=dtype)


def _call_keeping_inputs(c: Checks, fn, *args, names: tuple, inputs: str):
    """Call `fn(*args)` and fail if it changed one of its tensor arguments in place."""
    saved = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    out = c.call(fn, *args, inputs=inputs)
    for name, before, now in zip(names, saved, args):
        if isinstance(before, torch.Tensor):
            c.true(torch.equal(before, now), f"{getattr(fn, '__name__', 'the function')} modified its input {name} "
                   "in place", inputs=inputs, expected=before, got=now, hint=DIAGNOSES["inputs_in_place"])
    return out


def _cos2(u: float, s: float) -> float:
    return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2


# ----------------------------------------------------------------------------- 1 schedules

def check_schedules(linear_betas, cosine_betas, noise_schedule) -> None:
    c = Checks("schedules")
    refuse_stand_in(c, "linear_betas", linear_betas)
    refuse_stand_in(c, "cosine_betas", cosine_betas)
    refuse_stand_in(c, "noise_schedule", noise_schedule)
    inputs = "linear_betas(T=5, beta_1=0.1, beta_T=0.5)"
    b = c.call(linear_betas, T=5, beta_1=0.1, beta_T=0.5, inputs=inputs)
    c.tensor("betas", b, shape=(5,), dtype=_F64, inputs=inputs)
    c.close("betas", b, _t([0.1, 0.2, 0.3, 0.4, 0.5]), atol=1e-12, inputs=inputs,
            mistakes={DIAGNOSES["linear_args"]: torch.linspace(1e-4, 0.02, 5, dtype=_F64)},
            hint=DIAGNOSES["linspace"])
    b = c.call(linear_betas, inputs="linear_betas() with the defaults")
    c.tensor("betas", b, shape=(1000,), dtype=_F64, inputs="linear_betas()")
    c.close("betas[[0, 1, 999]]", b[[0, 1, 999]], _t([1e-4, 1e-4 + 0.0199 / 999, 0.02]), atol=1e-12,
            inputs="linear_betas(): defaults T=1000, beta_1=1e-4, beta_T=0.02")

    # Cosine, T = 4, s = 0: f(u) = cos(u pi / 2)^2 = 1, cos^2(pi/8), 1/2, sin^2(pi/8), 0.
    f = [_cos2(k / 4, 0.0) for k in range(5)]
    want = [1 - f[k + 1] / f[k] for k in range(3)] + [0.999]
    inputs = "cosine_betas(T=4, s=0.0): f = cos(u pi/2)^2 at u = 0, 1/4, 1/2, 3/4, 1"
    b = c.call(cosine_betas, T=4, s=0.0, inputs=inputs)
    c.tensor("betas", b, shape=(4,), dtype=_F64, inputs=inputs)
    c.true(bool(((b > 0) & (b <= 1)).all()), "every beta must lie in (0, 1]", inputs=inputs, got=b,
           hint=DIAGNOSES["ratio_inverted"])
    c.close("betas", b, _t(want), atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["not_clipped"]: _t(want[:3] + [1.0]),
        DIAGNOSES["ratio_inverted"]: _t([min(1 - f[k] / f[k + 1], 0.999)
                                                                      for k in range(3)] + [0.999]),
    })
    b = c.call(cosine_betas, inputs="cosine_betas() with the defaults")
    c.tensor("betas", b, shape=(1000,), dtype=_F64, inputs="cosine_betas()")
    s = 0.008
    want = _t([min(1 - _cos2((k + 1) / 1000, s) / _cos2(k / 1000, s), 0.999) for k in (0, 500, 999)])
    c.close("betas[[0, 500, 999]]", b[[0, 500, 999]], want, atol=1e-12,
            inputs="cosine_betas(): defaults T=1000, s=0.008, max_beta=0.999",
            hint=DIAGNOSES["cosine_offset"])

    inputs = "noise_schedule(betas = [0.1, 0.2, 0.5])"
    out = c.call(noise_schedule, _t([0.1, 0.2, 0.5]), inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "noise_schedule must return a pair (alphas, alpha_bars)",
           inputs=inputs, got=type(out).__name__)
    alphas, alpha_bars = out
    c.tensor("alphas", alphas, shape=(3,), dtype=_F64, inputs=inputs)
    c.close("alphas", alphas, _t([0.9, 0.8, 0.5]), atol=1e-12, inputs=inputs, hint=DIAGNOSES["alphas"])
    c.tensor("alpha_bars", alpha_bars, shape=(3,), dtype=_F64, inputs=inputs)
    c.close("alpha_bars", alpha_bars, _t([0.9, 0.72, 0.36]), atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["cumprod_betas"]: _t([0.1, 0.02, 0.01]),
        DIAGNOSES["cumsum"]: _t([0.9, 1.7, 2.2]),
        DIAGNOSES["ab_shifted"]: _t([1.0, 0.9, 0.72]),
    })
    c.done()


# ----------------------------------------------------------------------------- 2 q_sample

def check_q_sample(q_sample) -> None:
    c = Checks("q_sample")
    refuse_stand_in(c, "q_sample", q_sample)
    ab = _t([0.64, 0.36, 0.01])
    x0 = _t([[1.0, -1.0], [2.0, 0.5], [1.0, 1.0]])
    eps = _t([[0.5, 0.5], [-1.0, 2.0], [3.0, -3.0]])
    t = torch.tensor([0, 1, 2])
    inputs = "x0 = [[1, -1], [2, .5], [1, 1]], eps = [[.5, .5], [-1, 2], [3, -3]], t = [0, 1, 2], " \
             "alpha_bars = [.64, .36, .01]"
    x_t = _call_keeping_inputs(c, q_sample, x0, t, eps, ab, names=("x0", "t", "eps", "alpha_bars"), inputs=inputs)
    c.tensor("x_t", x_t, shape=(3, 2), dtype=_F64, inputs=inputs)
    sq = [(0.8, 0.6), (0.6, 0.8), (0.1, math.sqrt(0.99))]

    def mix(coef):
        return _t([[a * x + b * e for x, e in zip(x0[i].tolist(), eps[i].tolist())] for i, (a, b) in enumerate(coef)])

    c.close("x_t", x_t, mix(sq), atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["no_sqrt"]: mix([(a, 1 - a) for a in (0.64, 0.36, 0.01)]),
        DIAGNOSES["sqrt_noise"]: mix([(a, 1 - a * a) for a, _ in sq]),
        DIAGNOSES["sqrt_signal"]: mix([(a * a, b) for a, b in sq]),
        DIAGNOSES["swapped"]: mix([(b, a) for a, b in sq]),
        DIAGNOSES["ab_t_minus_one"]: mix([sq[2], sq[0], sq[1]]),
    })
    # Images, float32 data with float64 alpha_bars: x_t keeps the data's dtype and shape.
    x0 = torch.linspace(-1, 1, 2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    eps = torch.linspace(1, -1, 2 * 16, dtype=torch.float32).view(2, 1, 4, 4) * 2
    t = torch.tensor([1, 0])
    inputs = "x0, eps (2, 1, 4, 4) float32, t = [1, 0], alpha_bars = [.64, .36, .01] float64"
    x_t = c.call(q_sample, x0, t, eps, ab, inputs=inputs)
    c.tensor("x_t", x_t, shape=(2, 1, 4, 4), dtype=torch.float32, inputs=inputs)
    want = torch.cat([0.6 * x0[:1] + 0.8 * eps[:1], 0.8 * x0[1:] + 0.6 * eps[1:]])
    c.close("x_t", x_t, want, atol=1e-6, inputs=inputs,
            hint=DIAGNOSES["per_example_ab"])
    c.done()


# ----------------------------------------------------------------------------- 3 the loss

class _Recorder(nn.Module):
    """A stand-in noise predictor: records its inputs, returns 0.5 x_t + w * t / 10. With
    labelled=False it is an unconditional model, forward(x_t, t) only, as the contract allows."""

    def __init__(self, labelled: bool = True):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.3, dtype=_F64))
        self.calls = []
        self.labelled = labelled

    def forward(self, x_t, t, *y, **named):
        y = (*y, *named.values())
        if y and not self.labelled:
            raise TypeError(DIAGNOSES["labels_when_none"])
        y = y[0] if y else None
        self.calls.append((x_t.detach().clone(), t.detach().clone(), None if y is None else y.detach().clone()))
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        return 0.5 * x_t + self.w * t.to(x_t.dtype).view(shape) / 10


def check_diffusion_loss(diffusion_loss) -> None:
    c = Checks("diffusion_loss")
    refuse_stand_in(c, "diffusion_loss", diffusion_loss)
    T = 10
    ab = torch.linspace(0.95, 0.05, T, dtype=_F64)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 2, (256, 1, 4, 4), generator=g).to(_F64) * 2 - 1  # +-1 pixels
    inputs = "x0 (256, 1, 4, 4) of +-1, alpha_bars = linspace(0.95, 0.05, 10), a stand-in model " \
             "eps_hat = 0.5 x_t + 0.03 t"
    # first an unconditional model: forward(x_t, t) only; then one that also takes labels
    c.call(diffusion_loss, _Recorder(labelled=False), x0, ab, inputs=inputs + " taking (x_t, t) only")
    model = _Recorder()
    loss = c.call(diffusion_loss, model, x0, ab, inputs=inputs)
    c.tensor("loss", loss, shape=(), dtype=_F64, inputs=inputs)
    c.true(len(model.calls) == 1, "the model should be called exactly once, on the whole batch", inputs=inputs,
           got=f"{len(model.calls)} calls")
    x_t, t, _ = model.calls[0]
    c.tensor("x_t passed to the model", x_t, shape=tuple(x0.shape), inputs=inputs)
    c.tensor("t passed to the model", t, shape=(256,), dtype=torch.int64, inputs=inputs)
    c.true(bool(((t >= 0) & (t < T)).all()), "t must lie in {0, ..., T-1}", inputs=inputs,
           got=f"t from {int(t.min())} to {int(t.max())}", hint=DIAGNOSES["t_range"])
    c.true(len(t.unique()) > 1, "every example needs its own t", inputs=inputs, got=f"all t = {int(t[0])}",
           hint=DIAGNOSES["t_per_example"])
    a = ab[t].view(-1, 1, 1, 1)
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()  # the noise implied by x_t
    m, s = eps.mean().item(), eps.std().item()
    c.true(abs(m) < 0.1 and abs(s - 1) < 0.1, "the noise in x_t is not standard normal", inputs=inputs,
           expected="x_t = sqrt(alpha_bars[t]) x0 + sqrt(1 - alpha_bars[t]) eps with eps ~ N(0, I): "
                    "implied eps with mean 0, std 1",
           got=f"implied eps with mean {m:.3f}, std {s:.3f}",
           hint=DIAGNOSES["implied_noise"])
    eps_hat = 0.5 * x_t + 0.03 * t.to(_F64).view(-1, 1, 1, 1)
    c.close("loss", loss, ((eps_hat - eps) ** 2).mean(), atol=1e-9, inputs=inputs, mistakes={
        DIAGNOSES["predict_noise"]: ((eps_hat - x0) ** 2).mean(),
        DIAGNOSES["loss_summed"]: ((eps_hat - eps) ** 2).sum(),
        DIAGNOSES["per_example_mean"]: ((eps_hat - eps) ** 2).flatten(1).mean(1).sum(),
        DIAGNOSES["per_example_sum"]: ((eps_hat - eps) ** 2).flatten(1).sum(1).mean(),
    })
    c.call(loss.backward, inputs=inputs)
    c.true(model.w.grad is not None, "no gradient reached the model's parameters", inputs=inputs,
           hint=DIAGNOSES["loss_graph"])
    # Every t in {0, ..., T-1} is drawn, uniformly.
    seen = torch.cat([t] + [c.call(lambda: (diffusion_loss(model, x0, ab), model.calls[-1][1])[1],
                                   inputs=inputs) for _ in range(7)])
    counts = torch.bincount(seen, minlength=T)
    c.true(bool((counts > 0).all()) and counts.max() < 2.0 * counts.float().mean(),
           "t is not drawn uniformly from {0, ..., T-1}", inputs=inputs + ", 8 calls",
           expected=f"each of the {T} values about {len(seen) // T} times", got=f"counts {counts.tolist()}",
           hint=DIAGNOSES["t_uniform"])
    # Class labels are passed on to the model.
    y = torch.arange(256) % 10
    model.calls.clear()
    c.call(diffusion_loss, model, x0, ab, y=y, inputs=inputs + ", y = arange(256) % 10")
    got_y = model.calls[0][2] if model.calls else None
    c.true(got_y is not None and torch.equal(got_y, y), DIAGNOSES["labels_not_passed"],
           inputs="y = arange(256) % 10", got="no labels" if got_y is None else f"labels {got_y[:6].tolist()}...")
    # Every draw comes from the generator: the same seed gives the same draws, the global RNG is left alone.
    runs = []
    for _ in range(2):
        model.calls.clear()
        before = torch.random.get_rng_state()
        c.call(diffusion_loss, model, x0, ab, generator=torch.Generator().manual_seed(11),
               inputs=inputs + ", generator = torch.Generator().manual_seed(11)")
        c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used: every "
               "draw must come from the generator passed in", inputs="generator given", hint=DIAGNOSES["global_rng"])
        runs.append(model.calls[0][:2])
    c.true(torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1]),
           "two calls with generators of the same seed gave different draws", inputs="generator given twice",
           hint=DIAGNOSES["global_rng"])
    c.done()


# ----------------------------------------------------------------------------- 4 DDPM step

_AB3 = [0.9, 0.72, 0.36]  # alpha_bars of betas [0.1, 0.2, 0.5]


def check_ddpm_step(ddpm_step) -> None:
    c = Checks("ddpm_step")
    refuse_stand_in(c, "ddpm_step", ddpm_step)
    ab = _t(_AB3)
    x = _t([[1.0, -2.0, 0.5]])
    e = _t([[0.5, 1.0, -1.0]])
    z = _t([[1.0, -1.0, 2.0]])
    # t = 2: a_t = .36, a_prev = .72, alpha = .5, beta = .5, variance = .5 * .28 / .64.
    inputs = "t = 2, alpha_bars = [.9, .72, .36], x_t = [[1, -2, .5]], eps_hat = [[.5, 1, -1]], noise = [[1, -1, 2]]"
    out = _call_keeping_inputs(c, ddpm_step, e, 2, x, ab, z, names=("eps_hat", "t", "x_t", "alpha_bars", "noise"),
                               inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "ddpm_step must return a pair (x_prev, x0_hat)", inputs=inputs,
           got=type(out).__name__)
    x_prev, x0_hat = out
    c.tensor("x_prev", x_prev, shape=(1, 3), dtype=_F64, inputs=inputs)
    c.tensor("x0_hat", x0_hat, shape=(1, 3), dtype=_F64, inputs=inputs)
    mean = (x - 0.5 / 0.8 * e) / math.sqrt(0.5)
    var = 0.5 * 0.28 / 0.64
    c.close("x_prev", x_prev, mean + math.sqrt(var) * z, atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["noise_by_variance"]: mean + var * z,
        DIAGNOSES["beta_variance"]: mean + math.sqrt(0.5) * z,
        DIAGNOSES["mean_denominator"]: (x - 0.5 / 0.64 * e) / math.sqrt(0.5) + math.sqrt(var) * z,
        DIAGNOSES["mean_alpha"]: (x - 0.5 / 0.8 * e) / 0.5 + math.sqrt(var) * z,
        DIAGNOSES["whole_noise"]: (x - 0.8 * e) / math.sqrt(0.5) + math.sqrt(var) * z,
        DIAGNOSES["ddpm_shifted"]: (x - (1 - 0.72 / 0.9) / math.sqrt(0.28) * e) / math.sqrt(0.72 / 0.9)
            + math.sqrt((1 - 0.72 / 0.9) * 0.1 / 0.28) * z,
    })
    c.close("x0_hat", x0_hat, (x - 0.8 * e) / 0.6, atol=1e-12, inputs=inputs,
            hint=DIAGNOSES["x0_hat"])
    # t = 0: the last step returns the mean, no noise; a_prev = 1.
    inputs = "t = 0 (the last step), alpha_bars = [.9, .72, .36], same x_t, eps_hat, noise"
    out = c.call(ddpm_step, e, 0, x, ab, z, inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "ddpm_step must return a pair (x_prev, x0_hat)", inputs=inputs)
    x_prev, x0_hat = out
    mean0 = (x - 0.1 / math.sqrt(0.1) * e) / math.sqrt(0.9)
    c.close("x_prev at t = 0", x_prev, mean0, atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["noise_last_step"]: mean0 + math.sqrt(0.1) * z,
    }, hint=DIAGNOSES["last_step"])
    c.close("x0_hat at t = 0", x0_hat, (x - math.sqrt(0.1) * e) / math.sqrt(0.9), atol=1e-12, inputs=inputs)
    # Image batches, float32.
    g = torch.Generator().manual_seed(1)
    x, e, z = (torch.randn(2, 1, 3, 3, generator=g) for _ in range(3))
    inputs = "x_t, eps_hat, noise (2, 1, 3, 3) float32, t = 1, alpha_bars float64"
    out = c.call(ddpm_step, e, torch.tensor(1), x, ab, z, inputs=inputs + " (t given as a 0-d tensor)")
    c.tensor("x_prev", out[0], shape=(2, 1, 3, 3), dtype=torch.float32, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 5 DDIM step

def check_ddim_step(ddim_step) -> None:
    c = Checks("ddim_step")
    refuse_stand_in(c, "ddim_step", ddim_step)
    ab = _t(_AB3)
    x = _t([[1.0, -2.0, 0.5]])
    e = _t([[0.5, 1.0, -1.0]])
    z = _t([[1.0, -1.0, 2.0]])
    x0 = (x - 0.8 * e) / 0.6
    inputs = "t = 2, t_prev = 0, eta = 0, alpha_bars = [.9, .72, .36], x_t = [[1, -2, .5]], eps_hat = [[.5, 1, -1]]"
    out = c.call(ddim_step, e, 2, 0, x, ab, inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "ddim_step must return a pair (x_prev, x0_hat)", inputs=inputs,
           got=type(out).__name__)
    x_prev, x0_hat = out
    c.tensor("x_prev", x_prev, shape=(1, 3), dtype=_F64, inputs=inputs)
    c.close("x0_hat", x0_hat, x0, atol=1e-12, inputs=inputs)
    c.close("x_prev", x_prev, math.sqrt(0.9) * x0 + math.sqrt(0.1) * e, atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["direction_ab_t"]: math.sqrt(0.9) * x0 + 0.8 * e,
        DIAGNOSES["ddim_no_sqrt"]: 0.9 * x0 + 0.1 * e,
        DIAGNOSES["ab_prev_late"]: math.sqrt(0.72) * x0 + math.sqrt(0.28) * e,
    })
    inputs = "t = 2, t_prev = -1 (the last step), eta = 0, same inputs"
    out = c.call(ddim_step, e, 2, -1, x, ab, inputs=inputs)
    c.close("x_prev at t_prev = -1", out[0], x0, atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["ab_minus_one"]: math.sqrt(0.36) * x0 + 0.8 * e},
        hint=DIAGNOSES["t_prev_negative"])
    # eta = 1, t -> t - 1 has DDPM's posterior variance: sigma^2 = .28/.64 * (1 - .36/.72) = .21875.
    inputs = "t = 2, t_prev = 1, eta = 1, noise = [[1, -1, 2]]"
    out = _call_keeping_inputs(c, ddim_step, e, 2, 1, x, ab, 1.0, z,
                               names=("eps_hat", "t", "t_prev", "x_t", "alpha_bars", "eta", "noise"), inputs=inputs)
    var = 0.28 / 0.64 * 0.5
    want = math.sqrt(0.72) * x0 + math.sqrt(0.28 - var) * e + math.sqrt(var) * z
    c.close("x_prev with eta = 1", out[0], want, atol=1e-12, inputs=inputs, mistakes={
        DIAGNOSES["eta_ignored"]: math.sqrt(0.72) * x0 + math.sqrt(0.28) * e,
        DIAGNOSES["sigma_direction"]: math.sqrt(0.72) * x0 + math.sqrt(0.28) * e + math.sqrt(var) * z,
        DIAGNOSES["noise_missing"]: math.sqrt(0.72) * x0 + math.sqrt(0.28 - var) * e,
        DIAGNOSES["noise_sigma2"]: math.sqrt(0.72) * x0 + math.sqrt(0.28 - var) * e
        + var * z,
    })
    inputs = "t = 2, t_prev = 0, eta = 0, noise=None (eta = 0 must not need noise); (2, 1, 3, 3) float32"
    g = torch.Generator().manual_seed(2)
    xi, ei = torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)
    out = c.call(ddim_step, ei, 2, 0, xi, ab, 0.0, None, inputs=inputs)
    c.tensor("x_prev", out[0], shape=(2, 1, 3, 3), dtype=torch.float32, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 5b the samplers

def _step_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) or isinstance(v, torch.Tensor) and v.numel() == 1


# What each argument of ddpm_step / ddim_step is, as their contracts say (checked before the stand-in runs).
_STEP_ARGS = {
    "x_t": (lambda v: isinstance(v, torch.Tensor) and v.dim() > 0, "the current x_t, a tensor like the samples"),
    "eps_hat": (lambda v: isinstance(v, torch.Tensor) and v.dim() > 0, "eps_fn's prediction, a tensor like x_t"),
    "t": (_step_number, "the step's timestep as one number (eps_fn takes it as a (B,) tensor; the step takes the int)"),
    "t_prev": (_step_number, "the next timestep as one number (-1 after the last step)"),
    "alpha_bars": (lambda v: isinstance(v, torch.Tensor) and v.dim() == 1, "the (T,) schedule"),
    "eta": (_step_number, "a number (0: deterministic DDIM, 1: DDPM-like)"),
    "noise": (lambda v: v is None or isinstance(v, torch.Tensor), "a tensor like x_t, or None"),
}


def _checked_step_args(fn):
    """A stand-in step that first checks its arguments against the contract, so that a call with
    arguments in the wrong order is told so in the learner's terms (not as an error deep inside)."""
    signature, name = inspect.signature(fn), fn.__name__.replace("stand_in_", "")

    @functools.wraps(fn)
    def step(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}{signature}: {e}") from None
        for param, value in bound.arguments.items():
            if (want := _STEP_ARGS.get(param)) and not want[0](value):
                raise TypeError(f"{name} got {param} = {describe(value)}, but {param} is {want[1]}: check the order "
                                f"of the arguments of {name}{signature}, or pass them by name")
        return fn(*args, **kwargs)
    return step


@_checked_step_args
def stand_in_ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta=0.0, noise=None):
    """diffusers' DDIMScheduler.step from t to t_prev, with ddim_step's signature: the sampler
    checks use it in place of your ddim_step (it has its own check), so that a mistake there
    counts once. (A two-entry schedule [alpha_bar_{t_prev}, alpha_bar_t] makes diffusers step
    exactly from t to t_prev; t_prev = -1 is its own "before the first step", alpha_bar = 1.)"""
    from diffusers import DDIMScheduler
    t, t_prev = int(t), int(t_prev)
    if eta > 0 and t_prev >= 0 and noise is None:
        raise ValueError(f"ddim_step got eta = {eta:g} and noise=None (at t = {t}): draw a fresh noise for the step")
    lib = DDIMScheduler(num_train_timesteps=2, clip_sample=False, set_alpha_to_one=True)
    lib.set_timesteps(2)
    a_t = alpha_bars[t].detach().double().cpu()
    lib.alphas_cumprod = torch.stack([alpha_bars[t_prev].detach().double().cpu() if t_prev >= 0 else a_t, a_t])
    out = lib.step(eps_hat, 1 if t_prev >= 0 else 0, x_t, eta=float(eta),
                   variance_noise=torch.zeros_like(x_t) if noise is None else noise)
    return out.prev_sample, out.pred_original_sample


@_checked_step_args
def stand_in_ddpm_step(eps_hat, t, x_t, alpha_bars, noise):
    """DDPM's step as diffusers computes it, with ddpm_step's signature: DDIMScheduler.step at
    eta = 1 from t to t - 1, which is DDPM's posterior step (Song et al. 2021). The sampler
    check uses it in place of your ddpm_step."""
    t = int(t)
    if t > 0 and noise is None:
        raise ValueError(f"ddpm_step got noise=None at t = {t}: draw a fresh noise for every step")
    return stand_in_ddim_step(eps_hat, t, t - 1, x_t, alpha_bars, 1.0, noise if t > 0 else None)


class _Recorded:
    """Wraps a step function and records each call: its arguments by name (tensors cloned)
    and what it returned."""

    def __init__(self, fn):
        self.fn, self.signature, self.calls = fn, inspect.signature(fn), []
        self.__name__ = fn.__name__

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)  # the stand-ins check their arguments (_checked_step_args)
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.calls.append(({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in bound.arguments.items()},
                           out))
        return out


class _RecordingEps:
    """A stand-in noise predictor, eps_fn(x_t, t) = tanh(0.5 x_t + t / 10) (t per example),
    that records what it is given and what it returned."""

    def __init__(self, record: bool = True):
        self.calls, self.record = [], record

    def __call__(self, x, t):
        tt = torch.as_tensor(t).to(x.dtype)
        out = torch.tanh(0.5 * x + (tt.view(-1, *([1] * (x.dim() - 1))) if tt.dim() else tt) / 10)
        if self.record:
            self.calls.append((x.clone(), t.clone() if isinstance(t, torch.Tensor) else t, out.clone()))
        return out


def _t_value(t) -> int | None:
    """The timestep a call was given: the first entry of a tensor, or the number."""
    try:
        return int(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else int(t)
    except (TypeError, ValueError, RuntimeError, IndexError):
        return None


def _check_loop_calls(c: Checks, eps_fn: _RecordingEps, step: _Recorded, want_t: list, B: int, inputs: str,
                      order_hint: str) -> None:
    """What the loops share: eps_fn once per step at the stated timesteps as (B,) int64 tensors,
    the step called once per step on eps_fn's output, and its x_prev fed back."""
    seen = [_t_value(t) for _, t, _ in eps_fn.calls]
    c.true(seen == want_t, f"eps_fn should be called once per step, at t = {want_t} in that order", inputs=inputs,
           got=f"called at t = {seen}", hint=DIAGNOSES["steps_downward"] if seen == want_t[::-1] else order_hint)
    for _, t, _ in eps_fn.calls:
        c.true(isinstance(t, torch.Tensor) and tuple(t.shape) == (B,) and t.dtype == torch.int64,
               "eps_fn must get the timestep as a (B,) int64 tensor, one entry per example", inputs=inputs,
               expected=f"shape ({B},), torch.int64", got=describe(t), hint=DIAGNOSES["t_batch"])
    name = step.__name__.replace("stand_in_", "")
    c.true(len(step.calls) == len(want_t), f"{name} should be called once per step", inputs=inputs,
           expected=f"{len(want_t)} calls", got=f"{len(step.calls)} calls")
    for k, ((x_in, _, eps_out), (args, out)) in enumerate(zip(eps_fn.calls, step.calls)):
        where = f"{inputs}; the step at t = {want_t[k]}"
        c.true(_t_value(args["t"]) == want_t[k], f"{name} must get the t of its step, as eps_fn did", inputs=where,
               got=f"t = {args['t']!r}", hint=DIAGNOSES["step_args"])
        c.close(f"eps_hat given to {name}", args["eps_hat"], eps_out, atol=1e-7, inputs=where,
                hint=DIAGNOSES["step_args"])
        c.close(f"x_t given to {name}", args["x_t"], x_in, atol=1e-7, inputs=where, hint=DIAGNOSES["step_args"])
        if k + 1 < len(eps_fn.calls):
            c.close("x_t of the next step", eps_fn.calls[k + 1][0], out[0], atol=1e-7, inputs=where,
                    mistakes={DIAGNOSES["feed_back"]: x_in}, hint=DIAGNOSES["feed_back"])


def _ddpm_loop(eps_fn, shape, alpha_bars, seed) -> torch.Tensor:
    """diffusers' DDPMScheduler over all T steps, its noise drawn from a generator of `seed`."""
    from diffusers import DDPMScheduler
    prev = torch.cat([torch.ones(1, dtype=_F64), alpha_bars[:-1].double()])
    lib = DDPMScheduler(num_train_timesteps=len(alpha_bars), trained_betas=(1 - alpha_bars.double() / prev).tolist(),
                        clip_sample=False)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    for t in lib.timesteps:
        x = lib.step(eps_fn(x, torch.full((shape[0],), int(t))), t, x, generator=g).prev_sample
    return x


def _ddim_loop(eps_fn, shape, alpha_bars, num_steps, eta, seed) -> torch.Tensor:
    """diffusers' DDIMScheduler ("trailing" spacing, alpha_bar = 1 before the first step) over
    num_steps steps, its noise drawn from a generator of `seed` (for T divisible by num_steps,
    where its steps are those of ddim_timesteps)."""
    from diffusers import DDIMScheduler
    prev = torch.cat([torch.ones(1, dtype=_F64), alpha_bars[:-1].double()])
    lib = DDIMScheduler(num_train_timesteps=len(alpha_bars), trained_betas=(1 - alpha_bars.double() / prev).tolist(),
                        clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    lib.set_timesteps(num_steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    for t in lib.timesteps:
        x = lib.step(eps_fn(x, torch.full((shape[0],), int(t))), t, x, eta=eta, generator=g).prev_sample
    return x


def check_sample_ddpm(sample_ddpm) -> None:
    """Your ddpm_step is replaced by diffusers' step while this runs (it has its own check)."""
    refuse_stand_in(Checks("sample_ddpm"), "sample_ddpm", sample_ddpm)
    step = _Recorded(stand_in_ddpm_step)
    with substituted(sample_ddpm, ddpm_step=step):
        _check_sample_ddpm(sample_ddpm, step)


def _check_sample_ddpm(sample_ddpm, step: _Recorded) -> None:
    c = Checks("sample_ddpm")
    ab = _t([0.9, 0.72, 0.36, 0.1])
    shape, keep = (3, 2), (3, 1)
    eps_fn = _RecordingEps()
    inputs = "T = 4, alpha_bars = [.9, .72, .36, .1], shape = (3, 2), a stand-in eps_fn = tanh(0.5 x_t + t / 10), " \
             "generator = torch.Generator().manual_seed(7), keep = (3, 1), device = 'cpu'"
    before = torch.random.get_rng_state()
    out = c.call(sample_ddpm, eps_fn, shape, ab, torch.Generator().manual_seed(7), keep=keep, device="cpu",
                 inputs=inputs)
    c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used: every draw "
           "must come from the generator passed in", inputs=inputs, hint=DIAGNOSES["global_rng"])
    c.true(isinstance(out, tuple) and len(out) == 2, "sample_ddpm must return a pair (x, kept)", inputs=inputs,
           got=describe(out))
    x, kept = out
    _check_loop_calls(c, eps_fn, step, [3, 2, 1, 0], 3, inputs, DIAGNOSES["all_steps"])
    g = torch.Generator().manual_seed(7)
    draws = [torch.randn(shape, generator=g) for _ in range(5)]  # x_{T-1}, then one noise per step
    c.close("the first x_t given to eps_fn", eps_fn.calls[0][0], draws[0], atol=1e-7, inputs=inputs,
            mistakes={DIAGNOSES["first_draw"]: draws[1]}, hint=DIAGNOSES["first_draw"])
    for k, (args, _) in enumerate(step.calls[:3]):  # t = 3, 2, 1 use their noise
        c.close(f"the noise given to ddpm_step at t = {3 - k}", args["noise"], draws[k + 1], atol=1e-7,
                inputs=inputs + " (draws replayed from a generator of the same seed)",
                mistakes={DIAGNOSES["fresh_noise"]: draws[1]}, hint=DIAGNOSES["fresh_noise"])
    c.tensor("x", x, shape=shape, dtype=torch.float32, inputs=inputs)
    c.close("x (the result of the last step, t = 0)", x, step.calls[-1][1][0], atol=1e-7, inputs=inputs)
    c.true(isinstance(kept, dict) and sorted(kept) == [1, 3], "kept must have one entry per t in keep",
           inputs=inputs, expected="keys [1, 3]", got=sorted(kept) if isinstance(kept, dict) else describe(kept),
           hint=DIAGNOSES["kept"])
    for k, t in ((0, 3), (2, 1)):
        pair = kept[t]
        c.true(isinstance(pair, tuple) and len(pair) == 2, f"kept[{t}] must be a pair (x_t, x0_hat)", inputs=inputs,
               got=describe(pair), hint=DIAGNOSES["kept"])
        c.close(f"kept[{t}][0], x_t at t = {t}", pair[0], eps_fn.calls[k][0], atol=1e-7, inputs=inputs,
                mistakes={DIAGNOSES["kept"]: step.calls[k][1][0]}, hint=DIAGNOSES["kept"])
        c.close(f"kept[{t}][1], x0_hat at t = {t}", pair[1], step.calls[k][1][1], atol=1e-7, inputs=inputs,
                hint=DIAGNOSES["kept"])
        c.true(pair[0].device.type == "cpu" and pair[1].device.type == "cpu", f"kept[{t}] must be on the CPU",
               inputs=inputs, hint=DIAGNOSES["kept"])
    c.close("x (vs diffusers' DDPMScheduler loop, same generator seed)", x, _ddpm_loop(_RecordingEps(False), shape,
            ab, 7), atol=1e-5, inputs=inputs)
    # A batch of one image, 8 steps.
    ab = torch.cumprod(1 - torch.linspace(0.05, 0.4, 8, dtype=_F64), 0)
    shape = (1, 1, 2, 3)
    inputs = "T = 8, alpha_bars of betas linspace(0.05, 0.4, 8), shape = (1, 1, 2, 3), the same eps_fn, seed 8"
    step.calls.clear()
    out = c.call(sample_ddpm, _RecordingEps(False), shape, ab, torch.Generator().manual_seed(8), inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "sample_ddpm must return a pair (x, kept)", inputs=inputs)
    c.tensor("x", out[0], shape=shape, dtype=torch.float32, inputs=inputs)
    c.close("x (vs diffusers' DDPMScheduler loop, same generator seed)", out[0],
            _ddpm_loop(_RecordingEps(False), shape, ab, 8), atol=1e-5, inputs=inputs)
    c.true(out[1] == {}, "with keep left at its default, kept is empty", inputs=inputs, got=describe(out[1]))
    c.done()


def check_sample_ddim(sample_ddim) -> None:
    """Your ddim_step is replaced by diffusers' step while this runs (it has its own check)."""
    refuse_stand_in(Checks("sample_ddim"), "sample_ddim", sample_ddim)
    step = _Recorded(stand_in_ddim_step)
    with substituted(sample_ddim, ddim_step=step):
        _check_sample_ddim(sample_ddim, step)


def _check_sample_ddim(sample_ddim, step: _Recorded) -> None:
    c = Checks("sample_ddim")
    ab = torch.linspace(0.99, 0.05, 10, dtype=_F64)
    shape = (2, 3)
    eps_fn = _RecordingEps()
    inputs = "T = 10, alpha_bars = linspace(0.99, 0.05, 10), num_steps = 3 (ddim_timesteps(10, 3) = [9, 6, 2]), " \
             "eta = 0, shape = (2, 3), a stand-in eps_fn = tanh(0.5 x_t + t / 10), " \
             "generator = torch.Generator().manual_seed(9), device = 'cpu'"
    g = torch.Generator().manual_seed(9)
    before = torch.random.get_rng_state()
    x = c.call(sample_ddim, eps_fn, shape, ab, 3, g, eta=0.0, device="cpu", inputs=inputs)
    c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used: every draw "
           "must come from the generator passed in", inputs=inputs, hint=DIAGNOSES["global_rng"])
    _check_loop_calls(c, eps_fn, step, [9, 6, 2], 2, inputs, DIAGNOSES["ddim_sequence"])
    pairs = [(_t_value(a["t"]), _t_value(a["t_prev"])) for a, _ in step.calls]
    c.true(pairs == [(9, 6), (6, 2), (2, -1)], "the steps go 9 -> 6, 6 -> 2 and 2 -> -1", inputs=inputs,
           got=" , ".join(f"{a} -> {b}" for a, b in pairs),
           hint=DIAGNOSES["ddim_last_prev"] if pairs[:2] == [(9, 6), (6, 2)] else DIAGNOSES["ddim_sequence"])
    first = torch.randn(shape, generator=torch.Generator().manual_seed(9))
    c.close("the first x_t given to eps_fn", eps_fn.calls[0][0], first, atol=1e-7, inputs=inputs,
            hint=DIAGNOSES["first_draw"])
    for a, _ in step.calls:
        c.true(a["eta"] == 0, "ddim_step must get the eta passed in", inputs=inputs, got=f"eta = {a['eta']!r}",
               hint=DIAGNOSES["ddim_eta_passed"])
    after = torch.Generator().manual_seed(9)
    torch.randn(shape, generator=after)
    c.true(torch.equal(g.get_state(), after.get_state()), "with eta = 0, sample_ddim should draw the starting "
           "noise and nothing else", inputs=inputs, hint=DIAGNOSES["ddim_eta_zero_draws"])
    c.tensor("x", x, shape=shape, dtype=torch.float32, inputs=inputs)
    c.close("x (the result of the last step, to t_prev = -1)", x, step.calls[-1][1][0], atol=1e-7, inputs=inputs)
    again = c.call(sample_ddim, _RecordingEps(False), shape, ab, 3, torch.Generator().manual_seed(9), eta=0.0,
                   device="cpu", inputs=inputs + ", called again")
    c.close("x from a second call with the same seed (eta = 0 is deterministic)", again, x, atol=0, rtol=0,
            inputs=inputs)
    # eta = 1 and 0.5 against diffusers' DDIMScheduler (T = 12, 3 steps: 11 -> 7 -> 3 -> -1, as ddim_timesteps).
    ab = torch.cumprod(1 - torch.linspace(0.02, 0.3, 12, dtype=_F64), 0)
    shape = (1, 1, 3, 2)
    for eta in (1.0, 0.5):
        inputs = f"T = 12, alpha_bars of betas linspace(0.02, 0.3, 12), num_steps = 3, eta = {eta:g}, " \
                 "shape = (1, 1, 3, 2), the same eps_fn, generator seeded 12"
        step.calls.clear()
        before = torch.random.get_rng_state()
        x = c.call(sample_ddim, _RecordingEps(False), shape, ab, 3, torch.Generator().manual_seed(12), eta=eta,
                   inputs=inputs)
        c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used: every "
               "draw must come from the generator passed in", inputs=inputs, hint=DIAGNOSES["global_rng"])
        g = torch.Generator().manual_seed(12)
        draws = [torch.randn(shape, generator=g) for _ in range(4)]
        for k, (a, _) in enumerate(step.calls[:2]):
            c.true(a["eta"] == eta, "ddim_step must get the eta passed in", inputs=inputs, got=f"eta = {a['eta']!r}",
                   hint=DIAGNOSES["ddim_eta_passed"])
            c.close(f"the noise given to ddim_step at step {k + 1}", a["noise"], draws[k + 1], atol=1e-7,
                    inputs=inputs + " (draws replayed from a generator of the same seed)",
                    mistakes={DIAGNOSES["fresh_noise"]: draws[1]}, hint=DIAGNOSES["fresh_noise"])
        c.tensor("x", x, shape=shape, dtype=torch.float32, inputs=inputs)
        c.close("x (vs diffusers' DDIMScheduler loop, same generator seed)", x,
                _ddim_loop(_RecordingEps(False), shape, ab, 3, eta, 12), atol=1e-5, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 6 embedding + block

def check_time_embedding(timestep_embedding, ResBlock) -> None:
    c = Checks("time_embedding")
    refuse_stand_in(c, "timestep_embedding", timestep_embedding)
    refuse_stand_in(Checks("ResBlock"), "ResBlock", ResBlock)
    inputs = "t = [0, 1], dim = 4 (frequencies 1 and 10000**(-1/2) = 0.01)"
    emb = c.call(timestep_embedding, torch.tensor([0, 1]), 4, inputs=inputs)
    c.tensor("emb", emb, shape=(2, 4), dtype=torch.float32, inputs=inputs)
    want = _t([[1, 1, 0, 0], [math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]])
    c.close("emb", emb, want, atol=1e-6, inputs=inputs, mistakes={
        DIAGNOSES["sin_first"]:
            _t([[0, 0, 1, 1], [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]]),
        DIAGNOSES["half_minus_one"]:
            _t([[1, 1, 0, 0], [math.cos(1), math.cos(1e-4), math.sin(1), math.sin(1e-4)]]),
        DIAGNOSES["interleaved"]:
            _t([[1, 0, 1, 0], [math.cos(1), math.sin(1), math.cos(0.01), math.sin(0.01)]]),
    })
    inputs = "t = [1, 2.5] (float), dim = 4, max_period = 100 (frequencies 1 and 0.1)"
    emb = c.call(timestep_embedding, torch.tensor([1.0, 2.5]), 4, 100, inputs=inputs)
    c.tensor("emb", emb, shape=(2, 4), dtype=torch.float32, inputs=inputs)
    c.close("emb", emb, _t([[math.cos(a * w) for w in (1, 0.1)] + [math.sin(a * w) for w in (1, 0.1)]
                            for a in (1.0, 2.5)]), atol=1e-6, inputs=inputs, mistakes={
        DIAGNOSES["max_period_ignored"]: _t([[math.cos(a * w) for w in (1, 0.01)] + [math.sin(a * w) for w in (1, 0.01)]
                                             for a in (1.0, 2.5)])})
    t = torch.tensor([5, 999, 0])
    emb = c.call(timestep_embedding, t, 32, inputs="t = [5, 999, 0], dim = 32")
    c.tensor("emb", emb, shape=(3, 32), dtype=torch.float32, inputs="t = [5, 999, 0], dim = 32")
    c.true(bool(((emb[:, :16] ** 2 + emb[:, 16:] ** 2 - 1).abs() < 1e-5).all()),
           "cos^2 + sin^2 of each frequency should be 1: emb[:, i] and emb[:, half + i] share a frequency",
           inputs="t = [5, 999, 0], dim = 32")

    c.exercise = "ResBlock"
    inputs = "ResBlock(16, 32, emb_dim=64)"
    block = c.call(ResBlock, 16, 32, 64, inputs=inputs)
    n = sum(p.numel() for p in block.parameters())
    want_n = 2 * 16 + (16 * 32 * 9 + 32) + (64 * 32 + 32) + 2 * 32 + (32 * 32 * 9 + 32) + (16 * 32 + 32)
    c.true(n == want_n, "wrong number of parameters", inputs=inputs, expected=want_n, got=n,
           hint=DIAGNOSES["resblock_params"])
    same = c.call(ResBlock, 32, 32, 64, inputs="ResBlock(32, 32, 64)")
    n_same = sum(p.numel() for p in same.parameters())
    c.true(n_same == want_n - (16 * 32 + 32) + 2 * 16 + (32 * 32 * 9 - 16 * 32 * 9),
           "with c_in == c_out the skip connection is the identity (no parameters)", inputs="ResBlock(32, 32, 64)",
           got=f"{n_same} parameters")
    # diffusers' ResnetBlock2D computes the same block: copy the weights across and compare.
    from diffusers.models.resnet import ResnetBlock2D
    g = torch.Generator().manual_seed(3)
    theirs = ResnetBlock2D(in_channels=16, out_channels=32, temb_channels=64, groups=8, eps=1e-5)
    ours = DIFFUSERS_RESBLOCK_NAMES
    mine = dict(block.named_parameters())
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() > 1 else 0.5))
            module, kind = name.split(".")
            key = f"{ours[module]}.{kind}"
            c.true(key in mine and mine[key].shape == p.shape, f"parameter {key} missing or of the wrong shape",
                   inputs=inputs, expected=f"{key} of shape {tuple(p.shape)}",
                   got=str(tuple(mine[key].shape)) if key in mine else "missing",
                   hint=DIAGNOSES["resblock_names"])
            mine[key].copy_(p)
    x = torch.randn(2, 16, 6, 6, generator=g)
    emb = torch.randn(2, 64, generator=g)
    inputs = "ResBlock(16, 32, 64) with random weights, x (2, 16, 6, 6), emb (2, 64)"
    with torch.no_grad():
        out = c.call(block, x, emb, inputs=inputs)
        want = theirs(x, emb)
    c.tensor("block(x, emb)", out, shape=(2, 32, 6, 6), inputs=inputs)
    c.close("block(x, emb) (vs diffusers' ResnetBlock2D with the same weights)", out, want, atol=1e-4, inputs=inputs,
            hint=DIAGNOSES["resblock_order"])
    c.done()


class _StandInBlock(nn.Module):
    """diffusers' ResnetBlock2D with the chapter's ResBlock signature: the U-Net check uses it
    (and diffusers' embedding) in place of your ResBlock, so a mistake there counts once."""

    def __init__(self, c_in, c_out, emb_dim, groups=8):
        super().__init__()
        from diffusers.models.resnet import ResnetBlock2D
        self.block = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=emb_dim, groups=groups, eps=1e-5)

    def forward(self, x, emb):
        return self.block(x, emb)


def _stand_in_embedding(t, dim, max_period=10000):
    from diffusers.models.embeddings import get_timestep_embedding
    return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=max_period)


def check_unet(UNet) -> None:
    """Checks the assembly; your ResBlock and timestep_embedding are replaced by diffusers'
    equivalents while it runs (they have their own check above)."""
    refuse_stand_in(Checks("UNet"), "UNet", UNet)
    with substituted(UNet, ResBlock=_StandInBlock, timestep_embedding=_stand_in_embedding):
        _check_unet(UNet)


def _check_unet(UNet) -> None:
    c = Checks("UNet")
    inputs = "UNet(in_channels=1, ch=8, mults=(1, 2), num_classes=3, groups=4)"
    model = c.call(UNet, 1, 8, (1, 2), 3, 4, inputs=inputs)
    n = sum(p.numel() for p in model.parameters())
    # time_mlp 1,344 + class_embedding 128 + conv_in 80 + down ResBlocks 1,464 + 4,208 + downsample 584
    # + mid 2 x 5,232 + up ResBlocks 8,096 + 2,848 + upsample 2,320 + norm_out 16 + conv_out 73
    c.true(n == 31_625, "wrong number of parameters", inputs=inputs, expected=31_625, got=n,
           hint=DIAGNOSES["unet_params"])
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500])
    y = torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = c.call(model, x, t, y, inputs=inputs + ", x (3, 1, 8, 8), t = [0, 10, 500], y = [0, 1, 2]")
        c.tensor("model(x, t, y)", out, shape=(3, 1, 8, 8), inputs="x (3, 1, 8, 8)")
        out_t = model(x, torch.tensor([999, 10, 500]), y)
        out_y = model(x, t, torch.tensor([1, 1, 2]))
        out_null = c.call(model, x, t, inputs="y omitted (None): the 'no label' row num_classes")
        out_3 = model(x, t, torch.tensor([3, 3, 3]))
    c.true((out_t[0] - out[0]).abs().max() > 1e-6 and (out_t[1:] - out[1:]).abs().max() < 1e-5,
           "the output must depend on each example's own timestep (and only on it)", inputs="t[0] changed to 999",
           hint=DIAGNOSES["unet_timestep"])
    c.true((out_y[0] - out[0]).abs().max() > 1e-6 and (out_y[1:] - out[1:]).abs().max() < 1e-5,
           "the output must depend on each example's own label", inputs="y[0] changed from 0 to 1",
           hint=DIAGNOSES["unet_label"])
    c.close("model(x, t) with y = None", out_null, out_3, atol=1e-5, inputs="y = None vs y = num_classes = 3",
            hint=DIAGNOSES["null_label_id"])
    x16 = torch.randn(2, 1, 16, 16, generator=g)
    with torch.no_grad():
        out = c.call(UNet(1, 8, (1, 2, 2), None, 4), x16, torch.tensor([1, 2]),
                     inputs="UNet(1, 8, (1, 2, 2), num_classes=None, groups=4), x (2, 1, 16, 16), no labels")
    c.tensor("output", out, shape=(2, 1, 16, 16), inputs="three levels: 16 -> 8 -> 4 -> 8 -> 16")
    c.done()


# ----------------------------------------------------------------------------- 7 guidance

class _LabelModel(nn.Module):
    """A stand-in noise predictor whose output is the label plus t / 1000, in every pixel."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, t, y):
        self.calls += 1
        return torch.zeros_like(x) + (y.to(x.dtype) + t.to(x.dtype) / 1000).view(-1, *([1] * (x.dim() - 1)))


def check_guidance(drop_labels, guided_eps) -> None:
    c = Checks("guidance")
    refuse_stand_in(c, "drop_labels", drop_labels)
    refuse_stand_in(c, "guided_eps", guided_eps)
    y = torch.arange(10000) % 10
    inputs = "y = arange(10000) % 10, null_label = 10"
    for p in (0.0, 1.0):
        out = c.call(drop_labels, y.clone(), p, 10, inputs=f"{inputs}, p_uncond = {p}")
        c.tensor("labels", out, shape=(10000,), dtype=torch.int64, inputs=f"p_uncond = {p}")
        c.true(torch.equal(out, y if p == 0 else torch.full_like(y, 10)),
               f"with p_uncond = {p:g}, {'no' if p == 0 else 'every'} label should become null_label",
               inputs=inputs, got=f"{int((out == 10).sum())} null labels",
               hint=DIAGNOSES["drop_below"])
    g = torch.Generator().manual_seed(5)
    before = torch.random.get_rng_state()
    out = c.call(drop_labels, y, 0.3, 10, g, inputs=f"{inputs}, p_uncond = 0.3")
    c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used: every draw "
           "must come from the generator passed in", inputs=inputs + ", a generator given", hint=DIAGNOSES["global_rng"])
    frac = (out == 10).float().mean().item()
    c.true(abs(frac - 0.3) < 0.03, "the fraction of dropped labels should be p_uncond", inputs=inputs + ", p = 0.3",
           expected="about 0.30", got=f"{frac:.3f}", hint=DIAGNOSES["drop_below"])
    kept = out != 10
    c.true(torch.equal(out[kept], y[kept]), "labels that are not dropped must stay unchanged", inputs=inputs)
    u = torch.rand(10000, generator=torch.Generator().manual_seed(5))
    c.true(torch.equal(out, torch.where(u < 0.3, 10, y)), "the dropped labels are not those of the stated draw",
           inputs=inputs + ", generator = torch.Generator().manual_seed(5)",
           hint=DIAGNOSES["stated_draw"])
    c.true(torch.equal(y, torch.arange(10000) % 10), "drop_labels must not modify y in place", inputs=inputs,
           hint=DIAGNOSES["labels_in_place"])

    model = _LabelModel()
    x = torch.zeros(3, 1, 2, 2)
    t = torch.tensor([0, 500, 0])
    y = torch.tensor([2, 7, 4])
    base = t.double() / 1000
    for s in (3.0, 0.0, 1.0):
        inputs = f"a stand-in model eps = label + t / 1000, y = [2, 7, 4], t = [0, 500, 0], null_label = 10, scale = {s}"
        out = _call_keeping_inputs(c, guided_eps, model, x.clone(), t.clone(), y.clone(), s, 10,
                                   names=("model", "x_t", "t", "y", "scale", "null_label"), inputs=inputs)
        c.tensor("eps", out, shape=(3, 1, 2, 2), dtype=torch.float32, inputs=inputs)
        want = (10 + s * (y.double() - 10) + base).view(3, 1, 1, 1).expand(3, 1, 2, 2)
        c.close(f"eps at scale {s:g}", out, want, atol=1e-5, inputs=inputs, mistakes={
            DIAGNOSES["guidance_inverted"]:
                (y.double() + s * (10 - y.double()) + base).view(3, 1, 1, 1).expand(3, 1, 2, 2),
            DIAGNOSES["scale_as_w"]: (y.double() + s * (y.double() - 10) + base).view(3, 1, 1, 1).expand(3, 1, 2, 2),
            DIAGNOSES["null_not_zero"]: (0 + s * y.double() + base).view(3, 1, 1, 1).expand(3, 1, 2, 2),
        })
    c.done()


def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])
