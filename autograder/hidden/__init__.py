"""What every chapter's hidden checks share (`autograder/chapters/NN_topic/hidden.py`): the
hidden seed and the generators drawn from it, multiple-choice grading, and the helpers for
checks whose learner objects live in the kernel. Hidden checks run only while grading (in
the judge, `autograder.judge`) or in-process for instructors and tests; never shipped to
learners. A helper two chapters need lives here, not in either chapter."""
from __future__ import annotations

import hashlib
import os

import torch

from autograder import harness
from autograder.remote import RemoteError, run
from workbook.checks import Checks, choice_letters

COPY_WEIGHTS = 'common.copy_weights'
PARAMETERS = 'common.parameters'
SHAPES = 'common.shapes'


# ----------------------------------------------------------------------------- hidden inputs

DEV_SECRET = "workbook-default-secret"  # in-process only: the instructor, `fidelity`, the tests
SECRET_ENV = "WORKBOOK_HIDDEN_SEED"
SECRET_REQUIRED_ENV = "WORKBOOK_HIDDEN_SEED_REQUIRED"  # "1" in the judge: grading never falls back to DEV_SECRET


def hidden_seed(name: str) -> int:
    """A seed for hidden inputs, derived from the grading secret (`WORKBOOK_HIDDEN_SEED`,
    read at each call) and the check's name. While grading the judge sets the secret of the
    student and notebook (`seals.student_secret`), and `WORKBOOK_HIDDEN_SEED_REQUIRED=1`;
    outside grading the fixed DEV_SECRET."""
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        if os.environ.get(SECRET_REQUIRED_ENV) == "1":
            raise RuntimeError("no grading secret (WORKBOOK_HIDDEN_SEED) in the judge")
        secret = DEV_SECRET
    return int.from_bytes(hashlib.sha256(f"{secret}/{name}".encode()).digest()[:6], "big")


def generators(chapter: str):
    """`gen(name)`: a fresh generator seeded from the hidden seed of `chapter/name`, the one
    source of every hidden input a chapter draws (`_gen = generators(CH)` in its checks)."""
    def gen(name: str) -> torch.Generator:
        return torch.Generator().manual_seed(hidden_seed(f"{chapter}/{name}"))
    return gen


def seeded(seed: int) -> torch.Generator:
    """A fresh generator with this seed (a draw that must be repeated exactly)."""
    return torch.Generator().manual_seed(seed)


def draw_int(g: torch.Generator, lo: int, hi: int) -> int:
    """A random int in [lo, hi)."""
    return int(torch.randint(lo, hi, (1,), generator=g))


def draw_size(g: torch.Generator, low: int, high: int) -> int:
    """A random size in [low, high], both included."""
    return draw_int(g, low, high + 1)


def draw_seed(g: torch.Generator) -> int:
    """A random seed for a generator of its own."""
    return draw_int(g, 0, 2**31 - 1)


# ----------------------------------------------------------------------------- input families

# A chapter's hidden.py declares, per exercise, the families of inputs its contract allows
# (`FAMILIES = {"vae_step": ("float32", ...)}`) and calls `family(exercise, name)` where it
# exercises one. The secret draws values inside a family, never whether a family appears:
# tests/test_families.py runs the reference under two secrets and asserts every declared
# family was exercised under both.
_EXERCISED: set[tuple[str, str]] = set()


def family(exercise: str, name: str) -> None:
    """Record that a hidden check exercises the input family `name` of `exercise`."""
    _EXERCISED.add((exercise, name))


def exercised(clear: bool = False) -> set[tuple[str, str]]:
    """The (exercise, family) pairs recorded so far in this process (then forgotten, with clear)."""
    out = set(_EXERCISED)
    if clear:
        _EXERCISED.clear()
    return out


# ----------------------------------------------------------------------------- answers and kernels

def grade_choice(name: str, answer, want, explain: str | None = None) -> None:
    """A multiple-choice answer against the reference's: a set of letters in any container
    (set, list, tuple; a lone letter counts as a set of one), or one letter (a set of one
    letter counts as that letter); either case counts ("b" is "B"). `explain` is the idea
    behind the right answer, shown with a wrong one (it must not name the letter)."""
    c = Checks(f"{name} (hidden)")
    letters = choice_letters(answer)
    got = set(letters) if isinstance(answer, (set, frozenset, list, tuple)) or isinstance(want, (set, frozenset)) \
        else letters[0] if letters else None
    if isinstance(want, str) and isinstance(got, set) and len(got) == 1:
        got = next(iter(got))
    c.true(got == want, f"{name} is not right",
           hint=explain or "re-read the question and the chapter's section on it")
    c.done()


def parameters(model) -> list[torch.Tensor]:
    """The parameters of a model in the learner's kernel, in order (plain tensors)."""
    return run(PARAMETERS, model=model)


def load_reference_weights(c: Checks, model, reference: torch.nn.Module, inputs: str) -> None:
    """Check that the learner's model (in the kernel) has the reference's parameter shapes,
    in order, then copy the reference's weights into it (in the kernel)."""
    rp = [p.detach() for p in reference.parameters()]
    shapes = c.call(run, SHAPES, model=model, inputs=inputs)
    c.true(shapes == [tuple(p.shape) for p in rp],
           "the layers (their parameter shapes, in order) differ from the stated architecture",
           inputs=inputs, expected=str([tuple(p.shape) for p in rp]), got=str(shapes))
    c.call(run, COPY_WEIGHTS, model=model, weights=rp, inputs=inputs)


KEEPS_GLOBAL_RNG = 'common.keeps_global_rng'


def call_keeping_global_rng(c: Checks, fn, *args, inputs: str = "", **kwargs):
    """Call the learner's `fn(*args, **kwargs)` in the kernel and fail unless it left the
    global random generator untouched (for functions whose draws must all come from the
    `generator` passed in). Returns what `fn` returned."""
    out, kept = c.call(run, KEEPS_GLOBAL_RNG, fn=fn, args=list(args), kwargs=dict(kwargs), inputs=inputs)
    c.true(kept, "the global random generator was used: every draw must come from the generator passed in",
           inputs=inputs, hint="pass generator=... to every torch.randn/rand/randint/randperm call "
                               "(torch.randn_like and torch.rand_like take no generator)")
    return out


def in_kernel(name: str, code: str, **vars):
    """A callable for `c.call` that runs harness snippet `code` in the learner's kernel with
    `vars` (and any keywords it is called with), named after the learner's code it calls, so
    that an error there reads `calling <name> raised ...`, as a direct call would."""
    def call(**more):
        return run(code, **vars, **more)
    call.__name__ = name
    return call


def learner_name(fn, default: str = "the function") -> str:
    """How the checks name a learner's function or class."""
    return getattr(fn, "__name__", default)


def run_reporting(c: Checks, name: str, code: str, inputs: str = "", **vars):
    """Run harness snippet `code` in the kernel; an exception of the learner's code there is
    a failure worded as `c.call` words it. Unlike `c.call`, a lost connection to the kernel
    is not reported as the learner's error (the judge reports it)."""
    try:
        return run(code, **vars)
    except NotImplementedError:
        c.fail(f"{name} is not implemented yet", inputs=inputs)
    except RemoteError as e:
        c.fail(f"calling {name} raised {type(e).__name__}: {e}", inputs=inputs)


def here(snippet: str, **vars):
    """One more copy, in the judge, of what a harness snippet (its registered name) builds:
    the judge's half of `remote.twin`."""
    name = harness.name_of(snippet)
    scope = harness.scope(**vars)
    exec(compile(harness.code_of(name), f"<judge harness {name}>", "exec"), scope)
    return scope["result"]
