"""Chapter 03 visible checks (variational autoencoders): the `check_*` functions the notebook
calls, the chapter's texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the stand-ins the
checks use.

Every check runs on small fixed inputs whose answers are known by construction (hand
computations, torch.distributions, a Monte-Carlo estimate, numerical integration), so it
needs no reference implementation. Hidden checks, run when grading, use fresh random inputs.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import Checks, check_choice, count_parameters, substituted
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_vae_facts": "ABCDE", "answer_variational_inference": "ABCD",
                "answer_iwae_bound": "ABCD", "answer_beta_zero": "ABCD"}
QUIZ_SETS = {"answer_vae_facts"}  # answered with a set of letters
LOG2PI = math.log(2 * math.pi)

# What a check tells a learner when it recognises a mistake: one text each, used by the
# visible checks here, the hidden checks and the catalogue of mistakes.
DIAGNOSES: dict[str, str] = {
    # reparameterize
    "reparam_logvar_as_sigma": "logvar was used as sigma: sigma = exp(0.5 * logvar)",
    "reparam_variance": "exp(logvar) is the variance sigma^2, not sigma: use sigma = exp(0.5 * logvar)",
    "reparam_uniform": "uniform noise: eps must be standard normal (torch.randn, not torch.rand)",
    "reparam_swapped": "mu and sigma are swapped: z = mu + sigma * eps",
    "reparam_no_grad": "build z = mu + sigma * eps from mu and logvar themselves (no torch.normal, no .sample(), no "
                       ".detach(), no torch.no_grad())",
    "reparam_detached_logvar": "logvar was detached (or not used): compute z = mu + exp(0.5 * logvar) * eps from "
                               "logvar itself",
    "reparam_generator": "the noise did not come from the generator passed in (torch.randn_like and "
                         "torch.normal(mu, ...) use the global one): "
                         "eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)",
    "reparam_dtype": "the noise was drawn in another dtype than mu's: draw eps with dtype=mu.dtype, so z "
                     "keeps mu's dtype",
    "reparam_float64": "the noise was drawn in float64 whatever mu's dtype: use dtype=mu.dtype, so z keeps "
                       "mu's dtype",
    "reparam_shared_eps": "one noise vector was shared by all rows: draw eps with the whole shape of mu",
    "reparam_shape": "the noise was drawn for 2-D inputs only: mu may have any leading shape (..., k), "
                     "draw eps with mu.shape",
    "reparam_clamp": "do not clamp logvar: sigma = exp(0.5 * logvar) for every logvar (trained encoders give "
                     "logvar far below -5)",
    "reparam_draw": "eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype); "
                    "z = mu + exp(0.5 * logvar) * eps",
    # VAE module
    "vae_sigmoid": "the decoder returns logits: it ends with a Linear layer, no Sigmoid",
    "vae_decoded_mu": "forward decoded mu itself: decode a sample z = reparameterize(mu, logvar, generator)",
    "vae_logvar_is_mu": "logvar equals mu: compute logvar with logvar_head",
    "vae_head_activation": "no activation on the heads: mu and logvar = log sigma^2 can take any real value",
    "vae_no_relu": "a ReLU after every Linear of the encoder; the heads have no activation",
    "vae_generator": "sample z with reparameterize(mu, logvar, generator) and pass the generator on",
    "vae_forward_std": "forward must return logvar (log sigma^2) as its third output, not sigma or sigma^2",
    "vae_forward_probs": "forward must return the decoder's logits, not sigmoid(logits)",
    "vae_names": "attributes encoder, mu_head, logvar_head, decoder as stated, with their layers in order",
    "vae_layers": "same layers but different activations or order: a ReLU after every encoder Linear, "
                  "no activation on the heads or at the end of the decoder",
    "vae_forward": "forward samples z = reparameterize(mu, logvar, generator) and decodes it",
    "vae_forward_order": "forward must return (logits, mu, logvar) in this order",
    # KL
    "kl_sign": "the sign is flipped: 1/2 sum(1 + logvar - mu^2 - exp(logvar)) is -KL",
    "kl_mean_latent": "averaged over the latent dimensions: sum them",
    "kl_sum_batch": "sum over the latent dimension only (dim=-1), not over the batch",
    "kl_std": "exp(0.5 * logvar) is sigma; the formula needs the variance sigma^2 = exp(logvar)",
    "kl_half": "the factor 1/2 is missing",
    "kl_log_std": "logvar was read as log sigma: it is log sigma^2, so sigma^2 = exp(logvar) and "
                  "log sigma^2 = logvar",
    "kl_dtype": "keep the dtype of mu: no float64 accumulation or torch.tensor(...) copies",
    "kl_formula": "KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1), one value per example",
    # negative ELBO
    "elbo_rec_mean_pixels": "the reconstruction term was averaged over pixels: sum it over pixels "
                            "(-log p(x|z) of a whole image)",
    "elbo_sum_batch": "the loss was summed over the batch: average it over examples",
    "elbo_kl_subtracted": "the KL was subtracted: -ELBO = reconstruction + beta * KL",
    "elbo_beta_rec": "beta multiplied the reconstruction term: it weights the KL",
    "elbo_beta_ignored": "beta was ignored",
    "elbo_c_sigma2": "C = 1/sigma^2: the Gaussian term is ||x - x_hat||^2 / (2 sigma^2)",
    "elbo_c_sigma": "sigma was used in place of sigma^2: C = 1 / (2 sigma^2)",
    "elbo_probs": "probabilities were given to BCE-with-logits: pass the raw logits",
    "elbo_kl_mean": "the KL was averaged over latent dimensions: sum them",
    "elbo_sq_mean": "the squared error was averaged over pixels: sum it over pixels",
    "elbo_sigma_ignored": "the sigma argument was ignored",
    "elbo_stable": "log(sigmoid(logits)), log(1 - sigmoid(logits)) and log(1 + exp(logits)) overflow or "
                   "lose everything at large logits in float32: use "
                   "F.binary_cross_entropy_with_logits (or softplus(l) - x * l)",
    "elbo_clamped_bce": "BCE on sigmoid probabilities is clamped at 100 nats a pixel and rounds to 0 or 1 at "
                        "large logits: use F.binary_cross_entropy_with_logits on the logits",
    "elbo_rec_sum_batch": "the reconstruction term was summed over the whole batch: sum it over the pixels "
                          "of each example, then average over examples",
    "elbo_dtype": "keep the input's dtype: no .double() or float64 constants in the loss",
    "elbo_value_error": "raise ValueError for a likelihood other than 'bernoulli' or 'gaussian'",
    # training step
    "step_zero_grad": "the gradients of an earlier step were added in: call optimizer.zero_grad() before "
                      "loss.backward()",
    "step_float": "return the loss as a Python float: loss.item() (a tensor keeps its whole graph alive)",
    "step_loss": "return negative_elbo(x, logits, mu, logvar, beta=beta).item(), computed before optimizer.step()",
    "step_sigmoid": "compute the loss from the logits (negative_elbo, i.e. binary_cross_entropy_with_logits), "
                    "not through sigmoid(logits): at large logits float32 rounds the sigmoid to exactly 0 or 1 "
                    "and that loss is wrong",
    "step_loss_after": "the loss returned was computed after optimizer.step(): return the value of the loss "
                       "you called backward() on",
    "step_beta": "beta was ignored: pass beta=beta to negative_elbo",
    "step_generator": "z was drawn from the global random generator: call model(x, generator=generator) "
                      "(or reparameterize(mu, logvar, generator))",
    "step_mu": "the decoder was given mu, not a sample: decode z = reparameterize(mu, logvar, generator) "
               "(model(x, generator=generator) does that)",
    "step_no_step": "the parameters did not change: call optimizer.step() after loss.backward() (a step "
                    "before backward, or a zero_grad between them, has no gradient to apply)",
    "step_detached_kl": "the KL term sent no gradient to the encoder (mu or logvar detached): pass the mu and "
                        "logvar that the model returned to negative_elbo as they are",
    "step_update": "one step is zero_grad, forward with the generator, negative_elbo with beta, backward, step",
    "step_own_update": "the parameters were changed without optimizer.step() (or it was called more than once): "
                       "let the optimizer apply its own rule, once per step (momentum, Adam and weight decay differ "
                       "from p -= lr * grad)",
    "step_grad_changed": "the gradients were changed between loss.backward() and optimizer.step() (clipped, scaled "
                         "or replaced?): the step applies the optimizer to the gradient of the loss as it is",
    # sampling and interpolation
    "sample_logits": "logits were returned: apply torch.sigmoid to get pixel probabilities",
    "sample_uniform": "z must be standard normal (torch.randn), not uniform (torch.rand)",
    "sample_generator": "draw z = torch.randn(n, model.k, generator=generator) and return sigmoid(model.decode(z))",
    "sample_binary": "binary pixels were drawn: return the Bernoulli means sigmoid(decode(z)), not samples",
    "interp_pixels": "the pixels were interpolated: interpolate the latent means, then decode",
    "interp_ends": "t must run from 0 to 1 with both ends included (torch.linspace(0, 1, steps))",
    "interp_sample": "row 0 must decode the mean mu_a of x_a exactly: use mu from model.encode, not a sample",
    "interp_backwards": "the interpolation runs backwards: t = 0 gives x_a",
    # IWAE
    "iwae_log_k": "log k was not subtracted: log p(x) ~= logsumexp_i log w_i - log k",
    "iwae_log_k_added": "log k was added: log p(x) ~= logsumexp_i log w_i - log k",
    "iwae_mean_log_w": "the log-weights were averaged (that is the ELBO): use logsumexp_i log w_i - log k",
    "iwae_q_logvar": "log q(z|x) misses its -1/2 sum(logvar) term",
    "iwae_mean_pixels": "the log-likelihood was averaged over pixels: sum it",
    "iwae_overflow": "log(mean(exp(log w))) underflows to log 0 = -inf when the log-weights are large and "
                     "negative: use torch.logsumexp(log_w, dim=0) - log k",
    "iwae_generator": "the noise did not come from the generator passed in: "
                      "eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype)",
    "iwae_squeeze": "a batch of one lost its batch dimension: return shape (B,), no squeeze()",
    "iwae_dtype": "draw the noise in mu's dtype: eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype)",
    "iwae_pz_eps": "log p(z) must be evaluated at z = mu + sigma * eps, not at eps",
    "iwae_formula": "eps = torch.randn(k, B, d, generator=generator, dtype=mu.dtype); "
                    "log w = log p(x|z) + log p(z) - log q(z|x); logsumexp over the k samples minus log k",
    "reparam_grad": "torch.normal(mu, sigma) and Normal(...).sample() give no gradient; compute z = mu + exp(0.5 * "
                    "logvar) * eps with torch operations",
    "reparam_derivatives": "dz/dmu = 1 and dz/dlogvar = 0.5 * sigma * eps",
    "vae_counts": "encoder Linear layers D -> h1 -> ... -> hL, two heads hL -> k, decoder k -> hL -> ... -> D",
    "vae_logits": "no Sigmoid at the end of the decoder: apply torch.sigmoid only when you need probabilities",
    "kl_minus_one": "KL = 1/2 sum (mu^2 + sigma^2 - log sigma^2 - 1): the -1 makes it 0 when q = N(0, I)",
    "elbo_mean_batch": "mean over the batch of [sum over pixels of BCE-with-logits + KL]",
    "elbo_flatten": "flatten every dimension but the batch one before summing over pixels",
    "elbo_gaussian": "-log p(x|z) = ||x - x_hat||^2 / (2 sigma^2), without the constant",
    "elbo_graph": "no .item(), no torch.no_grad()",
    "sample_given_generator": "use the generator you are given",
    "interp_formula": "z_t = (1 - t) * mu_a + t * mu_b for t = torch.linspace(0, 1, steps)",
    "iwae_log_w": "log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x); log p(x|z) = -sum of BCE-with-logits",
}

# The idea behind each quiz question, shown with a wrong answer when grading (never the letter).
QUIZ_EXPLAIN: dict[str, str] = {
    "answer_vae_facts": "weigh each statement on its own: what organises an autoencoder's latent space, what "
                        "the KL term does to the encodings, what the reparameterisation makes differentiable, "
                        "whether a lower bound can equal log p(x) for every encoder, and what a larger beta "
                        "trades away",
    "answer_variational_inference": "write log p(x) = ELBO + KL[q(z|x) || p(z|x)]: with the decoder fixed, "
                                    "which of the three terms can the encoder change?",
    "answer_beta_zero": "with beta = 0 the loss is the distortion alone: ask what the encoder gains from precise, "
                        "well separated encodings once information costs nothing, what that does to the "
                        "reconstructions, and whether the prior still describes where the codes lie",
    "answer_iwae_bound": "L_k averages importance weights inside the log: by Jensen's inequality it is a lower "
                         "bound on log p(x) in expectation, and averaging more weights can only tighten it",
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _near(got: torch.Tensor, candidates: dict[str, torch.Tensor], atol: float) -> str | None:
    """The first diagnosis whose value `got` matches within atol (for Monte-Carlo values)."""
    g = got.detach().double()
    for diagnosis, value in candidates.items():
        v = torch.as_tensor(value).double()
        if v.shape == g.shape and bool(((g - v).abs() <= atol).all()):
            return diagnosis
    return None


# ----------------------------------------------------------------------------- 1 reparameterize

def check_reparameterize(reparameterize) -> None:
    c = Checks("reparameterize")
    refuse_stand_in(c, "reparameterize", reparameterize)
    dt = torch.float64
    mu = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=dt)
    logvar = torch.tensor([[0.0, 0.0], [math.log(4.0), math.log(0.25)]], dtype=dt)
    inputs = "mu = [[0,0],[1,2]], logvar = [[0,0],[log 4, log 0.25]] (float64), generator seeded 0"
    before = torch.random.get_rng_state()
    z = c.call(reparameterize, mu, logvar, _gen(0), inputs=inputs)
    c.true(torch.equal(before, torch.random.get_rng_state()),
           "the global random generator was used: every draw must come from the generator passed in",
           inputs=inputs, hint=DIAGNOSES["reparam_generator"])
    c.tensor("z", z, shape=(2, 2), dtype=dt, inputs=inputs)
    eps = torch.randn((2, 2), generator=_gen(0), dtype=dt)
    std = torch.tensor([[1.0, 1.0], [2.0, 0.5]], dtype=dt)  # sigma = exp(logvar / 2)
    c.close("z", z, mu + std * eps, atol=1e-10, rtol=1e-12, inputs=inputs + "; eps = torch.randn((2, 2), generator, float64)",
            mistakes={DIAGNOSES["reparam_logvar_as_sigma"]: mu + logvar * eps,
                      DIAGNOSES["reparam_variance"]: mu + logvar.exp() * eps,
                      DIAGNOSES["reparam_uniform"]: mu + std * torch.rand((2, 2), generator=_gen(0), dtype=dt),
                      DIAGNOSES["reparam_swapped"]: std + mu * eps,
                      DIAGNOSES["reparam_dtype"]: mu + std * torch.randn((2, 2), generator=_gen(0)).to(dt),
                      DIAGNOSES["reparam_shared_eps"]: mu + std * torch.randn(2, generator=_gen(0), dtype=dt)},
            hint=DIAGNOSES["reparam_draw"])
    # moments of many samples
    n = 20000
    mu = torch.tensor([1.0, -2.0], dtype=dt).expand(n, 2)
    logvar = torch.tensor([math.log(0.25), math.log(4.0)], dtype=dt).expand(n, 2)
    inputs = f"{n} rows of mu = [1, -2], logvar = [log 0.25, log 4] (sigma = [0.5, 2])"
    z = c.call(reparameterize, mu, logvar, _gen(1), inputs=inputs)
    c.tensor("z", z, shape=(n, 2), dtype=dt, inputs=inputs)
    c.close("sample mean of z", z.mean(0), torch.tensor([1.0, -2.0]), atol=0.06, inputs=inputs)
    c.close("sample standard deviation of z", z.std(0), torch.tensor([0.5, 2.0]), atol=0.06, inputs=inputs,
            mistakes={DIAGNOSES["reparam_variance"]: torch.tensor([0.25, 4.0]),
                      DIAGNOSES["reparam_logvar_as_sigma"]: torch.tensor([math.log(4.0), math.log(4.0)])})
    # gradients flow to mu and logvar
    mu = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]], dtype=dt, requires_grad=True)
    logvar = torch.tensor([[0.2, -0.4, 0.0], [1.0, -1.0, 0.3]], dtype=dt, requires_grad=True)
    w = torch.tensor([[1.0, 2.0, -1.0], [0.5, -2.0, 3.0]], dtype=dt)
    inputs = "mu, logvar (2, 3) float64 with requires_grad=True, loss = (w * z).sum()"
    z = c.call(reparameterize, mu, logvar, _gen(2), inputs=inputs)
    c.tensor("z", z, shape=(2, 3), dtype=dt, inputs=inputs)
    c.true(z.requires_grad, "no gradient reaches mu and logvar: z does not depend on them differentiably",
           inputs=inputs, hint=DIAGNOSES["reparam_no_grad"])
    c.call((w * z).sum().backward, inputs=inputs)
    eps = torch.randn((2, 3), generator=_gen(2), dtype=dt)
    for name, t, want in [("mu", mu, w), ("logvar", logvar, w * 0.5 * (0.5 * logvar.detach()).exp() * eps)]:
        c.true(t.grad is not None and bool(t.grad.abs().sum() > 0), f"no gradient reaches {name}",
               inputs=inputs,
               hint=DIAGNOSES["reparam_detached_logvar"] if name == "logvar" else DIAGNOSES["reparam_grad"])
        c.close(f"d loss / d {name}", t.grad, want, atol=1e-8, inputs=inputs,
                hint=DIAGNOSES["reparam_derivatives"])
    c.done()


# ----------------------------------------------------------------------------- 2 VAE

def _reparameterize(mu, logvar, generator=None):
    """A stand-in for the learner's reparameterize while their VAE is checked (torch alone)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def check_vae(VAE, reparameterize) -> None:
    """`reparameterize` is the learner's; their VAE is checked with a stand-in for it, so a
    mistake there costs the points of its own exercise only."""
    c = Checks("VAE")
    refuse_stand_in(c, "VAE", VAE)
    torch.manual_seed(0)
    for D, k, hidden in [(784, 2, (512, 256)), (20, 3, (8,)), (10, 2, ())]:
        inputs = f"VAE(D={D}, k={k}, hidden={hidden})"
        model = c.call(VAE, D=D, k=k, hidden=hidden, inputs=inputs)
        names = ["encoder", "mu_head", "logvar_head", "decoder"]
        c.true(all(isinstance(getattr(model, n, None), nn.Module) for n in names) and getattr(model, "k", None) == k,
               "the model needs attributes k, encoder, mu_head, logvar_head and decoder", inputs=inputs,
               got=", ".join(n for n in ["k", *names] if hasattr(model, n)) or "none of them")
        c.true(isinstance(model.mu_head, nn.Linear) and isinstance(model.logvar_head, nn.Linear),
               "mu_head and logvar_head must be nn.Linear layers", inputs=inputs,
               got=f"{type(model.mu_head).__name__}, {type(model.logvar_head).__name__}",
               hint=DIAGNOSES["vae_head_activation"])
        dims = [D, *hidden]
        enc = sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
        head = (dims[-1] + 1) * k
        ddims = [k, *hidden[::-1], D]
        dec = sum((a + 1) * b for a, b in zip(ddims[:-1], ddims[1:]))
        got = (count_parameters(model.encoder), count_parameters(model.mu_head), count_parameters(model.logvar_head), count_parameters(model.decoder))
        c.true(got == (enc, head, head, dec), "wrong number of parameters", inputs=inputs,
               expected=f"encoder {enc}, mu_head {head}, logvar_head {head}, decoder {dec}",
               got=f"encoder {got[0]}, mu_head {got[1]}, logvar_head {got[2]}, decoder {got[3]}",
               hint=DIAGNOSES["vae_counts"])
        enc_types = [type(m).__name__ for m in model.encoder]
        dec_types = [type(m).__name__ for m in model.decoder]
        c.true(enc_types == ["Linear", "ReLU"] * len(hidden), "the encoder's layers are not as stated",
               inputs=inputs, expected=str(["Linear", "ReLU"] * len(hidden)), got=str(enc_types),
               hint=DIAGNOSES["vae_no_relu"])
        c.true(dec_types == ["Linear"] + ["ReLU", "Linear"] * len(hidden), "the decoder's layers are not as stated",
               inputs=inputs, expected=str(["Linear"] + ["ReLU", "Linear"] * len(hidden)), got=str(dec_types),
               hint=DIAGNOSES["vae_sigmoid"])
        x = torch.rand(5, D)
        out = c.call(model.encode, x, inputs=inputs + ", x (5, D)")
        c.true(isinstance(out, tuple) and len(out) == 2, "encode(x) must return a tuple (mu, logvar)",
               inputs=inputs, got=type(out).__name__)
        mu, logvar = out
        c.tensor("mu", mu, shape=(5, k), inputs=inputs)
        c.tensor("logvar", logvar, shape=(5, k), inputs=inputs)
        c.true(not torch.allclose(mu, logvar), DIAGNOSES["vae_logvar_is_mu"],
               inputs=inputs)
        logits = c.call(model.decode, mu, inputs=inputs + ", z = mu")
        c.tensor("decode(z)", logits, shape=(5, D), inputs=inputs)
        c.true(bool(((logits <= 0) | (logits >= 1)).any()), "decode(z) must return logits, but every value "
               "lies in (0, 1)", inputs=inputs, hint=DIAGNOSES["vae_logits"])
        with substituted(VAE, reparameterize=_reparameterize):  # one mistake, one exercise
            out = c.call(model, x, generator=_gen(3), inputs=inputs + ", model(x, generator=seeded 3)")
        c.true(isinstance(out, (tuple, list)) and len(out) == 3, "forward must return a tuple (logits, mu, logvar)",
               inputs=inputs,
               got=type(out).__name__ + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
        c.tensor("forward's logits", out[0], shape=(5, D), inputs=inputs,)
        c.close("forward's mu", out[1], mu, atol=1e-6, inputs=inputs,
                hint=DIAGNOSES["vae_forward_order"])
        c.close("forward's logvar", out[2], logvar, atol=1e-6, inputs=inputs,
                mistakes={DIAGNOSES["vae_forward_std"]: (0.5 * logvar).exp().detach()},
                hint=DIAGNOSES["vae_forward_order"])
        with torch.no_grad():
            want = model.decode(_reparameterize(mu, logvar, _gen(3)))
        c.close("forward's logits", out[0], want, atol=1e-5,
                inputs=inputs + "; expected decode(reparameterize(mu, logvar, generator))",
                mistakes={DIAGNOSES["vae_decoded_mu"]: model.decode(mu).detach(),
                          DIAGNOSES["vae_forward_probs"]: torch.sigmoid(want)},
                hint=DIAGNOSES["vae_generator"])
        with substituted(VAE, reparameterize=_reparameterize):
            c.call(model, x, inputs=inputs + ", model(x) without a generator")
    c.done()


# ----------------------------------------------------------------------------- 3 KL

def check_kl(kl_to_standard_normal) -> None:
    c = Checks("kl_to_standard_normal")
    refuse_stand_in(c, "kl_to_standard_normal", kl_to_standard_normal)
    dt = torch.float64
    inputs = "mu = 0, logvar = 0, shape (3, 2)"
    kl = c.call(kl_to_standard_normal, torch.zeros(3, 2, dtype=dt), torch.zeros(3, 2, dtype=dt), inputs=inputs)
    c.true(isinstance(kl, torch.Tensor) and kl.shape == (3,), "the KL must have one value per example, shape (B,)",
           inputs=inputs, expected="shape (3,)", got=f"shape {tuple(kl.shape)}" if isinstance(kl, torch.Tensor) else kl,
           hint=DIAGNOSES["kl_sum_batch"])
    c.tensor("kl", kl, shape=(3,), dtype=dt, inputs=inputs)
    c.close("kl", kl, torch.zeros(3), atol=1e-10, inputs=inputs + " (q = p, so KL = 0)",
            hint=DIAGNOSES["kl_minus_one"])
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, -1.0]], dtype=dt)
    logvar = torch.tensor([[0.0, 0.0], [math.log(4.0), math.log(0.25)], [0.0, math.log(2.0)]], dtype=dt)
    inputs = "mu = [[1,0],[0,0],[2,-1]], logvar = [[0,0],[log 4, log 1/4],[0, log 2]]"
    kl = c.call(kl_to_standard_normal, mu, logvar, inputs=inputs)
    c.tensor("kl", kl, shape=(3,), dtype=dt, inputs=inputs)
    # by hand: 1/2 sum_j (mu^2 + s2 - log s2 - 1) with s2 = exp(logvar)
    want = torch.tensor([0.5, 0.5 * (3 - math.log(4) - 0.75 + math.log(4)), 0.5 * (4 + 2 - math.log(2))], dtype=dt)
    half_std = 0.5 * (mu**2 + (0.5 * logvar).exp() - logvar - 1).sum(-1)
    log_std = 0.5 * (mu**2 + (2 * logvar).exp() - 2 * logvar - 1).sum(-1)
    c.close("kl", kl, want, atol=1e-8, inputs=inputs,
            mistakes={DIAGNOSES["kl_sign"]: -want,
                      DIAGNOSES["kl_mean_latent"]: want / 2,
                      DIAGNOSES["kl_half"]: 2 * want,
                      DIAGNOSES["kl_std"]: half_std, DIAGNOSES["kl_log_std"]: log_std},
            hint=DIAGNOSES["kl_formula"])
    # Monte-Carlo: KL = E_q[log q(z) - log p(z)]
    mu = torch.tensor([[0.3, -1.2, 0.8], [1.5, 0.0, -0.4]], dtype=dt)
    logvar = torch.tensor([[-0.5, 0.4, 0.0], [0.9, -1.3, 0.2]], dtype=dt)
    inputs = "mu, logvar (2, 3); compared with a 200,000-sample Monte-Carlo estimate of E_q[log q(z) - log p(z)]"
    kl = c.call(kl_to_standard_normal, mu, logvar, inputs=inputs)
    c.tensor("kl", kl, shape=(2,), dtype=dt, inputs=inputs)
    eps = torch.randn(200000, 2, 3, generator=_gen(4), dtype=dt)
    z = mu + (0.5 * logvar).exp() * eps
    log_ratio = (-0.5 * (eps**2 + logvar) + 0.5 * z**2).sum(-1)  # log q(z) - log p(z), (n, 2)
    se = log_ratio.std(0) / math.sqrt(len(log_ratio))
    c.close("kl", kl, log_ratio.mean(0), atol=float(5 * se.max()), rtol=0, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 4 negative ELBO

def check_negative_elbo(negative_elbo) -> None:
    c = Checks("negative_elbo")
    refuse_stand_in(c, "negative_elbo", negative_elbo)
    dt = torch.float64
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=dt)
    mu0, zeros = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=dt), torch.zeros(2, 2, dtype=dt)
    inputs = "x binary (2, 4), logits = 0, mu = [[2, 0], [0, 0]], logvar = 0, bernoulli"
    loss = c.call(negative_elbo, x, torch.zeros(2, 4, dtype=dt), mu0, zeros, inputs=inputs)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    # each pixel costs log 2; KL = mu^2 / 2 = 2 for the first example, 0 for the second
    c.close("loss", loss, torch.tensor(4 * math.log(2) + 1), atol=1e-8,
            inputs=inputs + " (each pixel costs log 2, KL = [2, 0])",
            mistakes={DIAGNOSES["elbo_rec_mean_pixels"]: torch.tensor(math.log(2) + 1),
                      DIAGNOSES["elbo_sum_batch"]: torch.tensor(8 * math.log(2) + 2),
                      DIAGNOSES["elbo_rec_sum_batch"]: torch.tensor(8 * math.log(2) + 1),
                      DIAGNOSES["elbo_kl_subtracted"]: torch.tensor(4 * math.log(2) - 1),
                      DIAGNOSES["elbo_kl_mean"]: torch.tensor(4 * math.log(2) + 0.5),
                      DIAGNOSES["elbo_probs"]: (F.softplus(torch.tensor(0.5)) * 4 - 0.5 * x.sum(1)).mean() + 1})

    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 1.0]], dtype=dt)
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0], [-0.5, 1.5, 0.0, -3.0, 1.0], [0.3, 2.5, -1.5, -0.2, 0.7]],
                          dtype=dt)
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0], [1.0, 1.0]], dtype=dt)
    logvar = torch.tensor([[0.0, -1.0], [0.5, 0.0], [-0.3, 0.2]], dtype=dt)
    # BCE with logits: softplus(l) - x * l; KL in closed form
    bce = F.softplus(logits) - x * logits
    rec = bce.sum(1)
    kl = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(1)
    bce_p = F.softplus(torch.sigmoid(logits)) - x * torch.sigmoid(logits)
    common = {
        DIAGNOSES["elbo_rec_mean_pixels"]:
            (bce.mean(1) + kl).mean(),
        DIAGNOSES["elbo_sum_batch"]: (rec + kl).sum(),
        DIAGNOSES["elbo_kl_subtracted"]: (rec - kl).mean(),
        DIAGNOSES["elbo_probs"]: (bce_p.sum(1) + kl).mean(),
        DIAGNOSES["elbo_kl_mean"]: (rec + kl / 2).mean(),
        DIAGNOSES["elbo_rec_sum_batch"]: rec.sum() + kl.mean(),
    }
    inputs = "x binary (3, 5), fixed logits, mu, logvar (3, 2), bernoulli, beta=1"
    loss = c.call(negative_elbo, x, logits, mu, logvar, inputs=inputs)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    c.close("loss", loss, (rec + kl).mean(), atol=1e-8, inputs=inputs, mistakes=common,
            hint=DIAGNOSES["elbo_mean_batch"])
    inputs = "the same inputs with beta=0.5"
    loss = c.call(negative_elbo, x, logits, mu, logvar, "bernoulli", 0.5, inputs=inputs)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    c.close("loss", loss, (rec + 0.5 * kl).mean(), atol=1e-8, inputs=inputs,
            mistakes={DIAGNOSES["elbo_beta_rec"]: (0.5 * rec + kl).mean(),
                      DIAGNOSES["elbo_beta_ignored"]: (rec + kl).mean()})
    inputs = "the same inputs as images (3, 1, 1, 5)"
    loss = c.call(negative_elbo, x.reshape(3, 1, 1, 5), logits.reshape(3, 1, 1, 5), mu, logvar, inputs=inputs)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    c.close("loss", loss, (rec + kl).mean(), atol=1e-8, inputs=inputs,
            hint=DIAGNOSES["elbo_flatten"])

    x_hat = torch.tensor([[0.9, 0.1, 0.7, 0.6, 0.2], [0.2, 0.8, 0.5, 0.1, 0.3], [0.6, 0.4, 0.2, 0.3, 0.9]], dtype=dt)
    sq = ((x - x_hat) ** 2).sum(1)
    inputs = "x (3, 5), x_hat (3, 5), mu, logvar (3, 2), gaussian, sigma=0.5 (C = 1/(2 sigma^2) = 2), beta=1"
    loss = c.call(negative_elbo, x, x_hat, mu, logvar, likelihood="gaussian", sigma=0.5, inputs=inputs)
    c.tensor("loss", loss, shape=(), inputs=inputs)
    c.close("loss", loss, (2 * sq + kl).mean(), atol=1e-8, inputs=inputs,
            mistakes={DIAGNOSES["elbo_c_sigma2"]: (4 * sq + kl).mean(),
                      DIAGNOSES["elbo_c_sigma"]: (sq + kl).mean(),
                      DIAGNOSES["elbo_sq_mean"]: (2 * sq / 5 + kl).mean(),
                      DIAGNOSES["elbo_sigma_ignored"]: (0.5 * sq + kl).mean(),
                      DIAGNOSES["elbo_sum_batch"]: (2 * sq + kl).sum()},
            hint=DIAGNOSES["elbo_gaussian"])

    logits = logits.clone().requires_grad_(True)
    inputs = "bernoulli, logits with requires_grad=True"
    loss = c.call(negative_elbo, x, logits, mu, logvar, inputs=inputs)
    c.true(loss.requires_grad, "the loss must be differentiable: return a tensor, not a float", inputs=inputs,
           hint=DIAGNOSES["elbo_graph"])
    loss.backward()
    c.close("d loss / d logits", logits.grad, (torch.sigmoid(logits) - x).detach() / 3, atol=1e-8, inputs=inputs)
    try:
        negative_elbo(x, logits.detach(), mu, logvar, likelihood="poisson")
        raised = False
    except ValueError:
        raised = True
    except Exception:  # noqa: BLE001
        raised = False
    c.true(raised, "an unknown likelihood must raise ValueError", inputs="likelihood='poisson'",
           hint=DIAGNOSES["elbo_value_error"])
    c.done()


# ----------------------------------------------------------------------------- 5 training step

class _StepVAE(nn.Module):
    """A small VAE to check vae_step on (torch alone): Tanh layers, and a forward that samples
    z = mu + exp(logvar / 2) * eps with eps drawn as reparameterize draws it."""

    def __init__(self, D: int, k: int, h: int):
        super().__init__()
        self.k = k
        self.encoder = nn.Sequential(nn.Linear(D, h), nn.Tanh())
        self.mu_head = nn.Linear(h, k)
        self.logvar_head = nn.Linear(h, k)
        self.decoder = nn.Sequential(nn.Linear(k, h), nn.Tanh(), nn.Linear(h, D))

    def encode(self, x):
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, generator=None):
        mu, logvar = self.encode(x)
        return self.decode(_reparameterize(mu, logvar, generator)), mu, logvar


def _negative_elbo(x, x_hat_or_logits, mu, logvar, likelihood="bernoulli", beta=1.0, sigma=1.0):
    """A stand-in for the learner's negative_elbo while their vae_step is checked (torch alone)."""
    if likelihood == "bernoulli":
        rec = F.binary_cross_entropy_with_logits(x_hat_or_logits, x, reduction="none").flatten(1).sum(1)
    elif likelihood == "gaussian":
        rec = ((x - x_hat_or_logits) ** 2).flatten(1).sum(1) / (2.0 * sigma**2)
    else:
        raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
    kl = 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)
    return (rec + beta * kl).mean()


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


class RecordingSGD(torch.optim.SGD):
    """torch's SGD that also keeps, at every step(), a flat copy of the gradients it applies."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.applied = []

    def step(self, closure=None):
        self.applied.append(torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad.detach()).reshape(-1)
                                       for group in self.param_groups for p in group["params"]]))
        return super().step(closure)


def _applied_once(c: Checks, opt: RecordingSGD, grad: torch.Tensor, inputs: str, **tol) -> None:
    """The step called optimizer.step() once, on the gradient `grad` (flat) of the loss as it is."""
    c.true(len(opt.applied) == 1, "optimizer.step() was not called exactly once", inputs=inputs,
           got=f"{len(opt.applied)} call(s)", hint=DIAGNOSES["step_own_update"])
    c.close("the gradients optimizer.step() applied", opt.applied[0], grad, inputs=inputs,
            hint=DIAGNOSES["step_grad_changed"], **tol)


def _step_variants(model: nn.Module, x: torch.Tensor, beta: float, seed: int) -> dict:
    """Loss and gradients (flat) of one step of `model` on x, drawing eps from a generator
    seeded `seed`: as the contract says, and as the likely mistakes compute them."""
    out = {}
    for name, b, sample, detach in [("ok", beta, True, False), ("beta1", 1.0, True, False),
                                    ("mu", beta, False, False), ("detached", beta, True, True)]:
        mu, logvar = model.encode(x)
        z = _reparameterize(mu, logvar, _gen(seed)) if sample else mu
        m, lv = (mu.detach(), logvar.detach()) if detach else (mu, logvar)
        loss = _negative_elbo(x, model.decode(z), m, lv, beta=b)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        out[name] = (loss.item(), _flat(grads))
    return out


def check_vae_step(vae_step) -> None:
    """The learner's negative_elbo and reparameterize are replaced by stand-ins while their
    vae_step runs, so a mistake there costs the points of its own exercise only."""
    c = Checks("vae_step")
    refuse_stand_in(c, "vae_step", vae_step)
    dt, lr, beta = torch.float64, 0.1, 0.5
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _StepVAE(6, 2, 4).to(dt)
    x = (torch.rand(3, 6, generator=_gen(3)) < 0.5).to(dt)
    stale = [torch.randn(p.shape, generator=_gen(4), dtype=dt) for p in model.parameters()]
    for p, s in zip(model.parameters(), stale):
        p.grad = s.clone()
    before = _flat(model.parameters())
    v = _step_variants(model, x, beta, seed=0)
    p_ok = before - lr * v["ok"][1]
    # the loss after a correct step, with the generator's next draw (a loss computed after optimizer.step())
    after = copy.deepcopy(model)
    with torch.no_grad():
        for p, w in zip(after.parameters(), p_ok.split([q.numel() for q in model.parameters()])):
            p.copy_(w.view_as(p))
    g_next = _gen(0)
    torch.randn((3, 2), generator=g_next, dtype=dt)
    with torch.no_grad():
        loss_after = _negative_elbo(x, *after(x, generator=g_next), beta=beta).item()
    opt = RecordingSGD(model.parameters(), lr=lr)
    inputs = (f"a small VAE (D=6, k=2, Tanh) in float64 whose .grad hold an earlier step's gradients, binary x (3, 6), "
              f"SGD(lr={lr}), beta={beta}, generator seeded 0")
    rng = torch.random.get_rng_state()
    with substituted(vae_step, negative_elbo=_negative_elbo, reparameterize=_reparameterize):
        loss = c.call(vae_step, model, x.clone(), opt, beta=beta, generator=_gen(0), inputs=inputs)
    c.true(torch.equal(rng, torch.random.get_rng_state()),
           "the global random generator was used: the draw of z must come from the generator passed in",
           inputs=inputs, hint=DIAGNOSES["step_generator"])
    c.true(isinstance(loss, float), "vae_step must return the loss as a Python float", inputs=inputs,
           got=type(loss).__name__, hint=DIAGNOSES["step_float"])
    c.close("loss returned", loss, v["ok"][0], atol=1e-8, inputs=inputs,
            mistakes={DIAGNOSES["step_beta"]: v["beta1"][0], DIAGNOSES["step_mu"]: v["mu"][0],
                      DIAGNOSES["step_loss_after"]: loss_after},
            hint=DIAGNOSES["step_loss"])
    c.close("parameters after the step", _flat(model.parameters()), p_ok, atol=1e-8, inputs=inputs,
            mistakes={DIAGNOSES["step_no_step"]: before,
                      DIAGNOSES["step_zero_grad"]: before - lr * (v["ok"][1] + _flat(stale)),
                      DIAGNOSES["step_beta"]: before - lr * v["beta1"][1],
                      DIAGNOSES["step_mu"]: before - lr * v["mu"][1],
                      DIAGNOSES["step_detached_kl"]: before - lr * v["detached"][1]},
            hint=DIAGNOSES["step_update"])
    _applied_once(c, opt, v["ok"][1], inputs, atol=1e-8)
    # a second step in a row: the gradients of the first must not be added in
    twin = copy.deepcopy(model)
    v = _step_variants(twin, x, beta, seed=1)
    inputs += "; then a second step, generator seeded 1"
    with substituted(vae_step, negative_elbo=_negative_elbo, reparameterize=_reparameterize):
        c.call(vae_step, model, x.clone(), opt, beta=beta, generator=_gen(1), inputs=inputs)
    c.close("parameters after the second step", _flat(model.parameters()), _flat(twin.parameters()) - lr * v["ok"][1],
            atol=1e-8, inputs=inputs, hint=DIAGNOSES["step_zero_grad"])
    # a gradient norm in the tens (the mu head shifted by 30): clipping or rescaling would change it
    with torch.no_grad():
        model.mu_head.bias += 30.0
    v = _step_variants(model, x, beta, seed=2)
    opt = RecordingSGD(model.parameters(), lr=lr)
    inputs += "; then, with the mu head's bias shifted by 30 (large gradients), a third step, generator seeded 2"
    with substituted(vae_step, negative_elbo=_negative_elbo, reparameterize=_reparameterize):
        c.call(vae_step, model, x.clone(), opt, beta=beta, generator=_gen(2), inputs=inputs)
    _applied_once(c, opt, v["ok"][1], inputs, atol=1e-6, rtol=1e-8)
    c.done()


# ----------------------------------------------------------------------------- 6 sampling

class TinyLatentModel(nn.Module):
    """A fixed stand-in for a VAE with k = 2, D = 5, whose outputs are easy to compute:
    encode(x) = (2 * x[:, :2], x[:, 2:4] - 1); decode(z) = z @ W.T + b (logits)."""

    k = 2

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.W = nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [-2.0, 0.5], [0.3, 0.3]],
                                           dtype=dtype))
        self.b = nn.Parameter(torch.tensor([0.0, -0.5, 0.5, 0.2, -1.0], dtype=dtype))

    def encode(self, x):
        return 2 * x[..., :2], x[..., 2:4] - 1

    def decode(self, z):
        return z @ self.W.T + self.b


def check_sampling(sample_prior, interpolate) -> None:
    c = Checks("sample_prior / interpolate")
    refuse_stand_in(c, "sample_prior", sample_prior)
    refuse_stand_in(c, "interpolate", interpolate)
    model = TinyLatentModel()
    W, b = model.W.detach(), model.b.detach()
    inputs = "a fixed linear model with k=2, D=5, n=6, generator seeded 0"
    x = c.call(sample_prior, model, 6, _gen(0), inputs=inputs)
    c.tensor("sample_prior(...)", x, shape=(6, 5), inputs=inputs)
    c.true(not bool(((x == 0) | (x == 1)).all()), "every value is 0 or 1", inputs=inputs, got=x,
           hint=DIAGNOSES["sample_binary"])
    z = torch.randn(6, 2, generator=_gen(0))
    c.close("samples", x, torch.sigmoid(z @ W.T + b), atol=1e-6, inputs=inputs + "; z = torch.randn(6, 2, generator)",
            mistakes={DIAGNOSES["sample_logits"]: z @ W.T + b,
                      DIAGNOSES["sample_uniform"]:
                          torch.sigmoid(torch.rand(6, 2, generator=_gen(0)) @ W.T + b)},
            hint=DIAGNOSES["sample_generator"])
    x2 = c.call(sample_prior, model, 6, _gen(0), inputs=inputs + " (a second time)")
    c.close("samples drawn twice with the same seed", x2, x, atol=0, inputs=inputs,
            hint=DIAGNOSES["sample_given_generator"])

    x_a = torch.tensor([0.5, -0.5, 1.0, 1.2, 0.0])
    x_b = torch.tensor([-1.0, 1.0, 0.5, 0.8, 0.3])
    inputs = f"the same model, x_a = {x_a.tolist()}, x_b = {x_b.tolist()}, steps = 5"
    out = c.call(interpolate, model, x_a, x_b, 5, inputs=inputs)
    c.tensor("interpolate(...)", out, shape=(5, 5), inputs=inputs)
    mu_a, mu_b = 2 * x_a[:2], 2 * x_b[:2]
    t = torch.linspace(0, 1, 5)[:, None]
    zt = (1 - t) * mu_a + t * mu_b
    want = torch.sigmoid(zt @ W.T + b)
    c.close("row 0 (t = 0)", out[0], want[0], atol=1e-6, inputs=inputs,
            mistakes={DIAGNOSES["interp_pixels"]: x_a,
                      DIAGNOSES["sample_logits"]: zt[0] @ W.T + b,
                      DIAGNOSES["interp_backwards"]: want[-1]},
            hint=DIAGNOSES["interp_sample"])
    t_wrong = (torch.arange(5) / 5.0)[:, None]
    c.close("interpolate(...)", out, want, atol=1e-6, inputs=inputs,
            mistakes={DIAGNOSES["interp_pixels"]:
                          (1 - t) * x_a + t * x_b,
                      DIAGNOSES["sample_logits"]: zt @ W.T + b,
                      DIAGNOSES["interp_ends"]:
                          torch.sigmoid(((1 - t_wrong) * mu_a + t_wrong * mu_b) @ W.T + b),
                      DIAGNOSES["interp_backwards"]: want.flip(0)},
            hint=DIAGNOSES["interp_formula"])
    c.done()


# ----------------------------------------------------------------------------- 7 IWAE

class _ConstantDecoder(nn.Module):
    """q(z|x) = N(0, I) = p(z) and logits that ignore z: every importance weight is p(x)."""

    k = 2

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=torch.float64))

    def encode(self, x):
        return torch.zeros(len(x), 2, dtype=x.dtype), torch.zeros(len(x), 2, dtype=x.dtype)

    def decode(self, z):
        return self.logits.expand(len(z), 4) + 0 * z[:, :1]


class _OneDimModel(nn.Module):
    """A 1-D latent, 3 pixels: logits = z * w + b; q(z|x) = N(a . x - 0.3, 2), a rough,
    wide approximation of the posterior (the ELBO is far below log p(x))."""

    k = 1

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -1.5, 1.0], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64))
        self.a = torch.tensor([0.8, -0.6, 0.5], dtype=torch.float64)

    def encode(self, x):
        mu = (x @ self.a - 0.3)[:, None]
        return mu, torch.full_like(mu, math.log(2.0))

    def decode(self, z):
        return z * self.w + self.b


def _quadrature(model: _OneDimModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x) and the ELBO of the 1-D model by numerical integration over z in [-12, 12]."""
    with torch.no_grad():
        zs = torch.linspace(-12, 12, 24001, dtype=torch.float64)
        dz = zs[1] - zs[0]
        logits = zs[:, None, None] * model.w + model.b  # (G, 1, 3)
        log_px_z = -(F.softplus(logits) - x[None] * logits).sum(-1)  # (G, N)
        log_pz = -0.5 * (zs**2 + LOG2PI)[:, None]
        log_px = torch.logsumexp(log_px_z + log_pz, 0) + dz.log()
        mu, logvar = model.encode(x)
        log_q = -0.5 * ((zs[:, None] - mu[:, 0]) ** 2 / logvar[:, 0].exp() + logvar[:, 0] + LOG2PI)  # (G, N)
        elbo = (log_q.exp() * (log_px_z + log_pz - log_q)).sum(0) * dz
    return log_px, elbo


def check_iwae(iwae_log_likelihood) -> None:
    c = Checks("iwae_log_likelihood")
    refuse_stand_in(c, "iwae_log_likelihood", iwae_log_likelihood)
    model = _ConstantDecoder()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    k = 7
    inputs = "q(z|x) = p(z) = N(0, I) and logits [1, -0.5, 2, 0] that ignore z; x (3, 4), k = 7"
    got = c.call(iwae_log_likelihood, model, x, k, _gen(0), inputs=inputs)
    c.tensor("log p(x)", got, shape=(3,), dtype=torch.float64, inputs=inputs)
    logits = model.logits.detach()
    exact = -(F.softplus(logits) - x * logits).sum(1)
    c.close("log p(x)", got, exact, atol=1e-8, inputs=inputs + " (every weight equals p(x): the estimate is exact)",
            mistakes={DIAGNOSES["iwae_log_k"]: exact + math.log(k),
                      DIAGNOSES["iwae_log_k_added"]: exact + 2 * math.log(k),
                      DIAGNOSES["iwae_mean_pixels"]: exact / 4},
            hint=DIAGNOSES["iwae_log_w"])

    model = _OneDimModel()
    x = torch.tensor([[a, b_, c_] for a in (0.0, 1.0) for b_ in (0.0, 1.0) for c_ in (0.0, 1.0)],
                     dtype=torch.float64)
    log_px, elbo = _quadrature(model, x)
    inputs = ("a 1-D latent model with 3 pixels, all 8 binary x, k = 20000; "
              "log p(x) by numerical integration")
    got = c.call(iwae_log_likelihood, model, x, 20000, _gen(1), inputs=inputs)
    c.tensor("log p(x)", got, shape=(8,), dtype=torch.float64, inputs=inputs)
    hint = _near(got, {DIAGNOSES["iwae_mean_log_w"]: elbo,
                       DIAGNOSES["iwae_q_logvar"]: log_px - 0.5 * math.log(2.0)},
                 atol=0.05)
    c.close("log p(x)", got, log_px, atol=0.05, rtol=0, inputs=inputs, hint=hint or (
        "log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), each log-density summed over its dimensions "
        "with its -1/2 log(2 pi) terms"))
    c.true(bool((got <= 0).all()), "log p(x) of these binary x is at most -1.38, and with k = 20000 the "
           "estimates must be close to it, so below 0", inputs=inputs, got=got)
    c.done()


# ----------------------------------------------------------------------------- quiz

def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])
