"""Prove the checks against the mistake catalogue (fast path, no nbgrader).

For every Mistake: the chapter's test cells (visible + hidden) run against the solutions
with that one mistake applied; its exercise must fail, with the diagnosis in the message
when the mistake is marked diagnosed, and every other exercise must still pass. For every
Alternative: all test cells must pass.

    python -m autograder fidelity [--only 01]
    python -m autograder fidelity --pipeline [--only NN_topic ...] [--jobs 2] [--limit K] [--out DIR]

The second form grades one submission per mistake and alternative with the real grading
command (nbgrader, smoke profile) and checks the scores and the feedback.

Test cells may use only the names their notebook's first code cell imports and the
definitions of the solutions module (docs/AUTHORING.md).
"""
from __future__ import annotations

import contextlib
import html
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


HIDDEN = "### BEGIN HIDDEN TESTS"


def _cells(chapter: str, hidden_only: bool = False):
    """The setup cell and {grade_id: test cell source}; with `hidden_only` each test cell
    keeps only its hidden block (what a submission that hard-codes the visible cases faces)."""
    nb = authoring.build_instructor_notebook(chapter)
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata)
    tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    if hidden_only:
        tests = {gid: src[src.index(HIDDEN):] if HIDDEN in src else "" for gid, src in tests.items()}
    return setup, tests


def run_tests(chapter: str, module_text: str, hidden_only: bool = False) -> dict[str, str]:
    """{test cell id: '' if it passed else its failure message} for one solutions text."""
    setup, tests = _cells(chapter, hidden_only)
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


def check_chapter(chapter: str, hidden_only: bool = False) -> list[Outcome]:
    """Every catalogued mistake must fail exactly its exercise (with its diagnosis), every
    alternative must pass. With `hidden_only`, the visible checks are left out and a mistake
    counts as caught when the hidden checks alone fail its exercise."""
    mistakes, alternatives = mutants.catalogue(chapter)
    outcomes = []
    for m in mistakes:
        res = run_tests(chapter, mutants.apply(chapter, m.target, m.old, m.new), hidden_only)
        failed = [g for g, msg in res.items() if msg]
        msg = res.get(m.exercise, "")
        ok = failed == [m.exercise] and (hidden_only or not m.diagnosed or m.recognised_in(msg))
        outcomes.append(Outcome("mistake", m.exercise, f"{m.target}: {m.diagnosis}", failed, msg, ok))
    for a in alternatives:
        res = run_tests(chapter, mutants.apply(chapter, a.target, source=a.source), hidden_only)
        failed = [g for g, msg in res.items() if msg]
        outcomes.append(Outcome("alternative", a.exercise, f"{a.target}: {a.note or 'alternative'}",
                                failed, "; ".join(res[g] for g in failed)[:300], not failed))
    return outcomes


def report(chapters: list[str] | None = None, hidden_only: bool = False) -> int:
    bad = 0
    if hidden_only:
        print("visible checks left out: what the hidden checks alone catch")
    for ch in chapters or authoring.chapter_names():
        try:
            outcomes = check_chapter(ch, hidden_only)
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


# ----------------------------------------------------------------------------- through the real pipeline

@dataclass
class Case:
    student: str           # submission id
    chapter: str
    kind: str              # "mistake" | "alternative"
    exercise: str
    name: str
    mistake: mutants.Mistake | None = None


def write_submissions(chapters: list[str], folder, limit: int | None = None) -> list[Case]:
    """One submission per catalogued mistake and alternative: the instructor notebook with
    the solution cells rebuilt from the changed solutions module. `limit`: at most that many
    mistakes and that many alternatives per chapter (the first ones of distinct exercises first)."""
    from pathlib import Path
    folder = Path(folder)
    cases: list[Case] = []
    for ch in chapters:
        mistakes, alternatives = mutants.catalogue(ch)
        picked = []
        for kind, items in (("mistake", mistakes), ("alternative", alternatives)):
            if limit is not None:  # spread over exercises: one per exercise, round-robin
                by_ex: dict[str, list] = {}
                for it in items:
                    by_ex.setdefault(it.exercise, []).append(it)
                order = [lst[i] for i in range(max(map(len, by_ex.values()), default=0))
                         for lst in by_ex.values() if i < len(lst)]
                items = order[:limit]
            picked += [(kind, it) for it in items]
        for i, (kind, it) in enumerate(picked):
            sid = f"{ch[:2]}-{kind[0]}{i:03d}"
            if kind == "mistake":
                text = mutants.apply(ch, it.target, it.old, it.new)
                name = f"{it.target}: {it.diagnosis}"
            else:
                text = mutants.apply(ch, it.target, source=it.source)
                name = f"{it.target}: {it.note or 'alternative'}"
            nb = authoring.build_instructor_notebook(ch, solutions_text=text)
            (folder / sid).mkdir(parents=True, exist_ok=True)
            authoring.write_notebook(nb, folder / sid / f"{ch}.ipynb")
            cases.append(Case(sid, ch, kind, it.exercise, name, it if kind == "mistake" else None))
    return cases


def pipeline_report(chapters: list[str] | None, out, jobs: int = 2, limit: int | None = None) -> int:
    """Grade one submission per catalogued mistake and alternative with the grading command
    (nbgrader, smoke profile), then check: a mistake loses the points of its exercise and
    only those, with its diagnosis in the learner's feedback; an alternative keeps full marks.
    Prints the report per exercise; returns 0 when every case holds."""
    import csv
    import time
    from pathlib import Path

    from .grade import grade

    out = Path(out)
    chapters = chapters or authoring.chapter_names()
    t0 = time.time()
    cases = write_submissions(chapters, out / "submissions", limit)
    print(f"grading {len(cases)} submissions ({', '.join(chapters)}) with {jobs} job(s) ...", flush=True)
    grade(out / "submissions", out / "graded", jobs=jobs, chapters=chapters)
    failed: dict[tuple[str, str], set[str]] = {}  # (student, notebook) -> cells that lost points
    for row in csv.DictReader(open(out / "graded" / "cells.csv")):
        if float(row["score"]) < float(row["max_score"]):
            failed.setdefault((row["student"], row["notebook"]), set()).add(row["cell"])
    # each submission holds one notebook: the others are "missing" and say nothing about it
    status = {(r["student"], r["notebook"]): r["status"]
              for r in csv.DictReader(open(out / "graded" / "grades.csv"))}
    bad = 0
    for ch in chapters:
        print(f"== {ch}")
        mine = [c for c in cases if c.chapter == ch]
        for ex in sorted({c.exercise for c in mine}):
            here = [c for c in mine if c.exercise == ex]
            lines, n_mu, ok_mu, n_al, ok_al = [], 0, 0, 0, 0
            for c in here:
                lost = failed.get((c.student, ch), set())
                st = status.get((c.student, ch))
                feedback = out / "graded" / "feedback" / c.student / f"{ch}.html"
                text = html.unescape(feedback.read_text()) if feedback.exists() else ""
                if c.kind == "mistake":
                    n_mu += 1
                    ok = st == "graded" and lost == {ex} and (
                        not c.mistake.diagnosed or c.mistake.recognised_in(text))
                    ok_mu += ok
                else:
                    n_al += 1
                    ok = st == "graded" and not lost
                    ok_al += ok
                bad += not ok
                lines.append(f"    {'ok ' if ok else 'BAD'} {c.kind} [{c.student}] {c.name}"
                             + ("" if ok else f"  (status {st}, cells lost {sorted(lost)})"))
            print(f"  {ex}: mistakes caught {ok_mu}/{n_mu}, alternatives passed {ok_al}/{n_al}")
            print("\n".join(lines))
    print(f"{len(cases)} submissions in {time.time() - t0:.0f} s; {bad} case(s) not as expected")
    return 1 if bad else 0
