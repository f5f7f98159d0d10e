"""Chapter 05 reference solutions: a denoising diffusion model (DDPM, DDIM, guidance).

Timesteps are indexed from 0, as in diffusers: t in {0, ..., T-1}, and alpha_bars[t] is
the paper's alpha-bar_{t+1}. "Before the first step" (t = -1) has alpha-bar = 1.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbook.ch05.models import ddim_timesteps


def linear_betas(T=1000, beta_1=1e-4, beta_T=0.02):
    """The linear schedule of Ho et al. (2020): betas evenly spaced from beta_1 to beta_T.

    Args:
        T: int, number of diffusion steps.
        beta_1, beta_T: floats, the first and last beta.

    Returns:
        betas: (T,) float64, betas[0] = beta_1, betas[T-1] = beta_T.
    """
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def cosine_betas(T=1000, s=0.008, max_beta=0.999):
    """The cosine schedule of Nichol & Dhariwal (2021).

    f(u) = cos((u + s) / (1 + s) * pi / 2) ** 2 defines alpha-bar(u) = f(u) / f(0) for u in
    [0, 1]; step t (0-indexed) goes from u = t / T to u = (t + 1) / T:
        betas[t] = min(1 - f((t + 1) / T) / f(t / T), max_beta).

    Returns:
        betas: (T,) float64.
    """
    u = torch.arange(T + 1, dtype=torch.float64) / T  # (T + 1,)
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def noise_schedule(betas):
    """alpha_t = 1 - beta_t and alpha-bar_t = prod_{s <= t} alpha_s.

    Args:
        betas: (T,) tensor.

    Returns:
        (alphas, alpha_bars): two (T,) tensors of the dtype of betas.
    """
    alphas = 1 - betas
    return alphas, torch.cumprod(alphas, dim=0)


def q_sample(x0, t, eps, alpha_bars):
    """Forward diffusion in closed form: x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps.

    Args:
        x0: (B, ...) clean data.
        t: (B,) int64 timesteps in {0, ..., T-1}, one per example.
        eps: (B, ...) standard normal noise, same shape as x0.
        alpha_bars: (T,) tensor (any float dtype, any device).
        The inputs are left unchanged.

    Returns:
        x_t: (B, ...) with the dtype and device of x0.
    """
    ab = alpha_bars.to(device=x0.device, dtype=x0.dtype)[t]  # (B,)
    ab = ab.view(-1, *([1] * (x0.dim() - 1)))  # (B, 1, ...) broadcasts over the data dims
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def diffusion_loss(model, x0, alpha_bars, y=None, generator=None):
    """The simple epsilon-prediction loss of DDPM, one Monte-Carlo sample per example.

    Draw t ~ Uniform{0, ..., T-1} and eps ~ N(0, I) for every example (with `generator`),
    form x_t in closed form and regress the noise:
        loss = mean over all elements of (model(x_t, t[, y]) - eps) ** 2.

    Args:
        model: callable (x_t (B, ...), t (B,) int64[, y (B,) int64]) -> eps_hat (B, ...).
        x0: (B, ...) clean data.
        alpha_bars: (T,) tensor.
        y: optional (B,) int64 class labels, passed on to the model (as its third argument or
            as y=...); without labels (y None) the model is called as model(x_t, t), with
            nothing for y (an unconditional model need not take one).
        generator: optional torch.Generator on x0's device; every draw comes from it (the
            global random generator is left alone when one is given).

    Returns:
        loss: scalar tensor of x0's dtype, differentiable with respect to the model's parameters.
    """
    B, T = x0.shape[0], alpha_bars.shape[0]
    t = torch.randint(0, T, (B,), generator=generator, device=x0.device)  # (B,)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    ab = alpha_bars.to(device=x0.device, dtype=x0.dtype)[t].view(-1, *([1] * (x0.dim() - 1)))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    eps_hat = model(x_t, t) if y is None else model(x_t, t, y)
    return F.mse_loss(eps_hat, eps)


def ddpm_step(eps_hat, t, x_t, alpha_bars, noise):
    """One reverse step of DDPM (Ho et al. 2020, Algorithm 2), x_t -> x_{t-1}.

    With a_t = alpha-bar_t, a_prev = alpha-bar_{t-1} (1 at t = 0), alpha_t = a_t/a_prev and
    beta_t = 1 - a_t/a_prev:
        mean     = (x_t - beta_t / sqrt(1 - a_t) * eps_hat) / sqrt(alpha_t)
        variance = beta_t (1 - a_prev) / (1 - a_t)          (the posterior's, "fixed small")
        x_{t-1}  = mean + sqrt(variance) * noise, and x_{t-1} = mean at t = 0 (no noise).
    Also returns the model's current guess of the clean data,
        x0_hat = (x_t - sqrt(1 - a_t) * eps_hat) / sqrt(a_t).

    Args:
        eps_hat: (B, ...) the model's prediction of the noise in x_t.
        t: int, current timestep in {0, ..., T-1}.
        x_t: (B, ...) current sample.
        alpha_bars: (T,) tensor.
        noise: (B, ...) standard normal, used only when t > 0.
        The inputs are left unchanged.

    Returns:
        (x_prev, x0_hat): two (B, ...) tensors like x_t.
    """
    t = int(t)
    a_t = alpha_bars[t].item()
    a_prev = alpha_bars[t - 1].item() if t > 0 else 1.0
    alpha_t = a_t / a_prev
    beta_t = 1 - alpha_t
    mean = (x_t - beta_t / math.sqrt(1 - a_t) * eps_hat) / math.sqrt(alpha_t)
    x0_hat = (x_t - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
    if t == 0:
        return mean, x0_hat
    variance = beta_t * (1 - a_prev) / (1 - a_t)
    return mean + math.sqrt(variance) * noise, x0_hat


def ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta=0.0, noise=None):
    """One step of DDIM (Song et al. 2021, eq. 12) from timestep t to an earlier t_prev.

    With a_t = alpha-bar_t and a_prev = alpha-bar_{t_prev} (1 when t_prev < 0):
        x0_hat = (x_t - sqrt(1 - a_t) * eps_hat) / sqrt(a_t)
        sigma  = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)
        x_prev = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma**2) * eps_hat + sigma * noise
    eta = 0 is deterministic (noise is not used); eta = 1 has DDPM's variance.

    Args:
        eps_hat: (B, ...) predicted noise; t, t_prev: ints with t_prev < t (t_prev = -1: last step).
        x_t: (B, ...); alpha_bars: (T,); eta: float >= 0; noise: (B, ...) or None when eta = 0.
        The inputs are left unchanged.

    Returns:
        (x_prev, x0_hat): two (B, ...) tensors like x_t.
    """
    a_t = alpha_bars[int(t)].item()
    a_prev = alpha_bars[int(t_prev)].item() if t_prev >= 0 else 1.0
    x0_hat = (x_t - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
    x_prev = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev - sigma ** 2) * eps_hat
    if sigma > 0:
        x_prev = x_prev + sigma * noise
    return x_prev, x0_hat


@torch.no_grad()
def sample_ddpm(eps_fn, shape, alpha_bars, generator, keep=(), device="cpu"):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) with your ddpm_step, from pure noise
    x_{T-1} down to a sample of the data.

    T = len(alpha_bars). Every draw is torch.randn(shape, generator=generator), made on the CPU
    (where the generator lives) and then moved with .to(device), in this order:
        1. x_{T-1}, the starting noise;
        2. at each step t = T-1, T-2, ..., 0 (in that order), one fresh noise for ddpm_step.
           (The draw at t = 0 may be left out: ddpm_step adds no noise there.)
    At each step: t_batch = torch.full((B,), t, dtype=torch.long, device=device),
    eps_hat = eps_fn(x_t, t_batch), (x_prev, x0_hat) = ddpm_step(eps_hat, t, x_t, alpha_bars,
    noise), and x_prev becomes the x_t of the next step.

    Args:
        eps_fn: callable (x_t (B, ...), t_batch (B,) int64) -> eps_hat (B, ...), e.g. a model.
        shape: tuple (B, ...), the shape of the samples.
        alpha_bars: (T,) tensor.
        generator: torch.Generator on the CPU; every draw comes from it (the global random
            generator is left alone).
        keep: timesteps whose x_t and x0_hat to keep.
        device: where x_t and t_batch live (and eps_fn runs).

    Returns:
        (x, kept): x (shape) float32 on device, the result of the last step (t = 0);
        kept = {t: (x_t, x0_hat)} for each t in keep: the x_t given to the step at t and that
        step's x0_hat, both moved to the CPU.
    """
    x = torch.randn(shape, generator=generator).to(device)  # x_{T-1}
    kept = {}
    for t in reversed(range(len(alpha_bars))):  # T-1, ..., 0
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps_hat = eps_fn(x, t_batch)
        noise = torch.randn(shape, generator=generator).to(device)
        x_prev, x0_hat = ddpm_step(eps_hat, t, x, alpha_bars, noise)
        if t in keep:
            kept[t] = (x.cpu(), x0_hat.cpu())
        x = x_prev
    return x, kept


@torch.no_grad()
def sample_ddim(eps_fn, shape, alpha_bars, num_steps, generator, eta=0.0, device="cpu"):
    """DDIM sampling (Song et al. 2021) with your ddim_step along steps = ddim_timesteps(T, num_steps).

    T = len(alpha_bars). The step from steps[i] goes to t_prev = steps[i + 1], and the last one
    (from steps[-1]) to t_prev = -1. Every draw is torch.randn(shape, generator=generator), on
    the CPU, then moved with .to(device), in this order:
        1. x_{T-1}, the starting noise;
        2. only when eta > 0: one fresh noise per step, in the order of the steps (the draw at
           the last step may be left out: sigma is 0 there). With eta = 0 nothing else is drawn
           and ddim_step gets noise=None.
    At each step: t_batch = torch.full((B,), t, dtype=torch.long, device=device),
    (x_prev, x0_hat) = ddim_step(eps_fn(x_t, t_batch), t, t_prev, x_t, alpha_bars, eta, noise),
    and x_prev becomes the x_t of the next step.

    Args:
        eps_fn: callable (x_t (B, ...), t_batch (B,) int64) -> eps_hat (B, ...).
        shape: tuple (B, ...); alpha_bars: (T,) tensor; num_steps: int in 1..T.
        generator: torch.Generator on the CPU (the global random generator is left alone).
        eta: float >= 0 (0: deterministic; 1: DDPM's variance); device: where x_t and t_batch live.

    Returns:
        x: (shape) float32 on device, the result of the last step (to t_prev = -1).
    """
    x = torch.randn(shape, generator=generator).to(device)  # x_{T-1}
    steps = ddim_timesteps(len(alpha_bars), num_steps)
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
        noise = torch.randn(shape, generator=generator).to(device) if eta > 0 else None
        x, _ = ddim_step(eps_fn(x, t_batch), t, t_prev, x, alpha_bars, eta, noise)
    return x


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding of the timesteps (Vaswani et al. 2017; as in DDPM).

    With half = dim / 2 frequencies w_i = max_period ** (-i / half), i = 0, ..., half - 1:
        emb[b] = [cos(t_b w_0), ..., cos(t_b w_{half-1}), sin(t_b w_0), ..., sin(t_b w_{half-1})]

    Args:
        t: (B,) timesteps (int64, or float of any dtype: fractional timesteps are allowed).
        dim: even int.
        max_period: float > 1, the longest period (w_{half-1} is close to 1 / max_period).

    Returns:
        emb: (B, dim) float32 on t's device (computing inside in float64 is fine too).
    """
    half = dim // 2
    w = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * w[None, :]  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class ResBlock(nn.Module):
    """A residual block conditioned on an embedding (of the timestep, plus the class).

        h = conv1(SiLU(norm1(x)))                     (B, c_out, H, W)
        h = h + time_proj(SiLU(emb))[:, :, None, None]  one shift per channel
        h = conv2(SiLU(norm2(h)))
        out = h + skip(x)      skip: 1x1 conv when c_in != c_out, else the identity
    """

    def __init__(self, c_in, c_out, emb_dim, groups=8):
        """norm1 = GroupNorm(groups, c_in), conv1 = Conv2d(c_in, c_out, 3, padding=1),
        time_proj = Linear(emb_dim, c_out), norm2 = GroupNorm(groups, c_out),
        conv2 = Conv2d(c_out, c_out, 3, padding=1), skip = Conv2d(c_in, c_out, 1) or Identity."""
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_proj = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        """x (B, c_in, H, W), emb (B, emb_dim) -> (B, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A U-Net noise predictor eps_theta(x_t, t[, y]) (Ronneberger et al. 2015; Ho et al. 2020).

    Levels i = 0..L-1 with channels c_i = ch * mults[i]; emb_dim = 4ch.
      embedding:  emb = time_mlp(timestep_embedding(t, ch)), time_mlp = Linear(ch, emb_dim),
                  SiLU, Linear(emb_dim, emb_dim); plus class_embedding(y) when num_classes is
                  set: an nn.Embedding(num_classes + 1, emb_dim) whose last row, y = num_classes,
                  means "no label" (also used when y is None).
      conv_in:    Conv2d(in_channels, ch, 3, padding=1)
      encoder:    down_blocks[i] = ResBlock(c_{i-1}, c_i, emb_dim) (c_{-1} = ch); its output is
                  saved as skip i; then, except at the last level, downsamples[i] =
                  Conv2d(c_i, c_i, 3, stride=2, padding=1) halves H and W.
      middle:     mid_blocks = two ResBlock(c_{L-1}, c_{L-1}, emb_dim).
      decoder:    for i = L-1 down to 0: concatenate skip i on the channels (torch.cat([h, skip], 1)),
                  up_blocks[L-1-i] = ResBlock(c_prev + c_i, c_i, emb_dim) (c_prev: channels of h);
                  then, except at level 0, nearest-neighbour x2 upsampling
                  (F.interpolate(h, scale_factor=2.0, mode="nearest")) followed by
                  upsamples[L-1-i] = Conv2d(c_i, c_i, 3, padding=1) (the upsampling may also
                  sit inside upsamples[L-1-i], as nn.Sequential(nn.Upsample(scale_factor=2,
                  mode="nearest"), conv): only the parameters and what is computed count).
      output:     conv_out(SiLU(norm_out(h))), norm_out = GroupNorm(groups, ch),
                  conv_out = Conv2d(ch, in_channels, 3, padding=1).
    H and W must be divisible by 2 ** (L - 1) (28 x 28 with three levels: 28, 14, 7); they
    need not be equal.
    """

    def __init__(self, in_channels=1, ch=32, mults=(1, 2, 2), num_classes=None, groups=8):
        super().__init__()
        self.ch, self.num_classes = ch, num_classes
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        chans = [ch * m for m in mults]
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        c_prev = ch
        for i, c in enumerate(chans):
            self.down_blocks.append(ResBlock(c_prev, c, emb_dim, groups))
            if i < len(chans) - 1:
                self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            c_prev = c
        self.mid_blocks = nn.ModuleList([ResBlock(c_prev, c_prev, emb_dim, groups) for _ in range(2)])
        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(chans))):
            self.up_blocks.append(ResBlock(c_prev + chans[i], chans[i], emb_dim, groups))
            if i > 0:
                self.upsamples.append(nn.Conv2d(chans[i], chans[i], 3, padding=1))
            c_prev = chans[i]
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x, t, y=None):
        """x (B, in_channels, H, W), t (B,) int64, y (B,) int64 or None -> eps_hat like x."""
        emb = self.time_mlp(timestep_embedding(t, self.ch))  # (B, 4ch)
        if self.class_embedding is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes)
            emb = emb + self.class_embedding(y)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        for block in self.mid_blocks:
            h = block(h, emb)
        for j, block in enumerate(self.up_blocks):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def drop_labels(y, p_uncond, null_label, generator=None):
    """Label dropout for classifier-free guidance: each label independently becomes the
    "no label" id with probability p_uncond.

    Args:
        y: (B,) int64 labels (left unchanged); p_uncond: float in [0, 1]; null_label: int
        (e.g. 10 for MNIST); generator: optional torch.Generator on y's device.

    Returns:
        (B,) int64: y where u >= p_uncond, null_label elsewhere, with the single draw
        u = torch.rand(B, generator=generator) (the global generator is left alone).
    """
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, null_label), y)


def guided_eps(model, x_t, t, y, scale, null_label):
    """Classifier-free guidance (Ho & Salimans 2021) with one forward pass of a doubled batch:
        eps = eps_u + scale * (eps_c - eps_u),
    eps_c = model(x_t, t, y), eps_u = model(x_t, t, null labels). scale = 0: unconditional;
    1: conditional; > 1: guided. In the paper's notation eps = (1 + w) eps_c - w eps_u: scale = 1 + w.

    Args:
        model: callable (x (2B, ...), t (2B,), y (2B,)) -> (2B, ...).
        x_t: (B, ...); t: (B,) int64; y: (B,) int64; scale: float; null_label: int. The inputs
        are left unchanged.

    Returns:
        eps: (B, ...).
    """
    B = x_t.shape[0]
    eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)]))
    eps_c, eps_u = eps[:B], eps[B:]
    return eps_u + scale * (eps_c - eps_u)


# Q1. If eps_hat equalled the true noise of x_t exactly, what would ddpm_step's x0_hat be?
#   A: x_{t-1}  B: x_0 itself, exactly  C: x_t unchanged  D: the mean of the training images
answer_predicts = "B"

# Q2. Ho & Salimans write eps = (1 + w) eps_c - w eps_u. What does their w = 0 sample from?
answer_guidance_w = "B"

# Q3. Which statements are true?
answer_diffusion_facts = {"A", "B", "D", "E"}
