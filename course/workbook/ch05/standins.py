"""Chapter 05 stand-ins: each exercise that later cells use, done by diffusers (or torch),
with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `UNet = ch05.standins.UNet`: the rest of the
chapter runs with the stand-in; the exercise earns no points (its check says so). Remove the
line when your own version is ready. A stand-in is not the way the exercise asks you to
write it: most are a library call, which is what you are learning to build.

Where they differ from the contract: diffusers computes schedules in float32, so a stand-in's
betas and alpha-bars agree with the exact float64 values to about 1e-7, and its steps in the
samples' dtype (after the clipped last steps of the cosine schedule, a float32 DDPM sample
differs from float64 arithmetic by about 1e-3). The U-Net is diffusers' own architecture.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..standin import stand_in
from .models import ddim_timesteps


def _scheduler_with(alpha_bars: torch.Tensor, cls_name: str = "DDPMScheduler", **kw):
    """A diffusers scheduler of len(alpha_bars) steps whose alphas_cumprod are `alpha_bars`."""
    import diffusers
    sched = getattr(diffusers, cls_name)(num_train_timesteps=len(alpha_bars), clip_sample=False, **kw)
    sched.alphas_cumprod = alpha_bars.detach().to("cpu", torch.float64)
    return sched


# ----------------------------------------------------------------------------- 1 schedules

@stand_in
def linear_betas(T=1000, beta_1=1e-4, beta_T=0.02):
    """diffusers' `DDPMScheduler(beta_schedule="linear").betas` as float64 (T,) (computed in float32)."""
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=T, beta_start=beta_1, beta_end=beta_T, beta_schedule="linear").betas.double()


@stand_in
def cosine_betas(T=1000, s=0.008, max_beta=0.999):
    """The cosine schedule, float64 (T,). With diffusers' offset s = 0.008: diffusers'
    `betas_for_alpha_bar(T, max_beta, "cosine")` (the `squaredcos_cap_v2` schedule, float32 inside);
    with another s, which diffusers does not offer: plain torch, as the squared ratio of the
    cosines at the two ends of each step."""
    if s == 0.008:
        from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar
        return betas_for_alpha_bar(T, max_beta, alpha_transform_type="cosine").double()
    angle = (torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * (math.pi / 2)
    ratio = (torch.cos(angle[1:]) / torch.cos(angle[:-1])) ** 2  # alpha_t = f((t+1)/T) / f(t/T)
    return torch.clamp(1 - ratio, max=max_beta)


@stand_in
def noise_schedule(betas):
    """(alphas, alpha_bars) from diffusers' `DDPMScheduler(trained_betas=betas)` (`alphas`,
    `alphas_cumprod`, computed in float32), returned in betas' dtype and device."""
    from diffusers import DDPMScheduler
    lib = DDPMScheduler(num_train_timesteps=len(betas), trained_betas=betas.detach().cpu().double().numpy())
    return lib.alphas.to(betas), lib.alphas_cumprod.to(betas)


# ----------------------------------------------------------------------------- 2-3 forward process, loss

@stand_in
def q_sample(x0, t, eps, alpha_bars):
    """diffusers' `DDPMScheduler.add_noise(x0, eps, t)` with `alpha_bars` as its alphas_cumprod."""
    return _scheduler_with(alpha_bars).add_noise(x0, eps, t.to(x0.device))


@stand_in
def diffusion_loss(model, x0, alpha_bars, y=None, generator=None):
    """DDPM's loss with diffusers' `DDPMScheduler.add_noise`: t, then eps, drawn from
    `generator`; the mean squared error of the model's prediction against eps."""
    from diffusers.utils.torch_utils import randn_tensor
    t = torch.randint(len(alpha_bars), (x0.shape[0],), generator=generator, device=x0.device)
    noise = randn_tensor(tuple(x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
    labels = () if y is None else (y,)
    return F.mse_loss(model(_scheduler_with(alpha_bars).add_noise(x0, noise, t), t, *labels), noise)


# ----------------------------------------------------------------------------- 4 steps

@stand_in
def ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta=0.0, noise=None):
    """diffusers' `DDIMScheduler.step(eps_hat, ..., eta=eta, variance_noise=noise)` from t to t_prev,
    on a two-entry schedule [alpha_bar_{t_prev}, alpha_bar_t] (t_prev = -1: diffusers' own
    "before the first step", alpha-bar 1). Returns (prev_sample, pred_original_sample)."""
    t, t_prev = int(t), int(t_prev)
    a_t = alpha_bars[t]
    a_prev = alpha_bars[t_prev] if t_prev >= 0 else a_t  # the first entry is not read when t_prev < 0
    lib = _scheduler_with(torch.stack([a_prev, a_t]), "DDIMScheduler", set_alpha_to_one=True)
    lib.set_timesteps(2)  # one train step per inference step: from 1 to 0, from 0 to "before the first"
    out = lib.step(eps_hat, 1 if t_prev >= 0 else 0, x_t, eta=float(eta),
                   variance_noise=torch.zeros_like(x_t) if noise is None else noise)
    return out.prev_sample, out.pred_original_sample


@stand_in
def ddpm_step(eps_hat, t, x_t, alpha_bars, noise):
    """DDPM's step as diffusers' `DDIMScheduler.step` with eta = 1 from t to t - 1, which is DDPM's
    posterior step (Song et al. 2021) and, unlike `DDPMScheduler.step`, takes the noise as given.
    No noise is added at t = 0."""
    t = int(t)
    return ddim_step(eps_hat, t, t - 1, x_t, alpha_bars, 1.0, noise if t > 0 else None)


@stand_in
@torch.no_grad()
def sample_ddpm(eps_fn, shape, alpha_bars, generator, keep=(), device="cpu"):
    """diffusers' `DDPMScheduler` loop (variance "fixed_small"): x_{T-1} drawn first, then
    `DDPMScheduler.step(..., generator=generator)` draws each step's noise (none at t = 0), on the
    CPU and moved to `device`, as the contract's draws. Returns (x, kept)."""
    from diffusers.utils.torch_utils import randn_tensor
    device = torch.device(device)
    lib = _scheduler_with(alpha_bars)
    lib.set_timesteps(len(alpha_bars))  # every timestep, T-1 down to 0
    x = randn_tensor(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    wanted, trail = set(keep), {}
    for t in lib.timesteps.tolist():
        out = lib.step(eps_fn(x, torch.full((shape[0],), t, dtype=torch.long, device=device)), t, x,
                       generator=generator)
        if t in wanted:
            trail[t] = (x.cpu(), out.pred_original_sample.cpu())
        x = out.prev_sample
    return x, trail


@stand_in
@torch.no_grad()
def sample_ddim(eps_fn, shape, alpha_bars, num_steps, generator, eta=0.0, device="cpu"):
    """DDIM along `ddim_timesteps(T, num_steps)` with the stand-in `ddim_step` (diffusers'
    `DDIMScheduler.step`); diffusers' `randn_tensor` draws x_{T-1}, then one noise per step when eta > 0."""
    from diffusers.utils.torch_utils import randn_tensor
    device = torch.device(device)
    x = randn_tensor(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    path = ddim_timesteps(len(alpha_bars), num_steps) + [-1]  # -1: "before the first step"
    for t, t_prev in zip(path, path[1:]):
        eps_hat = eps_fn(x, torch.full((shape[0],), t, dtype=torch.long, device=device))
        noise = randn_tensor(tuple(shape), generator=generator, device=device, dtype=torch.float32) if eta > 0 else None
        x, _ = ddim_step(eps_hat, t, t_prev, x, alpha_bars, eta, noise)
    return x


# ----------------------------------------------------------------------------- 5 the noise predictor

@stand_in
def timestep_embedding(t, dim, max_period=10000):
    """diffusers' `get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)`: cos then sin."""
    from diffusers.models.embeddings import get_timestep_embedding
    return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=max_period).float()


@stand_in
class ResBlock(nn.Module):
    """diffusers' `ResnetBlock2D` (in `self.block`, with diffusers' parameter names: norm1, conv1,
    time_emb_proj, norm2, conv2, conv_shortcut), called as block(x (B, c_in, H, W), emb (B, emb_dim))."""

    def __init__(self, c_in, c_out, emb_dim, groups=8):
        super().__init__()
        from diffusers.models.resnet import ResnetBlock2D
        self.block = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=emb_dim, groups=groups, eps=1e-5)

    def forward(self, x, emb):
        return self.block(x, emb)


@stand_in
class UNet(nn.Module):
    """diffusers' `UNet2DModel` (in `self.inner`) with the exercise's constructor and call:
    block_out_channels = ch * mults, one residual block per level going down (two going up,
    as diffusers builds it), no attention, sinusoidal time embedding of width ch and a
    4ch-wide embedding, class embeddings `num_classes + 1` (the last, y = num_classes, is
    "no label", also used when y is None). Not the exercise's layout: its parameters differ."""

    def __init__(self, in_channels=1, ch=32, mults=(1, 2, 2), num_classes=None, groups=8):
        super().__init__()
        from diffusers import UNet2DModel
        self.num_classes = num_classes
        n = len(mults)
        self.inner = UNet2DModel(in_channels=in_channels, out_channels=in_channels,
                                 block_out_channels=tuple(ch * m for m in mults), layers_per_block=1,
                                 down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
                                 add_attention=False, norm_num_groups=groups, flip_sin_to_cos=True, freq_shift=0,
                                 num_class_embeds=num_classes + 1 if num_classes else None)

    def forward(self, x, t, y=None):
        if self.num_classes and y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        return self.inner(x, t, class_labels=y if self.num_classes else None).sample


# ----------------------------------------------------------------------------- 6 guidance

@stand_in
def drop_labels(y, p_uncond, null_label, generator=None):
    """torch: `y.masked_fill(u < p_uncond, null_label)` with u = torch.rand(B, generator=generator)."""
    return y.masked_fill(torch.rand(y.shape, generator=generator, device=y.device) < p_uncond, null_label)


@stand_in
def guided_eps(model, x_t, t, y, scale, null_label):
    """torch: one pass of the doubled batch, then `torch.lerp(eps_u, eps_c, scale)`
    (= eps_u + scale (eps_c - eps_u))."""
    eps_c, eps_u = model(x_t.repeat(2, *[1] * (x_t.dim() - 1)), t.repeat(2),
                         torch.cat([y, y.new_full(y.shape, null_label)])).chunk(2)
    return torch.lerp(eps_u, eps_c, scale)
