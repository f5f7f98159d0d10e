"""Chapter 05 hidden checks: the learner's schedules, forward process and samplers against
diffusers (DDPMScheduler, DDIMScheduler, get_timestep_embedding, ResnetBlock2D), the rest
against the reference, all on inputs drawn from the grading seed; catalogued mistakes are
recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back. What the learner's code acts on (the loss's stand-in model that
records its inputs, the guidance's random network, the stand-ins of ResBlock and
timestep_embedding under the U-Net) is built in the kernel by harness snippets from torch
and diffusers alone (`twin`, `run`); the judge keeps its own copy to compute the expected
values with the reference and the catalogue's mutants."""
from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D

from autograder.hidden import grade_choice
from autograder.mutants import hidden_seed, known_mistakes
from autograder.remote import harness_scope, run, twin
from solutions import ch05_diffusion as ref
from workbook.ch05 import DIFFUSERS_RESBLOCK_NAMES
from workbook.checks import Checks

CH = "05_diffusion"
KINDS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
# diffusers keeps its schedules in float32: values agree to float32 rounding.
TOL = dict(atol=1e-6, rtol=1e-5)


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(hidden_seed(f"{CH}/{name}"))


def _int(g: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi, (1,), generator=g))


def _in_kernel(name: str, code: str, **vars):
    """A call that runs harness snippet `code` in the learner's kernel, named after the
    learner's code it calls (`c.call` then reports its errors as that code's)."""
    def call():
        return run(code, **vars)
    call.__name__ = name
    return call


def _here(code: str, **vars):
    """One more copy, in the judge, of what a harness snippet builds."""
    scope = harness_scope(**vars)
    exec(compile(code, "<judge harness>", "exec"), scope)
    return scope["result"]


NAMED_SHAPES = "result = {k: tuple(v.shape) for k, v in model.named_parameters()}"


def schedules(linear_betas, cosine_betas, noise_schedule) -> None:
    c = Checks("schedules (hidden)")
    g = _gen("schedules")
    for T in (_int(g, 20, 200), 1000):
        for kind, fn in (("linear", linear_betas), ("cosine", cosine_betas)):
            lib = DDPMScheduler(num_train_timesteps=T, beta_schedule=KINDS[kind])
            inputs = f"{kind} schedule, T = {T} (vs diffusers' DDPMScheduler(beta_schedule={KINDS[kind]!r}))"
            betas = c.call(fn, T, inputs=inputs)
            c.tensor("betas", betas, shape=(T,), dtype=torch.float64, inputs=inputs)
            target = {"linear": "linear_betas", "cosine": "cosine_betas"}[kind]
            c.close("betas", betas, lib.betas.double(), inputs=inputs, **TOL,
                    mistakes=known_mistakes(CH, target, lambda f: f(T)))
            out = c.call(noise_schedule, betas.clone(), inputs=inputs)
            c.true(isinstance(out, tuple) and len(out) == 2, "noise_schedule must return (alphas, alpha_bars)",
                   inputs=inputs)
            alphas, alpha_bars = out
            c.tensor("alphas", alphas, shape=(T,), dtype=torch.float64, inputs=inputs)
            c.close("alphas", alphas, lib.alphas.double(), inputs=inputs, **TOL)
            c.tensor("alpha_bars", alpha_bars, shape=(T,), dtype=torch.float64, inputs=inputs)
            c.close("alpha_bars (diffusers' alphas_cumprod)", alpha_bars, lib.alphas_cumprod.double(), inputs=inputs,
                    atol=1e-6, rtol=1e-4,
                    mistakes=known_mistakes(CH, "noise_schedule", lambda f: f(lib.betas.double())[1]))
    beta_1, beta_T = 1e-4 * (1 + torch.rand(1, generator=g).item()), 0.01 + 0.02 * torch.rand(1, generator=g).item()
    inputs = f"linear_betas(T=50, beta_1={beta_1:.6f}, beta_T={beta_T:.6f})"
    betas = c.call(linear_betas, 50, beta_1, beta_T, inputs=inputs)
    c.close("betas", betas, ref.linear_betas(50, beta_1, beta_T), atol=1e-12, inputs=inputs,
            hint="use the arguments beta_1 and beta_T, not the default values")
    s = 0.001 + 0.02 * torch.rand(1, generator=g).item()
    inputs = f"cosine_betas(T=64, s={s:.5f}, max_beta=0.5)"
    betas = c.call(cosine_betas, 64, s, 0.5, inputs=inputs)
    c.close("betas", betas, ref.cosine_betas(64, s, 0.5), atol=1e-12, inputs=inputs,
            hint="use the arguments s and max_beta, not the default values")
    c.done()


def q_sample(fn) -> None:
    c = Checks("q_sample (hidden)")
    g = _gen("q_sample")
    for kind in ("linear", "cosine"):
        lib = DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind])
        ab = lib.alphas_cumprod.double()
        B = _int(g, 3, 9)
        x0 = torch.randn(B, 1, 5, 5, generator=g)
        eps = torch.randn(B, 1, 5, 5, generator=g)
        t = torch.randint(0, 1000, (B,), generator=g)
        t[0] = 0
        inputs = f"x0, eps ({B}, 1, 5, 5) float32, random t with t[0] = 0, {kind} alpha_bars (T = 1000)"
        x_t = c.call(fn, x0.clone(), t.clone(), eps.clone(), ab.clone(), inputs=inputs)
        c.tensor("x_t", x_t, shape=(B, 1, 5, 5), dtype=torch.float32, inputs=inputs)
        c.close("x_t (vs diffusers' add_noise)", x_t, lib.add_noise(x0, eps, t), atol=1e-5, inputs=inputs,
                mistakes=known_mistakes(CH, "q_sample", lambda f: f(x0.clone(), t.clone(), eps.clone(), ab.clone())))
    x0 = torch.randn(4, 3, dtype=torch.float64, generator=g)
    eps = torch.randn(4, 3, dtype=torch.float64, generator=g)
    t = torch.randint(0, 10, (4,), generator=g)
    ab = torch.linspace(0.99, 0.1, 10, dtype=torch.float64)
    inputs = "x0, eps (4, 3) float64, T = 10"
    x_t = c.call(fn, x0, t, eps, ab, inputs=inputs)
    c.tensor("x_t", x_t, shape=(4, 3), dtype=torch.float64, inputs=inputs)
    c.close("x_t", x_t, ref.q_sample(x0, t, eps, ab), atol=1e-12, inputs=inputs)
    c.done()


# The loss's stand-in noise predictor, built in the kernel (and in the judge) from torch
# alone: eps_hat = a x_t + b tanh(t / 7), recording what it is called with.
RECORDER = """
class Recorder(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = b
        self.calls = []
        self.kept = []

    def forward(self, x_t, t, *rest):
        self.calls.append((x_t.detach().clone(), t.detach().clone(), [r.detach().clone() for r in rest]))
        return self.a * x_t + self.b * torch.tanh(t.to(x_t.dtype) / 7).view(-1, *([1] * (x_t.dim() - 1)))

result = Recorder(a, b)
"""
# The learner's loss on the stand-in, kept in the kernel for the backward pass.
LOSS = """
model.calls.clear()
loss = fn(model, x0, alpha_bars, y, generator)
model.kept[:] = [loss]
result = loss
"""
BACKWARD = """
model.kept[0].backward()
result = model.a.grad
"""


def diffusion_loss(fn) -> None:
    c = Checks("diffusion_loss (hidden)")
    g = _gen("diffusion_loss")
    T = _int(g, 6, 16)
    ab = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 0.9 + 0.05, descending=True).values
    B = 512
    x0 = torch.randn(B, 2, 3, generator=g, dtype=torch.float64).sign()
    a, b = 0.2 + 0.6 * torch.rand(1, generator=g).item(), torch.rand(1, generator=g).item()
    inputs = f"x0 (512, 2, 3) of +-1 (float64), T = {T} random alpha_bars, a stand-in model " \
             f"eps_hat = {a:.3f} x_t + {b:.3f} tanh(t / 7)"
    _, model = twin(RECORDER, a=a, b=b)
    gen = torch.Generator().manual_seed(hidden_seed(f"{CH}/diffusion_loss/run"))
    loss = c.call(_in_kernel("diffusion_loss", LOSS, fn=fn, model=model, x0=x0, alpha_bars=ab, y=None,
                             generator=gen), inputs=inputs)
    c.tensor("loss", loss, shape=(), dtype=torch.float64, inputs=inputs)
    calls = model.calls
    c.true(len(calls) == 1, "the model should be called exactly once, on the whole batch", inputs=inputs,
           got=f"{len(calls)} calls")
    x_t, t, _ = calls[0]
    c.tensor("t passed to the model", t, shape=(B,), dtype=torch.int64, inputs=inputs)
    c.true(bool(((t >= 0) & (t < T)).all()), "t must lie in {0, ..., T-1}", inputs=inputs,
           got=f"t from {int(t.min())} to {int(t.max())}")
    counts = torch.bincount(t, minlength=T).double()
    chi2 = (((counts - B / T) ** 2) / (B / T)).sum().item()
    c.true(bool((counts > 0).all()) and chi2 < T + 6 * (2 * T) ** 0.5, "t is not drawn uniformly from {0, ..., T-1}",
           inputs=inputs, got=f"counts {counts.long().tolist()}", hint="torch.randint(0, T, (B,))")
    c.tensor("x_t passed to the model", x_t, shape=(B, 2, 3), inputs=inputs)
    al = ab[t].view(-1, 1, 1)
    eps = (x_t - al.sqrt() * x0) / (1 - al).sqrt()
    m, s = eps.mean().item(), eps.std().item()
    c.true(abs(m) < 0.08 and abs(s - 1) < 0.08, "the noise implied by x_t is not standard normal", inputs=inputs,
           got=f"mean {m:.3f}, std {s:.3f}",
           hint="x_t = sqrt(alpha_bars[t]) x0 + sqrt(1 - alpha_bars[t]) eps with eps = torch.randn_like(x0)")
    eps_hat = a * x_t + b * torch.tanh(t.double() / 7).view(-1, 1, 1)
    # A mutant's value on the same draws: the recorded t and x_t, with its own formula.
    def mutant_value(f):
        rec = _here(RECORDER, a=a, b=b)
        replay = torch.Generator().manual_seed(hidden_seed(f"{CH}/diffusion_loss/run"))
        return f(rec, x0, ab, None, replay)
    c.close("loss", loss, ((eps_hat - eps) ** 2).mean(), atol=1e-9, inputs=inputs,
            mistakes=known_mistakes(CH, "diffusion_loss", mutant_value))
    grad = c.call(_in_kernel("backward", BACKWARD, model=model), inputs=inputs)
    c.true(isinstance(grad, torch.Tensor) and bool(grad.abs() > 0), "no gradient reached the model's parameters",
           inputs=inputs)
    y = torch.randint(0, 10, (B,), generator=g)
    c.call(_in_kernel("diffusion_loss", LOSS, fn=fn, model=model, x0=x0, alpha_bars=ab, y=y, generator=None),
           inputs=inputs + ", random labels y")
    calls = model.calls
    rest = calls[-1][2] if calls else []
    c.true(len(rest) == 1 and torch.equal(rest[0], y), "the labels y must be passed to the model: model(x_t, t, y)",
           inputs="random labels y")
    c.done()


def ddpm_step(fn) -> None:
    c = Checks("ddpm_step (hidden)")
    g = _gen("ddpm_step")
    for kind in ("linear", "cosine"):
        lib = DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind], clip_sample=False)
        ab = lib.alphas_cumprod.double()
        for t in sorted({0, 1, _int(g, 2, 998), 999 if kind == "linear" else 990}, reverse=True):
            x = torch.randn(3, 1, 4, 4, generator=g)
            e = torch.randn(3, 1, 4, 4, generator=g)
            seed = _int(g, 0, 2**31)
            z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
            want = lib.step(e, t, x, generator=torch.Generator().manual_seed(seed))
            inputs = f"{kind} schedule (T = 1000), t = {t}, random x_t, eps_hat, noise (3, 1, 4, 4)"
            out = c.call(fn, e.clone(), t, x.clone(), ab.clone(), z.clone(), inputs=inputs)
            c.true(isinstance(out, tuple) and len(out) == 2, "ddpm_step must return (x_prev, x0_hat)", inputs=inputs)
            x_prev, x0_hat = out
            c.tensor("x_prev", x_prev, shape=(3, 1, 4, 4), dtype=torch.float32, inputs=inputs)
            c.tensor("x0_hat", x0_hat, shape=(3, 1, 4, 4), dtype=torch.float32, inputs=inputs)
            c.close("x0_hat (vs diffusers' pred_original_sample)", x0_hat, want.pred_original_sample, atol=1e-4,
                    rtol=1e-4, inputs=inputs)
            c.close("x_prev (vs diffusers' DDPMScheduler.step)", x_prev, want.prev_sample, atol=1e-4, rtol=1e-4,
                    inputs=inputs, mistakes=known_mistakes(
                        CH, "ddpm_step", lambda f: f(e.clone(), t, x.clone(), ab.clone(), z.clone())[0]))
    c.done()


def ddim_step(fn) -> None:
    c = Checks("ddim_step (hidden)")
    g = _gen("ddim_step")
    for kind, eta, n in (("linear", 0.0, 10), ("cosine", 0.0, 20), ("linear", 0.5, 50), ("cosine", 1.0, 10)):
        lib = DDIMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind], clip_sample=False,
                            set_alpha_to_one=True, timestep_spacing="trailing")
        lib.set_timesteps(n)
        ab = lib.alphas_cumprod.double()
        steps = lib.timesteps.tolist()
        picks = sorted({0, _int(g, 1, n - 1), n - 1})
        for i in picks:
            t = steps[i]
            t_prev = t - 1000 // n  # diffusers' previous timestep (< 0 at the last step)
            x = torch.randn(2, 1, 4, 4, generator=g)
            e = torch.randn(2, 1, 4, 4, generator=g)
            seed = _int(g, 0, 2**31)
            z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
            want = lib.step(e, t, x, eta=eta, generator=torch.Generator().manual_seed(seed))
            inputs = f"{kind} schedule, {n} DDIM steps, t = {t} -> t_prev = {t_prev}, eta = {eta}, random (2, 1, 4, 4)"
            out = c.call(fn, e.clone(), t, t_prev, x.clone(), ab.clone(), eta, z.clone() if eta > 0 else None,
                         inputs=inputs)
            c.true(isinstance(out, tuple) and len(out) == 2, "ddim_step must return (x_prev, x0_hat)", inputs=inputs)
            x_prev, x0_hat = out
            c.tensor("x_prev", x_prev, shape=(2, 1, 4, 4), dtype=torch.float32, inputs=inputs)
            c.close("x0_hat (vs diffusers' pred_original_sample)", x0_hat, want.pred_original_sample, atol=1e-4,
                    rtol=1e-4, inputs=inputs)
            c.close("x_prev (vs diffusers' DDIMScheduler.step)", x_prev, want.prev_sample, atol=1e-4, rtol=1e-4,
                    inputs=inputs, mistakes=known_mistakes(
                        CH, "ddim_step", lambda f: f(e.clone(), t, t_prev, x.clone(), ab.clone(), eta,
                                                     z.clone() if eta > 0 else None)[0]))
    c.done()


# Copy weights, by name, into a model of the kernel.
LOAD_NAMED = """
with torch.no_grad():
    params = dict(model.named_parameters())
    for k, w in weights.items():
        params[k].copy_(w)
"""


def time_embedding(timestep_embedding, ResBlock) -> None:
    c = Checks("time_embedding (hidden)")
    g = _gen("time_embedding")
    for dim in (2 * _int(g, 2, 9), 2 * _int(g, 16, 64)):
        t = torch.randint(0, 1000, (5,), generator=g)
        inputs = f"t = {t.tolist()}, dim = {dim}"
        emb = c.call(timestep_embedding, t.clone(), dim, inputs=inputs)
        c.tensor("emb", emb, shape=(5, dim), dtype=torch.float32, inputs=inputs)
        c.close("emb (vs diffusers' get_timestep_embedding, flip_sin_to_cos=True, downscale_freq_shift=0)", emb,
                get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0), atol=2e-5,
                inputs=inputs, mistakes=known_mistakes(CH, "timestep_embedding", lambda f: f(t.clone(), dim)))
    c.exercise = "ResBlock (hidden)"
    names = DIFFUSERS_RESBLOCK_NAMES
    for c_in, c_out in ((8 * _int(g, 1, 4), 8 * _int(g, 1, 4)), (16, 16)):
        emb_dim = _int(g, 4, 40)
        inputs = f"ResBlock({c_in}, {c_out}, {emb_dim}) with random weights, x (3, {c_in}, 5, 7), emb (3, {emb_dim})"
        block = c.call(ResBlock, c_in, c_out, emb_dim, inputs=inputs)
        with torch.random.fork_rng():  # its weights are drawn below; the RNG is left alone
            theirs = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=emb_dim, groups=8, eps=1e-5)
        mine = c.call(_in_kernel("named_parameters", NAMED_SHAPES, model=block), inputs=inputs)
        weights = {}
        with torch.no_grad():
            for name, p in theirs.named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() > 1 else 0.5))
                module, kind = name.split(".")
                key = f"{names[module]}.{kind}"
                c.true(key in mine and mine[key] == tuple(p.shape), f"parameter {key} missing or of the wrong shape",
                       inputs=inputs)
                weights[key] = p.detach().clone()
        c.true(len(mine) == len(dict(theirs.named_parameters())), "the block has parameters the contract does not state",
               inputs=inputs, got=sorted(set(mine) - {f"{names[n.split('.')[0]]}.{n.split('.')[1]}"
                                                        for n, _ in theirs.named_parameters()}))
        c.call(_in_kernel("load_state_dict", LOAD_NAMED, model=block, weights=weights), inputs=inputs)
        x = torch.randn(3, c_in, 5, 7, generator=g)
        emb = torch.randn(3, emb_dim, generator=g)
        out = c.call(block, x, emb, inputs=inputs)
        with torch.no_grad():
            want = theirs(x, emb)
        c.tensor("block(x, emb)", out, shape=tuple(want.shape), inputs=inputs)
        c.close("block(x, emb) (vs diffusers' ResnetBlock2D)", out, want, atol=1e-4, inputs=inputs,
                mistakes=known_mistakes(CH, "ResBlock", lambda cls: _block_with(cls, theirs, names, c_in, c_out,
                                                                                emb_dim, x, emb)))
    c.done()


def _block_with(cls, theirs, names, c_in, c_out, emb_dim, x, emb):
    block = cls(c_in, c_out, emb_dim)
    mine = dict(block.named_parameters())
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            module, kind = name.split(".")
            mine[f"{names[module]}.{kind}"].copy_(p)
        return block(x, emb)


# Stand-ins for the learner's ResBlock and timestep_embedding while the U-Net is checked
# (they have their own check), built in the kernel from diffusers: its ResnetBlock2D with
# its layers registered under the contract's names (so the reference's weights load by
# name) and its get_timestep_embedding. `result` is the context that undoes the swap.
UNET_STAND_INS = """
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D
from workbook.checks import substituted


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, emb_dim, groups=8):
        super().__init__()
        block = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=emb_dim, groups=groups, eps=1e-5)
        self.norm1, self.conv1, self.time_proj = block.norm1, block.conv1, block.time_emb_proj
        self.norm2, self.conv2 = block.norm2, block.conv2
        self.skip = block.conv_shortcut if block.conv_shortcut is not None else nn.Identity()
        object.__setattr__(self, "block", block)  # runs the forward, on the layers above

    def forward(self, x, emb):
        return self.block(x, emb)


def timestep_embedding(t, dim, max_period=10000):
    return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=max_period)


result = substituted(UNet, ResBlock=ResBlock, timestep_embedding=timestep_embedding)
result.__enter__()
"""
UNDO = "swap.__exit__(None, None, None)"
LOAD_STATE = "model.load_state_dict(state)"


def unet(UNet) -> None:
    """With diffusers' ResnetBlock2D and embedding in place of the learner's ResBlock and
    timestep_embedding (graded apart), swapped in the kernel."""
    swap = run(UNET_STAND_INS, UNet=UNet)
    try:
        _unet(UNet)
    finally:
        run(UNDO, swap=swap)


def _unet(UNet) -> None:
    c = Checks("UNet (hidden)")
    g = _gen("unet")
    seed = int(torch.randint(0, 2**31, (1,), generator=g))
    for i, (kw, res) in enumerate(((dict(in_channels=1, ch=8, mults=(1, 2, 2), num_classes=5, groups=4), 12),
                                   (dict(in_channels=2, ch=16, mults=(1, 1), num_classes=None, groups=8), 6))):
        with torch.random.fork_rng():
            torch.manual_seed(seed + i)
            reference = ref.UNet(**kw)
        inputs = f"UNet({', '.join(f'{k}={v}' for k, v in kw.items())}), x (3, {kw['in_channels']}, {res}, {res}), " \
                 "the reference's weights"
        model = c.call(UNet, **kw, inputs=inputs)
        rp = {k: tuple(v.shape) for k, v in reference.named_parameters()}
        lp = c.call(_in_kernel("named_parameters", NAMED_SHAPES, model=model), inputs=inputs)
        if rp != lp:
            c.fail("the parameters (names or shapes) differ from the stated architecture", inputs=inputs,
                   expected=f"{len(rp)} tensors, {sum(v.numel() for v in reference.parameters())} parameters",
                   got=f"{len(lp)} tensors, {sum(math.prod(v) for v in lp.values())} parameters; missing "
                       f"{sorted(set(rp) - set(lp))[:3]}, unexpected {sorted(set(lp) - set(rp))[:3]}, wrong shapes "
                       f"{[k for k in set(rp) & set(lp) if rp[k] != lp[k]][:3]}",
                   hint="keep the attribute names and the order of the levels of the docstring")
        c.call(_in_kernel("load_state_dict", LOAD_STATE, model=model, state=dict(reference.state_dict())),
               inputs=inputs)
        x = torch.randn(3, kw["in_channels"], res, res, generator=g)
        t = torch.randint(0, 1000, (3,), generator=g)
        y = torch.randint(0, 5, (3,), generator=g) if kw["num_classes"] else None
        out = c.call(model, x, t, y, inputs=inputs)
        with torch.no_grad():
            want = reference(x, t, y)
        c.tensor("output", out, shape=tuple(want.shape), inputs=inputs)
        c.close("output (vs the reference with the same weights)", out, want, atol=1e-4, inputs=inputs,
                hint="same parameters but a different computation (output vs the reference with the same weights): "
                     "the order of skips, where the embedding is added, nearest-neighbour upsampling before the conv")
        if kw["num_classes"]:
            inputs_null = inputs + ", y = None (the 'no label' id num_classes)"
            out = c.call(model, x, t, None, inputs=inputs_null)
            with torch.no_grad():
                want = reference(x, t, None)
                as_zero = reference(x, t, torch.zeros_like(t))
                as_other = {f"y = None treated as label {k} instead of the 'no label' id num_classes = "
                            f"{kw['num_classes']}": reference(x, t, torch.full_like(t, k))
                            for k in range(kw["num_classes"]) if k != 0}
            c.tensor("output with y = None", out, shape=tuple(want.shape), inputs=inputs_null)
            c.close("output with y = None (vs the reference with the same weights and y = None)", out, want,
                    atol=1e-4, inputs=inputs_null,
                    hint="y = None means the 'no label' id: y = torch.full_like(t, self.num_classes), the last row "
                         "of class_embedding",
                    mistakes={"y = None treated as digit 0: it means the 'no label' id, "
                              "y = torch.full_like(t, self.num_classes)": as_zero, **as_other})
    c.done()


# A random network of (x, t, y) whose outputs depend on all three, per example: built in
# the kernel (for the learner's guided_eps) and in the judge (for the reference's) from
# the same random table.
NET = """
class Net(nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = table
        self.calls = 0

    def forward(self, x, t, y):
        self.calls += 1
        return torch.tanh(x * self.table[y][:, :, None, None] + t.view(-1, 1, 1, 1) / 500)

result = Net(table)
"""


# The learner's drop_labels, called in the kernel, bringing back the labels it was given
# as they are after the call (an in-place change of y would not travel back otherwise).
DROP = """
out = fn(y, p_uncond, null_label, generator)
result = (out, y)
"""


def guidance(drop_labels, guided_eps) -> None:
    c = Checks("guidance (hidden)")
    g = _gen("guidance")
    p = 0.05 + 0.5 * torch.rand(1, generator=g).item()
    null = _int(g, 10, 100)
    y = torch.randint(0, 10, (20000,), generator=g)
    inputs = f"20,000 random labels, p_uncond = {p:.3f}, null_label = {null}"
    res = c.call(_in_kernel("drop_labels", DROP, fn=drop_labels, y=y.clone(), p_uncond=p, null_label=null,
                            generator=torch.Generator().manual_seed(_int(g, 0, 2**31))), inputs=inputs)
    out, y_after = res
    c.tensor("labels", out, shape=(20000,), dtype=torch.int64, inputs=inputs)
    changed = int((y_after != y).sum()) if isinstance(y_after, torch.Tensor) and y_after.shape == y.shape else -1
    c.true(changed == 0, "drop_labels must not modify its input y in place", inputs=inputs + ", y after the call",
           expected="y unchanged", got=f"{changed} of 20000 labels of y changed" if changed >= 0 else "y replaced",
           hint="labels overwritten in place (y[drop] = null_label): return a new tensor, "
                "torch.where(drop, torch.full_like(y, null_label), y)")
    frac = (out == null).double().mean().item()
    c.true(abs(frac - p) < 0.02, "the fraction of dropped labels should be p_uncond", inputs=inputs,
           expected=f"{p:.3f}", got=f"{frac:.3f}")
    keep = out != null
    c.true(torch.equal(out[keep], y[keep]), "labels that are not dropped must stay unchanged", inputs=inputs)
    dropped_per_class = torch.bincount(y[~keep], minlength=10).double() / torch.bincount(y, minlength=10)
    c.true(bool((dropped_per_class - p).abs().max() < 0.06), "every class must be dropped at the same rate",
           inputs=inputs, got=f"{dropped_per_class.tolist()}")
    net, net_there = twin(NET, table=torch.randn(11, 4, generator=g))
    for scale in (1.0 + 6 * torch.rand(1, generator=g).item(), 0.0, 1.0):
        x = torch.randn(5, 4, 3, 3, generator=g)
        t = torch.randint(0, 1000, (5,), generator=g)
        yy = torch.randint(0, 10, (5,), generator=g)
        inputs = f"a random network, x (5, 4, 3, 3), random t and y, scale = {scale:.3f}, null_label = 10"
        out = c.call(guided_eps, net_there, x.clone(), t.clone(), yy.clone(), scale, 10, inputs=inputs)
        c.tensor("eps", out, shape=(5, 4, 3, 3), dtype=torch.float32, inputs=inputs)
        c.close("eps", out, ref.guided_eps(net, x, t, yy, scale, 10), atol=1e-5, inputs=inputs,
                mistakes=known_mistakes(CH, "guided_eps", lambda f: f(net, x.clone(), t.clone(), yy.clone(), scale,
                                                                      10)))
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name))
