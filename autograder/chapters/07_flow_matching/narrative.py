# %% [markdown]
# # 07 · Flow matching and rectified flow
#
# **Time:** about 2 hours of work: the exercises about 85 minutes (each says its own), the questions about 20 (2 quizzes, 2 written), plus reading.
# The `cpu` profile runs the whole notebook in about 12 minutes (its two MNIST trainings about 4 each) on 2 idle CPU cores.
#
# Chapter 05 trained a network to predict noise and walked back from noise in many small,
# curved steps. Stable Diffusion 3 and Flux are trained differently: as **rectified flows**
# (Liu, Gong & Liu 2023; Lipman et al., *Flow Matching for Generative Modeling*, 2023;
# Esser et al. 2024). Data and noise are joined by straight lines, a network learns the
# **velocity** along them, and sampling solves an ordinary differential equation (ODE)
# from noise to data with a few steps of a standard solver.
#
# You build the path and its velocity target, the flow-matching loss (with SD3's
# logit-normal choice of $t$), the Euler and Heun samplers, the bridge that turns
# chapter 05's $\varepsilon$-predictions into velocities and back, classifier-free guidance
# on velocities, and a measure of how straight a learned flow is. Then **reflow**: pair
# noise with the model's own samples, train again on those pairs, and watch the paths
# straighten so that one or two steps suffice. Everything runs on a 2-D toy distribution
# (seconds on a CPU, every path visible); your Euler step is compared with diffusers'
# `FlowMatchEulerDiscreteScheduler`.
#
# **Conventions.** Time runs from $t = 0$ (data) to $t = 1$ (noise), as in diffusers'
# FlowMatch schedulers, SD3 and Flux (where it is called $\sigma$):
#
# $$x_t = (1 - t)\, x_0 + t\, \varepsilon, \qquad \varepsilon \sim \mathcal N(0, I).$$
#
# Papers differ on which end is noise: Lipman et al. and Liu et al. put the noise at
# $t = 0$ and the data at $t = 1$, which flips the sign of the velocity. Check the
# convention before you reuse a formula.
#
# **How this notebook works.** Each exercise states what to implement, the shapes in and
# out, and how it is checked. Run the check cell under it: it tells you what is wrong, on
# which input, and often the likely mistake. When grading, hidden checks run the same
# contract on new random inputs. Set `WORKBOOK_PROFILE=smoke|cpu|gpu` before starting
# Jupyter to scale every experiment (default: `gpu` if CUDA is available, else `cpu`; the
# 2-D toy always runs on the CPU).

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from workbook import ch07
from workbook.ch07 import CENTRES, Recorded, ToyVelocity, sliced_wasserstein, toy_data, uniform_timesteps
from workbook.profile import setup
from workbook.progress import progress
from workbook.results import log_metric, save_figure

profile = setup(seed=0)

# %% [markdown]
# ## 1 · The straight path and its velocity
#
# Pick a data point $x_0$ and a noise draw $\varepsilon$. The path $x_t = (1 - t) x_0 +
# t\varepsilon$ is a straight line travelled at constant speed, so its velocity
#
# $$v = \frac{d x_t}{dt} = \varepsilon - x_0$$
#
# is the same at every $t$. A network $v_\theta(x_t, t)$ cannot know which pair
# $(x_0, \varepsilon)$ produced $x_t$; trained to regress $\varepsilon - x_0$, it learns the
# average velocity of all the lines through $x_t$, a velocity **field** whose ODE carries
# the noise distribution at $t = 1$ to the data distribution at $t = 0$.
#
# **Relation to chapter 05.** A DDPM point $\sqrt{\bar\alpha}\, x_0 + \sqrt{1 - \bar\alpha}\,
# \varepsilon$ mixes the same two ingredients with coefficients that do not sum to 1.
# Divided by $s = \sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha}$ it lies on this path, at
# $t = \sqrt{1 - \bar\alpha} / s$: the two families of models see the same points, up to
# a rescaling of $x$ and of time (section 4 makes this exact).
#
# **Implement** *(about 5 min)* `flow_path(x0, eps, t) -> x_t` with `t` (B,), one time per example,
# broadcast over the other dimensions, and the result in `x0`'s dtype; and
# `velocity_target(x0, eps) -> v`. Every exercise of this chapter leaves its inputs unchanged.
#
# **Checked:** three 2-D examples at $t = 0, 0.25, 1$; float32 images with three channels
# and float64 `t`; the inputs unchanged. Hidden: the inputs unchanged, random shapes and dtypes against diffusers'
# `FlowMatchEulerDiscreteScheduler.scale_noise`, which forms the same path.
#
# **Stuck?** End the cell below with `flow_path = ch07.standins.flow_path`, and the same
# for `velocity_target` as you need, to use stand-ins built on torch: the rest of the
# chapter runs with them; this exercise then earns no points.

# %% [solution id=path]
#| solution: flow_path velocity_target

# %% [tests id=path_checks points=2 hidden=path]
ch07.check_path(flow_path, velocity_target)

# %% [markdown]
# ## 2 · The flow-matching loss
#
# Draw $t$ for every example, noise $\varepsilon$, form $x_t$ and regress the velocity:
#
# $$L = \big\lVert v_\theta(x_t, t) - (\varepsilon - x_0) \big\rVert^2 .$$
#
# Uniform $t \sim U(0, 1)$ is the plain choice. SD3 draws $t$ from a **logit-normal**
# distribution, $t = \mathrm{sigmoid}(u)$ with $u \sim \mathcal N(0, 1)$, which puts more
# training on the middle times, where the velocity is hardest to predict, and less on the
# ends. Reflow (section 6) trains on given pairs $(x_0, \varepsilon)$ instead of fresh
# noise: the function takes an optional `eps`.
#
# **Implement** *(about 15 min)* `flow_matching_loss(model, x0, eps=None, y=None, generator=None,
# logit_normal=False) -> loss`. The draws come from `generator`, in this order, on `x0`'s
# device and in its dtype: `t = torch.rand(B, ...)` (or `torch.sigmoid(torch.randn(B,
# ...))` when `logit_normal`), then, only when `eps` is None, `eps = torch.randn(x0.shape,
# ...)`. Call `model(x_t, t)`, or `model(x_t, t, y)` when labels are given, once; return
# the mean squared error over all elements.
#
# **Checked:** a stand-in model records its inputs; the check replays your draws from a
# copy of the generator and compares $t$, $x_t$ and the loss, in float64 and float32,
# with the logit-normal option, with given pairs (only $t$ drawn) and labels; the global
# random generator must stay untouched. Hidden: the same on random data and sizes, the
# inputs unchanged.
#
# **Stuck?** End the cell below with
# `flow_matching_loss = ch07.standins.flow_matching_loss` to use a stand-in built on
# torch: the rest of the chapter runs with it; this exercise then earns no points.

# %% [solution id=flow_matching_loss]
#| solution: flow_matching_loss

# %% [tests id=flow_matching_loss_checks points=3 hidden=flow_matching_loss]
ch07.check_flow_matching_loss(flow_matching_loss)

# %% [markdown]
# ## 3 · Samplers: Euler and Heun
#
# A trained model defines the ODE $dx/dt = v_\theta(x, t)$. Start from noise $x_1 \sim
# \mathcal N(0, I)$ at $t = 1$ and integrate down to $t = 0$ along decreasing times
# $t_0 = 1 > t_1 > \dots > t_n = 0$ (the timesteps need not be evenly spaced; SD3
# "shifts" them towards the noise end). With $h = t_{i+1} - t_i < 0$:
#
# * **Euler** (first order): $x \leftarrow x + h\, v(x, t_i)$. One network evaluation per
#   step: $n$ in all.
# * **Heun** (second order): $v_1 = v(x, t_i)$, $x' = x + h v_1$, $v_2 = v(x', t_{i+1})$,
#   $x \leftarrow x + h (v_1 + v_2)/2$. As in diffusers' `FlowMatchHeunDiscreteScheduler`
#   (and Karras et al. 2022), the **last** step is a plain Euler step, so $n$ steps cost
#   $2n - 1$ evaluations (a single step is an Euler step).
#
# The velocity is called as `velocity(x, t)` with `t` a (B,) tensor in `x`'s dtype, every
# entry the current time.
#
# **Implement** *(about 20 min)* `euler_sample(velocity, x1, timesteps)` and `heun_sample(velocity, x1,
# timesteps)`, `timesteps` (n + 1,) decreasing, returning the end point like `x1` (leave
# `x1` itself unchanged: the notebook reuses the same starting noise for every sampler).
#
# **Checked:** fields whose flow is known in closed form ($v = -x$, $v = t$) over two
# steps, the times and number of evaluations, `x1` unchanged, uneven timesteps on float32
# images.
# Hidden: diffusers' `FlowMatchEulerDiscreteScheduler` and
# `FlowMatchHeunDiscreteScheduler` (shifted and unshifted) on a random nonlinear field;
# `x1` and `timesteps` unchanged.
#
# **Stuck?** End the cell below with `euler_sample = ch07.standins.euler_sample`, and the
# same for `heun_sample` as you need, to use stand-ins built on diffusers'
# `FlowMatchEulerDiscreteScheduler` and `FlowMatchHeunDiscreteScheduler`: the rest of the
# chapter runs with them; this exercise then earns no points.

# %% [solution id=samplers]
#| solution: euler_sample heun_sample

# %% [tests id=samplers_checks points=3 hidden=samplers]
ch07.check_samplers(euler_sample, heun_sample)

# %% [markdown]
# ## 4 · The bridge to chapter 05
#
# A DDPM model predicts the noise $\hat\varepsilon$ at a point $z = \sqrt{a}\, x_0 +
# \sqrt{1 - a}\, \varepsilon$ ($a = \bar\alpha$). Rescaled, $x_t = z / s$ with $s =
# \sqrt a + \sqrt{1 - a}$ and $t = \sqrt{1 - a} / s$, the same point lies on the flow
# path. From $x_t = (1 - t) x_0 + t \varepsilon$ and $v = \varepsilon - x_0$:
#
# $$\hat x_0 = \frac{x_t - t\hat\varepsilon}{1 - t}, \qquad
# v = \hat\varepsilon - \hat x_0 = \frac{\hat\varepsilon - x_t}{1 - t}, \qquad
# \varepsilon = x_t + (1 - t)\, v .$$
#
# So an $\varepsilon$-model is a velocity model, and back: the parameterisations differ
# in what the network outputs (and how its errors are weighted in training), not in what
# can be represented.
#
# **Implement** *(about 20 min)* `ddpm_to_flow(x_ddpm, a) -> (x_t, t)` (`a` (B,), one alpha-bar per example;
# outputs in `x_ddpm`'s dtype), `eps_to_velocity(eps_hat, x_t, t)` for $t < 1$ and
# `velocity_to_eps(v, x_t, t)`.
#
# **Checked:** DDPM points built from known $x_0, \varepsilon$ at $a = 0.64, 0.36, 1$ land
# on the path at $t = 3/7, 4/7, 0$; the true noise gives the true velocity and back;
# float32 images with float64 `t` (the result in `x_t`'s dtype). Hidden: random $a$,
# shapes and dtypes, `t` in the other dtype, round trips, the inputs unchanged.
#
# **Stuck?** End the cell below with `ddpm_to_flow = ch07.standins.ddpm_to_flow`, and the
# same for `eps_to_velocity` and `velocity_to_eps` as you need, to use stand-ins built on
# torch: the rest of the chapter runs with them; this exercise then earns no points.

# %% [solution id=bridge]
#| solution: ddpm_to_flow eps_to_velocity velocity_to_eps

# %% [tests id=bridge_checks points=2 hidden=bridge]
ch07.check_bridge(ddpm_to_flow, eps_to_velocity, velocity_to_eps)

# %% [markdown]
# ### DDIM is Euler in disguise
#
# One deterministic DDIM step of chapter 05 (diffusers' `DDIMScheduler`, $\eta = 0$) from
# $a_t$ to $a_{t'}$, and one Euler step of the flow ODE from $t$ to $t'$ with the velocity
# converted by your `eps_to_velocity`, on the rescaled point: if the two
# parameterisations agree, the DDIM result rescaled with `ddpm_to_flow` is the Euler
# result. The difference, measured on random points and a random fake $\hat\varepsilon$:

# %%
from diffusers import DDIMScheduler

ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                     set_alpha_to_one=True, timestep_spacing="trailing")
ddim.set_timesteps(10)
g = profile.generator(1)
worst = 0.0
steps = ddim.timesteps.tolist()
for t_now, t_next in zip(steps[1:-1], steps[2:]):  # from t = 899: see below for t = 999
    z = torch.randn(64, 2, generator=g, dtype=torch.float64)
    eps_fake = torch.randn(64, 2, generator=g, dtype=torch.float64)
    a_now, a_next = ddim.alphas_cumprod[t_now].double(), ddim.alphas_cumprod[t_next].double()
    z_next = ddim.step(eps_fake, t_now, z).prev_sample  # DDIM, eta = 0
    x_now, tau_now = ddpm_to_flow(z, a_now.repeat(64))
    x_next, tau_next = ddpm_to_flow(z_next, a_next.repeat(64))
    v = eps_to_velocity(eps_fake, x_now, tau_now)
    x_euler = euler_sample(lambda x, t: v, x_now, torch.stack([tau_now[0], tau_next[0]]))
    worst = max(worst, (x_euler - x_next).abs().max().item())
    round_trip = (velocity_to_eps(v, x_now, tau_now) - eps_fake).abs().max().item()
print(f"largest difference, DDIM step (rescaled) vs Euler step of the converted velocity: {worst:.2e}; "
      f"eps -> v -> eps round trip: {round_trip:.2e}")
log_metric("ddim_vs_euler_max_diff", worst, "", "8 DDIM steps (cosine schedule) vs Euler on the rescaled path")

# %% [markdown]
# If the bridge is right, the difference is at the level of rounding: deterministic DDIM
# is Euler's method on the flow path of the rescaled points. (The first step, from
# $t = 999$, is left out: there $\bar\alpha \approx 0$, and dividing by $\sqrt{\bar\alpha}$
# inside DDIM magnifies the float32 rounding of diffusers' stored $\bar\alpha$.) What changes between chapter 05 and here is the network's target and
# the time grid, not the kind of sampler.
#
# ## 5 · Class conditioning and guidance on velocities
#
# As in chapter 05: labels are dropped to a "no label" id `null_label` with probability
# `p_uncond` while training, so one network learns both $v_c = v_\theta(x, t, y)$ and
# $v_u = v_\theta(x, t, \varnothing)$; sampling follows
#
# $$v = v_u + s\, (v_c - v_u),$$
#
# $s = 0$ unconditional, $s = 1$ conditional, $s > 1$ guided ($s = 1 + w$ of Ho & Salimans).
#
# **Implement** *(about 10 min)* `drop_labels(y, p_uncond, null_label, generator=None)` (one `torch.rand`
# draw per label from `generator`, `y` left unchanged) and `guided_velocity(model, x_t, t,
# y, scale, null_label)` (one call on the doubled batch, or two calls).
#
# **Checked:** the dropped labels replayed from the generator at $p = 0, 1, 0.3$ (one draw
# per label at every rate, a new tensor, the global generator untouched); a stand-in model
# whose output is label + $t$ at three scales. Hidden: random labels, `null_label` and
# rates, a random network, the inputs unchanged.
#
# **Stuck?** End the cell below with `drop_labels = ch07.standins.drop_labels`, and the
# same for `guided_velocity` as you need, to use stand-ins built on torch: the rest of the
# chapter runs with them; this exercise then earns no points.

# %% [solution id=guidance]
#| solution: drop_labels guided_velocity

# %% [tests id=guidance_checks points=2 hidden=guidance]
ch07.check_guidance(drop_labels, guided_velocity)

# %% [markdown]
# ## The 2-D toy
#
# Eight Gaussian blobs on a circle, each blob a class. A small MLP (`ToyVelocity`,
# given) sees $x_t$, features of $t$ and a class embedding (label 8 = no label). Your
# `flow_matching_loss` trains it, with your `drop_labels` at $p = 0.2$.

# %%
cfg = profile.pick(smoke=dict(steps=250, batch=256, n_eval=1000, n_pairs=2000, reflow_steps=150),
                   cpu=dict(steps=4000, batch=512, n_eval=4000, n_pairs=20000, reflow_steps=3000),
                   gpu=dict(steps=6000, batch=1024, n_eval=8000, n_pairs=40000, reflow_steps=5000))
NULL = 8


def train(model, steps, generator, pairs=None, lr=2e-3):
    """Adam on your flow_matching_loss: fresh toy data with dropped labels, or given (x0, eps)
    pairs (reflow, unconditional). Returns the per-step losses."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    bar = progress(range(steps), desc="training the velocity model")
    for _ in bar:
        if pairs is None:
            x0, y = toy_data(cfg["batch"], generator)
            loss = flow_matching_loss(model, x0, y=drop_labels(y, 0.2, NULL, generator), generator=generator)
        else:
            idx = torch.randint(0, len(pairs[0]), (cfg["batch"],), generator=generator)
            loss = flow_matching_loss(model, pairs[0][idx], eps=pairs[1][idx], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses


torch.manual_seed(profile.seed)
model = ToyVelocity(num_classes=8)
t0 = time.time()
losses = train(model, cfg["steps"], profile.generator(10))
model.eval()
print(f"{cfg['steps']} steps of batch {cfg['batch']} in {time.time() - t0:.1f} s; "
      f"mean loss of the last 100 steps {sum(losses[-100:]) / 100:.3f}")
log_metric("toy_train_seconds", time.time() - t0, "s", f"{cfg['steps']} steps of batch {cfg['batch']}")


def unconditional(net):
    """The velocity of `net` with no label (the null label), as a function for the samplers."""
    @torch.no_grad()
    def velocity(x, t):
        return net(x, t)
    return velocity


data = toy_data(cfg["n_eval"], profile.generator(11))[0]
floor = sliced_wasserstein(data, toy_data(cfg["n_eval"], profile.generator(12))[0])
print(f"sliced Wasserstein distance between two real sets of {cfg['n_eval']}: {floor:.4f} (the floor)")
log_metric("swd_floor", floor, "", f"two real sets of {cfg['n_eval']} points")

# %% [markdown]
# ### Sample quality against the number of steps
#
# Unconditional samples from the same starting noise with Euler and Heun over
# $n = 1, 2, 4, 8, 16$ uniform steps, each scored by the sliced Wasserstein distance to a
# fresh set of real points (given code: the mean gap between sorted projections on random
# directions; lower is better, the floor above is the value for real data).

# %%
noise = torch.randn(cfg["n_eval"], 2, generator=profile.generator(13))
STEPS = [1, 2, 4, 8, 16]


def quality_table(net, label):
    rows = {}
    with torch.no_grad():
        for n in STEPS:
            for name, sampler, nfe in (("Euler", euler_sample, n), ("Heun", heun_sample, 2 * n - 1)):
                out = sampler(unconditional(net), noise, uniform_timesteps(n))
                rows[(name, n)] = (nfe, sliced_wasserstein(out, data))
    print(f"{label}\n{'sampler':8s} {'steps':>5s} {'NFE':>4s} {'SWD':>8s}")
    for (name, n), (nfe, d) in rows.items():
        print(f"{name:8s} {n:5d} {nfe:4d} {d:8.4f}")
    return rows


table = quality_table(model, "the model trained on independent (data, noise) pairs:")
for (name, n), (nfe, d) in table.items():
    log_metric(f"swd_{name.lower()}_{n}", d, "", f"{n} uniform steps, {nfe} evaluations, {cfg['n_eval']} samples")
fig = ch07.plot_curve(STEPS, {name: [table[(name, n)][1] for n in STEPS] for name in ("Euler", "Heun")} |
                      {"real data (floor)": [floor] * len(STEPS)},
                      "steps n", "sliced Wasserstein distance", "sample quality vs steps", logx=True)
save_figure(fig, "swd_vs_steps")
plt.show()
fig = ch07.plot_points([(f"Euler, {n} step{'s' * (n > 1)}",
                         euler_sample(unconditional(model), noise, uniform_timesteps(n))) for n in STEPS], data)
save_figure(fig, "samples_vs_steps")
plt.show()
rms_spread = lambda p: (p - p.mean(0)).pow(2).sum(1).mean().sqrt().item()  # noqa: E731
with torch.no_grad():
    one_step = euler_sample(unconditional(model), noise, uniform_timesteps(1))
print(f"one Euler step: the samples' mean is at ({one_step[:, 0].mean():.2f}, {one_step[:, 1].mean():.2f}), "
      f"their rms spread around it {rms_spread(one_step):.3f}; real data: mean ({data[:, 0].mean():.2f}, "
      f"{data[:, 1].mean():.2f}), spread {rms_spread(data):.3f}")
log_metric("toy_one_step_spread_ratio", rms_spread(one_step) / rms_spread(data), "",
           "rms spread of 1-step Euler samples / that of real points")

# %% [markdown]
# Read the table above. With one step (Heun's one step is one Euler step) every noise
# point goes to $x_1 - v(x_1, 1)$; at $t = 1$ the input says nothing about $x_0$, so the
# best velocity is $x_1 - \mathbb E[x_0]$ and every sample lands on the data mean, the
# centre of the circle: a collapse, not a blur. The last line printed above measures it: if
# the one-step spread is a small fraction of the data's, the model has learnt that velocity
# (the first panel shows the samples). Whether Heun's
# second evaluation per step beats spending the same evaluations on more Euler steps is what
# the NFE column lets you compare.
#
# ### Your Euler sampler against diffusers
#
# diffusers' `FlowMatchEulerDiscreteScheduler` (the scheduler of SD3 and Flux) with
# `shift=3.0`, as SD3 uses it, on 8 steps: its `sigmas` are the times $t$, its `step`
# adds $(t_{i+1} - t_i)\, v$. The same model, the same starting noise:

# %%
from diffusers import FlowMatchEulerDiscreteScheduler

lib = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
lib.set_timesteps(8)
x = noise.clone()
with torch.no_grad():
    for i, ts in enumerate(lib.timesteps):
        v = model(x, torch.full((len(x),), float(lib.sigmas[i])))
        x = lib.step(v, ts, x).prev_sample
    mine = euler_sample(unconditional(model), noise.clone(), lib.sigmas)
diff = (mine - x).abs().max().item()
print(f"shifted times: {[round(float(s), 3) for s in lib.sigmas]}")
print(f"largest difference, your euler_sample vs FlowMatchEulerDiscreteScheduler: {diff:.2e}")
log_metric("max_diff_vs_diffusers_euler", diff, "", "8 steps, shift 3, float32")

# %% [markdown]
# ### Guidance on the toy
#
# Ask for blob 0 (at angle 0) with scales $s = 0, 1, 3$ and count how many samples land
# within 0.3 of its centre (Euler, 16 steps).

# %%
def guided(net, label, scale):
    labels = torch.full((len(noise),), label, dtype=torch.long)

    @torch.no_grad()
    def velocity(x, t):
        return guided_velocity(net, x, t, labels, scale, NULL)
    return velocity


with torch.no_grad():
    panels = []
    for s in (0.0, 1.0, 3.0):
        out = euler_sample(guided(model, 0, s), noise, uniform_timesteps(16))
        hit = ((out - CENTRES[0]).norm(dim=1) < 0.3).float().mean().item()
        print(f"scale {s:g}: {hit:.1%} of the samples within 0.3 of blob 0")
        log_metric(f"guided_hit_rate_scale{s:g}", hit, "", "fraction of samples within 0.3 of the requested blob")
        panels.append((f"blob 0, s = {s:g}: {hit:.0%}", out))
fig = ch07.plot_points(panels, data)
save_figure(fig, "guidance")
plt.show()

# %% [markdown]
# With $s = 0$ the label is ignored and about one sample in eight would land on blob 0 if
# the model spreads its samples evenly; raising $s$ should concentrate them there, as the
# numbers above show or do not.
#
# ## 6 · Straightness and reflow
#
# The learned ODE paths are not straight, even though every training line was: lines of
# different pairs cross, and at a crossing the network learns their average direction.
# Curved paths are why one Euler step fails. Liu et al. measure it by the
# **straightness**: along a path from $x_1$ to its end $x_0$, how far the velocity strays
# from the straight displacement $x_1 - x_0$,
#
# $$S = \int_0^1 \mathbb E \big\lVert (x_1 - x_0) - v(x_t, t) \big\rVert^2 dt,$$
#
# zero exactly for straight paths travelled at constant speed. On the Euler path along
# `timesteps`, with $v_i = v(x_i, t_i)$, the integral as a sum weighted by the step
# lengths, and $D = t_0 - t_n$ the time span (1 when the grid runs from 1 to 0):
#
# $$S = \frac{1}{D} \sum_i (t_i - t_{i+1})\, \operatorname{mean}_b \Big\lVert
# \frac{(x_1 - x_0)_b}{D} - v_{i,b} \Big\rVert^2,$$
#
# the squared norm summed over all but the batch dimension. $(x_1 - x_0)/D$ is the
# velocity of the straight path from $x_1$ to $x_0$ over that span, so $S = 0$ for a straight
# path on any grid (one Euler step, from any $t_0$ to any $t_n$, gives 0).
#
# **Implement** *(about 15 min)* `straightness(velocity, x1, timesteps) -> (S, x0)` ($n$ evaluations;
# both in `x1`'s dtype, `S` a 0-d tensor; `x1` left unchanged).
#
# **Checked:** a constant field ($S = 0$), $v = -x$ on even and uneven steps, where $S$ is
# known in closed form, one step and two steps from 0.8 to 0.4 (divided by $D = 0.4$). Hidden: random
# nonlinear fields and uneven timesteps, one grid inside $(0, 1)$.
#
# **Stuck?** End the cell below with `straightness = ch07.standins.straightness` to use a
# stand-in built on diffusers' `FlowMatchEulerDiscreteScheduler`: the rest of the chapter
# runs with it; this exercise then earns no points.

# %% [solution id=straightness]
#| solution: straightness

# %% [tests id=straightness_checks points=2 hidden=straightness]
ch07.check_straightness(straightness)

# %% [markdown]
# ### Reflow
#
# **Reflow** (Liu et al. 2023): draw noise $x_1$, solve the model's ODE to get its sample
# $x_0$, and train a copy of the model with your loss on these **pairs**, `eps` $= x_1$. The
# pairs are no longer independent: the lines between them cross far less, so the new
# flow's paths are straighter, while (ideally) its samples keep the same distribution.

# %%
g = profile.generator(20)
x1_pairs = torch.randn(cfg["n_pairs"], 2, generator=g)
t0 = time.time()
with torch.no_grad():
    x0_pairs = heun_sample(unconditional(model), x1_pairs, uniform_timesteps(32))
rectified = copy.deepcopy(model).train()
reflow_losses = train(rectified, cfg["reflow_steps"], profile.generator(21), pairs=(x0_pairs, x1_pairs), lr=1e-3)
rectified.eval()
print(f"{cfg['n_pairs']} pairs (Heun, 32 steps) and {cfg['reflow_steps']} reflow steps in {time.time() - t0:.1f} s")

probe = torch.randn(cfg["n_eval"], 2, generator=profile.generator(22))
with torch.no_grad():
    s_before = straightness(unconditional(model), probe, uniform_timesteps(32))[0].item()
    s_after = straightness(unconditional(rectified), probe, uniform_timesteps(32))[0].item()
print(f"straightness S (32 Euler steps): {s_before:.3g} before reflow, {s_after:.3g} after")
log_metric("straightness_before_reflow", s_before, "", "S along 32 Euler steps, 1-rectified flow")
log_metric("straightness_after_reflow", s_after, "", "S along 32 Euler steps, after one reflow")

table_2 = quality_table(rectified, "after reflow:")
for (name, n), (nfe, d) in table_2.items():
    log_metric(f"reflow_swd_{name.lower()}_{n}", d, "", f"after reflow, {n} uniform steps, {nfe} evaluations")
fig = ch07.plot_curve(STEPS, {"Euler, before reflow": [table[("Euler", n)][1] for n in STEPS],
                              "Euler, after reflow": [table_2[("Euler", n)][1] for n in STEPS],
                              "real data (floor)": [floor] * len(STEPS)},
                      "steps n", "sliced Wasserstein distance", "reflow: quality vs steps", logx=True)
save_figure(fig, "reflow_swd_vs_steps")
plt.show()

# %%
paths = {}
with torch.no_grad():
    for label, net in (("before reflow", model), ("after reflow", rectified)):
        rec = Recorded(unconditional(net))
        end = euler_sample(rec, probe[:200], uniform_timesteps(16))
        paths[label] = rec.points + [end]
fig = ch07.plot_trajectories([(f"ODE paths, {k}", v) for k, v in paths.items()], data)
save_figure(fig, "trajectories_reflow")
plt.show()
one_step = {k: sliced_wasserstein(euler_sample(unconditional(net), noise, uniform_timesteps(1)), data)
            for k, net in (("before", model), ("after", rectified))}
print(f"one Euler step: SWD {one_step['before']:.4f} before reflow, {one_step['after']:.4f} after "
      f"(16 steps before reflow: {table[('Euler', 16)][1]:.4f})")

# %% [markdown]
# If reflow worked, $S$ fell, the paths in the right panel are nearly straight lines, and
# the one- and two-step rows of the second table come much closer to the 16-step quality
# than before; the price is the ODE solves that made the pairs and a second training, and
# a small loss of quality at many steps when the copy inherits the errors of the first
# model's samples. This is the idea behind InstaFlow and the few-step rectified flows.

# %% [markdown]
# ## 7 · MNIST: flow matching against DDIM on the same U-Net
#
# Does the toy's lesson hold on images? Two class-conditional models of MNIST digits at
# chapter 05's resolution, with **the same U-Net** (diffusers' `UNet2DModel`: residual
# blocks, a sinusoidal time embedding, a label embedding with an 11th "no label" id), the
# same data, optimiser, batch, label dropout (your `drop_labels`, $p = 0.1$) and number of
# training steps, so the same training time:
#
# * an **$\varepsilon$-model**, trained with chapter 05's loss on its linear schedule
#   ($T = 1000$) and sampled with deterministic DDIM ($\eta = 0$, diffusers'
#   `DDIMScheduler`, trailing spacing so that one step starts at $t = 999$);
# * a **velocity model**, trained with your `flow_matching_loss` (its time fed to the same
#   time embedding as $1000\,t$) and sampled with your `euler_sample` and `heun_sample`.
#
# Both start from the same noise and use guidance scale 2 (the same number of network
# calls per step for both, so the evaluation counts below leave the factor 2 out). Each
# sample set is rated by the chapter-03 classifier: the fraction classified as the
# requested digit and the Fréchet distance to real test images in its features (lower is
# better; the floor is the value for two real sets of the same size).

# %%
from diffusers import DDIMScheduler, UNet2DModel

from workbook import quality
from workbook.ch05 import EMA, show_rows, to_images
from workbook.data import load_mnist, mnist_source

mcfg = profile.pick(
    smoke=dict(res=16, chans=(8, 16), steps=20, batch=32, lr=2e-3, n_eval=40, sampling_steps=[1, 2, 4]),
    cpu=dict(res=16, chans=(32, 64, 64), steps=800, batch=128, lr=2e-3, n_eval=200,
             sampling_steps=[1, 2, 4, 8, 16, 32, 64]),
    gpu=dict(res=28, chans=(64, 128, 128), steps=20000, batch=256, lr=1e-3, n_eval=1000,
             sampling_steps=[1, 2, 4, 8, 16, 32, 64]),
)
MNIST_NULL = 10
device = profile.device
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_model = F.interpolate(x_train, size=(mcfg["res"],) * 2, mode="bilinear", antialias=True) * 2 - 1  # [-1, 1]
alpha_bars = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)  # chapter 05's
clf = quality.load_classifier(profile)
print("MNIST source:", mnist_source(), "| config:", mcfg)


def make_unet() -> UNet2DModel:
    n = len(mcfg["chans"])
    return UNet2DModel(sample_size=mcfg["res"], in_channels=1, out_channels=1, block_out_channels=mcfg["chans"],
                       layers_per_block=1, down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
                       num_class_embeds=11, norm_num_groups=8)


def eps_loss(unet, x0, y, generator):
    """Chapter 05's loss: t uniform in {0, ..., 999}, the mean squared error of eps_hat."""
    t = torch.randint(0, 1000, (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    ab = alpha_bars[t].float().view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return F.mse_loss(unet(x_t.to(device), t.to(device), class_labels=y.to(device)).sample, eps.to(device))


def as_velocity_model(unet):
    """The U-Net as a velocity model v(x_t, t, y) of flow time t in [0, 1]."""
    return lambda x_t, t, y: unet(x_t, 1000 * t, class_labels=y).sample


def fm_loss(unet, x0, y, generator):
    return flow_matching_loss(as_velocity_model(unet), x0.to(device), y=y.to(device), generator=generator)


def train_mnist(loss_fn, name: str, seed: int) -> tuple[nn.Module, float]:
    """Adam with a 100-step warm-up, gradient clipping and an EMA of the weights, as in
    chapter 05. Returns the EMA model and the training time in seconds."""
    torch.manual_seed(seed)
    unet = make_unet().to(device).train()
    ema, opt, g = EMA(unet, 0.999), torch.optim.Adam(unet.parameters(), lr=mcfg["lr"]), profile.generator(seed)
    t0 = time.time()
    bar = progress(range(mcfg["steps"]), desc=f"training the {name}")
    for step in bar:
        idx = torch.randint(0, len(x_model), (mcfg["batch"],), generator=g)
        for group in opt.param_groups:
            group["lr"] = mcfg["lr"] * min(1.0, (step + 1) / 100)
        loss = loss_fn(unet, x_model[idx], drop_labels(y_train[idx], 0.1, MNIST_NULL, g), g)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.update(unet)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return ema.model.eval(), time.time() - t0


eps_unet, eps_secs = train_mnist(eps_loss, "eps-model", 100)
fm_unet, fm_secs = train_mnist(fm_loss, "velocity model", 100)
n_params = sum(p.numel() for p in fm_unet.parameters())
print(f"U-Net with {n_params / 1e6:.2f} M parameters, {mcfg['steps']} steps of batch {mcfg['batch']}: "
      f"eps-model {eps_secs:.0f} s, velocity model {fm_secs:.0f} s")
log_metric("mnist_unet_parameters", n_params, "", f"block_out_channels={mcfg['chans']}, {mcfg['res']}x{mcfg['res']}")
log_metric("mnist_eps_train_seconds", eps_secs, "s", f"{mcfg['steps']} steps of batch {mcfg['batch']}")
log_metric("mnist_fm_train_seconds", fm_secs, "s", f"{mcfg['steps']} steps of batch {mcfg['batch']}")

# %%
n_eval = mcfg["n_eval"]
requested = (torch.arange(n_eval) % 10).to(device)
start = torch.randn(n_eval, 1, mcfg["res"], mcfg["res"], generator=profile.generator(110)).to(device)


@torch.no_grad()
def ddim_sample(unet, n: int, scale: float = 2.0) -> torch.Tensor:
    """Deterministic DDIM over n trailing steps with guidance `scale`, from `start`."""
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    sched.set_timesteps(n)
    x, null = start.clone(), torch.full_like(requested, MNIST_NULL)
    for ts in sched.timesteps:
        t = torch.full((2 * n_eval,), int(ts), device=device)
        eps_c, eps_u = unet(torch.cat([x, x]), t, class_labels=torch.cat([requested, null])).sample.chunk(2)
        x = sched.step(eps_u + scale * (eps_c - eps_u), ts, x).prev_sample
    return x


def guided_flow(unet, scale: float = 2.0):
    v_model = as_velocity_model(unet)

    @torch.no_grad()
    def velocity(x, t):
        return guided_velocity(v_model, x, t, requested, scale, MNIST_NULL)
    return velocity


real_eval, real_labels = x_test[:n_eval], y_test[:n_eval]


def rate_mnist(x: torch.Tensor) -> dict:
    """Accuracy and Fréchet distance, and fidelity (precision) and diversity (recall, coverage)
    measured apart, against the same real test images; the images are kept for `collapse`."""
    images = to_images(x)
    return {"accuracy": quality.class_accuracy(images, requested.cpu(), classifier=clf)["accuracy"],
            "frechet": quality.frechet_distance(images, real_eval, classifier=clf), "images": images} \
        | quality.fidelity_diversity(images, real_eval, classifier=clf)


real_fd = quality.reference_distances(x_train[:n_eval], real_eval, mcfg["res"], classifier=clf)
mnist_floor, mnist_floor_res = real_fd["floor"], real_fd["training_data"]  # 28x28; through the samples' 28 -> res -> 28
print(f"Fréchet floor, two real sets of {n_eval}: {mnist_floor:.2f} at 28x28; the training data itself (one set at "
      f"the samples' {mcfg['res']}x{mcfg['res']}, what a generator reproducing it exactly would score): {mnist_floor_res:.2f}; "
      f"that set's recall {real_fd['recall']:.2f}, coverage {real_fd['coverage']:.2f} "
      f"(classifier test accuracy {clf.test_accuracy:.3f})")
log_metric("mnist_frechet_floor", mnist_floor, "", f"{n_eval} real train vs {n_eval} real test images, 28x28")
log_metric("mnist_frechet_floor_at_res", mnist_floor_res, "",
           f"{n_eval} real train images through 28 -> {mcfg['res']} -> 28 vs {n_eval} real test images")
log_metric("mnist_real_recall_at_res", real_fd["recall"], "", "the same real sets: recall (k = 5)")
log_metric("mnist_real_coverage_at_res", real_fd["coverage"], "", "the same real sets: coverage (k = 5)")
samplers = {"DDIM (eps-model)": (lambda n: ddim_sample(eps_unet, n), lambda n: n),
            "Euler (velocity)": (lambda n: euler_sample(guided_flow(fm_unet), start, uniform_timesteps(n).float()),
                                 lambda n: n),
            "Heun (velocity)": (lambda n: heun_sample(guided_flow(fm_unet), start, uniform_timesteps(n).float()),
                                lambda n: 2 * n - 1)}
mnist_table = {}
grid = {}
for name, (sample, nfe) in samplers.items():
    for n in mcfg["sampling_steps"]:
        x = sample(n)
        r = {"nfe": nfe(n)} | rate_mnist(x)
        r["collapse"] = quality.collapse(r["images"], requested.cpu(), real_eval, real_labels, classifier=clf, warn=False)
        mnist_table[(name, n)] = r
        grid[f"{name}, {n}"] = to_images(x[:10])
print(f"Fréchet of the training data itself at {mcfg['res']}x{mcfg['res']}: {mnist_floor_res:.2f}; its recall and "
      f"coverage: {real_fd['recall']:.2f} / {real_fd['coverage']:.2f}")
below = [f"{name}, {n}" for (name, n), r in mnist_table.items() if r["frechet"] < mnist_floor_res]
if below:
    print(f"below the training data's own Fréchet distance ({mnist_floor_res:.1f}): {', '.join(below)}: guidance "
          "sharpens samples past the data they were trained on, and this distance rewards it")
print(f"{'sampler':18s} {'steps':>5s} {'NFE':>4s} {'accuracy':>9s} {'Fréchet':>8s} {'precision':>9s} {'recall':>7s} "
      f"{'coverage':>9s} {'spread':>7s}")
for (name, n), r in mnist_table.items():
    spread = r["collapse"]["spread"]
    r["min_spread"] = min(spread.values()) if spread else float("nan")
    print(f"{name:18s} {n:5d} {r['nfe']:4d} {r['accuracy']:9.3f} {r['frechet']:8.2f} {r['precision']:9.2f} "
          f"{r['recall']:7.2f} {r['coverage']:9.2f} {r['min_spread']:7.2f}")
    if r["collapse"]["collapsed"]:  # collapse's own warning, under the row it is about
        quality.collapse(r["images"], requested.cpu(), real_eval, real_labels, classifier=clf)
    key = name.split(" ")[0].lower()
    log_metric(f"mnist_{key}_{n}_accuracy", r["accuracy"], "", f"{n} steps, {r['nfe']} NFE, {n_eval} samples, scale 2")
    log_metric(f"mnist_{key}_{n}_frechet", r["frechet"], "", f"vs {n_eval} real test images")
    log_metric(f"mnist_{key}_{n}_recall", r["recall"], "", "fraction of real test images inside the samples' k = 5 balls")
    log_metric(f"mnist_{key}_{n}_coverage", r["coverage"], "", "fraction of real k = 5 balls holding a sample")
    if r["min_spread"] == r["min_spread"]:  # nan with fewer than two samples per digit
        log_metric(f"mnist_{key}_{n}_min_spread", r["min_spread"], "",
                   "smallest per-digit spread of the samples, as a fraction of the real images' (< 0.25: collapse)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for name in samplers:
    nfes = [mnist_table[(name, n)]["nfe"] for n in mcfg["sampling_steps"]]
    axes[0].plot(nfes, [mnist_table[(name, n)]["accuracy"] for n in mcfg["sampling_steps"]], "o-", label=name)
    axes[1].plot(nfes, [mnist_table[(name, n)]["frechet"] for n in mcfg["sampling_steps"]], "o-", label=name)
axes[1].axhline(mnist_floor_res, color="grey", ls="--", label=f"training data at {mcfg['res']}x{mcfg['res']}")
for ax, what in zip(axes, ("accuracy of the requested digit", "Fréchet distance")):
    ax.set(xscale="log", xlabel="network evaluations per sample (NFE)", ylabel=what)
    ax.legend()
fig.tight_layout()
save_figure(fig, "mnist_quality_vs_nfe")
plt.show()
fig = show_rows({k: v for k, v in grid.items() if int(k.rsplit(", ", 1)[1]) in mcfg["sampling_steps"][:4]},
                [str(d) for d in range(10)])
save_figure(fig, "mnist_samples")
plt.show()

# %% [markdown]
# Accuracy alone can mislead here. At $t = 1$ the input $x_1$ is pure noise, independent of
# $x_0$, so the best velocity is $v(x_1, 1) = x_1 - \mathbb E[x_0]$, and one Euler step,
# $x_1 - v(x_1, 1)$, sends *every* noise to the same image, $\mathbb E[x_0]$; with guidance
# every sample of class $y$ goes to $\mathbb E[x_0] + s\,(\mathbb E[x_0 \mid y] -
# \mathbb E[x_0])$. That is a collapse, not a blur: an average digit may be classified right
# every time (high accuracy) while the set has no diversity at all (recall, coverage and the
# spread near 0). The cell below reads the table for each sampler: whether its first row
# collapsed (as `collapse` judges it), and, among the rows that did not collapse, the fewest
# network evaluations at which it comes within 0.02 of the best accuracy and within 10 % of
# the best Fréchet distance (or "not reached").

# %%
healthy = {key: r for key, r in mnist_table.items() if not r["collapse"]["collapsed"]}
best_acc = max(r["accuracy"] for r in (healthy or mnist_table).values())
best_fd = min(r["frechet"] for r in (healthy or mnist_table).values())
for name in samplers:
    rows = [mnist_table[(name, n)] for n in mcfg["sampling_steps"]]
    first = rows[0]
    if first["collapse"]["collapsed"]:
        print(f"{name:18s} at NFE {first['nfe']}: a collapse in {len(first['collapse']['collapsed'])} of 10 digits "
              f"(smallest spread {first['min_spread']:.2f}, recall {first['recall']:.2f}, coverage "
              f"{first['coverage']:.2f}): its accuracy {first['accuracy']:.3f} rates one image per digit, not a generator")
    else:
        print(f"{name:18s} at NFE {first['nfe']}: no collapse (smallest spread {first['min_spread']:.2f}, "
              f"recall {first['recall']:.2f})")
    ok = [r for r in rows if not r["collapse"]["collapsed"]]
    acc = next((r["nfe"] for r in ok if r["accuracy"] >= best_acc - 0.02), None)
    fd = next((r["nfe"] for r in ok if r["frechet"] <= 1.1 * best_fd), None)
    print(f"{'':18s} without collapse: accuracy within 0.02 of {best_acc:.3f} at NFE {acc if acc else 'not reached'}; "
          f"Fréchet within 10% of {best_fd:.1f} at NFE {fd if fd else 'not reached'}")
    log_metric(f"mnist_{name.split(' ')[0].lower()}_nfe_to_best_accuracy", acc or -1, "NFE",
               "rows without a collapsed class only; -1: not reached")
    log_metric(f"mnist_{name.split(' ')[0].lower()}_first_row_collapsed", len(first["collapse"]["collapsed"]), "",
               f"digits whose samples collapsed at NFE {first['nfe']}")

# %% [markdown]
# Compare the rows above with what the toy suggested. The straight paths of flow matching
# are straight *per training pair*; the learned flow averages many pairs and curves. At
# $t = 1$ it averages over the whole class, so one step collapses (if the lines above say
# so); later evaluations see an $x_t$ that carries information about $x_0$, and the samples
# spread out again as the steps increase (read the recall and spread columns). Whether the
# velocity model reaches a given quality with fewer evaluations than DDIM on the
# $\varepsilon$-model depends on the training budget and the time grid (DDIM's trailing grid
# on the linear schedule spends its steps differently from the uniform flow grid); your run
# says which won here. Heun's second evaluation per step pays off where the curvature is
# large, which the NFE axis lets you read directly. Compare every Fréchet distance with the
# training data's own at the samples' resolution, not with the 28×28 floor; a guided sample
# set can score below the training data (guidance sharpens strokes towards what the
# classifier has seen in 28×28 digits), so a lower number is not always closer to the data.
#
# %% [markdown]
# ### Written questions
#
# Answer each in a few sentences, in your own words, in the cell under it (double-click it to
# edit). Your instructor grades them; after grading, your feedback shows a model answer.
#
# **W1 (2 points).** Each training pair's path x_t = (1 - t) x_0 + t ε is a straight line, yet
# one Euler step of the learned flow sends every noise to one and the same image (per class,
# with guidance). Why are the learned ODE paths curved, and why that image?

# %% [written id=written_curved points=2]
# **Model answer.** The network cannot know which pair a point x_t came from: many lines
# (different x_0, ε) pass near the same x_t, and the loss is minimised by the average of their
# velocities, E[ε - x_0 | x_t]. Averaged over crossing lines, the velocity field changes along
# a trajectory, so the ODE paths bend. At t = 1, x_1 = ε is independent of x_0, so
# v(x_1, 1) = x_1 - E[x_0] and one Euler step lands every noise on E[x_0] (with guidance on
# E[x_0] + s(E[x_0 | y] - E[x_0]) for class y): a collapse, seen as recall, coverage and
# spread near 0 while accuracy can stay high. Reflow reduces the crossings by pairing noise
# with the model's own samples.
#
# **Rubric.** 1 point: the learned velocity is the conditional expectation over crossing
# pairs, which varies along the path (curvature). 1 point: at t = 1 it is x_1 - E[x_0], so one
# step gives the same mean image for every noise (a collapse, not a blur).

# %% [markdown]
# **W2 (2 points).** What does reflow change in the training data, what does it buy, and what
# does it cost?

# %% [written id=written_reflow points=2]
# **Model answer.** Reflow replaces independent (data, noise) pairs by pairs (sample, noise)
# coupled by the first model's ODE: each noise is paired with the sample its path reaches.
# These pairs' lines cross far less, so the retrained flow is straighter and few-step (even
# one-step) sampling approaches many-step quality. Costs: the ODE solves that generate the
# pairs and a second training; the new model learns the first model's samples, so it inherits
# (and can compound) their errors, a small loss of quality at many steps.
#
# **Rubric.** 1 point: pairs coupled by the model's own ODE (fewer crossings, straighter). 1
# point: costs (generation of pairs + retraining; inherits the first model's errors).

# %% [markdown]
# ## 8 · Concept questions
#
# Answer by assigning Python values. The check cell only verifies the format; the answers
# are graded when you submit.
#
# **Q1.** A chapter-05 DDPM point with $\bar\alpha = 0.8$ is rescaled onto the flow path.
# At which time $t$ does it lie? Set `answer_ddpm_time` to one letter.
# A: $0.2$ · B: $1/3$ · C: $0.447$ · D: $0.8$.
#
# **Q2.** Which statements are true? Set `answer_flow_facts` to a set of letters.
#
# * A: With $x_t = (1 - t)x_0 + t\varepsilon$ the regression target $\varepsilon - x_0$
#   of one training pair does not depend on $t$.
# * B: If every ODE path of a learned flow were a straight line travelled at constant
#   speed, one Euler step would give the same samples as many.
# * C: Heun with $n$ steps costs as many network evaluations as Euler with $n$ steps.
# * D: Reflow is meant to change the distribution the model samples from.
# * E: Guidance with scale $s = 1$ samples with the conditional velocity alone.
# * F: SD3's logit-normal draws of $t$ put more training near $t = 0$ and $t = 1$ than
#   uniform draws.

# %% [solution id=quiz_answers]
#| solution: answer_ddpm_time answer_flow_facts

# %% [tests id=quiz_ddpm_time points=1 hidden=quiz]
ch07.check_quiz("answer_ddpm_time", answer_ddpm_time)

# %% [tests id=quiz_flow_facts points=1 hidden=quiz]
ch07.check_quiz("answer_flow_facts", answer_flow_facts)

# %% [markdown]
# ## What to remember
#
# * Flow matching joins data and noise by straight lines, $x_t = (1 - t)x_0 + t\varepsilon$,
#   and regresses their velocity $\varepsilon - x_0$; sampling solves $dx/dt = v(x, t)$
#   from $t = 1$ to $0$. Check which end a paper calls noise.
# * Euler costs $n$ evaluations for $n$ steps, Heun (last step Euler, as diffusers) $2n - 1$.
# * $\varepsilon$- and velocity-prediction are the same model written two ways:
#   $v = (\hat\varepsilon - x_t)/(1 - t)$, $\varepsilon = x_t + (1 - t)v$ on the rescaled
#   path; deterministic DDIM is Euler on that path.
# * Guidance works on velocities as on noise: $v_u + s(v_c - v_u)$.
# * Reflow retrains on the model's own (noise, sample) pairs: straighter paths, fewer steps.

# %% [markdown]
# **Further reading**
#
# * Lipman et al., *Flow Matching for Generative Modeling*, ICLR 2023: why regressing the velocity of each
#   pair learns the velocity of the whole flow (noise at t = 0 there, the opposite of this chapter).
# * Liu, Gong & Liu, *Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow*,
#   ICLR 2023: straight paths and reflow, the method of section 6.
# * Albergo & Vanden-Eijnden, *Building Normalizing Flows with Stochastic Interpolants*, ICLR 2023: the same
#   idea from interpolants between two densities, with the link to diffusion.
# * Esser et al., *Scaling Rectified Flow Transformers for High-Resolution Image Synthesis* (Stable Diffusion
#   3), ICML 2024: rectified flow at scale, and the logit-normal choice of t compared with others.
# * Tong et al., *Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal Transport*,
#   TMLR 2024: pairing noise and data within a batch by optimal transport, for straighter paths.
