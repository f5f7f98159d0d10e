"""Chapter 02 stand-ins: each exercise that later cells use, done by torchvision (or plain
torch where no installed library has it), with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `ssim = ch02.standins.ssim`: the rest of the
chapter runs with the stand-in; the exercise earns no points (its check says so). Remove the
line when your own version is ready.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..standin import stand_in


def _per_image(v, x: torch.Tensor) -> torch.Tensor:
    """A float or (B,) tensor as (B, 1, 1, 1) (or (1, 1, 1, 1)) in x's dtype and device."""
    return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1, *[1] * (x.dim() - 1))


# ----------------------------------------------------------------------------- 1 corruptions

@stand_in
def add_gaussian_noise(x, sigma, generator):
    """torch: `torch.addcmul(x, sigma, eps)` with eps drawn as the contract says (not clamped)."""
    noise = torch.randn(tuple(x.shape), generator=generator, dtype=x.dtype).to(x.device)
    return torch.addcmul(x, _per_image(sigma, x), noise)


@stand_in
def salt_and_pepper(x, p, generator):
    """torch: the two draws as the contract says, then `torch.where` (salt 1 where v < 0.5, else 0).
    Returns (x_noisy, mask)."""
    which, value = (torch.rand(tuple(x.shape), generator=generator, dtype=x.dtype).to(x.device) for _ in range(2))
    replaced = which < p
    return torch.where(replaced, (value < 0.5).to(x.dtype), x), replaced


@stand_in
def occlude_boxes(x, n_boxes, size, generator):
    """torchvision's `erase` (transforms.v2.functional), one call per box, on a mask image: the
    corners drawn as the contract says. Returns (x_occluded, mask (B, 1, H, W))."""
    from torchvision.transforms.v2.functional import erase
    B, _, H, W = x.shape
    top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator)
    left = torch.randint(0, W - size + 1, (B, n_boxes), generator=generator)
    visible = torch.ones(B, 1, H, W, dtype=torch.float32)
    for b in range(B):
        for k in range(n_boxes):
            visible[b] = erase(visible[b], int(top[b, k]), int(left[b, k]), size, size, torch.zeros(()))
    hidden = (visible == 0).to(x.device)
    return x.masked_fill(hidden, 0.0), hidden


# ----------------------------------------------------------------------------- 2 measures

@stand_in
def psnr(x_hat, x, data_range=1.0):
    """torch (no installed library has it): 20 log10(data_range) - 10 log10(MSE_b) per image."""
    mse = F.mse_loss(x_hat, x.to(x_hat.dtype), reduction="none").flatten(1).mean(1)
    return 20 * math.log10(data_range) - 10 * torch.log10(mse)


@stand_in
def ssim(x_hat, x, data_range=1.0):
    """SSIM (Wang et al. 2004) with torchvision's `gaussian_blur` (11 x 11, sigma 1.5) as the local
    mean, cut to the valid positions (5 pixels from each border, where its padding plays no part),
    averaged over positions and channels."""
    from torchvision.transforms.v2.functional import gaussian_blur
    c1, c2 = (data_range * 0.01) ** 2, (data_range * 0.03) ** 2  # the stabilising constants

    def mean(t):
        return gaussian_blur(t, [11, 11], [1.5, 1.5])[..., 5:-5, 5:-5]

    a, b = x_hat.to(x.dtype), x
    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b, cov = mean(a * a) - mu_a ** 2, mean(b * b) - mu_b ** 2, mean(a * b) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    structure = (2 * cov + c2) / (var_a + var_b + c2)
    return (luminance * structure).mean(dim=(1, 2, 3))


@stand_in
def masked_mse(x_hat, x, mask):
    """torch: `F.mse_loss` of the masked elements (`masked_select`, the mask broadcast over channels)."""
    return F.mse_loss(x_hat.masked_select(mask), x.masked_select(mask))


# ----------------------------------------------------------------------------- 3 the denoiser

@stand_in
class SigmaConditionedDenoiser(nn.Module):
    """Plain torch (no library has this small network): the layers of the exercise's docstring
    (`encoder`, `decoder`; the chapter later swaps `decoder[-1]`), with sigma as a constant
    second input channel; forward(x_noisy, sigma) -> x_hat (linear output)."""

    def __init__(self, c=32):
        super().__init__()
        down = [(2, c), (c, 2 * c)]
        self.encoder = nn.Sequential(*[m for a, b in down for m in (nn.Conv2d(a, b, 3, 2, 1), nn.ReLU())])
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c, 1, 4, 2, 1))

    def forward(self, x_noisy, sigma):
        level = _per_image(sigma, x_noisy).expand(x_noisy.shape[0], 1, *x_noisy.shape[2:])
        return self.decoder(self.encoder(torch.cat([x_noisy, level], dim=1)))


@stand_in
def denoising_step(model, x, sigma, optimizer, generator):
    """One step of torch.optim: the stand-in `add_gaussian_noise` corrupts x, the model is told
    the (B,) levels, `F.mse_loss` against the clean x. Returns the loss before the step."""
    levels = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).clone()
    value = F.mse_loss(model(add_gaussian_noise(x, levels, generator), levels), x)
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    optimizer.step(None)  # no closure
    return float(value.detach())
