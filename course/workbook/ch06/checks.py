"""Chapter 06 visible checks (text-to-image latent diffusion): the `check_*` functions the
notebook calls, the chapter's texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the
stand-ins the checks use.

The checks use inputs whose answers are known by construction, stand-ins that record what
they are given, and diffusers (its `Attention` and `Transformer2DModel` with the same
weights); none uses a reference solution. Hidden checks, run when grading, use fresh
random inputs.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings

import torch
from torch import nn

from ..checks import Checks, check_choice, describe, library_error_hint, substituted, tolerance
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_why_latent": "ABCD", "answer_qkv": "ABCD", "answer_latent_facts": "ABCDEF"}
# The idea behind each question, shown with a wrong answer (it does not name the letter).
QUIZ_EXPLAIN = {
    "answer_why_latent": "count the elements a U-Net step works on for a 512 x 512 x 3 image and for its "
                         "64 x 64 x 4 latent, and ask which part of the system puts the fine detail back",
    "answer_qkv": "each output position of cross-attention is one pixel of the feature map: whatever asks the "
                  "question (the queries) has one row per output position, and what is looked up comes from the "
                  "other input",
    "answer_latent_facts": "weigh each statement alone: what the scale factor does to the latents' spread, whether "
                           "anything random happens to the caption at sampling time, what the unconditional branch "
                           "is given, where the mask enters the softmax, what is frozen while the U-Net trains, and "
                           "what eps_u + s (eps_c - eps_u) is at s = 0",
}
# What the checks say when they recognise a mistake: one text per diagnosis, used by the
# checks here, the hidden checks and the catalogue of mistakes.
DIAGNOSES: dict[str, str] = {
    "global_rng": "a draw ignored the generator passed in (torch.randn_like / torch.rand_like take none, or "
                  "generator= was left out): pass generator=generator to every torch.randn, torch.rand and "
                  "torch.randint",
    "inputs_in_place": "an input was changed in place (context[drop] = ..., mask[drop] = ..., an operation ending "
                       "in _): work on new tensors (torch.where, or .clone() first) and leave the inputs as they are",
    "t_batch_of_one": library_error_hint("Timesteps should be a 1d-array"),  # the course-wide text
    "loss_parts_tensors": "return the three terms as scalar tensors (rec and kl too): the training loop "
                          "calls .item() on them; a float \"for logging\" has no .item() and no gradient",
    "kl_mean_elements": "the KL divergence must be summed over the latent elements (then averaged over the batch), "
                        "not averaged",
    "kl_sum_batch": "the KL divergence must be averaged over the batch, not summed",
    "kl_no_half": "the factor 0.5 is missing from the KL divergence",
    "kl_sign": "the KL's sign is flipped: 0.5 * sum(mean**2 + exp(logvar) - 1 - logvar) is >= 0",
    "kl_var_as_std": "exp(logvar) is the variance: the KL uses exp(logvar), not exp(2 * logvar) or exp(logvar / 2)",
    "rec_sum": "rec must be the mean over all elements, not the sum",
    "rec_per_image": "rec summed per image and averaged over the batch: take the mean over all elements",
    "scale_multiplied": "the scale factor must divide the latents before decoding (latents / scale_factor), not multiply",
    "scale_not_divided": "divide the latents by scale_factor before decoding",
    "predicts_z0": "the U-Net must be trained to predict the noise eps, not the clean latents z0",
    "guidance_inverted": "the guidance formula is inverted: eps_u + g (eps_c - eps_u), eps_u from the empty caption",
    "mask_inverted": "the mask is inverted: True marks real tokens, False padding",
    "noise_unused": "the noise was not used: z = mean + exp(logvar / 2) * noise",
    "mask_ignored": "the padding mask was ignored: set the scores of padding tokens to -inf before the softmax",
    "no_block_residual": "the residual connection around the block is missing: return x + proj_out(h)",
    "scale_inverse_variance": "the scale factor is 1 / std, not 1 / variance",
    "scale_is_std": "the scale factor is 1 / std, not the std itself",
    "no_sqrt_head_dim": "the scores must be divided by sqrt(head_dim)",
    "softmax_axis": "the softmax must run over the tokens (the last dimension), not over the image positions",
    "std_vs_rms": "the standard deviation is around the mean: Z.std(), not the root mean square of Z",
    "no_init_noise_sigma": "the starting latents must be multiplied by scheduler.init_noise_sigma",
    "z_exp_logvar": "z = mean + exp(logvar) * noise: the standard deviation is exp(logvar / 2)",
    "z_logvar": "z = mean + logvar * noise: the standard deviation is exp(logvar / 2)",
    # autoencoder
    "ae_params": "follow the stated layers: 5 convolutions each way, the encoder ending in 2 * latent_channels "
                 "channels (mean and log-variance), kernel 4 with stride 2 to halve the size",
    "mean_first": "the first latent_channels channels are the mean: encoder(x).chunk(2, dim=1)",
    "clamp": "clamp the log-variance to [-30, 20], as diffusers does: logvar.clamp(-30.0, 20.0)",
    "layers_fit": "use exactly the stated layers, in the stated order, with the stated attribute names",
    "decode_z": "x_hat = decode(z) with z = mean + exp(logvar / 2) * noise",
    "loss_formula": "loss = rec + kl_weight * kl",
    "scale_item": "1 / Z.std() is a 0-d tensor: use .item()",
    "first_latent_spread": "the spread of one latent is not the spread of all: 1 / Z.std() over the whole Z",
    # cross-attention
    "attn_params": "to_q, to_k, to_v without bias (keys and values from the text: context_dim inputs), to_out with "
                   "bias",
    "values_from_text": "out = attn @ v: the values come from the text (context), not from the image features x",
    "heads_split": "split the heads with view(B, n, heads, head_dim).transpose(1, 2) and merge them back the same "
                   "way; scale by 1 / sqrt(head_dim), not 1 / sqrt(heads * head_dim)",
    "padding_ignored": "what sits in padding positions must not matter",
    # block
    "block_params": "norm, proj_in, norm_attn, attn = CrossAttention(C, context_dim, heads, C // heads), norm_ff, "
                    "ff with a 4C hidden layer, proj_out, as stated",
    "block_order": "norm -> tokens (B, H*W, C) -> proj_in; h + attn(norm_attn(h)); h + ff(norm_ff(h)); proj_out; "
                   "back to (B, C, H, W) with transpose(1, 2).reshape (not view on the wrong layout); + x",
    "block_mask": "pass the mask on to the attention: self.attn(self.norm_attn(h), context, mask)",
    # text-conditioned U-Net
    "unet_layout": "build the modules of the docstring, with the stated names, in the stated order (all of down_res, "
                   "then all of down_attn, then downsamples; the same for up), so that their parameters come in "
                   "the documented order",
    "unet_last_downsample": "no downsampling at the last level: downsamples has len(mults) - 1 convolutions, "
                            "and forward halves H and W after every level but the last",
    "unet_emb": "every residual block takes the time embedding: res(h, emb) with emb = "
                "time_embedding(time_proj(t))",
    "unet_dtype": "the time features must be in z's dtype: emb = time_embedding(time_proj(t).to(z.dtype)), so "
                  "that model.double() runs in float64 (not .float(), not left as time_proj returns them)",
    "unet_context": "every text block takes the context: attn(h, context, mask)",
    "unet_mask": "pass the mask on to every text block: attn(h, context, mask)",
    "unet_mid_attn": "the middle is mid_res1, then the text block mid_attn, then mid_res2",
    "unet_level": "each level is its residual block, then its text block: attn(res(h, emb), context, mask)",
    "unet_skip": "each up level starts from torch.cat([h, skip], dim=1): h from below, the skip saved at the "
                 "same level on the way down (the last saved first)",
    "unet_skip_order": "the skip connection comes second: torch.cat([h, skip], dim=1), not torch.cat([skip, h])",
    "unet_upsample_order": "upsample at the end of an up level, after its text block: "
                           "h = upsamples[j](F.interpolate(h, scale_factor=2.0, mode='nearest'))",
    "unet_computation": "follow forward's steps exactly: emb, conv_in, the levels down, the middle, the levels up, "
                        "then conv_out(SiLU(norm_out(h)))",
    # training loss
    "drop_rows": "replace whole rows, the mask together with the context",
    "drop_below": "drop where torch.rand(B) < p_uncond, one draw per example",
    "t_uniform": "torch.randint(0, T, (B,))",
    "implied_noise": "z_t = sqrt(alpha_bars[t]) z0 + sqrt(1 - alpha_bars[t]) eps, eps = torch.randn_like(z0)",
    "predicts_zt": "the U-Net must be trained to predict the noise eps, not the noisy latents z_t",
    "loss_eps": "loss = mean over all elements of (unet(z_t, t, context, mask) - eps) ** 2, with the same eps that "
                "made z_t",
    "loss_per_example": "the squared error was summed per example: take the mean over all elements (F.mse_loss)",
    # generate
    "empty_caption": "the unconditional branch uses the empty caption [''] * B",
    "unet_t": "give the U-Net t as a (2B,) int64 tensor, one timestep per row of the doubled batch: "
              "torch.full((2 * B,), int(t), dtype=torch.long)",
    "scale_per_channel": "one standard deviation over all elements of Z (all channels together), not the mean "
                         "of the per-channel ones",
    "groupnorm_eps": "the block's GroupNorm takes eps=1e-6 (nn.GroupNorm(groups, C, eps=1e-6)), as diffusers'",
    "forward_clamp": "forward must use encode (with its clamp): the log-variance it returns and samples with is "
                     "clamped to [-30, 20]",
    "loss_dtype": "keep z0's dtype: cast alpha_bars to z0's dtype before forming z_t",
    "start_latents": "latents = torch.randn((B, *latent_shape), generator=generator) * scheduler.init_noise_sigma, "
                     "the first draw from the generator",
    "scale_model_input": "latent_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)",
    "doubled_batch": "torch.cat([uncond, cond]) and the masks the same way; no caption dropout when sampling",
    "both_halves": "guidance must combine both halves: eps_u + g (eps_c - eps_u)",
    "scheduler_scalings": "use the scheduler's scalings: latents = torch.randn((B, *latent_shape), "
                          "generator=generator) * scheduler.init_noise_sigma, and latent_input = "
                          "scheduler.scale_model_input(torch.cat([latents, latents]), t) at every step",
    "step_latents": "step the latents themselves (not the scaled, doubled input): scheduler.step(eps_hat, t, latents)",
    "return_decoded": "return decode(...)",
    # img2img
    "i2i_kept_steps": "run the last keep = int(num_steps * strength) timesteps: scheduler.timesteps[num_steps - keep:]",
    "i2i_strength_inverted": "strength is the fraction of the schedule that runs (1: all of it, from pure noise; "
                             "0: none, the input back), not the fraction skipped",
    "i2i_noise_timestep": "noise the latents to the first kept timestep, timesteps[:1] repeated B times, "
                          "not to the schedule's first one",
    "i2i_add_noise": "noise the given latents with scheduler.add_noise(image_latents, noise, t): the image must "
                     "stay in the starting latents",
    "i2i_noise_draw": "noise = torch.randn(image_latents.shape, generator=generator), the one draw from the "
                      "generator",
    "i2i_full_strength": "at strength 1 start exactly as generate: latents = noise * scheduler.init_noise_sigma",
    "i2i_sigma_twice": "add_noise already gives the noisy latents at that timestep: do not also multiply by "
                       "scheduler.init_noise_sigma",
}
QUIZ_SETS = {"answer_latent_facts"}
_F64 = torch.float64
# diffusers' Transformer2DModel warns about its own deprecated output class on every call
warnings.filterwarnings("ignore", message=".*Transformer2DModelOutput.*", category=FutureWarning)


def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])


# ----------------------------------------------------------------------------- 1 autoencoder

def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def autoencoder_parameters(C: int, ch: int, c: int) -> int:
    """The parameter count of KLAutoencoder(C, ch, c), layer by layer."""
    encoder = _conv(C, ch, 3) + _conv(ch, 2 * ch, 4) + _conv(2 * ch, 2 * ch, 3) + _conv(2 * ch, 4 * ch, 4) \
        + _conv(4 * ch, 2 * c, 3)
    decoder = _conv(c, 4 * ch, 3) + _conv(4 * ch, 2 * ch, 4) + _conv(2 * ch, 2 * ch, 3) + _conv(2 * ch, ch, 4) \
        + _conv(ch, C, 3)
    return encoder + decoder


def check_autoencoder(KLAutoencoder, autoencoder_loss, latent_scale_factor) -> None:
    c = Checks("autoencoder")
    refuse_stand_in(c, "KLAutoencoder", KLAutoencoder)
    refuse_stand_in(c, "autoencoder_loss", autoencoder_loss)
    refuse_stand_in(c, "latent_scale_factor", latent_scale_factor)
    inputs = "KLAutoencoder(in_channels=3, ch=8, latent_channels=4)"
    torch.manual_seed(0)
    model = c.call(KLAutoencoder, 3, 8, 4, inputs=inputs)
    n = sum(p.numel() for p in model.parameters())
    want = autoencoder_parameters(3, 8, 4)
    c.true(n == want, "wrong number of parameters", inputs=inputs, expected=want, got=n,
hint=DIAGNOSES["ae_params"])
    c.true(isinstance(getattr(model, "encoder", None), nn.Sequential) and isinstance(model.encoder[-1], nn.Conv2d),
           "model.encoder must be an nn.Sequential ending in the Conv2d that outputs mean and log-variance",
           inputs=inputs)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    inputs = "x (2, 3, 16, 16)"
    with torch.no_grad():
        out = c.call(model.encode, x, inputs=inputs)
        c.true(isinstance(out, tuple) and len(out) == 2, "encode must return a pair (mean, logvar)", inputs=inputs,
               got=type(out).__name__)
        mean, logvar = out
        c.tensor("mean", mean, shape=(2, 4, 4, 4), dtype=torch.float32, inputs=inputs)
        c.tensor("logvar", logvar, shape=(2, 4, 4, 4), dtype=torch.float32, inputs=inputs)
        x_hat = c.call(model.decode, mean, inputs="decode(mean (2, 4, 4, 4))")
        c.tensor("decode(mean)", x_hat, shape=(2, 3, 16, 16), inputs="z (2, 4, 4, 4)")
        # Which channels are the mean: make the last conv output a constant per channel.
        last = model.encoder[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 1, 1, 1, -2, -2, -2, -2]))
        mean, logvar = model.encode(x)
        inputs = "the encoder's last conv set to output 1 on channels 0-3 and -2 on channels 4-7"
        c.close("mean", mean, torch.ones(2, 4, 4, 4), atol=1e-6, inputs=inputs,
                hint=DIAGNOSES["mean_first"])
        c.close("logvar", logvar, torch.full((2, 4, 4, 4), -2.0), atol=1e-6, inputs=inputs)
        last.bias.copy_(torch.tensor([0.0, 0, 0, 0, 50, -50, 10, 0]))
        _, logvar = model.encode(x)
        c.close("logvar", logvar[:, :, 0, 0], torch.tensor([[20.0, -30, 10, 0]] * 2), atol=1e-6,
                inputs="log-variance outputs 50, -50, 10, 0", hint=DIAGNOSES["clamp"])
        inputs = "forward(x, noise = 0), log-variance outputs 50, -50, 10, 0"
        out = c.call(model, x, torch.zeros(2, 4, 4, 4), inputs=inputs)
        c.true(isinstance(out, tuple) and len(out) == 3, "forward must return (x_hat, mean, logvar)", inputs=inputs)
        c.close("logvar returned by forward", out[2][:, :, 0, 0], torch.tensor([[20.0, -30, 10, 0]] * 2), atol=1e-6,
                inputs=inputs, hint=DIAGNOSES["forward_clamp"])
        last.bias.copy_(torch.tensor([0.5, -0.5, 0, 1, math.log(4.0), 0, math.log(0.25), 0]))
        noise = torch.randn(2, 4, 4, 4, generator=g)
        inputs = "mean = [0.5, -0.5, 0, 1], logvar = [log 4, 0, log 1/4, 0] per channel, noise (2, 4, 4, 4)"
        out = c.call(model, x, noise, inputs=inputs)
        c.true(isinstance(out, tuple) and len(out) == 3, "forward must return (x_hat, mean, logvar)", inputs=inputs)
        std = torch.tensor([2.0, 1.0, 0.5, 1.0]).view(1, 4, 1, 1)
        z = torch.tensor([0.5, -0.5, 0.0, 1.0]).view(1, 4, 1, 1) + std * noise
        c.close("x_hat", out[0], model.decode(z), atol=1e-5, inputs=inputs, mistakes={
            DIAGNOSES["z_exp_logvar"]:
                model.decode(z - std * noise + std ** 2 * noise),
            DIAGNOSES["z_logvar"]:
                model.decode(z - std * noise + torch.log(std ** 2) * noise),
            DIAGNOSES["noise_unused"]: model.decode(z - std * noise),
        }, hint=DIAGNOSES["decode_z"])

    # The loss, by hand: x = 0, x_hat = 1, 3 and 2, one latent pixel with 2 channels per
    # example. Three examples: a KL summed over the batch (3x) and one without its factor
    # 0.5 (2x) differ.
    x0 = torch.zeros(3, 1, 2, 2, dtype=_F64)
    x1 = torch.ones(3, 1, 2, 2, dtype=_F64)
    x1[1], x1[2] = 3.0, 2.0  # squared errors 1, 9 and 4 (4 pixels each): rec = 14 / 3
    mean = torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.0, 1.0]], dtype=_F64).view(3, 2, 1, 1)
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0], [0.0, math.log(2.0)]], dtype=_F64).view(3, 2, 1, 1)
    # KL per example: 0.5 * (1 + 4) = 2.5, 0.5 * (2 - 1 - log 2) and 0.5 * (1 + 2 - 1 - log 2)
    kls = [2.5, 0.5 - 0.5 * math.log(2.0), 1.0 - 0.5 * math.log(2.0)]
    kl_mean, kl_sum = sum(kls) / 3, sum(kls)
    inputs = "x = 0 (3, 1, 2, 2), x_hat = 1, 3 and 2, mean = [[1, 2], [0, 0], [0, 1]], " \
             "logvar = [[0, 0], [log 2, 0], [0, log 2]], kl_weight = 0.1"
    saved = [v.clone() for v in (x0, x1, mean, logvar)]
    out = c.call(autoencoder_loss, x0, x1, mean, logvar, 0.1, inputs=inputs)
    c.true(all(torch.equal(a, b) for a, b in zip(saved, (x0, x1, mean, logvar))),
           "autoencoder_loss modified its inputs in place", inputs=inputs, hint=DIAGNOSES["inputs_in_place"])
    c.true(isinstance(out, tuple) and len(out) == 3, "autoencoder_loss must return (loss, rec, kl)", inputs=inputs)
    loss, rec, kl = out
    for name, part in zip(("loss", "rec", "kl"), out):
        c.true(isinstance(part, torch.Tensor) and part.dim() == 0, f"{name} must be a scalar tensor", inputs=inputs,
               got=f"{type(part).__name__}: {describe(part)}", hint=DIAGNOSES["loss_parts_tensors"])
    c.close("rec", rec, torch.tensor(14.0 / 3), atol=1e-9, inputs=inputs, mistakes={
        DIAGNOSES["rec_sum"]: torch.tensor(56.0), DIAGNOSES["rec_per_image"]: torch.tensor(56.0 / 3)})
    ev = [(1.0, 1.0), (4.0, 1.0), (1.0, 4.0)]  # exp(2 logvar) per example, per channel
    kl_var_as_std = sum(0.5 * (m ** 2 + e - 1 - lv) for m, e, lv in
                        zip(mean.flatten().tolist(), [v for pair in ev for v in pair], logvar.flatten().tolist())) / 3
    c.close("kl", kl, torch.tensor(kl_mean), atol=1e-9, inputs=inputs, mistakes={
        DIAGNOSES["kl_mean_elements"]: torch.tensor(kl_mean / 2),
        DIAGNOSES["kl_sum_batch"]: torch.tensor(kl_sum),
        DIAGNOSES["kl_no_half"]: torch.tensor(2 * kl_mean),
        DIAGNOSES["kl_sign"]: torch.tensor(-kl_mean),
        DIAGNOSES["kl_var_as_std"]: torch.tensor(kl_var_as_std),
    })
    c.close("loss", loss, torch.tensor(14.0 / 3 + 0.1 * kl_mean), atol=1e-9, inputs=inputs,
            hint=DIAGNOSES["loss_formula"])

    g = torch.Generator().manual_seed(2)
    Z = 2.0 + 3.0 * torch.randn(500, 4, 4, 4, generator=g) + torch.tensor([-3.0, -1.0, 1.0, 3.0]).view(1, 4, 1, 1)
    inputs = "Z (500, 4, 4, 4): standard normal times 3, plus 2 + [-3, -1, 1, 3] by channel"
    s = c.call(latent_scale_factor, Z, inputs=inputs)
    c.true(isinstance(s, float), "latent_scale_factor must return a Python float", inputs=inputs,
           got=type(s).__name__, hint=DIAGNOSES["scale_item"])
    c.close("scale factor", torch.tensor(s), 1 / Z.std(), atol=1e-4, rtol=1e-3, inputs=inputs, mistakes={
        DIAGNOSES["scale_is_std"]: Z.std(),
        DIAGNOSES["scale_inverse_variance"]: 1 / Z.var(),
        DIAGNOSES["std_vs_rms"]:
            1 / Z.pow(2).mean().sqrt(),
        DIAGNOSES["first_latent_spread"]: 1 / Z[0].std(),
        DIAGNOSES["scale_per_channel"]: 1 / Z.std(dim=(0, 2, 3)).mean(),
    })
    c.done()


# ----------------------------------------------------------------------------- 2 cross-attention

def _diffusers_attention(query_dim: int, context_dim: int, heads: int, head_dim: int):
    from diffusers.models.attention_processor import Attention
    return Attention(query_dim, cross_attention_dim=context_dim, heads=heads, dim_head=head_dim, bias=False,
                     out_bias=True)


def copy_attention_weights(mine: nn.Module, theirs: nn.Module) -> None:
    """Copy the weights of diffusers' Attention (to_q, to_k, to_v, to_out[0]) into a
    CrossAttention with the chapter's attribute names."""
    if isinstance(mine, _StandInAttention):
        mine.inner.load_state_dict(theirs.state_dict())
        return
    with torch.no_grad():
        for name in ("to_q", "to_k", "to_v"):
            getattr(mine, name).weight.copy_(getattr(theirs, name).weight)
        mine.to_out.weight.copy_(theirs.to_out[0].weight)
        mine.to_out.bias.copy_(theirs.to_out[0].bias)


def mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """A (B, L) bool padding mask as diffusers' additive attention bias (B, 1, L)."""
    return ((1 - mask.float()) * -10000.0)[:, None, :]


def check_cross_attention(CrossAttention) -> None:
    c = Checks("cross_attention")
    refuse_stand_in(c, "CrossAttention", CrossAttention)
    inputs = "CrossAttention(query_dim=8, context_dim=6, heads=2, head_dim=4)"
    attn = c.call(CrossAttention, 8, 6, 2, 4, inputs=inputs)
    n = sum(p.numel() for p in attn.parameters())
    # to_q 8*8, to_k 6*8, to_v 6*8 (no biases), to_out 8*8 + 8
    c.true(n == 232, "wrong number of parameters", inputs=inputs, expected=232, got=n,
           hint=DIAGNOSES["attn_params"])

    # By hand: one head, identity projections: queries attend to the most similar token.
    one = c.call(CrossAttention, 2, 2, 1, 2, inputs="CrossAttention(2, 2, heads=1, head_dim=2)")
    with torch.no_grad():
        for name in ("to_q", "to_k", "to_v", "to_out"):
            getattr(one, name).weight.copy_(torch.eye(2))
        one.to_out.bias.zero_()
    x = torch.tensor([[[3.0, 0.0], [0.0, 3.0]]])  # (1, 2, 2): two image positions
    context = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # (1, 3, 2): three tokens
    scores = torch.tensor([[3.0, 0.0, 15.0], [0.0, 3.0, 15.0]]) / math.sqrt(2)
    mask = torch.tensor([[True, True, False]])  # the third token is padding
    inputs = "x = [[3, 0], [0, 3]], context = [[1, 0], [0, 1], [5, 5]], identity projections, " \
             "mask = [True, True, False]"
    with torch.no_grad():
        out = c.call(one, x, context, mask, inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 2, "forward must return (out, attn)", inputs=inputs)
    out, weights = out
    c.tensor("attn", weights, shape=(1, 1, 2, 3), inputs=inputs)
    c.tensor("out", out, shape=(1, 2, 2), inputs=inputs)
    want = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    c.close("attn", weights[0, 0], want, atol=1e-5, inputs=inputs, mistakes={
        DIAGNOSES["mask_ignored"]:
            scores.softmax(-1),
        DIAGNOSES["no_sqrt_head_dim"]: (scores * math.sqrt(2)).masked_fill(~mask, -1e9).softmax(-1),
        DIAGNOSES["softmax_axis"]:
            scores.masked_fill(~mask, -1e9).softmax(0),
        DIAGNOSES["mask_inverted"]: scores.masked_fill(mask, -1e9).softmax(-1),
    })
    c.close("out", out[0], want @ context[0], atol=1e-5, inputs=inputs,
            hint=DIAGNOSES["values_from_text"])

    # Against diffusers' Attention with the same weights, several heads, with and without a mask.
    torch.manual_seed(3)
    theirs = _diffusers_attention(8, 6, 2, 4)
    with torch.no_grad():
        theirs.to_out[0].bias.normal_()
    copy_attention_weights(attn, theirs)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 8, generator=g)
    context = torch.randn(3, 7, 6, generator=g)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    inputs = "x (3, 5, 8), context (3, 7, 6), 2 heads of 4, weights copied from diffusers' Attention"
    with torch.no_grad():
        for m in (None, mask):
            what = inputs + (", mask None" if m is None else ", mask with 3 and 5 padding tokens in rows 1, 2")
            out = c.call(attn, x, context, m, inputs=what)
            want = theirs(x, context, attention_mask=None if m is None else mask_bias(m))
            c.tensor("out", out[0], shape=(3, 5, 8), inputs=what)
            c.tensor("attn", out[1], shape=(3, 2, 5, 7), inputs=what)
            c.close("out (vs diffusers' Attention)", out[0], want, atol=1e-5, inputs=what,
hint=DIAGNOSES["heads_split"])
            c.close("attn rows sum to 1", out[1].sum(-1), torch.ones(3, 2, 5), atol=1e-5, inputs=what)
        masked = out[1][1, :, :, 4:].abs().max() + out[1][2, :, :, 2:].abs().max()
        c.true(float(masked) < 1e-6, "padding tokens must get zero attention", inputs=inputs, got=f"{float(masked):.3g}")
        changed = context.clone()
        changed[1, 4:] = 100.0
        out2 = attn(x, changed, mask)[0]
        c.close("out with the padding tokens' features changed", out2, out[0], atol=1e-5, inputs=inputs,
                hint=DIAGNOSES["padding_ignored"])
    c.done()


# ----------------------------------------------------------------------------- 3 the U-Net block

class _StandInAttention(nn.Module):
    """diffusers' Attention with the chapter's CrossAttention signature, returning the
    attention maps too: the block check uses it in place of your CrossAttention."""

    def __init__(self, query_dim, context_dim, heads=4, head_dim=16):
        super().__init__()
        self.inner = _diffusers_attention(query_dim, context_dim, heads, head_dim)

    def forward(self, x, context, mask=None):
        a = self.inner
        bias = None if mask is None else a.prepare_attention_mask(mask_bias(mask), context.shape[1], x.shape[0])
        q, k, v = (a.head_to_batch_dim(p) for p in (a.to_q(x), a.to_k(context), a.to_v(context)))
        probs = a.get_attention_scores(q, k, bias)  # (B * heads, N, L)
        out = a.to_out[0](a.batch_to_head_dim(torch.bmm(probs, v)))
        return out, probs.view(x.shape[0], a.heads, x.shape[1], context.shape[1])


def diffusers_block(channels: int, context_dim: int, heads: int, groups: int):
    """diffusers' Transformer2DModel configured as the chapter's CrossAttnBlock: one layer, linear
    projections, cross-attention only (its second attention is switched off), GELU feed-forward."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    model = Transformer2DModel(num_attention_heads=heads, attention_head_dim=channels // heads, in_channels=channels,
                               num_layers=1, cross_attention_dim=context_dim, norm_num_groups=groups,
                               use_linear_projection=True, only_cross_attention=True, activation_fn="gelu",
                               attention_bias=False)
    with torch.no_grad():
        for p in model.transformer_blocks[0].attn2.to_out.parameters():
            p.zero_()
    return model


def copy_block_weights(mine: nn.Module, theirs: nn.Module) -> None:
    """Copy a diffusers_block's weights into a CrossAttnBlock with the chapter's names."""
    block = theirs.transformer_blocks[0]
    pairs = {"norm": theirs.norm, "proj_in": theirs.proj_in, "proj_out": theirs.proj_out,
             "norm_attn": block.norm1, "norm_ff": block.norm3}
    with torch.no_grad():
        for name, src in pairs.items():
            getattr(mine, name).weight.copy_(src.weight)
            getattr(mine, name).bias.copy_(src.bias)
        copy_attention_weights(mine.attn, block.attn1)
        for i, j in ((0, 0), (2, 2)):
            dst = mine.ff[i]
            src = block.ff.net[j].proj if j == 0 else block.ff.net[j]
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def check_block(CrossAttnBlock) -> None:
    """Your CrossAttention is replaced by diffusers' equivalent while this runs (it has its own check)."""
    refuse_stand_in(Checks("cross_attn_block"), "CrossAttnBlock", CrossAttnBlock)
    with substituted(CrossAttnBlock, CrossAttention=_StandInAttention):
        _check_block(CrossAttnBlock)


def _check_block(CrossAttnBlock) -> None:
    c = Checks("cross_attn_block")
    inputs = "CrossAttnBlock(channels=8, context_dim=6, heads=2, groups=4)"
    torch.manual_seed(5)
    block = c.call(CrossAttnBlock, 8, 6, 2, 4, inputs=inputs)
    n = sum(p.numel() for p in block.parameters())
    # norm 16, proj_in 72, norm_attn 16, attn 8*8 + 6*8 + 6*8 + 72, norm_ff 16, ff 8*32+32 + 32*8+8, proj_out 72
    want = 16 + 72 + 16 + (64 + 48 + 48 + 72) + 16 + (288 + 264) + 72
    c.true(n == want, "wrong number of parameters", inputs=inputs, expected=want, got=n,
           hint=DIAGNOSES["block_params"])
    for name, kind in (("norm", nn.GroupNorm), ("proj_in", nn.Linear), ("norm_attn", nn.LayerNorm),
                       ("norm_ff", nn.LayerNorm), ("proj_out", nn.Linear), ("ff", nn.Sequential)):
        c.true(isinstance(getattr(block, name, None), kind), f"block.{name} should be an nn.{kind.__name__}",
               inputs=inputs, got=type(getattr(block, name, None)).__name__)
    c.true(block.norm.eps == 1e-6, "block.norm should have eps=1e-6", inputs=inputs, got=block.norm.eps,
           hint=DIAGNOSES["groupnorm_eps"])
    theirs = diffusers_block(8, 6, 2, 4)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn(p.shape))  # not the initial values (LayerNorm weights 1, biases 0)
        for p in theirs.transformer_blocks[0].attn2.to_out.parameters():
            p.zero_()
    c.call(copy_block_weights, block, theirs, inputs="copying diffusers' weights into norm, proj_in, norm_attn, "
           "attn (to_q, to_k, to_v, to_out), norm_ff, ff[0], ff[2], proj_out")
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 3, 4, generator=g)
    context = torch.randn(2, 5, 6, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    inputs = "x (2, 8, 3, 4), context (2, 5, 6), mask with 2 padding tokens in row 1, " \
             "weights copied from diffusers' Transformer2DModel (cross-attention only)"
    with torch.no_grad():
        out = c.call(block, x, context, mask, inputs=inputs)
        c.tensor("output", out, shape=(2, 8, 3, 4), dtype=torch.float32, inputs=inputs)
        want = theirs(x, encoder_hidden_states=context, attention_mask=mask.float()).sample
        c.close("output (vs diffusers' Transformer2DModel)", out, want, atol=1e-4, inputs=inputs, mistakes={
            DIAGNOSES["no_block_residual"]: want - x,
        }, hint=DIAGNOSES["block_order"])
        maps = getattr(block, "last_attn", None)
        c.tensor("block.last_attn", maps, shape=(2, 2, 12, 5), inputs=inputs)
        c.close("block.last_attn in row 1, padding tokens", maps[1, :, :, 3:], torch.zeros(2, 12, 2), atol=1e-6,
                inputs=inputs, hint=DIAGNOSES["block_mask"])
    c.done()


# ----------------------------------------------------------------------------- 3a the text-conditioned U-Net

class TextBlockStandIn(nn.Module):
    """The U-Net check's stand-in for your CrossAttnBlock (which has its own check): GroupNorm
    (eps 1e-6), diffusers' Attention (queries from the pixels, keys and values from the text,
    padding tokens masked), residual: x + attn(norm(x) as tokens, context, mask) back to (B, C, H, W).
    Parameters: norm (weight, bias), attn.to_q, attn.to_k, attn.to_v, attn.to_out.0 (weight, bias)."""

    def __init__(self, channels, context_dim, heads=4, groups=8):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.attn = _diffusers_attention(channels, context_dim, heads, channels // heads)

    def forward(self, x, context, mask=None):
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        bias = None if mask is None else mask_bias(mask).to(x.dtype)
        return x + self.attn(h, context, attention_mask=bias).transpose(1, 2).reshape(B, C, H, W)


def _res_layout(name: str, a: int, b: int, e: int) -> list:
    """(name, shape, kind) of ch06.res_block(a, b, e)'s parameters, in order."""
    out = [(f"{name}.norm1.weight", (a,), "norm"), (f"{name}.norm1.bias", (a,), "bias"),
           (f"{name}.conv1.weight", (b, a, 3, 3), "w"), (f"{name}.conv1.bias", (b,), "bias"),
           (f"{name}.time_emb_proj.weight", (b, e), "w"), (f"{name}.time_emb_proj.bias", (b,), "bias"),
           (f"{name}.norm2.weight", (b,), "norm"), (f"{name}.norm2.bias", (b,), "bias"),
           (f"{name}.conv2.weight", (b, b, 3, 3), "w"), (f"{name}.conv2.bias", (b,), "bias")]
    if a != b:
        out += [(f"{name}.conv_shortcut.weight", (b, a, 1, 1), "w"), (f"{name}.conv_shortcut.bias", (b,), "bias")]
    return out


def _stand_in_layout(name: str, c: int, d: int) -> list:
    """(name, shape, kind) of TextBlockStandIn(c, d)'s parameters, in order."""
    return [(f"{name}.norm.weight", (c,), "norm"), (f"{name}.norm.bias", (c,), "bias"),
            (f"{name}.attn.to_q.weight", (c, c), "w"), (f"{name}.attn.to_k.weight", (c, d), "w"),
            (f"{name}.attn.to_v.weight", (c, d), "w"), (f"{name}.attn.to_out.0.weight", (c, c), "w"),
            (f"{name}.attn.to_out.0.bias", (c,), "bias")]


def text_unet_layout(in_channels: int, ch: int, mults, context_dim: int) -> list:
    """The parameters (name, shape, kind) that TextUNet's docstring states, in order, with
    TextBlockStandIn as the block: what the check compares your model's parameters with."""
    e, chans, L = 4 * ch, [ch * m for m in mults], len(mults)
    conv = lambda name, a, b, k: [(f"{name}.weight", (b, a, k, k), "w"), (f"{name}.bias", (b,), "bias")]
    out = [("time_embedding.linear_1.weight", (e, ch), "w"), ("time_embedding.linear_1.bias", (e,), "bias"),
           ("time_embedding.linear_2.weight", (e, e), "w"), ("time_embedding.linear_2.bias", (e,), "bias")]
    out += conv("conv_in", in_channels, ch, 3)
    prev = [ch] + chans[:-1]
    for i in range(L):
        out += _res_layout(f"down_res.{i}", prev[i], chans[i], e)
    for i in range(L):
        out += _stand_in_layout(f"down_attn.{i}", chans[i], context_dim)
    for i in range(L - 1):
        out += conv(f"downsamples.{i}", chans[i], chans[i], 3)
    c = chans[-1]
    out += _res_layout("mid_res1", c, c, e) + _stand_in_layout("mid_attn", c, context_dim) + \
        _res_layout("mid_res2", c, c, e)
    up_in = [chans[-1]] + chans[::-1][:-1]  # the channels of h before each up level's concatenation
    for j in range(L):
        out += _res_layout(f"up_res.{j}", up_in[j] + chans[L - 1 - j], chans[L - 1 - j], e)
    for j in range(L):
        out += _stand_in_layout(f"up_attn.{j}", chans[L - 1 - j], context_dim)
    for j in range(L - 1):
        out += conv(f"upsamples.{j}", chans[L - 1 - j], chans[L - 1 - j], 3)
    out += [("norm_out.weight", (ch,), "norm"), ("norm_out.bias", (ch,), "bias")] + conv("conv_out", ch, in_channels, 3)
    return out


def set_unet_weights(model: nn.Module, layout: list) -> None:
    """The check's given weights, by parameter order: smooth waves, GroupNorm weights near 1,
    small biases, weights of about 1.5 / sqrt(fan_in)."""
    with torch.no_grad():
        for k, (p, (_, _, kind)) in enumerate(zip(model.parameters(), layout)):
            wave = torch.sin(0.7 * torch.arange(p.numel(), dtype=_F64) + 1.3 * k).view(p.shape)
            if kind == "norm":
                value = 1 + 0.2 * wave
            elif kind == "bias":
                value = 0.1 * wave
            else:
                value = wave * 1.5 / math.sqrt(p[0].numel())
            p.copy_(value)


def unet_check_inputs(dtype=torch.float32):
    """The check's fixed inputs: z (2, 4, 8, 8), t = [3, 700], context (2, 5, 6), mask with the
    last two tokens of row 1 padding."""
    i = torch.arange(2 * 4 * 8 * 8, dtype=_F64)
    z = torch.sin(0.37 * i).view(2, 4, 8, 8).to(dtype)
    context = torch.cos(0.53 * torch.arange(2 * 5 * 6, dtype=_F64)).view(2, 5, 6).to(dtype)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return z, torch.tensor([3, 700]), context, mask


# model.forward's output at positions out.flatten()[::32] with set_unet_weights and
# unet_check_inputs, for TextUNet(TextBlockStandIn, 4, 8, (1, 2), 6, 2, 4): the reference run in
# float64 (a test of the course recomputes these numbers).
UNET_KNOWN_OUTPUT = [0.958759, -0.6906275, 0.8459512, -0.5874518, 0.7607069, -0.4308144, 0.7038112, -0.2243003,
                     1.319948, -0.8947906, 1.2141094, -0.7464074, 1.1291824, -0.5416905, 1.0659465, -0.2850937]


def _call_args(module: nn.Module, args: tuple, kwargs: dict, names: tuple) -> dict:
    """A module call's arguments under the check's `names`, matched by their position in the
    module's own `forward` signature whatever that calls them, passed by position or keyword."""
    try:
        signature = inspect.signature(module.forward)
        bound = signature.bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return dict(zip(names, args))
    positional, extra = [], {}
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            positional += list(bound.get(param.name, ()))
        elif param.kind is param.VAR_KEYWORD:
            extra = bound.get(param.name, {})
        else:
            positional.append(bound.get(param.name))
    got = {name: v for name, v in zip(names, positional) if v is not None}
    got.update({k: v for k, v in extra.items() if k in names and k not in got})
    return got


def _hooked(model: nn.Module, names: list):
    """Forward hooks on the named submodules: a log of (name, arguments by name, output) per call."""
    log, handles = [], []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        arg_names = ("input_tensor", "temb") if "_res" in name else ("x", "context", "mask") if "attn" in name \
            else ("input",)

        def pre(mod, args, kwargs, name=name, arg_names=arg_names):
            got = _call_args(mod, args, kwargs, arg_names)
            log.append({"name": name, "args": {k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                                               for k, v in got.items()}, "out": None})

        def post(mod, args, kwargs, out, name=name):
            for entry in reversed(log):
                if entry["name"] == name and entry["out"] is None:
                    entry["out"] = out.detach().clone() if isinstance(out, torch.Tensor) else out
                    break

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    return log, handles


def _unet_order(L: int) -> list:
    order = []
    for i in range(L):
        order += [f"down_res.{i}", f"down_attn.{i}"] + ([f"downsamples.{i}"] if i < L - 1 else [])
    order += ["mid_res1", "mid_attn", "mid_res2"]
    for j in range(L):
        order += [f"up_res.{j}", f"up_attn.{j}"] + ([f"upsamples.{j}"] if j < L - 1 else [])
    return order


def _order_hint(names: list) -> str | None:
    """A diagnosis from the order in which the U-Net's modules were called, if one fits."""
    if any(n.startswith("up") or n == "mid_res2" for n in names) and "mid_attn" not in names:
        return DIAGNOSES["unet_mid_attn"]
    for j in range(3):
        if f"upsamples.{j}" in names:
            k = names.index(f"upsamples.{j}")
            if f"up_attn.{j}" not in names[:k]:
                return DIAGNOSES["unet_upsample_order"]
    return None


def check_unet(TextUNet) -> None:
    """The assembly, with the check's stand-in block (TextBlockStandIn) in place of your
    CrossAttnBlock: structure, parameters, the data flow between the modules, properties, and
    the output for given weights."""
    c = Checks("text_unet")
    refuse_stand_in(c, "TextUNet", TextUNet)
    kw = dict(in_channels=4, ch=8, mults=(1, 2), context_dim=6, heads=2, groups=4)
    inputs = "TextUNet(block=ch06.TextBlockStandIn, in_channels=4, ch=8, mults=(1, 2), context_dim=6, heads=2, groups=4)"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = c.call(TextUNet, TextBlockStandIn, **kw, inputs=inputs)
    c.true(isinstance(model, nn.Module), "TextUNet(...) should be an nn.Module", inputs=inputs,
           got=type(model).__name__)
    for name, n in (("down_res", 2), ("down_attn", 2), ("downsamples", 1), ("up_res", 2), ("up_attn", 2),
                    ("upsamples", 1)):
        got = getattr(model, name, None)
        size = len(got) if isinstance(got, nn.ModuleList) else None
        c.true(size == n, f"model.{name} should be an nn.ModuleList of {n} modules (mults has 2 levels)",
               inputs=inputs, got=f"{type(got).__name__} of {size}" if size is not None else type(got).__name__,
               hint=DIAGNOSES["unet_last_downsample"] if name == "downsamples" and size == 2 else
               DIAGNOSES["unet_layout"])
    for name in ("time_proj", "time_embedding", "conv_in", "mid_res1", "mid_attn", "mid_res2", "norm_out", "conv_out"):
        c.true(isinstance(getattr(model, name, None), nn.Module), f"model.{name} should be a module", inputs=inputs,
               got=type(getattr(model, name, None)).__name__, hint=DIAGNOSES["unet_layout"])
    layout = text_unet_layout(4, 8, (1, 2), 6)
    got = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    for k in range(max(len(layout), len(got))):
        want_k = f"{layout[k][0]} {layout[k][1]}" if k < len(layout) else "no more parameters"
        got_k = f"{got[k][0]} {got[k][1]}" if k < len(got) else "no more parameters"
        c.true(k < len(layout) and k < len(got) and layout[k][1] == got[k][1],
               f"parameter {k} (in model.parameters() order) differs from the documented layout", inputs=inputs,
               expected=want_k, got=got_k, hint=DIAGNOSES["unet_layout"])

    # One forward pass, every module's inputs recorded.
    set_unet_weights(model, layout)
    z, t, context, mask = unet_check_inputs()
    inputs = inputs + ", the check's weights, z (2, 4, 8, 8), t = [3, 700], context (2, 5, 6), mask with 2 " \
                      "padding tokens in row 1"
    order = _unet_order(2)
    log, handles = _hooked(model, order)
    try:
        with torch.no_grad():
            out = model(z, t, context, mask)
    except Exception as e:
        names = [entry["name"] for entry in log]
        no_emb = [entry["name"] for entry in log if "_res" in entry["name"] and entry["args"].get("temb") is None]
        hint = DIAGNOSES["unet_emb"] if no_emb else _order_hint(names)
        c.fail(f"calling the model raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
               inputs=inputs, got=f"modules called before it: {names}", hint=hint)
    finally:
        for h in handles:
            h.remove()
    c.tensor("model(z, t, context, mask)", out, shape=(2, 4, 8, 8), dtype=torch.float32, inputs=inputs)
    names = [entry["name"] for entry in log]
    c.true(names == order, "the modules were not called in the documented order (each once)", inputs=inputs,
           expected=order, got=names, hint=_order_hint(names))
    calls = {entry["name"]: entry for entry in log}
    with torch.no_grad():
        emb = model.time_embedding(model.time_proj(t).to(z.dtype))
    for name in order:
        args, out_k = calls[name]["args"], calls[name]["out"]
        if "_res" in name:
            temb = args.get("temb")
            c.true(isinstance(temb, torch.Tensor), f"{name} was called without the time embedding", inputs=inputs,
                   got=f"temb = {type(temb).__name__}", hint=DIAGNOSES["unet_emb"])
            c.close(f"the time embedding given to {name}", temb, emb, atol=1e-5, inputs=inputs,
                    hint=DIAGNOSES["unet_emb"])
        if "attn" in name:
            c.true(isinstance(args.get("context"), torch.Tensor) and torch.equal(args["context"], context),
                   f"{name} must get the context", inputs=inputs, hint=DIAGNOSES["unet_context"])
            given = args.get("mask")
            c.true(isinstance(given, torch.Tensor) and torch.equal(given, mask), f"{name} must get the mask",
                   inputs=inputs, got="mask = None" if given is None else "another mask", hint=DIAGNOSES["unet_mask"])
    for i in range(2):
        c.close(f"the input of down_attn[{i}]", calls[f"down_attn.{i}"]["args"]["x"], calls[f"down_res.{i}"]["out"],
                atol=1e-6, inputs=inputs, hint=DIAGNOSES["unet_level"])
    for j in range(2):
        h = calls["mid_res2" if j == 0 else f"upsamples.{j - 1}"]["out"]
        skip = calls[f"down_attn.{1 - j}"]["out"]
        c.close(f"the input of up_res[{j}]", calls[f"up_res.{j}"]["args"]["input_tensor"], torch.cat([h, skip], 1),
                atol=1e-6, inputs=inputs, mistakes={DIAGNOSES["unet_skip_order"]: torch.cat([skip, h], 1)},
                hint=DIAGNOSES["unet_skip"])
        c.close(f"the input of up_attn[{j}]", calls[f"up_attn.{j}"]["args"]["x"], calls[f"up_res.{j}"]["out"],
                atol=1e-6, inputs=inputs, hint=DIAGNOSES["unet_level"])
    x_up, h_up = calls["upsamples.0"]["args"]["input"], calls["up_attn.0"]["out"]
    near = h_up if x_up.shape == h_up.shape else torch.nn.functional.interpolate(h_up, scale_factor=2.0, mode="nearest")
    c.close("the input of upsamples[0] (up_attn[0]'s output, or its nearest x2 upsampling)", x_up, near, atol=1e-6,
            inputs=inputs, hint=DIAGNOSES["unet_upsample_order"])

    # Properties: each example's own t and text, padding ignored, a batch of one.
    with torch.no_grad():
        out_t = model(z, torch.tensor([999, 700]), context, mask)
        changed = context.clone()
        changed[1, 0] += 1.0
        out_c = model(z, t, changed, mask)
        padded = context.clone()
        padded[1, 3:] = 50.0
        out_pad = model(z, t, padded, mask)
        out_one = c.call(model, z[1:], t[1:], context[1:], mask[1:], inputs=inputs + ", row 1 alone (a batch of one)")
    c.true((out_t[0] - out[0]).abs().max() > 1e-4 and (out_t[1] - out[1]).abs().max() < 1e-5,
           "the output must depend on each example's own timestep (and only on it)", inputs="t[0] changed to 999",
           hint=DIAGNOSES["unet_emb"])
    c.true((out_c[1] - out[1]).abs().max() > 1e-4 and (out_c[0] - out[0]).abs().max() < 1e-5,
           "the output must depend on each example's own text (and only on it)",
           inputs="context[1, 0] changed by 1", hint=DIAGNOSES["unet_context"])
    c.close("the output with row 1's padding tokens set to 50", out_pad, out, atol=1e-5, inputs=inputs,
            hint=DIAGNOSES["unet_mask"])
    c.tensor("the output for a batch of one", out_one, shape=(1, 4, 8, 8), inputs=inputs + ", row 1 alone")
    c.close("the output for row 1 alone", out_one[0], out[1], atol=1e-5, inputs=inputs + ", row 1 alone")
    # The output for the given weights, against the reference's (run in float64).
    known = torch.tensor(UNET_KNOWN_OUTPUT, dtype=_F64)
    c.close("model(z, t, context, mask).flatten()[::32] with the check's weights", out.flatten()[::32], known,
            **tolerance(torch.float32, scale=float(known.abs().max()), ops=16), inputs=inputs,
            hint=DIAGNOSES["unet_computation"])
    # The same model in float64 (model.double(), float64 inputs): the contract's dtypes.
    z64, t64, context64, mask64 = unet_check_inputs(torch.float64)
    what = inputs + "; model.double() with float64 z and context"
    try:
        with torch.no_grad():
            out64 = copy.deepcopy(model).double()(z64, t64, context64, mask64)
    except Exception as e:  # noqa: BLE001 - the learner's code raised: say what, with the likely cause
        c.fail(f"calling model.double() raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
               inputs=what, hint=DIAGNOSES["unet_dtype"])
    c.tensor("the output of model.double()", out64, shape=(2, 4, 8, 8), dtype=torch.float64, inputs=what)
    c.close("model.double()(z, t, context, mask).flatten()[::32]", out64.flatten()[::32], known,  # known: 7 digits
            **tolerance(torch.float32, scale=float(known.abs().max()), ops=16), inputs=what,
            hint=DIAGNOSES["unet_dtype"])
    # Other depths: one level (no down- or upsampling) and three (8 -> 4 -> 2 -> 4 -> 8).
    for mults in ((1,), (1, 2, 2)):
        what = f"TextUNet(ch06.TextBlockStandIn, 4, 8, mults={mults}, context_dim=6, heads=2, groups=4), z (2, 4, 8, 8)"
        with torch.random.fork_rng():
            torch.manual_seed(1)
            deeper = c.call(TextUNet, TextBlockStandIn, 4, 8, mults, 6, 2, 4, inputs=what)
        shapes = [tuple(p.shape) for p in deeper.parameters()]
        c.true(shapes == [s for _, s, _ in text_unet_layout(4, 8, mults, 6)],
               "the parameters differ from the documented layout", inputs=what, hint=DIAGNOSES["unet_layout"])
        with torch.no_grad():
            got = c.call(deeper, z, t, context, mask, inputs=what)
        c.tensor("output", got, shape=(2, 4, 8, 8), inputs=what)
    c.done()


# ----------------------------------------------------------------------------- 3b training loss

class _ContextRecorder(nn.Module):
    """A stand-in U-Net: records (z_t, t, context, mask), returns 0.5 z_t + w * context mean."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.3, dtype=_F64))
        self.calls = []

    def forward(self, z_t, t, context, mask):
        self.calls.append(tuple(v.detach().clone() for v in (z_t, t, context, mask)))
        return 0.5 * z_t + self.w * context.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def check_training_loss(training_loss) -> None:
    c = Checks("training_loss")
    refuse_stand_in(c, "training_loss", training_loss)
    T, B, L, D = 10, 2000, 4, 3
    ab = torch.linspace(0.95, 0.05, T, dtype=_F64)
    g = torch.Generator().manual_seed(7)
    z0 = torch.randint(0, 2, (B, 2, 2, 2), generator=g).to(_F64) * 2 - 1
    context = (torch.arange(B, dtype=_F64) + 1).view(B, 1, 1).expand(B, L, D).clone()  # row b holds b + 1
    mask = torch.ones(B, L, dtype=torch.bool)
    null_context = torch.zeros(1, L, D, dtype=_F64)
    null_mask = torch.tensor([[True, True, False, False]])
    base = "z0 (2000, 2, 2, 2) of +-1, context row b filled with b + 1, empty caption: zeros with 2 real tokens, " \
           "alpha_bars = linspace(0.95, 0.05, 10), a stand-in U-Net"
    for p in (0.0, 1.0, 0.3):
        unet = _ContextRecorder()
        inputs = f"{base}, p_uncond = {p}"
        saved, saved_mask = context.clone(), mask.clone()
        before = torch.random.get_rng_state()
        loss = c.call(training_loss, unet, z0, context, mask, null_context, null_mask, ab, p,
                      torch.Generator().manual_seed(8), inputs=inputs)
        c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used: every "
               "draw must come from the generator passed in", inputs=inputs, hint=DIAGNOSES["global_rng"])
        c.tensor("loss", loss, shape=(), dtype=_F64, inputs=inputs)
        c.true(torch.equal(context, saved), "training_loss must not modify context in place", inputs=inputs,
               hint=DIAGNOSES["inputs_in_place"])
        c.true(torch.equal(mask, saved_mask), "training_loss must not modify mask in place", inputs=inputs,
               hint=DIAGNOSES["inputs_in_place"])
        c.true(len(unet.calls) == 1, "the U-Net should be called once, on the whole batch", inputs=inputs,
               got=f"{len(unet.calls)} calls")
        z_t, t, ctx, msk = unet.calls[0]
        c.tensor("context passed to the U-Net", ctx, shape=(B, L, D), inputs=inputs)
        c.tensor("mask passed to the U-Net", msk, shape=(B, L), dtype=torch.bool, inputs=inputs)
        dropped = (ctx == 0).all(dim=(1, 2))
        kept_ok = torch.equal(ctx[~dropped], context[~dropped])
        c.true(kept_ok and bool((msk[dropped] == null_mask).all()) and bool(msk[~dropped].all()),
               "each row must be either its own caption (context and mask) or the empty caption (null_context and "
               "null_mask)", inputs=inputs, hint=DIAGNOSES["drop_rows"])
        frac = dropped.double().mean().item()
        c.true(abs(frac - p) < 0.04, "the fraction of captions replaced by the empty caption should be p_uncond",
               inputs=inputs, expected=f"about {p:.2f}", got=f"{frac:.3f}",
               hint=DIAGNOSES["drop_below"])
        c.tensor("t", t, shape=(B,), dtype=torch.int64, inputs=inputs)
        c.true(bool(((t >= 0) & (t < T)).all()) and len(t.unique()) == T, "t must cover {0, ..., T-1}", inputs=inputs,
               got=f"{len(t.unique())} distinct values from {int(t.min())} to {int(t.max())}",
               hint=DIAGNOSES["t_uniform"])
        a = ab[t].view(-1, 1, 1, 1)
        eps = (z_t - a.sqrt() * z0) / (1 - a).sqrt()
        m, s = eps.mean().item(), eps.std().item()
        c.true(abs(m) < 0.05 and abs(s - 1) < 0.05, "the noise in z_t is not standard normal", inputs=inputs,
               got=f"implied eps with mean {m:.3f}, std {s:.3f}",
               hint=DIAGNOSES["implied_noise"])
        eps_hat = 0.5 * z_t + 0.3 * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        c.close("loss", loss, ((eps_hat - eps) ** 2).mean(), atol=1e-9, inputs=inputs, mistakes={
            DIAGNOSES["predicts_z0"]: ((eps_hat - z0) ** 2).mean(),
            DIAGNOSES["loss_per_example"]: ((eps_hat - eps) ** 2).flatten(1).sum(1).mean()})
    c.call(loss.backward, inputs=inputs)
    c.true(unet.w.grad is not None, "no gradient reached the U-Net's parameters", inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 4 the sampling loop

class _FakeScheduler:
    """Records every call; timesteps [9, 5, 1]; init_noise_sigma 2; scale_model_input halves;
    step returns sample - 0.1 * model_output."""

    def __init__(self):
        self.init_noise_sigma = 2.0
        self.timesteps = torch.tensor([], dtype=torch.long)
        self.log = []

    def set_timesteps(self, num_steps, device=None):
        self.log.append(("set_timesteps", num_steps))
        self.timesteps = torch.tensor([9, 5, 1])[:num_steps]

    def scale_model_input(self, sample, timestep):
        self.log.append(("scale_model_input", sample.clone(), int(timestep)))
        return 0.5 * sample

    def step(self, model_output, timestep, sample, **kwargs):
        from types import SimpleNamespace
        self.log.append(("step", model_output.clone(), int(timestep), sample.clone()))
        return SimpleNamespace(prev_sample=sample - 0.1 * model_output)


def check_generate(generate) -> None:
    c = Checks("generate")
    refuse_stand_in(c, "generate", generate)
    prompts = ["a red seven", "a blue two"]
    texts = []

    def encode_text(batch):
        """context row: the prompt's length in every feature ("" -> 0); mask: the last of 4 tokens is padding."""
        texts.append(list(batch))
        context = torch.tensor([float(len(p)) for p in batch]).view(-1, 1, 1).expand(-1, 4, 3).clone()
        mask = torch.tensor([[True, True, True, False]]).expand(len(batch), 4).clone()
        return context, mask

    unet_calls = []

    def unet(latent_input, t, context, mask):
        if context.shape[0] != latent_input.shape[0]:
            raise ValueError(f"the U-Net got {latent_input.shape[0]} rows of latents but {context.shape[0]} rows of "
                             "context: the empty caption must be encoded once per prompt ([''] * B)")
        unet_calls.append((latent_input.clone(), t.clone(), context.clone(), mask.clone()))
        return latent_input + context.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1) / 100

    decoded = []

    def decode(z):
        decoded.append(z.clone())
        return z * 10

    scheduler = _FakeScheduler()
    g = torch.Generator().manual_seed(9)
    inputs = ("prompts = ['a red seven', 'a blue two'], a stand-in scheduler (timesteps 9, 5, 1; init_noise_sigma 2), "
              "a stand-in U-Net, guidance_scale = 3, num_steps = 3, latent_shape = (2, 2, 2), scale_factor = 0.5")
    out = c.call(generate, prompts, encode_text, unet, decode, scheduler, guidance_scale=3.0, num_steps=3,
                 latent_shape=(2, 2, 2), scale_factor=0.5, generator=g, inputs=inputs)
    c.true(sorted(map(tuple, texts)) == sorted([tuple(prompts), ("", "")]),
           "encode_text must be called on the prompts and on as many empty captions", inputs=inputs,
           got=f"calls with {texts}", hint=DIAGNOSES["empty_caption"])
    c.true(("set_timesteps", 3) in scheduler.log, "call scheduler.set_timesteps with num_steps first", inputs=inputs)
    c.true(len(unet_calls) == 3, "the U-Net must be called once per timestep, on the doubled batch", inputs=inputs,
           got=f"{len(unet_calls)} calls")
    scaled = [e for e in scheduler.log if e[0] == "scale_model_input"]
    c.true(len(scaled) == 3, "call scheduler.scale_model_input on the latents at every step", inputs=inputs,
           got=f"{len(scaled)} calls", hint=DIAGNOSES["scale_model_input"])
    start = torch.randn((2, 2, 2, 2), generator=torch.Generator().manual_seed(9)) * 2.0
    first = scaled[0][1]
    c.tensor("the first latents given to scale_model_input", first, shape=(4, 2, 2, 2), inputs=inputs)
    c.close("the starting latents (both halves)", first, torch.cat([start, start]), atol=1e-6, inputs=inputs, mistakes={
        DIAGNOSES["no_init_noise_sigma"]: torch.cat([start, start]) / 2,
    }, hint=DIAGNOSES["start_latents"])
    steps = [e for e in scheduler.log if e[0] == "step"]
    c.true([e[2] for e in steps] == [9, 5, 1], "call scheduler.step once per timestep, in scheduler.timesteps' order",
           inputs=inputs, got=[e[2] for e in steps])
    sample = start
    for k, (latent_input, t, context, mask) in enumerate(unet_calls):
        at = f"{inputs}; step {k}"
        c.tensor("t given to the U-Net", t, shape=(4,), dtype=torch.int64, inputs=at)
        c.true(bool((t == [9, 5, 1][k]).all()), "the U-Net must get the current timestep for all 2B rows", inputs=at,
               got=t.tolist())
        c.close("the U-Net's latent input", latent_input, 0.5 * torch.cat([sample, sample]), atol=1e-5, inputs=at,
                hint=DIAGNOSES["scale_model_input"])
        lengths = context[:, 0, 0].tolist()
        c.true(sorted(lengths) == sorted([0.0, 0.0, 11.0, 10.0]) and torch.equal(mask, mask[:1].expand(4, 4)),
               "the U-Net must see the unconditional (empty caption) and conditional contexts together, 2B rows",
               inputs=at, got=f"contexts of prompt lengths {lengths}",
               hint=DIAGNOSES["doubled_batch"])
        eps = latent_input + context.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1) / 100
        empty = context[:, 0, 0] == 0
        eps_u, eps_c = eps[empty], eps[~empty]
        want = eps_u + 3.0 * (eps_c - eps_u)
        c.close("eps_hat given to scheduler.step", steps[k][1], want, atol=1e-5, inputs=at, mistakes={
            DIAGNOSES["guidance_inverted"]:
                eps_c + 3.0 * (eps_u - eps_c),
            DIAGNOSES["both_halves"]: 3.0 * eps_c,
        })
        c.close("sample given to scheduler.step", steps[k][3], sample, atol=1e-5, inputs=at,
                hint=DIAGNOSES["step_latents"])
        sample = steps[k][3] - 0.1 * steps[k][1]
    c.true(len(decoded) == 1, "decode must be called once, on the final latents", inputs=inputs,
           got=f"{len(decoded)} calls")
    c.close("the latents given to decode", decoded[0], sample / 0.5, atol=1e-5, inputs=inputs, mistakes={
        DIAGNOSES["scale_multiplied"]:
            sample * 0.5,
        DIAGNOSES["scale_not_divided"]: sample,
    })
    c.close("generate's result", out, decoded[0] * 10, atol=1e-5, inputs=inputs, hint=DIAGNOSES["return_decoded"])
    c.done()


class _NoisingScheduler(_FakeScheduler):
    """_FakeScheduler with timesteps [12, 9, 5, 1] and add_noise(x, noise, t) = x + noise * t / 10."""

    def set_timesteps(self, num_steps, device=None):
        self.log.append(("set_timesteps", num_steps))
        self.timesteps = torch.tensor([12, 9, 5, 1])[:num_steps]

    def add_noise(self, original, noise, timesteps):
        self.log.append(("add_noise", original.clone(), noise.clone(), torch.as_tensor(timesteps).clone()))
        return original + noise * torch.as_tensor(timesteps).to(noise).view(-1, 1, 1, 1) / 10


def check_img2img(img2img) -> None:
    c = Checks("img2img")
    refuse_stand_in(c, "img2img", img2img)
    prompts = ["a red seven", "a blue two"]

    def encode_text(batch):
        """context row: the prompt's length in every feature ("" -> 0); mask: all 3 tokens real."""
        return (torch.tensor([float(len(p)) for p in batch]).view(-1, 1, 1).expand(-1, 3, 2).clone(),
                torch.ones(len(batch), 3, dtype=torch.bool))

    def unet(latent_input, t, context, mask):
        return latent_input + context.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1).to(latent_input) / 100

    def replay(start, timesteps, g=3.0):
        """generate's loop on the stand-ins from `start`, guidance g, with scale_model_input halving."""
        z = start
        lengths = torch.tensor([0.0, 0.0, 11.0, 10.0]).view(-1, 1, 1, 1)
        for t in timesteps:
            eps_u, eps_c = (0.5 * torch.cat([z, z]) + lengths + t / 100).chunk(2)
            z = z - 0.1 * (eps_u + g * (eps_c - eps_u))
        return z

    z0 = torch.linspace(-1, 1, 16).view(2, 2, 2, 2)
    noise = torch.randn((2, 2, 2, 2), generator=torch.Generator().manual_seed(5))
    common = "prompts = ['a red seven', 'a blue two'], image_latents (2, 2, 2, 2), a stand-in scheduler " \
             "(timesteps 12, 9, 5, 1; init_noise_sigma 2; add_noise(x, noise, t) = x + noise t / 10), " \
             "a stand-in U-Net, guidance_scale = 3, num_steps = 4, scale_factor = 0.5"
    kw = dict(guidance_scale=3.0, num_steps=4, scale_factor=0.5)

    # strength 0.75: the last 3 timesteps, from the latents noised to t = 9
    scheduler = _NoisingScheduler()
    inputs = f"{common}, strength = 0.75"
    out = c.call(img2img, z0.clone(), prompts, encode_text, unet, lambda z: z * 10, scheduler, strength=0.75,
                 generator=torch.Generator().manual_seed(5), **kw, inputs=inputs)
    steps = [e[2] for e in scheduler.log if e[0] == "step"]
    c.true(steps == [9, 5, 1], "with strength 0.75 and 4 steps, step through the last 3 timesteps (9, 5, 1)",
           inputs=inputs, got=f"steps at {steps}", hint=DIAGNOSES[
               "i2i_strength_inverted" if steps == [1] else "i2i_kept_steps"])
    noised = [e for e in scheduler.log if e[0] == "add_noise"]
    c.true(len(noised) == 1, "call scheduler.add_noise once, on the given latents", inputs=inputs,
           got=f"{len(noised)} calls", hint=DIAGNOSES["i2i_add_noise"])
    if noised:
        _, original, drawn, t = noised[0]
        c.close("the latents given to add_noise", original, z0, atol=1e-6, inputs=inputs,
                hint=DIAGNOSES["i2i_add_noise"])
        c.close("the noise given to add_noise", drawn, noise, atol=1e-6, inputs=inputs,
                hint=DIAGNOSES["i2i_noise_draw"])
        c.true(tuple(t.shape) == (2,) and bool((t == 9).all()), "noise to the first kept timestep, as a (B,) tensor",
               inputs=inputs, got=t.tolist(), hint=DIAGNOSES["i2i_noise_timestep"])
    scaled = [e for e in scheduler.log if e[0] == "scale_model_input"]
    if scaled:
        start = z0 + noise * 0.9
        c.close("the first latents given to scale_model_input (both halves)", scaled[0][1], torch.cat([start, start]),
                atol=1e-5, inputs=inputs, mistakes={
                    DIAGNOSES["i2i_sigma_twice"]: torch.cat([start, start]) * 2,
                    DIAGNOSES["i2i_noise_timestep"]: torch.cat([z0 + noise * 1.2] * 2),
                }, hint=DIAGNOSES["i2i_add_noise"])
    want = replay(z0 + noise * 0.9, [9, 5, 1])
    c.close("img2img's result", out, want / 0.5 * 10, atol=1e-4, inputs=inputs, mistakes={
        DIAGNOSES["both_halves"]: replay(z0 + noise * 0.9, [9, 5, 1], g=1.0) / 0.5 * 10,
        DIAGNOSES["scale_not_divided"]: want * 10,
    }, hint=DIAGNOSES["return_decoded"])

    # strength 1: generate's start, noise * init_noise_sigma, all 4 timesteps
    scheduler = _NoisingScheduler()
    inputs = f"{common}, strength = 1"
    out = c.call(img2img, z0.clone(), prompts, encode_text, unet, lambda z: z * 10, scheduler, strength=1.0,
                 generator=torch.Generator().manual_seed(5), **kw, inputs=inputs)
    scaled = [e for e in scheduler.log if e[0] == "scale_model_input"]
    c.true(len(scaled) == 4, "with strength 1 run all num_steps timesteps", inputs=inputs, got=f"{len(scaled)} steps",
           hint=DIAGNOSES["i2i_kept_steps"])
    if scaled:
        c.close("the first latents given to scale_model_input (both halves)", scaled[0][1],
                torch.cat([noise, noise]) * 2, atol=1e-6, inputs=inputs, mistakes={
                    DIAGNOSES["i2i_full_strength"]: torch.cat([z0 + noise * 1.2] * 2),
                    DIAGNOSES["no_init_noise_sigma"]: torch.cat([noise, noise]),
                }, hint=DIAGNOSES["i2i_full_strength"])
    c.close("img2img's result", out, replay(noise * 2, [12, 9, 5, 1]) / 0.5 * 10, atol=1e-4, inputs=inputs)

    # strength 0: nothing runs, the input decoded
    scheduler = _NoisingScheduler()
    inputs = f"{common}, strength = 0"
    out = c.call(img2img, z0.clone(), prompts, encode_text, unet, lambda z: z * 10, scheduler, strength=0.0,
                 generator=torch.Generator().manual_seed(5), **kw, inputs=inputs)
    c.close("img2img's result", out, z0 / 0.5 * 10, atol=1e-5, inputs=inputs, hint=DIAGNOSES["i2i_strength_inverted"])
    c.done()
