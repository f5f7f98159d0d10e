"""Hidden checks: run only while grading, never shipped to learners."""
from __future__ import annotations

from workbook.checks import Checks


def grade_choice(name: str, answer, want) -> None:
    """A multiple-choice answer against the reference's: a set of letters in any container
    (set, list, tuple; a lone letter counts as a set of one), or one letter (a set of one
    letter counts as that letter)."""
    c = Checks(f"{name} (hidden)")
    got = set(answer) if isinstance(answer, (set, frozenset, list, tuple)) else answer
    if isinstance(want, (set, frozenset)) and isinstance(got, str):
        got = {got}
    if isinstance(want, str) and isinstance(got, set) and len(got) == 1:
        got = next(iter(got))
    c.true(got == want, f"{name} is not right", hint="re-read the question and the chapter's section on it")
    c.done()
