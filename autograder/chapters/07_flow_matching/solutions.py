"""Chapter 07 reference solutions: flow matching and rectified flow.

Convention (as diffusers' FlowMatch schedulers, SD3 and Flux): t = 0 is data, t = 1 is
noise, x_t = (1 - t) x0 + t eps, and the network predicts the velocity v = dx_t/dt = eps - x0.
Sampling integrates dx/dt = v(x, t) from t = 1 down to t = 0.
"""

import torch
import torch.nn.functional as F


def flow_path(x0, eps, t):
    """The straight path from data to noise: x_t = (1 - t) x0 + t eps.

    Args:
        x0: (B, ...) data; eps: (B, ...) noise, same shape.
        t: (B,) times in [0, 1], one per example (t = 0: data, t = 1: noise).

    Returns:
        x_t: (B, ...) with the dtype of x0. The inputs are left unchanged.
    """
    t = t.to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))  # (B, 1, ...)
    return (1 - t) * x0 + t * eps


def velocity_target(x0, eps):
    """The conditional velocity of the path, d x_t / dt = eps - x0 (the same at every t).

    Returns:
        v: (B, ...) like x0. The inputs are left unchanged.
    """
    return eps - x0


def flow_matching_loss(model, x0, eps=None, y=None, generator=None, logit_normal=False):
    """The conditional flow-matching loss (Lipman et al. 2023; Liu et al. 2023), one sample
    per example.

    Draws, in this order, with `generator`, on x0's device and in x0's dtype:
        t   = torch.rand(B)                     (logit_normal: torch.sigmoid(torch.randn(B)), as in SD3)
        eps = torch.randn(x0.shape)             (only when eps is None)
    then x_t = (1 - t) x0 + t eps and
        loss = mean over all elements of (model(x_t, t[, y]) - (eps - x0)) ** 2.

    Args:
        model: callable (x_t (B, ...), t (B,) float[, y (B,) int64]) -> v_hat (B, ...).
        x0: (B, ...) data.
        eps: optional (B, ...) noise paired with x0 (reflow); drawn when None.
        y: optional (B,) int64 labels, passed to the model as its third argument.
        generator: optional torch.Generator on x0's device.
        logit_normal: draw t from the logit-normal distribution (m = 0, s = 1).

    Returns:
        loss: scalar tensor, differentiable with respect to the model's parameters. x0, eps and y
        are left unchanged.
    """
    B = x0.shape[0]
    draw = dict(generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.sigmoid(torch.randn(B, **draw)) if logit_normal else torch.rand(B, **draw)
    if eps is None:
        eps = torch.randn(x0.shape, **draw)
    tb = t.view(-1, *([1] * (x0.dim() - 1)))
    x_t = (1 - tb) * x0 + tb * eps
    v_hat = model(x_t, t) if y is None else model(x_t, t, y)
    return F.mse_loss(v_hat, eps - x0)


def euler_sample(velocity, x1, timesteps):
    """Euler's method for dx/dt = v(x, t) along `timesteps`, from x1 (noise) to the data end.

    For i = 0, ..., n-1:  x <- x + (t_{i+1} - t_i) v(x, t_i); n network evaluations.

    Args:
        velocity: callable (x (B, ...), t (B,) in x's dtype, every entry t_i) -> v (B, ...).
        x1: (B, ...) starting noise at t = timesteps[0].
        timesteps: (n + 1,) decreasing times, e.g. torch.linspace(1, 0, n + 1).

    Returns:
        x0: (B, ...) like x1 (x1 and timesteps are left unchanged).
    """
    x = x1
    for i in range(len(timesteps) - 1):
        t, t_next = float(timesteps[i]), float(timesteps[i + 1])
        v = velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
        x = x + (t_next - t) * v
    return x


def heun_sample(velocity, x1, timesteps):
    """Heun's method (second order) for dx/dt = v(x, t) along `timesteps`.

    On each step but the last, with h = t_{i+1} - t_i:
        v1 = v(x, t_i);  x' = x + h v1;  v2 = v(x', t_{i+1});  x <- x + h (v1 + v2) / 2;
    the last step is an Euler step (as diffusers' FlowMatchHeunDiscreteScheduler and
    Karras et al. 2022): 2n - 1 network evaluations for n steps.

    Args and returns as euler_sample (x1 and timesteps left unchanged).
    """
    x = x1
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = float(timesteps[i]), float(timesteps[i + 1])
        h = t_next - t
        v1 = velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
        x_euler = x + h * v1
        if i == n - 1:
            x = x_euler
        else:
            v2 = velocity(x_euler, torch.full((x.shape[0],), t_next, dtype=x.dtype, device=x.device))
            x = x + h * (v1 + v2) / 2
    return x


def ddpm_to_flow(x_ddpm, a):
    """A DDPM point sqrt(a) x0 + sqrt(1 - a) eps (a = alpha-bar) rescaled onto the flow path:
        s = sqrt(a) + sqrt(1 - a),  x_t = x_ddpm / s,  t = sqrt(1 - a) / s.

    Args:
        x_ddpm: (B, ...); a: (B,) alpha-bar of each example, in (0, 1].

    Returns:
        (x_t, t): (B, ...) like x_ddpm and (B,) in x_ddpm's dtype. The inputs are left unchanged.
    """
    a = a.to(x_ddpm.dtype)
    s = a.sqrt() + (1 - a).sqrt()  # (B,)
    return x_ddpm / s.view(-1, *([1] * (x_ddpm.dim() - 1))), (1 - a).sqrt() / s


def eps_to_velocity(eps_hat, x_t, t):
    """The velocity of an eps-prediction at flow point x_t, time t < 1:
        x0_hat = (x_t - t eps_hat) / (1 - t),  v = eps_hat - x0_hat = (eps_hat - x_t) / (1 - t).

    Args:
        eps_hat, x_t: (B, ...); t: (B,) in [0, 1), of any float dtype.

    Returns:
        v: (B, ...) like x_t (x_t's dtype, whatever t's). The inputs are left unchanged.
    """
    t = t.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    return (eps_hat - x_t) / (1 - t)


def velocity_to_eps(v, x_t, t):
    """The noise implied by a velocity at flow point x_t, time t: eps = x_t + (1 - t) v.

    Args:
        v, x_t: (B, ...); t: (B,) in [0, 1], of any float dtype.

    Returns:
        eps: (B, ...) like x_t (x_t's dtype, whatever t's). The inputs are left unchanged.
    """
    t = t.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    return x_t + (1 - t) * v


def drop_labels(y, p_uncond, null_label, generator=None):
    """Label dropout: each label becomes null_label where u < p_uncond, u = torch.rand(B)
    drawn with `generator` (one draw per label on every call, p_uncond = 0 included, on y's device).

    Args:
        y: (B,) int64; p_uncond: float in [0, 1]; null_label: int; generator: optional.

    Returns:
        (B,) int64, always a new tensor (y is left unchanged).
    """
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, null_label), y)


def guided_velocity(model, x_t, t, y, scale, null_label):
    """Classifier-free guidance on velocities: v = v_u + scale (v_c - v_u), with
    v_c = model(x_t, t, y) and v_u = model(x_t, t, null labels). scale = 0: unconditional;
    1: conditional; > 1: guided.

    Args:
        model: callable (x (N, ...), t (N,), y (N,)) -> (N, ...), per example.
        x_t: (B, ...); t: (B,) float; y: (B,) int64; scale: float; null_label: int.

    Returns:
        v: (B, ...). The inputs are left unchanged.
    """
    B = x_t.shape[0]
    v = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)]))
    v_c, v_u = v[:B], v[B:]
    return v_u + scale * (v_c - v_u)


def straightness(velocity, x1, timesteps):
    """How straight the learned flow is (Liu et al. 2023): along the Euler path from x1,
    with v_i = v(x_i, t_i), x0 its end point and D = t_0 - t_n the time span,
        S = sum_i (t_i - t_{i+1}) mean_b ||(x1 - x0)_b / D - v_i,b||^2 / D,
    the squared norm summed over all but the batch dimension. (x1 - x0) / D is the constant
    velocity of the straight path from x1 to x0, so S = 0 for straight paths on any grid.

    Args:
        velocity, x1, timesteps: as euler_sample (n evaluations).

    Returns:
        (S, x0): a 0-d tensor and (B, ...), both in x1's dtype; x1 and timesteps are left unchanged.
        The timesteps need not run from 1 to 0.
    """
    x, vs, hs = x1, [], []
    for i in range(len(timesteps) - 1):
        t, t_next = float(timesteps[i]), float(timesteps[i + 1])
        v = velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
        vs.append(v)
        hs.append(t - t_next)
        x = x + (t_next - t) * v
    span = sum(hs)  # D = t_0 - t_n
    d = (x1 - x) / span  # the velocity of the straight path from x1 to x0
    S = sum(h * ((d - v) ** 2).flatten(1).sum(1).mean() for h, v in zip(hs, vs)) / span
    return S, x


# Q1. A DDPM point with alpha-bar a = 0.8 lies, after rescaling, on the flow path at which t?
answer_ddpm_time = "B"

# Q2. Which statements are true?
answer_flow_facts = {"A", "B", "E"}
