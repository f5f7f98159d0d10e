"""Chapter 05: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch05.DIAGNOSES`), shared with the visible and hidden checks."""
import re

from autograder.mutants import Alternative, Mistake
from workbook import ch05

D = ch05.DIAGNOSES
# Where the visible check that fails first cannot tell a mistake from its neighbours, it says
# so in other words; the hidden check, run on its own, names the mistake by its diagnosis.
# The visible ResBlock check compares with diffusers and names the order of the operations:
ORDER = re.escape(D["resblock_order"])
# The visible check's value has no diagnosis of its own ("... has wrong values"), or the
# mistake breaks the shapes first ("... has the wrong shape", "calling ... raised IndexError: ..."):
WRONG_VALUES = "has wrong values"
SHAPE = "has the wrong shape"
RAISED = r"raised \w+Error"

_QS = "return ab.sqrt() * x0 + (1 - ab).sqrt() * eps"
_DDIM = "x_prev = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev - sigma ** 2) * eps_hat"
_UP = 'h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))'
_GUIDE = "return eps_u + scale * (eps_c - eps_u)"

MISTAKES = [
    # schedules
    Mistake("schedules_checks", "cosine_betas", "return (1 - f[1:] / f[:-1]).clamp(max=max_beta)",
            "return 1 - f[1:] / f[:-1]", D["not_clipped"]),
    Mistake("schedules_checks", "cosine_betas", "return (1 - f[1:] / f[:-1]).clamp(max=max_beta)",
            "return (1 - f[:-1] / f[1:]).clamp(max=max_beta)", D["ratio_inverted"]),
    Mistake("schedules_checks", "cosine_betas", "f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2",
            "f = torch.cos(u * math.pi / 2) ** 2", D["cosine_offset"]),
    Mistake("schedules_checks", "linear_betas", "torch.linspace(beta_1, beta_T, T, dtype=torch.float64)",
            "torch.linspace(beta_1, beta_T, T)", D["keep_dtype"]),
    Mistake("schedules_checks", "linear_betas", "torch.linspace(beta_1, beta_T, T, dtype=torch.float64)",
            "torch.linspace(beta_1, beta_T, T + 1, dtype=torch.float64)[1:]",
            D["linspace"]),
    Mistake("schedules_checks", "noise_schedule", "torch.cumprod(alphas, dim=0)", "torch.cumsum(alphas, dim=0)",
            D["cumsum"]),
    Mistake("schedules_checks", "noise_schedule", "torch.cumprod(alphas, dim=0)", "torch.cumprod(betas, dim=0)",
            D["cumprod_betas"]),
    Mistake("schedules_checks", "noise_schedule", "torch.cumprod(alphas, dim=0)",
            "torch.cat([torch.ones_like(alphas[:1]), torch.cumprod(alphas, dim=0)[:-1]])",
            D["ab_shifted"]),
    # q_sample
    Mistake("q_sample_checks", "q_sample", _QS, "return ab * x0 + (1 - ab) * eps", D["no_sqrt"]),
    Mistake("q_sample_checks", "q_sample", _QS, "return ab.sqrt() * x0 + (1 - ab) * eps",
            D["sqrt_noise"]),
    Mistake("q_sample_checks", "q_sample", _QS, "return (1 - ab).sqrt() * x0 + ab.sqrt() * eps",
            D["swapped"]),
    Mistake("q_sample_checks", "q_sample", "dtype=x0.dtype)[t]", "dtype=x0.dtype)[t - 1]",
            D["ab_t_minus_one"]),
    Mistake("q_sample_checks", "q_sample", "alpha_bars.to(device=x0.device, dtype=x0.dtype)",
            "alpha_bars.to(device=x0.device)", D["keep_dtype"]),
    # diffusion_loss
    Mistake("diffusion_loss_checks", "diffusion_loss", "return F.mse_loss(eps_hat, eps)",
            "return F.mse_loss(eps_hat, x0)", D["predict_noise"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "return F.mse_loss(eps_hat, eps)",
            "return F.mse_loss(eps_hat, eps, reduction='sum')", D["loss_summed"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "torch.randint(0, T, (B,)", "torch.randint(1, T, (B,)",
            D["t_uniform"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "torch.randint(0, T, (B,)", "torch.randint(0, T + 1, (B,)",
            D["t_range"], expect=RAISED),
    Mistake("diffusion_loss_checks", "diffusion_loss", "eps = torch.randn(x0.shape", "eps = torch.rand(x0.shape",
            D["implied_noise"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "torch.randint(0, T, (B,)", "torch.randint(0, T, (1,)",
            D["t_per_example"], expect=SHAPE),
    Mistake("diffusion_loss_checks", "diffusion_loss", "x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps",
            "x_t = ab * x0 + (1 - ab) * eps", D["implied_noise"]),
    # ddpm_step
    Mistake("ddpm_step_checks", "ddpm_step", "math.sqrt(variance) * noise", "variance * noise",
            D["noise_by_variance"]),
    Mistake("ddpm_step_checks", "ddpm_step", "variance = beta_t * (1 - a_prev) / (1 - a_t)\n    return",
            "variance = beta_t\n    return",
            D["beta_variance"]),
    Mistake("ddpm_step_checks", "ddpm_step", "if t == 0:\n        return mean, x0_hat\n    "
            "variance = beta_t * (1 - a_prev) / (1 - a_t)",
            "variance = beta_t * (1 - a_prev) / (1 - a_t) if t > 0 else beta_t",
            D["noise_last_step"]),
    Mistake("ddpm_step_checks", "ddpm_step", "beta_t / math.sqrt(1 - a_t) * eps_hat", "beta_t / (1 - a_t) * eps_hat",
            D["mean_denominator"]),
    Mistake("ddpm_step_checks", "ddpm_step", ") / math.sqrt(alpha_t)", ") / alpha_t",
            D["mean_alpha"]),
    Mistake("ddpm_step_checks", "ddpm_step", "(x_t - beta_t / math.sqrt(1 - a_t) * eps_hat)",
            "(x_t - math.sqrt(1 - a_t) * eps_hat)", D["whole_noise"]),
    Mistake("ddpm_step_checks", "ddpm_step", "a_t = alpha_bars[t].item()\n    a_prev = alpha_bars[t - 1].item() "
            "if t > 0 else 1.0", "a_t = alpha_bars[t - 1].item()\n    a_prev = alpha_bars[t - 2].item() if t > 1 "
            "else 1.0", D["ddpm_shifted"]),
    Mistake("ddpm_step_checks", "ddpm_step", "a_prev = alpha_bars[t - 1].item() if t > 0 else 1.0",
            "a_prev = alpha_bars[t - 1].item()", D["last_step"]),
    # ddim_step
    Mistake("ddim_step_checks", "ddim_step", "math.sqrt(1 - a_prev - sigma ** 2) * eps_hat",
            "math.sqrt(1 - a_t - sigma ** 2) * eps_hat", D["direction_ab_t"]),
    Mistake("ddim_step_checks", "ddim_step", "alpha_bars[int(t_prev)].item() if t_prev >= 0 else 1.0",
            "alpha_bars[int(t_prev)].item()", D["ab_minus_one"]),
    Mistake("ddim_step_checks", "ddim_step", _DDIM, "x_prev = a_prev * x0_hat + (1 - a_prev - sigma ** 2) * eps_hat",
            D["ddim_no_sqrt"]),
    Mistake("ddim_step_checks", "ddim_step", "math.sqrt(1 - a_prev - sigma ** 2) * eps_hat",
            "math.sqrt(1 - a_prev) * eps_hat", D["sigma_direction"]),
    Mistake("ddim_step_checks", "ddim_step", "if sigma > 0:\n        x_prev = x_prev + sigma * noise", "",
            D["noise_missing"]),
    Mistake("ddim_step_checks", "ddim_step", "x_prev = x_prev + sigma * noise", "x_prev = x_prev + sigma ** 2 * noise",
            D["noise_sigma2"]),
    # time embedding + residual block
    Mistake("time_embedding_checks", "timestep_embedding", "torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)",
            "torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)", D["sin_first"]),
    Mistake("time_embedding_checks", "timestep_embedding", "device=t.device) / half)",
            "device=t.device) / (half - 1))",
            D["half_minus_one"]),
    Mistake("time_embedding_checks", "timestep_embedding", "torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)",
            "torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).flatten(1)",
            D["interleaved"]),
    Mistake("time_embedding_checks", "ResBlock", "h = h + self.time_proj(F.silu(emb))[:, :, None, None]", "h = h",
            D["resblock_order"]),
    Mistake("time_embedding_checks", "ResBlock", "self.time_proj(F.silu(emb))", "self.time_proj(emb)",
            D["silu_emb"], expect=ORDER),
    Mistake("time_embedding_checks", "ResBlock", "return h + self.skip(x)", "return h",
            D["resblock_order"]),
    Mistake("time_embedding_checks", "ResBlock", "h = self.conv1(F.silu(self.norm1(x)))", "h = F.silu(self.conv1(self.norm1(x)))",
            D["resblock_order"]),
    # U-Net
    Mistake("unet_checks", "UNet", "skips.pop()", "skips.pop(0)", D["skips_order"], expect=RAISED),
    Mistake("unet_checks", "UNet", "emb = emb + self.class_embedding(y)", "emb = emb",
            D["unet_label"]),
    Mistake("unet_checks", "UNet", "timestep_embedding(t, self.ch)", "timestep_embedding(t * 0, self.ch)",
            D["unet_timestep"]),
    Mistake("unet_checks", "UNet", "y = torch.full_like(t, self.num_classes)", "y = torch.zeros_like(t)",
            D["null_label_id"]),
    Mistake("unet_checks", "UNet", _UP, 'h = F.interpolate(self.upsamples[j](h), scale_factor=2.0, mode="nearest")',
            D["unet_computation"]),
    # guidance
    Mistake("guidance_checks", "guided_eps", _GUIDE, "return eps_c + scale * (eps_u - eps_c)",
            D["guidance_inverted"]),
    Mistake("guidance_checks", "guided_eps", _GUIDE, "return eps_c + scale * (eps_c - eps_u)",
            D["scale_as_w"]),
    Mistake("guidance_checks", "guided_eps", "torch.full_like(y, null_label)", "torch.zeros_like(y)",
            D["null_not_zero"]),
    Mistake("guidance_checks", "drop_labels", "< p_uncond", ">= p_uncond", D["drop_below"]),
    Mistake("guidance_checks", "drop_labels", "return torch.where(drop, torch.full_like(y, null_label), y)",
            "y[drop] = null_label\n    return y", D["labels_in_place"]),
    # quiz
    Mistake("quiz_predicts", "answer_predicts", '"B"', '"A"', "x0_hat taken for the previous step", diagnosed=False),
    Mistake("quiz_predicts", "answer_predicts", '"B"', '"D"', "x0_hat taken for the data mean", diagnosed=False),
    Mistake("quiz_predicts", "answer_guidance_w", '"B"', '"A"', "w = 0 read as the unconditional model", diagnosed=False),
    Mistake("quiz_diffusion_facts", "answer_diffusion_facts", '{"A", "B", "D", "E"}', '{"A", "B", "D", "E", "F"}',
            "not every statement is true", diagnosed=False),
]

MISTAKES += [
    # schedules
    Mistake("schedules_checks", "linear_betas", "torch.linspace(beta_1, beta_T, T, dtype=torch.float64)",
            "torch.linspace(1e-4, 0.02, T, dtype=torch.float64)", D["linear_args"]),
    Mistake("schedules_checks", "cosine_betas", ".clamp(max=max_beta)", ".clamp(max=0.999)",
            D["cosine_args"]),
    Mistake("schedules_checks", "cosine_betas", "u = torch.arange(T + 1, dtype=torch.float64) / T",
            "u = torch.arange(T + 1, dtype=torch.float64) / (T + 1)", D["cosine_grid"], expect=WRONG_VALUES),
    Mistake("schedules_checks", "noise_schedule", "alphas = 1 - betas", "alphas = (1 - betas).float()",
            D["keep_dtype"]),
    # q_sample
    Mistake("q_sample_checks", "q_sample", _QS, "return x0.mul_(ab.sqrt()).add_((1 - ab).sqrt() * eps)",
            D["inputs_in_place"]),
    Mistake("q_sample_checks", "q_sample", "ab = ab.view(-1, *([1] * (x0.dim() - 1)))", "ab = ab.view(-1, 1, 1, 1)",
            D["per_example_ab"], expect=SHAPE),
    Mistake("q_sample_checks", "q_sample", "dtype=x0.dtype)[t]", "dtype=x0.dtype)[t[:1]]",
            D["first_ab"], expect=WRONG_VALUES),
    # diffusion_loss
    Mistake("diffusion_loss_checks", "diffusion_loss",
            "eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)",
            "eps = torch.randn_like(x0)", D["global_rng"]),
    Mistake("diffusion_loss_checks", "diffusion_loss",
            "t = torch.randint(0, T, (B,), generator=generator, device=x0.device)",
            "t = torch.randint(0, T, (B,), device=x0.device)", D["global_rng"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "eps_hat = model(x_t, t) if y is None else model(x_t, t, y)",
            "eps_hat = model(x_t, t)", D["labels_not_passed"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "eps_hat = model(x_t, t) if y is None else model(x_t, t, y)",
            "eps_hat = model(x_t, t, y)", D["labels_when_none"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "eps_hat = model(x_t, t) if y is None else model(x_t, t, y)",
            "eps_hat = model(x_t, t, y=y)", D["labels_when_none"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "return F.mse_loss(eps_hat, eps)",
            "return ((eps_hat - eps) ** 2).flatten(1).sum(1).mean()", D["per_example_sum"]),
    Mistake("diffusion_loss_checks", "diffusion_loss", "ab = alpha_bars.to(device=x0.device, dtype=x0.dtype)[t]",
            "ab = alpha_bars.to(device=x0.device)[t]", D["keep_dtype"]),
    # ddpm_step
    Mistake("ddpm_step_checks", "ddpm_step", "return mean + math.sqrt(variance) * noise, x0_hat",
            "return mean + noise.mul_(math.sqrt(variance)), x0_hat", D["inputs_in_place"]),
    Mistake("ddpm_step_checks", "ddpm_step", "variance = beta_t * (1 - a_prev) / (1 - a_t)",
            "variance = beta_t * (1 - a_t) / (1 - a_prev)", D["posterior_ratio"], expect=WRONG_VALUES),
    Mistake("ddpm_step_checks", "ddpm_step", "    t = int(t)\n", "    t = int(t)\n    x_t, eps_hat = x_t.double(), "
            "eps_hat.double()\n", D["keep_dtype"]),
    # ddim_step
    Mistake("ddim_step_checks", "ddim_step", "sigma = eta * math.sqrt(", "sigma = math.sqrt(",
            D["eta_ignored"], expect=RAISED),
    Mistake("ddim_step_checks", "ddim_step", "x_prev = x_prev + sigma * noise", "x_prev = x_prev + noise.mul_(sigma)",
            D["inputs_in_place"]),
    Mistake("ddim_step_checks", "ddim_step", "alpha_bars[int(t_prev)].item() if t_prev >= 0 else 1.0",
            "alpha_bars[int(t_prev) + 1].item() if t_prev >= 0 else 1.0", D["ab_prev_late"]),
    # time embedding + residual block
    Mistake("time_embedding_checks", "timestep_embedding", "-math.log(max_period)", "-math.log(10000)",
            D["max_period_ignored"]),
    Mistake("time_embedding_checks", "timestep_embedding", "torch.arange(half, dtype=torch.float32, device=t.device)",
            "torch.arange(half, dtype=torch.float64, device=t.device)", D["keep_dtype"]),
    Mistake("time_embedding_checks", "timestep_embedding", "angles = t.float()[:, None]", "angles = t[:, None]",
            D["keep_dtype"]),
    Mistake("time_embedding_checks", "timestep_embedding", "device=t.device) / half)", "device=t.device) / dim)",
            D["over_dim"], expect=WRONG_VALUES),
    Mistake("time_embedding_checks", "ResBlock", "self.norm1 = nn.GroupNorm(groups, c_in)",
            "self.norm1 = nn.GroupNorm(8, c_in)", D["norm1_groups"]),
    Mistake("time_embedding_checks", "ResBlock", "self.time_proj(F.silu(emb))", "F.silu(self.time_proj(emb))",
            D["silu_emb"], expect=ORDER),
    Mistake("time_embedding_checks", "ResBlock", "h = self.conv2(F.silu(self.norm2(h)))", "h = self.conv2(self.norm2(h))",
            D["silu_conv2"], expect=ORDER),
    Mistake("time_embedding_checks", "ResBlock", "h = h + self.time_proj(F.silu(emb))[:, :, None, None]\n"
            "        h = self.conv2(F.silu(self.norm2(h)))", "h = self.conv2(F.silu(self.norm2(h)))\n"
            "        h = h + self.time_proj(F.silu(emb))[:, :, None, None]",
            D["emb_after_conv2"], expect=ORDER),
    # U-Net
    Mistake("unet_checks", "UNet", "self.norm_out = nn.GroupNorm(groups, ch)", "self.norm_out = nn.GroupNorm(8, ch)",
            D["unet_computation"]),
    Mistake("unet_checks", "UNet", "self.down_blocks.append(ResBlock(c_prev, c, emb_dim, groups))",
            "self.down_blocks.append(ResBlock(c_prev, c, emb_dim))", D["unet_computation"]),
    Mistake("unet_checks", "UNet", _UP, _UP.replace('"nearest"', '"bilinear"'), D["unet_computation"]),
    Mistake("unet_checks", "UNet", "nn.Embedding(num_classes + 1, emb_dim) if num_classes else None",
            "nn.Embedding(num_classes, emb_dim) if num_classes else None",
            D["unet_params"]),
    # guidance
    Mistake("guidance_checks", "drop_labels", "torch.rand(y.shape, generator=generator, device=y.device)",
            "torch.rand(y.shape, device=y.device)", D["global_rng"]),
    Mistake("guidance_checks", "drop_labels", "drop = torch.rand(y.shape, generator=generator, device=y.device) < p_uncond",
            "drop = torch.rand(y.shape, generator=generator, device=y.device).flip(0) < p_uncond",
            D["stated_draw"]),
    Mistake("guidance_checks", "drop_labels", "torch.full_like(y, null_label)", "torch.full_like(y, 10)",
            D["drop_below"]),
    Mistake("guidance_checks", "guided_eps", "torch.full_like(y, null_label)", "torch.full_like(y, 10)",
            D["guided_null_label"], expect=WRONG_VALUES),
    Mistake("guidance_checks", "guided_eps", "eps_c, eps_u = eps[:B], eps[B:]", "eps_u, eps_c = eps[:B], eps[B:]",
            D["guidance_inverted"]),
    Mistake("guidance_checks", "guided_eps",
            "eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)]))",
            "y_c = y.clone()\n    eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y_c, y.fill_(null_label)]))",
            D["inputs_in_place"]),
]

ALTERNATIVES = [
    Alternative("schedules_checks", "linear_betas", '''
def linear_betas(T=1000, beta_1=1e-4, beta_T=0.02):
    """By hand: beta_1 + (beta_T - beta_1) * k / (T - 1)."""
    k = torch.arange(T, dtype=torch.float64)
    return beta_1 + (beta_T - beta_1) * k / (T - 1)
'''),
    Alternative("schedules_checks", "cosine_betas", '''
def cosine_betas(T=1000, s=0.008, max_beta=0.999):
    """A Python loop over the steps with math.cos, as in improved-diffusion."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - f((t + 1) / T) / f(t / T), max_beta) for t in range(T)], dtype=torch.float64)
'''),
    Alternative("schedules_checks", "noise_schedule", '''
def noise_schedule(betas):
    """The product through a sum of logs."""
    alphas = 1.0 - betas
    return alphas, torch.exp(torch.cumsum(torch.log(alphas), dim=0))
'''),
    Alternative("q_sample_checks", "q_sample", '''
def q_sample(x0, t, eps, alpha_bars):
    """Gather on the CPU, unsqueeze until the ranks match."""
    ab = alpha_bars[t.cpu()].to(x0)
    while ab.dim() < x0.dim():
        ab = ab.unsqueeze(-1)
    return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * eps
'''),
    Alternative("diffusion_loss_checks", "diffusion_loss", '''
def diffusion_loss(model, x0, alpha_bars, y=None, generator=None):
    """The noise drawn before t, the error squared by hand, q_sample reused."""
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, len(alpha_bars), (x0.shape[0],), generator=generator, device=x0.device)
    x_t = q_sample(x0, t, eps, alpha_bars)
    args = (x_t, t) if y is None else (x_t, t, y)
    return ((model(*args) - eps) ** 2).mean()
'''),
    Alternative("ddpm_step_checks", "ddpm_step", '''
def ddpm_step(eps_hat, t, x_t, alpha_bars, noise):
    """diffusers' form: the posterior mean as coef0 * x0_hat + coef_t * x_t."""
    t = int(t)
    a_t = float(alpha_bars[t])
    a_prev = float(alpha_bars[t - 1]) if t >= 1 else 1.0
    beta_t = 1 - a_t / a_prev
    x0_hat = (x_t - (1 - a_t) ** 0.5 * eps_hat) / a_t ** 0.5
    coef0 = a_prev ** 0.5 * beta_t / (1 - a_t)
    coef_t = (1 - beta_t) ** 0.5 * (1 - a_prev) / (1 - a_t)
    mean = coef0 * x0_hat + coef_t * x_t
    if t >= 1:
        mean = mean + (beta_t * (1 - a_prev) / (1 - a_t)) ** 0.5 * noise
    return mean, x0_hat
'''),
    Alternative("ddim_step_checks", "ddim_step", '''
def ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta=0.0, noise=None):
    """Coefficients as tensors; the noise term through torch.where-free arithmetic."""
    ab = torch.cat([alpha_bars.double(), torch.ones(1, dtype=torch.float64)])  # ab[-1] = 1: "before the first step"
    a_t, a_prev = ab[int(t)], ab[int(t_prev) if t_prev >= 0 else -1]
    x0_hat = (x_t - torch.sqrt(1 - a_t).to(x_t) * eps_hat) / torch.sqrt(a_t).to(x_t)
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    sigma = eta * torch.sqrt(var)
    out = torch.sqrt(a_prev).to(x_t) * x0_hat + torch.sqrt(1 - a_prev - sigma ** 2).to(x_t) * eps_hat
    if eta > 0:
        out = out + sigma.to(x_t) * noise
    return out, x0_hat
'''),
    Alternative("time_embedding_checks", "timestep_embedding", '''
def timestep_embedding(t, dim, max_period=10000):
    """diffusers' own function."""
    from diffusers.models.embeddings import get_timestep_embedding
    return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=max_period)
'''),
    Alternative("time_embedding_checks", "ResBlock", '''
class ResBlock(nn.Module):
    """Same parameters; functional calls and an explicit branch for the skip."""

    def __init__(self, c_in, c_out, emb_dim, groups=8):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=c_in, eps=1e-5)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.time_proj = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(num_groups=groups, num_channels=c_out, eps=1e-5)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, kernel_size=1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(emb * torch.sigmoid(emb)).unsqueeze(-1).unsqueeze(-1)
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h
'''),
    Alternative("unet_checks", "UNet", '''
class UNet(nn.Module):
    """The same network; skips indexed from the end, upsampling by repeat_interleave."""

    def __init__(self, in_channels=1, ch=32, mults=(1, 2, 2), num_classes=None, groups=8):
        super().__init__()
        self.ch, self.num_classes = ch, num_classes
        d = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, d), nn.SiLU(), nn.Linear(d, d))
        self.class_embedding = nn.Embedding(num_classes + 1, d) if num_classes else None
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        cs = [ch * m for m in mults]
        ins = [ch] + cs[:-1]
        self.down_blocks = nn.ModuleList(ResBlock(i, o, d, groups) for i, o in zip(ins, cs))
        self.downsamples = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in cs[:-1])
        self.mid_blocks = nn.ModuleList([ResBlock(cs[-1], cs[-1], d, groups), ResBlock(cs[-1], cs[-1], d, groups)])
        prev = [cs[-1]] + cs[::-1][:-1]
        self.up_blocks = nn.ModuleList(ResBlock(p + c, c, d, groups) for p, c in zip(prev, cs[::-1]))
        self.upsamples = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in cs[::-1][:-1])
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x, t, y=None):
        emb = self.time_mlp(timestep_embedding(t, self.ch))
        if self.num_classes:
            emb = emb + self.class_embedding(torch.full_like(t, self.num_classes) if y is None else y)
        h, skips = self.conv_in(x), []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        for block in self.mid_blocks:
            h = block(h, emb)
        L = len(self.up_blocks)
        for j in range(L):
            h = self.up_blocks[j](torch.cat((h, skips[L - 1 - j]), dim=1), emb)
            if j < L - 1:
                h = self.upsamples[j](h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
        return self.conv_out(F.silu(self.norm_out(h)))
'''),
    Alternative("guidance_checks", "guided_eps", '''
def guided_eps(model, x_t, t, y, scale, null_label):
    """Two forward passes; (1 - s) eps_u + s eps_c."""
    eps_c = model(x_t, t, y)
    eps_u = model(x_t, t, torch.full_like(y, null_label))
    return (1 - scale) * eps_u + scale * eps_c
'''),
    Alternative("guidance_checks", "drop_labels", '''
def drop_labels(y, p_uncond, null_label, generator=None):
    """masked_fill on a clone."""
    mask = torch.rand(y.shape[0], generator=generator, device=y.device) < p_uncond
    return y.clone().masked_fill(mask, null_label)
'''),
    Alternative("quiz_predicts", "answer_predicts", """
answer_predicts = "b".upper()
""", "any expression that gives the letter"),
    Alternative("quiz_diffusion_facts", "answer_diffusion_facts", '''
answer_diffusion_facts = ["E", "D", "B", "A"]
''', "a list in any order"),
]

ALTERNATIVES += [
    Alternative("q_sample_checks", "q_sample", '''
def q_sample(x0, t, eps, alpha_bars):
    """torch.addcmul, alpha_bar reshaped with reshape."""
    ab = alpha_bars.to(device=x0.device, dtype=x0.dtype)[t].reshape(len(t), *([1] * (x0.ndim - 1)))
    return torch.addcmul(ab.sqrt() * x0, (1 - ab).sqrt(), eps)
'''),
    Alternative("diffusion_loss_checks", "diffusion_loss", '''
def diffusion_loss(model, x0, alpha_bars, y=None, generator=None):
    """Labels passed by keyword when there are labels."""
    B, T = x0.shape[0], len(alpha_bars)
    t = torch.randint(0, T, (B,), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    ab = alpha_bars.to(x0)[t].view(B, *([1] * (x0.dim() - 1)))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return F.mse_loss(model(x_t, t) if y is None else model(x_t, t, y=y), eps)
'''),
    Alternative("ddpm_step_checks", "ddpm_step", '''
def ddpm_step(eps_hat, t, x_t, alpha_bars, noise):
    """In float64 inside, back to x_t's dtype."""
    t = int(t)
    ab = alpha_bars.double()
    a_t, a_prev = ab[t], ab[t - 1] if t > 0 else torch.ones((), dtype=torch.float64)
    x, e = x_t.double(), eps_hat.double()
    beta = 1 - a_t / a_prev
    mean = (x - beta / (1 - a_t).sqrt() * e) / (1 - beta).sqrt()
    x0_hat = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
    if t > 0:
        mean = mean + (beta * (1 - a_prev) / (1 - a_t)).sqrt() * noise.double()
    return mean.to(x_t.dtype), x0_hat.to(x_t.dtype)
'''),
    Alternative("ddim_step_checks", "ddim_step", '''
def ddim_step(eps_hat, t, t_prev, x_t, alpha_bars, eta=0.0, noise=None):
    """Python floats and ** 0.5, the noise term only when eta > 0."""
    a_t = float(alpha_bars[t])
    a_prev = float(alpha_bars[t_prev]) if t_prev >= 0 else 1.0
    x0_hat = (x_t - (1 - a_t) ** 0.5 * eps_hat) / a_t ** 0.5
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    sigma = eta * var ** 0.5
    out = a_prev ** 0.5 * x0_hat + (1 - a_prev - sigma ** 2) ** 0.5 * eps_hat
    return (out + sigma * noise if eta > 0 else out), x0_hat
'''),
    Alternative("time_embedding_checks", "timestep_embedding", '''
def timestep_embedding(t, dim, max_period=10000):
    """In float64 inside, converted to float32 at the end."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64, device=t.device)
    w = max_period ** (-i / half)
    angles = torch.outer(t.double(), w)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()
'''),
    Alternative("time_embedding_checks", "timestep_embedding", '''
def timestep_embedding(t, dim, max_period=10000):
    """The docstring's formula literally, in float32: max_period ** (-i / half)."""
    half = dim // 2
    w = torch.tensor(float(max_period)) ** (-torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.to(torch.float32)[:, None] * w
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
'''),
    Alternative("unet_checks", "UNet", '''
class UNet(nn.Module):
    """upsamples[j] as the docstring reads: nn.Sequential(nn.Upsample(nearest, x2), conv)."""

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
                self.upsamples.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                    nn.Conv2d(chans[i], chans[i], 3, padding=1)))
            c_prev = chans[i]
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x, t, y=None):
        emb = self.time_mlp(timestep_embedding(t, self.ch))
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(torch.full_like(t, self.num_classes) if y is None else y)
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
                h = self.upsamples[j](h)
        return self.conv_out(F.silu(self.norm_out(h)))
'''),
    Alternative("guidance_checks", "guided_eps", '''
def guided_eps(model, x_t, t, y, scale, null_label):
    """One doubled batch, split with chunk, combined with torch.lerp."""
    null = torch.full_like(y, null_label)
    eps_c, eps_u = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    return torch.lerp(eps_u, eps_c, scale)
'''),
    Alternative("guidance_checks", "drop_labels", '''
def drop_labels(y, p_uncond, null_label, generator=None):
    """The stated draw, a copy changed by boolean indexing."""
    out = y.clone()
    out[torch.rand(len(y), generator=generator, device=y.device) < p_uncond] = null_label
    return out
'''),
    Alternative("guidance_checks", "drop_labels", '''
def drop_labels(y, p_uncond, null_label, generator=None):
    """torch.bernoulli with the generator: the same uniform draws as torch.rand(B) < p_uncond."""
    drop = torch.bernoulli(torch.full(y.shape, float(p_uncond)), generator=generator).bool()
    return torch.where(drop, torch.full_like(y, null_label), y)
''', "bernoulli draws the stated uniforms"),
    Alternative("quiz_diffusion_facts", "answer_diffusion_facts", '''
answer_diffusion_facts = {"a", "b", "d", "e"}
''', "lower-case letters"),
]

# the samplers
_DDPM_LOOP = """    kept = {}
    for t in reversed(range(len(alpha_bars))):  # T-1, ..., 0
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps_hat = eps_fn(x, t_batch)
        noise = torch.randn(shape, generator=generator).to(device)
"""
_DDIM_LOOP = """    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
        noise = torch.randn(shape, generator=generator).to(device) if eta > 0 else None
"""
_T_PREV = "t_prev = steps[i + 1] if i + 1 < len(steps) else -1"
MISTAKES += [
    Mistake("sample_ddpm_checks", "sample_ddpm", "for t in reversed(range(len(alpha_bars))):",
            "for t in range(len(alpha_bars)):", D["steps_downward"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "for t in reversed(range(len(alpha_bars))):",
            "for t in reversed(range(1, len(alpha_bars))):", D["all_steps"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "for t in reversed(range(len(alpha_bars))):",
            "for t in reversed(range(len(alpha_bars) - 1)):", D["all_steps"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", _DDPM_LOOP,
            _DDPM_LOOP.replace("        noise = torch.randn(shape, generator=generator).to(device)\n", "")
            .replace("    kept = {}\n", "    kept = {}\n    noise = torch.randn(shape, generator=generator).to(device)\n"),
            D["fresh_noise"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "noise = torch.randn(shape, generator=generator).to(device)",
            "noise = torch.randn_like(x)", D["global_rng"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "        x = x_prev\n    return x, kept", "    return x_prev, kept",
            D["feed_back"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "kept[t] = (x.cpu(), x0_hat.cpu())",
            "kept[t] = (x_prev.cpu(), x0_hat.cpu())", D["kept"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "eps_hat = eps_fn(x, t_batch)", "eps_hat = eps_fn(x, t)",
            D["t_batch"]),
    Mistake("sample_ddpm_checks", "sample_ddpm", "t, dtype=torch.long, device=device)\n        eps_hat",
            "t, dtype=torch.float32, device=device)\n        eps_hat", D["t_batch"]),
    Mistake("sample_ddim_checks", "sample_ddim", _T_PREV, "t_prev = steps[i + 1] if i + 1 < len(steps) else 0",
            D["ddim_last_prev"]),
    Mistake("sample_ddim_checks", "sample_ddim", _T_PREV, "t_prev = t - 1", D["ddim_sequence"]),
    Mistake("sample_ddim_checks", "sample_ddim", "steps = ddim_timesteps(len(alpha_bars), num_steps)",
            "steps = list(reversed(range(len(alpha_bars))))", D["ddim_sequence"]),
    Mistake("sample_ddim_checks", "sample_ddim", "steps = ddim_timesteps(len(alpha_bars), num_steps)",
            "steps = ddim_timesteps(len(alpha_bars), num_steps)[::-1]", D["steps_downward"]),
    Mistake("sample_ddim_checks", "sample_ddim", "torch.randn(shape, generator=generator).to(device) if eta > 0 else None",
            "torch.randn(shape, generator=generator).to(device)", D["ddim_eta_zero_draws"]),
    Mistake("sample_ddim_checks", "sample_ddim", "t, t_prev, x, alpha_bars, eta, noise)",
            "t, t_prev, x, alpha_bars, noise=noise)", D["ddim_eta_passed"]),
    Mistake("sample_ddim_checks", "sample_ddim", "torch.randn(shape, generator=generator).to(device) if eta > 0 else None",
            "torch.randn_like(x) if eta > 0 else None", D["global_rng"]),
    Mistake("sample_ddim_checks", "sample_ddim", _DDIM_LOOP,
            "    noise = torch.randn(shape, generator=generator).to(device) if eta > 0 else None\n"
            + _DDIM_LOOP.replace("        noise = torch.randn(shape, generator=generator).to(device) if eta > 0 else None\n",
                                 ""), D["fresh_noise"]),
]

ALTERNATIVES += [
    Alternative("sample_ddpm_checks", "sample_ddpm", '''
def sample_ddpm(eps_fn, shape, alpha_bars, generator, keep=(), device="cpu"):
    """No draw at t = 0 (as diffusers' DDPMScheduler), noise passed by keyword, torch.no_grad as a context."""
    with torch.no_grad():
        T = alpha_bars.shape[0]
        x_t = torch.randn(shape, generator=generator).to(device)
        kept = {}
        for t in range(T - 1, -1, -1):
            eps_hat = eps_fn(x_t, torch.full((shape[0],), t, device=device, dtype=torch.int64))
            noise = torch.randn(shape, generator=generator).to(device) if t > 0 else None
            x_prev, x0_hat = ddpm_step(eps_hat, t, x_t, alpha_bars, noise=noise)
            if t in keep:
                kept[t] = (x_t.cpu(), x0_hat.cpu())
            x_t = x_prev
        return x_t, kept
'''),
    Alternative("sample_ddim_checks", "sample_ddim", '''
@torch.no_grad()
def sample_ddim(eps_fn, shape, alpha_bars, num_steps, generator, eta=0.0, device="cpu"):
    """Pairs (t, t_prev) with zip; no draw at the last step, where sigma = 0."""
    steps = ddim_timesteps(len(alpha_bars), num_steps)
    x = torch.randn(shape, generator=generator).to(device)
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        noise = torch.randn(shape, generator=generator).to(device) if eta > 0 and t_prev >= 0 else None
        eps_hat = eps_fn(x, torch.full((shape[0],), t, dtype=torch.long, device=device))
        x = ddim_step(eps_hat, t, t_prev, x, alpha_bars, eta=eta, noise=noise)[0]
    return x
'''),
]
