"""Chapter 06 hidden checks: the learner's autoencoder, block and sampling loop against the
reference (weights copied in), cross-attention against diffusers' Attention, the training
loss through a recording stand-in; inputs drawn from the grading seed; catalogued mistakes
recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back, and harness snippets (`run`, `twin`) do in the kernel what must
happen there, built from torch and diffusers alone: copy the reference's weights into the
learner's models, build the block with diffusers' attention in place of the learner's
`CrossAttention`, record what `training_loss` hands its U-Net and take its gradient, and
give `generate` a text encoder, U-Net, decoder and diffusers scheduler of which the judge
keeps an identical copy for the reference (DDIM, then Euler, whose init_noise_sigma and
scale_model_input are not trivial)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from autograder.hidden import (draw_int, draw_size, family, generators, grade_choice, hidden_seed, in_kernel,
                               load_reference_weights)
from autograder.mutants import known_mistakes
from autograder.remote import RemoteError, run, twin
from . import solutions as ref
from workbook.ch06.checks import _diffusers_attention, copy_attention_weights, mask_bias
from workbook import ch06
from workbook.checks import Checks, describe, tolerance

FAMILIES = {
    "TextUNet": ("a batch of B >= 2 with a padding mask", "a batch of one without a mask"),
    "img2img": ("strength * steps a fraction above one half", "strength * steps a fraction below one half",
                "strength 1", "strength 0"),
}

CH = "06_latent_diffusion"
_gen = generators(CH)
_F64 = torch.float64



def _random_mask(g: torch.Generator, B: int, L: int) -> torch.Tensor:
    """(B, L) bool: each row keeps a random number (>= 2) of leading real tokens."""
    lengths = torch.randint(2, L + 1, (B,), generator=g)
    return torch.arange(L)[None, :] < lengths[:, None]


def _padded_mask(g: torch.Generator, B: int, L: int) -> torch.Tensor:
    """(B, L) bool, L >= 3: each row keeps a random number (>= 2) of leading real tokens, and
    row 0 always has padding (at most L - 1 real tokens), so that a mask left out shows."""
    assert L >= 3
    lengths = torch.randint(2, L + 1, (B,), generator=g)
    lengths[0] = draw_int(g, 2, L)
    return torch.arange(L)[None, :] < lengths[:, None]



# ----------------------------------------------------------------------------- weights

# The reference's state dict (names and shapes) into the learner's model, in the kernel.
# With `StandIn` given, the keys of a CrossAttention (to_q, to_k, to_v, to_out) are moved
# to the diffusers Attention inside each stand-in that replaced the learner's CrossAttention.
LOAD_STATE = '06_latent_diffusion.load_state'


def _load(c: Checks, mine, theirs: nn.Module, inputs: str, stand_in=None) -> None:
    try:
        run(LOAD_STATE, model=mine, state=dict(theirs.state_dict()), StandIn=stand_in)
    except (RemoteError, NotImplementedError) as err:
        c.fail("the reference's weights do not fit your model: the layers differ from the stated ones",
               inputs=inputs, got=str(err).splitlines()[0][:300] if str(err) else type(err).__name__,
               hint=ch06.DIAGNOSES["layers_fit"])


# ----------------------------------------------------------------------------- 1 autoencoder

def autoencoder(KLAutoencoder, autoencoder_loss, latent_scale_factor) -> None:
    c = Checks("autoencoder (hidden)")
    g = _gen("autoencoder")
    C, ch, lat = draw_int(g, 1, 4), 4 * draw_int(g, 1, 4), draw_int(g, 2, 6)
    inputs = f"KLAutoencoder({C}, {ch}, {lat}) with the reference's weights"
    with torch.random.fork_rng():
        torch.manual_seed(hidden_seed(f"{CH}/autoencoder/init"))
        theirs = ref.KLAutoencoder(C, ch, lat)
    mine = c.call(KLAutoencoder, C, ch, lat, inputs=inputs)
    x = torch.randn(3, C, 16, 8, generator=g)
    noise = torch.randn(3, lat, 4, 2, generator=g)
    with torch.no_grad():
        theirs.encoder[-1].bias[lat:] += 4.0 * torch.randn(lat, generator=g)  # spread of log-variances
    _load(c, mine, theirs, inputs)
    got = c.call(mine.encode, x, inputs=inputs + f", x (3, {C}, 16, 8)")
    with torch.no_grad():
        want = theirs.encode(x)
    c.true(isinstance(got, tuple) and len(got) == 2, "encode must return (mean, logvar)", inputs=inputs)
    c.close("mean", got[0], want[0], atol=1e-5, inputs=inputs)
    with torch.no_grad():
        c.close("logvar", got[1], want[1], atol=1e-5, inputs=inputs,
                mistakes=known_mistakes(CH, "KLAutoencoder", lambda m: _mutant_ae(m, theirs).encode(x)[1]))
    got = c.call(mine, x, noise, inputs=inputs + ", forward(x, noise)")
    with torch.no_grad():
        want = theirs(x, noise)
        c.true(isinstance(got, tuple) and len(got) == 3, "forward must return (x_hat, mean, logvar)", inputs=inputs)
        c.close("x_hat", got[0], want[0], atol=1e-4, inputs=inputs,
                mistakes=known_mistakes(CH, "KLAutoencoder", lambda m: _mutant_ae(m, theirs)(x, noise)[0]))
    # The clamp: log-variance biases pushed beyond [-30, 20] (one channel above, one below).
    gc = _gen("autoencoder/clamp")
    push = 90.0 * torch.rand(lat, generator=gc) - 50.0  # in [-50, 40]
    push[0] = 25.0 + 15.0 * float(torch.rand(1, generator=gc))
    push[1] = -35.0 - 15.0 * float(torch.rand(1, generator=gc))
    with torch.no_grad():
        theirs.encoder[-1].bias[lat:] = push
    what = inputs + f", x (3, {C}, 16, 8), the encoder's last bias on the log-variance channels set to " \
                    f"{[round(v, 1) for v in push.tolist()]} (beyond [-30, 20])"
    _load(c, mine, theirs, what)
    got = c.call(mine.encode, x, inputs=what)
    with torch.no_grad():
        want = theirs.encode(x)
    c.true(isinstance(got, tuple) and len(got) == 2, "encode must return (mean, logvar)", inputs=what)
    c.tensor("logvar", got[1], shape=tuple(want[1].shape), inputs=what)
    c.close("logvar", got[1], want[1], atol=1e-5, inputs=what,
            hint=ch06.DIAGNOSES["clamp"])
    got = c.call(mine, x, noise, inputs=what + ", forward(x, noise)")
    with torch.no_grad():
        want = theirs(x, noise)
    c.true(isinstance(got, tuple) and len(got) == 3, "forward must return (x_hat, mean, logvar)", inputs=what)
    c.close("logvar returned by forward", got[2], want[2], atol=1e-5, inputs=what,
            hint=ch06.DIAGNOSES["forward_clamp"])
    c.close("x_hat", got[0], want[0], atol=1e-4 * max(1.0, float(want[0].abs().max())), rtol=1e-3, inputs=what,
            hint=ch06.DIAGNOSES["forward_clamp"])
    # B >= 3 and 12 latent elements per example: a KL summed over the batch (B times the
    # mean), one without its factor 0.5 (twice) and one averaged over the elements (1/12)
    # give distinct values.
    B = draw_int(g, 3, 8)
    x = torch.randn(B, 3, 4, 6, generator=g, dtype=_F64)
    x_hat = torch.randn(B, 3, 4, 6, generator=g, dtype=_F64)
    mean = torch.randn(B, 3, 2, 2, generator=g, dtype=_F64)
    logvar = torch.randn(B, 3, 2, 2, generator=g, dtype=_F64)
    w = float(torch.rand(1, generator=g)) + 0.1
    inputs = f"random x, x_hat (B={B}, 3, 4, 6), mean, logvar ({B}, 3, 2, 2), kl_weight = {w:.3f}"
    got = c.call(autoencoder_loss, x, x_hat, mean, logvar, w, inputs=inputs)
    c.true(isinstance(got, tuple) and len(got) == 3, "autoencoder_loss must return (loss, rec, kl)", inputs=inputs)
    want = ref.autoencoder_loss(x, x_hat, mean, logvar, w)
    losses = lambda f: torch.stack(list(f(x, x_hat, mean, logvar, w)))
    for part, name in zip(got, ("loss", "rec", "kl")):
        c.true(isinstance(part, torch.Tensor) and part.dim() == 0, f"{name} must be a scalar tensor", inputs=inputs,
               got=f"{type(part).__name__}: {describe(part)}", hint=ch06.DIAGNOSES["loss_parts_tensors"])
        c.tensor(name, part, shape=(), inputs=inputs)
    parts = [part.to(_F64) for part in got]
    c.close("(loss, rec, kl)", torch.stack(parts), torch.stack(list(want)),
            atol=1e-9, inputs=inputs, mistakes=known_mistakes(CH, "autoencoder_loss", losses))
    # a mean clearly away from 0 (|mean| >= 1, spread <= 2.5), so that the RMS and the std differ
    sign = 1.0 if float(torch.rand(1, generator=g)) < 0.5 else -1.0
    # and a spread that varies from example to example, as real latents' does
    base = 0.5 + 2 * float(torch.rand(1, generator=g))
    spread = base * (0.5 + torch.rand(400, 1, 1, 1, generator=g))
    Z = sign * (1 + 2 * float(torch.rand(1, generator=g))) + spread * torch.randn(400, 4, 3, 3, generator=g)
    # and channels with different means (summing to 0): the std of all elements is not the
    # mean of the per-channel stds
    offsets = torch.tensor([-1.0, -0.3, 0.3, 1.0])[torch.randperm(4, generator=g)] * base
    Z = Z + offsets.view(1, 4, 1, 1)
    inputs = "Z (400, 4, 3, 3) with a random mean (|mean| >= 1), a spread varying across examples and " \
             f"channel offsets {[round(v, 2) for v in offsets.tolist()]}"
    s = c.call(latent_scale_factor, Z.clone(), inputs=inputs)
    c.true(isinstance(s, float), "latent_scale_factor must return a Python float", inputs=inputs,
           got=type(s).__name__)
    c.close("scale factor", torch.tensor(s), torch.tensor(ref.latent_scale_factor(Z)), atol=1e-4, rtol=1e-3,
            inputs=inputs, mistakes=known_mistakes(CH, "latent_scale_factor", lambda f: torch.tensor(float(f(Z)))))
    c.done()


def _mutant_ae(cls, theirs):
    m = cls(*_ae_args(theirs))
    m.load_state_dict(theirs.state_dict())
    return m


def _ae_args(model):
    """(in_channels, ch, latent_channels) of a reference KLAutoencoder."""
    return model.encoder[0].in_channels, model.encoder[0].out_channels, model.decoder[0].in_channels


# ----------------------------------------------------------------------------- 2 cross-attention

# diffusers' Attention weights (to_q, to_k, to_v, to_out[0]) into the learner's CrossAttention.
COPY_ATTENTION = '06_latent_diffusion.copy_attention'


def cross_attention(CrossAttention) -> None:
    c = Checks("cross_attention (hidden)")
    g = _gen("cross_attention")
    heads, head_dim = draw_int(g, 2, 5), 2 * draw_int(g, 1, 5)   # >= 2 heads: with one, merging skips no transpose
    dq, dc = draw_int(g, 3, 12), draw_int(g, 3, 12)
    B, N, L = draw_int(g, 1, 4), draw_int(g, 2, 10), draw_int(g, 3, 10)   # N >= 2 queries: with one, a merge order cannot show
    inputs = f"CrossAttention({dq}, {dc}, heads={heads}, head_dim={head_dim}), x ({B}, {N}, {dq}), " \
             f"context ({B}, {L}, {dc}), weights from diffusers' Attention"
    with torch.random.fork_rng():
        torch.manual_seed(hidden_seed(f"{CH}/cross_attention/init"))
        theirs = _diffusers_attention(dq, dc, heads, head_dim)
        with torch.no_grad():
            theirs.to_out[0].bias.normal_()
            for p in theirs.parameters():
                p.mul_(2.0)  # sharper attention than at initialisation
        ref_attn = ref.CrossAttention(dq, dc, heads, head_dim)
    mine = c.call(CrossAttention, dq, dc, heads, head_dim, inputs=inputs)
    weights = {"to_q": theirs.to_q.weight.detach(), "to_k": theirs.to_k.weight.detach(),
               "to_v": theirs.to_v.weight.detach(), "to_out.weight": theirs.to_out[0].weight.detach(),
               "to_out.bias": theirs.to_out[0].bias.detach()}
    c.call(in_kernel("copy_attention_weights", COPY_ATTENTION), model=mine, weights=weights,
           inputs=inputs + " (copying to_q, to_k, to_v, to_out)")
    copy_attention_weights(ref_attn, theirs)
    x = torch.randn(B, N, dq, generator=g)
    context = torch.randn(B, L, dc, generator=g)
    mask = _padded_mask(g, B, L)
    for m in (None, mask):
        what = inputs + (", no mask" if m is None else f", mask lengths {m.sum(1).tolist()}")
        got = c.call(mine, x, context, m, inputs=what)
        c.true(isinstance(got, tuple) and len(got) == 2, "forward must return (out, attn)", inputs=what)
        c.tensor("out", got[0], shape=(B, N, dq), inputs=what)
        c.tensor("attn", got[1], shape=(B, heads, N, L), inputs=what)
        with torch.no_grad():
            want = theirs(x, context, attention_mask=None if m is None else mask_bias(m))

            def mutant_out(cls):
                mutant = cls(dq, dc, heads, head_dim)
                copy_attention_weights(mutant, theirs)
                return mutant(x, context, m)[0]

            c.close("out (vs diffusers' Attention)", got[0], want, atol=1e-4, inputs=what,
                    mistakes=known_mistakes(CH, "CrossAttention", mutant_out))
            c.close("attn", got[1], ref_attn(x, context, m)[1], atol=1e-5, inputs=what)
    c.done()


# ----------------------------------------------------------------------------- 3 the U-Net block

# In the kernel: diffusers' Attention with the chapter's CrossAttention signature (maps
# returned too), and the learner's block built while it replaces their CrossAttention
# (as the visible check does), so a mistake in CrossAttention is not counted twice here.
BLOCK_BUILD = '06_latent_diffusion.block_build'
BLOCK_FORWARD = '06_latent_diffusion.block_forward'
# A copy of the learner's model in float64 (model.double()) called on `args`, in the kernel.
DOUBLE_FORWARD = '06_latent_diffusion.double_forward'


def cross_attn_block(CrossAttnBlock) -> None:
    c = Checks("cross_attn_block (hidden)")
    g = _gen("cross_attn_block")
    heads = draw_int(g, 1, 4)
    C, groups = heads * 4 * draw_int(g, 1, 3), draw_int(g, 1, 3)  # groups 1 or 2: neither the default nor the visible 4
    # H >= 2: GroupNorm needs more than one value per group (B = 1, H = W = 1 and one
    # channel per group would leave it undefined).
    dc, B, H, W, L = draw_int(g, 3, 10), draw_int(g, 1, 4), draw_int(g, 2, 6), draw_int(g, 1, 6), draw_int(g, 3, 9)
    inputs = f"CrossAttnBlock({C}, {dc}, heads={heads}, groups={groups}), x ({B}, {C}, {H}, {W}), " \
             f"context ({B}, {L}, {dc}), random mask, the reference's weights"
    with torch.random.fork_rng():
        torch.manual_seed(hidden_seed(f"{CH}/cross_attn_block/init"))
        theirs = ref.CrossAttnBlock(C, dc, heads, groups)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    built = c.call(in_kernel("CrossAttnBlock", BLOCK_BUILD), Block=CrossAttnBlock, args=(C, dc, heads, groups),
                   seed=0, inputs=inputs)
    mine, stand_in = built
    _load(c, mine, theirs, inputs, stand_in)
    x = torch.randn(B, C, H, W, generator=g)
    context = torch.randn(B, L, dc, generator=g)
    mask = _padded_mask(g, B, L)
    inputs = inputs.replace("random mask", f"mask lengths {mask.sum(1).tolist()}")
    got, last_attn = c.call(in_kernel("CrossAttnBlock.forward", BLOCK_FORWARD), Block=CrossAttnBlock,
                            StandIn=stand_in, model=mine, args=(x, context, mask), inputs=inputs)
    c.tensor("output", got, shape=(B, C, H, W), inputs=inputs)
    if isinstance(last_attn, torch.Tensor) and tuple(last_attn.shape) == (B, heads, H * W, L):
        leak = last_attn.detach().double().abs().masked_fill(mask[:, None, None, :], 0.0).max().item()
        c.true(leak < 1e-6, "padding tokens get attention in the block (last_attn): the mask does not reach "
               "the cross-attention", inputs=inputs, expected="0 on every padding token",
               got=f"up to {leak:.3g} on padding tokens",
               hint=ch06.DIAGNOSES["block_mask"])
    with torch.no_grad():
        def mutant_out(cls):
            mutant = cls(C, dc, heads, groups)
            mutant.load_state_dict(theirs.state_dict())
            return mutant(x, context, mask)

        c.close("output", got, theirs(x, context, mask), atol=1e-4, inputs=inputs,
                mistakes=known_mistakes(CH, "CrossAttnBlock", mutant_out))
    c.tensor("last_attn", last_attn, shape=(B, heads, H * W, L), inputs=inputs)
    c.close("last_attn", last_attn, theirs.last_attn, atol=1e-5, inputs=inputs)
    # x of amplitude 1e-3 (variance 1e-6): GroupNorm's eps = 1e-6 matters
    small = 1e-3 * x
    inputs = inputs.replace(f"x ({B}", f"x * 1e-3 ({B}")
    got, _ = c.call(in_kernel("CrossAttnBlock.forward", BLOCK_FORWARD), Block=CrossAttnBlock,
                    StandIn=stand_in, model=mine, args=(small, context, mask), inputs=inputs)
    with torch.no_grad():
        c.close("output", got, theirs(small, context, mask), atol=1e-4, inputs=inputs,
                hint=ch06.DIAGNOSES["groupnorm_eps"])
    c.done()


# ----------------------------------------------------------------------------- 3a the text-conditioned U-Net

# The check's stand-in for the learner's CrossAttnBlock (workbook.ch06.TextBlockStandIn: GroupNorm
# and diffusers' Attention), the same class in the judge and in the kernel.
UNET_BLOCK = '06_latent_diffusion.unet_block'


def text_unet(TextUNet) -> None:
    c = Checks("text_unet (hidden)")
    g = _gen("text_unet")
    levels = [draw_size(g, 1, 3)]
    if levels[0] == 1:  # one level has no up- or downsampling: a second model with 2 or 3 levels
        levels.append(draw_size(g, 2, 3))
    for k, L in enumerate(levels):
        _text_unet(c, g, TextUNet, L, k)
    c.done()


def _text_unet(c: Checks, g: torch.Generator, TextUNet, L: int, k: int) -> None:
    # heads 1 or 3: neither the blocks' default (4) nor the visible check's 2, so not passing it on shows
    heads, groups = (1, 3)[draw_int(g, 0, 2)], draw_size(g, 1, 3)
    mults = (1,) + tuple(draw_size(g, 1, 3) for _ in range(L - 1))  # mults[0] = 1, as stated
    base = math.lcm(heads, groups)  # every c_i divisible by heads and groups
    ch = base * draw_size(g, max(1, -(-4 // base)), max(1, 16 // base))  # ch in [4, 16] or base
    in_channels, context_dim, N, B = draw_size(g, 1, 4), draw_size(g, 2, 8), draw_size(g, 3, 8), draw_size(g, 2, 3)
    # at the deepest level at least 2 x 1 pixels: GroupNorm never sees a single value per group
    H, W = 2 ** (L - 1) * draw_size(g, 2, 3), 2 ** (L - 1) * draw_size(g, 1, 3)
    kw = dict(in_channels=in_channels, ch=ch, mults=mults, context_dim=context_dim, heads=heads, groups=groups)
    inputs = f"TextUNet(block=ch06.TextBlockStandIn, {', '.join(f'{k}={v}' for k, v in kw.items())}), the " \
             "reference's weights"
    here, there = twin(UNET_BLOCK)
    with torch.random.fork_rng():
        torch.manual_seed(hidden_seed(f"{CH}/text_unet/init{k}"))
        reference = ref.TextUNet(here, **kw)
        with torch.no_grad():
            for p in reference.parameters():
                p.add_(0.1 * torch.randn(p.shape))  # GroupNorm weights not all 1, biases not all 0
    mine = c.call(TextUNet, there, **kw, inputs=inputs)
    load_reference_weights(c, mine, reference, inputs)
    reference.eval()
    ref64 = copy.deepcopy(reference).double()
    z = torch.randn(B, in_channels, H, W, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g)
    context = torch.randn(B, N, context_dim, generator=g)
    mask = _padded_mask(g, B, N)
    # a batch of B with a mask, then a batch of one without: both families, under every secret
    for zb, tb, cb, m in ((z, t, context, mask), (z[:1], t[:1], context[:1], None)):
        what = f"{inputs}, z {tuple(zb.shape)}, t = {tb.tolist()}, context {tuple(cb.shape)}, " + \
               ("mask None" if m is None else f"mask lengths {m.sum(1).tolist()}")
        family("TextUNet", FAMILIES["TextUNet"][0 if len(zb) > 1 and m is not None else 1])
        got = c.call(mine, zb, tb, cb, m, inputs=what)
        c.tensor("eps_hat", got, shape=tuple(zb.shape), dtype=torch.float32, inputs=what)
        with torch.no_grad():
            want = ref64(zb.double(), tb, cb.double(), m)
        if m is mask:
            want_masked = want  # compared with model.double() below

            def mutant_out(cls, m=m):
                mutant = cls(here, **kw)
                mutant.load_state_dict(reference.state_dict())
                return mutant(z, t, context, m)

            c.close("eps_hat (vs the reference with the same weights, in float64)", got, want,
                    **tolerance(torch.float32, scale=float(want.abs().max()), ops=16), inputs=what,
                    mistakes=known_mistakes(CH, "TextUNet", mutant_out), hint=ch06.DIAGNOSES["unet_computation"])
    what = f"{inputs}, model.double() with float64 z ({B}, {in_channels}, {H}, {W}) and context, t = {t.tolist()}"
    try:  # a lost connection to the kernel is not the learner's error: only RemoteError is caught
        got = run(DOUBLE_FORWARD, model=mine, args=(z.double(), t, context.double(), mask))
    except RemoteError as e:
        c.fail(f"calling model.double() raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
               inputs=what, hint=ch06.DIAGNOSES["unet_dtype"])
    c.tensor("eps_hat of model.double()", got, shape=tuple(z.shape), dtype=torch.float64, inputs=what)
    c.close("eps_hat of model.double() (vs the reference, in float64)", got, want_masked,
            **tolerance(torch.float64, scale=float(want_masked.abs().max()), ops=16), inputs=what,
            hint=ch06.DIAGNOSES["unet_dtype"])


# ----------------------------------------------------------------------------- 3b training loss

# In the kernel: a stand-in U-Net that records its inputs, the learner's loss on it, then
# backward (its error, if any, comes back as text) and whether a gradient reached it.
TRAINING_LOSS = '06_latent_diffusion.training_loss'
ARG_NAMES = ("z0", "context", "mask", "null_context", "null_mask", "alpha_bars", "p_uncond", "generator")


def training_loss(fn) -> None:
    c = Checks("training_loss (hidden)")
    g = _gen("training_loss")
    T, B, L, D = draw_int(g, 5, 40), 3000, draw_int(g, 3, 8), draw_int(g, 2, 5)
    ab = torch.sort(torch.rand(T, generator=g, dtype=_F64) * 0.98 + 0.01, descending=True).values
    z0 = 0.5 * torch.randn(B, 2, 3, 3, generator=g, dtype=_F64)  # std 0.5: a z0 target is far from an eps one
    context = (torch.arange(B, dtype=_F64) + 1).view(B, 1, 1).expand(B, L, D).clone()
    mask = _random_mask(g, B, L)
    null_context = -torch.ones(1, L, D, dtype=_F64)
    null_mask = torch.zeros(1, L, dtype=torch.bool)
    null_mask[0, :2] = True
    p = 0.1 + 0.25 * float(torch.rand(1, generator=g))   # <= 0.35: far from 1 - p, so a swapped probability shows
    inputs = f"z0 ({B}, 2, 3, 3) with std 0.5, context row b filled with b + 1, empty caption filled with -1, T = {T}, " \
             f"p_uncond = {p:.3f}, a recording stand-in U-Net (0.3 z_t + 0.7 mean(context) / B + t / 50)"
    seed = hidden_seed(f"{CH}/training_loss/draw")

    def learner(seed):
        args = (z0, context, mask, null_context, null_mask, ab, p, torch.Generator().manual_seed(seed))
        loss, calls, backward_error, has_grad, kept_rng, changed = c.call(
            in_kernel("training_loss", TRAINING_LOSS), loss_fn=fn, args=args, inputs=inputs)
        c.true(not changed, f"training_loss modified its input {', '.join(ARG_NAMES[i] for i in changed)} in place",
               inputs=inputs, expected="the inputs unchanged", hint=ch06.DIAGNOSES["inputs_in_place"])
        c.true(kept_rng, "the global random generator was used: every draw must come from the generator passed in",
               inputs=inputs, hint=ch06.DIAGNOSES["global_rng"])
        c.true(len(calls) == 1, "the U-Net should be called once, on the whole batch", inputs=inputs,
               got=f"{len(calls)} calls")
        return loss, calls[0], backward_error, has_grad

    loss, (z_t, t, ctx, msk), backward_error, has_grad = learner(seed)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    c.tensor("context given to the U-Net", ctx, shape=(B, L, D), inputs=inputs)
    c.tensor("mask given to the U-Net", msk, shape=(B, L), dtype=torch.bool, inputs=inputs)
    dropped = (ctx == -1).all(dim=(1, 2))
    c.true(torch.equal(ctx[~dropped], context[~dropped]) and torch.equal(msk[~dropped], mask[~dropped])
           and bool((msk[dropped] == null_mask).all()),
           "each row must be its own caption or the empty caption, context and mask together", inputs=inputs)
    frac = dropped.double().mean().item()
    c.true(abs(frac - p) < 0.04, "the fraction of empty captions should be p_uncond", inputs=inputs,
           expected=f"about {p:.3f}", got=f"{frac:.3f}")
    c.tensor("t", t, shape=(B,), dtype=torch.int64, inputs=inputs)
    counts = torch.bincount(t, minlength=T)
    c.true(bool(((t >= 0) & (t < T)).all()) and bool((counts > 0).all()) and counts.max() < 2 * counts.float().mean(),
           "t must be uniform on {0, ..., T-1}", inputs=inputs, got=f"counts {counts.tolist()}")
    a = ab[t].view(-1, 1, 1, 1)
    eps = (z_t - a.sqrt() * z0) / (1 - a).sqrt()
    m, s = eps.mean().item(), eps.std().item()
    c.true(abs(m) < 0.05 and abs(s - 1) < 0.05, "the noise in z_t is not standard normal", inputs=inputs,
           got=f"implied eps with mean {m:.3f}, std {s:.3f}")
    eps_hat = 0.3 * z_t + 0.7 * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1) / B + t.view(-1, 1, 1, 1).to(z_t) / 50
    c.close("loss (the mean squared error between the U-Net's output and the noise eps in z_t)", loss,
            ((eps_hat - eps) ** 2).mean(), atol=1e-9, inputs=inputs, mistakes={
                ch06.DIAGNOSES["predicts_z0"]:
                    ((eps_hat - z0) ** 2).mean(),
                ch06.DIAGNOSES["predicts_zt"]: ((eps_hat - z_t) ** 2).mean(),
            }, hint=ch06.DIAGNOSES["loss_eps"])
    if backward_error is not None:
        c.fail(f"calling backward raised {backward_error}", inputs=inputs)
    c.true(has_grad is True, "no gradient reached the U-Net's parameters", inputs=inputs)
    # Every draw comes from the generator: the same seed again gives the same draws.
    _, again, _, _ = learner(seed)
    same = all(isinstance(u, torch.Tensor) and u.shape == v.shape and torch.equal(u, v)
               for u, v in zip(again, (z_t, t, ctx, msk)))
    c.true(same, "two calls with generators of the same seed gave different draws", inputs=inputs + ", called twice",
           hint=ch06.DIAGNOSES["global_rng"])
    # float32 latents and captions with float64 alpha_bars: z_t and the loss keep z0's dtype
    n = 64
    args = (z0[:n].float(), context[:n].float(), mask[:n], null_context.float(), null_mask, ab, p,
            torch.Generator().manual_seed(seed))
    inputs = f"z0 ({n}, 2, 3, 3) float32, context float32, alpha_bars float64 (T = {T}), p_uncond = {p:.3f}, " \
             "the recording stand-in U-Net"
    loss, calls, _, _, _, _ = c.call(in_kernel("training_loss", TRAINING_LOSS), loss_fn=fn, args=args, inputs=inputs)
    c.true(len(calls) == 1, "the U-Net should be called once, on the whole batch", inputs=inputs,
           got=f"{len(calls)} calls")
    c.true(calls[0][0].dtype == torch.float32, "z_t given to the U-Net must have z0's dtype", inputs=inputs,
           expected=torch.float32, got=calls[0][0].dtype, hint=ch06.DIAGNOSES["loss_dtype"])
    c.tensor("loss", loss, shape=(), dtype=torch.float32, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 4 the sampling loop

# Here and in the kernel (twin): a text encoder, a random context-sensitive stand-in U-Net,
# a decoder, and diffusers' DDIMScheduler with Stable Diffusion v1's schedule (as
# workbook.ch06.make_scheduler) or its EulerDiscreteScheduler (init_noise_sigma far from 1,
# scale_model_input not the identity), all from torch and diffusers and the judge's random tables.
GENERATE_HARNESS = '06_latent_diffusion.generate_harness'
# In the kernel: the stand-in U-Net behind a guard that raises, in the learner's terms, when
# t is not (2B,) int64 or the context has not 2B rows.
CHECKED_UNET = '06_latent_diffusion.checked_unet'


def generate(fn) -> None:
    c = Checks("generate (hidden)")
    g = _gen("generate")
    B, ch, hw, D, L = draw_int(g, 2, 5), draw_int(g, 1, 5), draw_int(g, 2, 5), draw_int(g, 2, 6), 6  # B >= 2: 2B rows differ
    steps, scale, sf = draw_int(g, 3, 12), 1 + 6 * float(torch.rand(1, generator=g)), 0.1 + float(torch.rand(1, generator=g))
    table = torch.randn(64, D, generator=g)
    a = torch.randn(ch, ch, generator=g) / ch
    b = torch.randn(D, ch, generator=g) / D
    here, there = twin(GENERATE_HARNESS, L=L, table=table, a=a, b=b)
    encode_text, unet, decode, make_scheduler = here
    prompts = [f"prompt {k} {'x' * k}" for k in range(B)]
    seed = hidden_seed(f"{CH}/generate/draw")
    inputs = f"{B} prompts, diffusers' DDIMScheduler, {steps} steps, guidance_scale = {scale:.3f}, " \
             f"latent_shape = ({ch}, {hw}, {hw}), scale_factor = {sf:.3f}, a random stand-in U-Net"
    kwargs = dict(guidance_scale=scale, num_steps=steps, latent_shape=(ch, hw, hw), scale_factor=sf)
    enc_k, unet_k, decode_k, make_scheduler_k = there
    unet_k = run(CHECKED_UNET, unet=unet_k)
    got = c.call(fn, prompts, enc_k, unet_k, decode_k, make_scheduler_k(), **kwargs,
                 generator=torch.Generator().manual_seed(seed), inputs=inputs)
    want = ref.generate(prompts, encode_text, unet, decode, make_scheduler(), **kwargs,
                        generator=torch.Generator().manual_seed(seed))
    c.tensor("images", got, shape=tuple(want.shape), inputs=inputs)

    def mutant_images(f):
        return f(prompts, encode_text, unet, decode, make_scheduler(), **kwargs,
                 generator=torch.Generator().manual_seed(seed))

    c.close("images", got, want, atol=1e-4, inputs=inputs, mistakes=known_mistakes(CH, "generate", mutant_images))

    # Again with Euler: the starting noise must be scaled by init_noise_sigma and the U-Net's
    # input go through scale_model_input (both have no effect with DDIM).
    probe = make_scheduler("euler")
    probe.set_timesteps(steps)
    sigma = float(probe.init_noise_sigma)
    seed = hidden_seed(f"{CH}/generate/draw-euler")
    inputs = f"{B} prompts, diffusers' EulerDiscreteScheduler (init_noise_sigma = {sigma:.3f} after set_timesteps, " \
             f"scale_model_input divides by sqrt(sigma^2 + 1)), {steps} steps, guidance_scale = {scale:.3f}, " \
             f"latent_shape = ({ch}, {hw}, {hw}), scale_factor = {sf:.3f}, a random stand-in U-Net"
    got = c.call(fn, prompts, enc_k, unet_k, decode_k, make_scheduler_k("euler"), **kwargs,
                 generator=torch.Generator().manual_seed(seed), inputs=inputs)
    want = ref.generate(prompts, encode_text, unet, decode, make_scheduler("euler"), **kwargs,
                        generator=torch.Generator().manual_seed(seed))
    c.tensor("images", got, shape=tuple(want.shape), inputs=inputs)

    def mutant_euler(f):
        return f(prompts, encode_text, unet, decode, make_scheduler("euler"), **kwargs,
                 generator=torch.Generator().manual_seed(seed))

    c.close("images", got, want, atol=1e-4, inputs=inputs, mistakes=known_mistakes(CH, "generate", mutant_euler),
            hint=ch06.DIAGNOSES["scheduler_scalings"])
    c.done()



def img2img(fn) -> None:
    c = Checks("img2img (hidden)")
    g = _gen("img2img")
    B, ch, hw, D, L = draw_int(g, 2, 5), draw_int(g, 1, 5), draw_int(g, 2, 5), draw_int(g, 2, 6), 6
    steps, scale, sf = draw_int(g, 3, 12), 1 + 6 * float(torch.rand(1, generator=g)), 0.1 + float(torch.rand(1, generator=g))
    keep = draw_int(g, 1, steps - 1)  # 0 < keep < steps: a partial run
    # strength * steps = keep + a fraction: above one half for DDIM (round() and ceil() keep a
    # step too many), below it for Euler (ceil() does): int() is the rule, under every secret
    above, below = 0.55 + 0.35 * float(torch.rand(1, generator=g)), 0.1 + 0.35 * float(torch.rand(1, generator=g))
    partial = {"ddim": (keep + above) / steps, "euler": (keep + below) / steps}
    table = torch.randn(64, D, generator=g)
    a = torch.randn(ch, ch, generator=g) / ch
    b = torch.randn(D, ch, generator=g) / D
    image_latents = torch.randn(B, ch, hw, hw, generator=g)
    here, there = twin(GENERATE_HARNESS, L=L, table=table, a=a, b=b)
    encode_text, unet, decode, make_scheduler = here
    enc_k, unet_k, decode_k, make_scheduler_k = there
    unet_k = run(CHECKED_UNET, unet=unet_k)
    prompts = [f"prompt {k} {'x' * k}" for k in range(B)]
    names = {"ddim": "diffusers' DDIMScheduler", "euler": "diffusers' EulerDiscreteScheduler (init_noise_sigma "
                                                         "far from 1, scale_model_input not the identity)"}
    # a partial run with each scheduler, then strength 1 (generate's start) with Euler and strength 0 with DDIM
    for kind, s in (("ddim", partial["ddim"]), ("euler", partial["euler"]), ("euler", 1.0), ("ddim", 0.0)):
        fraction = s * steps - int(s * steps)
        family("img2img", FAMILIES["img2img"][2 if s == 1.0 else 3 if s == 0.0 else 0 if fraction > 0.5 else 1])
        seed = hidden_seed(f"{CH}/img2img/draw-{kind}-{s:g}")
        inputs = f"image_latents ({B}, {ch}, {hw}, {hw}), {B} prompts, {names[kind]}, {steps} steps, " \
                 f"strength = {s:.4f}, guidance_scale = {scale:.3f}, scale_factor = {sf:.3f}, a random stand-in U-Net"
        kwargs = dict(strength=s, guidance_scale=scale, num_steps=steps, scale_factor=sf)
        got = c.call(fn, image_latents.clone(), prompts, enc_k, unet_k, decode_k, make_scheduler_k(kind), **kwargs,
                     generator=torch.Generator().manual_seed(seed), inputs=inputs)

        def images(f, kind=kind, kwargs=kwargs, seed=seed):
            return f(image_latents.clone(), prompts, encode_text, unet, decode, make_scheduler(kind), **kwargs,
                     generator=torch.Generator().manual_seed(seed))

        want = images(ref.img2img)
        if s == 1.0:  # strength 1 is generate from the same generator: the judge's reference says so too
            want = ref.generate(prompts, encode_text, unet, decode, make_scheduler(kind), guidance_scale=scale,
                                num_steps=steps, latent_shape=(ch, hw, hw), scale_factor=sf,
                                generator=torch.Generator().manual_seed(seed))
        c.tensor("images", got, shape=tuple(want.shape), inputs=inputs)
        c.close("images", got, want, atol=1e-4, inputs=inputs, mistakes=known_mistakes(CH, "img2img", images),
                hint=ch06.DIAGNOSES["i2i_full_strength" if s == 1.0 else "i2i_kept_steps"])
    c.done()

def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=ch06.QUIZ_EXPLAIN[name])
