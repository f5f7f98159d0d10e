"""Chapter 06: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch06.DIAGNOSES`), shared with the visible and hidden checks."""
from autograder.mutants import Alternative, Mistake
from workbook import ch06

D = ch06.DIAGNOSES
# A softmax over the wrong axis meets the -inf of the mask first: the check that fails reports
# the NaN in its own words ("attn contains NaN or inf"), before any value can name the mistake.
NAN = "contains NaN or inf"

_Z = "z = mean + torch.exp(0.5 * logvar) * noise"
_KL = "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(dim=1).mean()"
_SCORES = "scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, heads, N, L)"
_MASK = 'scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))'
_GUIDE = "eps_hat = eps_u + guidance_scale * (eps_c - eps_u)\n"

MISTAKES = [
    # autoencoder
    Mistake("autoencoder_checks", "KLAutoencoder", _Z, "z = mean + torch.exp(logvar) * noise",
            D["z_exp_logvar"]),
    Mistake("autoencoder_checks", "KLAutoencoder", _Z, "z = mean + logvar * noise",
            D["z_logvar"]),
    Mistake("autoencoder_checks", "KLAutoencoder", _Z, "z = mean",
            D["noise_unused"]),
    Mistake("autoencoder_checks", "KLAutoencoder", "mean, logvar = self.encoder(x).chunk(2, dim=1)",
            "logvar, mean = self.encoder(x).chunk(2, dim=1)", D["mean_first"]),
    Mistake("autoencoder_checks", "KLAutoencoder", "return mean, logvar.clamp(-30.0, 20.0)", "return mean, logvar",
            D["clamp"]),
    Mistake("autoencoder_checks", "autoencoder_loss", _KL,
            "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()",
            D["kl_mean_elements"]),
    Mistake("autoencoder_checks", "autoencoder_loss", _KL,
            "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum()",
            D["kl_sum_batch"]),
    Mistake("autoencoder_checks", "autoencoder_loss", _KL,
            "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 + logvar).flatten(1).sum(dim=1).mean()",
            "the sign of log-variance in the KL is wrong", diagnosed=False),
    Mistake("autoencoder_checks", "autoencoder_loss", "rec = F.mse_loss(x_hat, x)",
            "rec = F.mse_loss(x_hat, x, reduction=\"sum\")", D["rec_sum"]),
    Mistake("autoencoder_checks", "autoencoder_loss", "return rec + kl_weight * kl, rec, kl",
            "return rec + kl_weight * kl, rec.item(), kl.item()", D["loss_parts_tensors"]),
    Mistake("autoencoder_checks", "autoencoder_loss", "return rec + kl_weight * kl, rec, kl",
            "return rec + kl, rec, kl", D["loss_formula"]),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return Z.float().std().item()", D["scale_is_std"]),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return 1.0 / Z.float().var().item()", D["scale_inverse_variance"]),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return 1.0 / Z.float().pow(2).mean().sqrt().item()",
            D["std_vs_rms"]),
    # cross-attention
    Mistake("cross_attention_checks", "CrossAttention", _MASK, "pass",
            D["mask_ignored"]),
    Mistake("cross_attention_checks", "CrossAttention", _MASK,
            'scores = scores.masked_fill(mask.bool()[:, None, None, :], float("-inf"))',
            D["mask_inverted"]),
    Mistake("cross_attention_checks", "CrossAttention", _SCORES,
            "scores = q @ k.transpose(-1, -2)  # (B, heads, N, L)", D["no_sqrt_head_dim"]),
    Mistake("cross_attention_checks", "CrossAttention", "attn = scores.softmax(dim=-1)",
            "attn = scores.softmax(dim=-2)",
            D["softmax_axis"], expect=NAN),
    Mistake("cross_attention_checks", "CrossAttention",
            "k = self.to_k(context).view(B, L, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, L, head_dim)",
            "k = self.to_k(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, L, head_dim)",
            "keys computed from the image features instead of the text", diagnosed=False),
    Mistake("cross_attention_checks", "CrossAttention",
            "v = self.to_v(context).view(B, L, self.heads, self.head_dim).transpose(1, 2)",
            "v = self.to_v(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)",
            "values computed from the image features instead of the text", diagnosed=False),
    Mistake("cross_attention_checks", "CrossAttention",
            "out = (attn @ v).transpose(1, 2).reshape(B, N, self.heads * self.head_dim)",
            "out = (attn @ v).reshape(B, N, self.heads * self.head_dim)",
            "heads merged without the transpose", diagnosed=False),
    Mistake("cross_attention_checks", "CrossAttention", _SCORES,
            "scores = q @ k.transpose(-1, -2) / math.sqrt(self.heads * self.head_dim)  # (B, heads, N, L)",
            "scaled by sqrt(heads * head_dim)", diagnosed=False),
    # block
    Mistake("cross_attn_block_checks", "CrossAttnBlock",
            "return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)",
            "return self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)",
            D["no_block_residual"]),
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "a, self.last_attn = self.attn(self.norm_attn(h), context, mask)",
            "a, self.last_attn = self.attn(self.norm_attn(h), context)", "the mask is not passed to the attention",
            diagnosed=False),
    Mistake("cross_attn_block_checks", "CrossAttnBlock",
            "return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)",
            "return x + self.proj_out(h).reshape(B, C, H, W)",
            "tokens reshaped back without the transpose", diagnosed=False),
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "h = h + self.ff(self.norm_ff(h))", "h = self.ff(self.norm_ff(h))",
            "no residual around the feed-forward layer", diagnosed=False),
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "a, self.last_attn = self.attn(self.norm_attn(h), context, mask)",
            "a, self.last_attn = self.attn(h, context, mask)", "norm_attn skipped", diagnosed=False),
    # training loss
    Mistake("training_loss_checks", "training_loss", "drop = torch.rand(B, generator=generator, device=z0.device) < p_uncond",
            "drop = torch.rand(B, generator=generator, device=z0.device) >= p_uncond",
            D["drop_below"]),
    Mistake("training_loss_checks", "training_loss", "mask = torch.where(drop[:, None], null_mask.expand_as(mask), mask)",
            "mask = mask", D["drop_rows"]),
    Mistake("training_loss_checks", "training_loss", "return F.mse_loss(unet(z_t, t, context, mask), eps)",
            "return F.mse_loss(unet(z_t, t, context, mask), z0)",
            D["predicts_z0"]),
    Mistake("training_loss_checks", "training_loss",
            "t = torch.randint(0, T, (B,), generator=generator, device=z0.device)",
            "t = torch.randint(1, T, (B,), generator=generator, device=z0.device)", D["t_uniform"]),
    Mistake("training_loss_checks", "training_loss", "z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps",
            "z_t = ab * z0 + (1 - ab) * eps", D["implied_noise"]),
    # generate
    Mistake("generate_checks", "generate", "return decode(latents / scale_factor)", "return decode(latents * scale_factor)",
            D["scale_multiplied"]),
    Mistake("generate_checks", "generate", "return decode(latents / scale_factor)", "return decode(latents)",
            D["scale_not_divided"]),
    Mistake("generate_checks", "generate", _GUIDE, "eps_hat = eps_c + guidance_scale * (eps_u - eps_c)\n",
            D["guidance_inverted"]),
    Mistake("generate_checks", "generate", "latents = latents * scheduler.init_noise_sigma", "latents = latents",
            D["no_init_noise_sigma"]),
    Mistake("generate_checks", "generate",
            "latent_input = scheduler.scale_model_input(torch.cat([latents, latents]), timestep)",
            "latent_input = torch.cat([latents, latents])", D["scale_model_input"]),
    Mistake("generate_checks", "generate", 'uncond, uncond_mask = encode_text([""] * B)',
            "uncond, uncond_mask = encode_text([p[: len(p) // 2] for p in prompts])",
            D["empty_caption"]),
]

_DROP = "drop = torch.rand(B, generator=generator, device=z0.device) < p_uncond"
MISTAKES += [
    # autoencoder
    Mistake("autoencoder_checks", "autoencoder_loss", "kl = 0.5 * (mean", "kl = (mean", D["kl_no_half"]),
    Mistake("autoencoder_checks", "autoencoder_loss", "logvar.exp() - 1", "(2 * logvar).exp() - 1", D["kl_var_as_std"]),
    Mistake("autoencoder_checks", "autoencoder_loss", "rec = F.mse_loss(x_hat, x)",
            "rec = ((x_hat - x) ** 2).flatten(1).sum(1).mean()", D["rec_per_image"]),
    Mistake("autoencoder_checks", "autoencoder_loss", "return rec + kl_weight * kl, rec, kl",
            "return kl_weight * rec + kl, rec, kl", D["loss_formula"]),
    Mistake("autoencoder_checks", "KLAutoencoder", "logvar.clamp(-30.0, 20.0)", "logvar.clamp(-20.0, 30.0)",
            D["clamp"]),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return 1.0 / Z[0].float().std().item()", D["first_latent_spread"]),
    # cross-attention
    Mistake("cross_attention_checks", "CrossAttention",
            "q = self.to_q(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)",
            "q = self.to_q(x).view(B, self.heads, N, self.head_dim)", "queries split into heads without the transpose",
            diagnosed=False),
    Mistake("cross_attention_checks", "CrossAttention", "return self.to_out(out), attn", "return out, attn",
            "to_out left out", diagnosed=False),
    Mistake("cross_attention_checks", "CrossAttention", "if mask is not None:", "if mask is not None and mask.all():",
            D["mask_ignored"]),
    # block
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "nn.GroupNorm(groups, C, eps=1e-6)",
            "nn.GroupNorm(4, C, eps=1e-6)", "groups hard-coded", diagnosed=False),
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "a, self.last_attn = self.attn(self.norm_attn(h), context, mask)",
            "a, _ = self.attn(self.norm_attn(h), context, mask)", "the attention maps not kept in last_attn",
            diagnosed=False),
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "h = h + self.ff(self.norm_ff(h))", "h = h + self.ff(h)",
            "norm_ff skipped", diagnosed=False),
    # training loss
    Mistake("training_loss_checks", "training_loss",
            "mask = torch.where(drop[:, None], null_mask.expand_as(mask), mask)", "mask[drop] = null_mask[0]",
            D["inputs_in_place"]),
    Mistake("training_loss_checks", "training_loss",
            "context = torch.where(drop[:, None, None], null_context.expand_as(context), context)",
            "context[drop] = null_context[0]", D["inputs_in_place"]),
    Mistake("training_loss_checks", "training_loss",
            "eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)",
            "eps = torch.randn_like(z0)", D["global_rng"]),
    Mistake("training_loss_checks", "training_loss", _DROP,
            "drop = torch.rand(B, device=z0.device) < p_uncond", D["global_rng"]),
    Mistake("training_loss_checks", "training_loss", _DROP,
            "drop = (torch.rand(1, generator=generator, device=z0.device) < p_uncond).expand(B)",
            D["drop_below"]),
    Mistake("training_loss_checks", "training_loss", "return F.mse_loss(unet(z_t, t, context, mask), eps)",
            "return ((unet(z_t, t, context, mask) - eps) ** 2).flatten(1).sum(1).mean()",
            D["loss_per_example"]),
    # generate
    Mistake("generate_checks", "generate", "torch.randn((B, *latent_shape), generator=generator)",
            "torch.randn((B, *latent_shape))", D["start_latents"]),
    Mistake("generate_checks", "generate", "eps_u, eps_c = unet(", "eps_c, eps_u = unet(",
            D["guidance_inverted"]),
    # reviewers' escapes
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return 1.0 / Z.float().std(dim=(0, 2, 3)).mean().item()", D["scale_per_channel"]),
    Mistake("autoencoder_checks", "KLAutoencoder", "mean, logvar = self.encode(x)\n",
            "mean, logvar = self.encoder(x).chunk(2, dim=1)\n", D["forward_clamp"]),
    Mistake("cross_attn_block_checks", "CrossAttnBlock", "nn.GroupNorm(groups, C, eps=1e-6)",
            "nn.GroupNorm(groups, C)", D["groupnorm_eps"]),
    Mistake("generate_checks", "generate", "dtype=torch.long, device=context.device)",
            "dtype=torch.float32, device=context.device)", D["unet_t"],
            expect=r"t given to the U-Net has|U-Net must be given t as a"),
    Mistake("generate_checks", "generate", "unet(latent_input, t_batch, context, mask)",
            "unet(latent_input, timestep, context, mask)", D["unet_t"],
            expect=r"t given to the U-Net has|U-Net must be given t as a"),
    Mistake("generate_checks", "generate", 'uncond, uncond_mask = encode_text([""] * B)',
            'uncond, uncond_mask = encode_text([""])', D["empty_caption"],
            expect=r"empty caption must be encoded once per prompt"),
    Mistake("training_loss_checks", "training_loss", "ab = alpha_bars.to(device=z0.device, dtype=z0.dtype)[t]",
            "ab = alpha_bars.to(device=z0.device)[t]", D["loss_dtype"]),
]

ALTERNATIVES = [
    Alternative("autoencoder_checks", "autoencoder_loss", '''
def autoencoder_loss(x, x_hat, mean, logvar, kl_weight):
    """torch.distributions for the KL."""
    from torch.distributions import Normal, kl_divergence
    rec = ((x_hat - x) ** 2).mean()
    q = Normal(mean, torch.exp(0.5 * logvar))
    kl = kl_divergence(q, Normal(torch.zeros_like(mean), torch.ones_like(mean))).sum(dim=(1, 2, 3)).mean()
    return rec + kl_weight * kl, rec, kl
'''),
    Alternative("autoencoder_checks", "latent_scale_factor", '''
def latent_scale_factor(Z):
    """Population (biased) standard deviation in float64."""
    Z = Z.double()
    return float(1.0 / ((Z - Z.mean()) ** 2).mean().sqrt())
'''),
    Alternative("cross_attention_checks", "CrossAttention", '''
class CrossAttention(nn.Module):
    """With F.scaled_dot_product_attention for the output and einsum for the maps."""

    def __init__(self, query_dim, context_dim, heads=4, head_dim=16):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(query_dim, heads * head_dim, bias=False)
        self.to_k = nn.Linear(context_dim, heads * head_dim, bias=False)
        self.to_v = nn.Linear(context_dim, heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, query_dim)

    def forward(self, x, context, mask=None):
        split = lambda u: u.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        keep = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        scores = torch.einsum("bhnd,bhld->bhnl", q, k) * self.head_dim ** -0.5
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        return self.to_out(out.transpose(1, 2).flatten(2)), scores.softmax(-1)
'''),
    Alternative("cross_attn_block_checks", "CrossAttnBlock", '''
class CrossAttnBlock(nn.Module):
    """With einops-free permute/view and a functional GELU in a Sequential."""

    def __init__(self, channels, context_dim, heads=4, groups=8):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.norm_attn = nn.LayerNorm(channels)
        self.attn = CrossAttention(channels, context_dim, heads, channels // heads)
        self.norm_ff = nn.LayerNorm(channels)
        self.ff = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))
        self.proj_out = nn.Linear(channels, channels)
        self.last_attn = None

    def forward(self, x, context, mask=None):
        B, C, H, W = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C)
        h = self.proj_in(h)
        out, attn = self.attn(self.norm_attn(h), context, mask)
        self.last_attn = attn
        h = out + h
        h = self.ff(self.norm_ff(h)) + h
        h = self.proj_out(h).reshape(B, H, W, C).permute(0, 3, 1, 2)
        return h + x
'''),
    Alternative("training_loss_checks", "training_loss", '''
def training_loss(unet, z0, context, mask, null_context, null_mask, alpha_bars, p_uncond, generator=None):
    """Another draw order (t, eps, then the dropout) and boolean indexing on copies."""
    B, T = z0.shape[0], alpha_bars.shape[0]
    t = torch.randint(0, T, (B,), generator=generator, device=z0.device)
    eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    drop = torch.rand(B, generator=generator, device=z0.device) < p_uncond
    context, mask = context.clone(), mask.clone()
    context[drop] = null_context[0]
    mask[drop] = null_mask[0]
    a = alpha_bars.to(z0)[t][:, None, None, None]
    z_t = torch.sqrt(a) * z0 + torch.sqrt(1 - a) * eps
    return ((unet(z_t, t, context, mask) - eps) ** 2).mean()
'''),
    Alternative("generate_checks", "generate", '''
@torch.no_grad()
def generate(prompts, encode_text, unet, decode, scheduler, *, guidance_scale, num_steps, latent_shape,
             scale_factor, generator=None):
    """Conditional first in the doubled batch, the guidance as a lerp."""
    B = len(prompts)
    cond, cond_mask = encode_text(list(prompts))
    uncond, uncond_mask = encode_text([""] * B)
    context, mask = torch.cat([cond, uncond]), torch.cat([cond_mask, uncond_mask])
    scheduler.set_timesteps(num_steps)
    latents = scheduler.init_noise_sigma * torch.randn((B, *latent_shape), generator=generator).to(context.device)
    for t in scheduler.timesteps:
        doubled = scheduler.scale_model_input(latents.repeat(2, 1, 1, 1), t)
        eps = unet(doubled, t.expand(2 * B).long().to(context.device), context, mask)
        eps_c, eps_u = eps[:B], eps[B:]
        latents = scheduler.step(torch.lerp(eps_u, eps_c, guidance_scale), t, latents).prev_sample
    return decode(latents / scale_factor)
'''),
]

MISTAKES += [
    Mistake("quiz_latent", "answer_qkv", '"A"', '"B"', "queries from the text", diagnosed=False),
    Mistake("quiz_latent_facts", "answer_latent_facts", '{"A", "C", "D"}', '{"A", "B", "C", "D"}',
            "caption dropout at sampling time taken as true", diagnosed=False),
]

ALTERNATIVES += [
    Alternative("quiz_latent", "answer_why_latent", """
answer_why_latent = "c"
""", "lower case"),
    Alternative("quiz_latent_facts", "answer_latent_facts", """
answer_latent_facts = ["d", "C", "a"]
""", "a list, mixed case"),
    Alternative("autoencoder_checks", "autoencoder_loss", '''
def autoencoder_loss(x, x_hat, mean, logvar, kl_weight):
    """Sums divided by counts; the KL summed over dims 1, 2, 3 by torch.sum."""
    rec = torch.sum((x_hat - x) ** 2) / x.numel()
    kl = torch.sum(0.5 * (mean.pow(2) + torch.exp(logvar) - 1.0 - logvar), dim=(1, 2, 3)).mean()
    return rec + kl_weight * kl, rec, kl
'''),
    Alternative("autoencoder_checks", "KLAutoencoder", '''
class KLAutoencoder(nn.Module):
    """The stated layers; std = sqrt(exp(logvar)), clamp by torch.clamp."""

    def __init__(self, in_channels=3, ch=32, latent_channels=4):
        super().__init__()
        self.latent_channels = latent_channels
        c = latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, ch, 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * ch, 4 * ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(4 * ch, 2 * c, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(c, 4 * ch, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(4 * ch, 2 * ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(ch, in_channels, 3, padding=1))

    def encode(self, x):
        h = self.encoder(x)
        c = self.latent_channels
        return h[:, :c], torch.clamp(h[:, c:], min=-30.0, max=20.0)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, noise):
        mean, logvar = self.encode(x)
        return self.decode(mean + torch.sqrt(torch.exp(logvar)) * noise), mean, logvar
'''),
    Alternative("cross_attention_checks", "CrossAttention", '''
class CrossAttention(nn.Module):
    """einsum throughout; padding masked with the dtype's lowest value."""

    def __init__(self, query_dim, context_dim, heads=4, head_dim=16):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(query_dim, heads * head_dim, bias=False)
        self.to_k = nn.Linear(context_dim, heads * head_dim, bias=False)
        self.to_v = nn.Linear(context_dim, heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, query_dim)

    def forward(self, x, context, mask=None):
        B, N, _ = x.shape
        L = context.shape[1]
        q = self.to_q(x).reshape(B, N, self.heads, self.head_dim)
        k = self.to_k(context).reshape(B, L, self.heads, self.head_dim)
        v = self.to_v(context).reshape(B, L, self.heads, self.head_dim)
        scores = torch.einsum("bnhd,blhd->bhnl", q, k) / self.head_dim ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        out = torch.einsum("bhnl,blhd->bnhd", attn, v).reshape(B, N, -1)
        return self.to_out(out), attn
'''),
    Alternative("training_loss_checks", "training_loss", '''
def training_loss(unet, z0, context, mask, null_context, null_mask, alpha_bars, p_uncond, generator=None):
    """The U-Net called with keywords; the dropout through masks of floats."""
    B, T = z0.shape[0], len(alpha_bars)
    keep = (torch.rand(B, generator=generator, device=z0.device) >= p_uncond)
    k3 = keep.to(context.dtype)[:, None, None]
    context = k3 * context + (1 - k3) * null_context
    mask = torch.where(keep[:, None], mask, null_mask)
    t = torch.randint(0, T, (B,), generator=generator, device=z0.device)
    eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    a = alpha_bars.to(z0)[t].view(B, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    return F.mse_loss(unet(z_t, t, context=context, mask=mask), eps)
'''),
]

_ADD = "latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(B))"
MISTAKES += [
    Mistake("img2img_checks", "img2img", "keep = min(int(num_steps * strength), num_steps)",
            "keep = min(int(num_steps * (1 - strength)), num_steps)", D["i2i_strength_inverted"]),
    Mistake("img2img_checks", "img2img", "timesteps = scheduler.timesteps[num_steps - keep:]\n",
            "timesteps = scheduler.timesteps[num_steps - keep - 1:]\n", D["i2i_kept_steps"]),
    Mistake("img2img_checks", "img2img", _ADD,
            "latents = scheduler.add_noise(image_latents, noise, scheduler.timesteps[:1].repeat(B))",
            D["i2i_noise_timestep"]),
    Mistake("img2img_checks", "img2img", _ADD, "latents = noise * scheduler.init_noise_sigma", D["i2i_add_noise"]),
    Mistake("img2img_checks", "img2img", _ADD, _ADD + " * scheduler.init_noise_sigma", D["i2i_sigma_twice"]),
    Mistake("img2img_checks", "img2img", "if keep == num_steps:", "if keep > num_steps:", D["i2i_full_strength"]),
    # the rounding rule's boundaries: int(), not round() or ceil()
    Mistake("img2img_checks", "img2img", "keep = min(int(num_steps * strength), num_steps)",
            "keep = min(round(num_steps * strength), num_steps)", D["i2i_kept_steps"]),
    Mistake("img2img_checks", "img2img", "keep = min(int(num_steps * strength), num_steps)",
            "keep = min(math.ceil(num_steps * strength), num_steps)", D["i2i_kept_steps"]),
    Mistake("img2img_checks", "img2img", "latents = noise * scheduler.init_noise_sigma\n", "latents = noise\n",
            D["no_init_noise_sigma"]),
    Mistake("img2img_checks", "img2img", "torch.randn(image_latents.shape, generator=generator).to(",
            "torch.randn(image_latents.shape).to(", D["i2i_noise_draw"]),
    Mistake("img2img_checks", "img2img", _GUIDE, "eps_hat = eps_c\n", D["both_halves"]),
]

ALTERNATIVES += [
    Alternative("img2img_checks", "img2img", '''
@torch.no_grad()
def img2img(image_latents, prompts, encode_text, unet, decode, scheduler, *, strength, guidance_scale, num_steps,
            scale_factor, generator=None):
    """diffusers' img2img bookkeeping (init_timestep, t_start, the scheduler's order), conditional first."""
    B = len(prompts)
    cond, cond_mask = encode_text(list(prompts))
    uncond, uncond_mask = encode_text([""] * B)
    context, mask = torch.cat([cond, uncond]), torch.cat([cond_mask, uncond_mask])
    scheduler.set_timesteps(num_steps)
    init_timestep = min(int(num_steps * strength), num_steps)
    t_start = max(num_steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * getattr(scheduler, "order", 1):]
    noise = torch.randn(image_latents.shape, generator=generator).to(image_latents.device, image_latents.dtype)
    if init_timestep == 0:
        return decode(image_latents / scale_factor)
    if init_timestep == num_steps:
        latents = scheduler.init_noise_sigma * noise
    else:
        latents = scheduler.add_noise(image_latents, noise, timesteps[0].expand(B))
    for t in timesteps:
        doubled = scheduler.scale_model_input(latents.repeat(2, 1, 1, 1), t)
        eps = unet(doubled, t.expand(2 * B).long().to(latents.device), context, mask)
        eps_c, eps_u = eps[:B], eps[B:]
        latents = scheduler.step(torch.lerp(eps_u, eps_c, guidance_scale), t, latents).prev_sample
    return decode(latents / scale_factor)
'''),
]

# the text-conditioned U-Net
_UP = """            h = attn(res(torch.cat([h, skips.pop()], dim=1), emb), context, mask)
            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
"""
_DOWN_LAST = """            if i < len(chans) - 1:
                self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
"""
MISTAKES += [
    # a batch of one: t.squeeze() leaves a 0-d t, which diffusers' time projection refuses
    Mistake("text_unet_checks", "TextUNet", "emb = self.time_embedding(self.time_proj(t).to(z.dtype))",
            "emb = self.time_embedding(self.time_proj(t.squeeze()).to(z.dtype))",
            D["t_batch_of_one"]),
    Mistake("text_unet_checks", "TextUNet", "torch.cat([h, skips.pop()], dim=1)", "torch.cat([skips.pop(), h], dim=1)",
            D["unet_skip_order"]),
    Mistake("text_unet_checks", "TextUNet",
            "h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb), context, mask), emb)",
            "h = self.mid_res2(self.mid_res1(h, emb), emb)", D["unet_mid_attn"]),
    # ResnetBlock2D raises without its temb: the check names the block that got none
    Mistake("text_unet_checks", "TextUNet", "h = attn(res(h, emb), context, mask)", "h = attn(res(h), context, mask)",
            D["unet_emb"]),
    # upsampled before the level's residual block: the concatenation with the skip fails
    Mistake("text_unet_checks", "TextUNet", _UP, """            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = attn(res(torch.cat([h, skips.pop()], dim=1), emb), context, mask)
""", D["unet_upsample_order"]),
    # upsampled between the residual block and the text block: shapes fit, values do not
    Mistake("text_unet_checks", "TextUNet", _UP, """            h = res(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = attn(h, context, mask)
""", D["unet_upsample_order"]),
    Mistake("text_unet_checks", "TextUNet", "h = attn(res(torch.cat([h, skips.pop()], dim=1), emb), context, mask)",
            "h = attn(res(torch.cat([h, skips.pop()], dim=1), emb), context)", D["unet_mask"]),
    Mistake("text_unet_checks", "TextUNet", _DOWN_LAST,
            "            self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))\n",
            D["unet_last_downsample"]),
    Mistake("text_unet_checks", "TextUNet", "return self.conv_out(F.silu(self.norm_out(h)))",
            "return self.conv_out(self.norm_out(h))", D["unet_computation"]),
    # the time features in float32 whatever z's dtype: right until the model runs in float64
    Mistake("text_unet_checks", "TextUNet", "self.time_proj(t).to(z.dtype)", "self.time_proj(t).float()",
            D["unet_dtype"]),
    Mistake("text_unet_checks", "TextUNet", "self.time_proj(t).to(z.dtype)", "self.time_proj(t)", D["unet_dtype"]),
]

ALTERNATIVES += [
    Alternative("text_unet_checks", "TextUNet", '''
class TextUNet(nn.Module):
    """Upsampling at the start of the next up level, inside upsamples (nn.Upsample, then the
    conv); skips indexed, not popped; keyword arguments."""

    def __init__(self, block, in_channels=4, ch=64, mults=(1, 2), context_dim=64, heads=4, groups=8):
        super().__init__()
        e, chans = 4 * ch, [ch * m for m in mults]
        L = len(chans)
        self.time_proj = ch06.time_proj(ch)
        self.time_embedding = ch06.time_embedding(ch, e)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        ins = [ch] + chans[:-1]
        self.down_res = nn.ModuleList([ch06.res_block(ins[i], chans[i], e, groups) for i in range(L)])
        self.down_attn = nn.ModuleList([block(c, context_dim, heads, groups) for c in chans])
        self.downsamples = nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1) for c in chans[:-1]])
        c = chans[-1]
        self.mid_res1 = ch06.res_block(c, c, e, groups)
        self.mid_attn = block(c, context_dim, heads, groups)
        self.mid_res2 = ch06.res_block(c, c, e, groups)
        rev = chans[::-1]
        below = [rev[0]] + rev[:-1]
        self.up_res = nn.ModuleList([ch06.res_block(below[j] + rev[j], rev[j], e, groups) for j in range(L)])
        self.up_attn = nn.ModuleList([block(c, context_dim, heads, groups) for c in rev])
        self.upsamples = nn.ModuleList([nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                      nn.Conv2d(c, c, 3, padding=1)) for c in rev[:-1]])
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, z, t, context, mask=None):
        emb = self.time_embedding(self.time_proj(t).to(z.dtype))
        h = self.conv_in(z)
        skips = []
        for i in range(len(self.down_res)):
            h = self.down_attn[i](self.down_res[i](h, temb=emb), context=context, mask=mask)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        h = self.mid_res1(h, emb)
        h = self.mid_attn(h, context, mask)
        h = self.mid_res2(h, emb)
        for j in range(len(self.up_res)):
            if j > 0:
                h = self.upsamples[j - 1](h)
            h = self.up_res[j](torch.cat((h, skips[-1 - j]), 1), emb)
            h = self.up_attn[j](h, context, mask=mask)
        return self.conv_out(F.silu(self.norm_out(h)))
'''),
]
