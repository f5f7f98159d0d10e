"""Tests for autograder/chapters/06_latent_diffusion/solutions.py against independent oracles: diffusers'
Attention, Transformer2DModel and DDIMScheduler, torch's scaled_dot_product_attention and
torch.distributions; plus properties (the KL's minimum, the scale factor's effect, the
sampling loop's determinism and its equality with a hand-unrolled diffusers loop)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from autograder import chapters
from workbook import ch06
from workbook.ch06.checks import _diffusers_attention

S = chapters.module("06_latent_diffusion", "solutions")


def test_autoencoder_shapes_and_parameter_count():
    m = S.KLAutoencoder(3, 8, 4)
    assert sum(p.numel() for p in m.parameters()) == ch06.autoencoder_parameters(3, 8, 4)
    x = torch.randn(2, 3, 32, 32)
    mean, logvar = m.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 8, 8)
    x_hat, mean2, _ = m(x, torch.zeros_like(mean))
    assert x_hat.shape == x.shape
    torch.testing.assert_close(x_hat, m.decode(mean2))


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 4, 3, 3, generator=g), torch.randn(5, 4, 3, 3, generator=g)
    x, x_hat = torch.randn(5, 3, 8, 8, generator=g), torch.randn(5, 3, 8, 8, generator=g)
    loss, rec, kl = S.autoencoder_loss(x, x_hat, mean, logvar, 0.25)
    want = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(kl, want)
    torch.testing.assert_close(rec, F.mse_loss(x_hat, x))
    torch.testing.assert_close(loss, rec + 0.25 * kl)
    assert S.autoencoder_loss(x, x, torch.zeros_like(mean), torch.zeros_like(logvar), 1.0)[0].item() == 0.0


def test_scale_factor_gives_unit_variance():
    Z = 0.5 + 7.0 * torch.randn(1000, 4, 4, 4)
    assert (Z * S.latent_scale_factor(Z)).std().item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_cross_attention_matches_diffusers_and_sdpa(masked):
    torch.manual_seed(0)
    theirs = _diffusers_attention(12, 7, 3, 4)
    mine = S.CrossAttention(12, 7, 3, 4)
    ch06.copy_attention_weights(mine, theirs)
    x, context = torch.randn(2, 5, 12), torch.randn(2, 6, 7)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]]) if masked else None
    out, attn = mine(x, context, mask)
    bias = None if mask is None else ch06.mask_bias(mask)
    torch.testing.assert_close(out, theirs(x, context, attention_mask=bias), atol=1e-5, rtol=1e-4)
    q = mine.to_q(x).view(2, 5, 3, 4).transpose(1, 2)
    k = mine.to_k(context).view(2, 6, 3, 4).transpose(1, 2)
    v = mine.to_v(context).view(2, 6, 3, 4).transpose(1, 2)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
    torch.testing.assert_close(out, mine.to_out(sdpa.transpose(1, 2).reshape(2, 5, 12)), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 5))
    if masked:
        assert attn[1, :, :, 3:].abs().max() == 0


def test_block_matches_diffusers_transformer2d():
    torch.manual_seed(1)
    theirs = ch06.diffusers_block(16, 5, 4, 4)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn(p.shape))
        for p in theirs.transformer_blocks[0].attn2.to_out.parameters():
            p.zero_()
    mine = S.CrossAttnBlock(16, 5, 4, 4)
    ch06.copy_block_weights(mine, theirs)
    x, context = torch.randn(3, 16, 4, 5), torch.randn(3, 6, 5)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False
    with torch.no_grad():
        want = theirs(x, encoder_hidden_states=context, attention_mask=mask.float()).sample
        torch.testing.assert_close(mine(x, context, mask), want, atol=1e-5, rtol=1e-4)
    assert mine.last_attn.shape == (3, 4, 20, 6)


def test_training_loss_draws_and_regresses_the_noise():
    seen = {}

    def unet(z_t, t, context, mask):
        seen.update(z_t=z_t, t=t, context=context, mask=mask)
        return torch.zeros_like(z_t)

    ab = torch.linspace(0.99, 0.01, 50, dtype=torch.float64)
    z0 = torch.zeros(4000, 1, 1, 1, dtype=torch.float64)
    context = torch.ones(4000, 3, 2, dtype=torch.float64)
    mask = torch.ones(4000, 3, dtype=torch.bool)
    loss = S.training_loss(unet, z0, context, mask, torch.zeros(1, 3, 2, dtype=torch.float64),
                           torch.tensor([[True, False, False]]), ab, 0.25, torch.Generator().manual_seed(0))
    dropped = (seen["context"] == 0).all(dim=(1, 2))
    assert abs(dropped.double().mean().item() - 0.25) < 0.03
    assert torch.equal(seen["mask"][dropped].sum(1), torch.ones(int(dropped.sum()), dtype=torch.long))
    eps = seen["z_t"] / (1 - ab[seen["t"]]).sqrt().view(-1, 1, 1, 1)  # z0 = 0: z_t = sqrt(1 - a) eps
    torch.testing.assert_close(loss, (eps ** 2).mean())


def test_generate_equals_an_unrolled_diffusers_loop():
    """The reference loop against the same steps written out with DDIMScheduler by hand."""
    g = torch.Generator().manual_seed(2)
    table = torch.randn(10, 3, generator=g)

    def encode_text(prompts):
        ids = torch.tensor([[len(p) % 10, 1, 0] for p in prompts])
        return table[ids], ids != 0

    W = torch.randn(3, 2, generator=g)

    def unet(z, t, context, mask):
        return torch.tanh(z + (context.mean(1) @ W)[:, :, None, None] + t.view(-1, 1, 1, 1) / 1000)

    out = S.generate(["a", "bcd"], encode_text, unet, lambda z: z, ch06.make_scheduler(), guidance_scale=3.0,
                     num_steps=7, latent_shape=(2, 3, 3), scale_factor=0.5, generator=torch.Generator().manual_seed(3))
    sched = ch06.make_scheduler()
    sched.set_timesteps(7)
    lat = torch.randn((2, 2, 3, 3), generator=torch.Generator().manual_seed(3)) * sched.init_noise_sigma
    c, m = encode_text(["a", "bcd"])
    u, um = encode_text(["", ""])
    for t in sched.timesteps:
        e_c = unet(lat, t.repeat(2), c, m)
        e_u = unet(lat, t.repeat(2), u, um)
        lat = sched.step(e_u + 3.0 * (e_c - e_u), t, lat).prev_sample
    torch.testing.assert_close(out, lat / 0.5, atol=1e-5, rtol=1e-5)


class _Identity(torch.nn.Module):
    """A text block that does nothing: TextUNet is then chapter 05's U-Net."""

    def __init__(self, *args):
        super().__init__()

    def forward(self, x, context, mask=None):
        return x


@pytest.mark.parametrize("mults", [(1,), (1, 2), (1, 2, 2)])
def test_text_unet_with_an_identity_block_is_chapter_05s_unet(mults):
    """Oracle: chapter 05's reference UNet (its ResBlock and embedding checked against diffusers'
    ResnetBlock2D and get_timestep_embedding), the same weights by parameter order."""
    S5 = chapters.module("05_diffusion", "solutions")
    torch.manual_seed(0)
    mine = S.TextUNet(_Identity, in_channels=3, ch=8, mults=mults, context_dim=5, heads=2, groups=4)
    theirs = S5.UNet(in_channels=3, ch=8, mults=mults, num_classes=None, groups=4)
    assert [p.shape for p in mine.parameters()] == [p.shape for p in theirs.parameters()]
    with torch.no_grad():
        for p, q in zip(mine.parameters(), theirs.parameters()):
            q.copy_(p + 0.05 * torch.randn(p.shape))
            p.copy_(q)
    z, t = torch.randn(2, 3, 8, 12), torch.tensor([5, 900])
    with torch.no_grad():
        torch.testing.assert_close(mine(z, t, torch.randn(2, 4, 5)), theirs(z, t), atol=1e-5, rtol=1e-5)


def test_text_unet_layout_and_the_checks_known_output():
    """The documented layout (ch06.text_unet_layout) is the reference's, names and shapes, and
    the numbers the visible check stores are the reference's output, in float64."""
    from workbook.ch06 import checks as K
    for mults in ((1,), (1, 2), (2, 1, 3)):
        m = S.TextUNet(K.TextBlockStandIn, 3, 4, mults, 5, 2, 2)
        assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == \
            [(n, s) for n, s, _ in K.text_unet_layout(3, 4, mults, 5)]
    m = S.TextUNet(K.TextBlockStandIn, 4, 8, (1, 2), 6, 2, 4)
    K.set_unet_weights(m, K.text_unet_layout(4, 8, (1, 2), 6))
    z, t, context, mask = K.unet_check_inputs(torch.float64)
    with torch.no_grad():
        out = m.double()(z, t, context, mask)
    torch.testing.assert_close(out.flatten()[::32], torch.tensor(K.UNET_KNOWN_OUTPUT, dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_text_unet_with_the_reference_block_ignores_padding():
    unet = S.TextUNet(S.CrossAttnBlock, in_channels=4, ch=16, mults=(1, 2), context_dim=6, heads=2)
    z, context = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = unet(z, torch.tensor([3, 900]), context, mask)
    assert out.shape == z.shape
    changed = context.clone()
    changed[1, 2:] = 50.0  # padding only
    torch.testing.assert_close(unet(z, torch.tensor([3, 900]), changed, mask), out)
    assert unet.down_attn[0].last_attn.shape == (2, 2, 64, 5)
    assert math.isfinite(out.abs().sum().item())


def test_training_loss_leaves_its_inputs_and_the_global_generator_alone():
    def unet(z_t, t, context, mask):
        return 0.5 * z_t + context.mean()

    ab = torch.linspace(0.99, 0.01, 30, dtype=torch.float64)
    z0 = torch.randn(64, 2, 3, 3, dtype=torch.float64)
    context, mask = torch.randn(64, 5, 4, dtype=torch.float64), torch.rand(64, 5) < 0.7
    null_context, null_mask = torch.zeros(1, 5, 4, dtype=torch.float64), torch.tensor([[True] + [False] * 4])
    saved = [v.clone() for v in (z0, context, mask)]
    before = torch.random.get_rng_state()
    losses = [S.training_loss(unet, z0, context, mask, null_context, null_mask, ab, 0.5,
                              torch.Generator().manual_seed(4)) for _ in range(2)]
    assert torch.equal(before, torch.random.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(saved, (z0, context, mask)))
    assert torch.equal(losses[0], losses[1])


def test_block_runs_at_the_smallest_sizes_the_hidden_check_draws():
    """B = 1, H = 2, W = 1, one channel per group: GroupNorm still has two values per group."""
    block = S.CrossAttnBlock(4, 3, heads=1, groups=4)
    out = block(torch.randn(1, 4, 2, 1), torch.randn(1, 3, 3), torch.tensor([[True, True, False]]))
    assert out.shape == (1, 4, 2, 1) and block.last_attn[..., 2].abs().max() == 0
