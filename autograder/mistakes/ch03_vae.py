"""Chapter 03: realistic learner mistakes and correct alternatives."""
from autograder.mutants import Alternative, Mistake

_EPS = "eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)  # (..., k)"
_REC = 'F.binary_cross_entropy_with_logits(x_hat_or_logits, x, reduction="none").flatten(1).sum(1)'

MISTAKES = [
    # reparameterize
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)", "std = logvar  # (..., k)",
            "logvar was used as sigma: sigma = exp(0.5 * logvar)", expect="logvar was used as sigma"),
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)",
            "std = torch.exp(logvar)  # (..., k)",
            "exp(logvar) is the variance sigma^2, not sigma: use sigma = exp(0.5 * logvar)", expect="variance"),
    Mistake("reparam_checks", "reparameterize",
            _EPS + "\n    # sigma = exp(logvar / 2)\n    std = torch.exp(0.5 * logvar)  # (..., k)\n"
            "    # z = mu + sigma * eps\n    z = mu + std * eps  # (..., k)",
            "std = torch.exp(0.5 * logvar)\n    z = torch.normal(mu, std, generator=generator)",
            "sampling with torch.normal(mu, sigma, generator): no gradient reaches mu and logvar",
            expect="no gradient reaches mu"),
    Mistake("reparam_checks", "reparameterize", "std = torch.exp(0.5 * logvar)  # (..., k)",
            "std = torch.exp(0.5 * logvar.detach())  # (..., k)",
            "logvar was detached: no gradient reaches logvar", expect="no gradient reaches logvar"),
    Mistake("reparam_checks", "reparameterize", _EPS, _EPS.replace("randn", "rand"),
            "uniform noise: eps must be standard normal (torch.randn, not torch.rand)", expect="uniform"),
    # VAE module
    Mistake("vae_checks", "VAE", "self.decoder = nn.Sequential(*layers)", "self.decoder = nn.Sequential(*layers, nn.Sigmoid())",
            "the decoder ends with a Sigmoid: it must return logits", expect="no Sigmoid"),
    Mistake("vae_checks", "VAE", "return self.decode(z), mu, logvar", "return self.decode(mu), mu, logvar",
            "forward decoded mu itself: decode a sample z = reparameterize(mu, logvar, generator)",
            expect="decoded mu"),
    Mistake("vae_checks", "VAE", "return self.mu_head(h), self.logvar_head(h)", "return self.mu_head(h), self.mu_head(h)",
            "logvar equals mu: compute logvar with logvar_head", expect="logvar equals mu"),
    Mistake("vae_checks", "VAE", "self.logvar_head = nn.Linear(dims[-1], k)",
            "self.logvar_head = nn.Sequential(nn.Linear(dims[-1], k), nn.Softplus())",
            "an activation on logvar_head: logvar = log sigma^2 may be negative, no activation",
            expect="no activation"),
    Mistake("vae_checks", "VAE", "layers += [nn.Linear(d_in, d_out), nn.ReLU()]", "layers += [nn.Linear(d_in, d_out)]",
            "the encoder has no ReLUs: a ReLU after every Linear", expect="ReLU after every Linear"),
    Mistake("vae_checks", "VAE", "z = reparameterize(mu, logvar, generator)  # (B, k)",
            "z = reparameterize(mu, logvar)  # (B, k)",
            "forward did not pass the generator on to reparameterize", expect="pass the generator on"),
    # KL
    Mistake("kl_checks", "kl_to_standard_normal", "0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0)",
            "0.5 * (1.0 + logvar - mu**2 - torch.exp(logvar))",
            "the sign is flipped: 1/2 sum(1 + logvar - mu^2 - exp(logvar)) is -KL", expect="sign is flipped"),
    Mistake("kl_checks", "kl_to_standard_normal", ".sum(dim=-1)", ".mean(dim=-1)",
            "averaged over the latent dimensions: sum them", expect="averaged over the latent"),
    Mistake("kl_checks", "kl_to_standard_normal", ".sum(dim=-1)", ".sum()",
            "summed over the batch too: one KL per example, shape (B,)", expect="one value per example"),
    Mistake("kl_checks", "kl_to_standard_normal", "torch.exp(logvar)", "torch.exp(0.5 * logvar)",
            "exp(0.5 * logvar) is sigma; the formula needs the variance", expect="variance"),
    Mistake("kl_checks", "kl_to_standard_normal", "kl = 0.5 * (", "kl = (",
            "the factor 1/2 is missing", expect="1/2 is missing"),
    # negative ELBO
    Mistake("elbo_checks", "negative_elbo", _REC, _REC.replace(".sum(1)", ".mean(1)"),
            "the reconstruction term was averaged over pixels: sum it over pixels", expect="averaged over pixels"),
    Mistake("elbo_checks", "negative_elbo", "return (rec + beta * kl).mean()", "return (rec + beta * kl).sum()",
            "the loss was summed over the batch: average it over examples", expect="summed over the batch"),
    Mistake("elbo_checks", "negative_elbo", "return (rec + beta * kl).mean()", "return (rec - beta * kl).mean()",
            "the KL was subtracted: -ELBO = reconstruction + beta * KL", expect="KL was subtracted"),
    Mistake("elbo_checks", "negative_elbo", "return (rec + beta * kl).mean()", "return (beta * rec + kl).mean()",
            "beta multiplied the reconstruction term: it weights the KL", expect="beta multiplied the reconstruction"),
    Mistake("elbo_checks", "negative_elbo", "/ (2.0 * sigma**2)", "/ sigma**2",
            "C = 1/sigma^2: the Gaussian term is ||x - x_hat||^2 / (2 sigma^2)", expect=r"C = 1/sigma\^2"),
    Mistake("elbo_checks", "negative_elbo", "F.binary_cross_entropy_with_logits(x_hat_or_logits, x,",
            "F.binary_cross_entropy_with_logits(torch.sigmoid(x_hat_or_logits), x,",
            "probabilities were given to BCE-with-logits: pass the raw logits", expect="probabilities were given"),
    Mistake("elbo_checks", "negative_elbo", "- logvar - 1.0).sum(dim=-1)", "- logvar - 1.0).mean(dim=-1)",
            "the KL was averaged over latent dimensions: sum them", expect="KL was averaged over latent"),
    # sampling and interpolation
    Mistake("sampling_checks", "sample_prior", "return torch.sigmoid(model.decode(z))  # (n, D)",
            "return model.decode(z)  # (n, D)",
            "logits were returned: apply torch.sigmoid to get pixel probabilities", expect="logits were returned"),
    Mistake("sampling_checks", "sample_prior", "z = torch.randn(n, model.k, generator=generator).to(device)",
            "z = torch.rand(n, model.k, generator=generator).to(device)",
            "z must be standard normal (torch.randn), not uniform (torch.rand)", expect="uniform"),
    Mistake("sampling_checks", "sample_prior", "generator=generator).to(device)", ").to(device)",
            "the generator was not used", expect="generator=generator"),
    Mistake("sampling_checks", "interpolate", "return torch.sigmoid(model.decode(z))  # (steps, D)",
            "return (1 - t) * x_a + t * x_b  # (steps, D)",
            "the pixels were interpolated: interpolate the latent means, then decode", expect="pixels were interpolated"),
    Mistake("sampling_checks", "interpolate",
            "t = torch.linspace(0, 1, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]",
            "t = (torch.arange(steps, dtype=mu_a.dtype, device=mu_a.device) / steps)[:, None]",
            "t must run from 0 to 1 with both ends included", expect="both ends included"),
    Mistake("sampling_checks", "interpolate", "mu_a = model.encode(x_a[None])[0]  # (1, k)",
            "mu_a = reparameterize(*model.encode(x_a[None]))  # (1, k)",
            "a sample of q(z|x_a) was used: interpolate the means", expect="not a sample"),
    # IWAE
    Mistake("iwae_checks", "iwae_log_likelihood", "return torch.logsumexp(log_w, dim=0) - math.log(k)  # (B,)",
            "return torch.logsumexp(log_w, dim=0)  # (B,)",
            "log k was not subtracted: log p(x) ~= logsumexp_i log w_i - log k", expect="log k was not subtracted"),
    Mistake("iwae_checks", "iwae_log_likelihood", "return torch.logsumexp(log_w, dim=0) - math.log(k)  # (B,)",
            "return log_w.mean(dim=0)  # (B,)",
            "the log-weights were averaged (that is the ELBO): use logsumexp_i log w_i - log k",
            expect="log-weights were averaged"),
    Mistake("iwae_checks", "iwae_log_likelihood", "(eps**2 + logvar + math.log(2 * math.pi))",
            "(eps**2 + math.log(2 * math.pi))",
            "log q(z|x) misses its -1/2 sum(logvar) term", expect="misses"),
    Mistake("iwae_checks", "iwae_log_likelihood", 'reduction="none").sum(-1)  # (k, B)',
            'reduction="none").mean(-1)  # (k, B)',
            "the log-likelihood was averaged over pixels: sum it", expect="averaged over pixels"),
    Mistake("iwae_checks", "iwae_log_likelihood", "torch.logsumexp(log_w, dim=0)", "torch.logsumexp(log_w, dim=1)",
            "logsumexp over the batch: reduce over the k samples (dim 0)", diagnosed=False),
    # quizzes
    Mistake("quiz_vae_facts", "answer_vae_facts", '{"A", "B", "C"}', '{"A", "B", "C", "D"}',
            "the ELBO is a lower bound: D is false", diagnosed=False),
    Mistake("quiz_vae_facts", "answer_vae_facts", '{"A", "B", "C"}', '{"A", "C"}',
            "B is true", diagnosed=False),
    Mistake("quiz_vae_facts", "answer_vae_facts", '{"A", "B", "C"}', '{"B", "C", "E"}',
            "A is true and E is false", diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_variational_inference", '"B"', '"C"', "exact Bayes is intractable here",
            diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_variational_inference", '"B"', '"A"', "MCMC is not variational inference",
            diagnosed=False),
    Mistake("quiz_vi_iwae", "answer_iwae_bound", '"B"', '"C"', "L_k is a lower bound", diagnosed=False),
]

ALTERNATIVES = [
    Alternative("reparam_checks", "reparameterize", '''
def reparameterize(mu, logvar, generator=None):
    """sqrt of the variance, addcmul."""
    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return torch.addcmul(mu, torch.sqrt(torch.exp(logvar)), noise)
''', "sigma = sqrt(exp(logvar)), torch.addcmul"),
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
    Alternative("kl_checks", "kl_to_standard_normal", '''
def kl_to_standard_normal(mu, logvar):
    """torch.distributions."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(-1)
''', "torch.distributions.kl_divergence"),
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
    Alternative("quiz_vae_facts", "answer_vae_facts", 'answer_vae_facts = frozenset("ABC")', "a frozenset"),
    Alternative("quiz_vi_iwae", "answer_variational_inference", 'answer_variational_inference = {"B"}',
                "a one-letter set"),
]
