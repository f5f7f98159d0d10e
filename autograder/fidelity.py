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
import functools
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
             if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}
    if hidden_only:
        tests = {gid: src[src.index(HIDDEN):] if HIDDEN in src else "" for gid, src in tests.items()}
    return setup, tests


@functools.lru_cache(maxsize=None)
def _setup_cell(chapter: str) -> str:
    return _cells(chapter)[0]


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
    grade(out / "submissions", out / "graded", jobs=jobs, chapters=chapters, preflight=False)  # checked per case
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


# ----------------------------------------------------------------------------- under many secrets

SWEEP_PREFIX = "fidelity-sweep"


@dataclass
class SweepRow:
    exercise: str
    reference: list[int]       # [passed, tried]
    alternatives: list[int]    # [passed, tried] over every (alternative, secret)
    mistakes: list[int]        # [caught, tried] over every (mistake, secret)
    worst_mistake: tuple[float, str] = (1.0, "")   # lowest catch rate of one mistake, and which
    unfair: list[str] | None = None                # "reference/alternative: secret i: message"


def _scope(chapter: str, module_text: str) -> dict:
    """The setup cell and a solutions text, executed once: what each test cell runs in."""
    setup = _setup_cell(chapter)
    scope: dict = {"__name__": "__fidelity__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(setup, "<setup cell>", "exec"), scope)
        exec(compile(module_text, "<solutions>", "exec"), scope)
    return scope


def _run_cell(scope: dict, gid: str, src: str) -> str:
    """'' when the cell passed, else its failure message."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(src, f"<test cell {gid}>", "exec"), dict(scope))
        return ""
    except BaseException as e:  # noqa: BLE001 - any failure loses the points
        return f"{type(e).__name__}: {e}"


def _problem_line(msg: str) -> str:
    """The line of a failure message that says what is wrong (the one naming the check)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    named = [ln for ln in lines if "] " in ln and not ln.startswith(("input:", "expected:", "got:"))]
    return ((named or lines or [""])[-1])[:200]


def sweep_chapter(chapter: str, n_secrets: int, first: int = 0) -> dict[str, SweepRow]:
    """The hidden checks of one chapter under `n_secrets` grading secrets
    (`WORKBOOK_HIDDEN_SEED` = fidelity-sweep-<i>): the reference and every correct
    alternative must pass every hidden cell under every secret (a verdict must not depend on
    the secret); each catalogued mistake is counted as caught under a secret when the hidden
    checks of its exercise fail. Hidden blocks only: the visible checks do not depend on the
    secret. Each catalogue entry runs its own exercise's cell (the reference runs them all)."""
    import os

    _, tests = _cells(chapter, hidden_only=True)
    tests = {g: s for g, s in tests.items() if s}
    mistakes, alternatives = mutants.catalogue(chapter)
    rows = {g: SweepRow(g, [0, 0], [0, 0], [0, 0], unfair=[]) for g in tests}
    entries = [("reference", None, _scope(chapter, authoring.solutions_path(chapter).read_text()), list(tests))]
    entries += [("alternative", a, _scope(chapter, mutants.apply(chapter, a.target, source=a.source)), [a.exercise])
                for a in alternatives]
    entries += [("mistake", m, _scope(chapter, mutants.apply(chapter, m.target, m.old, m.new)), [m.exercise])
                for m in mistakes]
    saved = os.environ.get("WORKBOOK_HIDDEN_SEED")
    caught: dict[int, int] = {}
    try:
        for i in range(first, first + n_secrets):
            os.environ["WORKBOOK_HIDDEN_SEED"] = f"{SWEEP_PREFIX}-{i}"
            for k, (kind, item, scope, cells) in enumerate(entries):
                for gid in cells:
                    if gid not in tests:
                        continue
                    msg = _run_cell(scope, gid, tests[gid])
                    row = rows[gid]
                    if kind == "mistake":
                        row.mistakes[0] += bool(msg)
                        row.mistakes[1] += 1
                        caught[k] = caught.get(k, 0) + bool(msg)
                        continue
                    tally = row.reference if kind == "reference" else row.alternatives
                    tally[0] += not msg
                    tally[1] += 1
                    if msg and len(row.unfair) < 5:
                        who = "reference" if item is None else f"alternative {item.target}: {item.note or ''}"
                        row.unfair.append(f"{who}: secret {i}: {_problem_line(msg)}")
    finally:
        if saved is None:
            os.environ.pop("WORKBOOK_HIDDEN_SEED", None)
        else:
            os.environ["WORKBOOK_HIDDEN_SEED"] = saved
    for k, (kind, item, _, _) in enumerate(entries):
        if kind == "mistake" and item.exercise in rows:
            rate = caught.get(k, 0) / n_secrets
            row = rows[item.exercise]
            if rate < row.worst_mistake[0] or (rate < 1.0 and not row.worst_mistake[1]):
                row.worst_mistake = (rate, f"{item.target}: {item.diagnosis[:80]}")
    return rows


def _merge(parts: list[dict[str, SweepRow]], n_secrets: int) -> dict[str, SweepRow]:
    """Rows of several secret ranges of one chapter, added up (the weakest mistake's rate
    is recomputed from its per-range rates, weighted by the range sizes)."""
    out: dict[str, SweepRow] = {}
    for part, size in parts:
        for gid, r in part.items():
            o = out.setdefault(gid, SweepRow(gid, [0, 0], [0, 0], [0, 0], (1.0, ""), []))
            for mine, theirs in ((o.reference, r.reference), (o.alternatives, r.alternatives), (o.mistakes, r.mistakes)):
                mine[0] += theirs[0]
                mine[1] += theirs[1]
            o.unfair = (o.unfair + (r.unfair or []))[:5]
            # a conservative bound: the weakest mistake of a range counted over its range
            w = 1.0 - (1.0 - r.worst_mistake[0]) * size / n_secrets
            if r.worst_mistake[1] and w < o.worst_mistake[0]:
                o.worst_mistake = (w, r.worst_mistake[1])
    return out


def _sweep_part(args):
    chapter, n, first = args
    import os
    os.environ.setdefault("WORKBOOK_PROFILE", "smoke")
    return sweep_chapter(chapter, n, first), n


def sweep_report(chapters: list[str] | None, n_secrets: int, min_catch: float = 0.99, jobs: int = 1) -> int:
    """Print, per graded cell, the pass rate of the reference and of the alternatives and
    the catch rate of the mistakes across `n_secrets` secrets; returns 1 when a reference
    or an alternative fails under any secret, or a mistake is caught under fewer than
    `min_catch` of them. `jobs` processes share the secrets of each chapter."""
    import time
    from concurrent.futures import ProcessPoolExecutor

    bad = 0
    t0 = time.time()
    chunk = -(-n_secrets // max(jobs, 1))
    with ProcessPoolExecutor(max_workers=max(jobs, 1)) as pool:
        for ch in chapters or authoring.chapter_names():
            t1 = time.time()
            ranges = [(ch, min(chunk, n_secrets - f), f) for f in range(0, n_secrets, chunk)]
            parts = list(pool.map(_sweep_part, ranges)) if jobs > 1 else [_sweep_part(r) for r in ranges]
            rows = _merge(parts, n_secrets)
            print(f"== {ch} ({n_secrets} secrets, {time.time() - t1:.0f} s)", flush=True)
            for gid, r in rows.items():
                fair = r.reference[0] == r.reference[1] and r.alternatives[0] == r.alternatives[1]
                strong = r.worst_mistake[0] >= min_catch
                bad += (not fair) + (not strong)
                frac = (lambda t: f"{t[0]}/{t[1]}")
                weakest = f", weakest mistake caught under {r.worst_mistake[0]:.1%} ({r.worst_mistake[1]})" \
                    if r.worst_mistake[1] else ""
                print(f"  {'ok ' if fair and strong else 'BAD'} {gid}: reference {frac(r.reference)}, "
                      f"alternatives {frac(r.alternatives)}, mistakes caught {frac(r.mistakes)}{weakest}")
                for line in r.unfair or []:
                    print(f"      unfair: {line}")
    print(f"{time.time() - t0:.0f} s in all; {bad} problem(s)")
    return 1 if bad else 0
