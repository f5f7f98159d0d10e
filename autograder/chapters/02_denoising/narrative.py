# %% [markdown]
# # 02 · Denoising autoencoders
#
# **Time:** about 2¾ hours of work: the exercises about 130 minutes (each says its own), the questions about 25 (3 quizzes, 2 written, 1 prediction), plus reading.
# The `cpu` profile runs the whole notebook in about 1½ minutes on 2 idle CPU cores.
#
# An autoencoder learns to copy its input. A **denoising autoencoder** (DAE) is given a
# harder job: its input $\tilde x$ is a version of an image $x$ that was **corrupted on
# purpose** (noise added, pixels replaced, regions hidden), while its **target stays the
# clean** $x$:
#
# $$\min_\theta\; \mathbb{E}_{x}\,\mathbb{E}_{\tilde x \sim c(\tilde x \mid x)}\;
# \big\lVert D_\theta(\tilde x) - x \big\rVert^2 .$$
#
# Copying $\tilde x$ no longer helps. To put back what the corruption destroyed, the network
# must know what the data look like: which strokes make a digit, that strokes are continuous,
# where they usually go. Corruption is what **forces it to learn the structure of the data**,
# even without a bottleneck (the network in this chapter has more hidden units than an image
# has pixels, so a plain autoencoder of the same shape could learn to copy).
#
# * What it learns is the **structure its training images share**. With a given network and
#   amount of data, a narrow set (only digits, only faces) is easier to learn than a varied
#   one, so a small denoiser does best on the one category it was trained on. A denoiser
#   trained on varied images works across categories: DnCNN (Further reading) denoises
#   photographs of every kind, and a text-to-image diffusion model denoises whatever its
#   captions describe. Breadth costs capacity and data, not feasibility.
# * The corruption chooses the application: noise gives a **denoiser**; hidden regions teach it
#   to **remove obstacles** (inpainting); turning colour images grey, with the colour image as
#   target, teaches it to **colour grey images**.
# * It needs no labels: the clean image is its own target. Like the autoencoder, PCA and
#   k-means++, it is **unsupervised**.
# * Told the noise level $\sigma$, a denoiser is **the heart of a diffusion model** (chapter
#   05). The chapter ends by generating digits from pure noise with the denoiser you train.
#
# **How this notebook works.** Each exercise states what to implement, the shapes in and
# out, and how it is checked. Run the check cell under it: it tells you what is wrong, on
# which input, and often the likely mistake. When grading, hidden checks run the same
# contract on new random inputs. Set `WORKBOOK_PROFILE=smoke|cpu|gpu` before starting
# Jupyter to scale every experiment (default: `gpu` if CUDA is available, else `cpu`).

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from workbook import ch02
from workbook.captions import COLOUR_NAMES, COLOURS, load_captioned
from workbook.data import load_mnist, mnist_source
from workbook.profile import setup
from workbook.results import log_metric, save_figure
from workbook.train import fit

profile = setup(seed=0)
device = profile.device

# %% [markdown]
# ## Data and experiment sizes
#
# Images `x` of shape (N, 1, 28, 28) in [0, 1], as in chapter 01. Every size comes from the
# profile; `sigmas` are the noise levels at which every method is evaluated.

# %%
cfg = profile.pick(
    smoke=dict(n_train=512, n_test=100, epochs=1, c=8, batch=64, gen_steps=6),
    cpu=dict(n_train=4000, n_test=1000, epochs=15, c=32, batch=64, gen_steps=15),
    gpu=dict(n_train=60000, n_test=10000, epochs=20, c=64, batch=256, gen_steps=20),
)
sigmas = profile.pick(smoke=[0.2, 0.3, 0.6, 0.8], cpu=[0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0],
                      gpu=[0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0])
print("MNIST source:", mnist_source(), "| config:", cfg)
x_train, _ = load_mnist("train", limit=cfg["n_train"])
x_test, _ = load_mnist("test", limit=cfg["n_test"])
print("x_train", tuple(x_train.shape), "x_test", tuple(x_test.shape))

# %% [markdown]
# ## 1 · Corrupting images, reproducibly
#
# Every random draw in this course takes an explicit `torch.Generator`: the same seed gives
# the same corruption, so a result can be reproduced and a check can recompute your draws.
# Each function below states its draws exactly (which function, which shape, in which
# order); follow them to the letter, and draw nothing from the global generator
# (`torch.randn_like`, `torch.rand_like` and calls without `generator=` use it). None of them
# may change its input `x`, and each keeps its dtype (float32 or float64) and works for any
# number of channels C and any size H × W.
#
# **Gaussian noise.** $\tilde x = x + \sigma\,\varepsilon$ with $\varepsilon \sim
# \mathcal N(0, I)$. We do **not** clamp $\tilde x$ to [0, 1]: the noise stays exactly
# Gaussian, which the denoiser (and chapter 05) rely on.
#
# **Implement** *(about 10 min)* `add_gaussian_noise(x, sigma, generator) -> x_noisy`, x (B, C, H, W); `sigma`
# is a float or a (B,) tensor (one level per image, of any float dtype: x_noisy keeps x's).
#
# **Checked:** shape and dtype; x unchanged; negative values on a black image (no clamping);
# mean ≈ 0 and standard deviation ≈ σ over 50,176 pixels; the same seed gives the same noise,
# exactly the stated draw. Hidden: random float32 and float64 images with 1 to 3 channels,
# non-square sizes and batches of one, float and per-image levels (also a float64 sigma for a
# float32 x), against the reference's exact draws; the global generator must be left untouched.
#
# **Stuck?** End the cell below with
# `add_gaussian_noise = ch02.standins.add_gaussian_noise` to use a stand-in built on
# torch: the rest of the chapter runs with it; this exercise then earns no points.

# %% [solution id=gaussian_noise]
#| solution: add_gaussian_noise

# %% [tests id=noise_checks points=1 hidden=gaussian_noise]
ch02.check_gaussian_noise(add_gaussian_noise)

# %% [markdown]
# **Salt-and-pepper noise.** Each pixel is, with probability $p$, replaced by 0 ("pepper")
# or 1 ("salt"), each with probability 1/2.
#
# **Implement** *(about 15 min)* `salt_and_pepper(x, p, generator) -> (x_noisy, mask)`; `mask` (bool, shape of
# x) is True exactly where a pixel was replaced, also where the new value equals the old one.
#
# **Checked:** fraction replaced ≈ p; replaced pixels are 0 or 1, about half each; on a grey
# image the mask marks exactly the changed pixels, on a black one also the pixels that got
# pepper; the stated draws; p = 0 and p = 1. Hidden: the reference's exact draws on float32
# and float64 images of several channels and sizes, black-and-white ones included.
#
# **Stuck?** End the cell below with `salt_and_pepper = ch02.standins.salt_and_pepper` to
# use a stand-in built on torch: the rest of the chapter runs with it; this exercise then
# earns no points.

# %% [solution id=salt_pepper]
#| solution: salt_and_pepper

# %% [tests id=salt_pepper_checks points=1 hidden=salt_pepper]
ch02.check_salt_and_pepper(salt_and_pepper)

# %% [markdown]
# **Occluding boxes.** An obstacle in front of the object: `n_boxes` squares of `size` ×
# `size` pixels, placed uniformly at random fully inside the image, are set to 0 in every
# channel. Rows run over H and columns over W (images need not be square).
#
# **Implement** *(about 20 min)* `occlude_boxes(x, n_boxes, size, generator) -> (x_occluded, mask)`, mask (B, 1,
# H, W) bool, True inside the union of the boxes. Tip: a vectorised version compares
# `torch.arange(H)` with the corners (no Python loop); a loop over images and boxes is fine too.
#
# **Checked:** one box covers exactly size² pixels as a solid square; boxes reach every border
# (corners range over 0 … H − size *inclusive*); 3 boxes give their union; masked pixels are
# 0, the others unchanged; the stated draws. Hidden: the reference's exact draws on float32
# and float64 images of 1 to 3 channels with H ≠ W, a box as large as the image.
#
# **Stuck?** End the cell below with `occlude_boxes = ch02.standins.occlude_boxes` to use
# a stand-in built on torchvision's `erase`: the rest of the chapter runs with it; this
# exercise then earns no points.

# %% [solution id=occlusion]
#| solution: occlude_boxes

# %% [tests id=occlusion_checks points=2 hidden=occlusion]
ch02.check_occlusion(occlude_boxes)

# %%
g = profile.generator(10)
examples = x_test[:8]
fig = ch02.show_rows({
    "clean": examples,
    "Gaussian σ=0.3": add_gaussian_noise(examples, 0.3, g),
    "salt & pepper p=0.2": salt_and_pepper(examples, 0.2, g)[0],
    "2 boxes of 9×9": occlude_boxes(examples, 2, 9, g)[0],
}, title="three corruptions (values outside [0, 1] shown clipped)")
save_figure(fig, "corruptions")
plt.show()

# %% [markdown]
# ## 2 · Measuring a restoration: PSNR and SSIM
#
# **PSNR** (peak signal-to-noise ratio) rescales the mean squared error to decibels, relative
# to the largest possible value $L$ (`data_range`: 1 for images in [0, 1], 255 for 8-bit):
#
# $$\mathrm{PSNR}(\hat x, x) = 10 \log_{10} \frac{L^2}{\mathrm{MSE}(\hat x, x)} .$$
#
# Higher is better; +10 dB means 10× smaller MSE. Adding $\mathcal N(0, \sigma^2)$ noise gives
# an MSE of $\sigma^2$, so PSNR $= -20\log_{10}\sigma$ with $L = 1$: 10.5 dB at σ = 0.3.
#
# **Implement** *(about 10 min)* `psnr(x_hat, x, data_range=1.0) -> (B,)`: one value per image (the MSE of each
# image over its own pixels and channels), not one for the batch, in the dtype of `x_hat`
# (shape (B,) also when B = 1). Identical images give +inf: add no epsilon.
#
# **Checked:** images with known MSE (20, 40 and 23.0 dB), the same images scaled to 0…255 with
# `data_range=255`, dtype. Hidden: random float32 and float64 images (1 to 3 channels, B = 1,
# `data_range` 1, 255 and 2, an identical pair) against a float64 numpy formula.
#
# **Stuck?** End the cell below with `psnr = ch02.standins.psnr` to use a stand-in built
# on torch: the rest of the chapter runs with it; this exercise then earns no points.

# %% [solution id=psnr]
#| solution: psnr

# %% [tests id=psnr_checks points=1 hidden=psnr]
ch02.check_psnr(psnr)

# %% [markdown]
# PSNR ignores *where* the errors are. **SSIM** (structural similarity, Wang et al. 2004)
# compares local means (luminance), local standard deviations (contrast) and local
# correlation (structure) in a sliding window: it reacts to what an error does to the local
# structure, not only to its energy. With a window $w$ (weights summing to 1) and
# $\mu_x = w * x$, $\sigma_x^2 = w * x^2 - \mu_x^2$, $\sigma_{xy} = w * (xy) - \mu_x\mu_y$ at
# every position,
#
# $$\mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)
# (\sigma_x^2 + \sigma_y^2 + C_2)}, \qquad C_1 = (0.01\,L)^2,\; C_2 = (0.03\,L)^2,$$
#
# averaged over the positions. It is at most 1, reached for identical images.
#
# **Implement** *(about 30 min)* `ssim(x_hat, x, data_range=1.0) -> (B,)` with the **11 × 11 Gaussian window of
# standard deviation 1.5** ($w_{ij} = g_i g_j$, $g_k \propto e^{-k^2/(2\cdot 1.5^2)}$,
# $k = -5 \dots 5$), applied with `F.conv2d` on *valid* positions only (no padding: a
# (H − 10) × (W − 10) map), each channel with its own copy of the window, mean over the map
# and the channels, in the dtype of `x`. This is scikit-image's
# `structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`.
#
# **Checked:** SSIM(a, a) = 1, symmetry, one value per image; two constant images (closed
# form); one bright pixel against black (closed form that depends on the window); constants
# that scale with `data_range`. Hidden: random float32 and float64 images (1 to 3 channels,
# H ≠ W, B = 1) against an independent scipy version in float64.
#
# **Stuck?** End the cell below with `ssim = ch02.standins.ssim` to use a stand-in built
# on torchvision's `gaussian_blur`: the rest of the chapter runs with it; this exercise
# then earns no points.

# %% [solution id=ssim]
#| solution: ssim

# %% [tests id=ssim_checks points=2 hidden=ssim]
ch02.check_ssim(ssim)

# %% [markdown]
# Two distortions with the same MSE (0.01, hence the same PSNR of 20 dB): Gaussian noise of
# σ = 0.1, and the whole image made brighter by 0.1.

# %%
clean = x_test[:64]
noisy_01 = add_gaussian_noise(clean, 0.1, profile.generator(11))
brighter = clean + 0.1
for name, distorted in [("noise σ=0.1", noisy_01), ("brighter by 0.1", brighter)]:
    print(f"{name:16s} PSNR {psnr(distorted, clean).mean():5.1f} dB   SSIM {ssim(distorted, clean).mean():.3f}")

# %% [markdown]
# Same MSE, same PSNR, different SSIM, and the brighter image scores *lower* than the noisy
# one. The luminance term $2\mu_x\mu_y / (\mu_x^2 + \mu_y^2)$ (Wang et al. 2004, eq. 6)
# compares local means *relative to their size*: on the black background of a digit, lifting
# the mean from 0 to 0.1 is a large change, while zero-mean noise barely moves the local means.
# On a mid-grey image the same offset would cost little: SSIM forgives a brightness change
# only where the image is bright.

# %% [markdown]
# ## 3 · A denoiser told the noise level
#
# A denoiser that knows how noisy its input is can decide how much to smooth: little at
# σ = 0.1, a lot at σ = 0.8. We give it σ as an **extra input channel**, an image filled
# with σ. Architecture (like chapter 01's convolutional autoencoder, without the linear code):
#
# * input `h = torch.cat([x_noisy, sigma_map], dim=1)`, (B, 2, 28, 28), `sigma_map[b]` filled
#   with `sigma[b]`;
# * `encoder`: `Conv2d(2, c, 3, stride=2, padding=1)`, ReLU → (B, c, 14, 14);
#   `Conv2d(c, 2c, 3, stride=2, padding=1)`, ReLU → (B, 2c, 7, 7);
# * `decoder`: `ConvTranspose2d(2c, c, 4, stride=2, padding=1)`, ReLU → (B, c, 14, 14);
#   `ConvTranspose2d(c, 1, 4, stride=2, padding=1)` → (B, 1, 28, 28), and no activation.
#
# Unlike chapter 01 there is **no Sigmoid** at the end: early in training the easiest gain is
# to paint every pixel black (most of a digit is background), a Sigmoid then saturates and
# its gradient vanishes, and the network can stay stuck there. A linear output keeps the
# gradient alive; we clip to [0, 1] only to evaluate and display.
#
# The code (B, 2c, 7, 7) has 98c numbers, at least the 784 pixels once c ≥ 8. Nothing stops
# this network from copying its input, except the noise.
#
# **Implement** *(about 20 min)* `SigmaConditionedDenoiser(c=32)` with attributes `encoder` and `decoder`
# (`nn.Sequential`, in this order) and `forward(x_noisy, sigma) -> x_hat`, sigma (B,).
#
# **Checked:** parameter counts; shape; `forward` equals
# `decoder(encoder(cat([x_noisy, sigma_map])))`; the output depends on σ, image by image.
# Hidden: with the reference's weights copied in, your module must compute the reference's outputs.
#
# **Stuck?** End the cell below with
# `SigmaConditionedDenoiser = ch02.standins.SigmaConditionedDenoiser` to use a stand-in
# built on torch: the rest of the chapter runs with it; this exercise then earns no
# points.

# %% [solution id=denoiser]
#| solution: SigmaConditionedDenoiser

# %% [tests id=denoiser_checks points=2 hidden=denoiser]
ch02.check_denoiser(SigmaConditionedDenoiser)

# %% [markdown]
# **Implement** *(about 15 min)* `denoising_step(model, x, sigma, optimizer, generator) -> float`, one training
# step on a clean batch `x`: draw `eps = torch.randn(x.shape, generator=generator,
# dtype=x.dtype)` (then move it to `x.device`), form `x_noisy = x + sigma * eps` (one σ per
# image; `sigma` is a float or a (B,) tensor), compute `x_hat = model(x_noisy, sigma_b)` with
# `sigma_b` the (B,) tensor of levels (also for a float `sigma`), the mean squared error
# **against the clean `x`**, clear
# old gradients, backpropagate, step, and return the loss before the step as a Python float.
#
# **Checked** with a probe model $\hat x = a\,\tilde x + b\,\sigma$ under SGD: what the model
# received, the returned loss, the parameters after the step (with stale gradients present).
# Hidden: SGD steps of a small denoiser of the stated layout, holding stale gradients, on
# float32 images of 3 channels (a float σ, then a (B,) tensor) and float64 images of one, must
# match the reference.
#
# **Stuck?** End the cell below with `denoising_step = ch02.standins.denoising_step` to
# use a stand-in built on torch.optim: the rest of the chapter runs with it; this exercise
# then earns no points.

# %% [solution id=denoising_step]
#| solution: denoising_step

# %% [tests id=denoising_step_checks points=2 hidden=denoising_step]
ch02.check_denoising_step(denoising_step)

# %% [markdown]
# Now train three networks with **the same architecture, initial weights and budget**; only
# their inputs differ:
#
# * **plain AE**: σ = 0, clean inputs, an ordinary autoencoder;
# * **fixed-σ DAE**: always σ = 0.5;
# * **σ-conditioned DAE**: σ drawn uniformly in [0, 1] for every image, and told to the network.
#
# At test time each one is told the level it knows: 0 for the plain AE, 0.5 for the fixed-σ
# DAE, the true σ for the conditioned one.

# %%
def train_denoiser(draw_sigma, offset: int) -> nn.Module:
    """Train a SigmaConditionedDenoiser; draw_sigma(B) gives the batch's noise levels (B,)."""
    torch.manual_seed(profile.seed)  # the same initial weights for every model
    model = SigmaConditionedDenoiser(c=cfg["c"])
    noise_gen = profile.generator(100 + offset)
    fit(model, x_train, lambda m, xb, opt: denoising_step(m, xb, draw_sigma(len(xb)), opt, noise_gen),
        epochs=cfg["epochs"], batch_size=cfg["batch"], lr=2e-3, generator=profile.generator(offset),
        device=device)
    return model


@torch.no_grad()
def restore(model: nn.Module, x_in: torch.Tensor, sigma_told: float) -> torch.Tensor:
    """model(x_in, sigma_told) in batches, clipped to [0, 1], on the CPU."""
    model.eval()
    return torch.cat([model(xb.to(device), torch.full((len(xb),), sigma_told, device=device)).clamp(0, 1).cpu()
                      for xb in x_in.split(500)])


SIGMA_FIXED = 0.5
sigma_gen = profile.generator(200)
models = {
    "plain AE": train_denoiser(lambda B: torch.zeros(B), offset=1),
    f"fixed-σ DAE (σ={SIGMA_FIXED})": train_denoiser(lambda B: torch.full((B,), SIGMA_FIXED), offset=2),
    "σ-conditioned DAE": train_denoiser(lambda B: torch.rand(B, generator=sigma_gen), offset=3),
}
told = dict(zip(models, [lambda s: 0.0, lambda s: SIGMA_FIXED, lambda s: s]))

# %%
psnr_curves = {"noisy input (clipped)": [], **{name: [] for name in models}}
ssim_curves = {name: [] for name in psnr_curves}
outputs = {}
for i, s in enumerate(sigmas):
    x_noisy = add_gaussian_noise(x_test, s, profile.generator(1000 + i))
    results = {"noisy input (clipped)": x_noisy.clamp(0, 1)}
    results.update({name: restore(m, x_noisy, told[name](s)) for name, m in models.items()})
    for name, x_hat in results.items():
        psnr_curves[name].append(psnr(x_hat, x_test).mean().item())
        ssim_curves[name].append(ssim(x_hat, x_test).mean().item())
    outputs[s] = (x_noisy, results["σ-conditioned DAE"])
for name in psnr_curves:
    print(f"{name:26s} PSNR (dB) " + " ".join(f"{v:5.1f}" for v in psnr_curves[name]))
fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
ch02.plot_curves(a0, sigmas, psnr_curves, "mean PSNR on test digits (dB)", "PSNR vs noise level",
                 marker_at=SIGMA_FIXED)
ch02.plot_curves(a1, sigmas, ssim_curves, "mean SSIM on test digits", "SSIM vs noise level",
                 marker_at=SIGMA_FIXED)
save_figure(fig, "psnr_ssim_vs_sigma")
plt.show()

# %%
rows = {"clean": x_test[:8]}
for s in [s for s in (0.2, 0.45, 0.8) if s in sigmas]:
    x_noisy, x_hat = outputs[s]
    rows[f"noisy σ={s}"] = x_noisy[:8]
    rows[f"denoised σ={s}"] = x_hat[:8]
fig = ch02.show_rows(rows, title="the σ-conditioned DAE across noise levels")
save_figure(fig, "denoising_sweep")
plt.show()

# %%
dae, plain = "σ-conditioned DAE", "plain AE"
for s in (0.3, 0.6):
    i = sigmas.index(s)
    log_metric(f"psnr_noisy_sigma{s}", psnr_curves["noisy input (clipped)"][i], "dB", "noisy input clipped to [0, 1]")
    log_metric(f"psnr_plain_ae_sigma{s}", psnr_curves[plain][i], "dB", "autoencoder trained on clean inputs")
    log_metric(f"psnr_sigma_dae_sigma{s}", psnr_curves[dae][i], "dB", "σ-conditioned DAE")
    log_metric(f"psnr_gain_dae_over_noisy_sigma{s}", psnr_curves[dae][i] - psnr_curves["noisy input (clipped)"][i],
               "dB", "σ-conditioned DAE minus noisy input; > 0 means it denoises")
    log_metric(f"psnr_gain_dae_over_plain_ae_sigma{s}", psnr_curves[dae][i] - psnr_curves[plain][i], "dB",
               "σ-conditioned DAE minus plain AE (same network and budget); > 0: corruption helps")
    log_metric(f"ssim_sigma_dae_sigma{s}", ssim_curves[dae][i], "", f"plain AE: {ssim_curves[plain][i]:.3f}, "
               f"noisy: {ssim_curves['noisy input (clipped)'][i]:.3f}")

# %% [markdown]
# What to look for, in the printed PSNR rows and the curves. The plain AE, with more hidden
# units than pixels, was never shown noise: if its row stays within a few dB of the noisy
# input's while the σ-conditioned DAE's is far above, it learned something close to a copy,
# noise included. The fixed-σ DAE should be at its best near the level it was trained at
# (dotted line) and fall behind the σ-conditioned one away from it, at both ends: at small σ
# it gains little over the noisy input itself, since it smooths away strokes that were never
# damaged. The σ-conditioned DAE adapts its smoothing to the level it is
# told: one network that should stay close to the best at every level. The `smoke` profile
# trains for one epoch on 512 images: there all three networks may still output nearly
# black images (the same PSNR, about 10 dB, at every level), and the run shows none of this.
#
# ## 4 · Removing obstacles: inpainting
#
# Train the same network on inputs hidden by boxes (`occlude_boxes`), target the clean digit.
# To score it we look only **inside the boxes**, where the information was missing.
#
# **Implement** *(about 10 min)* `masked_mse(x_hat, x, mask) -> 0-dim tensor`: the mean of $(\hat x - x)^2$ over
# the pixels where `mask` is True, over the whole batch. The mask is (B, 1, H, W), covering
# every channel of a masked pixel, or (B, C, H, W).
#
# **Checked:** a hand-made case with known answer (and the values of common mistakes), a
# mask broadcast over 3 channels. Hidden: random masks of both shapes, float32 and float64,
# against numpy's masked mean.
#
# **Stuck?** End the cell below with `masked_mse = ch02.standins.masked_mse` to use a
# stand-in built on torch: the rest of the chapter runs with it; this exercise then earns
# no points.

# %% [solution id=masked_mse]
#| solution: masked_mse

# %% [tests id=masked_mse_checks points=1 hidden=masked_mse]
ch02.check_masked_mse(masked_mse)

# %%
N_BOXES, BOX = 2, 9


class HideBoxes(nn.Module):
    """Wraps a denoiser: hides random boxes of its input, then runs the denoiser on it."""

    def __init__(self, net: nn.Module, generator: torch.Generator):
        super().__init__()
        self.net, self.generator = net, generator

    def forward(self, x_in, sigma):
        x_occluded, _ = occlude_boxes(x_in, N_BOXES, BOX, self.generator)
        return self.net(x_occluded, sigma)


# denoising_step with sigma = 0 adds no noise; the wrapper hides the boxes, the clean x stays the target
torch.manual_seed(profile.seed)
inpainter = SigmaConditionedDenoiser(c=cfg["c"])
noise_gen = profile.generator(301)
fit(HideBoxes(inpainter, profile.generator(300)), x_train,
    lambda m, xb, opt: denoising_step(m, xb, 0.0, opt, noise_gen),
    epochs=cfg["epochs"], batch_size=cfg["batch"], lr=2e-3, generator=profile.generator(4), device=device)

x_occ, mask = occlude_boxes(x_test, N_BOXES, BOX, profile.generator(2000))
inpainted = restore(inpainter, x_occ, 0.0)
by_plain = restore(models["plain AE"], x_occ, 0.0)
err = {"occluded input": masked_mse(x_occ, x_test, mask).item(),
       "plain AE": masked_mse(by_plain, x_test, mask).item(),
       "inpainting DAE": masked_mse(inpainted, x_test, mask).item()}
print("MSE inside the boxes:", {k: round(v, 4) for k, v in err.items()})
log_metric("inpainting_masked_mse_occluded", err["occluded input"], "per pixel", "inside the boxes, input as is")
log_metric("inpainting_masked_mse_plain_ae", err["plain AE"], "per pixel", "plain AE applied to occluded digits")
log_metric("inpainting_masked_mse_dae", err["inpainting DAE"], "per pixel", "DAE trained on occluded digits")
log_metric("inpainting_masked_mse_ratio", err["inpainting DAE"] / err["occluded input"], "",
           "below 1 means the DAE fills the boxes better than leaving them black")
log_metric("inpainting_mse_outside_boxes", masked_mse(inpainted, x_test, ~mask), "per pixel",
           "how much the DAE changes what was visible")

fig = ch02.show_rows({"clean": x_test[:8], "occluded": x_occ[:8], "plain AE": by_plain[:8],
                      "inpainting DAE": inpainted[:8]}, title="removing obstacles")
save_figure(fig, "inpainting")
plt.show()

# %% [markdown]
# Compare the printed errors inside the boxes. Where the plain AE's is close to the occluded
# input's, it reproduced the boxes: it learned to copy. Where the DAE's is well below both, it
# fills them: in the figure it draws plausible strokes where it is confident (a 0's missing
# arc, a 1's missing segment) and a grey blur where several completions are plausible, since
# under the squared error the best guess is their average. (After the `smoke` profile's one
# epoch all three errors can be equal: the networks output black.)

# %% [markdown]
# ## Colouring grey digits
#
# The third corruption of the introduction removes the colour; the target is the colour
# image. The data are chapter 04's coloured digits (`load_captioned`, here at 28 × 28):
# every MNIST digit painted in one of six colours on a dark or light grey background. The
# input is the grey version of each image, its luminance $0.299R + 0.587G + 0.114B$ (one
# channel); the target, its three colour channels.
#
# The network is your `SigmaConditionedDenoiser` with three output channels (its last
# `ConvTranspose2d` replaced by one that gives 3), trained with your `denoising_step` at
# σ = 0, so no noise is added: like `HideBoxes` above, a wrapper makes the grey input out of
# each clean colour batch, and the colour batch stays the target. Not graded.

# %%
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # grey = 0.299 R + 0.587 G + 0.114 B


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) colour images -> (B, 1, H, W) luminance."""
    return (x * LUMA.to(x.device, x.dtype)).sum(1, keepdim=True)


class Greyscale(nn.Module):
    """Wraps a network: turns its colour input grey, then runs the network on it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x_in, sigma):
        return self.net(to_grey(x_in), sigma)


colour_train = load_captioned("train", limit=cfg["n_train"], seed=profile.seed, size=28)
colour_test = load_captioned("test", limit=cfg["n_test"], seed=profile.seed, size=28)  # the digits of x_test
torch.manual_seed(profile.seed)
colouriser = SigmaConditionedDenoiser(c=cfg["c"])
colouriser.decoder[-1] = nn.ConvTranspose2d(cfg["c"], 3, 4, stride=2, padding=1)  # 3 channels out
noise_gen = profile.generator(501)
fit(Greyscale(colouriser), colour_train.x, lambda m, xb, opt: denoising_step(m, xb, 0.0, opt, noise_gen),
    epochs=cfg["epochs"], batch_size=cfg["batch"], lr=2e-3, generator=profile.generator(5), device=device)

target = colour_test.x                                   # (N, 3, 28, 28)
grey_in = to_grey(target)                                # (N, 1, 28, 28)
coloured = restore(colouriser, grey_in, 0.0)             # (N, 3, 28, 28), clipped to [0, 1]
baselines = {"grey copied to R, G, B": grey_in.expand(-1, 3, -1, -1),
             "mean training image": colour_train.x.mean(0, keepdim=True).expand_as(target)}
ink = (x_test > 0.5).expand(-1, 3, -1, -1)               # the digit's strokes, where the colour is
for name, x_hat in {**baselines, "colourising DAE": coloured}.items():
    print(f"{name:24s} MSE {F.mse_loss(x_hat, target).item():.4f}   on the strokes "
          f"{masked_mse(x_hat, target, ink).item():.4f}")


def stroke_colour(x: torch.Tensor) -> torch.Tensor:
    """(N,) index into COLOUR_NAMES of the palette colour nearest to the mean RGB on the strokes."""
    rgb = (x * ink).sum((2, 3)) / ink.sum((2, 3))                      # (N, 3)
    return torch.cdist(rgb, torch.tensor(list(COLOURS.values()))).argmin(1)


painted = stroke_colour(coloured)
named = painted == colour_test.colour
print(f"stroke colour nearest to the true one: {named.float().mean().item():.3f} of test digits (chance 1/6)")
for i, name in enumerate(COLOUR_NAMES):
    sel = colour_test.colour == i
    if sel.any():
        print(f"  {name:7s} (grey level {(torch.tensor(COLOURS[name]) * LUMA.flatten()).sum():.2f}): right "
              f"{named[sel].float().mean().item():.2f}, most often painted {COLOUR_NAMES[painted[sel].mode().values]}")
log_metric("colourise_mse_dae", F.mse_loss(coloured, target), "per pixel", "grey test digit in, colour out")
log_metric("colourise_mse_grey_copy", F.mse_loss(baselines["grey copied to R, G, B"], target), "per pixel",
           "the grey input in all three channels")
log_metric("colourise_stroke_mse_ratio", masked_mse(coloured, target, ink) / masked_mse(grey_in.expand(-1, 3, -1, -1),
           target, ink), "", "DAE over grey copy, on the strokes; below 1: it puts colour back")
log_metric("colourise_colour_accuracy", named.float().mean(), "", "nearest palette colour on the strokes; chance 1/6")
fig = ch02.show_rows({"grey input": grey_in[:8], "colourised": coloured[:8], "target": target[:8]},
                     title="colouring grey digits")
save_figure(fig, "colourisation")
plt.show()

# %% [markdown]
# Compare the DAE with the two baselines. The grey copy is exact on the background (it is
# grey already) and wrong on every coloured stroke; the mean image ignores the input. If your
# DAE's error on the strokes is below the grey copy's, it puts some colour back from the grey
# level alone. The per-colour lines show where that cannot work: red, blue and purple have
# nearly the same grey level (0.33 to 0.36), so they give the same grey strokes, and under
# the squared error the best output is their average colour, nearest to purple; if your run
# paints all three as one colour, that is why. Yellow strokes on a light background are
# nearly invisible in grey. Nothing in a grey digit tells those colours apart; in photos a
# network can use what an object is (grass is green), and Zhang et al. (Further reading)
# predict a distribution over colours instead of their average.

# %% [markdown]
# ### Written questions
#
# Answer each in a few sentences, in your own words, in the cell under it (double-click it to
# edit). Your instructor grades them; after grading, your feedback shows a model answer.
#
# **W1 (2 points).** The denoiser has more hidden units than an image has pixels. Trained on
# clean inputs it could learn to copy; trained on noisy inputs towards clean targets it does
# not. Why, and what does it learn instead?

# %% [written id=written_no_identity points=2]
# **Model answer.** Copying the noisy input would reproduce the noise, which costs exactly the
# noise's variance in the loss: the identity is no longer a minimiser. The loss is minimised
# by the conditional mean of the clean image given the noisy one, so the network must learn
# which images are likely (the structure of digits) to remove what does not fit: a denoiser
# learns about the data distribution, not a copy.
#
# **Rubric.** 1 point: the identity keeps the noise and is penalised by the loss. 1 point: the
# optimum is E[clean | noisy], which requires learning the data's structure.

# %% [markdown]
# **W2 (2 points).** Give an example of two restorations of the same image where the one with
# the higher PSNR looks worse, and say what SSIM measures that PSNR does not.

# %% [written id=written_psnr_ssim points=2]
# **Model answer.** PSNR is a function of the mean squared error only: a slightly blurred
# restoration (small errors everywhere at edges) can have a lower MSE than one that is sharp
# but shifted by a pixel, or one whose brightness is offset, though the blurred one looks
# worse to a viewer (or: a small error spread as structured blur vs. the same MSE as fine
# noise). SSIM compares local means
# (luminance), standard deviations (contrast) and correlations (structure) in windows, so it
# reacts to *where* the error is and what it does to local structure: blur lowers the local
# contrast and correlation at edges and costs SSIM, whatever its MSE. Its comparisons are
# relative: the luminance term $2\mu_x\mu_y/(\mu_x^2+\mu_y^2)$ (Wang et al. 2004, eq. 6)
# judges a change of local mean against the mean itself, so a uniform brightness offset
# costs little on bright regions and much on dark ones. On the digits of section 2 (black
# background) brightening by 0.1 scored a *lower* SSIM (0.71) than noise of the same MSE
# (0.76); on a mid-grey photograph the same offset barely lowers SSIM.
#
# **Rubric.** 1 point: a concrete pair (blur vs shift/brightness/noise) with the same or
# higher PSNR but worse look. 1 point: SSIM compares local luminance,
# contrast and structure (correlation) in windows. An answer that says SSIM ignores or
# forgives brightness changes in general does not earn this point: its luminance term is
# relative, and on dark backgrounds an offset costs more SSIM than noise (the demo of section 2).

# %% [markdown]
# ## 5 · Concept questions
#
# Answer by assigning Python values. The check cell only verifies the format; the answers
# are graded when you submit.
#
# **Q1.** Predict before you try it: the σ-conditioned denoiser is given an image with noise
# level 0.3 but told σ = 0.8. What does its output look like? Set `answer_told_sigma` to one
# letter. A: the noisy input, unchanged · B: smoother than the clean image: it removes more
# than the noise, thinning and blurring strokes · C: noisier than the input · D: the same as
# when told the true level (σ only scales the input). The cell after the check runs it.

# %% [solution id=quiz_q1]
#| solution: answer_told_sigma

# %% [tests id=quiz_told_sigma points=1 hidden=quiz]
ch02.check_quiz("answer_told_sigma", answer_told_sigma)

# %% [markdown]
# Now run it and compare with your prediction: the same noisy digits (σ = 0.3), restored by
# the σ-conditioned denoiser told the true level and told 0.8, with the PSNR of each.

# %%
x_noisy = add_gaussian_noise(x_test[:256], 0.3, profile.generator(1500))
told_true = restore(models["σ-conditioned DAE"], x_noisy, 0.3)
told_high = restore(models["σ-conditioned DAE"], x_noisy, 0.8)
for name, x_hat in (("told 0.3 (true)", told_true), ("told 0.8", told_high)):
    print(f"{name:16s} PSNR {psnr(x_hat, x_test[:256]).mean().item():5.1f} dB, "
          f"mean ink {x_hat.mean().item():.3f} (clean: {x_test[:256].mean().item():.3f})")
fig = ch02.show_rows({"clean": x_test[:8], "noisy σ=0.3": x_noisy[:8], "told 0.3": told_true[:8],
                      "told 0.8": told_high[:8]}, title="the σ-conditioned DAE told the wrong level")
save_figure(fig, "told_wrong_sigma")
plt.show()

# %% [markdown]
# **Q2.** The denoiser of section 3 has more hidden units than an image has pixels, yet,
# trained on noisy inputs, it does not learn to copy its input. Why? Set `answer_dae_target`
# to one letter.
#
# * A: its code (B, 2c, 7, 7) is too small to hold an image.
# * B: a copy keeps the noise, and the loss compares the output with the clean image, so
#   copying costs about σ² per pixel.
# * C: a network with ReLUs cannot represent the identity map.
# * D: the noise makes the gradients vanish when the output is close to the input.

# %% [solution id=quiz_q2]
#| solution: answer_dae_target

# %% [tests id=quiz_dae_target points=1 hidden=quiz]
ch02.check_quiz("answer_dae_target", answer_dae_target)

# %% [markdown]
# **Q3.** Two copies of this chapter's small denoiser, with the same number of weights and the
# same number of training images, are trained: one on digits only, one on a mixture of digits,
# letters, faces and clothes. Suppose that, tested on digits, the digit-only denoiser restores
# better. Which statements explain that? Set `answer_one_category` to a set of letters.
#
# * A: To fill in a missing or noisy pixel it relies on structure shared by its training
#   images; one category shares much more structure than a mixture, so all of its weights
#   and examples serve digits.
# * B: Its loss can only be computed when every training image has the same label.
# * C: Images of one category lie close to a low-dimensional set (a "manifold") that a small
#   network can learn from few examples; restoring an image means moving it back onto that set.
# * D: A denoiser trained on several categories cannot restore any of them well, however large
#   the network and the data set.

# %% [solution id=quiz_q3]
#| solution: answer_one_category

# %% [tests id=quiz_one_category points=1 hidden=quiz]
ch02.check_quiz("answer_one_category", answer_one_category)

# %% [markdown]
# ## 6 · From denoising to generation
#
# The best denoiser under the squared error outputs the **average of all clean images that
# could have produced** $\tilde x$: $D^*(\tilde x, \sigma) = \mathbb E[x \mid \tilde x]$. For
# Gaussian noise this average has a second meaning (Tweedie's formula):
#
# $$D^*(\tilde x, \sigma) = \tilde x + \sigma^2\, \nabla_{\tilde x} \log p_\sigma(\tilde x),$$
#
# where $p_\sigma$ is the density of noisy images. The step from $\tilde x$ to
# $D(\tilde x, \sigma)$ points towards more likely images. A σ-conditioned denoiser knows that
# direction at every noise level, and that is what a **diffusion model** is: chapter 05
# trains one (predicting the noise, $\varepsilon_\theta = (\tilde x - D)/\sigma$) and generates
# images by starting from pure noise and denoising step by step as σ decreases.
#
# The crudest version with our denoiser: start from uniform noise and repeat
# $x \leftarrow D(x + \sigma_k \varepsilon_k, \sigma_k)$ with $\sigma_k$ decreasing
# geometrically from 1 to 0.02 in `gen_steps` steps.

# %%
n_show, steps = 8, cfg["gen_steps"]
sigma_k = torch.exp(torch.linspace(math.log(1.0), math.log(0.02), steps))  # (steps,), decreasing
g = profile.generator(4000)
x = torch.rand(n_show, 1, 28, 28, generator=g)
snapshots = {"start: noise": x}
show_at = {0, 1, steps // 4, steps // 2, steps - 1}
denoiser = models["σ-conditioned DAE"]
for k, s in enumerate(sigma_k.tolist()):
    x = restore(denoiser, add_gaussian_noise(x, s, g), s)
    if k in show_at:
        snapshots[f"step {k + 1}, σ={s:.2f}"] = x
fig = ch02.show_rows(snapshots, n=n_show, title="iterated denoising from pure noise")
save_figure(fig, "denoise_from_noise")
plt.show()
log_metric("generated_mean_pixel", x.mean(), "", f"training digits: {x_train.mean():.3f}")

# %% [markdown]
# With a trained denoiser (the `cpu` profile), stroke-like shapes, some of them digits, appear
# out of noise; many are not digits. Compare the mean pixel value printed above with the
# data's: if it is lower, the strokes came out thinner and fainter than real digits. Each step
# trusts the denoiser's guess completely, and that guess is an *average* of plausible digits,
# fainter than any one of them. (After the `smoke` profile's single epoch the denoiser outputs
# black, and so does this loop.) Chapter 05 turns this loop into a proper sampler.
#
# ## What to remember
#
# * A denoising autoencoder corrupts its input on purpose and keeps the clean image as
#   target; it needs no labels (unsupervised), and the corruption forces it to learn the data's
#   structure, even with more hidden units than pixels.
# * It learns what its training images share: with a small network and little data, one
#   category is easier to learn than many, while large denoisers trained on varied images
#   work across categories. The corruption chooses the application (denoising, removing
#   obstacles, colouring).
# * Measure restorations with PSNR (error energy, per image, in dB) and SSIM (local structure).
# * Told the noise level, one network denoises every level; iterated from pure noise it
#   starts to generate. That σ-conditioned denoiser is the heart of diffusion (chapter 05).

# %% [markdown]
# **Further reading**
#
# * Vincent et al., *Extracting and Composing Robust Features with Denoising Autoencoders*, ICML 2008, and
#   *Stacked Denoising Autoencoders*, JMLR 2010: the denoising criterion and why it learns structure, not a copy.
# * Zhang et al., *Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising* (DnCNN),
#   IEEE TIP 2017: a deep network that predicts the noise rather than the clean image, as chapter 05 does.
# * Mohan et al., *Robust and Interpretable Blind Image Denoising via Bias-Free Convolutional Neural
#   Networks*, ICLR 2020: without biases, one denoiser that is not told σ works across noise levels.
# * Pathak et al., *Context Encoders: Feature Learning by Inpainting*, CVPR 2016: filling large holes, and
#   why the squared error alone gives the blurry fills of section 4.
# * Zhang, Isola & Efros, *Colorful Image Colorization*, ECCV 2016: colouring as a choice among quantised
#   colours, to avoid the greyish average of plausible colours that the squared error gives.
