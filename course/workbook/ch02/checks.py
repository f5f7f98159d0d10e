"""Chapter 02 visible checks (denoising autoencoders): the `check_*` functions the notebook calls,
the chapter's texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the stand-ins the checks
use.

Every check runs on small fixed inputs whose answers are known by construction (or follow
from the exercise's stated recipe), so it needs no reference solution. Hidden checks, run
when grading, use fresh random inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import Checks, check_choice
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_told_sigma": "ABCD", "answer_dae_target": "ABCD", "answer_one_category": "ABCD"}
QUIZ_SETS = {"answer_one_category"}  # answered with a set of letters
QUIZ_EXPLAIN = {
    "answer_told_sigma": "the network was trained to remove noise of the level it is told; ask what removing "
                         "noise of level 0.8 from an image that holds only 0.3 must take away besides the noise",
    "answer_dae_target": "ask what the loss of a network that copies its input would be: what does the loss "
                         "compare the output with, and what is left of the corruption in a copy?",
    "answer_one_category": "a denoiser restores what is missing from what its training images have in common, "
                           "and a network of fixed size learns a narrow set of images more easily than a varied "
                           "one; weigh each statement against that, and ask whether it would still hold for a "
                           "much larger network trained on much more data",
}

# One text per diagnosis: the visible checks, the hidden checks and the catalogue of known
# mistakes all name a mistake by its key here.
DIAGNOSES: dict[str, str] = {
    # corruptions, shared
    "in_place": "work on a copy: build a new tensor (x + ..., torch.where, x.masked_fill, or x.clone() then "
                "index it) instead of changing x (x += ..., add_, x[mask] = ..., masked_fill_)",
    "global_rng": "every draw must come from the generator passed in: pass generator=generator to "
                  "torch.randn/rand/randint (torch.randn_like and torch.rand_like use the global generator)",
    "draw_dtype": "draw in x's dtype (dtype=x.dtype in the draw itself): a float32 draw converted to float64 "
                  "afterwards gives other numbers",
    "keep_dtype": "keep the input's dtype: avoid torch.tensor(...) copies and .float()/.double()",
    # add_gaussian_noise
    "clamped": "do not clamp: return x + sigma * eps unclamped, so the noise stays Gaussian",
    "sigma_squared": "sigma is the standard deviation: use sigma * eps, not sigma**2 * eps",
    "uniform_noise": "eps must be standard normal (torch.randn), not uniform (torch.rand)",
    "noise_shape": "draw one eps per element of x: torch.randn(x.shape, ...), not one per image, "
                   "channel or pixel shared by the others",
    "noise_channels": "draw one eps per channel too: torch.randn(x.shape, ...), not one (B, 1, H, W) draw "
                      "shared by the channels",
    "sigma_per_image": "a (B,) sigma gives one level per image: reshape it to (B, 1, 1, 1) before multiplying",
    "sigma_dtype": "convert sigma to x's dtype (torch.as_tensor(sigma, dtype=x.dtype, device=x.device)): a float64 "
                   "sigma tensor times a float32 x gives a float64 result",
    "same_seed_differs": "draw the noise from the generator you are given: torch.randn(x.shape, "
                         "generator=generator, dtype=x.dtype)",
    # salt_and_pepper
    "u_greater": "a pixel must be replaced with probability p: use u < p, not u > p",
    "salt_only": "salt AND pepper: replaced pixels must become 1 or 0 with probability 1/2 each",
    "pepper_only": "salt AND pepper: replaced pixels must become 1 or 0 with probability 1/2 each "
                   "(you only used 0)",
    "salt_value": "a replaced pixel becomes exactly 1 (salt) where v < 0.5, else 0 (pepper); not a random value",
    "mask_replaced": "the mask marks every replaced pixel (u < p), also one whose new value equals its old one "
                     "(a black pixel that gets pepper): not x_noisy != x",
    "mask_bool": "return the comparison u < p itself as the mask (a bool tensor), not a float or int copy",
    "sp_draws": "draw u = torch.rand(x.shape, generator=generator, dtype=x.dtype) first, then v likewise; "
                "mask = u < p, salt where v < 0.5",
    # occlude_boxes
    "corner_range": "top-left corners range over 0 .. H - size inclusive: torch.randint's high is exclusive, "
                    "so use torch.randint(0, H - size + 1, ...)",
    "box_extent": "a box covers rows top .. top + size - 1: use rows < top + size (not <=)",
    "occlude_value": "occluded pixels must be set to 0: x.masked_fill(mask, 0.0)",
    "box_union": "mark every box, then take the union over boxes (any over the box dimension)",
    "box_draws": "draw top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator) first, then "
                 "left = torch.randint(0, W - size + 1, ...) (W for columns); box k covers rows "
                 "top[b, k] .. top[b, k] + size - 1",
    "all_channels": "set the box to 0 in every channel of the image (a (B, 1, H, W) mask covers all C channels)",
    # psnr
    "log_natural": "PSNR uses log10, not the natural log",
    "twenty_log": "PSNR = 10 log10(L^2 / MSE); 20 log10 goes with L / RMSE",
    "peak_255": "use data_range as the peak value L, not 255",
    "peak_1": "use the data_range argument as the peak value L (here 255), not 1",
    "peak_from_data": "use the data_range argument as the peak value L, not the largest value of the images",
    "per_image": "average over each image's own pixels and channels (dims 1, 2, 3), never over the batch: "
                 "no F.mse_loss over everything, no .mean() of the result, no .squeeze() (B may be 1)",
    "per_image_channels": "the MSE of an image runs over all its channels (mean over dims 1, 2, 3), not over "
                          "channel 0 only",
    "psnr_eps": "identical images have MSE 0 and PSNR +inf: do not add an epsilon to the MSE or clamp it",
    "mse_sum": "the MSE is a mean over the image's pixels, not a sum",
    # ssim
    "ssim_constants": "scale the constants with data_range: C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = data_range",
    "ssim_c2": "both constants scale with data_range: C2 = (0.03 L)^2 too",
    "box_window": "you used a uniform (box) window: weight by the 11x11 Gaussian window (sigma 1.5)",
    "box_window_7": "you used a 7x7 uniform window: use the 11x11 Gaussian window (sigma 1.5)",
    "window_sigma": "the window's standard deviation is 1.5: g_k proportional to exp(-k^2 / (2 * 1.5^2))",
    "window_norm": "normalise the window so that its weights sum to 1",
    "means_subtracted": "variances and covariance need the means subtracted: sigma_x^2 = w*(x^2) - mu_x^2, "
                        "sigma_xy = w*(x y) - mu_x mu_y",
    "ssim_padding": "valid positions only: no padding in F.conv2d (the map is (H-10) x (W-10))",
    "ssim_channels": "filter every channel with its own copy of the window (groups=C, or reshape to "
                     "(B*C, 1, H, W)) and average the map over channels and positions",
    "ssim_window_hint": "11x11 Gaussian window (sigma 1.5, weights summing to 1), 'valid' positions only "
                        "(no padding), mean over the (H-10) x (W-10) map",
    "ssim_symmetric": "SSIM is symmetric in its two arguments",
    "ssim_per_pair": "each image's SSIM must depend on that image pair only",
    # SigmaConditionedDenoiser
    "sigma_ignored": "sigma is ignored: fill the second input channel with sigma[b]",
    "channel_order": "channel order: image first, then the sigma map (torch.cat([x_noisy, sigma_map], 1))",
    "sigma_averaged": "each image must get its own sigma[b] (do not average sigma over the batch)",
    "linear_output": "the output layer is linear: no Sigmoid (or other activation) after the last ConvTranspose2d",
    "denoiser_forward": "same layers but a different forward: concat [x_noisy, sigma map], ReLU after each "
                        "layer but the last, no activation at the end",
    "denoiser_layers": "the first conv takes 2 channels (image + sigma map); kernels 3 in the encoder, "
                       "4 in the decoder",
    # denoising_step
    "target_noisy": "the target must be the CLEAN x, not the noisy input",
    "target_noised": "noise was added to the target: the target is the clean x",
    "input_clean": "corrupt the input: the model must see x_noisy = x + sigma * eps, not the clean x",
    "step_sigma_ignored": "sigma is ignored: pass the true noise level sigma_b to the model",
    "zero_grad": "call optimizer.zero_grad() before loss.backward(), then optimizer.step() "
                 "(old gradients must not add up with the new ones)",
    "loss_after": "return the loss computed before optimizer.step(), not after",
    "loss_float": "return the loss as a Python float (loss.item())",
    "step_loss": "loss = mean over all elements of (model(x_noisy, sigma_b) - x)^2, with the clean x",
    "step_noise": "eps = torch.randn(x.shape, generator=generator, dtype=x.dtype); x_noisy = x + sigma * eps",
    "step_sigma_b": "call the model as model(x_noisy, sigma_b) with sigma_b the (B,) tensor of levels, also when "
                    "sigma is given as a float (one level for every image)",
    # masked_mse
    "mask_inverted": "the mask is inverted: score the pixels where mask is True",
    "mask_all_pixels": "divide by the number of masked pixels, not by all pixels",
    "mask_ignored": "only the pixels inside the mask count",
    "mask_sum": "a mean over the masked pixels, not a sum",
    "mask_per_image": "average over all masked pixels of the batch, not image by image",
    "mask_broadcast": "a (B, 1, H, W) mask covers every channel: broadcast it over the channels first "
                      "(mask = mask.expand_as(x)), then average over all the masked values",
    "mask_count": "a (B, 1, H, W) mask covers every channel: divide by the number of masked values "
                  "(pixels times channels), not of masked pixels",
    "mask_first_channel": "a (B, 1, H, W) mask covers every channel: you scored the first channel only",
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unchanged(c: Checks, x: torch.Tensor, x_before: torch.Tensor, inputs: str) -> None:
    c.true(torch.equal(x, x_before), "the input x was modified in place", inputs=inputs,
           hint=DIAGNOSES["in_place"])


def _call_keeping_rng(c: Checks, fn, *args, inputs: str):
    """c.call(fn, *args), failing if the call drew from the global random generator."""
    before = torch.random.get_rng_state()
    out = c.call(fn, *args, inputs=inputs)
    c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used",
           inputs=inputs, hint=DIAGNOSES["global_rng"])
    return out


# ----------------------------------------------------------------------------- 1 corruptions

def check_gaussian_noise(add_gaussian_noise) -> None:
    c = Checks("add_gaussian_noise")
    refuse_stand_in(c, "add_gaussian_noise", add_gaussian_noise)
    x = torch.full((64, 1, 28, 28), 0.5)
    inputs = "x = 0.5 everywhere (64, 1, 28, 28), sigma=0.2, generator seeded 1"
    out = _call_keeping_rng(c, add_gaussian_noise, x, 0.2, _gen(1), inputs=inputs)
    c.tensor("x_noisy", out, shape=(64, 1, 28, 28), dtype=torch.float32, inputs=inputs)
    _unchanged(c, x, torch.full((64, 1, 28, 28), 0.5), inputs)
    first, noise = out, out - 0.5  # 50,176 draws: standard errors ~ 0.001
    c.close("mean of x_noisy - x", noise.mean(), torch.tensor(0.0), atol=0.01, rtol=0, inputs=inputs,
            mistakes={DIAGNOSES["uniform_noise"]: torch.tensor(0.1)})
    c.close("standard deviation of x_noisy - x", noise.std(), torch.tensor(0.2), atol=0.005, rtol=0, inputs=inputs,
            mistakes={DIAGNOSES["sigma_squared"]: torch.tensor(0.04)})

    x = torch.zeros(4, 1, 28, 28)
    inputs = "x = zeros (4, 1, 28, 28), sigma=0.3, generator seeded 0"
    out = c.call(add_gaussian_noise, x, 0.3, _gen(0), inputs=inputs)
    c.tensor("x_noisy", out, shape=(4, 1, 28, 28), inputs=inputs)
    c.true(bool((out < 0).any()), "x_noisy has no negative values, though x = 0 plus Gaussian noise must have some",
           inputs=inputs, got=out, hint=DIAGNOSES["clamped"])

    x = torch.full((64, 1, 28, 28), 0.5)
    inputs = "x = 0.5 everywhere (64, 1, 28, 28), sigma=0.2, generator seeded 1"
    again = c.call(add_gaussian_noise, x, 0.2, _gen(1), inputs=inputs + " (called twice)")
    c.true(torch.equal(first, again), "two calls with generators seeded alike gave different noise", inputs=inputs,
           hint=DIAGNOSES["same_seed_differs"])
    expected = x + 0.2 * torch.randn(x.shape, generator=_gen(1))
    c.close("x_noisy", first, expected, atol=1e-6, inputs=inputs, hint=DIAGNOSES["same_seed_differs"],
            mistakes={DIAGNOSES["noise_shape"]: x + 0.2 * torch.randn(x.shape[1:], generator=_gen(1))})

    x = torch.rand(3, 1, 28, 28, generator=_gen(2), dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.1, 0.5], dtype=torch.float64)
    inputs = "x random (3, 1, 28, 28) float64, sigma = tensor([0.0, 0.1, 0.5]) (one per image), generator seeded 3"
    out = c.call(add_gaussian_noise, x.clone(), sigma, _gen(3), inputs=inputs)
    c.tensor("x_noisy", out, shape=(3, 1, 28, 28), dtype=torch.float64, inputs=inputs)
    eps = torch.randn(x.shape, generator=_gen(3), dtype=torch.float64)
    eps32 = torch.randn(x.shape, generator=_gen(3)).double()
    c.close("x_noisy", out, x + sigma.view(3, 1, 1, 1) * eps, atol=1e-6, inputs=inputs,
            hint=DIAGNOSES["sigma_per_image"],
            mistakes={DIAGNOSES["draw_dtype"]: x + sigma.view(3, 1, 1, 1) * eps32,
                      DIAGNOSES["noise_shape"]: x + sigma.view(3, 1, 1, 1)
                      * torch.randn(x.shape[1:], generator=_gen(3), dtype=torch.float64)})

    inputs = "x random (3, 1, 28, 28) float32, sigma = tensor([0.0, 0.1, 0.5]) float64, generator seeded 3"
    out = c.call(add_gaussian_noise, x.float(), sigma, _gen(3), inputs=inputs)
    c.tensor("x_noisy", out, shape=(3, 1, 28, 28), inputs=inputs)
    c.true(out.dtype == torch.float32, f"x_noisy has dtype {out.dtype}, expected torch.float32 (the dtype of x)",
           inputs=inputs, hint=DIAGNOSES["sigma_dtype"])
    c.done()


def check_salt_and_pepper(salt_and_pepper) -> None:
    c = Checks("salt_and_pepper")
    refuse_stand_in(c, "salt_and_pepper", salt_and_pepper)
    x = torch.rand(2, 1, 28, 28, generator=_gen(1))
    inputs = "x random (2, 1, 28, 28), p=0.3, generator seeded 5"
    out = _call_keeping_rng(c, salt_and_pepper, x.clone(), 0.3, _gen(5), inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "salt_and_pepper should return a tuple (x_noisy, mask)",
           got=type(out).__name__, inputs=inputs)
    x_noisy, mask = out
    c.tensor("mask", mask, shape=(2, 1, 28, 28), inputs=inputs)
    g = _gen(5)
    u = torch.rand(x.shape, generator=g)
    v = torch.rand(x.shape, generator=g)
    c.close("mask", mask, u < 0.3, atol=0, rtol=0, inputs=inputs, hint=DIAGNOSES["sp_draws"],
            mistakes={DIAGNOSES["u_greater"]: u > 0.3})
    c.close("x_noisy", x_noisy, torch.where(u < 0.3, (v < 0.5).float(), x), atol=1e-7, inputs=inputs,
            hint=DIAGNOSES["sp_draws"],
            mistakes={DIAGNOSES["salt_only"]: torch.where(u < 0.3, 1.0, x),
                      DIAGNOSES["pepper_only"]: torch.where(u < 0.3, 0.0, x),
                      DIAGNOSES["salt_value"]: torch.where(u < 0.3, v, x)})

    x = torch.full((64, 1, 28, 28), 0.5)
    inputs = "x = 0.5 everywhere (64, 1, 28, 28), p=0.2, generator seeded 0"
    out = _call_keeping_rng(c, salt_and_pepper, x, 0.2, _gen(0), inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "salt_and_pepper should return a tuple (x_noisy, mask)",
           got=type(out).__name__, inputs=inputs)
    x_noisy, mask = out
    c.tensor("x_noisy", x_noisy, shape=(64, 1, 28, 28), dtype=torch.float32, inputs=inputs)
    c.tensor("mask", mask, shape=(64, 1, 28, 28), inputs=inputs)
    c.true(mask.dtype == torch.bool, "mask must be a bool tensor (True where a pixel was replaced)",
           inputs=inputs, got=str(mask.dtype), hint=DIAGNOSES["mask_bool"])
    _unchanged(c, x, torch.full((64, 1, 28, 28), 0.5), inputs)
    c.true(torch.equal(mask, x_noisy != 0.5), "mask must be True exactly where x_noisy differs from x",
           inputs=inputs, hint="pixels outside the mask keep their value; pixels inside are set to 0 or 1")
    new = x_noisy[mask]
    c.true(bool(((new == 0) | (new == 1)).all()), "replaced pixels must be exactly 0 or 1", inputs=inputs,
           got=new, hint=DIAGNOSES["salt_value"])
    c.close("fraction of pixels replaced", mask.float().mean(), torch.tensor(0.2), atol=0.01, rtol=0,
            inputs=inputs,
            mistakes={DIAGNOSES["u_greater"]: torch.tensor(0.8)})
    c.close("fraction of replaced pixels set to 1", new.float().mean(), torch.tensor(0.5), atol=0.03, rtol=0,
            inputs=inputs,
            mistakes={DIAGNOSES["salt_only"]: torch.tensor(1.0), DIAGNOSES["pepper_only"]: torch.tensor(0.0)})

    x = torch.zeros(2, 1, 28, 28)
    inputs = "x = 0 everywhere (a black image, 2, 1, 28, 28), p=0.3, generator seeded 5"
    x_noisy, mask = c.call(salt_and_pepper, x.clone(), 0.3, _gen(5), inputs=inputs)
    c.tensor("mask", mask, shape=(2, 1, 28, 28), inputs=inputs)
    g = _gen(5)
    u = torch.rand(x.shape, generator=g)
    v = torch.rand(x.shape, generator=g)
    c.close("mask", mask, u < 0.3, atol=0, rtol=0, inputs=inputs + " (pixels set to 0 by pepper were replaced too)",
            mistakes={DIAGNOSES["mask_replaced"]: (u < 0.3) & (v < 0.5)}, hint=DIAGNOSES["sp_draws"])

    x = torch.full((64, 1, 28, 28), 0.5)
    for p in (0.0, 1.0):
        x_noisy, mask = c.call(salt_and_pepper, x.clone(), p, _gen(6), inputs=f"x random, p={p}")
        c.true(int(mask.sum()) == (0 if p == 0 else x.numel()), f"with p={p} the mask must be all "
               f"{'False' if p == 0 else 'True'}", inputs=f"x random (2, 1, 28, 28), p={p}", got=f"{int(mask.sum())} True")
    c.done()


def check_occlusion(occlude_boxes) -> None:
    c = Checks("occlude_boxes")
    refuse_stand_in(c, "occlude_boxes", occlude_boxes)
    B, size = 300, 6
    x = torch.full((B, 1, 28, 28), 0.7)
    inputs = f"x = 0.7 everywhere ({B}, 1, 28, 28), n_boxes=1, size={size}, generator seeded 0"
    out = _call_keeping_rng(c, occlude_boxes, x, 1, size, _gen(0), inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "occlude_boxes should return a tuple (x_occluded, mask)",
           got=type(out).__name__, inputs=inputs)
    x_occ, mask = out
    c.tensor("x_occluded", x_occ, shape=(B, 1, 28, 28), dtype=torch.float32, inputs=inputs)
    c.tensor("mask", mask, shape=(B, 1, 28, 28), inputs=inputs)
    c.true(mask.dtype == torch.bool, "mask must be a bool tensor (True inside the boxes)", inputs=inputs,
           got=str(mask.dtype))
    _unchanged(c, x, torch.full((B, 1, 28, 28), 0.7), inputs)
    c.true(bool((x_occ[mask] == 0).all()), "pixels inside the boxes must be set to 0", inputs=inputs,
           got=x_occ[mask], hint=DIAGNOSES["occlude_value"])
    c.true(bool((x_occ[~mask] == 0.7).all()), "pixels outside the boxes must keep their value", inputs=inputs,
           got=x_occ[~mask])
    area = mask.flatten(1).sum(1)
    c.true(bool((area == size * size).all()), f"with one box every mask must cover exactly size*size = "
           f"{size * size} pixels", inputs=inputs, got=f"areas {sorted(set(area.tolist()))}",
           hint=DIAGNOSES["box_extent"])
    rows, cols = mask.any(3).sum(2).flatten(), mask.any(2).sum(2).flatten()
    c.true(bool((rows == size).all() and (cols == size).all()), "each mask must be one solid size x size square",
           inputs=inputs, got=f"row extents {sorted(set(rows.tolist()))}, column extents {sorted(set(cols.tolist()))}")
    for edge, hit in [("top row", mask[..., 0, :]), ("bottom row", mask[..., -1, :]),
                      ("left column", mask[..., :, 0]), ("right column", mask[..., :, -1])]:
        c.true(bool(hit.any()), f"no box among {B} touches the image's {edge}: corners are not drawn over "
               "their whole range", inputs=inputs,
               hint=DIAGNOSES["corner_range"])

    x = torch.full((200, 1, 28, 28), 0.7)
    inputs = "x = 0.7 everywhere (200, 1, 28, 28), n_boxes=3, size=6, generator seeded 1"
    x_occ, mask = c.call(occlude_boxes, x, 3, 6, _gen(1), inputs=inputs)
    area = mask.flatten(1).sum(1).float()
    c.true(bool((area >= 36).all() and (area <= 108).all()) and area.mean() > 60,
           "with 3 boxes the mask must be the union of all 3 boxes (between 36 and 108 pixels, usually more "
           "than one box)", inputs=inputs, got=f"mean area {area.mean():.1f}",
           hint=DIAGNOSES["box_union"])

    x = torch.rand(3, 1, 28, 28, generator=_gen(2))
    inputs = "x random (3, 1, 28, 28), n_boxes=2, size=5, generator seeded 7"
    x_occ, mask = c.call(occlude_boxes, x.clone(), 2, 5, _gen(7), inputs=inputs)
    g = _gen(7)
    top = torch.randint(0, 28 - 5 + 1, (3, 2), generator=g)
    left = torch.randint(0, 28 - 5 + 1, (3, 2), generator=g)
    expected = torch.zeros(3, 1, 28, 28, dtype=torch.bool)
    for b in range(3):
        for k in range(2):
            expected[b, 0, top[b, k]:top[b, k] + 5, left[b, k]:left[b, k] + 5] = True
    c.close("mask", mask, expected, atol=0, rtol=0, inputs=inputs,
            hint=DIAGNOSES["box_draws"])
    c.close("x_occluded", x_occ, x.masked_fill(expected, 0.0), atol=0, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 2 metrics

def _per_image(c: Checks, out, B: int, what: str, inputs: str) -> None:
    c.true(isinstance(out, torch.Tensor), f"{what} should return a torch.Tensor", inputs=inputs,
           got=type(out).__name__)
    c.true(tuple(out.shape) == (B,), f"{what} must return one value per image, shape (B,) = ({B},)",
           inputs=inputs, got=f"shape {tuple(out.shape)}",
           hint=DIAGNOSES["per_image"])


def check_psnr(psnr) -> None:
    c = Checks("psnr")
    refuse_stand_in(c, "psnr", psnr)
    x = torch.zeros(3, 1, 28, 28)
    x_hat = torch.zeros(3, 1, 28, 28)
    x_hat[0] = 0.1            # MSE 1e-2
    x_hat[1] = 0.01           # MSE 1e-4
    x_hat[2, :, :, :14] = 0.1  # MSE 5e-3
    mse = torch.tensor([1e-2, 1e-4, 5e-3])
    inputs = "x = 0; x_hat[0] = 0.1, x_hat[1] = 0.01, x_hat[2] = 0.1 on its left half; data_range=1"
    out = c.call(psnr, x_hat, x, 1.0, inputs=inputs)
    _per_image(c, out, 3, "psnr", inputs)
    c.tensor("psnr", out, shape=(3,), dtype=torch.float32, inputs=inputs)
    c.close("psnr", out, 10 * torch.log10(1 / mse), atol=1e-3, inputs=inputs,
            mistakes={DIAGNOSES["log_natural"]: 10 * torch.log(1 / mse),
                      DIAGNOSES["twenty_log"]: 20 * torch.log10(1 / mse),
                      DIAGNOSES["peak_255"]: 10 * torch.log10(255.0**2 / mse),
                      DIAGNOSES["mse_sum"]: 10 * torch.log10(1 / (784 * mse))})
    inputs = "the same images times 255, data_range=255"
    out = c.call(psnr, 255 * x_hat, 255 * x, 255.0, inputs=inputs)
    c.tensor("psnr", out, shape=(3,), inputs=inputs)
    c.close("psnr", out, 10 * torch.log10(1 / mse), atol=1e-3, inputs=inputs,
            mistakes={DIAGNOSES["peak_1"]: 10 * torch.log10(1 / (255.0**2 * mse))})
    out = c.call(psnr, x_hat.double(), x.double(), inputs="the float64 images, data_range default")
    c.tensor("psnr", out, shape=(3,), dtype=torch.float64, inputs="float64 images, data_range default (1.0)")
    c.done()


def _ssim_closed_form_constant(a: float, b: float, L: float) -> float:
    """SSIM of two constant images a and b: variances vanish, only luminance remains."""
    C1 = (0.01 * L) ** 2
    return (2 * a * b + C1) / (a * a + b * b + C1)


def _ssim_delta_vs_zero(weights: torch.Tensor, H: int = 28) -> float:
    """SSIM of a one-pixel image (1 at the centre) against a zero image, data_range 1,
    for a k x k window of these weights (valid positions only).

    With y = 0, mu_y = sigma_y = sigma_xy = 0, so at each window position the map is
    C1 C2 / ((m^2 + C1)(m - m^2 + C2)) with m the window weight on the bright pixel
    (and 1 where the pixel is outside the window)."""
    C1, C2 = 1e-4, 9e-4
    m = weights.double().flatten()
    inside = (C1 * C2 / ((m**2 + C1) * (m - m**2 + C2))).sum().item()
    positions = (H - weights.shape[0] + 1) ** 2
    return (positions - m.numel() + inside) / positions


def check_ssim(ssim) -> None:
    c = Checks("ssim")
    refuse_stand_in(c, "ssim", ssim)
    g = _gen(0)
    a = torch.rand(2, 1, 28, 28, generator=g)
    b = (a + 0.2 * torch.randn(2, 1, 28, 28, generator=g)).clamp(0, 1)
    inputs = "random a (2, 1, 28, 28) and b = a + noise"
    out = c.call(ssim, b, a, inputs=inputs)
    _per_image(c, out, 2, "ssim", inputs)
    c.tensor("ssim", out, shape=(2,), dtype=torch.float32, inputs=inputs)
    same = c.call(ssim, a, a.clone(), inputs="ssim(a, a)")
    c.close("ssim(a, a)", same, torch.ones(2), atol=1e-5, inputs="ssim(a, a) of random images")
    c.close("ssim(a, b)", c.call(ssim, a, b, inputs="ssim(a, b)"), out, atol=1e-5, inputs="ssim(a, b) vs ssim(b, a)",
            hint=DIAGNOSES["ssim_symmetric"])
    single = c.call(ssim, b[1:], a[1:], inputs="the second pair alone")
    c.close("ssim of the second pair alone", single, out[1:], atol=1e-5, inputs=inputs,
            hint=DIAGNOSES["ssim_per_pair"])

    window_hint = DIAGNOSES["ssim_window_hint"]
    x_hat, x = torch.full((1, 1, 28, 28), 0.2, dtype=torch.float64), torch.full((1, 1, 28, 28), 0.6, dtype=torch.float64)
    inputs = "constant float64 images x_hat = 0.2, x = 0.6 (variances 0): SSIM = (2ab + C1) / (a^2 + b^2 + C1)"
    want = _ssim_closed_form_constant(0.2, 0.6, 1.0)
    wrong_var = want * (2 * 0.2 * 0.6 + 9e-4) / (0.2**2 + 0.6**2 + 9e-4)
    c.close("ssim", c.call(ssim, x_hat, x, inputs=inputs), torch.tensor([want]), atol=1e-5, inputs=inputs,
            mistakes={DIAGNOSES["means_subtracted"]: torch.tensor([wrong_var])},
            hint=window_hint)

    k = torch.arange(-5, 6, dtype=torch.float64)
    gauss = torch.exp(-k**2 / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    delta = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    delta[0, 0, 14, 14] = 1.0
    inputs = "float64 x_hat = one bright pixel at (14, 14), x = zeros, data_range=1"
    c.close("ssim", c.call(ssim, delta, torch.zeros_like(delta), inputs=inputs),
            torch.tensor([_ssim_delta_vs_zero(gauss[:, None] * gauss[None, :])]), atol=1e-5, inputs=inputs,
            mistakes={DIAGNOSES["box_window"]: torch.tensor([_ssim_delta_vs_zero(torch.full((11, 11), 1 / 121))]),
                      DIAGNOSES["box_window_7"]: torch.tensor([_ssim_delta_vs_zero(torch.full((7, 7), 1 / 49))])},
            hint=window_hint)

    x_hat, x = torch.zeros(1, 1, 28, 28, dtype=torch.float64), torch.full((1, 1, 28, 28), 0.05, dtype=torch.float64)
    for L in (1.0, 255.0):
        inputs = f"constant float64 images x_hat = 0, x = {0.05 * L:g}, data_range={L:g}"
        c.close("ssim", c.call(ssim, L * x_hat, L * x, L, inputs=inputs),
                torch.tensor([_ssim_closed_form_constant(0.0, 0.05, 1.0)]), atol=1e-5, inputs=inputs,
                hint=DIAGNOSES["ssim_constants"])
    out = c.call(ssim, b.double(), a.double(), inputs="float64 images")
    c.tensor("ssim", out, shape=(2,), dtype=torch.float64, inputs="float64 images")
    c.done()


# ----------------------------------------------------------------------------- 3 denoiser

def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_denoiser(SigmaConditionedDenoiser) -> None:
    c = Checks("SigmaConditionedDenoiser")
    refuse_stand_in(c, "SigmaConditionedDenoiser", SigmaConditionedDenoiser)
    torch.manual_seed(0)
    for ch in (32, 4):
        inputs = f"SigmaConditionedDenoiser(c={ch})"
        model = c.call(SigmaConditionedDenoiser, c=ch, inputs=inputs)
        c.true(isinstance(getattr(model, "encoder", None), nn.Module)
               and isinstance(getattr(model, "decoder", None), nn.Module),
               "the model needs attributes encoder and decoder (nn.Sequential)", inputs=inputs)
        enc = (2 * 9 + 1) * ch + (9 * ch + 1) * 2 * ch
        dec = (16 * 2 * ch + 1) * ch + (16 * ch + 1)
        c.true((_count(model.encoder), _count(model.decoder)) == (enc, dec), "wrong number of parameters",
               inputs=inputs, expected=f"encoder {enc}, decoder {dec}",
               got=f"encoder {_count(model.encoder)}, decoder {_count(model.decoder)}",
               hint=DIAGNOSES["denoiser_layers"])

    model = SigmaConditionedDenoiser(c=4)
    x = torch.rand(3, 1, 28, 28, generator=_gen(0))
    sigma = torch.tensor([0.1, 0.5, 0.9])
    inputs = "SigmaConditionedDenoiser(c=4), x (3, 1, 28, 28), sigma = tensor([0.1, 0.5, 0.9])"
    with torch.no_grad():
        out = c.call(model, x, sigma, inputs=inputs)
        c.tensor("model(x, sigma)", out, shape=(3, 1, 28, 28), inputs=inputs)

        def through(first, second):
            return model.decoder(model.encoder(torch.cat([first, second], dim=1)))

        sigma_map = sigma.view(3, 1, 1, 1).expand(3, 1, 28, 28)
        c.close("model(x, sigma)", out, through(x, sigma_map), atol=1e-6, inputs=inputs,
                mistakes={DIAGNOSES["sigma_ignored"]: through(x, torch.zeros_like(sigma_map)),
                          DIAGNOSES["channel_order"]: through(sigma_map, x),
                          DIAGNOSES["sigma_averaged"]: through(x, torch.full_like(sigma_map, sigma.mean().item()))},
                hint=DIAGNOSES["denoiser_forward"])
        other = c.call(model, x, torch.tensor([0.9, 0.1, 0.5]), inputs="the same x with permuted sigmas")
        c.true(not torch.allclose(other, out), "the output does not change when sigma changes",
               inputs=inputs, hint=DIAGNOSES["sigma_ignored"])
    c.done()


class _Probe(nn.Module):
    """x_hat = a * x_noisy + b * sigma; records what it was called with."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))
        self.b = nn.Parameter(torch.tensor(0.1))
        self.calls: list[tuple] = []

    def forward(self, x_noisy, sigma):
        self.calls.append((x_noisy.detach().clone(), sigma.detach().clone() if torch.is_tensor(sigma) else sigma))
        # any sigma is taken (a float, a 0-d tensor), so that the check says what it should have been
        s = torch.as_tensor(sigma).to(x_noisy.dtype).flatten()
        s = s if s.numel() == x_noisy.shape[0] else s[:1]
        return self.a * x_noisy + self.b * s.view(-1, 1, 1, 1)


def check_denoising_step(denoising_step) -> None:
    c = Checks("denoising_step")
    refuse_stand_in(c, "denoising_step", denoising_step)
    x = torch.rand(4, 3, 12, 12, generator=_gen(1))   # 3 channels: one eps per element, not per pixel
    for sigma in (0.3, torch.tensor([0.0, 0.2, 0.4, 0.6])):
        s_b = torch.as_tensor(sigma).expand(4)
        inputs = f"probe model x_hat = a * x_noisy + b * sigma (a=0.5, b=0.1), x (4, 3, 12, 12), " \
                 f"sigma={sigma if isinstance(sigma, float) else 'tensor([0, .2, .4, .6])'}, SGD(lr=0.1), " \
                 "generator seeded 5"
        model = _Probe()
        for p in model.parameters():  # stale gradients must not leak into the step
            p.grad = torch.full_like(p, 100.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = _call_keeping_rng(c, denoising_step, model, x.clone(), sigma, opt, _gen(5), inputs=inputs)
        c.true(isinstance(loss, float), "denoising_step must return the loss as a Python float", hint=DIAGNOSES["loss_float"],
               got=type(loss).__name__, inputs=inputs)
        c.true(len(model.calls) >= 1, "the model was never called", inputs=inputs)
        x_in, s_in = model.calls[0]
        c.true(torch.is_tensor(s_in) and tuple(s_in.shape) == (4,),
               "the model was not called with a (B,) tensor of levels", hint=DIAGNOSES["step_sigma_b"], inputs=inputs,
               got=f"the model's sigma = {s_in!r} (a {type(s_in).__name__})" if not torch.is_tensor(s_in)
               else f"the model's sigma of shape {tuple(s_in.shape)}")
        c.close("sigma passed to the model", s_in, s_b, atol=1e-7, inputs=inputs,
                mistakes={DIAGNOSES["step_sigma_ignored"]: torch.zeros(4)})
        g = _gen(5)
        eps = torch.randn(x.shape, generator=g)
        eps2 = torch.randn(x.shape, generator=g)
        x_noisy = x + s_b.view(4, 1, 1, 1) * eps
        c.close("the input the model received", x_in, x_noisy, atol=1e-6, inputs=inputs,
                mistakes={DIAGNOSES["input_clean"]: x}, hint=DIAGNOSES["step_noise"])
        a1, b1 = _sgd_step(x_noisy, s_b, x, lr=0.1)
        with torch.no_grad():
            x_hat = 0.5 * x_noisy + 0.1 * s_b.view(4, 1, 1, 1)
            x_hat_after = a1 * x_noisy + b1 * s_b.view(4, 1, 1, 1)
        c.close("returned loss", torch.tensor(loss), F.mse_loss(x_hat, x), atol=1e-6, inputs=inputs,
                mistakes={DIAGNOSES["target_noisy"]: F.mse_loss(x_hat, x_noisy),
                          DIAGNOSES["target_noised"]: F.mse_loss(x_hat, x + s_b.view(4, 1, 1, 1) * eps2),
                          DIAGNOSES["loss_after"]: F.mse_loss(x_hat_after, x)},
                hint=DIAGNOSES["step_loss"])
        c.close("parameters (a, b) after the step", torch.stack([model.a.detach(), model.b.detach()]),
                torch.stack([a1, b1]), atol=1e-5, inputs=inputs + ", parameters holding stale gradients (100)",
                hint=DIAGNOSES["zero_grad"])
    c.done()


def _sgd_step(x_noisy, s_b, x, lr):
    """One SGD step of the probe model from a=0.5, b=0.1 on mean((a x_noisy + b s - x)^2)."""
    a = torch.tensor(0.5, requires_grad=True)
    b = torch.tensor(0.1, requires_grad=True)
    loss = F.mse_loss(a * x_noisy + b * s_b.view(-1, 1, 1, 1), x)
    ga, gb = torch.autograd.grad(loss, [a, b])
    return (a - lr * ga).detach(), (b - lr * gb).detach()


# ----------------------------------------------------------------------------- 4 inpainting

def check_masked_mse(masked_mse) -> None:
    c = Checks("masked_mse")
    refuse_stand_in(c, "masked_mse", masked_mse)
    x = torch.zeros(2, 1, 4, 4)
    x_hat = torch.full((2, 1, 4, 4), 0.5)        # error 0.5 outside the mask
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0, :3] = True                      # 3 pixels with error 1
    mask[1, 0, 2, 2] = True                       # 1 pixel with error 2
    x_hat[0, 0, 0, :3] = 1.0
    x_hat[1, 0, 2, 2] = 2.0
    inputs = "x = 0 (2, 1, 4, 4); inside the mask: 3 pixels with error 1 (image 0), 1 with error 2 (image 1); " \
             "error 0.5 everywhere else"
    out = c.call(masked_mse, x_hat, x, mask, inputs=inputs)
    c.tensor("masked_mse", out, inputs=inputs)
    c.true(out.dim() == 0, "masked_mse must return a single number (a 0-dim tensor)", inputs=inputs,
           got=f"shape {tuple(out.shape)}")
    c.close("masked_mse", out, torch.tensor(7 / 4), atol=1e-6, inputs=inputs,
            mistakes={DIAGNOSES["mask_inverted"]: torch.tensor(0.25),
                      DIAGNOSES["mask_all_pixels"]: torch.tensor(7 / 32),
                      DIAGNOSES["mask_ignored"]: torch.tensor(14 / 32),
                      DIAGNOSES["mask_sum"]: torch.tensor(7.0),
                      DIAGNOSES["mask_per_image"]: torch.tensor(2.5)})
    x3 = torch.zeros(1, 3, 2, 2)
    x_hat3 = torch.arange(12.0).view(1, 3, 2, 2)
    m3 = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    m3[0, 0, 1, 1] = True
    inputs = "x = 0 (1, 3, 2, 2), x_hat = arange(12), mask (1, 1, 2, 2) with one True pixel (all channels count)"
    out = c.call(masked_mse, x_hat3, x3, m3, inputs=inputs)
    c.tensor("masked_mse", out, inputs=inputs)
    c.close("masked_mse", out, torch.tensor((9.0 + 49 + 121) / 3), atol=1e-5, inputs=inputs,
            hint=DIAGNOSES["mask_broadcast"],
            mistakes={DIAGNOSES["mask_count"]: torch.tensor(9.0 + 49 + 121),
                      DIAGNOSES["mask_first_channel"]: torch.tensor(9.0)})
    c.done()


# ----------------------------------------------------------------------------- 5 quiz

def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])
