"""Learner mistakes ("mutants") and correct alternatives, applied to the reference source.

A chapter's catalogue lives in `autograder/chapters/NN_<topic>/mistakes.py` as two lists:

    MISTAKES = [Mistake("pca", "pca_fit", old="X - mean", new="X", diagnosis="...")]
    ALTERNATIVES = [Alternative("pca", "pca_fit", source="def pca_fit(X, k): ...")]

A Mistake replaces `old` (which must occur exactly once in the definition) by `new` in
one definition of the chapter's `solutions.py`. The same catalogue serves three purposes:
hidden checks call the mutants on their own inputs to recognise a mistake and name it;
tests prove every mistake loses its exercise's points; and the report command counts
mistakes caught and alternatives passed.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

from . import chapters
from .authoring import SolutionSource, solutions_path


@dataclass(frozen=True)
class Mistake:
    exercise: str      # grade_id of the test cell that must lose its points
    target: str        # name of the definition in the solutions module
    old: str           # text replaced (exactly one occurrence in the definition)
    new: str
    diagnosis: str     # what the learner is told when the checks recognise it
    diagnosed: bool = True  # False: the checks catch it but cannot name it
    expect: str | None = None  # regex the failure message must match (default: the diagnosis)

    def recognised_in(self, message: str) -> bool:
        pattern = self.expect if self.expect is not None else re.escape(self.diagnosis)
        return re.search(pattern, message, re.I) is not None


@dataclass(frozen=True)
class Alternative:
    exercise: str
    target: str
    source: str        # a full replacement definition that must keep full marks
    note: str = ""


def catalogue(chapter: str):
    """(MISTAKES, ALTERNATIVES) of a chapter such as '01_autoencoders'."""
    mod = chapters.module(chapter, "mistakes")
    return mod.MISTAKES, mod.ALTERNATIVES


def _definition_text(src: SolutionSource, name: str) -> str:
    node = src.nodes[name]
    return "\n".join(src.lines[node.lineno - 1:node.end_lineno])


def apply(chapter: str, target: str, old: str | None = None, new: str | None = None,
          source: str | None = None) -> str:
    """The solutions module's text with one definition changed."""
    src = SolutionSource(solutions_path(chapter))
    if target not in src.nodes:
        raise KeyError(f"{chapter}: no definition {target!r} in the solutions")
    text = _definition_text(src, target)
    if source is not None:
        changed = source.strip("\n")
    else:
        if text.count(old) != 1:
            raise ValueError(f"{chapter}/{target}: {old!r} occurs {text.count(old)} times, need exactly 1")
        changed = text.replace(old, new)
    ast.parse(changed)
    return src.text.replace(text, changed, 1)


@lru_cache(maxsize=None)
def namespace(chapter: str, target: str, old: str | None = None, new: str | None = None,
              source: str | None = None) -> SimpleNamespace:
    """The changed solutions module, executed: attributes are its definitions."""
    code = apply(chapter, target, old, new, source)
    scope: dict = {"__name__": f"mutant_{chapter}_{target}"}
    exec(compile(code, f"<mutant of {target}>", "exec"), scope)
    return SimpleNamespace(**scope)


def known_mistakes(chapter: str, target: str, run) -> dict[str, object]:
    """{diagnosis: run(mutant definition)} for every diagnosed mistake of `target`;
    mistakes whose mutant raises on these inputs are left out."""
    out = {}
    for m in catalogue(chapter)[0]:
        if m.target != target or not m.diagnosed:
            continue
        try:
            out[m.diagnosis] = run(getattr(namespace(chapter, m.target, m.old, m.new), target))
        except Exception:
            pass
    return out
