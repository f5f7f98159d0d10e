"""Chapter 02 reference solutions: denoising autoencoders."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def add_gaussian_noise(x, sigma, generator):
    """Corrupt images with additive Gaussian noise: x + sigma * eps.

    The noise is drawn exactly as
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    (on the CPU, where the generator lives) and then moved to x.device, so the same
    generator seed always gives the same noise; the global generator is not used. The result is NOT clamped to [0, 1]:
    the noise stays exactly Gaussian (values may be negative or above 1).

    Args:
        x: (B, C, H, W) clean images. Not modified.
        sigma: noise standard deviation, a float (same for every image) or a
            tensor of shape (B,) (one level per image) of any float dtype.
        generator: torch.Generator (CPU) for the draw.

    Returns:
        x_noisy: (B, C, H, W), same dtype and device as x (whatever sigma's dtype).
    """
    # one sigma per image, broadcast over (C, H, W)
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, *[1] * (x.dim() - 1))
    # eps ~ N(0, I)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)  # (B, C, H, W)
    # x_noisy = x + sigma eps
    x_noisy = x + sigma * eps  # (B, C, H, W), not clamped
    return x_noisy


def salt_and_pepper(x, p, generator):
    """Salt-and-pepper noise: each pixel is replaced with probability p by 0 or 1.

    Draws, in this order, both with shape x.shape and dtype x.dtype (from `generator` only):
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)     # which pixels
        v = torch.rand(x.shape, generator=generator, dtype=x.dtype)     # their new value
    A pixel is replaced where u < p; its new value is 1 ("salt") where v < 0.5, else 0
    ("pepper"). Other pixels keep their value.

    Args:
        x: (B, C, H, W) clean images in [0, 1]. Not modified.
        p: float in [0, 1], the probability that a pixel is replaced.
        generator: torch.Generator (CPU) for the draws.

    Returns:
        x_noisy: (B, C, H, W), same dtype as x.
        mask: (B, C, H, W) bool, True exactly where a pixel was replaced (u < p), also
            where its new value equals its old one (a 0 pixel that got pepper).
    """
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    # replaced with probability p
    mask = u < p  # (B, C, H, W) bool
    # new value: 1 or 0 with probability 1/2 each
    salt = v < 0.5
    x_noisy = torch.where(mask, salt.to(x.dtype), x)
    return x_noisy, mask


def occlude_boxes(x, n_boxes, size, generator):
    """Hide n_boxes random size x size squares of every image (set them to 0).

    Top-left corners are drawn exactly as
        top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator)
        left = torch.randint(0, W - size + 1, (B, n_boxes), generator=generator)
    (in this order, from `generator` only), so every box lies fully inside the image. Box k of image b covers
    rows top[b, k] .. top[b, k] + size - 1 and columns left[b, k] .. left[b, k] + size - 1.
    Boxes may overlap.

    Args:
        x: (B, C, H, W) images. Not modified.
        n_boxes: int >= 1, boxes per image.
        size: int, 1 <= size <= min(H, W), the side of every box in pixels.
        generator: torch.Generator (CPU) for the draws.

    Returns:
        x_occluded: (B, C, H, W), same dtype as x, with every pixel inside a box set to 0
            (all channels).
        mask: (B, 1, H, W) bool, True inside the union of the image's boxes.
    """
    B, C, H, W = x.shape
    top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator).to(x.device)
    left = torch.randint(0, W - size + 1, (B, n_boxes), generator=generator).to(x.device)
    rows = torch.arange(H, device=x.device)  # (H,)
    cols = torch.arange(W, device=x.device)  # (W,)
    # in_rows[b, k, i] = top <= i < top + size; in_cols likewise
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + size)  # (B, n_boxes, H)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + size)  # (B, n_boxes, W)
    boxes = in_rows[..., :, None] & in_cols[..., None, :]  # (B, n_boxes, H, W)
    mask = boxes.any(dim=1, keepdim=True)  # (B, 1, H, W): union of the boxes
    x_occluded = x.masked_fill(mask, 0.0)
    return x_occluded, mask


def psnr(x_hat, x, data_range=1.0):
    """Peak signal-to-noise ratio of every image, in decibels.

    PSNR_b = 10 log10(data_range^2 / MSE_b), with MSE_b the mean squared error over
    the pixels (and channels) of image b only. Identical images give +inf.

    Args:
        x_hat: (B, C, H, W) restored images.
        x: (B, C, H, W) reference (clean) images.
        data_range: float, the largest possible pixel value minus the smallest
            (1.0 for images in [0, 1], 255 for 8-bit images).

    Returns:
        psnr: (B,) tensor (also for B = 1), one value per image, dtype of x_hat.
    """
    # MSE_b = mean over (C, H, W) of (x_hat - x)^2
    mse = ((x_hat - x) ** 2).flatten(1).mean(dim=1)  # (B,)
    # PSNR_b = 10 log10(L^2 / MSE_b)
    psnr = 10 * torch.log10(data_range**2 / mse)
    return psnr


def ssim(x_hat, x, data_range=1.0):
    """Structural similarity (Wang et al., 2004) of every image.

    Local statistics use an 11 x 11 Gaussian window w with standard deviation 1.5
    (w[i, j] = g[i] g[j], g[k] proportional to exp(-k^2 / (2 * 1.5^2)) for
    k = -5..5, normalised to sum 1), applied to each channel with no padding
    ("valid" positions only: an (H-10) x (W-10) map). With L = data_range,
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 and, at every position,
        mu_x = w * x,  sigma_x^2 = w * x^2 - mu_x^2,  sigma_xy = w * (x y) - mu_x mu_y,
        SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    the result is the mean of this map over positions and channels. This matches
    skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L).

    Args:
        x_hat: (B, C, H, W) restored images, H, W >= 11.
        x: (B, C, H, W) reference images.
        data_range: float, the range of pixel values L.

    Returns:
        ssim: (B,) tensor, one value per image (1 for identical images), dtype of x.
    """
    C = x.shape[1]
    C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # 11 x 11 Gaussian window, sigma 1.5, sums to 1
    k = torch.arange(-5, 6, dtype=x.dtype, device=x.device)  # (11,)
    g = torch.exp(-(k**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(C, 1, 11, 11)  # (C, 1, 11, 11), one per channel

    def local_mean(t):  # (B, C, H, W) -> (B, C, H - 10, W - 10), valid positions only
        return F.conv2d(t, window, groups=C)

    mu_x, mu_y = local_mean(x_hat), local_mean(x)
    # sigma^2 = E[x^2] - mu^2, sigma_xy = E[xy] - mu_x mu_y
    sxx = local_mean(x_hat * x_hat) - mu_x**2
    syy = local_mean(x * x) - mu_y**2
    sxy = local_mean(x_hat * x) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + C1) * (2 * sxy + C2)) / ((mu_x**2 + mu_y**2 + C1) * (sxx + syy + C2))
    return ssim_map.flatten(1).mean(dim=1)  # (B,)


class SigmaConditionedDenoiser(nn.Module):
    """A convolutional denoising autoencoder told the noise level sigma.

    sigma enters as an extra, constant input channel: the input of the encoder is
    h = concat([x_noisy, sigma_map], dim=1) of shape (B, 2, 28, 28), with
    sigma_map[b] filled with sigma[b]. Layers:
        encoder = Sequential(Conv2d(2, c, 3, stride=2, padding=1), ReLU,       # (B, c, 14, 14)
                             Conv2d(c, 2c, 3, stride=2, padding=1), ReLU)      # (B, 2c, 7, 7)
        decoder = Sequential(ConvTranspose2d(2c, c, 4, stride=2, padding=1), ReLU,  # (B, c, 14, 14)
                             ConvTranspose2d(c, 1, 4, stride=2, padding=1))         # (B, 1, 28, 28)
    forward(x_noisy, sigma) = decoder(encoder(h)). The output layer is linear (no
    Sigmoid): a Sigmoid saturates when training first pushes every pixel towards the
    black background, and the network can stall there. Clip to [0, 1] for display.
    """

    def __init__(self, c=32):
        """Build encoder and decoder.

        Args:
            c: int, channels of the first conv layer (the second has 2c).
        """
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(2, c, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, 2c, 7, 7)
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, c, 14, 14)
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28), linear output
        )

    def forward(self, x_noisy, sigma):
        """Denoise a batch.

        Args:
            x_noisy: (B, 1, 28, 28) corrupted images.
            sigma: (B,) tensor, the noise level of each image.

        Returns:
            x_hat: (B, 1, 28, 28) estimates of the clean images (not clipped).
        """
        B, _, H, W = x_noisy.shape
        # sigma_map[b, 0, i, j] = sigma[b]
        sigma_map = sigma.to(x_noisy.dtype).view(B, 1, 1, 1).expand(B, 1, H, W)  # (B, 1, H, W)
        h = torch.cat([x_noisy, sigma_map], dim=1)  # (B, 2, H, W)
        return self.decoder(self.encoder(h))


def denoising_step(model, x, sigma, optimizer, generator):
    """One training step of a denoising autoencoder on a clean batch x.

    Corrupt the input, keep the target clean:
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype), moved to x.device
        x_noisy = x + sigma * eps              (one sigma per image)
        model(x_noisy, sigma_b) -> x_hat       (sigma_b: the (B,) tensor of levels, on x.device,
                                                also for a float sigma)
        loss = mean over all elements of (x_hat - x)^2   (against the CLEAN x)
    then clear old gradients, backpropagate and take one optimizer step.

    Args:
        model: nn.Module called as model(x_noisy, sigma_b) -> x_hat of x's shape.
        x: (B, C, H, W) clean images.
        sigma: float (same level for every image) or (B,) tensor.
        optimizer: torch.optim.Optimizer over model's parameters.
        generator: torch.Generator (CPU) for the noise.

    Returns:
        loss: Python float, the loss before the step.
    """
    B = x.shape[0]
    sigma_b = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(B)  # (B,)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)  # (B, C, H, W)
    # x_noisy = x + sigma eps
    x_noisy = x + sigma_b.view(B, *[1] * (x.dim() - 1)) * eps
    x_hat = model(x_noisy, sigma_b)  # (B, C, H, W)
    # L = mean (x_hat - x)^2: the target is the clean image
    loss = F.mse_loss(x_hat, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def masked_mse(x_hat, x, mask):
    """Mean squared error over the masked pixels only.

    Args:
        x_hat: (B, C, H, W) restored images.
        x: (B, C, H, W) reference images.
        mask: bool tensor of shape (B, 1, H, W) (covering every channel) or (B, C, H, W),
            True on the pixels to score; at least one pixel must be True.

    Returns:
        mse: 0-dim tensor, sum over masked pixels of (x_hat - x)^2 divided by the
            number of masked pixels (every channel of a masked pixel counts).
    """
    mask = mask.expand_as(x)  # (B, C, H, W)
    # mean over {pixels with mask = True} of (x_hat - x)^2
    return ((x_hat - x) ** 2)[mask].mean()


# Quiz: The sigma-conditioned denoiser is given an image with noise level 0.3 but told
# sigma = 0.8. What do you expect its output to look like?
#   A: the noisy input, unchanged
#   B: smoother than the clean image: it removes more than the noise, thinning and blurring strokes
#   C: noisier than the input
#   D: the same as when told the true level: sigma only scales the input
answer_told_sigma = "B"

# Quiz: The denoiser of section 3 has more hidden units than an image has pixels, yet,
# trained on noisy inputs, it does not learn to copy its input. Why?
#   A: its code (B, 2c, 7, 7) is too small to hold an image
#   B: a copy keeps the noise, and the loss compares the output with the clean image,
#      so copying costs about sigma^2 per pixel
#   C: a network with ReLUs cannot represent the identity map
#   D: the noise makes the gradients vanish when the output is close to the input
answer_dae_target = "B"

# Quiz: Two copies of the chapter's small denoiser, with the same number of weights and
# the same number of training images, are trained: one on digits only, one on a mixture of
# digits, letters, faces and clothes. Suppose that, tested on digits, the digit-only one
# restores better. Which statements explain that? (choose all that apply)
#   A: To fill in a missing or noisy pixel it relies on structure shared by its training
#      images; one category shares much more structure than a mixture, so all of its
#      weights and examples serve digits.
#   B: Its loss can only be computed when every training image has the same label.
#   C: Images of one category lie close to a low-dimensional set (a "manifold") that a
#      small network can learn from few examples; restoring an image means moving it back
#      onto that set.
#   D: A denoiser trained on several categories cannot restore any of them well, however
#      large the network and the data set.
answer_one_category = {"A", "C"}
