# %% [markdown]
# # 05 · Diffusion: generating by removing noise
#
# **Time:** about 4 hours of work: the exercises about 195 minutes (each says its own), the questions about 40 (3 quizzes, 4 written, 4 predictions), plus reading.
# The `cpu` profile runs the whole notebook in about 13 minutes (its training about 6) on 2 idle CPU cores.
#
# A diffusion model (Sohl-Dickstein et al. 2015; Ho, Jain & Abbeel, *Denoising Diffusion
# Probabilistic Models*, 2020) learns to generate data by learning to *denoise* it. The
# forward process destroys an image in $T$ small steps of Gaussian noise until nothing but
# noise is left. A network is trained to predict, from a noised image and its step, *all*
# the noise that was added to the clean image (not the small change of one step).
# Sampling starts from pure noise and uses that prediction $T$ times, each time moving a
# little towards the clean image it implies and adding back a little fresh noise.
#
# You build every piece: the noise schedules, the forward process in closed form, the
# training loss, the DDPM and DDIM samplers, the U-Net noise predictor with its time
# embedding, and classifier-free guidance. First on a 2-D toy distribution (seconds on a
# CPU, every step visible), then the same code on MNIST, class-conditional: you ask for a
# 7 and get a 7. Your schedules and samplers are checked against the reference library,
# diffusers (`DDPMScheduler`, `DDIMScheduler`).
#
# **Conventions.** Clean data is $x_0$ (`x0` in code), as in the papers. Timesteps of the
# code are indexed from 0, as in diffusers: $t \in \{0, \dots, T-1\}$, `alpha_bars[t]` is
# the paper's $\bar\alpha_{t+1}$, and `x_t` has had $t + 1$ steps of noise, so `x_t` at
# $t = 0$ is already one step noised. Clean data has $\bar\alpha = 1$, which is no entry of
# `alpha_bars`: the formulas below write it $a_{t-1} = 1$ at $t = 0$. Images live in $[-1, 1]$ while the model
# works on them.
#
# **How this notebook works.** Each exercise states what to implement, the shapes in and
# out, and how it is checked. Run the check cell under it: it tells you what is wrong, on
# which input, and often the likely mistake. When grading, hidden checks run the same
# contract on new random inputs. Set `WORKBOOK_PROFILE=smoke|cpu|gpu` before starting
# Jupyter to scale every experiment (default: `gpu` if CUDA is available, else `cpu`).

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from workbook import ch05, quality
from workbook.ch05 import EMA, ToyDenoiser, ddim_timesteps, to_images, toy_data
from workbook.data import load_mnist, mnist_source
from workbook.profile import setup
from workbook.progress import progress
from workbook.results import log_metric, save_figure

profile = setup(seed=0)
device = profile.device

# %% [markdown]
# ## The forward process
#
# Given a schedule $\beta_0, \dots, \beta_{T-1}$ of small variances, each forward step
# shrinks the signal and adds fresh noise:
# $x_t = \sqrt{1 - \beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \varepsilon_t$. With
# $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s \le t} \alpha_s$, the $t+1$ steps
# from clean data compose into one Gaussian:
#
# $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon, \qquad
# \varepsilon \sim \mathcal N(0, I).$$
#
# $\bar\alpha_t$ is the fraction of the signal's variance left at step $t$; the
# signal-to-noise ratio is $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$. A
# **scheduler** is such a noise schedule plus an update rule that walks back from noise.
#
# ## 1 · Noise schedules
#
# * **Linear** (Ho et al.): $\beta$ evenly spaced from $\beta_1 = 10^{-4}$ to
#   $\beta_T = 0.02$, $T = 1000$ (both ends included).
# * **Cosine** (Nichol & Dhariwal 2021): define $\bar\alpha$ directly, through
#   $f(u) = \cos^2\!\big(\frac{u + s}{1 + s} \cdot \frac{\pi}{2}\big)$, $s = 0.008$, so that
#   $\bar\alpha(u) = f(u)/f(0)$ for $u \in [0, 1]$. Step $t$ goes from $u = t/T$ to
#   $u = (t+1)/T$, so $\beta_t = \min\big(1 - f(\frac{t+1}{T}) / f(\frac{t}{T}),\ 0.999\big)$:
#   the clip keeps the last steps from erasing everything at once.
#
# **Implement** *(about 20 min)* `linear_betas(T=1000, beta_1=1e-4, beta_T=0.02)` and
# `cosine_betas(T=1000, s=0.008, max_beta=0.999)`, each returning `betas` (T,) float64,
# and `noise_schedule(betas) -> (alphas, alpha_bars)`, two (T,) tensors of the dtype of
# `betas`.
#
# **Checked:** a 5-step linear schedule; a 4-step cosine schedule with $s = 0$ (where $f$
# takes the values $1, \cos^2\frac{\pi}{8}, \frac12, \sin^2\frac{\pi}{8}, 0$); the
# defaults at a few $t$; $\bar\alpha$ of three hand-picked betas. Hidden: diffusers'
# `DDPMScheduler(beta_schedule="linear" | "squaredcos_cap_v2")` for random $T$.
#
# **Stuck?** End the cell below with `linear_betas = ch05.standins.linear_betas`, and the
# same for `cosine_betas` and `noise_schedule` as you need, to use stand-ins built on
# diffusers' `DDPMScheduler`: the rest of the chapter runs with them; this exercise then
# earns no points.

# %% [solution id=schedules]
#| solution: linear_betas cosine_betas noise_schedule

# %% [tests id=schedules_checks points=2 hidden=schedules]
ch05.check_schedules(linear_betas, cosine_betas, noise_schedule)

# %%
T = 1000
betas = {"linear": linear_betas(T), "cosine": cosine_betas(T)}
schedules = {name: noise_schedule(b)[1] for name, b in betas.items()}  # name -> alpha_bars (T,)
fig = ch05.plot_schedules(schedules)
save_figure(fig, "schedules")
plt.show()
for name, ab in schedules.items():
    half = int((ab < 0.5).nonzero()[0])
    print(f"{name:6s}: alpha_bar falls below 1/2 at t = {half}; alpha_bar_(T-1) = {ab[-1]:.2e}")
    log_metric(f"{name}_half_signal_step", half, "", "first t with alpha_bar_t < 1/2")
    steps = [0, 50, 300, 500, 700, 900, T - 1]
    log_snr = (ab / (1 - ab)).log()
    print("        log-SNR at t = " + ", ".join(f"{t}: {log_snr[t]:.1f}" for t in steps))

# %% [markdown]
# The linear schedule destroys the signal quickly: $\bar\alpha$ is near 0 for the last
# few hundred steps, which are then wasted on nearly pure noise. The cosine schedule's
# $\bar\alpha$ falls roughly linearly in the middle and changes little near both ends
# (Nichol & Dhariwal 2021), so fewer steps are spent on nearly pure noise. Its log-SNR,
# $\log(\bar\alpha / (1 - \bar\alpha))$, is not linear: steep at both ends, flat in the
# middle (printed below).
#
# ## 2 · Forward diffusion in closed form
#
# **Implement** *(about 10 min)* `q_sample(x0, t, eps, alpha_bars) -> x_t`: `x0` (B, ...) clean data,
# `t` (B,) int64 timesteps (one per example), `eps` (B, ...) standard normal noise,
# `alpha_bars` (T,) of any float dtype. Return
# $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon$ with the dtype
# and device of `x0`: pick $\bar\alpha$ at each example's $t$ and reshape it to
# (B, 1, ...) so that it broadcasts over the other dimensions.
#
# **Checked:** three 2-D examples with hand-picked $\bar\alpha$ (0.64, 0.36, 0.01);
# image-shaped float32 data with float64 `alpha_bars`. Hidden: diffusers'
# `DDPMScheduler.add_noise` on random batches.
#
# **Stuck?** End the cell below with `q_sample = ch05.standins.q_sample` to use a stand-in
# built on diffusers' `DDPMScheduler.add_noise`: the rest of the chapter runs with it;
# this exercise then earns no points.

# %% [solution id=q_sample]
#| solution: q_sample

# %% [tests id=q_sample_checks points=2 hidden=q_sample]
ch05.check_q_sample(q_sample)

# %% [markdown]
# ## 3 · The training loss
#
# Ho et al. train a network $\varepsilon_\theta(x_t, t)$ to recover the noise: draw a
# clean example, a step $t$ uniformly from $\{0, \dots, T-1\}$ and
# $\varepsilon \sim \mathcal N(0, I)$, form $x_t$ with `q_sample`'s formula, and minimise
#
# $$L = \big\lVert \varepsilon - \varepsilon_\theta(x_t, t) \big\rVert^2 .$$
#
# Note what the target is: the **whole** noise $\varepsilon$ that was mixed into $x_0$, not
# the small increment of noise added between step $t-1$ and step $t$. The network answers
# "which noise, added to a clean image, gives $x_t$?"; the sampler then removes only the
# part of it that belongs to one step.
#
# **Implement** *(about 15 min)* `diffusion_loss(model, x0, alpha_bars, y=None, generator=None) -> loss`:
# `model(x_t, t)` (or `model(x_t, t, y)` when labels `y` (B,) are given) returns
# `eps_hat` shaped like `x0`. Draw one $t$ (B,) and one $\varepsilon$ per example with
# `generator`, compute $x_t$ in closed form (your `q_sample` formula), and return the mean
# squared error over all elements, a scalar.
#
# **Checked:** a stand-in model records what it is given: from its $x_t$ and $t$ the check
# recovers the noise you drew, tests that it is standard normal, that $t$ covers
# $\{0, \dots, T-1\}$ uniformly, and that the loss is the mean squared error against it;
# labels are passed on (as the third argument or as `y=`); every draw comes from the
# `generator` (the same seed gives the same draws, the global generator is left alone).
# Hidden: the same on random data and schedules, float64 and float32 data with several
# channels (the loss keeps the data's dtype), and a known mistake named when it matches.
#
# **Stuck?** End the cell below with `diffusion_loss = ch05.standins.diffusion_loss` to
# use a stand-in built on diffusers' `DDPMScheduler.add_noise`: the rest of the chapter
# runs with it; this exercise then earns no points.

# %% [solution id=diffusion_loss]
#| solution: diffusion_loss

# %% [tests id=diffusion_loss_checks points=2 hidden=diffusion_loss]
ch05.check_diffusion_loss(diffusion_loss)

# %% [markdown]
# ## 4 · The reverse step of DDPM
#
# Sampling walks back from $x_{T-1} \sim \mathcal N(0, I)$. Given $x_t$ and the network's
# $\hat\varepsilon = \varepsilon_\theta(x_t, t)$, DDPM draws $x_{t-1}$ from the Gaussian
# posterior $q(x_{t-1} \mid x_t, x_0)$ with $x_0$ replaced by the model's guess. With
# $a_t = \bar\alpha_t$, $a_{t-1} = \bar\alpha_{t-1}$ ($= 1$ at $t = 0$),
# $\alpha_t = a_t / a_{t-1}$ and $\beta_t = 1 - \alpha_t$:
#
# $$\mu = \frac{1}{\sqrt{\alpha_t}} \Big(x_t - \frac{\beta_t}{\sqrt{1 - a_t}}\,
# \hat\varepsilon\Big), \qquad \sigma_t^2 = \beta_t\, \frac{1 - a_{t-1}}{1 - a_t},
# \qquad x_{t-1} = \mu + \sigma_t z,\ z \sim \mathcal N(0, I),$$
#
# and at the last step ($t = 0$) the sample is $\mu$ itself, with no noise. One step
# subtracts $\beta_t / \sqrt{1 - a_t}$ times the predicted noise (a small multiple: $\hat
# \varepsilon$ estimates all the noise in $x_t$), rescales by $1 / \sqrt{\alpha_t}$ and
# adds fresh noise $\sigma_t z$ back, so $x_{t-1}$ is only slightly cleaner than $x_t$. The
# model's current guess of the clean data, useful to watch, is
# $\hat x_0 = (x_t - \sqrt{1 - a_t}\, \hat\varepsilon) / \sqrt{a_t}$.
#
# **Implement** *(about 20 min)* `ddpm_step(eps_hat, t, x_t, alpha_bars, noise) -> (x_prev, x0_hat)`:
# `t` a Python int (or 0-d tensor), the three tensors (B, ...); `noise` is $z$, used only
# when $t > 0$. Both outputs are shaped like `x_t`, in its dtype.
#
# **Checked:** one step at $t = 2$ and the last step $t = 0$ of a 3-step schedule, by
# hand; image batches. Hidden: diffusers' `DDPMScheduler.step` (its
# `prev_sample` and `pred_original_sample`) with the same noise, at random $t$ of both
# schedules.
#
# **Stuck?** End the cell below with `ddpm_step = ch05.standins.ddpm_step` to use a
# stand-in built on diffusers' `DDIMScheduler.step` at $\eta = 1$: the rest of the chapter
# runs with it; this exercise then earns no points.

# %% [solution id=ddpm_step]
#| solution: ddpm_step

# %% [tests id=ddpm_step_checks points=3 hidden=ddpm_step]
ch05.check_ddpm_step(ddpm_step)

# %% [markdown]
# ### Does it agree with diffusers?
#
# The library behind most diffusion code, diffusers, implements the same schedules and
# steps. Same betas, same $\bar\alpha$, same `add_noise`, same `step` output for one fixed
# fake model output:

# %%
from diffusers import DDPMScheduler

ab = schedules["linear"]
lib = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=False)
g = profile.generator(10)
x0_demo, eps_demo = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
t_demo = torch.tensor([0, 10, 500, 999])
eps_fake, z = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
report = {
    "betas": (betas["linear"] - lib.betas.double()).abs().max(),
    "alpha_bars": (ab - lib.alphas_cumprod.double()).abs().max(),
    "add_noise": (q_sample(x0_demo, t_demo, eps_demo, ab) - lib.add_noise(x0_demo, eps_demo, t_demo)).abs().max(),
}
for t_ in (999, 500, 0):
    mine = ddpm_step(eps_fake, t_, x0_demo, lib.alphas_cumprod.double(), z)[0]
    theirs = lib.step(eps_fake, t_, x0_demo, generator=torch.Generator().manual_seed(0)).prev_sample
    if t_ > 0:  # diffusers draws its own noise: give ours the same draw
        z_lib = torch.randn(x0_demo.shape, generator=torch.Generator().manual_seed(0))
        mine = ddpm_step(eps_fake, t_, x0_demo, lib.alphas_cumprod.double(), z_lib)[0]
    report[f"step t={t_}"] = (mine - theirs).abs().max()
for k, v in report.items():
    print(f"largest difference, {k:12s}: {float(v):.2e}")
log_metric("max_diff_vs_diffusers", max(float(v) for v in report.values()), "",
           "schedules, add_noise, DDPMScheduler.step (diffusers computes in float32)")

# %% [markdown]
# ## A 2-D warm-up
#
# The same code on points in the plane: eight Gaussian blobs on a circle (with $T = 1000$
# cosine steps; the `smoke` profile uses $T = 100$ throughout to stay fast). A small MLP
# (`ToyDenoiser`, given) predicts the noise from $x_t$ and features of $t$; your
# `diffusion_loss` trains it and your `ddpm_step` samples from it. Watch the cloud of
# noise organise itself into the blobs over the 1000 reverse steps.

# %%
toy_cfg = profile.pick(smoke=dict(steps=300, n=500, T=100), cpu=dict(steps=3000, n=2000, T=1000),
                       gpu=dict(steps=5000, n=5000, T=1000))
toy_ab = noise_schedule(cosine_betas(toy_cfg["T"]))[1]
torch.manual_seed(profile.seed)
toy = ToyDenoiser(toy_cfg["T"])
opt = torch.optim.Adam(toy.parameters(), lr=2e-3)
g = profile.generator(20)
t0 = time.time()
bar = progress(range(toy_cfg["steps"]), desc="training the toy denoiser")
for step in bar:
    loss = diffusion_loss(toy, toy_data(512, g), toy_ab, generator=g)
    opt.zero_grad()
    loss.backward()
    opt.step()
    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
print(f"toy model: {toy_cfg['steps']} steps in {time.time() - t0:.1f} s, last loss {loss.item():.3f}")


# %% [markdown]
# ### The sampling loop
#
# Sampling runs `ddpm_step` $T$ times, from pure noise down to $t = 0$ (Ho et al.'s
# Algorithm 2): draw $x_{T-1} \sim \mathcal N(0, I)$; then for $t = T-1, \dots, 0$ ask the
# network for $\hat\varepsilon = \varepsilon_\theta(x_t, t)$, draw a fresh $z$, and let
# `ddpm_step` give $x_{t-1}$, which is the $x_t$ of the next step.
#
# **Implement** *(about 10 min)* `sample_ddpm(eps_fn, shape, alpha_bars, generator, keep=(),
# device="cpu") -> (x, kept)` with your `ddpm_step`. `eps_fn(x_t, t_batch)` is the network
# (`t_batch` a (B,) int64 tensor, every entry $t$). Every draw is `torch.randn(shape,
# generator=generator)` moved `.to(device)`: first $x_{T-1}$, then one fresh noise per
# step, in the order of the steps (the one at $t = 0$ may be left out: `ddpm_step` adds
# no noise there). `kept[t] = (x_t, x0_hat)` on the CPU for each $t$ in `keep`. The
# docstring states every detail.
#
# **Checked** (with your `ddpm_step` swapped for diffusers' step while the check runs, so
# that a mistake there is not counted twice): a stand-in `eps_fn` records what it is
# given: the timesteps in order, as (B,) int64 tensors, one call per step, each step's
# $x_{t-1}$ fed back; the draws, replayed from a generator of the same seed; `kept`; the
# result against diffusers' `DDPMScheduler` loop from the same seed. Hidden: the same on
# random schedules, lengths and shapes.
#
# **Stuck?** End the cell below with `sample_ddpm = ch05.standins.sample_ddpm` to use a
# stand-in built on diffusers' `DDPMScheduler`: the rest of the chapter runs with it; this
# exercise then earns no points.

# %% [solution id=sample_ddpm]
#| solution: sample_ddpm

# %% [tests id=sample_ddpm_checks points=2 hidden=sample_ddpm]
ch05.check_sample_ddpm(sample_ddpm)

# %% [markdown]
# The toy model (on the CPU) sampled with your loop:

# %%
toy.eval()
keep = [int(f * (toy_cfg["T"] - 1)) for f in (1, 0.7, 0.4, 0.2, 0.1, 0.05, 0)]
points, kept = sample_ddpm(toy, (toy_cfg["n"], 2), toy_ab, profile.generator(21), keep=keep)
data = toy_data(toy_cfg["n"], profile.generator(22))
fig = ch05.plot_toy_steps([(f"x_{t}", kept[t][0]) for t in keep] + [("sample", points)], data)
save_figure(fig, "toy_trajectory")
plt.show()
fig = ch05.plot_toy_steps([(f"x0_hat at t={t}", kept[t][1]) for t in keep[1:]], data)
save_figure(fig, "toy_x0_hat")
plt.show()
centres = 1.5 * torch.stack([torch.cos(torch.arange(8) * math.pi / 4), torch.sin(torch.arange(8) * math.pi / 4)], 1)
dist = torch.cdist(points.cpu(), centres).min(dim=1).values
on_blob = (dist < 0.3).float().mean().item()
blobs = torch.cdist(points.cpu(), centres).argmin(dim=1)[dist < 0.3].bincount(minlength=8)
print(f"{on_blob:.1%} of the samples lie within 0.3 of a blob centre (real data: "
      f"{(torch.cdist(data, centres).min(1).values < 0.3).float().mean():.1%}); samples per blob: {blobs.tolist()}")
log_metric("toy_on_blob_fraction", on_blob, "", "fraction of 2-D samples within 0.3 of one of the 8 centres")

# %% [markdown]
# The second figure shows $\hat x_0$, the model's guess of the final point, at each step
# (not at $t = T-1$, where $\bar\alpha \approx 0$ and dividing by $\sqrt{\bar\alpha}$ throws the
# guess off the chart): early guesses sit near the mean of the data, the best guess when
# little is known; they spread to the circle, then commit to a blob as the noise shrinks.

# %% [markdown]
# ### The whole noise, not the step
#
# A common misreading: "the network predicts what one step removes". Measure it on the toy
# model: noise fresh data to a few $t$, ask for $\hat\varepsilon$, and compare its size with
# the true noise $\varepsilon$ and with what one reverse step actually moves, $x_t - \mu$
# (`ddpm_step` with zero fresh noise). All sizes are root-mean-square per coordinate.

# %%
x0_demo = toy_data(4000, profile.generator(23))
rms = lambda v: v.pow(2).mean().sqrt().item()
print(f"{'t':>5s} {'rms eps':>8s} {'rms eps_hat':>12s} {'cos(eps_hat, eps)':>18s} {'rms of one step':>16s}")
for t_ in (toy_cfg["T"] // 10, toy_cfg["T"] // 2, 3 * toy_cfg["T"] // 4):  # (the clipped last steps move far)
    eps_demo = torch.randn(x0_demo.shape, generator=profile.generator(24))
    t_demo = torch.full((len(x0_demo),), t_, dtype=torch.long)
    x_t_demo = q_sample(x0_demo, t_demo, eps_demo, toy_ab)
    with torch.no_grad():
        eps_hat_demo = toy(x_t_demo, t_demo)
    move = x_t_demo - ddpm_step(eps_hat_demo, t_, x_t_demo, toy_ab, torch.zeros_like(x_t_demo))[0]
    cos = F.cosine_similarity(eps_hat_demo.flatten(), eps_demo.flatten(), dim=0).item()
    print(f"{t_:5d} {rms(eps_demo):8.3f} {rms(eps_hat_demo):12.3f} {cos:18.3f} {rms(move):16.4f}")
    log_metric(f"toy_eps_hat_rms_t{t_}", rms(eps_hat_demo), "", "rms of the predicted noise on fresh toy data")
    log_metric(f"toy_one_step_rms_t{t_}", rms(move), "", "rms of x_t - mu, one DDPM step without fresh noise")

# %% [markdown]
# Read the columns against each other. Where the cosine is close to 1, `eps_hat` points
# along the whole noise $\varepsilon$ mixed into $x_0$, and if its size there is close to
# `rms eps` (about 1), the network predicts all of it. If the last column, what one step
# moves, is a small fraction of `rms eps_hat` in every row, the rest is the schedule's
# doing: one step removes only $\beta_t / \sqrt{1 - \bar\alpha_t}$ of the predicted noise (and
# rescales by $1/\sqrt{\alpha_t}$). A low cosine and a small `eps_hat` at small $t$ are
# expected too: there $x_t$ is nearly clean, the little noise in it is hard to tell from
# the data, and a prediction shrunk towards 0 is the best guess in squared error.

# %% [markdown]
# ## 5 · The noise predictor: time embedding, residual block, U-Net
#
# The network sees $x_t$ and must know how noisy it is, so it also gets $t$. Following the
# Transformer's positional encoding, $t$ becomes a vector of sines and cosines at
# geometrically spaced frequencies $w_i = 10000^{-i/h}$, $i = 0, \dots, h-1$, $h = $
# `dim // 2`:
#
# $$\mathrm{emb}(t) = [\cos(t w_0), \dots, \cos(t w_{h-1}), \sin(t w_0), \dots, \sin(t w_{h-1})].$$
#
# **Implement** *(about 15 min)* `timestep_embedding(t, dim, max_period=10000) -> emb` (B, dim) float32, for
# `t` (B,) (integer or float timesteps of any dtype) and even `dim` (diffusers' `get_timestep_embedding(t, dim,
# flip_sin_to_cos=True, downscale_freq_shift=0)` computes the same).
#
# A **residual block** conditioned on the embedding (as in DDPM's and diffusers' U-Nets):
#
# $$h = \mathrm{conv}_1(\mathrm{SiLU}(\mathrm{GN}_1(x))) + W\,\mathrm{SiLU}(\mathrm{emb})
# \quad\text{(one shift per channel)},\qquad
# \mathrm{out} = \mathrm{conv}_2(\mathrm{SiLU}(\mathrm{GN}_2(h))) + \mathrm{skip}(x).$$
#
# **Implement** *(about 20 min)* `ResBlock(c_in, c_out, emb_dim, groups=8)` with the attributes of its
# docstring (`norm1`, `conv1`, `time_proj`, `norm2`, `conv2`, `skip`) and
# `forward(x (B, c_in, H, W), emb (B, emb_dim)) -> (B, c_out, H, W)`.
#
# **Checked:** the embedding at $t = 0$ and $t = 1$ by hand, $\cos^2 + \sin^2 = 1$; the
# block's parameter count, and its output against diffusers' `ResnetBlock2D` given the
# same weights; a non-default `max_period`. Hidden: the formula in float64 (tolerance for
# float32 rounding at $t \approx 1000$) for random integer and fractional $t$ (float32
# and float64), sizes and `max_period`; the block against
# diffusers at random sizes, with the default and another `groups`.
#
# **Stuck?** End the cell below with
# `timestep_embedding = ch05.standins.timestep_embedding`, and the same for `ResBlock` as
# you need, to use stand-ins built on diffusers' `get_timestep_embedding` and
# `ResnetBlock2D`: the rest of the chapter runs with them; this exercise then earns no
# points.

# %% [solution id=time_embedding]
#| solution: timestep_embedding ResBlock

# %% [tests id=time_embedding_checks points=2 hidden=time_embedding]
ch05.check_time_embedding(timestep_embedding, ResBlock)

# %% [markdown]
# The **U-Net** (Ronneberger et al. 2015) is an encoder-decoder whose decoder also receives
# the encoder's feature maps at the same resolution (skip connections): the encoder sees
# context at low resolution, the skips carry the fine detail back. Every block gets the
# embedding of $t$, plus the embedding of the class label $y$ for class-conditional
# generation. A reserved label id, `num_classes`, means "no label": the same network then
# also learns the unconditional model, which classifier-free guidance needs.
#
# **Implement** *(about 35 min)* `UNet(in_channels=1, ch=32, mults=(1, 2, 2), num_classes=None, groups=8)`
# exactly as its docstring states (levels, attribute names, order of the skips), with
# `forward(x (B, C, H, W), t (B,), y (B,) or None) -> eps_hat (B, C, H, W)`.
#
# **Checked** (with your `ResBlock` and `timestep_embedding` swapped for diffusers'
# equivalents while the check runs, so that a mistake in them is not counted twice): the
# parameter count of a small U-Net (worked out layer by layer), output
# shapes, that each example's output depends on its own $t$ and $y$ and on nothing else
# of the batch, `y=None` as the "no label" id. Hidden (on non-square inputs): with the
# reference's weights (loaded by name, or by order when your layers hold the same
# parameters under other names, e.g. an `upsamples[j]` that is
# `nn.Sequential(nn.Upsample(...), conv)`)
# copied in (and the reference's block and embedding), your U-Net must compute the
# reference's output.
#
# **Stuck?** End the cell below with `UNet = ch05.standins.UNet` to use a stand-in built
# on diffusers' `UNet2DModel`: the rest of the chapter runs with it; this exercise then
# earns no points.

# %% [solution id=unet]
#| solution: UNet

# %% [tests id=unet_checks points=2 hidden=unet]
ch05.check_unet(UNet)

# %% [markdown]
# ## 6 · Class conditioning and classifier-free guidance
#
# To sample a chosen digit, give the network the label: $\varepsilon_\theta(x_t, t, y)$.
# **Classifier-free guidance** (Ho & Salimans 2021) trains one network for both the
# conditional and the unconditional model by **dropping the label** at random during
# training (replacing it with the "no label" id, with probability $p_{\text{uncond}}$,
# typically 0.1), and at sampling time extrapolates from the unconditional prediction
# towards the conditional one:
#
# $$\tilde\varepsilon = \varepsilon_u + s\,(\varepsilon_c - \varepsilon_u), \qquad
# \varepsilon_c = \varepsilon_\theta(x_t, t, y),\quad \varepsilon_u = \varepsilon_\theta(x_t, t, \varnothing).$$
#
# $s = 0$ is the unconditional model, $s = 1$ the conditional one, $s > 1$ pushes the
# samples towards what makes them typical of the class (more recognisable, less varied).
# Ho & Salimans write the same thing as $(1 + w)\,\varepsilon_c - w\,\varepsilon_u$ with a
# guidance *weight* $w$: $s = 1 + w$. Stable Diffusion's `guidance_scale` is our $s$.
#
# **Implement** *(about 10 min)* `drop_labels(y, p_uncond, null_label, generator=None)`: a new (B,) int64
# tensor where each label independently becomes `null_label` when `torch.rand` $<$
# `p_uncond`. **Implement** *(about 10 min)* `guided_eps(model, x_t, t, y, scale, null_label) -> eps`
# (B, ...): run the model on the conditional and the unconditional inputs (best as one
# doubled batch) and combine as above.
#
# **Checked:** dropout rates 0, 1 and 0.3, kept labels unchanged, `y` not modified; a
# stand-in model whose output is its label, at scales 0, 1 and 3; the dropped labels are
# exactly those of the draw `torch.rand(B, generator=generator) < p_uncond`. Hidden: random labels,
# `null_label` and sizes
# and scales, and a random network.
#
# **Stuck?** End the cell below with `drop_labels = ch05.standins.drop_labels`, and the
# same for `guided_eps` as you need, to use stand-ins built on torch: the rest of the
# chapter runs with them; this exercise then earns no points.

# %% [solution id=guidance]
#| solution: drop_labels guided_eps

# %% [tests id=guidance_checks points=2 hidden=guidance]
ch05.check_guidance(drop_labels, guided_eps)

# %% [markdown]
# ## Training on MNIST
#
# Now the real thing. The choices below were made by measuring on a 2-core laptop CPU
# (see the README's figures): at 16×16 pixels a U-Net with `ch=32` trains about 3.5
# times faster than at 28×28 and the digits stay readable, so the `cpu` profile works at
# 16×16 and the `gpu` profile at 28×28. We train with Adam, a short warm-up, gradient
# clipping, label dropout 0.1 and the linear schedule, and keep an exponential moving
# average (EMA) of the weights for sampling: it averages out the noise of the last
# updates and gives visibly cleaner samples.

# %%
cfg = profile.pick(
    smoke=dict(T=100, res=16, ch=8, mults=(1, 2), steps=30, batch=64, lr=2e-3, n_eval=20, ddpm_eval=10,
               ddim_steps=[5, 10], sweep_scales=[0.0, 2.0, 10.0], sweep_steps=5, grid_steps=[1, 3, 10]),
    cpu=dict(T=1000, res=16, ch=32, mults=(1, 2, 2), steps=1500, batch=128, lr=2e-3, n_eval=200, ddpm_eval=100,
             ddim_steps=[10, 20, 50, 100], sweep_scales=[0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0], sweep_steps=50,
             grid_steps=[1, 3, 10, 30, 100, 300, 1000]),
    gpu=dict(T=1000, res=28, ch=64, mults=(1, 2, 2), steps=20000, batch=256, lr=1e-3, n_eval=1000, ddpm_eval=1000,
             ddim_steps=[10, 20, 50, 100], sweep_scales=[0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0], sweep_steps=50,
             grid_steps=[1, 3, 10, 30, 100, 300, 1000]),
)
NULL = 10  # the "no label" id
print("MNIST source:", mnist_source(), "| config:", cfg)
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_model = F.interpolate(x_train, size=(cfg["res"],) * 2, mode="bilinear", antialias=True) * 2 - 1  # [-1, 1]
# The linear schedule; with fewer steps (smoke), betas scaled so that the noise level at the end is similar.
alpha_bars = noise_schedule(linear_betas(cfg["T"], 1e-4 * 1000 / cfg["T"], 0.02 * 1000 / cfg["T"]))[1].to(device)
clf = quality.load_classifier(profile)
fig = ch05.show_rows({f"{cfg['res']}x{cfg['res']}": to_images(x_model[:10]), "28x28": x_train[:10]})
save_figure(fig, "training_images")
plt.show()

# %%
def train_diffusion(model, x, y, *, steps, batch_size, lr, p_uncond=0.1, generator, ema_decay=0.999) -> dict:
    """Adam with a 100-step warm-up and gradient clipping; EMA of the weights. Returns the
    per-step loss, the EMA model and the wall time."""
    model.to(device).train()
    ema = EMA(model, ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"loss": []}
    t0 = time.time()
    bar = progress(range(steps), desc="training the U-Net")
    for step in bar:
        idx = torch.randint(0, len(x), (batch_size,), generator=generator)
        labels = drop_labels(y[idx], p_uncond, NULL, generator).to(device)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        loss = diffusion_loss(model, x[idx].to(device), alpha_bars, labels)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
        history["loss"].append(loss.item())
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)
    history["seconds"] = time.time() - t0
    history["ema"] = ema.model.eval()
    return history


torch.manual_seed(profile.seed)
unet = UNet(1, cfg["ch"], cfg["mults"], num_classes=10)
n_params = sum(p.numel() for p in unet.parameters())
history = train_diffusion(unet, x_model, y_train, steps=cfg["steps"], batch_size=cfg["batch"], lr=cfg["lr"],
                          generator=profile.generator(30))
model = history["ema"]
secs = history["seconds"]
print(f"U-Net with {n_params / 1e6:.2f} M parameters: {cfg['steps']} steps of batch {cfg['batch']} in {secs:.0f} s "
      f"({cfg['steps'] * cfg['batch'] / secs:.0f} images/s); loss of the last 100 steps "
      f"{sum(history['loss'][-100:]) / len(history['loss'][-100:]):.4f}")
log_metric("unet_parameters", n_params, "", f"ch={cfg['ch']}, mults={cfg['mults']}, {cfg['res']}x{cfg['res']}")
log_metric("train_time", secs, "s", f"{cfg['steps']} steps of batch {cfg['batch']}")
log_metric("train_throughput", cfg["steps"] * cfg["batch"] / secs, "images/s", f"on {device}")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history["loss"], lw=0.5, alpha=0.5)
w = max(1, len(history["loss"]) // 50)
ax.plot(range(w - 1, len(history["loss"])), torch.tensor(history["loss"]).unfold(0, w, 1).mean(1), lw=2)
ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss (and running mean)")
save_figure(fig, "training_loss")
plt.show()

# %% [markdown]
# ### An image through the forward process
#
# The same digit noised at increasing $t$ under both schedules: with the linear schedule
# the digit is gone well before $t = 999$.

# %%
ts = [0, 50, 100, 200, 300, 500, 700, 999]
x_one = x_model[:1].repeat(len(ts), 1, 1, 1)
eps_one = torch.randn(x_one.shape, generator=profile.generator(31)).expand_as(x_one)
rows = {name: to_images(q_sample(x_one, torch.tensor(ts), eps_one, ab)) for name, ab in schedules.items()}
fig = ch05.show_rows(rows, [f"t={t}" for t in ts])
save_figure(fig, "noising")
plt.show()

# %% [markdown]
# ### The denoising trajectory
#
# Class-conditional DDPM sampling with guidance scale 2: each pair of rows shows $x_t$
# and the model's guess $\hat x_0$ at the same step. The guess is a blurry average of
# the class at first and sharpens as $t$ falls.

# %%
def guided(model, labels, scale):
    """eps_fn(x_t, t) for your samplers: classifier-free guidance towards `labels`."""
    return lambda x, t: guided_eps(model, x, t, labels, scale, NULL)


shape = lambda n: (n, 1, cfg["res"], cfg["res"])
labels = torch.arange(4, device=device) * 2  # digits 0, 2, 4, 6
keep = [int(f * (cfg["T"] - 1)) for f in (1, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0)]
t0 = time.time()
samples, kept = sample_ddpm(guided(model, labels, 2.0), shape(4), alpha_bars, profile.generator(32), keep=keep,
                             device=device)
print(f"DDPM, {cfg['T']} steps, 4 images: {time.time() - t0:.1f} s")
rows = {}
for i in range(2):
    rows[f"{int(labels[i])}: x_t"] = to_images(torch.cat([kept[t][0][i:i + 1] for t in keep]))
    rows[f"{int(labels[i])}: x0_hat"] = to_images(torch.cat([kept[t][1][i:i + 1] for t in keep]))
fig = ch05.show_rows(rows, [f"t={t}" for t in keep])
save_figure(fig, "denoising_trajectory")
plt.show()

# %% [markdown]
# ## 7 · DDIM: fewer, deterministic steps
#
# DDPM needs all $T$ steps. DDIM (Song, Meng & Ermon 2021) replaces DDPM's Markovian
# *forward* (inference) process by a non-Markovian one, $q_\sigma(x_{1:T} \mid x_0)$, with
# the same marginals $q(x_t \mid x_0)$: the $\varepsilon$-loss only sees those marginals, so
# the network trained for DDPM serves unchanged (their §4.1, Theorem 1). Its generative
# chain can then run on a short sub-sequence $\tau$ of the timesteps, jumping from $t$ to an
# earlier $t'$ (§4.2). From $\hat x_0 = (x_t - \sqrt{1 - a_t}\,
# \hat\varepsilon)/\sqrt{a_t}$, with $a_{t'} = \bar\alpha_{t'}$ ($= 1$ when $t' < 0$):
#
# $$x_{t'} = \sqrt{a_{t'}}\, \hat x_0 + \sqrt{1 - a_{t'} - \sigma^2}\, \hat\varepsilon + \sigma z,
# \qquad \sigma = \eta\, \sqrt{\frac{1 - a_{t'}}{1 - a_t}}\, \sqrt{1 - \frac{a_t}{a_{t'}}}.$$
#
# At $\eta = 0$ the step is deterministic: the same starting noise always gives the same
# image. At $\eta = 1$ and $t' = t - 1$ it has DDPM's variance. The sub-sequence used here
# is `ddim_timesteps(T, n)` (given): $n$ evenly spaced steps starting at $T-1$ (diffusers'
# "trailing" spacing), the last step going to $t' = -1$.
#
# **Implement** *(about 20 min)* `ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta=0.0, noise=None) ->
# (x_prev, x0_hat)`, shaped like `x_t`; `noise` is only used when $\sigma > 0$.
#
# **Checked:** a step $t = 2 \to 0$, the last step $t \to -1$ (note: `alpha_bars[-1]` in
# Python is the *last* entry, not "before the first step"), a step with $\eta = 1$.
# Hidden: diffusers' `DDIMScheduler.step` with $\eta \in \{0, 0.5, 1\}$ along its own
# timestep sequences.
#
# **Stuck?** End the cell below with `ddim_step = ch05.standins.ddim_step` to use a
# stand-in built on diffusers' `DDIMScheduler.step`: the rest of the chapter runs with it;
# this exercise then earns no points.

# %% [solution id=ddim_step]
#| solution: ddim_step

# %% [tests id=ddim_step_checks points=3 hidden=ddim_step]
ch05.check_ddim_step(ddim_step)

# %% [markdown]
# **Implement** *(about 10 min)* `sample_ddim(eps_fn, shape, alpha_bars, num_steps, generator,
# eta=0.0, device="cpu") -> x`: the same loop as `sample_ddpm` with your `ddim_step`, along
# `steps = ddim_timesteps(T, num_steps)`, each step from `steps[i]` to `t_prev = steps[i + 1]`
# and the last one to `t_prev = -1`. The first draw is $x_{T-1}$; only when $\eta > 0$ is
# one fresh noise drawn per step (with $\eta = 0$ nothing more is drawn and `noise=None`).
#
# **Checked** (with your `ddim_step` swapped for diffusers' step): the steps $9 \to 6 \to 2
# \to -1$ of `ddim_timesteps(10, 3)`, `eta` passed on, at $\eta = 0$ only the starting noise
# drawn and the same samples twice; at $\eta = 1$ and $0.5$ the noise draws and the result
# against diffusers' `DDIMScheduler` loop (`timestep_spacing="trailing"`). Hidden: random
# schedules and shapes, $\eta \in \{0, 0.5, 1\}$, against diffusers where its steps are
# those of `ddim_timesteps` ($T$ a multiple of `num_steps`), else against the reference.
#
# **Stuck?** End the cell below with `sample_ddim = ch05.standins.sample_ddim` to use a
# stand-in built on diffusers' `DDIMScheduler`: the rest of the chapter runs with it; this
# exercise then earns no points.

# %% [solution id=sample_ddim]
#| solution: sample_ddim

# %% [tests id=sample_ddim_checks points=2 hidden=sample_ddim]
ch05.check_sample_ddim(sample_ddim)

# %% [markdown]
# **Predict, then run.** The next cell samples every digit with DDIM from 1 step up to
# 1000, the same starting noise in every row. What will the row of **1 step** look like?
# (Hint: with one step, $t = T-1 \to -1$, `ddim_step` returns $\hat x_0$ at $t = T-1$.)
# Write your prediction in the cell below before you run the grid; it is not graded.

# %%
prediction_one_step = "..."  # your prediction, in a sentence

# %%
# Samples against the number of DDIM steps: one row per count, the same starting noise.
digits = torch.arange(10, device=device)
rows = {}
for n in cfg["grid_steps"]:
    out = sample_ddim(guided(model, digits, 2.0), shape(10), alpha_bars, n, profile.generator(40), device=device)
    rows[f"{n} step{'s' * (n > 1)}"] = to_images(out)
    ink = rows[f"{n} step{'s' * (n > 1)}"]
    print(f"{n:5d} steps: fraction of pixels that are clearly ink (> 0.5) or paper (< 0.1): "
          f"{((ink > 0.5) | (ink < 0.1)).float().mean().item():.3f}")
    log_metric(f"ddim_grid_{n}_steps_decided_pixels", ((ink > 0.5) | (ink < 0.1)).float().mean().item(), "",
               "fraction of pixels > 0.5 or < 0.1 in the 10 grid samples")
fig = ch05.show_rows(rows, [str(d) for d in range(10)])
save_figure(fig, "samples_vs_ddim_steps")
plt.show()

# %% [markdown]
# Compare with your prediction. With one step the sampler returns the network's first
# guess $\hat x_0$ from (nearly) pure noise: the average of what the digit could be, nearly
# the same image for every starting noise of a digit, so if your
# 1-step row is blurry grey shapes and its fraction of clearly decided pixels (printed above)
# is lower than that of the many-step rows, that is why. Each further step re-asks the
# network on a less noisy $x_t$ and the strokes sharpen; where the fraction stops changing
# between rows, more steps no longer change the samples much.

# %% [markdown]
# ### Sample quality against the number of steps
#
# The shape of the DDIM paper's Table 1, on our data: class-conditional samples (guidance
# scale 2, the same number per digit) from DDPM with all 1000 steps and from DDIM with
# 10 to 100 steps, at $\eta = 0$ (deterministic) and $\eta = 1$. Each set is rated by
# the chapter-03 classifier: the fraction classified as the requested digit, the Fréchet
# distance to real test images in the classifier's features (lower is better), and, since
# neither of those tells a varied set from one that repeats a few images, fidelity and
# diversity measured apart (`quality.fidelity_diversity`, k = 5 nearest neighbours in the
# same features): **precision**, the fraction of samples that fall among real images, and
# **recall** and **coverage**, the fraction of real images (of their neighbourhoods) that the
# samples reach. `quality.collapse` warns when the samples of a digit are nearly identical.
# Beside the floor of two 28×28 real sets stands the distance of the *training data itself*:
# real images made the way the samples are, down to the model's resolution and back up to
# 28×28 (`quality.at_resolution`). A generator that reproduced its training data exactly
# would score that, not the 28×28 floor. Samples can score *below* it: guidance sharpens
# strokes towards what the classifier has seen in 28×28 digits, and this distance rewards
# that, though it is not closer to the data the model learnt.

# %%
def rate(images01: torch.Tensor, requested: torch.Tensor, name: str = "") -> dict:
    """Accuracy, Fréchet distance, digits covered, precision / recall / density / coverage
    against as many real test images, and the smallest per-digit spread (collapse warns)."""
    n = len(images01)
    real, real_y = x_test[:n], y_test[:n]
    out = {"accuracy": quality.class_accuracy(images01, requested.cpu(), classifier=clf)["accuracy"],
           "frechet": quality.frechet_distance(images01, real, classifier=clf),
           "digits": quality.class_coverage(images01, classifier=clf)["coverage"]}
    out |= quality.fidelity_diversity(images01, real, classifier=clf)
    if name:
        print(f"{name}: ", end="")  # collapse's warning, if any, follows on this line
    col = quality.collapse(images01, requested.cpu(), real, real_y, classifier=clf)
    if name and not col["collapsed"]:
        print("no collapsed digit")
    out["collapsed"] = col["collapsed"]
    out["min_spread"] = min(col["spread"].values()) if col["spread"] else float("nan")
    return out


def eval_labels(n: int) -> torch.Tensor:
    return (torch.arange(n) % 10).to(device)


n_eval = cfg["n_eval"]
real_fd = quality.reference_distances(x_train[:n_eval], x_test[:n_eval], cfg["res"], classifier=clf)
floor, floor_res = real_fd["floor"], real_fd["training_data"]  # 28x28; through 28 -> res -> 28, as the samples
print(f"Fréchet floor, two real sets of {n_eval}: {floor:.2f} at 28x28; the training data itself (one set at the samples' "
      f"{cfg['res']}x{cfg['res']}): {floor_res:.2f} (classifier test accuracy {clf.test_accuracy:.3f}); that set's precision "
      f"{real_fd['precision']:.2f}, recall {real_fd['recall']:.2f}, coverage {real_fd['coverage']:.2f}")
log_metric("frechet_floor", floor, "", f"{n_eval} real train vs {n_eval} real test images, 28x28")
log_metric("frechet_floor_at_res", floor_res, "",
           f"{n_eval} real train images through 28 -> {cfg['res']} -> 28 vs {n_eval} real test images")
log_metric("real_recall_at_res", real_fd["recall"], "", "the same real sets: recall (k = 5)")
log_metric("real_coverage_at_res", real_fd["coverage"], "", "the same real sets: coverage (k = 5)")
table = {}
requested = eval_labels(cfg["ddpm_eval"])
t0 = time.time()
out, _ = sample_ddpm(guided(model, requested, 2.0), shape(len(requested)), alpha_bars, profile.generator(50),
                     device=device)
secs = time.time() - t0
table[f"DDPM, {cfg['T']} steps"] = rate(to_images(out), requested, f"DDPM, {cfg['T']} steps") | {
    "seconds": secs, "n": len(requested)}
requested = eval_labels(n_eval)
for eta in (0.0, 1.0):
    for n in cfg["ddim_steps"]:
        t0 = time.time()
        out = sample_ddim(guided(model, requested, 2.0), shape(n_eval), alpha_bars, n, profile.generator(51), eta=eta,
                          device=device)
        secs = time.time() - t0
        name = f"DDIM eta={eta:g}, {n} steps"
        table[name] = rate(to_images(out), requested, name) | {"seconds": secs, "n": n_eval}
print(f"Fréchet of the training data itself at {cfg['res']}x{cfg['res']}: {floor_res:.2f} ({n_eval} images; the DDPM row has "
      f"{cfg['ddpm_eval']}, and the Fréchet distance depends on the count)")
print(f"{'sampler':24s} {'images':>6s} {'accuracy':>9s} {'Fréchet':>8s} {'digits':>7s} {'precision':>9s} "
      f"{'recall':>7s} {'coverage':>9s} {'spread':>7s} {'seconds':>8s}")
for name, r in table.items():
    print(f"{name:24s} {r['n']:6d} {r['accuracy']:9.3f} {r['frechet']:8.2f} {r['digits']:7.2f} {r['precision']:9.2f} "
          f"{r['recall']:7.2f} {r['coverage']:9.2f} {r['min_spread']:7.2f} {r['seconds']:8.1f}")
    key = name.replace(", ", "_").replace(" steps", "").replace(" ", "_").replace("=", "")
    log_metric(f"{key}_accuracy", r["accuracy"], "", f"{r['n']} class-conditional samples, scale 2")
    log_metric(f"{key}_frechet", r["frechet"], "", f"vs {r['n']} real test images")
    log_metric(f"{key}_seconds", r["seconds"], "s", f"sampling {r['n']} images on {device}")
    log_metric(f"{key}_digits_covered", r["digits"], "", "fraction of the 10 digits predicted at least once")
    log_metric(f"{key}_precision", r["precision"], "", "fraction of samples inside real k = 5 balls")
    log_metric(f"{key}_recall", r["recall"], "", "fraction of real test images inside the samples' k = 5 balls")
    log_metric(f"{key}_coverage", r["coverage"], "", "fraction of real k = 5 balls holding a sample")
    if r["min_spread"] == r["min_spread"]:  # undefined (nan) with fewer than two samples per digit
        log_metric(f"{key}_min_spread", r["min_spread"], "",
                   "smallest per-digit spread of the samples, as a fraction of the real images' (< 0.25: collapse)")
fig = ch05.plot_curve(cfg["ddim_steps"], {
    "DDIM eta=0": [table[f"DDIM eta=0, {n} steps"]["accuracy"] for n in cfg["ddim_steps"]],
    "DDIM eta=1": [table[f"DDIM eta=1, {n} steps"]["accuracy"] for n in cfg["ddim_steps"]],
    f"DDPM {cfg['T']}": [table[f"DDPM, {cfg['T']} steps"]["accuracy"]] * len(cfg["ddim_steps"])},
    "sampling steps", "accuracy of the requested digit", "class accuracy vs steps", logx=True)
save_figure(fig, "accuracy_vs_steps")
plt.show()

# %% [markdown]
# In the DDIM paper's Table 1 the FID of both rows falls with more steps, the $\eta = 1$ row
# steeply (CIFAR-10: 41.07 at 10 steps, 5.78 at 100), and $\eta = 0$ is the better one at few
# steps (13.36 at 10). The cell below reads your rows the same way.

# %%
steps_list = cfg["ddim_steps"]
frechet_rows = {eta: [table[f"DDIM eta={eta:g}, {n} steps"]["frechet"] for n in steps_list] for eta in (0.0, 1.0)}
for eta, fds in frechet_rows.items():
    trend = ("falls at every step count" if all(b < a for a, b in zip(fds, fds[1:])) else
             "falls overall, not at every step count" if fds[-1] < fds[0] else "does not fall")
    print(f"eta = {eta:g}: Fréchet " + " / ".join(f"{v:.1f}" for v in fds)
          + f" at {' / '.join(map(str, steps_list))} steps: it {trend}")
e0, e1 = frechet_rows[0.0][0], frechet_rows[1.0][0]
print(f"at {steps_list[0]} steps eta = 0 is {'better' if e0 < e1 else 'not better'} than eta = 1 "
      f"({e0:.1f} against {e1:.1f}; the paper: better)")
if frechet_rows[1.0][-1] >= frechet_rows[1.0][0]:
    print("your eta = 1 row disagrees with the paper, where it falls steeply. Likely causes, not tested here: "
          f"the sample count ({n_eval} images against the paper's 50,000: small differences may be noise) "
          "and the short training (eta = 1 adds fresh noise at every step, which the next steps' "
          "predictions must remove)")

# %% [markdown]
# ## The guidance scale
#
# From $s = 0$ (unconditional: the label is ignored) through $s = 1$ (the conditional
# model) to strong guidance. One row per digit, one column per scale, the same starting
# noise in every column.
#
# **Predict, then run.** At $s = 0$ the guided prediction is $\varepsilon_u$ alone. What
# accuracy of the requested digit do you expect at $s = 0$, and what will the row of digit
# 3 look like in that column? Write it below before running the sweep (not graded).

# %%
prediction_scale_zero = "..."  # your prediction, in a sentence

# %%
sweep = {}
rows = {}
requested = eval_labels(n_eval)
for s in cfg["sweep_scales"]:
    out = sample_ddim(guided(model, requested, s), shape(n_eval), alpha_bars, cfg["sweep_steps"],
                      profile.generator(60), device=device)
    sweep[s] = rate(to_images(out), requested, f"scale {s:g}")
    print(f"scale {s:4.1f}: accuracy {sweep[s]['accuracy']:.3f}, Fréchet {sweep[s]['frechet']:.2f} "
          f"(training data {floor_res:.2f}), precision {sweep[s]['precision']:.2f}, recall {sweep[s]['recall']:.2f}, "
          f"coverage {sweep[s]['coverage']:.2f}, smallest spread {sweep[s]['min_spread']:.2f}, "
          f"digits {sweep[s]['digits']:.1f}")
    log_metric(f"guidance_scale{s:g}_accuracy", sweep[s]["accuracy"], "",
               f"DDIM {cfg['sweep_steps']} steps, {n_eval} samples")
    log_metric(f"guidance_scale{s:g}_frechet", sweep[s]["frechet"], "", f"vs {n_eval} real test images")
    log_metric(f"guidance_scale{s:g}_precision", sweep[s]["precision"], "", "fraction of samples inside real k = 5 balls")
    log_metric(f"guidance_scale{s:g}_recall", sweep[s]["recall"], "", "fraction of real images inside sample balls")
    log_metric(f"guidance_scale{s:g}_coverage", sweep[s]["coverage"], "", "fraction of real k = 5 balls holding a sample")
    if sweep[s]["min_spread"] == sweep[s]["min_spread"]:  # nan with fewer than two samples per digit
        log_metric(f"guidance_scale{s:g}_min_spread", sweep[s]["min_spread"], "",
                   "smallest per-digit spread (< 0.25: collapse)")
    for d in range(10):
        rows.setdefault(str(d), []).append(to_images(out[d:d + 1]))
fig = ch05.show_rows({d: torch.cat(v) for d, v in rows.items()}, [f"s={s:g}" for s in cfg["sweep_scales"]])
save_figure(fig, "guidance_sweep")
plt.show()
fig = ch05.plot_curve(cfg["sweep_scales"], {what: [sweep[s][what] for s in cfg["sweep_scales"]]
                                           for what in ("accuracy", "precision", "recall", "coverage")},
                      "guidance scale s (= 1 + w)", "fraction", "guidance sweep: fidelity and diversity")
save_figure(fig, "accuracy_vs_guidance")
plt.show()

# %%
scales = cfg["sweep_scales"]
acc = [sweep[s]["accuracy"] for s in scales]
fds = [sweep[s]["frechet"] for s in scales]
recall = [sweep[s]["recall"] for s in scales]
lo, hi = scales[0], scales[-1]
print(f"accuracy at s = {lo:g}: {acc[0]:.2f} (chance 0.10: the requested digits are uniform); at s = {hi:g}: "
      f"{acc[-1]:.2f}: " + ("it rises with s" if acc[-1] > acc[0] + 0.1 else "no clear rise with s (the model is undertrained)"))
s_fd = scales[fds.index(min(fds))]
print(f"Fréchet is lowest at s = {s_fd:g} ({min(fds):.1f}; the training data's own {floor_res:.1f})"
      + (f" and rises to {fds[-1]:.1f} at s = {hi:g}" if s_fd != hi else ": it does not rise again within this sweep"))
below = [s for s in scales if sweep[s]["frechet"] < floor_res]
if below:
    print(f"at s = {', '.join(f'{s:g}' for s in below)} the samples score below the training data itself "
          f"({floor_res:.1f}): guidance sharpens them past the data they were trained on")
s_rc = scales[recall.index(max(recall))]
if recall[-1] < max(recall) - 0.05:
    print(f"recall is highest at s = {s_rc:g} ({max(recall):.2f}) and falls to {recall[-1]:.2f} at s = {hi:g}: "
          "fewer real images are reached, diversity is lost")
else:
    print(f"recall at s = {hi:g} ({recall[-1]:.2f}) is within 0.05 of its highest ({max(recall):.2f}, at s = "
          f"{s_rc:g}): no clear loss of diversity within this sweep")
collapsed = [s for s in scales if sweep[s]["collapsed"]]
print(f"collapse at s = {', '.join(f'{s:g}' for s in collapsed)}" if collapsed else "no scale collapsed a digit")

# %% [markdown]
# Compare with your prediction, using the accuracies printed above.
#
# At $s = 0$ the label is ignored, so a model of any quality is near chance (0.1) there.
# Where the model has learnt the classes, $s = 1$ (the plain conditional model) already
# follows the label most of the time and raising $s$ makes the requested digit nearly
# certain; if the line above says there is no clear rise, the model has not learnt the
# classes yet (the `smoke` profile trains far too briefly), and guidance has nothing to
# amplify. On ImageNet 64×64, Ho & Salimans (their Fig. 4 and Table 1) find that raising the
# guidance weight first lowers the FID, then raises it, while the Inception score keeps
# rising: fidelity bought with diversity. Whether your sweep shows that trade, and at which
# scale, the lines above say: Fréchet alone mixes fidelity and diversity, recall and coverage
# measure diversity apart, and a collapse warning means the samples of a digit have become
# nearly one image.
#
# %% [markdown]
# ## Two experiments
#
# Two changes to the 2-D warm-up, one design choice each. Every model below is trained
# exactly as the warm-up's `toy` (same initial weights, optimiser, steps and data stream),
# sampled with your `ddpm_step` from the same starting noise, and rated by the warm-up's
# measure: the fraction of samples within 0.3 of a blob centre. We also report how wide the
# sampled blobs are (the root-mean-square distance of those samples to their centre) and
# the model's error on held-out points at each noise level. Each experiment takes well under
# a minute in the `cpu` profile.
#
# ### Experiment 1 · Predicting $x_0$ instead of the noise
#
# The naive choice is to let the network predict the clean point, $\hat x_0 = f_\theta(x_t,
# t)$, trained with $\lVert x_0 - f_\theta(x_t, t) \rVert^2$ (same draws of $t$ and
# $\varepsilon$ as your `diffusion_loss`). Your sampler only needs the conversion
# $\hat\varepsilon = (x_t - \sqrt{a_t}\, \hat x_0) / \sqrt{1 - a_t}$. The two targets are
# equivalent: a perfect predictor of one gives a perfect predictor of the other, so any
# difference comes from training.
#
# **Predict** (before you run the next cells): with the same network, steps and data, will
# the $x_0$-predictor put more or fewer samples on the blobs than the warm-up's
# $\varepsilon$-predictor? At which steps do you expect its $\hat x_0$ to be worse: near
# $t = 0$ (little noise) or near $t = T-1$? Write your guess in the cell below; the run
# prints it next to the measurements.

# %%
my_prediction_x0 = ""  # your guess, in a sentence

# %%
from workbook.ch05.models import ToyDenoiserNoTime
from workbook.ch05.plots import plot_toy_errors

ts = sorted({round(f * (toy_cfg["T"] - 1)) for f in (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)})
held_out = toy_data(2000, profile.generator(72))  # (2000, 2) clean points
held_out_eps = torch.randn(held_out.shape, generator=profile.generator(73))


def train_toy(model_class, loss_fn, desc):
    """The warm-up's training (seed, Adam, steps, data stream) with another model or loss.
    loss_fn(net, x0, alpha_bars, generator) -> scalar. Returns the model (eval mode) and seconds."""
    torch.manual_seed(profile.seed)
    net = model_class(toy_cfg["T"])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = profile.generator(20)
    losses, t0 = [], time.time()
    bar = progress(range(toy_cfg["steps"]), desc=desc)
    for step in bar:
        loss = loss_fn(net, toy_data(512, g), toy_ab, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    secs = time.time() - t0
    print(f"{desc}: {toy_cfg['steps']} steps in {secs:.1f} s, mean loss of the last 100 steps "
          f"{sum(losses[-100:]) / len(losses[-100:]):.3f}")
    return net.eval(), secs


@torch.no_grad()
def toy_sample(eps_fn, desc):
    """DDPM sampling of toy_cfg["n"] points with your ddpm_step, from the warm-up's starting noise."""
    g, n = profile.generator(21), toy_cfg["n"]
    x = torch.randn(n, 2, generator=g)
    for t in progress(reversed(range(toy_cfg["T"])), desc=desc, total=toy_cfg["T"]):
        t_batch = torch.full((n,), t, dtype=torch.long)
        x, _ = ddpm_step(eps_fn(x, t_batch), t, x, toy_ab, torch.randn(n, 2, generator=g))
    return x


def rate_toy(points):
    """The warm-up's measure (fraction within 0.3 of a centre) and the rms distance of those points."""
    dist = torch.cdist(points, centres).min(dim=1).values
    near = dist[dist < 0.3]
    return (dist < 0.3).float().mean().item(), near.pow(2).mean().sqrt().item() if len(near) else float("nan")


@torch.no_grad()
def errors_per_t(eps_fn):
    """Mean squared errors of eps_hat and of the x0_hat it implies on the held-out points, at each t of ts."""
    err_eps, err_x0 = [], []
    for t in ts:
        t_batch = torch.full((len(held_out),), t, dtype=torch.long)
        x_t = q_sample(held_out, t_batch, held_out_eps, toy_ab)
        eps_hat = eps_fn(x_t, t_batch)
        a = float(toy_ab[t])
        x0_hat = (x_t - math.sqrt(1 - a) * eps_hat) / math.sqrt(a)
        err_eps.append(F.mse_loss(eps_hat, held_out_eps).item())
        err_x0.append(F.mse_loss(x0_hat, held_out).item())
    return err_eps, err_x0


def x0_loss(net, x0, alpha_bars, generator):
    """The naive target, the clean point: the draws of diffusion_loss (t, then eps), another target."""
    t = torch.randint(0, len(alpha_bars), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    return F.mse_loss(net(q_sample(x0, t, eps, alpha_bars), t), x0)


def eps_from_x0(net):
    """eps_fn for the sampler from an x0-predictor: eps_hat = (x_t - sqrt(a_t) x0_hat) / sqrt(1 - a_t)."""
    def eps_fn(x_t, t):
        a = toy_ab[t].float()[:, None]  # (B, 1)
        return (x_t - a.sqrt() * net(x_t, t)) / (1 - a).sqrt()
    return eps_fn


x0_net, x0_secs = train_toy(ToyDenoiser, x0_loss, "training the x0-predictor")
experiment = {"eps-prediction": toy, "x0-prediction": eps_from_x0(x0_net)}
toy_samples, toy_errors = {}, {}
for name, eps_fn in experiment.items():
    toy_samples[name] = toy_sample(eps_fn, f"sampling, {name}")
    toy_errors[name] = errors_per_t(eps_fn)
print(f"your prediction: {my_prediction_x0 or '(none written)'}")
print(f"real data: {rate_toy(held_out)[0]:.1%} within 0.3 of a centre, rms distance {rate_toy(held_out)[1]:.3f}")
a0 = float(toy_ab[0])
for name, key in (("eps-prediction", "eps"), ("x0-prediction", "x0pred")):
    frac, width = rate_toy(toy_samples[name])
    err_eps, err_x0 = toy_errors[name]
    print(f"{name:15s}: {frac:.1%} within 0.3 of a centre, rms distance {width:.3f}; MSE of x0_hat "
          f"{err_x0[0]:.2e} at t = 0, {err_x0[-1]:.3f} at t = {ts[-1]}; MSE of eps_hat at t = 0: {err_eps[0]:.2f}")
    log_metric(f"exp_{key}_on_blob_fraction", frac, "", "2-D samples within 0.3 of a centre, same noise as the warm-up")
    log_metric(f"exp_{key}_blob_rms", width, "", "rms distance of those samples to their centre")
    log_metric(f"exp_{key}_x0_error_t0", err_x0[0], "", "MSE of x0_hat at t = 0 on 2000 held-out points")
print(f"an error in x0_hat becomes an error sqrt(a_t / (1 - a_t)) = {math.sqrt(a0 / (1 - a0)):.0f} times larger "
      f"in eps_hat at t = 0, {math.sqrt(float(toy_ab[ts[-1]]) / (1 - float(toy_ab[ts[-1]]))):.2f} times at t = {ts[-1]}")
log_metric("exp_x0pred_train_time", x0_secs, "s", f"{toy_cfg['steps']} steps, as the warm-up's eps-predictor")
fig = plot_toy_errors(toy_samples, held_out, ts, {name: e[1] for name, e in toy_errors.items()}, "MSE of x0_hat")
save_figure(fig, "experiment_x0_prediction")
plt.show()

# %% [markdown]
# **E1 (2 points).** Compare the two models on your numbers: the fraction on the blobs,
# the width of the blobs, and the error of $\hat x_0$ near $t = 0$ and at large $t$. Explain
# the differences from how each loss weights the steps, and what the error near $t = 0$
# does to the last sampling steps.

# %% [written id=written_x0_prediction points=2]
# **Model answer.** Since x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) ε, an error δ in x̂_0 is an
# error sqrt(a_t / (1 - a_t)) δ in ε̂, so ||x_0 - x̂_0||² = (1 - a_t)/a_t · ||ε - ε̂||²: the
# x_0 loss is the ε loss weighted by 1/SNR_t. At large t the clean point is barely
# predictable (both models' x̂_0 error there is about 1.1, the data's variance per
# coordinate) and those steps dominate the x_0 loss; near t = 0, where x̂_0 ≈ x_t, the errors
# are tiny in absolute terms and the x_0 loss hardly sees them, while the ε target has unit
# scale at every t, so the ε loss weights those steps as much as any. So the x_0-predictor
# fits the low-noise steps loosely: in the cpu run its x̂_0 error was larger up to about
# t = 100, and about 90 times the ε-predictor's at t = 0 (4.2e-3 against 4.5e-5, about 0.065 per
# coordinate for blobs of std 0.1), an error that the conversion multiplies by
# sqrt(a_0 / (1 - a_0)) ≈ 156 in ε̂; at large t it was as good or slightly better (1.11
# against 1.19 at t = 899). The last steps, which separate neighbouring blobs and set their
# width, are then off: its samples lie on the circle but are smeared along it between the
# blobs and squeezed across it (rms distance to the centre 0.127 against the data's 0.139 and
# the ε-predictor's 0.143), and fewer lie within 0.3 of a centre (92.9 % against 96.2 %).
# If your run shows the x_0-predictor ahead, as the smoke profile's 300 steps did (53 % against
# 17 %, its samples already on the circle), training was too short for the fine steps to
# matter: the x_0 loss spends its effort on large t, which decides the coarse layout and is
# learnt first.
#
# **Rubric.** 1 point: the weighting (x_0 loss = ε loss × (1 - a_t)/a_t, or "x_0 errors are
# amplified by sqrt(a_t/(1 - a_t)) near t = 0", or "ε has unit scale at every t") tied to where
# each model's error curve is worse. 1 point: what it does to the samples, with the measured
# numbers (fraction on the blobs, blob width), including a correct reading if the run shows
# the opposite ranking.

# %% [markdown]
# ### Experiment 2 · A denoiser that does not know $t$
#
# `ToyDenoiserNoTime` (given) is the warm-up's MLP with the same parameters, but its time
# features are always those of $t = 0$: it must guess the noise level from $x_t$ alone. It is
# trained with your `diffusion_loss` exactly as the warm-up's model, and sampled with your
# `ddpm_step`, whose coefficients still use the true $t$.
#
# **Predict** (before you run the next cells): how will its samples differ from the
# warm-up's (as good, spread between the blobs, collapsed onto a few blobs)? At which noise
# levels will its $\hat\varepsilon$ be worst? Write your guess in the cell below.

# %%
my_prediction_no_time = ""  # your guess, in a sentence

# %%
blind_net, blind_secs = train_toy(ToyDenoiserNoTime, lambda net, x0, ab, g: diffusion_loss(net, x0, ab, generator=g),
                                  "training the denoiser without t")
toy_samples["no time input"] = toy_sample(blind_net, "sampling, no time input")
toy_errors["no time input"] = errors_per_t(blind_net)
print(f"your prediction: {my_prediction_no_time or '(none written)'}")
for name in ("eps-prediction", "no time input"):
    frac, width = rate_toy(toy_samples[name])
    err_eps = toy_errors[name][0]
    print(f"{name:15s}: {frac:.1%} within 0.3 of a centre, rms distance {width:.3f}; MSE of eps_hat at t = "
          + ", ".join(f"{t}: {e:.3f}" for t, e in zip(ts, err_eps) if t in (ts[0], ts[len(ts) // 2], ts[-1])))
frac, width = rate_toy(toy_samples["no time input"])
log_metric("exp_notime_on_blob_fraction", frac, "", "2-D samples within 0.3 of a centre, same noise as the warm-up")
log_metric("exp_notime_blob_rms", width, "", "rms distance of those samples to their centre")
log_metric("exp_notime_eps_error_late", toy_errors["no time input"][0][-1], "", f"MSE of eps_hat at t = {ts[-1]}")
log_metric("exp_eps_eps_error_late", toy_errors["eps-prediction"][0][-1], "", f"MSE of eps_hat at t = {ts[-1]}")
fig = plot_toy_errors({k: toy_samples[k] for k in ("eps-prediction", "no time input")}, held_out, ts,
                           {k: toy_errors[k][0] for k in ("eps-prediction", "no time input")}, "MSE of eps_hat")
save_figure(fig, "experiment_no_time_input")
plt.show()

# %% [markdown]
# **E2 (1 point).** Explain, from your numbers and the figure, what the network loses
# without $t$ and why its samples look as they do.

# %% [written id=written_no_time points=1]
# **Model answer.** Without t the network sees only x_t, and in 2-D one point is compatible
# with many noise levels (a point near a blob may be nearly clean or noise that landed
# there): it can only predict the average of ε over all the t that could have produced x_t,
# while the sampler's coefficients assume the true t. Its ε̂ error is larger than the
# time-aware model's at most noise levels, most of all at large t (in the cpu run 0.22 against
# 0.03 at t = 899, 0.79 against 0.49 at t = 200; near t = 0 both are about 1, the noise being
# too small there to tell from the blobs' own spread). Each step removes the wrong amount of
# noise, and the samples spread between and around the blobs: 27.6 % on the blobs against
# 96.2 %, rms distance 0.198 against 0.143. If your run is short (smoke: 19 % against 17 %),
# neither model has learnt the blobs yet and the comparison says little. (In high dimension
# the noise level can be estimated from x_t itself, averaged over many pixels, so a blind
# image model loses less; in 2-D it cannot.)
#
# **Rubric.** 1 point: the network cannot tell the noise level from x_t, so it predicts an
# average over t that the sampler's per-step coefficients do not match, tied to the measured
# error curve and the lower fraction on the blobs / spread samples.

# %% [markdown]
# ### Written questions
#
# Answer each in a few sentences, in your own words, in the cell under it (double-click it to
# edit). Your instructor grades them; after grading, your feedback shows a model answer.
#
# **W1 (2 points).** The network is trained to predict the whole noise ε that was added to
# x_0, yet one DDPM step moves x_t only a little. Explain why predicting the whole noise (and
# not the one-step increment x_t - x_{t-1}) is the right target, and where the small step
# comes from.

# %% [written id=written_entire_noise points=2]
# **Model answer.** From x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) ε, an estimate of ε is an
# estimate of x_0 and hence of the posterior mean of x_{t-1}: the step formula turns ε̂ into μ
# using only the known schedule, subtracting β_t/sqrt(1 - a_t) times ε̂, rescaling by
# 1/sqrt(α_t) and adding fresh noise σ_t z. So the network solves one well-posed regression
# problem at every t (the same target ε with unit variance), and the schedule decides how far
# each step moves. The increment x_t - x_{t-1} is tiny and dominated by the fresh noise of
# that step, a poor regression target.
#
# **Rubric.** 1 point: ε̂ determines x̂_0 / μ through the schedule's known coefficients. 1
# point: the step size comes from the schedule (β_t, α_t) and the added noise, not from the
# network; the increment is a noisy, tiny target.

# %% [markdown]
# **W2 (2 points).** Your guidance sweep measured, against the scale s, accuracy, the Fréchet
# distance, precision, recall and coverage, and warned of any collapse. Describe what your
# numbers show as s grows (where Fréchet is lowest, what recall and coverage do beyond it),
# and explain it from what guidance does to the distribution sampled. If your numbers show no
# loss of diversity, say so and what you would change to see one.

# %% [written id=written_guidance points=2]
# **Model answer.** Guided noise ε_u + s(ε_c - ε_u) follows the score of p(x|y) p(y|x)^(s-1),
# i.e. p(x) p(y|x)^s up to normalisation: for s > 1 it over-weights the classifier-like term
# and pushes samples towards images that are most unmistakably the requested class. Accuracy
# and precision rise (fidelity to the prompt and to real digits) while the samples
# concentrate on the most typical images of each class, so recall and coverage, which count
# the real images the samples reach, fall once s is large, and the Fréchet distance, which
# mixes both, first falls (the weak conditional model's samples improve) and then rises
# again. Where that happens depends on the run: read it off the sweep (e.g. "Fréchet lowest
# at s = 5, recall falling from s = 3 on, no collapse up to 15"). A sweep whose recall does not
# fall has not reached the trade: larger s, more samples (recall and coverage of 200 images
# are coarse) or a better-trained model would show it.
#
# **Rubric.** 1 point: the numbers read correctly (where Fréchet is lowest, the trend of
# recall/coverage and accuracy with s, collapse if warned); an answer claiming a trade its
# numbers do not show loses it. 1 point: guidance samples p(x) p(y|x)^s, concentrating on
# typical class images: fidelity up, diversity down.

# %% [markdown]
# ## 8 · Concept questions
#
# Answer by assigning Python values. The check cell only verifies the format; the answers
# are graded when you submit.
#
# **Q1.** Suppose that at some step $t > 0$ the network predicted the noise of $x_t$
# exactly: $\hat\varepsilon = \varepsilon$. What is `ddpm_step`'s $\hat x_0$ then? Set
# `answer_predicts` to one letter. A: $x_{t-1}$, one step cleaner than $x_t$ · B: $x_0$
# itself, exactly · C: $x_t$ unchanged · D: the mean of the training images.
#
# **Q2.** Ho & Salimans write guidance as $(1 + w)\,\varepsilon_c - w\,\varepsilon_u$
# with a weight $w$. What does their $w = 0$ sample from? Set `answer_guidance_w` to one
# letter. A: the unconditional model · B: the conditional model, without extrapolation ·
# C: the conditional model with guidance twice as strong as $s = 1$ · D: nothing
# sensible, the prediction vanishes.

# %% [solution id=quiz_answers]
#| solution: answer_predicts answer_guidance_w

# %% [tests id=quiz_predicts points=1 hidden=quiz]
ch05.check_quiz("answer_predicts", answer_predicts)
ch05.check_quiz("answer_guidance_w", answer_guidance_w)

# %% [markdown]
# **Q3.** Which statements are true? Set `answer_diffusion_facts` to a set of letters.
#
# * A: DDIM with $\eta = 0$ maps a starting noise to an image deterministically.
# * B: A scheduler is a noise schedule together with an update rule for the reverse steps.
# * C: The cosine schedule removes the signal faster than the linear one in the first steps.
# * D: A network trained with the DDPM loss can be sampled with DDIM without retraining.
# * E: With classifier-free guidance, scale $s = 0$ gives unconditional samples.
# * F: DDPM adds fresh noise at every step, including the last one.

# %% [solution id=quiz_facts_answers]
#| solution: answer_diffusion_facts

# %% [tests id=quiz_diffusion_facts points=1 hidden=quiz]
ch05.check_quiz("answer_diffusion_facts", answer_diffusion_facts)

# %% [markdown]
# ## What to remember
#
# * The forward process has a closed form, $x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 -
#   \bar\alpha_t}\varepsilon$, so training needs no simulation: pick $t$, add noise, regress it.
# * The network predicts the **whole** noise in $x_t$; the sampler's update rule removes
#   the part that belongs to one step. Schedule + update rule = scheduler.
# * DDPM samples with all $T$ stochastic steps; DDIM reuses the same network on a short,
#   optionally deterministic sub-sequence.
# * A U-Net with a time embedding in every residual block is the standard noise predictor.
# * Classifier-free guidance: one network, labels dropped at random in training,
#   $\varepsilon_u + s(\varepsilon_c - \varepsilon_u)$ at sampling; $s = 1 + w$.

# %% [markdown]
# **Further reading**
#
# * Sohl-Dickstein et al., *Deep Unsupervised Learning using Nonequilibrium Thermodynamics*, ICML 2015.
# * Ho, Jain & Abbeel, *Denoising Diffusion Probabilistic Models*, NeurIPS 2020.
# * Song, Meng & Ermon, *Denoising Diffusion Implicit Models*, ICLR 2021.
# * Nichol & Dhariwal, *Improved Denoising Diffusion Probabilistic Models*, ICML 2021.
# * Ho & Salimans, *Classifier-Free Diffusion Guidance*, NeurIPS 2021 Workshop on Deep Generative Models (arXiv 2022).
# * Karras, Aittala, Aila & Laine, *Elucidating the Design Space of Diffusion-Based Generative Models*, NeurIPS 2022.
