"""Chapter 07 stand-ins: each exercise that later cells use, done by diffusers (or torch),
with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `euler_sample = ch07.standins.euler_sample`:
the rest of the chapter runs with the stand-in; the exercise earns no points (its check says
so). Remove the line when your own version is ready. The samplers are diffusers'
`FlowMatchEulerDiscreteScheduler` and `FlowMatchHeunDiscreteScheduler` stepping along your
timesteps; they compute in float32 (a float64 input comes back float64, rounded as float32).
Where no library has the formula, a stand-in is a line or two of torch, noted in its docstring.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..standin import stand_in


def _per_example(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) times as (B, 1, ...) in x's dtype and device."""
    return t.to(device=x.device, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))


def _times(timesteps) -> list[float]:
    return [float(s) for s in timesteps]


# ----------------------------------------------------------------------------- 1 the path, the loss

@stand_in
def flow_path(x0, eps, t):
    """torch (no library has it for any t): `torch.lerp(x0, eps, t)`, = (1 - t) x0 + t eps."""
    return torch.lerp(x0, eps.to(x0.dtype), _per_example(t, x0))


@stand_in
def velocity_target(x0, eps):
    """torch: `torch.sub(eps, x0)`."""
    return torch.sub(eps, x0)


@stand_in
def flow_matching_loss(model, x0, eps=None, y=None, generator=None, logit_normal=False):
    """torch (diffusers' `compute_density_for_timestep_sampling` draws from the global generator,
    which the contract forbids): t (uniform, or the sigmoid of a standard normal), then eps when
    not given, from `generator`; x_t by `torch.lerp`; the mean squared error against eps - x0."""
    opts = {"generator": generator, "device": x0.device, "dtype": x0.dtype}
    t = torch.randn(x0.shape[0], **opts).sigmoid() if logit_normal else torch.rand(x0.shape[0], **opts)
    noise = torch.randn(x0.shape, **opts) if eps is None else eps
    labels = () if y is None else (y,)
    return F.mse_loss(model(torch.lerp(x0, noise, _per_example(t, x0)), t, *labels), noise - x0)


# ----------------------------------------------------------------------------- 2 samplers

@stand_in
def euler_sample(velocity, x1, timesteps):
    """diffusers' `FlowMatchEulerDiscreteScheduler.step` along `timesteps` (its sigmas set to them):
    x <- x + (t_{i+1} - t_i) v(x, t_i), n evaluations, in float32."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    times = _times(timesteps)
    lib = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    lib.set_timesteps(num_inference_steps=max(len(times) - 1, 1))
    lib.sigmas = torch.tensor(times, dtype=torch.float32)
    lib.timesteps = lib.sigmas[:-1] * 1000
    lib.set_begin_index(0)
    x = x1
    for i, t in enumerate(times[:-1]):
        x = lib.step(velocity(x, x.new_full((x.shape[0],), t)).to(x1.dtype), lib.timesteps[i], x).prev_sample
    return x


@stand_in
def heun_sample(velocity, x1, timesteps):
    """diffusers' `FlowMatchHeunDiscreteScheduler.step` along `timesteps` (its interleaved sigmas
    set to them): a Heun step on every step but the last, which is an Euler step (2n - 1
    evaluations), in float32."""
    from diffusers import FlowMatchHeunDiscreteScheduler
    times = _times(timesteps)
    n = len(times) - 1
    lib = FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    lib.set_timesteps(max(n, 1))
    # each inner time twice: the end of one step is where the second evaluation of a Heun step happens
    at = times[:1] + [t for t in times[1:-1] for _ in (0, 1)]  # the 2n - 1 evaluation times
    lib.sigmas = torch.tensor(at + times[-1:], dtype=torch.float32)
    lib.timesteps = torch.tensor(at, dtype=torch.float32) * 1000
    lib.set_begin_index(0)
    x = x1
    for k, t in enumerate(at):
        x = lib.step(velocity(x, x.new_full((x.shape[0],), t)).to(x1.dtype), lib.timesteps[k], x).prev_sample
    return x


# ----------------------------------------------------------------------------- 3 the bridge to DDPM

@stand_in
def ddpm_to_flow(x_ddpm, a):
    """torch (no library has it), through the angle of the DDPM point: with
    phi = atan2(sqrt(1 - a), sqrt(a)), s = cos(phi) + sin(phi), x_t = x_ddpm / s and t = sin(phi) / s."""
    alpha_bar = a.to(x_ddpm.dtype)
    phi = torch.atan2((1 - alpha_bar).sqrt(), alpha_bar.sqrt())
    s = torch.cos(phi) + torch.sin(phi)
    return x_ddpm / _per_example(s, x_ddpm), torch.sin(phi) / s


@stand_in
def eps_to_velocity(eps_hat, x_t, t):
    """torch: `torch.div(eps_hat - x_t, 1 - t)` (t per example)."""
    return torch.div(eps_hat - x_t, 1 - _per_example(t, x_t))


@stand_in
def velocity_to_eps(v, x_t, t):
    """torch: `torch.addcmul(x_t, 1 - t, v)` (t per example)."""
    return torch.addcmul(x_t, 1 - _per_example(t, x_t), v)


# ----------------------------------------------------------------------------- 4 guidance

@stand_in
def drop_labels(y, p_uncond, null_label, generator=None):
    """torch: `y.masked_fill(u < p_uncond, null_label)` with u = torch.rand(B, generator=generator)."""
    return y.masked_fill(torch.rand(y.shape, generator=generator, device=y.device) < p_uncond, null_label)


@stand_in
def guided_velocity(model, x_t, t, y, scale, null_label):
    """torch: one pass of the doubled batch, then `torch.lerp(v_u, v_c, scale)` (= v_u + scale (v_c - v_u))."""
    v_c, v_u = model(x_t.repeat(2, *[1] * (x_t.dim() - 1)), t.repeat(2),
                     torch.cat([y, y.new_full(y.shape, null_label)])).chunk(2)
    return torch.lerp(v_u, v_c, scale)


# ----------------------------------------------------------------------------- 5 straightness

@stand_in
def straightness(velocity, x1, timesteps):
    """The stand-in `euler_sample` (diffusers' `FlowMatchEulerDiscreteScheduler`), with every velocity
    it asks for kept; then, in torch, S = sum_i h_i mean_b ||(x1 - x0)_b / D - v_i,b||^2 / D,
    h_i = t_i - t_{i+1}, D = sum_i h_i = t_0 - t_n."""
    vs = []

    def keeping(x, t):
        vs.append(velocity(x, t))
        return vs[-1]

    x0 = euler_sample(keeping, x1, timesteps)
    times = _times(timesteps)
    h = torch.tensor([a - b for a, b in zip(times, times[1:])], dtype=x1.dtype, device=x1.device)
    gaps = torch.stack([((x1 - x0) / h.sum() - v).pow(2).flatten(1).sum(1).mean() for v in vs])
    return (h * gaps).sum() / h.sum(), x0
