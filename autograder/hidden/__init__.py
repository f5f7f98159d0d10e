"""Hidden checks: run only while grading (in the judge, `autograder.judge`), never shipped
to learners. Shared helpers for checks whose learner objects live in the kernel."""
from __future__ import annotations

import torch

from autograder import harness
from autograder.remote import run
from workbook.checks import Checks, choice_letters

COPY_WEIGHTS = 'common.copy_weights'
PARAMETERS = 'common.parameters'
SHAPES = 'common.shapes'


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
    """A call that runs harness snippet `code` in the learner's kernel, named after the
    learner's code it calls (`c.call` then reports its errors as that code's)."""
    def call():
        return run(code, **vars)
    call.__name__ = name
    return call


def here(snippet: str, **vars):
    """One more copy, in the judge, of what a harness snippet (its registered name) builds:
    the judge's half of `remote.twin`."""
    name = harness.name_of(snippet)
    scope = harness.scope(**vars)
    exec(compile(harness.code_of(name), f"<judge harness {name}>", "exec"), scope)
    return scope["result"]
