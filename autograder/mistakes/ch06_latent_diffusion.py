"""Chapter 06: realistic learner mistakes and correct alternatives."""
from autograder.mutants import Alternative, Mistake

_Z = "z = mean + torch.exp(0.5 * logvar) * noise"
_KL = "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(dim=1).mean()"
_SCORES = "scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, heads, N, L)"
_MASK = 'scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))'
_GUIDE = "eps_hat = eps_u + guidance_scale * (eps_c - eps_u)\n"

MISTAKES = [
    # autoencoder
    Mistake("autoencoder_checks", "KLAutoencoder", _Z, "z = mean + torch.exp(logvar) * noise",
            "z = mean + exp(logvar) * noise: the standard deviation is exp(logvar / 2)"),
    Mistake("autoencoder_checks", "KLAutoencoder", _Z, "z = mean + logvar * noise",
            "z = mean + logvar * noise: the standard deviation is exp(logvar / 2)"),
    Mistake("autoencoder_checks", "KLAutoencoder", _Z, "z = mean",
            "the noise was not used: z = mean + exp(logvar / 2) * noise"),
    Mistake("autoencoder_checks", "KLAutoencoder", "mean, logvar = self.encoder(x).chunk(2, dim=1)",
            "logvar, mean = self.encoder(x).chunk(2, dim=1)", "mean and log-variance channels swapped",
            expect="first latent_channels channels are the mean"),
    Mistake("autoencoder_checks", "KLAutoencoder", "return mean, logvar.clamp(-30.0, 20.0)", "return mean, logvar",
            "the log-variance is not clamped", expect="clamp the log-variance"),
    Mistake("autoencoder_checks", "autoencoder_loss", _KL,
            "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()",
            "the KL divergence must be summed over the latent elements (then averaged over the batch), not averaged"),
    Mistake("autoencoder_checks", "autoencoder_loss", _KL,
            "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum()",
            "the KL divergence must be averaged over the batch, not summed"),
    Mistake("autoencoder_checks", "autoencoder_loss", _KL,
            "kl = 0.5 * (mean ** 2 + logvar.exp() - 1 + logvar).flatten(1).sum(dim=1).mean()",
            "the sign of log-variance in the KL is wrong", diagnosed=False),
    Mistake("autoencoder_checks", "autoencoder_loss", "rec = F.mse_loss(x_hat, x)",
            "rec = F.mse_loss(x_hat, x, reduction=\"sum\")", "rec must be the mean over all elements, not the sum"),
    Mistake("autoencoder_checks", "autoencoder_loss", "return rec + kl_weight * kl, rec, kl",
            "return rec + kl, rec, kl", "kl_weight ignored", expect="kl_weight"),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return Z.float().std().item()", "the scale factor is 1 / std, not the std itself"),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return 1.0 / Z.float().var().item()", "the scale factor is 1 / std, not 1 / variance"),
    Mistake("autoencoder_checks", "latent_scale_factor", "return 1.0 / Z.float().std().item()",
            "return 1.0 / Z.float().pow(2).mean().sqrt().item()",
            "the standard deviation is around the mean: Z.std(), not the root mean square of Z"),
    # cross-attention
    Mistake("cross_attention_checks", "CrossAttention", _MASK, "pass",
            "the padding mask was ignored: set the scores of padding tokens to -inf before the softmax"),
    Mistake("cross_attention_checks", "CrossAttention", _MASK,
            'scores = scores.masked_fill(mask.bool()[:, None, None, :], float("-inf"))',
            "the mask is inverted: True marks real tokens, False padding"),
    Mistake("cross_attention_checks", "CrossAttention", _SCORES,
            "scores = q @ k.transpose(-1, -2)  # (B, heads, N, L)", "the scores must be divided by sqrt(head_dim)"),
    Mistake("cross_attention_checks", "CrossAttention", "attn = scores.softmax(dim=-1)",
            "attn = scores.softmax(dim=-2)",
            "the softmax must run over the tokens (the last dimension), not over the image positions",
            expect="softmax|NaN"),
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
            "the residual connection around the block is missing: return x + proj_out(h)"),
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
            "captions dropped with probability 1 - p_uncond", expect="fraction"),
    Mistake("training_loss_checks", "training_loss", "mask = torch.where(drop[:, None], null_mask.expand_as(mask), mask)",
            "mask = mask", "the mask is not replaced with the context", expect="mask together"),
    Mistake("training_loss_checks", "training_loss", "return F.mse_loss(unet(z_t, t, context, mask), eps)",
            "return F.mse_loss(unet(z_t, t, context, mask), z0)",
            "the U-Net must be trained to predict the noise eps, not the clean latents z0", expect="noise|not eps"),
    Mistake("training_loss_checks", "training_loss",
            "t = torch.randint(0, T, (B,), generator=generator, device=z0.device)",
            "t = torch.randint(1, T, (B,), generator=generator, device=z0.device)", "t = 0 is never drawn",
            expect="cover|uniform"),
    Mistake("training_loss_checks", "training_loss", "z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps",
            "z_t = ab * z0 + (1 - ab) * eps", "no square roots in z_t", expect="standard normal"),
    # generate
    Mistake("generate_checks", "generate", "return decode(latents / scale_factor)", "return decode(latents * scale_factor)",
            "the scale factor must divide the latents before decoding (latents / scale_factor), not multiply"),
    Mistake("generate_checks", "generate", "return decode(latents / scale_factor)", "return decode(latents)",
            "divide the latents by scale_factor before decoding"),
    Mistake("generate_checks", "generate", _GUIDE, "eps_hat = eps_c + guidance_scale * (eps_u - eps_c)\n",
            "the guidance formula is inverted: eps_u + g (eps_c - eps_u), eps_u from the empty caption"),
    Mistake("generate_checks", "generate", "latents = latents * scheduler.init_noise_sigma", "latents = latents",
            "the starting latents must be multiplied by scheduler.init_noise_sigma"),
    Mistake("generate_checks", "generate",
            "latent_input = scheduler.scale_model_input(torch.cat([latents, latents]), timestep)",
            "latent_input = torch.cat([latents, latents])", "scale_model_input not called",
            expect="scale_model_input"),
    Mistake("generate_checks", "generate", 'uncond, uncond_mask = encode_text([""] * B)',
            "uncond, uncond_mask = encode_text([p[: len(p) // 2] for p in prompts])",
            "caption dropout applied at sampling: half of each prompt used as the unconditional branch",
            expect="empty caption"),
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
