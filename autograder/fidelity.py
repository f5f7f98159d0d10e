"""Prove the checks against the mistake catalogue (fast path, no nbgrader).

For every Mistake: the chapter's test cells (visible + hidden) run against the solutions
with that one mistake applied; its exercise must fail, with the diagnosis in the message
when the mistake is marked diagnosed, and every other exercise must still pass. For every
Alternative: all test cells must pass.

    python -m autograder fidelity [--only 01]

Test cells may use only the names their notebook's first code cell imports and the
definitions of the solutions module (docs/AUTHORING.md).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from . import authoring, mutants


@dataclass
class Outcome:
    kind: str              # "mistake" | "alternative"
    exercise: str
    name: str              # what was changed
    failed: list[str]      # test cells that failed
    message: str           # the failure message of the exercise's cell ('' if it passed)
    ok: bool


def _cells(chapter: str):
    nb = authoring.build_instructor_notebook(chapter)
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata)
    tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    return setup, tests


def run_tests(chapter: str, module_text: str) -> dict[str, str]:
    """{test cell id: '' if it passed else its failure message} for one solutions text."""
    setup, tests = _cells(chapter)
    scope: dict = {"__name__": "__fidelity__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(setup, "<setup cell>", "exec"), scope)
        exec(compile(module_text, "<solutions>", "exec"), scope)
        results = {}
        for gid, src in tests.items():
            try:
                exec(compile(src, f"<test cell {gid}>", "exec"), dict(scope))
                results[gid] = ""
            except BaseException as e:  # noqa: BLE001 - any failure loses the points
                results[gid] = f"{type(e).__name__}: {e}"
    return results


def check_chapter(chapter: str) -> list[Outcome]:
    mistakes, alternatives = mutants.catalogue(chapter)
    outcomes = []
    for m in mistakes:
        res = run_tests(chapter, mutants.apply(chapter, m.target, m.old, m.new))
        failed = [g for g, msg in res.items() if msg]
        msg = res.get(m.exercise, "")
        ok = failed == [m.exercise] and (not m.diagnosed or m.recognised_in(msg))
        outcomes.append(Outcome("mistake", m.exercise, f"{m.target}: {m.diagnosis}", failed, msg, ok))
    for a in alternatives:
        res = run_tests(chapter, mutants.apply(chapter, a.target, source=a.source))
        failed = [g for g, msg in res.items() if msg]
        outcomes.append(Outcome("alternative", a.exercise, f"{a.target}: {a.note or 'alternative'}",
                                failed, "; ".join(res[g] for g in failed)[:300], not failed))
    return outcomes


def report(chapters: list[str] | None = None) -> int:
    bad = 0
    for ch in chapters or authoring.chapter_names():
        try:
            outcomes = check_chapter(ch)
        except ModuleNotFoundError:
            print(f"{ch}: no mistake catalogue")
            continue
        print(f"== {ch}")
        for ex in sorted({o.exercise for o in outcomes}):
            mine = [o for o in outcomes if o.exercise == ex]
            mu = [o for o in mine if o.kind == "mistake"]
            al = [o for o in mine if o.kind == "alternative"]
            print(f"  {ex}: mistakes caught {sum(o.ok for o in mu)}/{len(mu)}, "
                  f"alternatives passed {sum(o.ok for o in al)}/{len(al)}")
            for o in mine:
                mark = "ok " if o.ok else "BAD"
                shown = o.message.splitlines()[-1].strip() if o.message else ""
                print(f"    {mark} {o.kind}: {o.name}" + (f"\n          learner sees: {shown}" if shown else "")
                      + ("" if o.ok else f"\n          failed cells: {o.failed}"))
            bad += sum(not o.ok for o in mine)
    return 1 if bad else 0
