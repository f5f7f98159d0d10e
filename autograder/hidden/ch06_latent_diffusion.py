"""Chapter 06 hidden checks: the learner's autoencoder, block and sampling loop against the
reference (weights copied in), cross-attention against diffusers' Attention, the training
loss through a recording stand-in; inputs drawn from the grading seed; catalogued mistakes
recognised by name."""
from __future__ import annotations

import torch
from torch import nn

from autograder.hidden import grade_choice
from autograder.mutants import hidden_seed, known_mistakes
from solutions import ch06_latent_diffusion as ref
from workbook.ch06 import _diffusers_attention, copy_attention_weights, make_scheduler, mask_bias
from workbook.checks import Checks, substituted

CH = "06_latent_diffusion"
_F64 = torch.float64


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(hidden_seed(f"{CH}/{name}"))


def _int(g: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi, (1,), generator=g))


def _random_mask(g: torch.Generator, B: int, L: int) -> torch.Tensor:
    """(B, L) bool: each row keeps a random number (>= 2) of leading real tokens."""
    lengths = torch.randint(2, L + 1, (B,), generator=g)
    return torch.arange(L)[None, :] < lengths[:, None]


def _load(c: Checks, mine: nn.Module, theirs: nn.Module, inputs: str) -> None:
    try:
        mine.load_state_dict(theirs.state_dict())
    except Exception as err:
        c.fail("the reference's weights do not fit your model: the layers differ from the stated ones",
               inputs=inputs, got=str(err).splitlines()[0][:300],
               hint="use exactly the stated layers, in the stated order, with the stated attribute names")


def autoencoder(KLAutoencoder, autoencoder_loss, latent_scale_factor) -> None:
    c = Checks("autoencoder (hidden)")
    g = _gen("autoencoder")
    C, ch, lat = _int(g, 1, 4), 4 * _int(g, 1, 4), _int(g, 2, 6)
    inputs = f"KLAutoencoder({C}, {ch}, {lat}) with the reference's weights"
    torch.manual_seed(hidden_seed(f"{CH}/autoencoder/init"))
    theirs = ref.KLAutoencoder(C, ch, lat)
    mine = c.call(KLAutoencoder, C, ch, lat, inputs=inputs)
    _load(c, mine, theirs, inputs)
    x = torch.randn(3, C, 16, 8, generator=g)
    noise = torch.randn(3, lat, 4, 2, generator=g)
    with torch.no_grad():
        theirs.encoder[-1].bias[lat:] += 4.0 * torch.randn(lat, generator=g)  # spread of log-variances
        mine.encoder[-1].bias.copy_(theirs.encoder[-1].bias)
        got = c.call(mine.encode, x, inputs=inputs + f", x (3, {C}, 16, 8)")
        want = theirs.encode(x)
        c.true(isinstance(got, tuple) and len(got) == 2, "encode must return (mean, logvar)", inputs=inputs)
        c.close("mean", got[0], want[0], atol=1e-5, inputs=inputs)
        c.close("logvar", got[1], want[1], atol=1e-5, inputs=inputs,
                mistakes=known_mistakes(CH, "KLAutoencoder", lambda m: _mutant_ae(m, theirs).encode(x)[1]))
        got = c.call(mine, x, noise, inputs=inputs + ", forward(x, noise)")
        want = theirs(x, noise)
        c.true(isinstance(got, tuple) and len(got) == 3, "forward must return (x_hat, mean, logvar)", inputs=inputs)
        c.close("x_hat", got[0], want[0], atol=1e-4, inputs=inputs,
                mistakes=known_mistakes(CH, "KLAutoencoder", lambda m: _mutant_ae(m, theirs)(x, noise)[0]))
    B = _int(g, 2, 6)
    x = torch.randn(B, 3, 4, 4, generator=g, dtype=_F64)
    x_hat = torch.randn(B, 3, 4, 4, generator=g, dtype=_F64)
    mean = torch.randn(B, 2, 2, 2, generator=g, dtype=_F64)
    logvar = torch.randn(B, 2, 2, 2, generator=g, dtype=_F64)
    w = float(torch.rand(1, generator=g)) + 0.1
    inputs = f"random x, x_hat (B={B}, 3, 4, 4), mean, logvar ({B}, 2, 2, 2), kl_weight = {w:.3f}"
    got = c.call(autoencoder_loss, x, x_hat, mean, logvar, w, inputs=inputs)
    c.true(isinstance(got, tuple) and len(got) == 3, "autoencoder_loss must return (loss, rec, kl)", inputs=inputs)
    want = ref.autoencoder_loss(x, x_hat, mean, logvar, w)
    run = lambda f: torch.stack(list(f(x, x_hat, mean, logvar, w)))
    c.close("(loss, rec, kl)", torch.stack([torch.as_tensor(v, dtype=_F64) for v in got]), torch.stack(list(want)),
            atol=1e-9, inputs=inputs, mistakes=known_mistakes(CH, "autoencoder_loss", run))
    Z = float(torch.randn(1, generator=g)) + (0.5 + 3 * float(torch.rand(1, generator=g))) * \
        torch.randn(400, 4, 3, 3, generator=g)
    inputs = "Z (400, 4, 3, 3) with a random mean and spread"
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


def cross_attention(CrossAttention) -> None:
    c = Checks("cross_attention (hidden)")
    g = _gen("cross_attention")
    heads, head_dim = _int(g, 1, 5), 2 * _int(g, 1, 5)
    dq, dc = _int(g, 3, 12), _int(g, 3, 12)
    B, N, L = _int(g, 1, 4), _int(g, 1, 10), _int(g, 2, 9)
    inputs = f"CrossAttention({dq}, {dc}, heads={heads}, head_dim={head_dim}), x ({B}, {N}, {dq}), " \
             f"context ({B}, {L}, {dc}), weights from diffusers' Attention"
    torch.manual_seed(hidden_seed(f"{CH}/cross_attention/init"))
    theirs = _diffusers_attention(dq, dc, heads, head_dim)
    with torch.no_grad():
        theirs.to_out[0].bias.normal_()
        for p in theirs.parameters():
            p.mul_(2.0)  # sharper attention than at initialisation
    mine = c.call(CrossAttention, dq, dc, heads, head_dim, inputs=inputs)
    c.call(copy_attention_weights, mine, theirs, inputs=inputs + " (copying to_q, to_k, to_v, to_out)")
    ref_attn = ref.CrossAttention(dq, dc, heads, head_dim)
    copy_attention_weights(ref_attn, theirs)
    x = torch.randn(B, N, dq, generator=g)
    context = torch.randn(B, L, dc, generator=g)
    mask = _random_mask(g, B, L)
    with torch.no_grad():
        for m in (None, mask):
            what = inputs + (", no mask" if m is None else f", mask lengths {m.sum(1).tolist()}")
            got = c.call(mine, x, context, m, inputs=what)
            c.true(isinstance(got, tuple) and len(got) == 2, "forward must return (out, attn)", inputs=what)
            c.tensor("out", got[0], shape=(B, N, dq), inputs=what)
            c.tensor("attn", got[1], shape=(B, heads, N, L), inputs=what)
            want = theirs(x, context, attention_mask=None if m is None else mask_bias(m))

            def run(cls):
                mutant = cls(dq, dc, heads, head_dim)
                copy_attention_weights(mutant, theirs)
                return mutant(x, context, m)[0]

            c.close("out (vs diffusers' Attention)", got[0], want, atol=1e-4, inputs=what,
                    mistakes=known_mistakes(CH, "CrossAttention", run))
            c.close("attn", got[1], ref_attn(x, context, m)[1], atol=1e-5, inputs=what)
    c.done()


def cross_attn_block(CrossAttnBlock) -> None:
    with substituted(CrossAttnBlock, CrossAttention=ref.CrossAttention):
        _cross_attn_block(CrossAttnBlock)


def _cross_attn_block(CrossAttnBlock) -> None:
    c = Checks("cross_attn_block (hidden)")
    g = _gen("cross_attn_block")
    heads = _int(g, 1, 4)
    C, groups = heads * 4 * _int(g, 1, 3), 4
    dc, B, H, W, L = _int(g, 3, 10), _int(g, 1, 4), _int(g, 1, 6), _int(g, 1, 6), _int(g, 2, 8)
    inputs = f"CrossAttnBlock({C}, {dc}, heads={heads}, groups={groups}), x ({B}, {C}, {H}, {W}), " \
             f"context ({B}, {L}, {dc}), random mask, the reference's weights"
    torch.manual_seed(hidden_seed(f"{CH}/cross_attn_block/init"))
    theirs = ref.CrossAttnBlock(C, dc, heads, groups)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    mine = c.call(CrossAttnBlock, C, dc, heads, groups, inputs=inputs)
    _load(c, mine, theirs, inputs)
    x = torch.randn(B, C, H, W, generator=g)
    context = torch.randn(B, L, dc, generator=g)
    mask = _random_mask(g, B, L)
    with torch.no_grad():
        got = c.call(mine, x, context, mask, inputs=inputs)
        c.tensor("output", got, shape=(B, C, H, W), inputs=inputs)

        def run(cls):
            mutant = cls(C, dc, heads, groups)
            mutant.load_state_dict(theirs.state_dict())
            return mutant(x, context, mask)

        c.close("output", got, theirs(x, context, mask), atol=1e-4, inputs=inputs,
                mistakes=known_mistakes(CH, "CrossAttnBlock", run))
        c.tensor("last_attn", getattr(mine, "last_attn", None), shape=(B, heads, H * W, L), inputs=inputs)
        c.close("last_attn", mine.last_attn, theirs.last_attn, atol=1e-5, inputs=inputs)
    c.done()


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.7, dtype=_F64))
        self.calls = []

    def forward(self, z_t, t, context, mask):
        self.calls.append(tuple(v.detach().clone() for v in (z_t, t, context, mask)))
        return 0.3 * z_t + self.w * context.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1).to(z_t) / 50


def training_loss(fn) -> None:
    c = Checks("training_loss (hidden)")
    g = _gen("training_loss")
    T, B, L, D = _int(g, 5, 40), 3000, _int(g, 3, 8), _int(g, 2, 5)
    ab = torch.sort(torch.rand(T, generator=g, dtype=_F64) * 0.98 + 0.01, descending=True).values
    z0 = torch.randn(B, 2, 3, 3, generator=g, dtype=_F64)
    context = (torch.arange(B, dtype=_F64) + 1).view(B, 1, 1).expand(B, L, D).clone()
    mask = _random_mask(g, B, L)
    null_context = -torch.ones(1, L, D, dtype=_F64)
    null_mask = torch.zeros(1, L, dtype=torch.bool)
    null_mask[0, :2] = True
    p = 0.1 + 0.5 * float(torch.rand(1, generator=g))
    inputs = f"z0 ({B}, 2, 3, 3), context row b filled with b + 1, empty caption filled with -1, T = {T}, " \
             f"p_uncond = {p:.3f}, a recording stand-in U-Net"
    unet = _Recorder()
    loss = c.call(fn, unet, z0, context.clone(), mask.clone(), null_context, null_mask, ab, p,
                  torch.Generator().manual_seed(hidden_seed(f"{CH}/training_loss/draw")), inputs=inputs)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    c.true(len(unet.calls) == 1, "the U-Net should be called once, on the whole batch", inputs=inputs,
           got=f"{len(unet.calls)} calls")
    z_t, t, ctx, msk = unet.calls[0]
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
    eps_hat = 0.3 * z_t + 0.7 * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1).to(z_t) / 50
    c.close("loss", loss, ((eps_hat - eps) ** 2).mean(), atol=1e-9, inputs=inputs)
    c.call(loss.backward, inputs=inputs)
    c.true(unet.w.grad is not None, "no gradient reached the U-Net's parameters", inputs=inputs)
    c.done()


class _TinyUNet(nn.Module):
    """A random, context-sensitive stand-in noise predictor."""

    def __init__(self, c: int, D: int, g: torch.Generator):
        super().__init__()
        self.a = torch.randn(c, c, generator=g) / c
        self.b = torch.randn(D, c, generator=g) / D

    def forward(self, z, t, context, mask):
        m = mask.to(z.dtype)[:, :, None]
        text = (context * m).sum(1) / m.sum(1)  # (B, D) mean over real tokens
        h = torch.einsum("bchw,cd->bdhw", z, self.a) + (text @ self.b)[:, :, None, None]
        return torch.tanh(h + t.view(-1, 1, 1, 1).to(z) / 1000)


def generate(fn) -> None:
    c = Checks("generate (hidden)")
    g = _gen("generate")
    B, ch, hw, D, L = _int(g, 1, 4), _int(g, 1, 5), _int(g, 2, 5), _int(g, 2, 6), 6
    steps, scale, sf = _int(g, 3, 12), 1 + 6 * float(torch.rand(1, generator=g)), 0.1 + float(torch.rand(1, generator=g))
    table = torch.randn(64, D, generator=g)

    def encode_text(prompts):
        ids = torch.zeros(len(prompts), L, dtype=torch.long)
        for i, p in enumerate(prompts):
            codes = [1] + [3 + (ord(ch_) % 60) for ch_ in p][: L - 2] + [2]
            ids[i, : len(codes)] = torch.tensor(codes)
        return table[ids], ids != 0

    unet = _TinyUNet(ch, D, g)
    decode = lambda z: z * 2 + 1
    prompts = [f"prompt {k} {'x' * k}" for k in range(B)]
    seed = hidden_seed(f"{CH}/generate/draw")
    inputs = f"{B} prompts, diffusers' DDIMScheduler, {steps} steps, guidance_scale = {scale:.3f}, " \
             f"latent_shape = ({ch}, {hw}, {hw}), scale_factor = {sf:.3f}, a random stand-in U-Net"
    kwargs = dict(guidance_scale=scale, num_steps=steps, latent_shape=(ch, hw, hw), scale_factor=sf)
    got = c.call(fn, prompts, encode_text, unet, decode, make_scheduler(1000), **kwargs,
                 generator=torch.Generator().manual_seed(seed), inputs=inputs)
    want = ref.generate(prompts, encode_text, unet, decode, make_scheduler(1000), **kwargs,
                        generator=torch.Generator().manual_seed(seed))
    c.tensor("images", got, shape=tuple(want.shape), inputs=inputs)

    def run(f):
        return f(prompts, encode_text, unet, decode, make_scheduler(1000), **kwargs,
                 generator=torch.Generator().manual_seed(seed))

    c.close("images", got, want, atol=1e-4, inputs=inputs, mistakes=known_mistakes(CH, "generate", run))
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name))
