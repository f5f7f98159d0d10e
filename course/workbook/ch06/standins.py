"""Chapter 06 stand-ins: each exercise that later cells use, done by diffusers (or torch),
with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `TextUNet = ch06.standins.TextUNet`: the rest
of the chapter runs with the stand-in; the exercise earns no points (its check says so).
Remove the line when your own version is ready. The networks are diffusers' own
(`AutoencoderKL`, `Attention`, `Transformer2DModel`, `UNet2DConditionModel`): they keep
the exercise's calls and outputs, not its layers and parameter names.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..standin import stand_in


class _AttentionMaps:
    """An attention processor for diffusers' `Attention` on token inputs, computing what
    diffusers' plain `AttnProcessor` computes, that keeps the attention maps of its last call
    in `last_attn` (B, heads, N, L) (rows summing to 1; padding tokens, biased by -10000, get 0)."""

    last_attn = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        B, N, L = hidden_states.shape[0], hidden_states.shape[1], context.shape[1]
        bias = attn.prepare_attention_mask(attention_mask, L, B)
        q, k, v = (attn.head_to_batch_dim(p) for p in (attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)))
        probs = attn.get_attention_scores(q, k, bias)  # (B * heads, N, L)
        self.last_attn = probs.view(B, attn.heads, N, L)
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, v))))
        return out / attn.rescale_output_factor


def _recording(module: nn.Module, suffix: str = "attn2") -> list:
    """Give every `Attention` of `module` whose name ends with `suffix` (diffusers' cross-attention
    in its transformer blocks) an `_AttentionMaps` processor; returns them in order."""
    found = []
    for name, m in module.named_modules():
        if name.endswith(suffix):
            m.set_processor(_AttentionMaps())
            found.append(m)
    return found


class _NoSelfAttention(nn.Module):
    """In place of a diffusers transformer block's self-attention (`attn1`): adds nothing. The
    exercise's text block has no self-attention (tiny images do not need it); at 32x32 pixels it
    would cost most of the time."""

    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states)


def _text_only(module: nn.Module) -> None:
    """Switch off the self-attention of every diffusers transformer block of `module`."""
    for block in [m for m in module.modules() if hasattr(m, "attn1") and hasattr(m, "attn2")]:
        block.attn1 = _NoSelfAttention()


def _padding_bias(mask, dtype):
    """A (B, L) bool mask (True: a real token) as diffusers' additive bias (B, 1, L)."""
    return None if mask is None else ((1 - mask.to(dtype)) * -10000.0)[:, None, :]


def _scheduler_with(alpha_bars: torch.Tensor):
    """diffusers' DDPMScheduler whose alphas_cumprod are `alpha_bars` (for its add_noise)."""
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(num_train_timesteps=len(alpha_bars))
    sched.alphas_cumprod = alpha_bars.detach().to("cpu", torch.float64)
    return sched


# ----------------------------------------------------------------------------- 1 the autoencoder

@stand_in
class KLAutoencoder(nn.Module):
    """diffusers' `AutoencoderKL` (in `self.inner`): three levels of channels ch, 2ch, 4ch (two
    halvings: latents of H/4 x W/4), one residual block per level, with the exercise's
    `encode(x) -> (mean, logvar)` (diffusers clamps logvar to [-30, 20]), `decode(z) -> x_hat`,
    `forward(x, noise) -> (x_hat, mean, logvar)` with z = mean + exp(logvar / 2) * noise,
    and `latent_channels`. Not the exercise's layers: its parameters differ."""

    def __init__(self, in_channels=3, ch=32, latent_channels=4):
        super().__init__()
        from diffusers import AutoencoderKL
        self.latent_channels = int(latent_channels)
        self.inner = AutoencoderKL(in_channels=in_channels, out_channels=in_channels,
                                   down_block_types=("DownEncoderBlock2D",) * 3,
                                   up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(ch, 2 * ch, 4 * ch),
                                   latent_channels=latent_channels, layers_per_block=1, norm_num_groups=math.gcd(ch, 8))

    def encode(self, x):
        posterior = self.inner.encode(x).latent_dist
        return posterior.mean, posterior.logvar

    def decode(self, z):
        return self.inner.decode(z).sample

    def forward(self, x, noise):
        posterior = self.inner.encode(x).latent_dist  # its std is exp(logvar / 2)
        return self.decode(torch.addcmul(posterior.mean, posterior.std, noise)), posterior.mean, posterior.logvar


@stand_in
def autoencoder_loss(x, x_hat, mean, logvar, kl_weight):
    """The mean squared error plus kl_weight times diffusers' `DiagonalGaussianDistribution.kl()`
    (summed over each latent, averaged over the batch; diffusers clamps logvar to [-30, 20] first,
    which the encoder already did). Returns (loss, rec, kl)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    posterior = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
    reconstruction, divergence = F.mse_loss(x_hat, x), posterior.kl().mean()
    return torch.add(reconstruction, divergence, alpha=kl_weight), reconstruction, divergence


@stand_in
def latent_scale_factor(Z):
    """torch (no library has it): 1 / sqrt of the variance of all elements of Z, computed in float64."""
    return torch.var(Z.detach().double()).rsqrt().item()


# ----------------------------------------------------------------------------- 2-3 attention, the U-Net

@stand_in
class CrossAttention(nn.Module):
    """diffusers' `Attention` (in `self.inner`; to_q, to_k, to_v without bias, to_out[0] with bias),
    padding tokens biased by -10000 (as diffusers does) rather than -inf; returns (out, attn)."""

    def __init__(self, query_dim, context_dim, heads=4, head_dim=16):
        super().__init__()
        from diffusers.models.attention_processor import Attention
        self.inner = Attention(query_dim, cross_attention_dim=context_dim, heads=heads, dim_head=head_dim, bias=False,
                               out_bias=True, processor=_AttentionMaps())

    def forward(self, x, context, mask=None):
        out = self.inner(x, context, attention_mask=_padding_bias(mask, x.dtype))
        return out, self.inner.processor.last_attn


@stand_in
class CrossAttnBlock(nn.Module):
    """diffusers' `Transformer2DModel` (in `self.inner`): one transformer layer with linear
    projections, its self-attention switched off, cross-attention to the text (padding masked),
    then a feed-forward layer (GEGLU), inside a residual connection. `last_attn` is the
    cross-attention's maps of the last call (B, heads, H*W, L)."""

    def __init__(self, channels, context_dim, heads=4, groups=8):
        super().__init__()
        from diffusers.models.transformers.transformer_2d import Transformer2DModel
        self.inner = Transformer2DModel(num_attention_heads=heads, attention_head_dim=channels // heads,
                                        in_channels=channels, num_layers=1, cross_attention_dim=context_dim,
                                        norm_num_groups=groups, use_linear_projection=True)
        _text_only(self.inner)
        _recording(self.inner)

    @property
    def last_attn(self):
        return self.inner.transformer_blocks[0].attn2.processor.last_attn

    def forward(self, x, context, mask=None):
        return self.inner(x, encoder_hidden_states=context, encoder_attention_mask=mask).sample


@stand_in
class TextUNet(nn.Module):
    """diffusers' `UNet2DConditionModel` (in `self.inner`) with the exercise's constructor and
    call `forward(z, t, context, mask)`: block_out_channels = ch * mults, a cross-attention
    down block and up block at every level (one residual block per level going down, two
    going up, as diffusers builds it), `heads` heads, padding tokens masked through
    `encoder_attention_mask`. The text blocks are diffusers' transformer blocks with their
    self-attention switched off, as in the exercise's block: `block` is accepted for the
    signature and not used. `down_attn[i].last_attn` holds the last cross-attention maps
    (B, heads, H*W, L) of level i going down."""

    def __init__(self, block, in_channels=4, ch=64, mults=(1, 2), context_dim=64, heads=4, groups=8):
        super().__init__()
        from diffusers import UNet2DConditionModel
        n = len(mults)
        self.inner = UNet2DConditionModel(in_channels=in_channels, out_channels=in_channels,
                                          block_out_channels=tuple(ch * m for m in mults), layers_per_block=1,
                                          down_block_types=("CrossAttnDownBlock2D",) * n,
                                          up_block_types=("CrossAttnUpBlock2D",) * n, cross_attention_dim=context_dim,
                                          attention_head_dim=heads, norm_num_groups=groups)
        _text_only(self.inner)
        _recording(self.inner)

    @property
    def down_attn(self):
        return [b.attentions[0].transformer_blocks[0].attn2.processor for b in self.inner.down_blocks]

    def forward(self, z, t, context, mask=None):
        return self.inner(z, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample


@stand_in
def training_loss(unet, z0, context, mask, null_context, null_mask, alpha_bars, p_uncond, generator=None):
    """Caption dropout with torch.where (the empty caption broadcast over the dropped rows), then
    DDPM's loss with diffusers' `DDPMScheduler.add_noise`; draws: the dropout, t, eps, from `generator`."""
    B = z0.shape[0]
    dropped = torch.rand(B, generator=generator, device=z0.device) < p_uncond
    context = torch.where(dropped[:, None, None], null_context.to(context), context)
    mask = torch.where(dropped[:, None], null_mask.to(mask), mask)
    t = torch.randint(len(alpha_bars), (B,), generator=generator, device=z0.device)
    from diffusers.utils.torch_utils import randn_tensor
    noise = randn_tensor(tuple(z0.shape), generator=generator, device=z0.device, dtype=z0.dtype)
    return F.mse_loss(unet(_scheduler_with(alpha_bars).add_noise(z0, noise, t), t, context, mask), noise)


# ----------------------------------------------------------------------------- 4 sampling

def _texts(prompts, encode_text):
    """context, mask of the empty captions then the prompts: (2B, L, D), (2B, L) (mask None if
    encode_text gives none)."""
    (uncond, uncond_mask), (cond, cond_mask) = encode_text([""] * len(prompts)), encode_text(list(prompts))
    mask = None if uncond_mask is None or cond_mask is None else torch.cat([uncond_mask, cond_mask])
    return torch.cat([uncond, cond]), mask


def _guided_steps(latents, timesteps, unet, scheduler, context, mask, guidance_scale):
    for step_t in timesteps:
        doubled = scheduler.scale_model_input(latents.repeat(2, *[1] * (latents.dim() - 1)), step_t)
        t = torch.full((doubled.shape[0],), int(step_t), dtype=torch.long, device=doubled.device)
        eps_u, eps_c = unet(doubled, t, context, mask).chunk(2)
        latents = scheduler.step(torch.lerp(eps_u, eps_c, guidance_scale), step_t, latents).prev_sample
    return latents


@stand_in
@torch.no_grad()
def generate(prompts, encode_text, unet, decode, scheduler, *, guidance_scale, num_steps, latent_shape,
             scale_factor, generator=None):
    """The loop written plainly in torch around the diffusers scheduler it is given (no library
    function has these interfaces): the starting latents drawn on the CPU, the doubled batch through
    `scale_model_input`, the guided noise as `torch.lerp(eps_u, eps_c, guidance_scale)`."""
    context, mask = _texts(prompts, encode_text)
    scheduler.set_timesteps(int(num_steps))
    start = torch.randn((len(prompts), *latent_shape), generator=generator).to(context.device)
    end = _guided_steps(start * scheduler.init_noise_sigma, scheduler.timesteps, unet, scheduler, context, mask,
                        guidance_scale)
    return decode(end.div(scale_factor))


@stand_in
@torch.no_grad()
def img2img(image_latents, prompts, encode_text, unet, decode, scheduler, *, strength, guidance_scale, num_steps,
            scale_factor, generator=None):
    """SDEdit written plainly in torch around the diffusers scheduler it is given: the last
    int(num_steps * strength) timesteps, the latents noised with `scheduler.add_noise` (at strength 1
    started as generate starts), then generate's guided steps."""
    context, mask = _texts(prompts, encode_text)
    scheduler.set_timesteps(int(num_steps))
    n_run = min(int(num_steps * strength), num_steps)
    run = scheduler.timesteps[num_steps - n_run:]  # the last n_run timesteps
    drawn = torch.randn(tuple(image_latents.shape), generator=generator).to(image_latents)
    if n_run == 0:
        start = image_latents
    elif n_run < num_steps:
        start = scheduler.add_noise(image_latents, drawn, run[:1].repeat(len(prompts)))
    else:  # strength 1: generate's start
        start = drawn * scheduler.init_noise_sigma
    return decode(_guided_steps(start, run, unet, scheduler, context, mask, guidance_scale).div(scale_factor))
