"""Stand-ins (`workbook.chNN.standins`, docs/AUTHORING.md "Stand-ins"): every exercise that
later cells of its chapter call (directly, or through another exercise) has one; each keeps
its exercise's signature and contract (compared here, and only here, with the reference in
the chapter's solutions module); none uses the reference; every visible check refuses a
stand-in at once with the stand-in message; and the student notebook, with every stand-in
switched on by its documented line, runs through in the smoke profile."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import math
import re
import shutil
import time

import nbformat
import pytest
import torch

from autograder import authoring
from autograder import chapters as chapters_pkg
from autograder.build import tool_env
from conftest import REPO
from workbook.checks import CheckFailed
from workbook.paths import artifacts_dir
from workbook.standin import GO_ON, MARK, stand_in_name

CHAPTERS = [c for c in authoring.chapter_names()
            if (REPO / "course" / "workbook" / f"ch{c[:2]}" / "standins.py").exists()]
MESSAGE = "this is the stand-in ({where}), not your code: it lets the chapter run but earns no points; " \
          "remove the line `{name} = {where}` when your own version is ready. " + GO_ON.replace("{", "{{")
WRAPPED = "your {name} calls the stand-in ({where}): it lets the chapter run but earns no points; " \
          "write {name} without it when your own version is ready. " + GO_ON.replace("{", "{{")


# ----------------------------------------------------------------------------- helpers

def _package(chapter):
    return importlib.import_module(f"workbook.ch{chapter[:2]}")


def stand_ins(chapter) -> dict:
    """name -> stand-in, every marked function or class defined in workbook.chNN.standins."""
    module = importlib.import_module(f"workbook.ch{chapter[:2]}.standins")
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and hasattr(obj, "__dict__") and vars(obj).get(MARK) is True}


_REFERENCES = {}


def reference(chapter):
    """The chapter's reference solutions module (tests only: the stand-ins never import it)."""
    if chapter not in _REFERENCES:
        spec = importlib.util.spec_from_file_location(f"_reference_{chapter}", authoring.solutions_path(chapter))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _REFERENCES[chapter] = module
    return _REFERENCES[chapter]


def exercises(chapter) -> dict:
    """name -> syntax node of every exercise (top-level def or class) of the solutions module."""
    src = authoring.SolutionSource(authoring.solutions_path(chapter))
    return {n: node for n, node in src.nodes.items() if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def _names(code: str) -> set:
    return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}


def needed(chapter) -> set:
    """The exercises that plain code cells after their solution cell call, and those that such
    an exercise calls in turn (a learner's version may call them the same way)."""
    cells = authoring.parse_cells(chapters_pkg.path(chapter, "narrative").read_text())
    ex = exercises(chapter)
    defined = {n: i for i, c in enumerate(cells) if c.kind == "solution"
               for line in c.lines for n in authoring.solution_names(line)}
    want = {n for n in ex for i, c in enumerate(cells)
            if c.kind == "code" and i > defined[n] and n in _names("\n".join(c.lines))}
    while True:
        more = {m for n in want for m in _names(ast.unparse(ex[n])) if m in ex} - want
        if not more:
            return want
        want |= more


def _check_calls(chapter):
    """(grade_id, check function name, argument names, the names the test cell grades: those its
    solution cell defines) of every visible check call in the test cells."""
    cells = authoring.parse_cells(chapters_pkg.path(chapter, "narrative").read_text())
    graded = set()
    for c in cells:
        if c.kind == "solution":
            graded = {n for line in c.lines for n in authoring.solution_names(line)}
        if c.kind != "tests":
            continue
        for stmt in ast.parse("\n".join(c.lines)).body:
            call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
            if call is not None and isinstance(call.func, ast.Attribute):
                yield (c.opts["id"], call.func.attr, [a.id if isinstance(a, ast.Name) else None for a in call.args],
                       graded)


def _message(chapter, name):
    where = f"ch{chapter[:2]}.standins.{name}"
    return MESSAGE.format(where=where, name=name)


def _wrapped(chapter, name):
    return WRAPPED.format(where=f"ch{chapter[:2]}.standins.{name}", name=name)


def _wrapper(chapter, name):
    """A learner's own definition that only calls the stand-in: a function, or a module holding one."""
    ch = f"ch{chapter[:2]}"
    scope = {ch: _package(chapter), "nn": torch.nn}
    if isinstance(stand_ins(chapter)[name], type):
        exec(f"class {name}(nn.Module):\n"
             f"    def __init__(self, *args, **kwargs):\n"
             f"        super().__init__()\n"
             f"        self.inner = {ch}.standins.{name}(*args, **kwargs)\n\n"
             f"    def forward(self, *args, **kwargs):\n"
             f"        return self.inner(*args, **kwargs)\n", scope)
    else:
        exec(f"def {name}(*args, **kwargs):\n    return {ch}.standins.{name}(*args, **kwargs)\n", scope)
    return scope[name]


# ----------------------------------------------------------------------------- coverage, marks, sources

def test_a_chapter_without_stand_ins_is_a_choice_not_an_accident():
    assert {"05_diffusion", "06_latent_diffusion", "07_flow_matching"} <= set(CHAPTERS)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_later_cells_need_has_a_stand_in(chapter):
    have = set(stand_ins(chapter))
    assert not needed(chapter) - have, f"no stand-in for {sorted(needed(chapter) - have)}"
    assert have <= set(exercises(chapter)), f"stand-ins for no exercise: {sorted(have - set(exercises(chapter)))}"
    assert getattr(_package(chapter), "standins").__name__.endswith(".standins")  # chNN.standins reaches them


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stand_ins_are_marked_named_and_keep_the_signatures(chapter):
    ref = reference(chapter)
    for name, obj in stand_ins(chapter).items():
        where = f"ch{chapter[:2]}.standins.{name}"
        assert getattr(obj, MARK) is True and stand_in_name(obj) == where
        mine, theirs = getattr(ref, name), obj
        if isinstance(mine, type):
            assert isinstance(theirs, type), f"{name} should be a class"
            assert stand_in_name(type("Sub", (theirs,), {})) == where  # a subclass counts
            methods = [m for m, f in vars(mine).items() if inspect.isfunction(f) and not m.startswith("_")]
            for m in ["__init__", *methods]:
                assert inspect.signature(getattr(theirs, m)) == inspect.signature(getattr(mine, m)), f"{name}.{m}"
        else:
            assert inspect.signature(theirs) == inspect.signature(mine), name
        assert (obj.__doc__ or "").strip(), f"{name}: say what it is built on"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stand_ins_never_use_the_reference(chapter):
    text = (REPO / "course" / "workbook" / f"ch{chapter[:2]}" / "standins.py").read_text()
    assert "autograder" not in text and "solutions" not in text
    src = authoring.SolutionSource(authoring.solutions_path(chapter))
    bodies = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", "\n".join(src.wrapped(n) for n in src.nodes),
                        re.S)
    lines = {ln.strip() for b in bodies for ln in b.splitlines()}
    lines = {ln for ln in lines if len(ln) > 12 and not ln.startswith(("#", '"""', "super().__init__("))}
    copied = [ln for ln in text.splitlines() if ln.strip() in lines]
    assert not copied, f"lines of the reference in the stand-ins: {copied[:3]}"


# ----------------------------------------------------------------------------- the checks refuse them

@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_visible_check_refuses_every_stand_in_at_once(chapter):
    package, have, tried = _package(chapter), stand_ins(chapter), 0
    for grade_id, check, args, graded in _check_calls(chapter):
        for k, name in enumerate(args):
            if name not in have or name not in graded:
                continue
            objects = [have[n] if (n == name) else object() for n in args]  # anything else touched would fail otherwise
            variants = [(have[name], _message(chapter, name)), (_wrapper(chapter, name), _wrapped(chapter, name))]
            if isinstance(have[name], type):
                variants.append((type(name, (have[name],), {}), _message(chapter, name)))  # a subclass
            for variant, message in variants:
                objects[k] = variant
                with pytest.raises(CheckFailed) as err:
                    getattr(package, check)(*objects)
                first_line = str(err.value).splitlines()[0]
                assert re.fullmatch(r"\[[^]]+\] " + re.escape(message), first_line), (grade_id, first_line)
            tried += 1
    assert tried >= len(have), "a stand-in that no check is called with"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_stand_in_for_an_earlier_exercise_does_not_cost_a_later_one(chapter):
    """A check that also takes an earlier exercise (chapter 03's check_vae takes reparameterize)
    passes with the reference for its own exercise and the stand-in for the earlier one."""
    package, have, ref = _package(chapter), stand_ins(chapter), reference(chapter)
    for grade_id, check, args, graded in _check_calls(chapter):
        if any(n in have and n not in graded for n in args):
            getattr(package, check)(*[have[n] if n in have and n not in graded else getattr(ref, n) for n in args])


def test_a_stand_in_instance_and_a_wrapped_stand_in_count_too():
    import functools

    from workbook.ch05 import standins
    from workbook.checks import Checks
    from workbook.standin import refuse_stand_in
    assert stand_in_name(standins.ResBlock(8, 8, 16, 4)) == "ch05.standins.ResBlock"
    assert stand_in_name(functools.partial(standins.q_sample)) == "ch05.standins.q_sample"
    assert stand_in_name(torch.no_grad()(standins.q_sample)) == "ch05.standins.q_sample"
    for own in (lambda x: x, torch.nn.Linear(2, 2), 3, None, "q_sample", reference("05_diffusion").q_sample,
                reference("05_diffusion").UNet, lambda x: standins.ddpm_step(x)):  # another stand-in may be called
        assert stand_in_name(own) is None
        refuse_stand_in(Checks("q_sample"), "q_sample", own)  # passes: not a stand-in
    lib = standins.q_sample
    for wrapped in (lambda *a: lib(*a), functools.partial(lambda x, f=lib: f(x))):
        with pytest.raises(CheckFailed, match="your q_sample calls the stand-in"):
            refuse_stand_in(Checks("q_sample"), "q_sample", wrapped)


# ----------------------------------------------------------------------------- contracts (against the reference)

def _close(a, b, atol, rtol=1e-6):
    a, b = (torch.as_tensor(v).detach().double() for v in (a, b))
    assert a.shape == b.shape, (a.shape, b.shape)
    assert ((a - b).abs() <= atol + rtol * b.abs()).all(), (a - b).abs().max().item()


def test_chapter_01_stand_ins_meet_their_contracts():
    from workbook.ch01 import standins as S
    R = reference("01_autoencoders")
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        X = torch.randn(40, 6, generator=g, dtype=dtype) @ torch.randn(6, 6, generator=g, dtype=dtype)
        fitted = S.pca_fit(X, 3)
        assert all(t.dtype == dtype for t in fitted)
        for mine, theirs in zip(fitted, R.pca_fit(X, 3)):
            _close(mine, theirs, 1e-4)
        mean, V, _ = fitted
        _close(S.pca_encode(X, mean, V), R.pca_encode(X, mean, V), 1e-5)
        Z = R.pca_encode(X, mean, V)
        _close(S.pca_decode(Z, mean, V), R.pca_decode(Z, mean, V), 1e-5)
        A, B = torch.randn(8, 3, generator=g, dtype=dtype), torch.randn(8, 2, generator=g, dtype=dtype)
        for a, b in ((A, B), (A, A[:, :2] * 2)):
            angles = S.principal_angles(a, b)
            assert angles.dtype == dtype
            _close(angles, R.principal_angles(a, b), 1e-5)
    for bad in ((torch.randn(5), 1), (torch.randn(5, 3), 0), (torch.randn(5, 3), True), (torch.randn(5, 3), 4)):
        with pytest.raises(ValueError):
            S.pca_fit(*bad)
    with pytest.raises(ValueError):
        S.principal_angles(torch.randn(4, 2), torch.randn(5, 2))
    for mine, ref, x in ((S.MLPAutoencoder(12, 3, (8,)), R.MLPAutoencoder(12, 3, (8,)), torch.rand(4, 12)),
                         (S.MLPAutoencoder(12, 3, ()), R.MLPAutoencoder(12, 3, ()), torch.rand(4, 12)),
                         (S.ConvAutoencoder(5, 4), R.ConvAutoencoder(5, 4), torch.rand(2, 1, 28, 28))):
        ref.load_state_dict(mine.state_dict())  # the documented layers, under the documented names
        _close(mine(x), ref(x), 1e-6)
        _close(mine.decode(mine.encode(x)), ref(x), 1e-6)
    twins = [R.MLPAutoencoder(12, 3, (8,)) for _ in range(2)]
    twins[1].load_state_dict(twins[0].state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in twins]
    x = torch.rand(4, 12, generator=g)
    losses = [f(m, x, o) for f, m, o in zip((S.train_step, R.train_step), twins, opts)]
    assert isinstance(losses[0], float) and math.isclose(*losses, rel_tol=1e-6)
    for a, b in zip(twins[0].parameters(), twins[1].parameters()):
        _close(a, b, 1e-6)
    Z, y = torch.randn(50, 3, generator=g), torch.randint(0, 3, (50,), generator=g)
    for ks in ([1, 5, 49], (7, 2)):
        mine = S.retrieval_precision(Z, y, ks)
        assert mine.dtype == torch.float64
        _close(mine, R.retrieval_precision(Z, y, ks), 1e-12)
    for bad in ([0], [50], [], [True]):
        with pytest.raises(ValueError):
            S.retrieval_precision(Z, y, bad)


def test_chapter_02_stand_ins_meet_their_contracts():
    from workbook.ch02 import standins as S
    R = reference("02_denoising")
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(3, 2, 14, 12, generator=g, dtype=dtype)
        for sigma in (0.3, torch.tensor([0.1, 0.5, 0.0])):
            mine = S.add_gaussian_noise(x, sigma, torch.Generator().manual_seed(1))
            assert mine.dtype == dtype
            _close(mine, R.add_gaussian_noise(x, sigma, torch.Generator().manual_seed(1)), 1e-6)
        for mine, theirs in zip(S.salt_and_pepper(x, 0.3, torch.Generator().manual_seed(2)),
                                R.salt_and_pepper(x, 0.3, torch.Generator().manual_seed(2))):
            assert torch.equal(mine, theirs)
        for mine, theirs in zip(S.occlude_boxes(x, 3, 4, torch.Generator().manual_seed(3)),
                                R.occlude_boxes(x, 3, 4, torch.Generator().manual_seed(3))):
            assert torch.equal(mine, theirs)
        y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
        _close(S.psnr(y, x), R.psnr(y, x), 1e-5)
        _close(S.psnr(255 * y, 255 * x, 255.0), R.psnr(255 * y, 255 * x, 255.0), 1e-5)
        assert torch.isinf(S.psnr(x, x)).all()
        _close(S.ssim(y, x), R.ssim(y, x), 1e-5)
        _close(S.ssim(x, x), torch.ones(3), 1e-5)
        for mask in (torch.rand(3, 1, 14, 12, generator=g) < 0.3, torch.rand(3, 2, 14, 12, generator=g) < 0.3):
            _close(S.masked_mse(y, x, mask), R.masked_mse(y, x, mask), 1e-6)
    model = S.SigmaConditionedDenoiser(c=4)
    x = torch.rand(5, 1, 28, 28, generator=g)
    assert model(x, torch.rand(5, generator=g)).shape == x.shape
    ref = R.SigmaConditionedDenoiser(c=4)
    ref.load_state_dict(model.state_dict())  # the documented layers, under the documented names
    sigma = torch.rand(5, generator=g)
    _close(model(x, sigma), ref(x, sigma), 1e-6)
    twins = [R.SigmaConditionedDenoiser(c=4) for _ in range(2)]
    twins[1].load_state_dict(twins[0].state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in twins]
    for sigma in (0.2, torch.rand(5, generator=g)):
        losses = [f(m, x, sigma, o, torch.Generator().manual_seed(4))
                  for f, m, o in zip((S.denoising_step, R.denoising_step), twins, opts)]
        assert isinstance(losses[0], float) and math.isclose(*losses, rel_tol=1e-5)
    for a, b in zip(twins[0].parameters(), twins[1].parameters()):
        _close(a, b, 1e-6)


def test_chapter_03_stand_ins_meet_their_contracts():
    from workbook.ch03 import standins as S
    R = reference("03_vae")
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        mu, logvar = torch.randn(4, 3, generator=g, dtype=dtype), torch.randn(4, 3, generator=g, dtype=dtype)
        z = S.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
        assert z.dtype == dtype
        _close(z, R.reparameterize(mu, logvar, torch.Generator().manual_seed(1)), 1e-6)
        _close(S.kl_to_standard_normal(mu, logvar), R.kl_to_standard_normal(mu, logvar), 1e-5)
    x = (torch.rand(4, 6, generator=g) < 0.5).float()
    logits, mu, logvar = torch.randn(4, 6, generator=g) * 50, torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    for kw in ({}, {"beta": 0.3}, {"likelihood": "gaussian", "sigma": 0.5}):
        _close(S.negative_elbo(x, logits, mu, logvar, **kw), R.negative_elbo(x, logits, mu, logvar, **kw), 1e-4)
    with pytest.raises(ValueError):
        S.negative_elbo(x, logits, mu, logvar, likelihood="poisson")
    vae = S.VAE(6, 2, (5,))
    assert vae.k == 2 and [o.shape for o in vae(x, generator=torch.Generator().manual_seed(2))] == [(4, 6), (4, 2), (4, 2)]
    assert S.VAE(10, 2, ())(torch.rand(3, 10))[0].shape == (3, 10)
    mine, ref = S.VAE(6, 2, (5,)), R.VAE(6, 2, (5,))
    ref.load_state_dict(mine.state_dict())  # the same layers: the same numbers
    for name in ("encode", "decode"):
        arg = x if name == "encode" else mu
        for a, b in zip(*(torch.atleast_1d(*getattr(m, name)(arg)) if name == "encode" else [getattr(m, name)(arg)]
                          for m in (mine, ref))):
            _close(a, b, 1e-6)
    twins = [R.VAE(6, 2, (5,)) for _ in range(2)]
    twins[1].load_state_dict(twins[0].state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in twins]
    losses = [f(m, x, o, beta=0.5, generator=torch.Generator().manual_seed(3))
              for f, m, o in zip((S.vae_step, R.vae_step), twins, opts)]
    assert isinstance(losses[0], float) and math.isclose(*losses, rel_tol=1e-5)
    for a, b in zip(twins[0].parameters(), twins[1].parameters()):
        _close(a, b, 1e-6)
    _close(S.sample_prior(twins[0], 5, torch.Generator().manual_seed(4)),
           R.sample_prior(twins[0], 5, torch.Generator().manual_seed(4)), 1e-6)
    _close(S.interpolate(twins[0], x[0], x[1], 4), R.interpolate(twins[0], x[0], x[1], 4), 1e-6)
    for k in (1, 7):
        _close(S.iwae_log_likelihood(twins[0], x, k, torch.Generator().manual_seed(5)),
               R.iwae_log_likelihood(twins[0], x, k, torch.Generator().manual_seed(5)), 1e-4)


def test_chapter_04_stand_ins_meet_their_contracts():
    from workbook.captions import CaptionTokenizer
    from workbook.ch04 import standins as S
    R = reference("04_clip")
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        I, T = torch.randn(5, 8, generator=g, dtype=dtype), torch.randn(5, 8, generator=g, dtype=dtype)
        for t in (math.log(1 / 0.07), math.log(200.0), -1.0):
            scales = [torch.tensor(t, dtype=dtype, requires_grad=True) for _ in range(2)]
            mine, theirs = S.clip_loss(I, T, scales[0]), R.clip_loss(I, T, scales[1])
            assert mine.dtype == dtype
            _close(mine, theirs, 1e-5)
            mine.backward(), theirs.backward()
            _close(scales[0].grad, scales[1].grad, 1e-5)
    tokenizer = CaptionTokenizer()
    tokens = tokenizer(["a photo of a red seven", "the digit 7 in red", "blue"])
    encoder = S.TextEncoder(tokenizer.vocab_size, 12, width=16, layers=1, heads=4, context_length=tokenizer.context_length)
    assert encoder(tokens).shape == (3, 12)
    changed = tokens.clone()
    changed[2, -1] = 1  # after the end-of-text token of a short caption: causal, so no effect
    _close(encoder(changed), encoder(tokens), 1e-6)
    assert S.ImageEncoder(12, c=4)(torch.randn(2, 3, 32, 32)).shape == (2, 12)
    names, templates = ["zero", "one", "two"], ["a photo of a {}", "the digit {}"]
    _close(S.zero_shot_weights(encoder, tokenizer, names, templates),
           R.zero_shot_weights(encoder, tokenizer, names, templates), 1e-5)
    weights = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    feats = torch.randn(9, 8, generator=g)
    assert torch.equal(S.zero_shot_predict(feats, weights), R.zero_shot_predict(feats, weights))
    assert S.zero_shot_predict(feats[:1], weights).shape == (1,)
    I = torch.randn(30, 4, generator=g)
    for T in (I + 0.8 * torch.randn(30, 4, generator=g), I.round()):  # the second with ties
        a, b = S.recall_at_k(I, T, (1, 3, 30)), R.recall_at_k(I, T, (1, 3, 30))
        assert a.keys() == b.keys() and all(a[k].dtype == torch.float64 and torch.equal(a[k], b[k]) for k in a)


def test_chapter_05_stand_ins_meet_their_contracts():
    from workbook.ch05 import standins as S
    R = reference("05_diffusion")
    for args in ((), (5, 0.1, 0.5), (50, 1e-3, 0.2)):  # diffusers computes in float32
        assert S.linear_betas(*args).dtype == torch.float64
        _close(S.linear_betas(*args), R.linear_betas(*args), 1e-7)
    for args in ((), (4, 0.0), (10, 0.02, 0.5)):
        _close(S.cosine_betas(*args), R.cosine_betas(*args), 1e-7)
    betas = R.cosine_betas(100)
    for mine, theirs in zip(S.noise_schedule(betas), R.noise_schedule(betas)):
        assert mine.dtype == torch.float64
        _close(mine, theirs, 1e-6)
    ab = R.noise_schedule(betas)[1]
    g = torch.Generator().manual_seed(0)
    x0, eps, z = (torch.randn(4, 3, 4, 6, generator=g) for _ in range(3))
    t = torch.tensor([0, 3, 50, 99])
    assert S.q_sample(x0, t, eps, ab).dtype == torch.float32
    _close(S.q_sample(x0, t, eps, ab), R.q_sample(x0, t, eps, ab), 1e-6)
    model = torch.nn.Conv2d(3, 3, 1)
    for y in (None, torch.tensor([1, 2, 3, 4])):
        net = (lambda x, t: model(x) + t.view(-1, 1, 1, 1) / 100) if y is None else \
            (lambda x, t, y: model(x) + (t + y).view(-1, 1, 1, 1) / 100)
        mine = S.diffusion_loss(net, x0, ab, y, torch.Generator().manual_seed(1))
        _close(mine, R.diffusion_loss(net, x0, ab, y, torch.Generator().manual_seed(1)), 1e-6)
        mine.backward()
        assert model.weight.grad is not None
    for t_ in (99, 50, 1, 0):
        for mine, theirs in zip(S.ddpm_step(eps, t_, x0, ab, z), R.ddpm_step(eps, t_, x0, ab, z)):
            _close(mine, theirs, 1e-4)
    for t_, t_prev, eta in ((99, 60, 0.0), (60, 10, 1.0), (10, -1, 0.5), (5, 4, 0.3)):
        noise = z if eta else None
        for mine, theirs in zip(S.ddim_step(eps, t_, t_prev, x0, ab, eta, noise),
                                R.ddim_step(eps, t_, t_prev, x0, ab, eta, noise)):
            _close(mine, theirs, 1e-5)
    eps_fn = lambda x, t: torch.tanh(0.5 * x + t.view(-1, *[1] * (x.dim() - 1)) / 10)
    linear = R.noise_schedule(R.linear_betas(20, 1e-3, 0.2))[1]
    before = torch.random.get_rng_state()
    x, kept = S.sample_ddpm(eps_fn, (3, 2), linear, torch.Generator().manual_seed(7), keep=(19, 4))
    x_ref, kept_ref = R.sample_ddpm(eps_fn, (3, 2), linear, torch.Generator().manual_seed(7), keep=(19, 4))
    assert torch.equal(before, torch.random.get_rng_state())
    _close(x, x_ref, 1e-5)
    assert sorted(kept) == [4, 19] and all(kept[k][i].device.type == "cpu" for k in kept for i in (0, 1))
    for k in kept:
        _close(kept[k][0], kept_ref[k][0], 1e-5)
        _close(kept[k][1], kept_ref[k][1], 1e-5)
    for eta in (0.0, 1.0):
        for n in (1, 7, 20):
            _close(S.sample_ddim(eps_fn, (3, 1, 2, 2), linear, n, torch.Generator().manual_seed(9), eta),
                   R.sample_ddim(eps_fn, (3, 1, 2, 2), linear, n, torch.Generator().manual_seed(9), eta), 1e-5)
    for t_ in (torch.tensor([0, 1, 999, 5]), torch.tensor([1.5, 2.0], dtype=torch.float64)):
        emb = S.timestep_embedding(t_, 32, 100)
        assert emb.dtype == torch.float32
        _close(emb, R.timestep_embedding(t_, 32, 100), 1e-5)
    assert S.ResBlock(16, 32, 64)(torch.randn(2, 16, 6, 6), torch.randn(2, 64)).shape == (2, 32, 6, 6)
    unet = S.UNet(1, 8, (1, 2), num_classes=3, groups=4)
    x = torch.randn(3, 1, 8, 12)
    t_, y = torch.tensor([0, 10, 500]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = unet(x, t_, y)
        assert out.shape == x.shape and out.dtype == torch.float32
        _close(unet(x, t_), unet(x, t_, torch.full((3,), 3)), 1e-6)  # y = None is the "no label" row
        changed = unet(x, torch.tensor([999, 10, 500]), y)
        assert (changed[0] - out[0]).abs().max() > 1e-6 and (changed[1:] - out[1:]).abs().max() < 1e-5
        assert S.UNet(1, 8, (1, 2, 2), None, 4)(torch.randn(2, 1, 16, 16), torch.tensor([1, 2])).shape == (2, 1, 16, 16)
    labels = torch.arange(1000) % 10
    for p in (0.0, 0.3, 1.0):
        assert torch.equal(S.drop_labels(labels, p, 10, torch.Generator().manual_seed(5)),
                           R.drop_labels(labels, p, 10, torch.Generator().manual_seed(5)))
    label_model = lambda x, t, y: torch.zeros_like(x) + (y.to(x.dtype) + t.to(x.dtype) / 1000).view(-1, 1, 1, 1)
    for s in (0, 1, 3.0):
        args = (label_model, torch.zeros(3, 1, 2, 2), torch.tensor([0, 500, 0]), torch.tensor([2, 7, 4]), s, 10)
        _close(S.guided_eps(*args), R.guided_eps(*args), 1e-5)


def test_chapter_06_stand_ins_meet_their_contracts():
    from workbook import ch06
    from workbook.ch06 import standins as S
    R = reference("06_latent_diffusion")
    g = torch.Generator().manual_seed(0)
    ae = S.KLAutoencoder(3, 8, 4)
    x = torch.randn(2, 3, 16, 12, generator=g)
    mean, logvar = ae.encode(x)
    assert ae.latent_channels == 4 and mean.shape == logvar.shape == (2, 4, 4, 3)
    noise = torch.randn(mean.shape, generator=g)
    x_hat, mean2, logvar2 = ae(x, noise)
    assert x_hat.shape == x.shape and torch.equal(mean, mean2) and ae.decode(mean).shape == x.shape
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    x, x_hat = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    for mine, theirs in zip(S.autoencoder_loss(x, x_hat, mean, logvar, 0.1), R.autoencoder_loss(x, x_hat, mean, logvar, 0.1)):
        _close(mine, theirs, 1e-5)
    Z = torch.randn(50, 4, 8, 8, generator=g) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    assert isinstance(S.latent_scale_factor(Z), float)
    assert math.isclose(S.latent_scale_factor(Z), R.latent_scale_factor(Z), rel_tol=1e-5)

    attn, ref = S.CrossAttention(8, 6, 2, 4), R.CrossAttention(8, 6, 2, 4)
    with torch.no_grad():
        for n in ("to_q", "to_k", "to_v"):
            getattr(ref, n).weight.copy_(getattr(attn.inner, n).weight)
        ref.to_out.weight.copy_(attn.inner.to_out[0].weight)
        ref.to_out.bias.copy_(attn.inner.to_out[0].bias)
    xq, context = torch.randn(3, 5, 8, generator=g), torch.randn(3, 7, 6, generator=g)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    for m in (None, mask):
        for mine, theirs in zip(attn(xq, context, m), ref(xq, context, m)):
            _close(mine, theirs, 1e-5)
    block = S.CrossAttnBlock(8, 6, 2, 4)
    out = block(torch.randn(2, 8, 3, 4, generator=g), context[:2], mask[:2])
    assert out.shape == (2, 8, 3, 4) and block.last_attn.shape == (2, 2, 12, 7)
    assert block.last_attn[1, :, :, 4:].abs().max() == 0
    _close(block.last_attn.sum(-1), torch.ones(2, 2, 12), 1e-5)
    z = torch.randn(2, 4, 8, 8, generator=g)
    for mults in ((1,), (1, 2), (1, 2, 2)):
        unet = S.TextUNet(R.CrossAttnBlock, 4, 8, mults, 6, 2, 4)
        assert unet(z, torch.tensor([1, 500]), context[:2], mask[:2]).shape == z.shape
    assert unet.down_attn[0].last_attn.shape == (2, 2, 64, 7) and unet.down_attn[0].last_attn[1, :, :, 4:].max() == 0

    ab = ch06.make_scheduler(1000).alphas_cumprod
    net = lambda z, t, c, m: 0.5 * z + (t / 1000 + c.mean((1, 2)) + m.float().mean(1)).view(-1, 1, 1, 1)
    z0, ctx = torch.randn(6, 4, 2, 2, generator=g), torch.randn(6, 5, 3, generator=g)
    msk = torch.rand(6, 5, generator=g) > 0.3
    null_ctx, null_mask = torch.randn(1, 5, 3, generator=g), torch.tensor([[True, True, False, False, False]])
    for p in (0.0, 0.5, 1.0):
        args = (net, z0, ctx.clone(), msk.clone(), null_ctx, null_mask, ab, p)
        _close(S.training_loss(*args, torch.Generator().manual_seed(3)), R.training_loss(*args, torch.Generator().manual_seed(3)), 1e-6)
    assert torch.equal(ctx, args[2]) and torch.equal(msk, args[3])

    from diffusers import EulerDiscreteScheduler
    text = lambda ps: (torch.stack([torch.full((5, 3), float(len(p))) for p in ps]),
                       torch.stack([torch.arange(5) < 2 + len(p) % 3 for p in ps]))
    eps_net = lambda z, t, c, m: torch.tanh(0.3 * z + (t / 1000 + c.mean((1, 2)) / 10).view(-1, 1, 1, 1))
    euler = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 timestep_spacing="trailing")
    image_latents = torch.randn(2, 4, 2, 2, generator=g)
    for make in (lambda: ch06.make_scheduler(1000), lambda: EulerDiscreteScheduler(**euler)):
        kw = dict(guidance_scale=3.0, num_steps=5, scale_factor=0.5)
        _close(S.generate(["a", "bb"], text, eps_net, lambda z: 2 * z, make(), latent_shape=(4, 2, 2), **kw,
                          generator=torch.Generator().manual_seed(2)),
               R.generate(["a", "bb"], text, eps_net, lambda z: 2 * z, make(), latent_shape=(4, 2, 2), **kw,
                          generator=torch.Generator().manual_seed(2)), 1e-5)
        for strength in (0.0, 0.3, 0.75, 1.0):
            _close(S.img2img(image_latents, ["a", "bb"], text, eps_net, lambda z: 2 * z, make(), strength=strength,
                             **kw, generator=torch.Generator().manual_seed(2)),
                   R.img2img(image_latents, ["a", "bb"], text, eps_net, lambda z: 2 * z, make(), strength=strength,
                             **kw, generator=torch.Generator().manual_seed(2)), 1e-5)


def test_chapter_07_stand_ins_meet_their_contracts():
    from workbook.ch07 import uniform_timesteps
    from workbook.ch07 import standins as S
    R = reference("07_flow_matching")
    g = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(4, 3, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.rand(4, generator=g)
    assert S.flow_path(x0, eps, t).dtype == torch.float64
    _close(S.flow_path(x0, eps, t), R.flow_path(x0, eps, t), 1e-12)
    _close(S.velocity_target(x0, eps), R.velocity_target(x0, eps), 0)
    model = lambda x, t, y=None: 0.3 * x + t.view(-1, 1, 1) + (0 if y is None else y.view(-1, 1, 1))
    for logit_normal in (False, True):
        for given in (None, eps):
            for y in (None, torch.tensor([1, 2, 3, 4])):
                args = (model, x0, given, y)
                _close(S.flow_matching_loss(*args, torch.Generator().manual_seed(1), logit_normal),
                       R.flow_matching_loss(*args, torch.Generator().manual_seed(1), logit_normal), 1e-12)
    velocity = lambda x, t: torch.tanh(0.7 * x + t.view(-1, *[1] * (x.dim() - 1)))
    x1 = torch.randn(5, 2, generator=g)
    for ts in (uniform_timesteps(1), uniform_timesteps(4), uniform_timesteps(16).float(), torch.tensor([0.9, 0.5, 0.45, 0.2])):
        for name in ("euler_sample", "heun_sample"):  # diffusers steps in float32
            mine = getattr(S, name)(velocity, x1, ts)
            assert mine.dtype == x1.dtype
            _close(mine, getattr(R, name)(velocity, x1, ts), 1e-6)
    _close(S.euler_sample(velocity, x1.double(), uniform_timesteps(8)), R.euler_sample(velocity, x1.double(), uniform_timesteps(8)), 1e-6)
    times = []
    S.heun_sample(lambda x, t: (times.append(float(t[0])), velocity(x, t))[1], x1, uniform_timesteps(4))
    assert times == [1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25]  # 2n - 1 evaluations, the last step Euler's
    a = torch.tensor([1.0, 0.8, 0.5, 1e-4], dtype=torch.float64)
    x_ddpm = torch.randn(4, 2, 2, generator=g, dtype=torch.float64)
    for mine, theirs in zip(S.ddpm_to_flow(x_ddpm, a), R.ddpm_to_flow(x_ddpm, a)):
        _close(mine, theirs, 1e-12)
    tt = torch.tensor([0.0, 0.3, 0.7, 0.99])
    _close(S.eps_to_velocity(eps, x0, tt), R.eps_to_velocity(eps, x0, tt), 1e-12)
    _close(S.velocity_to_eps(eps, x0, tt), R.velocity_to_eps(eps, x0, tt), 1e-12)
    y = torch.arange(30) % 8
    for p in (0.0, 0.2, 1.0):
        assert torch.equal(S.drop_labels(y, p, 8, torch.Generator().manual_seed(5)),
                           R.drop_labels(y, p, 8, torch.Generator().manual_seed(5)))
    label_model = lambda x, t, y: torch.zeros_like(x) + (y.to(x.dtype) + t.to(x.dtype)).view(-1, 1)
    args = (label_model, torch.zeros(3, 2), torch.tensor([0.1, 0.5, 0.9]), torch.tensor([1, 2, 3]), 2.5, 8)
    _close(S.guided_velocity(*args), R.guided_velocity(*args), 1e-5)
    for ts in (uniform_timesteps(8), torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)):
        for mine, theirs in zip(S.straightness(velocity, x1, ts), R.straightness(velocity, x1, ts)):
            _close(mine, theirs, 1e-5)


# ----------------------------------------------------------------------------- the chapter runs with them

def notebook_with_stand_ins(chapter):
    """The student notebook as a learner who switched every stand-in on would have it: each
    stand-in's documented line at the end of its solution cell; every other solution cell (quiz
    answers, exercises without a stand-in) as the reference has it. Returns the notebook, the
    grade ids of the test cells that must refuse a stand-in (-> the stand-in's name) and the index
    of the first cell with a stand-in."""
    nb = nbformat.read(REPO / "course" / f"{chapter}.ipynb", as_version=4)
    src = authoring.SolutionSource(authoring.solutions_path(chapter))
    have, ch = stand_ins(chapter), f"ch{chapter[:2]}"
    names = {c.opts["id"]: [n for line in c.lines for n in authoring.solution_names(line)]
             for c in authoring.parse_cells(chapters_pkg.path(chapter, "narrative").read_text()) if c.kind == "solution"}
    first = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        defined = names[cell.metadata["nbgrader"]["grade_id"]]
        ours = [n for n in defined if n in have]
        if len(ours) < len(defined):
            cell.source = "\n\n".join(src.plain(n) for n in defined if n not in have)
        else:
            cell.source = cell.source.rstrip()
        if ours:
            cell.source += "\n" + "\n".join(f"{n} = {ch}.standins.{n}" for n in ours)
            first = i if first is None else first
    refusing = {gid: next(n for n in args if n in have and n in graded)
                for gid, _, args, graded in _check_calls(chapter) if any(n in have and n in graded for n in args)}
    return nb, refusing, first


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_chapter_runs_with_its_stand_ins(chapter, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    nb, refusing, first = notebook_with_stand_ins(chapter)
    artifacts = tmp_path / "artifacts"  # what the stand-ins train must not replace what later chapters load
    shutil.copytree(artifacts_dir("smoke"), artifacts / "smoke")
    for k, v in tool_env({"WORKBOOK_PROFILE": "smoke", "WORKBOOK_OFFLINE": "1", "MPLBACKEND": "Agg",
                          "WORKBOOK_RESULTS": str(tmp_path / "results"), "WORKBOOK_ARTIFACTS": str(artifacts)}).items():
        monkeypatch.setenv(k, v)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(REPO / "course")}})
    t0 = time.time()
    client.execute()
    seconds = time.time() - t0
    print(f"{chapter}: the student notebook with {len(stand_ins(chapter))} stand-ins ran in {seconds:.0f} s")
    errors = {}
    for i, cell in enumerate(nb.cells):
        err = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if cell.cell_type == "code" and err:
            errors[i] = f"{err[0].ename}: {err[0].evalue}"
    seen = set()
    for i, cell in enumerate(nb.cells):
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type != "code":
            continue
        if gid in refusing:
            seen.add(gid)
            assert i in errors and _message(chapter, refusing[gid]) in errors[i], \
                f"test cell {gid} should refuse the stand-in {refusing[gid]}: {errors.get(i, 'it passed')}"
        else:
            assert i not in errors, f"cell {i} ({gid or 'plain code'}) failed: {errors[i][-1500:]}"
    assert seen == set(refusing) and first is not None
    assert seconds < 120, f"{chapter} took {seconds:.0f} s with its stand-ins in the smoke profile"
