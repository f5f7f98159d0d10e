"""Chapter 03: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch03.DIAGNOSES`), shared with the visible and hidden checks."""
from autograder.mutants import Alternative, Mistake
from workbook import ch03

D = ch03.DIAGNOSES
# Checks.tensor reports a wrong dtype in its own words ("... has dtype torch.float64, expected
# torch.float32"), and a mistake that breaks the shapes is reported where it breaks them:
DTYPE = r"has dtype torch\.\w+, expected"
RAISED = r"raised \w+Error"
SHAPE = "has the wrong shape"
# The hidden checks' shared guard (autograder.hidden.call_keeping_global_rng) catches a draw from
# the global generator first, in its own words:
GLOBAL_RNG = "every draw must come from the generator passed in"
_EPS = "eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)  # (..., k)"
_REC = 'F.binary_cross_entropy_with_logits(x_hat_or_logits, x, reduction="none").flatten(1).sum(1)'
_KL = "kl = 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)  # (B,)"
_LIKELIHOODS = '''elif likelihood == "gaussian":
        # -log p(x|z) = ||x - x_hat||^2 / (2 sigma^2) + const
        rec = ((x - x_hat_or_logits) ** 2).flatten(1).sum(1) / (2.0 * sigma**2)  # (B,)
    else:
        raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")'''
_STEP_LOSS = "negative_elbo(x, logits, mu, logvar, beta=beta)\n    loss.backward()"
_STEP_FORWARD = "logits, mu, logvar = model(x, generator=generator)  # (B, D), (B, k), (B, k)"
_IWAE_EPS = "eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype).to(mu.device)  # (k, B, d)"
_IWAE_RETURN = "return torch.logsumexp(log_w, dim=0) - math.log(k)  # (B,)"

MISTAKES = [
    # reparameterize
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)", "std = logvar  # (..., k)",
            D["reparam_logvar_as_sigma"]),
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)",
            "std = torch.exp(logvar)  # (..., k)", D["reparam_variance"]),
    Mistake("reparam_checks", "reparameterize",
            _EPS + "\n    # sigma = exp(logvar / 2)\n    std = torch.exp(0.5 * logvar)  # (..., k)\n"
            "    # z = mu + sigma * eps\n    z = mu + std * eps  # (..., k)",
            "std = torch.exp(0.5 * logvar)\n    z = torch.normal(mu, std, generator=generator)",
            D["reparam_grad"]),
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)",
            "std = torch.exp(0.5 * logvar.detach())  # (..., k)", D["reparam_detached_logvar"]),
    Mistake("reparam_checks", "reparameterize", _EPS, _EPS.replace("randn", "rand"), D["reparam_uniform"]),
    Mistake("reparam_checks", "reparameterize", "z = mu + std * eps  # (..., k)", "z = std + mu * eps  # (..., k)",
            D["reparam_swapped"]),
    Mistake("reparam_checks", "reparameterize", _EPS, "eps = torch.randn_like(mu)  # (..., k)",
            D["reparam_generator"]),
    Mistake("reparam_checks", "reparameterize", _EPS,
            "eps = torch.randn(mu.shape, generator=generator).to(mu.device)  # (..., k)", D["reparam_dtype"]),
    Mistake("reparam_checks", "reparameterize", _EPS, _EPS.replace("dtype=mu.dtype", "dtype=torch.float64"),
            D["reparam_float64"], expect=DTYPE),
    Mistake("reparam_checks", "reparameterize", _EPS, _EPS.replace("mu.shape", "mu.shape[-1]"),
            D["reparam_shared_eps"]),
    Mistake("reparam_checks", "reparameterize", _EPS, _EPS.replace("mu.shape", "mu.shape[0], mu.shape[1]"),
            D["reparam_shape"], expect=RAISED),
    # VAE module
    Mistake("vae_checks", "VAE", "self.decoder = nn.Sequential(*layers)", "self.decoder = nn.Sequential(*layers, nn.Sigmoid())",
            D["vae_sigmoid"]),
    Mistake("vae_checks", "VAE", "return self.decode(z), mu, logvar", "return self.decode(mu), mu, logvar",
            D["vae_decoded_mu"]),
    Mistake("vae_checks", "VAE", "return self.mu_head(h), self.logvar_head(h)", "return self.mu_head(h), self.mu_head(h)",
            D["vae_logvar_is_mu"]),
    Mistake("vae_checks", "VAE", "self.logvar_head = nn.Linear(dims[-1], k)",
            "self.logvar_head = nn.Sequential(nn.Linear(dims[-1], k), nn.Softplus())", D["vae_head_activation"]),
    Mistake("vae_checks", "VAE", "layers += [nn.Linear(d_in, d_out), nn.ReLU()]", "layers += [nn.Linear(d_in, d_out)]",
            D["vae_no_relu"]),
    Mistake("vae_checks", "VAE", "self.encoder = nn.Sequential(*layers)", "self.encoder = nn.Sequential(*layers[:-1])",
            D["vae_no_relu"]),
    Mistake("vae_checks", "VAE", "z = reparameterize(mu, logvar, generator)  # (B, k)",
            "z = reparameterize(mu, logvar)  # (B, k)", D["vae_generator"]),
    Mistake("vae_checks", "VAE", "z = reparameterize(mu, logvar, generator)  # (B, k)",
            "z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, k)", D["vae_generator"]),
    Mistake("vae_checks", "VAE", "return self.decode(z), mu, logvar", "return self.decode(z), mu, torch.exp(0.5 * logvar)",
            D["vae_forward_std"]),
    Mistake("vae_checks", "VAE", "return self.decode(z), mu, logvar", "return torch.sigmoid(self.decode(z)), mu, logvar",
            D["vae_forward_probs"]),
    # KL
    Mistake("kl_checks", "kl_to_standard_normal", "0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0)",
            "0.5 * (1.0 + logvar - mu**2 - torch.exp(logvar))", D["kl_sign"]),
    Mistake("kl_checks", "kl_to_standard_normal", ".sum(dim=-1)", ".mean(dim=-1)", D["kl_mean_latent"]),
    Mistake("kl_checks", "kl_to_standard_normal", ".sum(dim=-1)", ".sum()", D["kl_sum_batch"]),
    Mistake("kl_checks", "kl_to_standard_normal", ".sum(dim=-1)", ".sum(dim=0)", D["kl_sum_batch"]),
    Mistake("kl_checks", "kl_to_standard_normal", "torch.exp(logvar)", "torch.exp(0.5 * logvar)", D["kl_std"]),
    Mistake("kl_checks", "kl_to_standard_normal", "kl = 0.5 * (", "kl = (", D["kl_half"]),
    Mistake("kl_checks", "kl_to_standard_normal", _KL,
            "kl = 0.5 * (mu**2 + torch.exp(2 * logvar) - 2 * logvar - 1.0).sum(dim=-1)  # (B,)", D["kl_log_std"]),
    Mistake("kl_checks", "kl_to_standard_normal", _KL,
            "kl = 0.5 * torch.sum(mu**2 + torch.exp(logvar) - logvar - 1.0, dim=-1, dtype=torch.float64)",
            D["kl_dtype"], expect=DTYPE),
    Mistake("kl_checks", "kl_to_standard_normal", _KL,
            "kl = (0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0)).mean(dim=-1) * 2  # (B,)",
            D["kl_half"], diagnosed=False),
    # negative ELBO
    Mistake("elbo_checks", "negative_elbo", _REC, _REC.replace(".sum(1)", ".mean(1)"), D["elbo_rec_mean_pixels"]),
    Mistake("elbo_checks", "negative_elbo", "return (rec + beta * kl).mean()", "return (rec + beta * kl).sum()",
            D["elbo_sum_batch"]),
    Mistake("elbo_checks", "negative_elbo", "return (rec + beta * kl).mean()", "return (rec - beta * kl).mean()",
            D["elbo_kl_subtracted"]),
    Mistake("elbo_checks", "negative_elbo", "return (rec + beta * kl).mean()", "return (beta * rec + kl).mean()",
            D["elbo_beta_rec"]),
    Mistake("elbo_checks", "negative_elbo", "/ (2.0 * sigma**2)", "/ sigma**2", D["elbo_c_sigma2"]),
    Mistake("elbo_checks", "negative_elbo", "/ (2.0 * sigma**2)", "/ (2.0 * sigma)", D["elbo_c_sigma"]),
    Mistake("elbo_checks", "negative_elbo", "F.binary_cross_entropy_with_logits(x_hat_or_logits, x,",
            "F.binary_cross_entropy_with_logits(torch.sigmoid(x_hat_or_logits), x,", D["elbo_probs"]),
    Mistake("elbo_checks", "negative_elbo", "- logvar - 1.0).sum(dim=-1)", "- logvar - 1.0).mean(dim=-1)",
            D["elbo_kl_mean"]),
    Mistake("elbo_checks", "negative_elbo", _REC,
            "-(x * torch.log(torch.sigmoid(x_hat_or_logits)) + (1 - x) * torch.log(1 - torch.sigmoid(x_hat_or_logits)))"
            ".flatten(1).sum(1)", D["elbo_stable"]),
    Mistake("elbo_checks", "negative_elbo", _REC,
            "(torch.log(1 + torch.exp(x_hat_or_logits)) - x * x_hat_or_logits).flatten(1).sum(1)", D["elbo_stable"]),
    Mistake("elbo_checks", "negative_elbo", _REC,
            'F.binary_cross_entropy(torch.sigmoid(x_hat_or_logits), x, reduction="none").flatten(1).sum(1)',
            D["elbo_clamped_bce"]),
    Mistake("elbo_checks", "negative_elbo", _REC, _REC.replace("(x_hat_or_logits, x,", "(x_hat_or_logits.double(), x.double(),"),
            D["elbo_dtype"], expect=DTYPE),
    Mistake("elbo_checks", "negative_elbo", _REC,
            'F.binary_cross_entropy_with_logits(x_hat_or_logits, x, reduction="sum")', D["elbo_rec_sum_batch"]),
    Mistake("elbo_checks", "negative_elbo", _LIKELIHOODS,
            "else:\n        rec = ((x - x_hat_or_logits) ** 2).flatten(1).sum(1) / (2.0 * sigma**2)  # (B,)",
            D["elbo_value_error"]),
    # training step
    Mistake("vae_step_checks", "vae_step", "    optimizer.zero_grad()\n    # z", "    # z", D["step_zero_grad"]),
    Mistake("vae_step_checks", "vae_step", "return loss.item()", "return loss", D["step_float"]),
    Mistake("vae_step_checks", "vae_step", "    optimizer.step()\n    return loss.item()",
            "    return loss.item()\n    optimizer.step()", D["step_no_step"]),
    Mistake("vae_step_checks", "vae_step", "    loss.backward()\n    optimizer.step()",
            "    optimizer.step()\n    loss.backward()", D["step_no_step"]),
    Mistake("vae_step_checks", "vae_step", "    loss.backward()\n    optimizer.step()",
            "    loss.backward()\n    optimizer.zero_grad()\n    optimizer.step()", D["step_no_step"]),
    Mistake("vae_step_checks", "vae_step", _STEP_LOSS, "negative_elbo(x, logits, mu, logvar)\n    loss.backward()", D["step_beta"]),
    Mistake("vae_step_checks", "vae_step", _STEP_LOSS,
            "negative_elbo(x, logits, mu.detach(), logvar.detach(), beta=beta)\n    loss.backward()", D["step_detached_kl"]),
    Mistake("vae_step_checks", "vae_step", _STEP_FORWARD, _STEP_FORWARD.replace("model(x, generator=generator)", "model(x)"),
            D["step_generator"]),
    Mistake("vae_step_checks", "vae_step", _STEP_FORWARD,
            "mu, logvar = model.encode(x)\n    logits = model.decode(reparameterize(mu, logvar))",
            D["step_generator"]),
    Mistake("vae_step_checks", "vae_step", _STEP_FORWARD,
            "mu, logvar = model.encode(x)\n    logits = model.decode(mu)", D["step_mu"]),
    Mistake("vae_step_checks", "vae_step", "    return loss.item()",
            "    return negative_elbo(x, *model(x, generator=generator), beta=beta).item()", D["step_loss_after"]),
    # the loss through sigmoid: equal on small logits, wrong (saturated) near +-30 in float32
    Mistake("vae_step_checks", "vae_step", "loss = negative_elbo(x, logits, mu, logvar, beta=beta)",
            "loss = (F.binary_cross_entropy(torch.sigmoid(logits), x, reduction=\"none\").flatten(1).sum(1)\n"
            "            + beta * 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(1)).mean()", D["step_sigmoid"]),
    # plain SGD written by hand: right for SGD(lr) alone, not for the optimizer handed in
    Mistake("vae_step_checks", "vae_step", "    optimizer.step()\n",
            "    with torch.no_grad():\n        for p in model.parameters():\n"
            "            p -= optimizer.param_groups[0][\"lr\"] * p.grad\n", D["step_own_update"]),
    # clipping at a bound the small check models never reach
    Mistake("vae_step_checks", "vae_step", "    loss.backward()\n",
            "    loss.backward()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)\n",
            D["step_grad_changed"]),
    # sampling and interpolation
    Mistake("sampling_checks", "sample_prior", "return torch.sigmoid(model.decode(z))  # (n, D)",
            "return model.decode(z)  # (n, D)", D["sample_logits"]),
    Mistake("sampling_checks", "sample_prior", "z = torch.randn(n, model.k, generator=generator).to(device)",
            "z = torch.rand(n, model.k, generator=generator).to(device)", D["sample_uniform"]),
    Mistake("sampling_checks", "sample_prior", "generator=generator).to(device)", ").to(device)",
            D["sample_generator"]),
    Mistake("sampling_checks", "sample_prior", "return torch.sigmoid(model.decode(z))  # (n, D)",
            "return torch.bernoulli(torch.sigmoid(model.decode(z)), generator=generator)  # (n, D)",
            D["sample_binary"]),
    Mistake("sampling_checks", "interpolate", "return torch.sigmoid(model.decode(z))  # (steps, D)",
            "return (1 - t) * x_a + t * x_b  # (steps, D)", D["interp_pixels"]),
    Mistake("sampling_checks", "interpolate",
            "t = torch.linspace(0, 1, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]",
            "t = (torch.arange(steps, dtype=mu_a.dtype, device=mu_a.device) / steps)[:, None]", D["interp_ends"]),
    Mistake("sampling_checks", "interpolate", "mu_a = model.encode(x_a[None])[0]  # (1, k)",
            "mu_a = reparameterize(*model.encode(x_a[None]))  # (1, k)", D["interp_sample"]),
    Mistake("sampling_checks", "interpolate", "z = (1 - t) * mu_a + t * mu_b  # (steps, k)",
            "z = t * mu_a + (1 - t) * mu_b  # (steps, k)", D["interp_backwards"]),
    # IWAE
    Mistake("iwae_checks", "iwae_log_likelihood", _IWAE_RETURN, "return torch.logsumexp(log_w, dim=0)  # (B,)",
            D["iwae_log_k"]),
    Mistake("iwae_checks", "iwae_log_likelihood", _IWAE_RETURN, "return log_w.mean(dim=0)  # (B,)",
            D["iwae_mean_log_w"]),
    Mistake("iwae_checks", "iwae_log_likelihood", "(eps**2 + logvar + math.log(2 * math.pi))",
            "(eps**2 + math.log(2 * math.pi))", D["iwae_q_logvar"]),
    Mistake("iwae_checks", "iwae_log_likelihood", 'reduction="none").sum(-1)  # (k, B)',
            'reduction="none").mean(-1)  # (k, B)', D["iwae_mean_pixels"]),
    Mistake("iwae_checks", "iwae_log_likelihood", "torch.logsumexp(log_w, dim=0)", "torch.logsumexp(log_w, dim=1)",
            "logsumexp over the batch: reduce over the k samples (dim 0)", diagnosed=False),
    Mistake("iwae_checks", "iwae_log_likelihood", _IWAE_RETURN,
            "return torch.log(torch.exp(log_w).mean(dim=0))  # (B,)", D["iwae_overflow"]),
    Mistake("iwae_checks", "iwae_log_likelihood", _IWAE_RETURN,
            "return torch.log(torch.exp(log_w).sum(dim=0) / k)  # (B,)", D["iwae_overflow"]),
    Mistake("iwae_checks", "iwae_log_likelihood", _IWAE_EPS,
            "eps = torch.randn_like(mu.expand(k, B, d))  # (k, B, d)", D["iwae_generator"],
            expect=GLOBAL_RNG),
    Mistake("iwae_checks", "iwae_log_likelihood", _IWAE_EPS,
            "eps = torch.randn(k, B, d, generator=generator).to(mu.device)  # (k, B, d)", D["iwae_dtype"],
            diagnosed=False),
    Mistake("iwae_checks", "iwae_log_likelihood", "log_w = log_px_z + log_pz - log_qz  # (k, B)",
            "log_w = (log_px_z + log_pz - log_qz).squeeze()  # (k, B)", D["iwae_squeeze"], expect=SHAPE),
    Mistake("iwae_checks", "iwae_log_likelihood", "log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)",
            "log_pz = -0.5 * (eps**2 + math.log(2 * math.pi)).sum(-1)", D["iwae_pz_eps"], diagnosed=False),
    # quizzes
    Mistake("quiz_vae_facts", "answer_vae_facts", '{"A", "B", "C"}', '{"A", "B", "C", "D"}',
            "the ELBO is a lower bound: D is false", diagnosed=False),
    Mistake("quiz_vae_facts", "answer_vae_facts", '{"A", "B", "C"}', '{"A", "C"}',
            "B is true", diagnosed=False),
    Mistake("quiz_vae_facts", "answer_vae_facts", '{"A", "B", "C"}', '{"B", "C", "E"}',
            "A is true and E is false", diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_variational_inference", '"B"', '"A"',
            "log p(x) does not depend on the encoder", diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_variational_inference", '"B"', '"C"', "the ELBO also rewards reconstruction",
            diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_iwae_bound", '"B"', '"C"', "L_k rises with k", diagnosed=False),
    Mistake("quiz_beta_zero", "answer_beta_zero", '"B"', '"A"', "that is a large beta (posterior collapse)",
            diagnosed=False),
    Mistake("quiz_beta_zero", "answer_beta_zero", '"B"', '"C"', "beta weights one term of two: it changes the optimum",
            diagnosed=False),
    Mistake("quiz_beta_zero", "answer_beta_zero", '"B"', '"D"', "the Bernoulli reconstruction term is >= 0",
            diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_iwae_bound", '"B"', '"D"', "L_k is a lower bound", diagnosed=False),
]

MISTAKES += [
    # reviewers' escapes
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)",
            "std = torch.exp(0.5 * logvar.clamp(-5, 5))  # (..., k)", D["reparam_clamp"]),
]

ALTERNATIVES = [
    Alternative("vae_step_checks", "vae_step", '''
def vae_step(model, x, optimizer, *, beta, generator):
    """encode, reparameterize and decode written out; model.zero_grad(); float(loss)."""
    model.zero_grad()
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, generator)
    loss = negative_elbo(x, model.decode(z), mu, logvar, beta=beta)
    loss.backward()
    optimizer.step()
    return float(loss)
''', "encode, reparameterize, decode"),
    Alternative("vae_step_checks", "vae_step", '''
def vae_step(model, x, optimizer, beta, generator):
    """Positional beta and generator; the loss written out (BCE-with-logits + beta * KL), its value read
    before backward; gradients zeroed to 0 rather than None."""
    optimizer.zero_grad(set_to_none=False)
    logits, mu, logvar = model(x, generator=generator)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
    loss = rec + beta * kl
    value = loss.item()
    loss.backward()
    optimizer.step()
    return value
''', "loss written out"),
    Alternative("sampling_checks", "interpolate", '''
@torch.no_grad()
def interpolate(model, x_a, x_b, steps):
    """The 1-D inputs encoded directly (nn.Linear accepts (D,)): the same points."""
    mu_a = model.encode(x_a)[0]
    mu_b = model.encode(x_b)[0]
    t = torch.linspace(0, 1, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]
    return torch.sigmoid(model.decode(mu_a + t * (mu_b - mu_a)))
'''),
    Alternative("reparam_checks", "reparameterize", '''
def reparameterize(mu, logvar, generator=None):
    """sqrt of the variance, addcmul."""
    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return torch.addcmul(mu, torch.sqrt(torch.exp(logvar)), noise)
''', "sigma = sqrt(exp(logvar)), torch.addcmul"),
    Alternative("reparam_checks", "reparameterize", '''
def reparameterize(mu, logvar, generator=None):
    """normal_ in place on an empty tensor (the same draws as randn), shape unpacked."""
    eps = torch.empty(*mu.shape, dtype=mu.dtype).normal_(generator=generator).to(mu.device)
    return mu + logvar.mul(0.5).exp() * eps
''', "Tensor.normal_(generator=...), logvar.mul(0.5).exp()"),
    Alternative("vae_checks", "VAE", '''
class VAE(nn.Module):
    """Layers listed with comprehensions; forward samples inline."""

    def __init__(self, D=784, k=2, hidden=(512, 256)):
        super().__init__()
        self.k = k
        enc = [D, *hidden]
        self.encoder = nn.Sequential(*[m for a, b in zip(enc, enc[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
        self.mu_head = nn.Linear(enc[-1], k)
        self.logvar_head = nn.Linear(enc[-1], k)
        dec = [k, *reversed(hidden)]
        mods = [m for a, b in zip(dec, dec[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        self.decoder = nn.Sequential(*mods, nn.Linear(dec[-1], D))

    def encode(self, x):
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, generator=None):
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return self.decode(mu + torch.exp(logvar / 2) * eps), mu, logvar
''', "comprehensions, sampling inlined in forward"),
    Alternative("vae_checks", "VAE", '''
class VAE(nn.Module):
    """Layers appended in a loop, the decoder's last ReLU popped; forward returns a list."""

    def __init__(self, D=784, k=2, hidden=(512, 256)):
        super().__init__()
        self.k = k
        self.encoder = nn.Sequential()
        prev = D
        for h in hidden:
            self.encoder.append(nn.Linear(prev, h))
            self.encoder.append(nn.ReLU())
            prev = h
        self.mu_head, self.logvar_head = nn.Linear(prev, k), nn.Linear(prev, k)
        layers, prev = [], k
        for h in list(hidden[::-1]) + [D]:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        layers.pop()
        self.decoder = nn.Sequential(*layers)

    def encode(self, x):
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, generator=None):
        mu, logvar = self.encode(x)
        return [self.decode(reparameterize(mu, logvar, generator=generator)), mu, logvar]
''', "nn.Sequential.append, a list returned"),
    Alternative("kl_checks", "kl_to_standard_normal", '''
def kl_to_standard_normal(mu, logvar):
    """torch.distributions."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(-1)
''', "torch.distributions.kl_divergence"),
    Alternative("kl_checks", "kl_to_standard_normal", '''
def kl_to_standard_normal(mu, logvar):
    """The usual -1/2 sum(1 + logvar - mu^2 - exp(logvar)), torch.sum with keyword dim."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
''', "-1/2 sum(1 + logvar - mu^2 - exp(logvar))"),
    Alternative("elbo_checks", "negative_elbo", '''
def negative_elbo(x, x_hat_or_logits, mu, logvar, likelihood="bernoulli", beta=1.0, sigma=1.0):
    """torch.distributions for both terms."""
    B = x.shape[0]
    if likelihood == "bernoulli":
        log_lik = torch.distributions.Bernoulli(logits=x_hat_or_logits).log_prob(x)
        rec = -log_lik.reshape(B, -1).sum(1)
    elif likelihood == "gaussian":
        rec = F.mse_loss(x_hat_or_logits, x, reduction="none").reshape(B, -1).sum(1) / (2 * sigma**2)
    else:
        raise ValueError(likelihood)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    return rec.sum() / B + beta * kl.sum() / B
''', "Bernoulli.log_prob, kl_divergence, sums divided by B"),
    Alternative("elbo_checks", "negative_elbo", '''
def negative_elbo(x, x_hat_or_logits, mu, logvar, likelihood="bernoulli", beta=1.0, sigma=1.0):
    """Softplus by hand (stable), reduction='sum' divided by the batch size."""
    B = len(x)
    if likelihood not in ("bernoulli", "gaussian"):
        raise ValueError(f"unknown likelihood {likelihood}")
    if likelihood == "bernoulli":
        rec = (F.softplus(x_hat_or_logits) - x * x_hat_or_logits).sum() / B
    else:
        rec = F.mse_loss(x_hat_or_logits, x, reduction="sum") / (2 * sigma * sigma) / B
    kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum() / B
    return rec + beta * kl
''', "softplus(l) - x l, sums over the whole batch divided by B"),
    Alternative("sampling_checks", "interpolate", '''
@torch.no_grad()
def interpolate(model, x_a, x_b, steps):
    """torch.lerp on a batch of two encodings."""
    mu, _ = model.encode(torch.stack([x_a, x_b]))
    t = torch.linspace(0, 1, steps, dtype=mu.dtype)[:, None]
    return torch.sigmoid(model.decode(torch.lerp(mu[0], mu[1], t)))
''', "torch.lerp"),
    Alternative("sampling_checks", "sample_prior", '''
@torch.no_grad()
def sample_prior(model, n, generator=None):
    """Probabilities via the Bernoulli distribution's mean."""
    z = torch.randn(n, model.k, generator=generator)
    logits = model.decode(z.to(next(model.parameters()).device))
    return torch.distributions.Bernoulli(logits=logits).mean
''', "Bernoulli(logits).mean"),
    Alternative("iwae_checks", "iwae_log_likelihood", '''
@torch.no_grad()
def iwae_log_likelihood(model, x, k, generator=None):
    """torch.distributions log-densities."""
    D = torch.distributions
    mu, logvar = model.encode(x)
    B, d = mu.shape
    eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype).to(mu.device)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    logits = model.decode(z.reshape(k * B, d)).reshape(k, B, -1)
    log_px_z = D.Bernoulli(logits=logits).log_prob(x.reshape(1, B, -1).expand_as(logits)).sum(-1)
    log_pz = D.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = D.Normal(mu, std).log_prob(z).sum(-1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, 0) - torch.log(torch.tensor(float(k), dtype=mu.dtype))
''', "torch.distributions"),
    Alternative("iwae_checks", "iwae_log_likelihood", '''
@torch.no_grad()
def iwae_log_likelihood(model, x, k, generator=None):
    """One decode per sample in a loop; the log(2 pi) terms of p(z) and q(z|x) cancel."""
    mu, logvar = model.encode(x)
    B, d = mu.shape
    eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype).to(mu.device)
    log_w = []
    for e in eps:
        z = mu + (0.5 * logvar).exp() * e
        logits = model.decode(z)
        log_px_z = -(F.softplus(logits) - x * logits).sum(1)
        log_w.append(log_px_z - 0.5 * (z**2).sum(1) + 0.5 * (e**2 + logvar).sum(1))
    return torch.stack(log_w).logsumexp(0) - math.log(k)
''', "a loop over the k samples, log 2 pi left out of both densities"),
    Alternative("quiz_vae_facts", "answer_vae_facts", 'answer_vae_facts = frozenset("abc")',
                "a frozenset of lower-case letters"),
    Alternative("quiz_vi_iwae", "answer_variational_inference", 'answer_variational_inference = {"B"}',
                "a one-letter set"),
    Alternative("quiz_vi_iwae", "answer_iwae_bound", 'answer_iwae_bound = "b"', "lower case"),
    Alternative("quiz_beta_zero", "answer_beta_zero", 'answer_beta_zero = "b"', "lower case"),
]
