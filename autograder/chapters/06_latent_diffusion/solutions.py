"""Chapter 06 reference solutions: text-to-image latent diffusion (a small Stable Diffusion).

Images x live in [-1, 1]; latents z = autoencoder mean (or a sample) times the latent
scale factor; text comes in as per-token features `context` (B, L, D) with a padding
`mask` (B, L), True where a token is real.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbook import ch06


class KLAutoencoder(nn.Module):
    """A KL-regularised autoencoder from images (B, C, H, W) to latents (B, latent_channels, H/4, W/4).

    encoder: Conv2d(C, ch, 3, padding=1), SiLU, Conv2d(ch, 2ch, 4, stride=2, padding=1), SiLU,
             Conv2d(2ch, 2ch, 3, padding=1), SiLU, Conv2d(2ch, 4ch, 4, stride=2, padding=1), SiLU,
             Conv2d(4ch, 2 * latent_channels, 3, padding=1)       -> mean and log-variance
    decoder: Conv2d(latent_channels, 4ch, 3, padding=1), SiLU,
             ConvTranspose2d(4ch, 2ch, 4, stride=2, padding=1), SiLU, Conv2d(2ch, 2ch, 3, padding=1), SiLU,
             ConvTranspose2d(2ch, ch, 4, stride=2, padding=1), SiLU, Conv2d(ch, C, 3, padding=1)
    Both are nn.Sequential in that order (attributes `encoder`, `decoder`).
    """

    def __init__(self, in_channels=3, ch=32, latent_channels=4):
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, ch, 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * ch, 4 * ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(4 * ch, 2 * latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 4 * ch, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(4 * ch, 2 * ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(ch, in_channels, 3, padding=1))

    def encode(self, x):
        """x (B, C, H, W) -> (mean, logvar), each (B, latent_channels, H/4, W/4): the first
        latent_channels output channels of the encoder are the mean, the others the
        log-variance, clamped to [-30, 20] (as diffusers does)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        """z (B, latent_channels, h, w) -> x_hat (B, C, 4h, 4w)."""
        return self.decoder(z)

    def forward(self, x, noise):
        """Encode, sample z = mean + exp(logvar / 2) * noise (noise shaped like mean), decode.
        Returns (x_hat, mean, logvar)."""
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mean, logvar


def autoencoder_loss(x, x_hat, mean, logvar, kl_weight):
    """The KL-regularised autoencoder's loss.

        rec  = mean over all elements of (x_hat - x) ** 2
        kl   = mean over the batch of the KL divergence KL(N(mean, exp(logvar)) || N(0, I)),
               summed over the latent elements: 0.5 * sum(mean**2 + exp(logvar) - 1 - logvar)
        loss = rec + kl_weight * kl

    Args:
        x, x_hat: (B, C, H, W); mean, logvar: (B, c, h, w); kl_weight: float.

    Returns:
        (loss, rec, kl): three scalar tensors.
    """
    rec = F.mse_loss(x_hat, x)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(dim=1).mean()
    return rec + kl_weight * kl, rec, kl


def latent_scale_factor(Z):
    """The factor that gives latents unit variance (how Stable Diffusion's 0.18215 was found):
    1 / (standard deviation of all elements of Z, all channels pooled).

    Args:
        Z: (N, c, h, w) latents of many training images.

    Returns:
        a Python float.
    """
    return 1.0 / Z.float().std().item()


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from the image features x, keys and values from the
    text features `context`, padding tokens masked out.

    to_q = Linear(query_dim, heads * head_dim, bias=False), to_k and to_v =
    Linear(context_dim, heads * head_dim, bias=False), to_out = Linear(heads * head_dim, query_dim).
    Per head: attn = softmax(q k^T / sqrt(head_dim)) over the L tokens, with the scores of
    padding tokens (mask False) set to -inf first; out = attn v. The heads are concatenated
    (head h takes features h * head_dim ... (h + 1) * head_dim - 1) and projected by to_out.
    """

    def __init__(self, query_dim, context_dim, heads=4, head_dim=16):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x, context, mask=None):
        """x (B, N, query_dim), context (B, L, context_dim), mask (B, L) bool or None (all real)
        -> (out (B, N, query_dim), attn (B, heads, N, L), rows summing to 1)."""
        B, N, _ = x.shape
        L = context.shape[1]
        q = self.to_q(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, head_dim)
        k = self.to_k(context).view(B, L, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, L, head_dim)
        v = self.to_v(context).view(B, L, self.heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, heads, N, L)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        attn = scores.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, N, self.heads * self.head_dim)
        return self.to_out(out), attn


class CrossAttnBlock(nn.Module):
    """A text-conditioned block for the U-Net (diffusers' Transformer2DModel without
    self-attention): the feature map attends to the text, then a feed-forward layer.

        h = proj_in(norm(x)) as tokens            (B, H*W, C), one token per pixel
        h = h + attn(norm_attn(h), context, mask)   (the attention maps kept in self.last_attn)
        h = h + ff(norm_ff(h))
        out = x + proj_out(h) back to (B, C, H, W)

    norm = GroupNorm(groups, C, eps=1e-6) (C divisible by groups), proj_in = Linear(C, C), norm_attn = LayerNorm(C),
    attn = CrossAttention(C, context_dim, heads, C // heads), norm_ff = LayerNorm(C),
    ff = Sequential(Linear(C, 4C), GELU(), Linear(4C, C)), proj_out = Linear(C, C).
    """

    def __init__(self, channels, context_dim, heads=4, groups=8):
        super().__init__()
        C = channels
        self.norm = nn.GroupNorm(groups, C, eps=1e-6)
        self.proj_in = nn.Linear(C, C)
        self.norm_attn = nn.LayerNorm(C)
        self.attn = CrossAttention(C, context_dim, heads, C // heads)
        self.norm_ff = nn.LayerNorm(C)
        self.ff = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))
        self.proj_out = nn.Linear(C, C)
        self.last_attn = None

    def forward(self, x, context, mask=None):
        """x (B, C, H, W), context (B, L, context_dim), mask (B, L) bool or None -> (B, C, H, W).
        Sets self.last_attn to the attention maps (B, heads, H*W, L)."""
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # (B, H*W, C)
        a, self.last_attn = self.attn(self.norm_attn(h), context, mask)
        h = h + a
        h = h + self.ff(self.norm_ff(h))
        return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)


class TextUNet(nn.Module):
    """The latent noise predictor eps_theta(z_t, t, context, mask): a small Stable Diffusion
    U-Net, chapter 05's U-Net with a text block after every residual block.

    Levels i = 0..L-1 (L = len(mults)), channels c_i = ch * mults[i], emb_dim = 4 ch;
    res(a, b) = ch06.res_block(a, b, emb_dim, groups), called res(h, emb);
    attn(c) = block(c, context_dim, heads, groups), called attn(h, context, mask).
    The modules, registered in this order (the reference's weights load by parameter order):
      time_proj = ch06.time_proj(ch)                t (B,) -> (B, ch), no parameters
      time_embedding = ch06.time_embedding(ch, emb_dim)
      conv_in = Conv2d(in_channels, ch, 3, padding=1)
      down_res[i] = res(c_{i-1}, c_i) (c_{-1} = ch); down_attn[i] = attn(c_i);
      downsamples[i] = Conv2d(c_i, c_i, 3, stride=2, padding=1) for i < L-1 only
      mid_res1 = res(c_{L-1}, c_{L-1}), mid_attn = attn(c_{L-1}), mid_res2 = res(c_{L-1}, c_{L-1})
      up_res[j] = res(c_prev + c_i, c_i); up_attn[j] = attn(c_i), for j = 0..L-1 at level i = L-1-j
                 (c_prev: the channels of h there, c_{L-1} at j = 0, else c_{i+1});
      upsamples[j] = Conv2d(c_i, c_i, 3, padding=1) for j < L-1 only
      norm_out = GroupNorm(groups, ch), conv_out = Conv2d(ch, in_channels, 3, padding=1)
    down_res, down_attn, downsamples, up_res, up_attn and upsamples are nn.ModuleLists, each
    created before it is filled (so all of down_res comes before all of down_attn).
    forward(z, t, context, mask):
      emb = time_embedding(time_proj(t) in z's dtype); h = conv_in(z)
      down, level i: h = down_attn[i](down_res[i](h, emb), context, mask); h is skip i;
                     then, except at the last level, h = downsamples[i](h) (H and W halved)
      middle:        h = mid_res2(mid_attn(mid_res1(h, emb), context, mask), emb)
      up, j = 0..L-1 (level i = L-1-j): h = up_attn[j](up_res[j](torch.cat([h, skip i], dim=1), emb),
                     context, mask); then, except at level 0, h = upsamples[j](F.interpolate(h,
                     scale_factor=2.0, mode="nearest"))
      eps_hat = conv_out(SiLU(norm_out(h)))
    Shapes: z (B, in_channels, H, W), H and W divisible by 2 ** (L - 1); t (B,) int64; context
    (B, N, context_dim); mask (B, N) bool (True: a real token) or None -> eps_hat like z.
    mults[0] is 1 (norm_out sees c_0 = ch channels); every c_i is divisible by groups (and by
    heads, for the CrossAttnBlock).
    """

    def __init__(self, block, in_channels=4, ch=64, mults=(1, 2), context_dim=64, heads=4, groups=8):
        super().__init__()
        emb_dim = 4 * ch
        res = lambda a, b: ch06.res_block(a, b, emb_dim, groups)
        attn = lambda c: block(c, context_dim, heads, groups)
        self.time_proj = ch06.time_proj(ch)
        self.time_embedding = ch06.time_embedding(ch, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        chans = [ch * m for m in mults]
        self.down_res, self.down_attn, self.downsamples = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c_prev = ch
        for i, c in enumerate(chans):
            self.down_res.append(res(c_prev, c))
            self.down_attn.append(attn(c))
            if i < len(chans) - 1:
                self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            c_prev = c
        self.mid_res1, self.mid_attn, self.mid_res2 = res(c_prev, c_prev), attn(c_prev), res(c_prev, c_prev)
        self.up_res, self.up_attn, self.upsamples = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(chans))):
            self.up_res.append(res(c_prev + chans[i], chans[i]))
            self.up_attn.append(attn(chans[i]))
            if i > 0:
                self.upsamples.append(nn.Conv2d(chans[i], chans[i], 3, padding=1))
            c_prev = chans[i]
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, z, t, context, mask=None):
        """z (B, c, H, W), t (B,) int64, context (B, N, D), mask (B, N) bool or None -> eps_hat (B, c, H, W)."""
        emb = self.time_embedding(self.time_proj(t).to(z.dtype))  # (B, 4ch)
        h = self.conv_in(z)
        skips = []
        for i, (res, attn) in enumerate(zip(self.down_res, self.down_attn)):
            h = attn(res(h, emb), context, mask)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb), context, mask), emb)
        for j, (res, attn) in enumerate(zip(self.up_res, self.up_attn)):
            h = attn(res(torch.cat([h, skips.pop()], dim=1), emb), context, mask)
            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def training_loss(unet, z0, context, mask, null_context, null_mask, alpha_bars, p_uncond, generator=None):
    """One training step's loss for text-conditioned latent diffusion, with caption dropout.

    Each caption is independently replaced by the empty caption (null_context, null_mask)
    with probability p_uncond, so that the same network also learns the unconditional
    model that classifier-free guidance needs. Then, as in DDPM: t ~ Uniform{0..T-1},
    eps ~ N(0, I) per example, z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps,
    loss = mean over all elements of (unet(z_t, t, context, mask) - eps) ** 2.

    Args:
        unet: callable (z_t (B, c, h, w), t (B,) int64, context (B, L, D), mask (B, L) bool) -> (B, c, h, w).
        z0: (B, c, h, w) scaled latents of the training images.
        context: (B, L, D), mask: (B, L) bool, the captions' token features.
        null_context: (1, L, D), null_mask: (1, L) bool, the empty caption's.
        alpha_bars: (T,); p_uncond: float in [0, 1]; generator: optional, on z0's device: every
        draw comes from it (the global random generator is left alone when one is given).
        The inputs are left unchanged (build the dropped captions as new tensors).

    Returns:
        loss: scalar tensor; z_t and the loss in z0's dtype (whatever alpha_bars' dtype).
    """
    B, T = z0.shape[0], alpha_bars.shape[0]
    drop = torch.rand(B, generator=generator, device=z0.device) < p_uncond  # (B,)
    context = torch.where(drop[:, None, None], null_context.expand_as(context), context)
    mask = torch.where(drop[:, None], null_mask.expand_as(mask), mask)
    t = torch.randint(0, T, (B,), generator=generator, device=z0.device)
    eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    ab = alpha_bars.to(device=z0.device, dtype=z0.dtype)[t].view(-1, 1, 1, 1)
    z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps
    return F.mse_loss(unet(z_t, t, context, mask), eps)


@torch.no_grad()
def generate(prompts, encode_text, unet, decode, scheduler, *, guidance_scale, num_steps, latent_shape,
             scale_factor, generator=None):
    """Text to image, the shape of the "Stable Diffusion in 15 lines" loop.

    1. context, mask = encode_text(prompts) and encode_text([""] * B) (the empty caption),
       concatenated unconditional first: (2B, L, D), (2B, L).
    2. Set the scheduler's timesteps (num_steps of them); latents = torch.randn((B, *latent_shape),
       generator=generator) (one draw, on the CPU, then moved to the context's device)
       times scheduler.init_noise_sigma.
    3. For t in scheduler.timesteps: the doubled latents through scheduler.scale_model_input,
       eps = unet(latent_input, t as (2B,) int64, context, mask); eps_u, eps_c = its two halves;
       eps_hat = eps_u + guidance_scale (eps_c - eps_u); the latents become scheduler.step(eps_hat, t,
       latents).prev_sample.
    4. Return decode(latents / scale_factor).

    Args:
        prompts: list of B str. encode_text: list of str -> (context (n, L, D), mask (n, L) bool).
        unet: callable as above -> (2B, *latent_shape). decode: latents -> images.
        scheduler: diffusers-style (set_timesteps, timesteps, init_noise_sigma, scale_model_input, step).
        guidance_scale: float; num_steps: int; latent_shape: (c, h, w); scale_factor: float.

    Returns:
        what decode returns, e.g. images (B, C, H, W).
    """
    B = len(prompts)
    cond, cond_mask = encode_text(list(prompts))
    uncond, uncond_mask = encode_text([""] * B)
    context, mask = torch.cat([uncond, cond]), torch.cat([uncond_mask, cond_mask])
    scheduler.set_timesteps(num_steps)
    latents = torch.randn((B, *latent_shape), generator=generator).to(context.device)
    latents = latents * scheduler.init_noise_sigma
    for timestep in scheduler.timesteps:
        latent_input = scheduler.scale_model_input(torch.cat([latents, latents]), timestep)
        t_batch = torch.full((2 * B,), int(timestep), dtype=torch.long, device=context.device)
        eps_u, eps_c = unet(latent_input, t_batch, context, mask).chunk(2)
        eps_hat = eps_u + guidance_scale * (eps_c - eps_u)
        latents = scheduler.step(eps_hat, timestep, latents).prev_sample
    return decode(latents / scale_factor)



@torch.no_grad()
def img2img(image_latents, prompts, encode_text, unet, decode, scheduler, *, strength, guidance_scale, num_steps,
            scale_factor, generator=None):
    """Image plus text to image (SDEdit; diffusers' StableDiffusionImg2ImgPipeline): noise the given
    latents part of the way, then run only the last part of generate's loop.

    1. context, mask as in generate (unconditional first, (2B, L, D), (2B, L)).
    2. Set the scheduler's timesteps (num_steps of them); keep = int(num_steps * strength) of them,
       the last ones (scheduler.timesteps from index num_steps - keep on).
    3. noise = torch.randn(image_latents.shape, generator=generator) (the one random draw, on the
       CPU, then moved to image_latents' device and dtype). If keep == num_steps (strength 1),
       the latents start as noise times scheduler.init_noise_sigma, generate's start (diffusers' inpainting
       convention), so img2img equals generate from the same generator; otherwise
       latents = scheduler.add_noise(image_latents, noise, timesteps[:1] repeated B times).
    4. For t in timesteps: generate's guided step. 5. Return decode(latents / scale_factor).
    With keep == 0 (strength 0) no step runs: decode(image_latents / scale_factor).

    Args:
        image_latents: (B, c, h, w) scaled latents (encoder mean times scale_factor).
        prompts, encode_text, unet, decode, scheduler, guidance_scale, num_steps, scale_factor: as in generate.
        strength: float in [0, 1], the fraction of the schedule to run.

    Returns:
        what decode returns, e.g. images (B, C, H, W).
    """
    B = len(prompts)
    cond, cond_mask = encode_text(list(prompts))
    uncond, uncond_mask = encode_text([""] * B)
    context, mask = torch.cat([uncond, cond]), torch.cat([uncond_mask, cond_mask])
    scheduler.set_timesteps(num_steps)
    keep = min(int(num_steps * strength), num_steps)
    timesteps = scheduler.timesteps[num_steps - keep:]
    noise = torch.randn(image_latents.shape, generator=generator).to(image_latents)
    if keep == num_steps:
        latents = noise * scheduler.init_noise_sigma
    elif keep > 0:
        latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(B))
    else:
        latents = image_latents
    for timestep in timesteps:
        latent_input = scheduler.scale_model_input(torch.cat([latents, latents]), timestep)
        t_batch = torch.full((2 * B,), int(timestep), dtype=torch.long, device=latents.device)
        eps_u, eps_c = unet(latent_input, t_batch, context, mask).chunk(2)
        eps_hat = eps_u + guidance_scale * (eps_c - eps_u)
        latents = scheduler.step(eps_hat, timestep, latents).prev_sample
    return decode(latents / scale_factor)

# Q1. Why does Stable Diffusion run the diffusion in an autoencoder's latent space?
answer_why_latent = "C"

# Q2. In cross-attention inside the U-Net, where do the queries, keys and values come from?
answer_qkv = "A"

# Q3. Which statements are true?
answer_latent_facts = {"A", "C", "D"}
