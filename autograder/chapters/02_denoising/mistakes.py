"""Chapter 02: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch02.DIAGNOSES`), shared with the visible and hidden checks."""
from autograder.mutants import Alternative, Mistake
from workbook import ch02

D = ch02.DIAGNOSES
RAND_U = "u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)"
RAND_V = "v = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)"
NOISE = "torch.randn(x.shape, generator=generator, dtype=x.dtype).to("
TOP = "top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator).to(x.device)"
LEFT = "left = torch.randint(0, W - size + 1, (B, n_boxes), generator=generator).to(x.device)"

MISTAKES = [
    # add_gaussian_noise
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps", "x_noisy = (x + sigma * eps).clamp(0, 1)",
            D["clamped"]),
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps", "x_noisy = x.add_(sigma * eps)",
            D["in_place"]),
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps", "x_noisy = x + sigma**2 * eps",
            D["sigma_squared"]),
    Mistake("noise_checks", "add_gaussian_noise", NOISE, "torch.randn(x.shape, dtype=x.dtype).to(", D["global_rng"]),
    Mistake("noise_checks", "add_gaussian_noise", NOISE, "torch.randn_like(x).to(", D["global_rng"]),
    Mistake("noise_checks", "add_gaussian_noise", NOISE, "torch.rand(x.shape, generator=generator, dtype=x.dtype).to(",
            D["uniform_noise"]),
    Mistake("noise_checks", "add_gaussian_noise", ".reshape(-1, *[1] * (x.dim() - 1))", "",
            D["sigma_per_image"], diagnosed=False),
    Mistake("noise_checks", "add_gaussian_noise", NOISE, "torch.randn(x.shape, generator=generator).to(",
            D["draw_dtype"]),
    Mistake("noise_checks", "add_gaussian_noise", NOISE, "torch.randn(x.shape[1:], generator=generator, dtype=x.dtype).to(",
            D["noise_shape"]),
    Mistake("noise_checks", "add_gaussian_noise", NOISE,
            "torch.randn((x.shape[0], 1, *x.shape[2:]), generator=generator, dtype=x.dtype).to(", D["noise_channels"]),
    Mistake("noise_checks", "add_gaussian_noise", "x_noisy = x + sigma * eps", "x_noisy = (x + sigma * eps).float()",
            D["keep_dtype"], expect="dtype"),
    Mistake("noise_checks", "add_gaussian_noise", "torch.as_tensor(sigma, dtype=x.dtype, device=x.device)",
            "torch.as_tensor(sigma, device=x.device)", D["sigma_dtype"]),
    # salt_and_pepper
    Mistake("salt_pepper_checks", "salt_and_pepper", "mask = u < p", "mask = u > p", D["u_greater"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "torch.where(mask, salt.to(x.dtype), x)",
            "torch.where(mask, torch.ones_like(x), x)", D["salt_only"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "x_noisy = torch.where(mask, salt.to(x.dtype), x)",
            "x[mask] = salt.to(x.dtype)[mask]\n    x_noisy = x", D["in_place"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "torch.where(mask, salt.to(x.dtype), x)", "torch.where(mask, v, x)",
            D["salt_value"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "return x_noisy, mask", "return x_noisy, mask.float()",
            D["mask_bool"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "return x_noisy, mask", "return x_noisy, x_noisy != x",
            D["mask_replaced"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", RAND_U, "u = torch.rand(x.shape, generator=generator).to(x.device)",
            D["draw_dtype"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "mask = u < p  # (B, C, H, W) bool", "mask = v < p",
            D["sp_draws"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", "salt = v < 0.5", "salt = v >= 0.5", D["sp_draws"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", RAND_V, "v = torch.rand_like(x)", D["global_rng"]),
    Mistake("salt_pepper_checks", "salt_and_pepper", RAND_U,
            "u = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=generator, dtype=x.dtype).to(x.device)",
            "one draw per pixel shared by the channels", diagnosed=False),
    Mistake("salt_pepper_checks", "salt_and_pepper", "torch.where(mask, salt.to(x.dtype), x)",
            "torch.where(mask, salt.float(), x.float())", D["keep_dtype"], expect="dtype"),
    # occlude_boxes
    Mistake("occlusion_checks", "occlude_boxes", TOP, TOP.replace("H - size + 1", "H - size"), D["corner_range"]),
    Mistake("occlusion_checks", "occlude_boxes", "(rows < top[..., None] + size)", "(rows <= top[..., None] + size)",
            D["box_extent"]),
    Mistake("occlusion_checks", "occlude_boxes", "x.masked_fill(mask, 0.0)", "x.masked_fill(mask, 1.0)",
            D["occlude_value"]),
    Mistake("occlusion_checks", "occlude_boxes", "x_occluded = x.masked_fill(mask, 0.0)",
            "x_occluded = x.masked_fill_(mask, 0.0)", D["in_place"]),
    Mistake("occlusion_checks", "occlude_boxes", "boxes.any(dim=1, keepdim=True)", "boxes[:, :1]", D["box_union"]),
    Mistake("occlusion_checks", "occlude_boxes", LEFT, LEFT.replace("W - size + 1", "H - size + 1"), D["box_draws"]),
    Mistake("occlusion_checks", "occlude_boxes", TOP + "\n    " + LEFT, LEFT + "\n    " + TOP, D["box_draws"]),
    Mistake("occlusion_checks", "occlude_boxes", TOP + "\n    " + LEFT,
            TOP.replace("(B, n_boxes), generator=generator)", "(n_boxes, B), generator=generator).T") + "\n    "
            + LEFT.replace("(B, n_boxes), generator=generator)", "(n_boxes, B), generator=generator).T"),
            D["box_draws"]),
    Mistake("occlusion_checks", "occlude_boxes", "(rows >= top[..., None]) & (rows < top[..., None] + size)",
            "(rows >= left[..., None]) & (rows < left[..., None] + size)", D["box_draws"]),
    Mistake("occlusion_checks", "occlude_boxes", "x_occluded = x.masked_fill(mask, 0.0)",
            "x_occluded = x.clone()\n    x_occluded[:, :1] = x[:, :1].masked_fill(mask, 0.0)", D["all_channels"]),
    Mistake("occlusion_checks", "occlude_boxes", "x_occluded = x.masked_fill(mask, 0.0)",
            "x_occluded = (x * ~mask).float()", D["keep_dtype"], expect="dtype"),
    Mistake("occlusion_checks", "occlude_boxes", "return x_occluded, mask", "return x_occluded, mask.expand_as(x)",
            "the mask is (B, 1, H, W), one per image, not one per channel", diagnosed=False),
    # psnr
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "255.0**2 / mse", D["peak_255"]),
    Mistake("psnr_checks", "psnr", "torch.log10(", "torch.log(", D["log_natural"]),
    Mistake("psnr_checks", "psnr", "mse = ((x_hat - x) ** 2).flatten(1).mean(dim=1)", "mse = F.mse_loss(x_hat, x)",
            D["per_image"]),
    Mistake("psnr_checks", "psnr", "return psnr", "return psnr.mean()", D["per_image"]),
    Mistake("psnr_checks", "psnr", "10 * torch.log10", "20 * torch.log10", D["twenty_log"]),
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "1.0 / mse", D["peak_1"]),
    Mistake("psnr_checks", "psnr", ".flatten(1).mean(dim=1)", ".mean(dim=(2, 3))[:, 0]", D["per_image_channels"]),
    Mistake("psnr_checks", "psnr", ".flatten(1).mean(dim=1)", ".mean(dim=(1, 2, 3)).squeeze()", D["per_image"]),
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "data_range**2 / (mse + 1e-10)", D["psnr_eps"]),
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "x.max() ** 2 / mse", D["peak_from_data"],
            expect="peak value|NaN or inf"),
    Mistake("psnr_checks", "psnr", "data_range**2 / mse", "data_range**2 / mse.double()", D["keep_dtype"],
            expect="dtype"),
    Mistake("psnr_checks", "psnr", ".flatten(1).mean(dim=1)", ".flatten(1).sum(dim=1)", D["mse_sum"]),
    # ssim
    Mistake("ssim_checks", "ssim", "C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2",
            "C1, C2 = 0.01**2, 0.03**2", D["ssim_constants"]),
    Mistake("ssim_checks", "ssim", "C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2",
            "C1, C2 = (0.01 * data_range) ** 2, 0.03**2", D["ssim_c2"], expect="C2"),
    Mistake("ssim_checks", "ssim", "g = torch.exp(-(k**2) / (2 * 1.5**2))", "g = torch.ones_like(k)", D["box_window"]),
    Mistake("ssim_checks", "ssim",
            "sxx = local_mean(x_hat * x_hat) - mu_x**2\n    syy = local_mean(x * x) - mu_y**2\n"
            "    sxy = local_mean(x_hat * x) - mu_x * mu_y",
            "sxx = local_mean(x_hat * x_hat)\n    syy = local_mean(x * x)\n    sxy = local_mean(x_hat * x)",
            D["means_subtracted"]),
    Mistake("ssim_checks", "ssim", "F.conv2d(t, window, groups=C)", "F.conv2d(t, window, groups=C, padding=5)",
            D["ssim_padding"], expect="no padding"),
    Mistake("ssim_checks", "ssim", "return ssim_map.flatten(1).mean(dim=1)", "return ssim_map.mean()", D["per_image"]),
    Mistake("ssim_checks", "ssim", "return ssim_map.flatten(1).mean(dim=1)", "return ssim_map[:, 0].flatten(1).mean(dim=1)",
            D["ssim_channels"]),
    Mistake("ssim_checks", "ssim", "(2 * 1.5**2)", "(2 * 1.5)", D["window_sigma"], expect="sigma 1.5"),
    Mistake("ssim_checks", "ssim", "    g = g / g.sum()\n", "", D["window_norm"], expect="sum(ming)? to 1"),
    Mistake("ssim_checks", "ssim", "return ssim_map.flatten(1).mean(dim=1)", "return ssim_map.flatten(1).double().mean(dim=1)",
            D["keep_dtype"], expect="dtype"),
    # SigmaConditionedDenoiser
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "h = torch.cat([x_noisy, sigma_map], dim=1)",
            "h = torch.cat([x_noisy, torch.zeros_like(sigma_map)], dim=1)", D["sigma_ignored"]),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "h = torch.cat([x_noisy, sigma_map], dim=1)",
            "h = torch.cat([sigma_map, x_noisy], dim=1)", D["channel_order"]),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "sigma.to(x_noisy.dtype).view(B, 1, 1, 1)",
            "sigma.to(x_noisy.dtype).mean().view(1, 1, 1, 1)", D["sigma_averaged"]),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "sigma.to(x_noisy.dtype).view(B, 1, 1, 1)",
            "sigma[:1].to(x_noisy.dtype).view(1, 1, 1, 1)", D["sigma_averaged"], expect="its own sigma|different forward"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28), linear output",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.Sigmoid(),", D["linear_output"],
            expect="output layer is linear|no activation at the end"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28), linear output",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.ReLU(),", D["linear_output"],
            expect="output layer is linear|no activation at the end"),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),\n            nn.ReLU(),",
            "nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),", "ReLU after the second conv", diagnosed=False),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser",
            "nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),\n            nn.ReLU(),",
            "nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),", "ReLU after the first ConvTranspose2d",
            diagnosed=False),
    Mistake("denoiser_checks", "SigmaConditionedDenoiser", "nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)",
            "nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1)", "decoder kernels are 4",
            diagnosed=False),
    # denoising_step
    Mistake("denoising_step_checks", "denoising_step", "loss = F.mse_loss(x_hat, x)", "loss = F.mse_loss(x_hat, x_noisy)",
            D["target_noisy"]),
    Mistake("denoising_step_checks", "denoising_step", "loss = F.mse_loss(x_hat, x)",
            "loss = F.mse_loss(x_hat, x + sigma_b.view(B, *[1] * (x.dim() - 1)) "
            "* torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))", D["target_noised"]),
    Mistake("denoising_step_checks", "denoising_step", "x_hat = model(x_noisy, sigma_b)", "x_hat = model(x, sigma_b)",
            D["input_clean"]),
    Mistake("denoising_step_checks", "denoising_step", "x_hat = model(x_noisy, sigma_b)",
            "x_hat = model(x_noisy, torch.zeros_like(sigma_b))", D["step_sigma_ignored"]),
    Mistake("denoising_step_checks", "denoising_step", "x_hat = model(x_noisy, sigma_b)",
            "x_hat = model(x_noisy, sigma)", D["step_sigma_b"]),
    Mistake("denoising_step_checks", "denoising_step", "optimizer.zero_grad()\n", "\n", D["zero_grad"]),
    Mistake("denoising_step_checks", "denoising_step", "return loss.item()",
            "return F.mse_loss(model(x_noisy, sigma_b), x).item()", D["loss_after"]),
    Mistake("denoising_step_checks", "denoising_step", "optimizer.zero_grad()\n    loss.backward()",
            "loss.backward()\n    optimizer.zero_grad()", D["zero_grad"]),
    Mistake("denoising_step_checks", "denoising_step", NOISE, "torch.randn(x.shape, generator=generator).to(",
            D["draw_dtype"]),
    Mistake("denoising_step_checks", "denoising_step", NOISE, "torch.randn_like(x).to(", D["global_rng"]),
    Mistake("denoising_step_checks", "denoising_step", NOISE,
            "torch.randn((B, 1, *x.shape[2:]), generator=generator, dtype=x.dtype).to(", D["noise_shape"],
            expect=r"one eps per element|torch\.randn\(x\.shape|mean over all elements"),
    Mistake("denoising_step_checks", "denoising_step", "loss = F.mse_loss(x_hat, x)",
            "loss = F.mse_loss(x_hat, x, reduction='sum')", D["step_loss"]),
    Mistake("denoising_step_checks", "denoising_step", "return loss.item()", "return loss", D["loss_float"]),
    Mistake("denoising_step_checks", "denoising_step", "device=x.device).expand(B)", "device=x.device)",
            "a float sigma must become a (B,) tensor", diagnosed=False),
    # masked_mse
    Mistake("masked_mse_checks", "masked_mse", "[mask].mean()", "[~mask].mean()", D["mask_inverted"]),
    Mistake("masked_mse_checks", "masked_mse", "((x_hat - x) ** 2)[mask].mean()", "((x_hat - x) ** 2 * mask).mean()",
            D["mask_all_pixels"]),
    Mistake("masked_mse_checks", "masked_mse", "((x_hat - x) ** 2)[mask].mean()", "((x_hat - x) ** 2).mean()",
            D["mask_ignored"]),
    Mistake("masked_mse_checks", "masked_mse", "[mask].mean()", "[mask].sum()", D["mask_sum"]),
    Mistake("masked_mse_checks", "masked_mse", "mask = mask.expand_as(x)  # (B, C, H, W)", "pass",
            "the mask must be broadcast over the channels", diagnosed=False),
    Mistake("masked_mse_checks", "masked_mse", "mask = mask.expand_as(x)  # (B, C, H, W)\n"
            "    # mean over {pixels with mask = True} of (x_hat - x)^2\n    return ((x_hat - x) ** 2)[mask].mean()",
            "return ((x_hat - x) ** 2 * mask).sum() / mask.sum()", D["mask_count"]),
    Mistake("masked_mse_checks", "masked_mse", "mask = mask.expand_as(x)  # (B, C, H, W)",
            "x_hat, x = x_hat[:, :1], x[:, :1]\n    mask = mask.expand_as(x)", D["mask_first_channel"]),
    Mistake("masked_mse_checks", "masked_mse", "return ((x_hat - x) ** 2)[mask].mean()",
            "return torch.stack([((x_hat[b] - x[b]) ** 2)[mask[b]].mean() for b in range(len(x))]).mean()",
            D["mask_per_image"], expect="NaN|image by image"),
    Mistake("masked_mse_checks", "masked_mse", "mask = mask.expand_as(x)  # (B, C, H, W)",
            "mask = mask.repeat(1, x.shape[1], 1, 1)", "a (B, C, H, W) mask needs no repeat", diagnosed=False),
    # quiz
    Mistake("quiz_told_sigma", "answer_told_sigma", '"B"', '"D"', "wrong answer", diagnosed=False),
    Mistake("quiz_told_sigma", "answer_told_sigma", '"B"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_dae_target", "answer_dae_target", '"B"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_one_category", "answer_one_category", '{"A", "C"}', '{"A", "B", "C"}', "wrong answer",
            diagnosed=False),
    Mistake("quiz_one_category", "answer_one_category", '{"A", "C"}', '{"A"}', "wrong answer", diagnosed=False),
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
    Alternative("noise_checks", "add_gaussian_noise", '''
def add_gaussian_noise(x, sigma, generator):
    """A float32 sigma tensor whatever x's and sigma's dtype, a clone updated in place."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32).view(-1, 1, 1, 1)
    eps = torch.randn(*x.shape, generator=generator, dtype=x.dtype)
    out = x.clone()
    out += sigma * eps
    return out
''', "float32 sigma, clone then +="),
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
    Alternative("salt_pepper_checks", "salt_and_pepper", '''
def salt_and_pepper(x, p, generator):
    """Arithmetic instead of where: keep (1 - m) x, add m * salt."""
    u, v = (torch.rand(*x.shape, generator=generator, dtype=x.dtype) for _ in range(2))
    mask = torch.lt(u, p)
    m = mask.to(x.dtype)
    return x * (1 - m) + m * (v < 0.5).to(x.dtype), mask
''', "arithmetic blend"),
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
    Alternative("occlusion_checks", "occlude_boxes", '''
def occlude_boxes(x, n_boxes, size, generator):
    """Inclusive comparisons, a reduction by amax, torch.where."""
    B, _, H, W = x.shape
    top = torch.randint(0, H - size + 1, (B, n_boxes), generator=generator)
    left = torch.randint(0, W - size + 1, (B, n_boxes), generator=generator)
    i = torch.arange(H).view(1, 1, H, 1)
    j = torch.arange(W).view(1, 1, 1, W)
    t, l = top.view(B, n_boxes, 1, 1), left.view(B, n_boxes, 1, 1)
    inside = (i >= t) & (i <= t + size - 1) & (j >= l) & (j <= l + size - 1)
    mask = inside.amax(dim=1, keepdim=True)
    return torch.where(mask, torch.zeros_like(x), x), mask
''', "inclusive bounds, amax"),
    Alternative("psnr_checks", "psnr", '''
def psnr(x_hat, x, data_range=1.0):
    """MSE via F.mse_loss(reduction='none') and 20 log10(L) - 10 log10(MSE)."""
    mse = F.mse_loss(x_hat, x, reduction="none").mean(dim=(1, 2, 3))
    return 20 * torch.log10(torch.as_tensor(data_range, dtype=mse.dtype)) - 10 * torch.log10(mse)
'''),
    Alternative("psnr_checks", "psnr", '''
def psnr(x_hat, x, data_range=1.0):
    """float64 inside, cast back; -10 log10(MSE / L^2)."""
    err = (x_hat.double() - x.double()).pow(2)
    mse = err.reshape(err.shape[0], -1).mean(-1)
    return (-10 * torch.log10(mse / data_range**2)).to(x_hat.dtype)
''', "float64 internal"),
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
    Alternative("ssim_checks", "ssim", '''
def ssim(x_hat, x, data_range=1.0):
    """float64 inside, window by torch.outer and repeat, luminance times contrast-structure."""
    dtype = x.dtype
    a, b = x_hat.double(), x.double()
    C = a.shape[1]
    g = torch.exp(-torch.arange(-5.0, 6.0, dtype=torch.float64) ** 2 / (2 * 1.5 ** 2))
    w = torch.outer(g, g)
    w = (w / w.sum()).repeat(C, 1, 1, 1)
    blur = lambda t: F.conv2d(t, w, groups=C)
    L = float(data_range)
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    ma, mb = blur(a), blur(b)
    va, vb, cab = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    lum = (2 * ma * mb + C1) / (ma ** 2 + mb ** 2 + C1)
    cs = (2 * cab + C2) / (va + vb + C2)
    return (lum * cs).mean(dim=[1, 2, 3]).to(dtype)
''', "float64 internal, outer window"),
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
    Alternative("denoiser_checks", "SigmaConditionedDenoiser", '''
class SigmaConditionedDenoiser(nn.Module):
    """Layers by keyword; the sigma map by torch.full_like per image, stacked."""

    def __init__(self, c=32):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels=2, out_channels=c, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=c, out_channels=2 * c, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, kernel_size=4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, 1, kernel_size=4, stride=2, padding=1))

    def forward(self, x_noisy, sigma):
        maps = torch.stack([torch.full_like(x_noisy[b], float(sigma[b])) for b in range(x_noisy.shape[0])])
        return self.decoder(self.encoder(torch.cat([x_noisy, maps], dim=1)))
''', "keywords, per-image full_like"),
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
    Alternative("denoising_step_checks", "denoising_step", '''
def denoising_step(model, x, sigma, optimizer, generator):
    """model.zero_grad(), add_gaussian_noise-style broadcasting, float(loss)."""
    B = len(x)
    sigma_b = sigma * torch.ones(B, dtype=x.dtype) if isinstance(sigma, float) else sigma.to(x.dtype)
    eps = torch.randn(x.size(), generator=generator, dtype=x.dtype)
    x_noisy = x + sigma_b.reshape(B, 1, 1, 1) * eps
    model.zero_grad()
    loss = F.mse_loss(model(x_noisy, sigma_b), x, reduction="mean")
    loss.backward()
    optimizer.step()
    return float(loss)
''', "model.zero_grad, float()"),
    Alternative("masked_mse_checks", "masked_mse", '''
def masked_mse(x_hat, x, mask):
    """Weighted sum divided by the number of masked elements."""
    w = mask.expand_as(x).to(x.dtype)
    return ((x_hat - x) ** 2 * w).sum() / w.sum()
'''),
    Alternative("masked_mse_checks", "masked_mse", '''
def masked_mse(x_hat, x, mask):
    """masked_select after broadcast_to; float mask mean for the count."""
    m = torch.broadcast_to(mask, x.shape)
    return torch.masked_select((x_hat - x).pow(2), m).mean()
''', "masked_select"),
    Alternative("quiz_one_category", "answer_one_category", 'answer_one_category = ["C", "A"]',
                "a list is accepted as a set"),
    Alternative("quiz_told_sigma", "answer_told_sigma", 'answer_told_sigma = "b"', "lower case"),
    Alternative("quiz_dae_target", "answer_dae_target", 'answer_dae_target = {"B"}', "a one-letter set"),
]
