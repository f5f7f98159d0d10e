"""Chapter 03 reference solutions: variational autoencoders."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def reparameterize(mu, logvar, generator=None):
    """Draw z ~ N(mu, diag(exp(logvar))) as a differentiable function of mu and logvar.

    z = mu + sigma * eps with sigma = exp(0.5 * logvar) and eps ~ N(0, I), so the
    gradients of z reach mu and logvar (the reparameterisation trick).

    Args:
        mu: (..., k) means.
        logvar: (..., k) log-variances log(sigma^2), same shape as mu.
        generator: torch.Generator on the CPU, or None for the global generator.

    Returns:
        z: (..., k) samples, dtype and device of mu (float32 or float64).

    Draw the noise exactly as
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    so that a seeded generator gives reproducible samples (and, with a generator, the
    global random generator is left untouched).
    """
    # eps ~ N(0, I), drawn on the CPU
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)  # (..., k)
    # sigma = exp(logvar / 2)
    std = torch.exp(0.5 * logvar)  # (..., k)
    # z = mu + sigma * eps
    z = mu + std * eps  # (..., k)
    return z


class VAE(nn.Module):
    """Fully connected VAE with a diagonal Gaussian encoder and a Bernoulli decoder.

    Attributes (these names, in this order; `hidden` may be any tuple, even empty):
        k: int, latent size.
        encoder: nn.Sequential, Linear(D, h1), ReLU, Linear(h1, h2), ReLU, ...
            (a ReLU after every Linear), (B, D) -> (B, hidden[-1]).
        mu_head: nn.Linear(hidden[-1], k), gives mu.
        logvar_head: nn.Linear(hidden[-1], k), gives logvar = log sigma^2 (no activation).
        decoder: nn.Sequential, Linear(k, hL), ReLU, ..., ReLU, Linear(h1, D): the mirror
            image of the encoder, ending with the Linear layer: it returns LOGITS
            (apply torch.sigmoid to get pixel probabilities).
    """

    def __init__(self, D=784, k=2, hidden=(512, 256)):
        """Build the encoder, the two heads and the decoder.

        Args:
            D: int, input dimension (784 for flattened MNIST).
            k: int, latent dimension.
            hidden: tuple of encoder widths (h1, ..., hL); the decoder uses them reversed.
        """
        super().__init__()
        self.k = k
        # encoder trunk: D -> h1 -> ... -> hL, a ReLU after every Linear
        dims = [D, *hidden]
        layers = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        # q(z|x) = N(mu, diag(exp(logvar)))
        self.mu_head = nn.Linear(dims[-1], k)
        self.logvar_head = nn.Linear(dims[-1], k)
        # decoder: k -> hL -> ... -> h1 -> D, logits (no final activation)
        dims = [k, *hidden[::-1], D]
        layers = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.decoder = nn.Sequential(*layers)

    def encode(self, x):
        """Parameters of q(z|x).

        Args:
            x: (B, D) inputs.

        Returns:
            mu: (B, k) means.
            logvar: (B, k) log-variances.
        """
        h = self.encoder(x)  # (B, hL)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        """Logits of p(x|z) = Bernoulli(sigmoid(logits)).

        Args:
            z: (B, k) latent codes.

        Returns:
            logits: (B, D), unbounded (not probabilities).
        """
        return self.decoder(z)

    def forward(self, x, generator=None):
        """Encode, sample one z with reparameterize(mu, logvar, generator), decode.

        Args:
            x: (B, D) inputs.
            generator: passed on to reparameterize.

        Returns:
            (logits, mu, logvar): logits (B, D) of the decoded sample, mu and logvar (B, k).
        """
        mu, logvar = self.encode(x)  # (B, k) each
        # z = mu + sigma * eps
        z = reparameterize(mu, logvar, generator)  # (B, k)
        return self.decode(z), mu, logvar


def kl_to_standard_normal(mu, logvar):
    """KL[N(mu, diag(sigma^2)) || N(0, I)] in closed form, one value per example.

    KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1), summed over the k latent
    dimensions, with sigma^2 = exp(logvar).

    Args:
        mu: (B, k) means.
        logvar: (B, k) log-variances.

    Returns:
        kl: (B,) in nats, >= 0, dtype of mu (float32 or float64).
    """
    # KL = 1/2 sum_j (mu^2 + sigma^2 - log sigma^2 - 1)
    kl = 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)  # (B,)
    return kl


def negative_elbo(x, x_hat_or_logits, mu, logvar, likelihood="bernoulli", beta=1.0, sigma=1.0):
    """The VAE loss: -ELBO = reconstruction + beta * KL, averaged over the batch.

    For each example b, with every sum over all pixels (or all k latent dimensions):
        reconstruction_b = -log p(x_b | z_b), where
            likelihood="bernoulli": x_hat_or_logits are the decoder's LOGITS and
                -log p(x|z) = sum_pixels BCE-with-logits(logits, x)   (x binary, 0 or 1);
            likelihood="gaussian": x_hat_or_logits is the mean x_hat and
                -log p(x|z) = C * ||x - x_hat||^2 with C = 1 / (2 sigma^2)
                (the constant D/2 * log(2 pi sigma^2) is left out);
        KL_b = KL[N(mu_b, diag(exp(logvar_b))) || N(0, I)]   (closed form, as above).
    loss = (1/B) * sum_b (reconstruction_b + beta * KL_b)

    Args:
        x: (B, ...) targets; any trailing shape, flattened per example.
        x_hat_or_logits: same shape as x.
        mu, logvar: (B, k).
        likelihood: "bernoulli" or "gaussian".
        beta: float, weight of the KL term (beta=1: the ELBO; beta=0: reconstruction only).
        sigma: float, standard deviation of the Gaussian likelihood (unused for bernoulli).

    Returns:
        loss: scalar tensor (differentiable), in nats per example, dtype of x. The
            Bernoulli term must stay finite and accurate for large logits (|logit| >= 100
            in float32): compute it from the logits (BCE-with-logits), never as
            log(sigmoid(logits)) or log(1 + exp(logits)).

    Raises:
        ValueError: for an unknown likelihood.
    """
    if likelihood == "bernoulli":
        # -log p(x|z) = sum_i BCE(logit_i, x_i)
        rec = F.binary_cross_entropy_with_logits(x_hat_or_logits, x, reduction="none").flatten(1).sum(1)  # (B,)
    elif likelihood == "gaussian":
        # -log p(x|z) = ||x - x_hat||^2 / (2 sigma^2) + const
        rec = ((x - x_hat_or_logits) ** 2).flatten(1).sum(1) / (2.0 * sigma**2)  # (B,)
    else:
        raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
    # KL = 1/2 sum_j (mu^2 + sigma^2 - log sigma^2 - 1)
    kl = 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)  # (B,)
    # L = (1/B) sum_b (rec_b + beta KL_b)
    return (rec + beta * kl).mean()


def vae_step(model, x, optimizer, *, beta, generator):
    """One optimisation step on the negative ELBO with weight beta on the KL.

    In this order: clear the gradients (optimizer.zero_grad); run the model on x with the
    generator, model(x, generator=generator), which gives (logits, mu, logvar); compute the
    loss with your negative_elbo (Bernoulli likelihood, KL weight beta); backpropagate it;
    let the optimizer update the parameters (optimizer.step). model(x, generator=...) is
    VAE.forward: encode, draw one z with your reparameterize, decode; calling encode,
    reparameterize(mu, logvar, generator) and decode yourself (decoding the sample z,
    never mu) is the same step.

    Args:
        model: encode(x) -> (mu, logvar) (B, k) each, decode(z) -> logits (B, D) and
            forward(x, generator) -> (logits, mu, logvar), like VAE.
        x: (B, D) binary inputs (0 or 1).
        optimizer: a torch.optim optimizer over model's parameters (their .grad may hold
            the gradients of an earlier step).
        beta: float, weight of the KL term, passed to negative_elbo.
        generator: torch.Generator on the CPU: the one draw of the step (eps ~ N(0, I),
            the shape of mu, drawn as reparameterize draws it) comes from it, so the global
            random generator is left untouched.

    Returns:
        loss: a Python float (not a tensor), the loss of this batch before the update,
            in nats per image.
    """
    optimizer.zero_grad()
    # z = mu + sigma * eps, decoded to logits
    logits, mu, logvar = model(x, generator=generator)  # (B, D), (B, k), (B, k)
    # L = rec + beta * KL, averaged over the batch
    loss = negative_elbo(x, logits, mu, logvar, beta=beta)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def sample_prior(model, n, generator=None):
    """Decode n draws from the prior p(z) = N(0, I).

    Args:
        model: has an int attribute k and decode(z) -> logits (n, D).
        n: int, number of samples.
        generator: torch.Generator on the CPU, or None.

    Returns:
        x: (n, D) pixel probabilities sigmoid(logits) (the Bernoulli means), on the
            model's device.

    Draw exactly z = torch.randn(n, model.k, generator=generator), then move z to the
    device of the model's parameters.
    """
    device = next(model.parameters()).device
    # z ~ N(0, I)
    z = torch.randn(n, model.k, generator=generator).to(device)  # (n, k)
    # x = sigmoid(g(z))
    return torch.sigmoid(model.decode(z))  # (n, D)


@torch.no_grad()
def interpolate(model, x_a, x_b, steps):
    """Decode a straight line between the latent means of two inputs.

    z_t = (1 - t) * mu_a + t * mu_b for t = torch.linspace(0, 1, steps), where
    mu_a, _ = model.encode(x_a[None]) (the mean, no sampling), and likewise mu_b.

    Args:
        model: encode(x) -> (mu, logvar), decode(z) -> logits.
        x_a, x_b: (D,) two inputs.
        steps: int >= 2, number of points, endpoints included.

    Returns:
        x: (steps, D) pixel probabilities sigmoid(decode(z_t)); row 0 decodes mu_a and
            the last row decodes mu_b.
    """
    mu_a = model.encode(x_a[None])[0]  # (1, k)
    mu_b = model.encode(x_b[None])[0]  # (1, k)
    t = torch.linspace(0, 1, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]  # (steps, 1)
    # z_t = (1 - t) mu_a + t mu_b
    z = (1 - t) * mu_a + t * mu_b  # (steps, k)
    return torch.sigmoid(model.decode(z))  # (steps, D)


@torch.no_grad()
def iwae_log_likelihood(model, x, k, generator=None):
    """Importance-weighted estimate of log p(x) with a Bernoulli decoder (Burda et al. 2016).

    With z_i ~ q(z|x) = N(mu, diag(exp(logvar))), i = 1..k:
        log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)
        log p(x) ~= logsumexp_i(log w_i) - log k
    where log p(x|z) = -sum_pixels BCE-with-logits(decode(z), x), p(z) = N(0, I), and
    every log-density is summed over its dimensions (including the -1/2 log(2 pi) terms).
    k = 1 gives an unbiased one-sample estimate of the ELBO. Each estimate is random; its
    expectation never decreases with k, stays at most log p(x) and approaches it as k grows
    (Burda et al., Theorem 1).

    Args:
        model: encode(x) -> (mu, logvar) (B, d) each; decode(z) -> logits (N, D).
        x: (B, D) binary inputs.
        k: int >= 1, importance samples per input.
        generator: torch.Generator on the CPU, or None.

    Returns:
        log_px: (B,) estimates of log p(x) in nats, dtype of mu. log p(x) itself is <= 0
            for binary x, but a single estimate is random and may exceed it (and 0) where
            p(z) / q(z|x) is large. Finite even when the log-weights are far below 0
            (thousands of nats), where exp(log w) is 0: use torch.logsumexp, never
            log(mean(exp(log w))).

    Draw the noise exactly as
        eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype).to(mu.device)
    and use z = mu + exp(0.5 * logvar) * eps, shape (k, B, d); decode z as one batch
    of k * B codes.
    """
    mu, logvar = model.encode(x)  # (B, d)
    B, d = mu.shape
    eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype).to(mu.device)  # (k, B, d)
    # z_i = mu + sigma * eps_i
    z = mu + torch.exp(0.5 * logvar) * eps  # (k, B, d)
    logits = model.decode(z.reshape(k * B, d)).reshape(k, B, -1)  # (k, B, D)
    target = x.reshape(1, B, -1).expand_as(logits)  # (k, B, D)
    # log p(x|z) = -sum BCE
    log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)  # (k, B)
    # log p(z) = sum -1/2 (z^2 + log 2 pi)
    log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)  # (k, B)
    # log q(z|x) = sum -1/2 (eps^2 + logvar + log 2 pi)
    log_qz = -0.5 * (eps**2 + logvar + math.log(2 * math.pi)).sum(-1)  # (k, B)
    log_w = log_px_z + log_pz - log_qz  # (k, B)
    # log p(x) ~= logsumexp_i log w_i - log k
    return torch.logsumexp(log_w, dim=0) - math.log(k)  # (B,)


# Quiz: Which statements are true? (choose all that apply)
#   A: Decoding a random code of a plain autoencoder often gives no digit, because
#      nothing in its loss organises the latent space between training codes.
#   B: The KL term pulls every q(z|x) towards N(0, I): encodings overlap, so nearby
#      codes decode to similar images and the prior covers the region codes occupy.
#   C: The reparameterisation trick lets gradients flow through the sampling step to
#      the encoder's outputs mu and logvar.
#   D: Maximising the ELBO maximises log p(x) exactly, for any encoder.
#   E: A larger beta always gives better reconstructions.
answer_vae_facts = {"A", "B", "C"}

# Quiz: Keep the decoder fixed and raise the ELBO of one image x by changing only the
#   encoder's parameters. What happens?
#   A: log p(x) rises by the same amount.
#   B: q(z|x) moves closer to the posterior p(z|x) (in KL) while log p(x) stays as it is.
#   C: q(z|x) becomes the prior N(0, I).
#   D: Nothing: the ELBO depends on the decoder only.
answer_variational_inference = "B"

# Quiz: On one test digit, an implementation of L_k returns -95.1, -90.4 and -89.8 nats
#   for k = 1, 50 and 5000. Which is true?
#   A: log p(x) <= -95.1.
#   B: up to the estimator's noise, log p(x) >= -89.8, and a larger k would on average
#      give a value no lower.
#   C: a correct implementation returns the same value for every k: there is a bug.
#   D: L_5000 is an upper bound on log p(x).
answer_iwae_bound = "B"

# Quiz: Train the same VAE with beta = 0 (the KL term computed but not in the loss). Compared
#   with the beta = 1 model, what happens?
#   A: the rate falls to about 0 and all reconstructions look alike.
#   B: the rate rises well above the beta = 1 model's, the distortion falls, and decoding
#      z ~ N(0, I) gives worse digits.
#   C: nothing changes: beta only rescales the loss.
#   D: training diverges: without the KL term the loss is unbounded below.
answer_beta_zero = "B"
