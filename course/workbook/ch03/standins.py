"""Chapter 03 stand-ins: each exercise that later cells use, done with torch.distributions
(or plain torch where no library has it), with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `VAE = ch03.standins.VAE`: the rest of the
chapter runs with the stand-in; the exercise earns no points (its check says so). Remove the
line when your own version is ready.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence
from torch.distributions.transforms import AffineTransform

from ..standin import stand_in


def _posterior(mu, logvar) -> Normal:
    """q(z|x) = N(mu, diag(exp(logvar))) as a torch.distributions.Normal."""
    return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)


# ----------------------------------------------------------------------------- 1 sampling, the model

@stand_in
def reparameterize(mu, logvar, generator=None):
    """torch.distributions' `AffineTransform(loc=mu, scale=exp(logvar / 2))` applied to
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype) drawn on the CPU (Normal.rsample
    cannot take a generator)."""
    noise = torch.randn(tuple(mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
    return AffineTransform(loc=mu, scale=torch.exp(0.5 * logvar))(noise)


def _mlp(widths, last_relu: bool) -> nn.Sequential:
    """Linear layers through `widths`, a ReLU after each (after the last only if last_relu)."""
    layers = [m for a, b in zip(widths[:-1], widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
    return nn.Sequential(*(layers if last_relu or not layers else layers[:-1]))


@stand_in
class VAE(nn.Module):
    """Plain torch (no library has this small VAE): the exercise's layers and attribute names
    (k, encoder, mu_head, logvar_head, decoder), built by one helper, with q(z|x) sampled by the
    stand-in `reparameterize`. encode -> (mu, logvar), decode -> logits, forward -> (logits, mu, logvar)."""

    def __init__(self, D=784, k=2, hidden=(512, 256)):
        super().__init__()
        self.k = int(k)
        widths = (D, *hidden)
        self.encoder = _mlp(widths, last_relu=True)
        self.mu_head, self.logvar_head = nn.Linear(widths[-1], k), nn.Linear(widths[-1], k)
        self.decoder = _mlp((k, *reversed(hidden), D), last_relu=False)

    def encode(self, x):
        features = self.encoder(x)
        return self.mu_head(features), self.logvar_head(features)

    def decode(self, z):
        logits = self.decoder(z)
        return logits

    def forward(self, x, generator=None):
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator)), mu, logvar


# ----------------------------------------------------------------------------- 2 the loss, a step

@stand_in
def kl_to_standard_normal(mu, logvar):
    """torch.distributions' `kl_divergence(Normal(mu, sigma), Normal(0, 1))`, summed over the latent dimensions."""
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu), validate_args=False)
    return kl_divergence(_posterior(mu, logvar), prior).sum(-1)


@stand_in
def negative_elbo(x, x_hat_or_logits, mu, logvar, likelihood="bernoulli", beta=1.0, sigma=1.0):
    """-log p(x|z) from torch.distributions (`Bernoulli(logits=...).log_prob`, stable for large
    logits, or `Normal(x_hat, sigma).log_prob` without its constant), plus beta times
    `kl_to_standard_normal`'s stand-in, averaged over the batch."""
    densities = {  # constant: in Normal.log_prob, left out of the loss
        "bernoulli": lambda: Bernoulli(logits=x_hat_or_logits, validate_args=False).log_prob(x),
        "gaussian": lambda: (Normal(x_hat_or_logits, sigma, validate_args=False).log_prob(x)
                             + 0.5 * math.log(2 * math.pi * sigma ** 2)),
    }
    if likelihood not in densities:
        raise ValueError(f"likelihood must be one of {sorted(densities)}, got {likelihood!r}")
    log_px = densities[likelihood]()
    per_example = -log_px.flatten(1).sum(1) + beta * kl_to_standard_normal(mu, logvar)
    return per_example.mean()


@stand_in
def vae_step(model, x, optimizer, *, beta, generator):
    """One step of torch.optim on the stand-in `negative_elbo` (Bernoulli) of model(x, generator=generator)."""
    optimizer.zero_grad(set_to_none=True)
    logits, mu, logvar = model(x, generator=generator)
    value = negative_elbo(x, logits, mu, logvar, "bernoulli", beta)
    value.backward()
    optimizer.step(None)  # no closure
    return float(value.detach())


# ----------------------------------------------------------------------------- 3 sampling, bounds

@stand_in
@torch.no_grad()
def sample_prior(model, n, generator=None):
    """Plain torch: z = torch.randn(n, model.k, generator=generator) (N(0, I) cannot take a generator
    in torch.distributions), moved to the model's device; the Bernoulli means `Bernoulli(logits=decode(z)).probs`."""
    z = torch.randn(n, model.k, generator=generator).to(next(model.parameters()).device)
    return Bernoulli(logits=model.decode(z), validate_args=False).probs


@stand_in
@torch.no_grad()
def interpolate(model, x_a, x_b, steps):
    """torch: `torch.lerp` between the two latent means, decoded; the Bernoulli means."""
    mu_a, mu_b = model.encode(x_a[None])[0], model.encode(x_b[None])[0]
    weights = torch.linspace(0, 1, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]
    return torch.sigmoid(model.decode(torch.lerp(mu_a, mu_b, weights)))


@stand_in
@torch.no_grad()
def iwae_log_likelihood(model, x, k, generator=None):
    """torch.distributions' log-densities (`Bernoulli(logits).log_prob`, `Normal.log_prob` of the prior
    and of q(z|x)) of z = mu + sigma * eps (eps drawn as the contract says), then `torch.logsumexp`
    over the k samples minus log k."""
    mu, logvar = model.encode(x)
    posterior = _posterior(mu, logvar)
    eps = torch.randn(k, *mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    z = posterior.mean + posterior.stddev * eps  # (k, B, d)
    logits = model.decode(z.flatten(0, 1)).unflatten(0, (k, mu.shape[0]))
    targets = x.reshape(1, x.shape[0], -1).expand_as(logits)
    log_w = (Bernoulli(logits=logits, validate_args=False).log_prob(targets).sum(-1)
             + Normal(0.0, 1.0, validate_args=False).log_prob(z).sum(-1) - posterior.log_prob(z).sum(-1))
    return torch.logsumexp(log_w, dim=0) - math.log(k)
