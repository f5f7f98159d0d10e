"""Tests for autograder/chapters/02_denoising/solutions.py against independent oracles (numpy, scipy, torch)."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch
import torch.nn as nn
import torch.nn.functional as F
from autograder import chapters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_S = chapters.module("02_denoising", "solutions")
SigmaConditionedDenoiser = _S.SigmaConditionedDenoiser
add_gaussian_noise = _S.add_gaussian_noise
answer_dae_target = _S.answer_dae_target
answer_told_sigma = _S.answer_told_sigma
answer_one_category = _S.answer_one_category
denoising_step = _S.denoising_step
masked_mse = _S.masked_mse
occlude_boxes = _S.occlude_boxes
psnr = _S.psnr
salt_and_pepper = _S.salt_and_pepper
ssim = _S.ssim


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------
# Corruptions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0])
def test_gaussian_noise_is_gaussian(sigma):
    x = torch.rand(32, 1, 28, 28, generator=gen(0))
    x0 = x.clone()
    out = add_gaussian_noise(x, sigma, gen(1))
    assert torch.equal(x, x0)  # input untouched
    assert out.shape == x.shape and out.dtype == x.dtype
    z = ((out - x) / sigma).double().flatten().numpy()
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    if sigma >= 0.3:  # not clamped
        assert out.min() < 0 and out.max() > 1


def test_gaussian_noise_exact_draw_and_determinism():
    x = torch.rand(4, 1, 28, 28, generator=gen(2), dtype=torch.float64)
    a = add_gaussian_noise(x, 0.2, gen(3))
    b = add_gaussian_noise(x, 0.2, gen(3))
    c = add_gaussian_noise(x, 0.2, gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    eps = torch.empty(x.shape, dtype=torch.float64).normal_(generator=gen(3))  # same stream as randn
    torch.testing.assert_close(a, x + 0.2 * eps, rtol=0, atol=1e-12)
    assert a.dtype == torch.float64


def test_gaussian_noise_per_image_sigma():
    x = torch.zeros(3, 1, 64, 64)
    sigma = torch.tensor([0.0, 0.1, 0.5])
    out = add_gaussian_noise(x, sigma, gen(5))
    assert torch.equal(out[0], x[0])
    stds = out[1:].flatten(1).std(1)
    torch.testing.assert_close(stds, sigma[1:], rtol=0.05, atol=0)
    # a (B,) sigma equals per-image calls with the same stream
    eps = torch.randn(x.shape, generator=gen(5))
    torch.testing.assert_close(out, sigma.view(3, 1, 1, 1) * eps)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_salt_and_pepper_statistics(p):
    x = torch.full((16, 1, 28, 28), 0.5)
    x0 = x.clone()
    out, mask = salt_and_pepper(x, p, gen(0))
    assert torch.equal(x, x0)
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert torch.equal(mask, out != 0.5)
    n, k = mask.numel(), int(mask.sum())
    if 0 < p < 1:
        assert scipy.stats.binomtest(k, n, p).pvalue > 1e-3
        salt = int((out[mask] == 1).sum())
        assert scipy.stats.binomtest(salt, k, 0.5).pvalue > 1e-3
    else:
        assert k == (0 if p == 0 else n)
    assert set(out[mask].unique().tolist()) <= {0.0, 1.0}


def test_salt_and_pepper_exact_draws():
    x = torch.rand(3, 1, 28, 28, generator=gen(1))
    out, mask = salt_and_pepper(x, 0.3, gen(2))
    g = gen(2)
    u, v = torch.rand(x.shape, generator=g), torch.rand(x.shape, generator=g)
    want = np.where(u.numpy() < 0.3, (v.numpy() < 0.5).astype(np.float32), x.numpy())
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(mask.numpy(), u.numpy() < 0.3)


def naive_boxes(x, n_boxes, size, seed):
    """Loop oracle with the stated draws."""
    B, C, H, W = x.shape
    g = gen(seed)
    top = torch.randint(0, H - size + 1, (B, n_boxes), generator=g)
    left = torch.randint(0, W - size + 1, (B, n_boxes), generator=g)
    mask = np.zeros((B, 1, H, W), dtype=bool)
    for b in range(B):
        for k in range(n_boxes):
            mask[b, 0, top[b, k]:top[b, k] + size, left[b, k]:left[b, k] + size] = True
    out = x.numpy().copy()
    out[np.broadcast_to(mask, out.shape)] = 0
    return out, mask


@pytest.mark.parametrize("shape,n_boxes,size", [((5, 1, 28, 28), 2, 9), ((3, 3, 20, 24), 4, 5),
                                                ((2, 1, 28, 28), 1, 28), ((4, 1, 10, 12), 3, 1)])
def test_occlude_boxes_matches_loop(shape, n_boxes, size):
    x = torch.rand(*shape, generator=gen(7)) + 0.1
    x0 = x.clone()
    out, mask = occlude_boxes(x, n_boxes, size, gen(8))
    assert torch.equal(x, x0)
    want_out, want_mask = naive_boxes(x, n_boxes, size, 8)
    assert mask.dtype == torch.bool and mask.shape == (shape[0], 1, *shape[2:])
    np.testing.assert_array_equal(mask.numpy(), want_mask)
    np.testing.assert_array_equal(out.numpy(), want_out)


def test_occlude_boxes_single_box_geometry_and_full_range():
    size = 6
    x = torch.ones(2000, 1, 28, 28)
    _, mask = occlude_boxes(x, 1, size, gen(9))
    assert (mask.flatten(1).sum(1) == size * size).all()
    rows = mask[:, 0].any(2).float().argmax(1)  # top row of each box
    cols = mask[:, 0].any(1).float().argmax(1)
    assert set(rows.tolist()) == set(range(28 - size + 1))
    assert set(cols.tolist()) == set(range(28 - size + 1))


# ---------------------------------------------------------------------------
# PSNR and SSIM
# ---------------------------------------------------------------------------


def numpy_psnr(a, b, L):
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(L**2 / mse)


@pytest.mark.parametrize("L", [1.0, 255.0, 2.0])
def test_psnr_matches_numpy(L):
    g = gen(10)
    x = L * torch.rand(6, 2, 16, 16, generator=g, dtype=torch.float64)
    x_hat = x + L * torch.rand(6, 1, 1, 1, generator=g, dtype=torch.float64) * torch.randn(
        6, 2, 16, 16, generator=g, dtype=torch.float64)
    out = psnr(x_hat, x, L)
    assert out.shape == (6,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), numpy_psnr(x_hat.numpy(), x.numpy(), L), rtol=1e-12)


def test_psnr_known_values():
    x = torch.zeros(3, 1, 8, 8)
    x_hat = torch.stack([torch.full((1, 8, 8), v) for v in (0.1, 0.01, 1.0)])
    torch.testing.assert_close(psnr(x_hat, x), torch.tensor([20.0, 40.0, 0.0]), rtol=0, atol=1e-4)
    assert torch.isinf(psnr(x, x)).all()
    # Gaussian noise of std sigma: PSNR ~ -20 log10(sigma)
    big = torch.rand(4, 1, 256, 256, generator=gen(11))
    noisy = add_gaussian_noise(big, 0.1, gen(12))
    torch.testing.assert_close(psnr(noisy, big), torch.full((4,), 20.0), rtol=0, atol=0.05)


def scipy_ssim(a, b, L):
    """skimage's algorithm (gaussian_weights=True, sigma=1.5, use_sample_covariance=False):
    scipy Gaussian filter truncated at 3.5 sigma (11 taps), borders of 5 pixels cropped."""
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    res = []
    for p, q in zip(a, b):
        def filt(t):
            return np.stack([scipy.ndimage.gaussian_filter(ch, 1.5, truncate=3.5) for ch in t])[:, 5:-5, 5:-5]
        mp, mq = filt(p), filt(q)
        vp, vq, cpq = filt(p * p) - mp**2, filt(q * q) - mq**2, filt(p * q) - mp * mq
        res.append(((2 * mp * mq + C1) * (2 * cpq + C2) / ((mp**2 + mq**2 + C1) * (vp + vq + C2))).mean())
    return np.array(res)


def brute_force_ssim_at(p, q, i, j, L):
    """SSIM map of single-channel images p, q (numpy) at window centre (i, j), by explicit sums."""
    k = np.arange(-5, 6)
    g = np.exp(-k**2 / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    P, Q = p[i - 5:i + 6, j - 5:j + 6], q[i - 5:i + 6, j - 5:j + 6]
    mp, mq = (w * P).sum(), (w * Q).sum()
    vp, vq, c = (w * (P - mp) ** 2).sum(), (w * (Q - mq) ** 2).sum(), (w * (P - mp) * (Q - mq)).sum()
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return (2 * mp * mq + C1) * (2 * c + C2) / ((mp**2 + mq**2 + C1) * (vp + vq + C2))


@pytest.mark.parametrize("C,H,W,L", [(1, 28, 28, 1.0), (3, 16, 20, 255.0), (1, 11, 11, 1.0)])
def test_ssim_matches_scipy_oracle(C, H, W, L):
    g = gen(13)
    x = L * torch.rand(4, C, H, W, generator=g, dtype=torch.float64) ** 2
    x_hat = (x + L * 0.2 * torch.randn(4, C, H, W, generator=g, dtype=torch.float64)).clamp(0, L)
    out = ssim(x_hat, x, L)
    assert out.shape == (4,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), scipy_ssim(x_hat.numpy(), x.numpy(), L), rtol=0, atol=1e-10)


def test_ssim_map_by_brute_force():
    g = gen(14)
    x = torch.rand(1, 1, 15, 13, generator=g, dtype=torch.float64)
    x_hat = x * 0.5 + 0.3 * torch.rand(1, 1, 15, 13, generator=g, dtype=torch.float64)
    # the valid map is 5 x 3; its mean is the SSIM
    vals = [brute_force_ssim_at(x_hat[0, 0].numpy(), x[0, 0].numpy(), i, j, 1.0)
            for i in range(5, 10) for j in range(5, 8)]
    np.testing.assert_allclose(ssim(x_hat, x).item(), np.mean(vals), rtol=0, atol=1e-12)


def test_ssim_properties():
    g = gen(15)
    a = torch.rand(3, 1, 28, 28, generator=g)
    torch.testing.assert_close(ssim(a, a), torch.ones(3), rtol=0, atol=1e-5)
    noisy = [add_gaussian_noise(a, s, gen(16)).clamp(0, 1) for s in (0.05, 0.2, 0.5)]
    values = torch.stack([ssim(n, a) for n in noisy])  # (3 levels, 3 images)
    assert (values[:-1] > values[1:]).all()           # more noise, lower SSIM
    assert (values <= 1).all()
    b = noisy[1]
    torch.testing.assert_close(ssim(a, b), ssim(b, a))
    torch.testing.assert_close(ssim(b[1:2], a[1:2]), ssim(b, a)[1:2])
    # luminance only: constant images
    c0, c1 = torch.full((1, 1, 20, 20), 0.2, dtype=torch.float64), torch.full((1, 1, 20, 20), 0.6, dtype=torch.float64)
    want = (2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4)
    torch.testing.assert_close(ssim(c0, c1), torch.tensor([want], dtype=torch.float64))


# ---------------------------------------------------------------------------
# SigmaConditionedDenoiser
# ---------------------------------------------------------------------------


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("c", [32, 8, 1])
def test_denoiser_structure(c):
    model = SigmaConditionedDenoiser(c=c)
    enc = (2 * c * 9 + c) + (c * 2 * c * 9 + 2 * c)
    dec = (2 * c * c * 16 + c) + (c * 16 + 1)
    assert count(model.encoder) == enc and count(model.decoder) == dec
    assert [type(m) for m in model.encoder] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]
    assert [type(m) for m in model.decoder] == [nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d]


def test_denoiser_forward_shapes_sigma_channel_and_grads():
    torch.manual_seed(0)
    model = SigmaConditionedDenoiser(c=4)
    x = torch.rand(3, 1, 28, 28, generator=gen(17))
    sigma = torch.tensor([0.1, 0.5, 0.9])
    out = model(x, sigma)
    assert out.shape == (3, 1, 28, 28)
    assert model.encoder[:2](torch.cat([x, x], 1)).shape == (3, 4, 14, 14)
    assert model.encoder(torch.cat([x, x], 1)).shape == (3, 8, 7, 7)
    # the second input channel is the constant sigma map: a first conv on it by hand
    conv = model.encoder[0]
    h = torch.cat([x, sigma.view(3, 1, 1, 1) * torch.ones_like(x)], 1)
    torch.testing.assert_close(model(x, sigma), model.decoder(model.encoder(h)))
    torch.testing.assert_close(model.encoder[0](h), F.conv2d(h, conv.weight, conv.bias, stride=2, padding=1))
    # each image sees only its own sigma
    torch.testing.assert_close(model(x[1:2], sigma[1:2]), out[1:2])
    assert not torch.allclose(model(x, sigma.flip(0)), out)
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------
# denoising_step
# ---------------------------------------------------------------------------


class Oracle(nn.Module):
    """Knows the noise: replays the generator and returns x_noisy - sigma * eps (the clean x)."""

    def __init__(self, seed):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.seed = seed

    def forward(self, x_noisy, sigma):
        eps = torch.randn(x_noisy.shape, generator=gen(self.seed), dtype=x_noisy.dtype)
        return self.w * (x_noisy - sigma.view(-1, 1, 1, 1) * eps)


def test_denoising_step_target_is_clean():
    x = torch.rand(4, 1, 28, 28, generator=gen(18))
    model = Oracle(seed=19)
    loss = denoising_step(model, x, torch.tensor([0.1, 0.3, 0.5, 1.0]), torch.optim.SGD(model.parameters(), lr=0.1),
                          gen(19))
    assert loss == pytest.approx(0.0, abs=1e-12)
    # a model that copies its input pays exactly the noise: mean(sigma^2 eps^2)
    copy_model = Oracle(seed=19)
    copy_model.forward = lambda x_noisy, sigma: x_noisy * copy_model.w
    loss = denoising_step(copy_model, x, 0.3, torch.optim.SGD(copy_model.parameters(), lr=0.0), gen(20))
    eps = torch.randn(x.shape, generator=gen(20))
    assert loss == pytest.approx(((0.3 * eps) ** 2).mean().item(), rel=1e-6)


@pytest.mark.parametrize("sigma", [0.4, "tensor"])
def test_denoising_step_matches_manual(sigma):
    torch.manual_seed(21)
    model = SigmaConditionedDenoiser(c=3)
    ref = copy.deepcopy(model)
    x = torch.rand(5, 1, 28, 28, generator=gen(22))
    s = torch.rand(5, generator=gen(23)) if sigma == "tensor" else sigma
    for p in model.parameters():  # stale gradients must not leak into the step
        p.grad = torch.full_like(p, 10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    loss = denoising_step(model, x, s, opt, gen(24))
    assert isinstance(loss, float)

    s_b = torch.as_tensor(s, dtype=torch.float32).expand(5)
    x_noisy = x + s_b.view(5, 1, 1, 1) * torch.randn(x.shape, generator=gen(24))
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    ref_loss = ((ref(x_noisy, s_b) - x) ** 2).mean()
    ref_opt.zero_grad()
    ref_loss.backward()
    ref_opt.step()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-6)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)


def test_denoising_step_learns():
    torch.manual_seed(25)
    model = SigmaConditionedDenoiser(c=4)
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 8:20, 10:18] = 1.0  # one bright rectangle, the same in every image: learnable
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = gen(27)
    losses = [denoising_step(model, x, 0.3, opt, g) for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


# ---------------------------------------------------------------------------
# masked_mse
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("C,frac,seed", [(1, 0.2, 0), (3, 0.5, 1), (1, 0.01, 2)])
def test_masked_mse_matches_numpy_masked_array(C, frac, seed):
    g = gen(30 + seed)
    x = torch.rand(4, C, 12, 12, generator=g, dtype=torch.float64)
    x_hat = torch.rand(4, C, 12, 12, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 1, 12, 12, generator=g) < frac
    mask[0, 0, 0, 0] = True
    out = masked_mse(x_hat, x, mask)
    assert out.dim() == 0
    d2 = (x_hat - x).numpy() ** 2
    full_mask = np.broadcast_to(mask.numpy(), d2.shape)
    np.testing.assert_allclose(out.item(), np.ma.masked_array(d2, mask=~full_mask).mean(), rtol=1e-12)


def test_masked_mse_full_mask_is_mse_and_grad():
    x = torch.rand(2, 1, 6, 6, generator=gen(40))
    x_hat = torch.rand(2, 1, 6, 6, generator=gen(41), requires_grad=True)
    out = masked_mse(x_hat, x, torch.ones(2, 1, 6, 6, dtype=torch.bool))
    torch.testing.assert_close(out, F.mse_loss(x_hat, x))
    mask = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    mask[1, 0, 2:4, 2:4] = True
    masked_mse(x_hat, x, mask).backward()
    assert (x_hat.grad[~mask] == 0).all() and (x_hat.grad[mask] != 0).all()


# ---------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------


def test_quiz_answers():
    assert answer_told_sigma == "B"
    assert answer_dae_target == "B"
    assert answer_one_category == {"A", "C"}


# ---------------------------------------------------------------------------
# The contract points the hidden checks exercise
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_corruptions_keep_dtype_channels_and_global_rng(dtype):
    x = torch.rand(2, 3, 9, 14, generator=gen(0), dtype=dtype) + 0.1
    before = torch.random.get_rng_state()
    noisy = add_gaussian_noise(x, torch.tensor([0.1, 0.5], dtype=dtype), gen(1))
    sp, sp_mask = salt_and_pepper(x, 0.3, gen(2))
    occ, occ_mask = occlude_boxes(x, 2, 9, gen(3))  # a box as tall as the image
    assert torch.equal(before, torch.random.get_rng_state())
    assert noisy.dtype == sp.dtype == occ.dtype == dtype
    eps = torch.randn(x.shape, generator=gen(1), dtype=dtype)
    assert torch.equal(noisy, x + torch.tensor([0.1, 0.5], dtype=dtype).view(2, 1, 1, 1) * eps)
    assert sp_mask.shape == x.shape and bool(sp_mask[:, 0].ne(sp_mask[:, 1]).any())  # one draw per channel
    assert occ_mask.shape == (2, 1, 9, 14)
    assert bool((occ[occ_mask.expand_as(x)] == 0).all()) and bool((occ[~occ_mask.expand_as(x)] > 0).all())
    g = gen(3)
    top = torch.randint(0, 1, (2, 2), generator=g)
    left = torch.randint(0, 14 - 9 + 1, (2, 2), generator=g)  # columns range over W, not H
    assert bool((top == 0).all())
    for b in range(2):
        want = torch.zeros(9, 14, dtype=torch.bool)
        for k in range(2):
            want[:, left[b, k]:left[b, k] + 9] = True
        assert torch.equal(occ_mask[b, 0], want)


def test_psnr_identical_images_is_inf_and_batch_of_one():
    x = torch.rand(1, 3, 5, 7, generator=gen(0))
    out = psnr(x.clone(), x)
    assert out.shape == (1,) and out.dtype == torch.float32 and torch.isinf(out).all() and out.item() > 0
