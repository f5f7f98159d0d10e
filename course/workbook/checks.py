"""Checks that explain themselves.

A check compares in stages, type -> shape -> dtype -> finite -> values, and stops at the
first problem with a message in the learner's terms: which exercise and input, what was
expected, what came back, and the likely mistake when the check recognises it.

    c = Checks("pca_fit")
    c.tensor("V", V, shape=(4, 2), dtype=torch.float64, inputs="X (6, 4), k=2")
    c.close("V", V, V_expected, atol=1e-6, mistakes={"forgot to centre X": V_uncentred})
    c.done()   # prints "✓ pca_fit: 2 checks passed"
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Any, Mapping, Sequence

import torch


class CheckFailed(AssertionError):
    """A failed check; its message is written for the learner."""


_MIXED_DTYPES = "mixed dtypes: make every new tensor in the input's dtype (dtype=x.dtype), and the network's too"
# What a library's error message means in the exercises' terms: (a fragment of the message,
# the likely mistake). Matched in this order; an unknown message gets no guess.
LIBRARY_ERRORS: tuple[tuple[str, str], ...] = (
    ("Timesteps should be a 1d-array",
     "t must stay a 1-D tensor of shape (B,), also for a batch of one: t.squeeze() turns a batch of one "
     "into a 0-d tensor (use t.reshape(-1), or leave t as it is)"),
    ("Expected all tensors to be on the same device",
     "tensors on different devices: make every new tensor on the input's device (device=x.device)"),
    ("mat1 and mat2 shapes cannot be multiplied",
     "a Linear layer got inputs of another width than its in_features: check the layer sizes against the "
     "input's last dimension (and flatten images first where the contract says so)"),
    ("mat1 and mat2 must have the same dtype",
     _MIXED_DTYPES),
    ("expected m1 and m2 to have the same dtype",
     _MIXED_DTYPES),
    ("Input type (double) and bias type (float)",
     _MIXED_DTYPES),
    ("Sizes of tensors must match except in dimension",
     "torch.cat got tensors whose other dimensions differ: bring them to one shape first (view, expand, "
     "broadcast t to (B, 1, ...))"),
    ("must match the size of tensor",
     "two tensors do not broadcast: reshape per-example values to (B, 1, ..., 1) with as many dimensions as x"),
)


def library_error_hint(message: str) -> str | None:
    """The likely mistake behind a library's error message, or None when it is not one we know."""
    return next((hint for fragment, hint in LIBRARY_ERRORS if fragment in message), None)


def describe(x: Any, limit: int = 6) -> str:
    """A short, readable description of a value."""
    if isinstance(x, torch.Tensor):
        flat = x.detach().flatten()
        vals = ", ".join(f"{v:.4g}" if flat.is_floating_point() else str(v)
                         for v in flat[:limit].tolist())
        more = ", ..." if flat.numel() > limit else ""
        return f"tensor of shape {tuple(x.shape)}, {x.dtype}: [{vals}{more}]"
    text = repr(x)
    return text if len(text) < 120 else text[:117] + "..."


def check_shape(x: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise CheckFailed unless `x` has `shape` (None matches any size). For your own code too."""
    if not isinstance(x, torch.Tensor):
        raise CheckFailed(f"{name} should be a torch.Tensor, got {type(x).__name__}")
    if len(x.shape) != len(shape) or any(s is not None and s != g for s, g in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise CheckFailed(f"{name} should have shape {want}, got {tuple(x.shape)}")


def count_parameters(module) -> int:
    """The number of scalar parameters of an nn.Module."""
    return sum(p.numel() for p in module.parameters())


def choice_letters(answer: Any) -> list:
    """The letters of a multiple-choice answer as written: a lone letter, or the members of
    a set, list or tuple; letters count in either case ("b" is "B"), surrounding spaces
    are ignored."""
    items = list(answer) if isinstance(answer, (set, frozenset, list, tuple)) else [answer]
    return [a.strip().upper() if isinstance(a, str) else a for a in items]


def check_choice(name: str, answer: Any, options: str, many: bool = False, explain: str | None = None) -> None:
    """The format of a multiple-choice answer (the right letters are checked when grading;
    `workbook.selfstudy` says right or not at once where the answers are at hand):
    one letter from `options` (a one-letter set counts as the letter; lower case counts as
    upper case), or with `many` a non-empty set (or list) of such letters. `explain`, printed
    once the format is right, states the idea the question is about without the answer."""
    c = Checks(name)
    letters = choice_letters(answer)
    ok = len(letters) == 1 or (many and len(letters) > 0)
    ok = ok and all(isinstance(a, str) and len(a) == 1 and a in options for a in letters)
    c.true(ok, f"{name} must be {'a set of letters' if many else 'one letter'} from {options}", got=repr(answer),
           hint='e.g. {"A", "C"}' if many else 'e.g. "B"')
    c.done()
    from .selfstudy import quiz_feedback  # right or not where the answers are at hand

    print(quiz_feedback(name, answer, explain))


def tolerance(dtype: torch.dtype, scale: float = 1.0, ops: float = 1.0) -> dict[str, float]:
    """The course's tolerance policy for comparing a result computed in `dtype` with a
    float64 reference (docs/AUTHORING.md, "Tolerances"):

        atol = 64 * ops * eps(dtype) * scale,   rtol = 64 * ops * eps(dtype)

    `scale` is the magnitude of the inputs the result is computed from (rounding of an input
    of size s costs about eps * s in every output it reaches, e.g. sin(t * f) at t ~ 1000),
    `ops` the condition of the computation (about the number of chained rounding steps that
    can add up, e.g. the length of a sum, a few for exp/log chains). eps is 1.2e-7 for
    float32 and 2.2e-16 for float64; integer and bool results compare exactly. Use as
    `c.close("x", got, want, **tolerance(x.dtype, scale=...))`."""
    if not dtype.is_floating_point:
        return {"atol": 0.0, "rtol": 0.0}
    eps = torch.finfo(dtype).eps
    return {"atol": 64 * ops * eps * max(scale, 1.0), "rtol": 64 * ops * eps}


@contextlib.contextmanager
def substituted(definition, **names):
    """Run with some global names of `definition`'s notebook (or module) replaced, e.g. a
    stand-in for an earlier exercise, so a mistake there is not counted twice."""
    fn = definition.forward if isinstance(definition, type) and hasattr(definition, "forward") else definition
    try:
        fn = inspect.unwrap(fn)  # through decorators such as @torch.no_grad(), to the learner's own code
    except ValueError:  # a cycle of __wrapped__
        pass
    scope = getattr(fn, "__globals__", None)
    if scope is None:
        yield
        return
    saved = {k: scope[k] for k in names if k in scope}
    scope.update(names)
    try:
        yield
    finally:
        for k in names:
            if k in saved:
                scope[k] = saved[k]
            else:
                scope.pop(k, None)


def _as_float64(x: Any) -> torch.Tensor | None:
    """A plain float64 CPU copy of a tensor or a number (bools and ints included), else None."""
    try:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu").to(torch.float64)
        if isinstance(x, (bool, int, float)) or (isinstance(x, (list, tuple)) and len(x) < 10_000):
            return torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None
    return None


def _within(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> bool:
    """|got - want| <= atol + rtol |want| everywhere; equal infinities match, NaN never does."""
    inf = torch.isinf(got) | torch.isinf(want)
    diff = (got - want).abs()
    ok = torch.where(inf, got == want, diff <= atol + rtol * want.abs())
    return bool(ok.all())


class Checks:
    """Collects the checks of one exercise; fails at the first problem."""

    def __init__(self, exercise: str):
        self.exercise = exercise
        self.count = 0

    def fail(self, problem: str, *, inputs: str = "", expected: Any = None, got: Any = None,
             hint: str | None = None) -> None:
        lines = [f"[{self.exercise}] {problem}"]
        if inputs:
            lines.append(f"  input:    {inputs}")
        if expected is not None:
            lines.append(f"  expected: {expected if isinstance(expected, str) else describe(expected)}")
        if got is not None:
            lines.append(f"  got:      {got if isinstance(got, str) else describe(got)}")
        if hint:
            lines.append(f"  likely mistake: {hint}")
        failed = CheckFailed("\n".join(lines))
        failed.hint = hint  # the check's own diagnosis, apart from any learner text in the message
        raise failed

    def true(self, condition: bool, problem: str, *, inputs: str = "", hint: str | None = None,
             expected: Any = None, got: Any = None) -> None:
        self.count += 1
        if not condition:
            self.fail(problem, inputs=inputs, hint=hint, expected=expected, got=got)

    def call(self, fn, /, *args, inputs: str = "", **kwargs):
        """Call the learner's function, turning an exception into a readable failure (with
        the likely mistake when a library's message is one that `library_error_hint` knows)."""
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            self.fail(f"{getattr(fn, '__name__', 'this function')} is not implemented yet",
                      inputs=inputs)
        except CheckFailed:
            raise
        except Exception as e:  # the learner's code raised: say where and what
            self.fail(f"calling {getattr(fn, '__name__', 'the function')} raised "
                      f"{type(e).__name__}: {e}", inputs=inputs, hint=library_error_hint(str(e)))

    def tensor(self, what: str, got: Any, *, shape: Sequence[int | None] | None = None,
               dtype: torch.dtype | None = None, finite: bool = True, inputs: str = "") -> None:
        """Stage 1-4: a tensor, of this shape and dtype, with finite values."""
        self.count += 1
        if not isinstance(got, torch.Tensor):
            self.fail(f"{what} should be a torch.Tensor", inputs=inputs, got=f"{type(got).__name__}: {describe(got)}")
        if shape is not None:
            bad = len(got.shape) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got.shape))
            if bad:
                want = tuple("*" if s is None else s for s in shape)
                hint = None
                if tuple(got.shape) == tuple(reversed([s for s in shape])):
                    hint = "the dimensions are swapped: a transpose too many, or too few?"
                elif got.numel() == math.prod(s for s in shape if s is not None):
                    hint = "right number of elements, wrong layout: check your reshape/view"
                self.fail(f"{what} has the wrong shape", inputs=inputs, expected=f"shape {want}",
                          got=f"shape {tuple(got.shape)}", hint=hint)
        if dtype is not None and got.dtype != dtype:
            self.fail(f"{what} has dtype {got.dtype}, expected {dtype}", inputs=inputs,
                      hint="keep the input's dtype: avoid torch.tensor(...) copies and .float()/.double()")
        if finite and got.is_floating_point() and not torch.isfinite(got).all():
            self.fail(f"{what} contains NaN or inf", inputs=inputs, got=got,
                      hint="a division by zero, log of 0, or an exploding value")

    def close(self, what: str, got: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-5,
              rtol: float = 1e-4, inputs: str = "", hint: str | None = None,
              mistakes: Mapping[str, torch.Tensor] | None = None) -> None:
        """Stage 5: values. `mistakes` maps a diagnosis to the value that mistake produces.
        `got` may be a tensor or a number (anything else fails with what came back); NaN
        never matches, inf matches only the same inf."""
        self.count += 1
        got_t = _as_float64(got)
        if got_t is None:
            self.fail(f"{what} should be a tensor or a number", inputs=inputs,
                      expected=expected if isinstance(expected, torch.Tensor) else None,
                      got=f"{type(got).__name__}: {describe(got)}")
        exp_t = _as_float64(expected)
        if got_t.shape != exp_t.shape:
            self.fail(f"{what} has shape {tuple(got_t.shape)}, expected {tuple(exp_t.shape)}", inputs=inputs,
                      hint=hint)
        if _within(got_t, exp_t, atol, rtol):
            return
        for diagnosis, wrong in (mistakes or {}).items():
            w = _as_float64(wrong)
            if w is not None and w.shape == got_t.shape and _within(got_t, w, atol, rtol):
                hint = diagnosis
                break
        if got_t.numel() == 0:
            self.fail(f"{what} has wrong values", inputs=inputs, expected=exp_t, got=got_t, hint=hint)
        diff = torch.nan_to_num((got_t - exp_t).abs(), nan=math.inf)
        idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
        self.fail(f"{what} has wrong values (largest error {diff.max().item():.3g} at index {idx}, "
                  f"tolerance {atol:g} + {rtol:g}*|expected|)",
                  inputs=inputs, expected=exp_t, got=got_t, hint=hint)

    def done(self) -> None:
        print(f"\u2713 {self.exercise}: {self.count} checks passed")


from . import shown as _shown  # noqa: E402 - needs CheckFailed defined

_shown.install()
