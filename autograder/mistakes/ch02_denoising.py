"""Chapter 02: realistic learner mistakes and correct alternatives."""
from autograder.mutants import Alternative, Mistake

MISTAKES = [
    # add_gaussian_noise
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps",
            "x_noisy = (x + sigma * eps).clamp(0, 1)",
            "x_noisy was clamped to [0, 1]: return x + sigma * eps unclamped", expect="do not clamp"),
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps", "x_noisy = x.add_(sigma * eps)",
            "x was modified in place", expect="in place"),
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps", "x_noisy = x + sigma**2 * eps",
            "sigma is the standard deviation: use sigma * eps, not sigma**2 * eps", expect=r"sigma\*\*2"),
    Mistake("noise_checks", "add_gaussian_noise", "torch.randn(x.shape, generator=generator, dtype=x.dtype).to(",
            "torch.randn(x.shape, dtype=x.dtype).to(",
            "the noise was drawn from the global generator: pass generator=generator", expect="generator"),
    Mistake("noise_checks", "add_gaussian_noise", "torch.randn(x.shape, generator=generator, dtype=x.dtype).to(",
            "torch.rand(x.shape, generator=generator, dtype=x.dtype).to(",
            "eps must be standard normal (torch.randn), not uniform (torch.rand)", expect="not uniform"),
    Mistake("noise_checks", "add_gaussian_noise", ".reshape(-1, *[1] * (x.dim() - 1))", "",
            "a (B,) sigma must be reshaped to (B, 1, 1, 1)", diagnosed=False),
    # salt_and_pepper
    Mistake("salt_pepper_checks", "salt_and_pepper", "mask = u < p", "mask = u > p",
            "a pixel must be replaced with probability p: use u < p, not u > p", expect=r"u < p, not u > p"),
    Mistake("salt_pepper_checks", "salt_and_pepper", "torch.where(mask, salt.to(x.dtype), x)",
            "torch.where(mask, torch.ones_like(x), x)",
            "salt AND pepper: replaced pixels must become 1 or 0 with probability 1/2 each", expect="salt AND pepper"),
    Mistake("salt_pepper_checks", "salt_and_pepper", "x_noisy = torch.where(mask, salt.to(x.dtype), x)",
            "x[mask] = salt.to(x.dtype)[mask]\n    x_noisy = x",
            "x was modified in place", expect="in place"),
    Mistake("salt_pepper_checks", "salt_and_pepper", "torch.where(mask, salt.to(x.dtype), x)",
            "torch.where(mask, v, x)",
            "replaced pixels must be exactly 0 or 1, not a random value", expect="exactly 0 or 1"),
    Mistake("salt_pepper_checks", "salt_and_pepper", "return x_noisy, mask", "return x_noisy, mask.float()",
            "mask must be a bool tensor", expect="bool tensor"),
    # occlude_boxes
    Mistake("occlusion_checks", "occlude_boxes", "top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator).to(",
            "top = torch.randint(0, H - size, (B, n_boxes), generator=generator).to(",
            "corners must range over 0 .. H - size inclusive (torch.randint's high is exclusive)",
            expect="inclusive"),
    Mistake("occlusion_checks", "occlude_boxes", "(rows < top[..., None] + size)", "(rows <= top[..., None] + size)",
            "a box covers rows top .. top + size - 1: use < top + size", expect=r"not <="),
    Mistake("occlusion_checks", "occlude_boxes", "x.masked_fill(mask, 0.0)", "x.masked_fill(mask, 1.0)",
            "occluded pixels must be set to 0", expect="set to 0"),
    Mistake("occlusion_checks", "occlude_boxes", "x_occluded = x.masked_fill(mask, 0.0)",
            "x_occluded = x.masked_fill_(mask, 0.0)", "x was modified in place", expect="in place"),
    Mistake("occlusion_checks", "occlude_boxes", "boxes.any(dim=1, keepdim=True)", "boxes[:, :1]",
            "the mask must be the union of all boxes", expect="union"),
    # psnr
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "255.0**2 / mse",
            "use data_range as the peak value L, not 255", expect="not 255"),
    Mistake("psnr_checks", "psnr", "torch.log10(", "torch.log(",
            "PSNR uses log10, not the natural log", expect="log10, not the natural log"),
    Mistake("psnr_checks", "psnr", "mse = ((x_hat - x) ** 2).flatten(1).mean(dim=1)", "mse = F.mse_loss(x_hat, x)",
            "the MSE was averaged over the whole batch: one MSE per image", expect="one value per image"),
    Mistake("psnr_checks", "psnr", "return psnr", "return psnr.mean()",
            "the PSNRs were averaged over the batch: return one per image", expect="one value per image"),
    Mistake("psnr_checks", "psnr", "10 * torch.log10", "20 * torch.log10",
            "PSNR = 10 log10(L^2 / MSE); 20 log10 goes with L / RMSE", expect="20 log10 goes with"),
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "1.0 / mse",
            "use the data_range argument as the peak value L (here 255), not 1", expect=r"\(here 255\), not 1"),
    # ssim
    Mistake("ssim_checks", "ssim", "C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2",
            "C1, C2 = 0.01**2, 0.03**2",
            "the constants must scale with data_range", expect="scale the constants with data_range"),
    Mistake("ssim_checks", "ssim", "g = torch.exp(-(k**2) / (2 * 1.5**2))", "g = torch.ones_like(k)",
            "you used a uniform (box) window: weight by the 11x11 Gaussian window (sigma 1.5)", expect="uniform"),
    Mistake("ssim_checks", "ssim",
            "sxx = local_mean(x_hat * x_hat) - mu_x**2\n    syy = local_mean(x * x) - mu_y**2\n"
            "    sxy = local_mean(x_hat * x) - mu_x * mu_y",
            "sxx = local_mean(x_hat * x_hat)\n    syy = local_mean(x * x)\n    sxy = local_mean(x_hat * x)",
            "variances and covariance need the means subtracted", expect="means subtracted"),
    Mistake("ssim_checks", "ssim", "F.conv2d(t, window, groups=C)", "F.conv2d(t, window, groups=C, padding=5)",
            "zero padding: use the valid positions only", expect="no padding"),
    Mistake("ssim_checks", "ssim", "return ssim_map.flatten(1).mean(dim=1)", "return ssim_map.mean()",
            "one SSIM per image, not one for the batch", expect="one value per image"),
    # SigmaConditionedDenoiser
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "h = torch.cat([x_noisy, sigma_map], dim=1)",
            "h = torch.cat([x_noisy, torch.zeros_like(sigma_map)], dim=1)",
            "sigma is ignored: fill the second input channel with sigma[b]", expect="sigma is ignored"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "h = torch.cat([x_noisy, sigma_map], dim=1)",
            "h = torch.cat([sigma_map, x_noisy], dim=1)",
            "channel order: image first, then the sigma map (torch.cat([x_noisy, sigma_map], 1))",
            expect="image first"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "sigma.to(x_noisy.dtype).view(B, 1, 1, 1)",
            "sigma.to(x_noisy.dtype).mean().view(1, 1, 1, 1)",
            "each image must get its own sigma[b] (do not average sigma over the batch)", expect="its own sigma"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28), linear output",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.Sigmoid(),",
            "the output layer is linear: no Sigmoid (or other activation) after the last ConvTranspose2d",
            expect="output layer is linear"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),\n            nn.ReLU(),",
            "nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),",
            "ReLU after the second conv", diagnosed=False),
    # denoising_step
    Mistake("denoising_step_checks", "denoising_step", "loss = F.mse_loss(x_hat, x)",
            "loss = F.mse_loss(x_hat, x_noisy)",
            "the target must be the CLEAN x, not the noisy input", expect="CLEAN x"),
    Mistake("denoising_step_checks", "denoising_step", "loss = F.mse_loss(x_hat, x)",
            "loss = F.mse_loss(x_hat, x + sigma_b.view(B, *[1] * (x.dim() - 1)) "
            "* torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))",
            "noise was added to the target: the target is the clean x", expect="noise was added to the target"),
    Mistake("denoising_step_checks", "denoising_step", "x_hat = model(x_noisy, sigma_b)", "x_hat = model(x, sigma_b)",
            "corrupt the input: the model must see x_noisy", expect="corrupt the input"),
    Mistake("denoising_step_checks", "denoising_step", "x_hat = model(x_noisy, sigma_b)",
            "x_hat = model(x_noisy, torch.zeros_like(sigma_b))",
            "sigma is ignored: pass the true noise level to the model", expect="sigma is ignored"),
    Mistake("denoising_step_checks", "denoising_step", "optimizer.zero_grad()\n", "\n",
            "gradients were not reset: call optimizer.zero_grad() before backward()", expect="zero_grad"),
    Mistake("denoising_step_checks", "denoising_step", "return loss.item()",
            "return F.mse_loss(model(x_noisy, sigma_b), x).item()",
            "return the loss computed before optimizer.step(), not after", expect=r"before optimizer\.step\(\), not after"),
    # masked_mse
    Mistake("masked_mse_checks", "masked_mse", "[mask].mean()", "[~mask].mean()",
            "the mask is inverted: score the pixels where mask is True", expect="inverted"),
    Mistake("masked_mse_checks", "masked_mse", "((x_hat - x) ** 2)[mask].mean()", "((x_hat - x) ** 2 * mask).mean()",
            "divide by the number of masked pixels, not by all pixels", expect="number of masked pixels"),
    Mistake("masked_mse_checks", "masked_mse", "((x_hat - x) ** 2)[mask].mean()", "((x_hat - x) ** 2).mean()",
            "only the pixels inside the mask count", expect="only the pixels inside"),
    Mistake("masked_mse_checks", "masked_mse", "[mask].mean()", "[mask].sum()",
            "a mean over the masked pixels, not a sum", expect="not a sum"),
    Mistake("masked_mse_checks", "masked_mse", "mask = mask.expand_as(x)  # (B, C, H, W)", "pass",
            "the mask must be broadcast over the channels", diagnosed=False),
    # quiz
    Mistake("quiz_not_unsupervised", "answer_not_unsupervised", '"A"', '"E"', "wrong answer", diagnosed=False),
    Mistake("quiz_dae_target", "answer_dae_target", '"B"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_one_category", "answer_one_category", '{"A", "C"}', '{"A", "B", "C"}', "wrong answer",
            diagnosed=False),
]

ALTERNATIVES = [
    Alternative("noise_checks", "add_gaussian_noise", '''
def add_gaussian_noise(x, sigma, generator):
    """normal_ on an empty tensor uses the same draws as torch.randn; sigma broadcast by hand."""
    eps = torch.empty(x.shape, dtype=x.dtype).normal_(generator=generator).to(x.device)
    if torch.is_tensor(sigma) and sigma.dim() == 1:
        sigma = sigma.to(x.dtype)[:, None, None, None]
    return x + sigma * eps
''', "normal_ instead of randn"),
    Alternative("salt_pepper_checks", "salt_and_pepper", '''
def salt_and_pepper(x, p, generator):
    """clone and index instead of torch.where."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    v = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    mask = u < p
    x_noisy = x.clone()
    x_noisy[mask] = (v[mask] < 0.5).to(x.dtype)
    return x_noisy, mask
'''),
    Alternative("occlusion_checks", "occlude_boxes", '''
def occlude_boxes(x, n_boxes, size, generator):
    """Loops over images and boxes with slicing."""
    B, C, H, W = x.shape
    top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator)
    left = torch.randint(0, W - size + 1, (B, n_boxes), generator=generator)
    mask = torch.zeros(B, 1, H, W, dtype=torch.bool, device=x.device)
    for b in range(B):
        for k in range(n_boxes):
            i, j = int(top[b, k]), int(left[b, k])
            mask[b, :, i:i + size, j:j + size] = True
    return x * ~mask, mask
'''),
    Alternative("psnr_checks", "psnr", '''
def psnr(x_hat, x, data_range=1.0):
    """MSE via F.mse_loss(reduction='none') and 20 log10(L) - 10 log10(MSE)."""
    mse = F.mse_loss(x_hat, x, reduction="none").mean(dim=(1, 2, 3))
    return 20 * torch.log10(torch.as_tensor(data_range, dtype=mse.dtype)) - 10 * torch.log10(mse)
'''),
    Alternative("ssim_checks", "ssim", '''
def ssim(x_hat, x, data_range=1.0):
    """Separable Gaussian filtering (rows, then columns) and unfold-free valid convolution."""
    B, C, H, W = x.shape
    k = torch.arange(11, dtype=x.dtype) - 5
    g = torch.exp(-k**2 / 4.5)
    g = g / g.sum()
    def blur(t):
        t = t.reshape(B * C, 1, H, W)
        t = F.conv2d(t, g.view(1, 1, 11, 1))
        t = F.conv2d(t, g.view(1, 1, 1, 11))
        return t.reshape(B, C, H - 10, W - 10)
    C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x_hat), blur(x)
    vx, vy, cxy = blur(x_hat**2) - mx**2, blur(x**2) - my**2, blur(x_hat * x) - mx * my
    s = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    return s.mean(dim=(1, 2, 3))
'''),
    Alternative("denoiser_checks", "SigmaConditionedDenoiser", '''
class SigmaConditionedDenoiser(nn.Module):
    """Same layers; the sigma map built with ones_like and multiplication."""

    def __init__(self, c=32):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(2, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(c, 1, 4, 2, 1))

    def forward(self, x_noisy, sigma):
        sigma_map = torch.ones_like(x_noisy) * sigma[:, None, None, None]
        return self.decoder(self.encoder(torch.cat((x_noisy, sigma_map), 1)))
'''),
    Alternative("denoising_step_checks", "denoising_step", '''
def denoising_step(model, x, sigma, optimizer, generator):
    """Manual squared error; a float sigma turned into a (B,) tensor with torch.full."""
    B = x.shape[0]
    if not torch.is_tensor(sigma):
        sigma = torch.full((B,), float(sigma), dtype=x.dtype)
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    x_noisy = x + sigma[:, None, None, None] * eps
    optimizer.zero_grad(set_to_none=True)
    loss = ((model(x_noisy, sigma) - x) ** 2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()
'''),
    Alternative("masked_mse_checks", "masked_mse", '''
def masked_mse(x_hat, x, mask):
    """Weighted sum divided by the number of masked elements."""
    w = mask.expand_as(x).to(x.dtype)
    return ((x_hat - x) ** 2 * w).sum() / w.sum()
'''),
    Alternative("quiz_one_category", "answer_one_category", 'answer_one_category = ["C", "A"]',
                "a list is accepted as a set"),
]
