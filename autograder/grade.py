"""Grade a folder of submissions end to end.

    python -m autograder grade SUBMISSIONS --out DIR [--jobs N] [--notebooks 01_autoencoders ...]

SUBMISSIONS is a folder with one sub-folder per student (`SUBMISSIONS/<student>/NN_topic.ipynb`),
a `<student>.zip` of such a sub-folder, or a .zip of the whole folder.

Each student is graded in a course root of their own, outside the repository, copied from
a template that holds the config, the instructor notebooks and a gradebook in which
`nbgrader generate_assignment` registered every chapter. So every run starts from a clean
gradebook, students cannot touch each other's grades, and `--jobs N` grades N students at
once with results identical to a serial run.

Intake (autograder/intake.py) copies every notebook, as a regular file only, into
grader-only staging before anything reads it and validates it; a preflight grades the
instructor notebook (full marks) and the blank one (zero) in the same sandbox before any
student. Every stage of one submission is guarded: it can cost that submission's row,
never the run.

Writes DIR/grades.csv (student, notebook, score, max_score, status, detail), DIR/cells.csv
(one row per graded cell), DIR/timings.csv (seconds per stage, autograder/ledger.py),
DIR/feedback/<student>/<notebook>.html and prints a summary; all of it first into the run's
private folder: a student's pages, logs and state (DIR/.state) are copied to DIR when that
student is done, the CSVs and the class report at the end (autograder/outputs.py makes CSV
cells and HTML pages safe to open). A later run into the same DIR resumes it: rows whose
key (submission content, course version, settings, secret) is unchanged are kept
(`--only`, `--changed`, `--fresh`: `grade`). Exit code 0 when every submission was graded,
whatever the scores.

This module runs the whole thing: the run's secret and state, which rows to grade
(`plan_rows`), the preflight, and publishing each student's outputs. Each job it hands out
has a module of its own: intake.py (submissions and zips), seals.py (the template course
root, its seals and the run's secrets), student.py (one student's grading), backends.py
(threads or dask), confine.py (resource limits, process killing), outputs.py (output caps,
leak scrub, safe CSV and HTML), judge.py (the judge and, at its end, its lifecycle in the
grader), gradebook.py (scores and the verdict), feedback.py (feedback pages) and report.py
(the CSVs, the class report and the summary).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import authoring, ledger, sandbox, seals
from .backends import run_jobs
from .build import instructor_notebook, student_notebook
from .feedback import refresh_pages
from .intake import Submission, collect, learner_text, private_dir, read_regular
from .report import print_summary, write_reports
from .rows import Job, Result

KERNEL_MPLBACKEND = "module://matplotlib_inline.backend_inline"  # figures as PNG display data
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def grade(submissions: Path, out: Path, jobs: int = 1, chapters: list[str] | None = None,
          timeout: float = 900.0, secret: str | None = None, backend: str = "threads",
          scheduler: str | None = None, quiet: bool = False, preflight: bool = True,
          only: list[str] | None = None, changed: bool = False, fresh: bool = False) -> list[Result]:
    """Grade every submission; `backend` "threads" runs `jobs` students at once here,
    "dask" sends one task per student to a dask.distributed cluster (a local one with
    `jobs` workers, or the scheduler at `scheduler`; workers must see the same files).
    Hidden inputs come from a fresh random run secret (or `secret`, hex, to regrade a run
    exactly), stored in OUT/.secret (mode 0600) and, per student and notebook, derived
    for that notebook's judge only (`seals.student_secret`).
    With `preflight`, the instructor notebook and the blank student notebook are graded
    first in the same sandbox: PreflightError unless they score full marks and zero.

    Resume and regrade: into an OUT that holds an earlier run (OUT/.state), the run secret
    is OUT/.secret's (unless `secret` is given) and a row whose key (`ledger.row_key`: the
    submission's content, the course version, the settings, the secret) is unchanged is
    kept, not graded again; `only` (student ids) regrades those students whatever their
    keys; `changed` insists on an earlier run and lists what changed; `fresh` forgets the
    earlier run (and its secret). Either way OUT ends as a full run would leave it.
    Each student's outputs are written into the run's private (0700) scratch folder and
    copied into `out` (0700) when that student is done, with its state, so an interrupted
    run loses only the students in progress; grades.csv, cells.csv, timings.csv and the
    class report are written at the end."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = ledger.State(out)
    if fresh:
        shutil.rmtree(state.folder, ignore_errors=True)
    earlier = state.students()
    if changed and not earlier:
        raise ValueError(f"--changed: {out} holds no earlier run to compare with")
    stored_secret = out / ".secret"
    if secret is None and earlier and stored_secret.exists():
        secret = stored_secret.read_text().strip()
    run_secret = seals.new_run_secret(secret)
    if not stored_secret.exists() or stored_secret.read_text().strip() != run_secret:
        seals.store_run_secret(out, run_secret)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="workbook-grade-") as tmp:
        scratch = Path(tmp)
        os.chmod(scratch, 0o700)
        staged_out = private_dir(scratch / "out")
        _warn_if_readable(Path(submissions), quiet)
        students = collect(Path(submissions), scratch)
        if unknown := sorted(set(only or ()) - set(students)):
            raise ValueError(f"--only: no submission of {', '.join(map(learner_text, unknown))} in {submissions}")
        if chapters is None:  # the chapters anybody handed in
            names = {n[:-len(".ipynb")] for sub in students.values() for n in [*sub.notebooks, *sub.refused]
                     if n.endswith(".ipynb")}
            chapters = [c for c in authoring.chapter_names() if c in names] or authoring.chapter_names()
        # PYTHONWARNINGS: nbgrader scores a test cell 0 for any stderr, and a library
        # warning is not a learner's mistake. MPLBACKEND: matplotlib's inline backend (as in
        # Jupyter and `run`), so `plt.show()` puts each figure into the notebook as a PNG
        # (display data, never stderr) and the feedback page shows it.
        env_extra = {"WORKBOOK_PROFILE": "smoke", "WORKBOOK_OFFLINE": "1", "WORKBOOK_PROGRESS": "0",
                     "MPLBACKEND": KERNEL_MPLBACKEND,
                     "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1",
                     "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, jobs)))}
        bad_ids = {s for s in students if not STUDENT_ID.match(s)}
        plan = plan_rows({s: sub for s, sub in students.items() if s not in bad_ids}, chapters, state,
                         settings={"timeout": timeout, "profile": env_extra["WORKBOOK_PROFILE"],
                                   "secret": ledger.secret_fingerprint(run_secret)},
                         force=set(only or ()))
        if changed and not quiet:
            print(describe_plan(plan), file=sys.stderr)
        todo = sorted({ch for p in plan.values() for ch in p.todo}, key=chapters.index)
        results: list[Result] = []
        for sid in bad_ids:
            results += [Result(learner_text(sid, 64), ch, status="unreadable",
                               detail="student folder name must be letters, digits, '.', '_' or '-'")
                        for ch in chapters]
        if todo:
            template = scratch / "template"
            known = seals.make_template(template, todo)
            if preflight:
                run_preflight(known, template, scratch, env_extra, timeout, jobs, backend, scheduler, out, quiet,
                              run_secret)
            hidden = tuple(str(p.resolve()) for p in (Path(submissions), out))
            version = ledger.code_version()
            work = [Job(sid, students[sid], {ch: known[ch] for ch in p.todo}, template,
                        private_dir(scratch / "students"), staged_out, env_extra, timeout, run_secret, hidden,
                        version, f"{os.uname().nodename}:{os.getpid()}") for sid, p in plan.items() if p.todo]
            progress = ledger.Progress(len(work), quiet)

            def done(batch: list[Result]) -> None:
                sid = batch[0].student
                try:  # publishing one student's outputs costs at most that student's pages
                    publish_student(staged_out, out, sid, plan[sid].todo, whole=not plan[sid].kept)
                    record_student(state, plan[sid], batch)
                except Exception as e:  # noqa: BLE001
                    for r in batch:
                        r.detail = "; ".join(d for d in [r.detail, "the grader could not publish this student's "
                                                         f"pages and logs ({type(e).__name__})"] if d)
                progress.finished(batch)

            try:
                batches = run_jobs(work, jobs, backend, scheduler, on_done=done)
            finally:
                progress.close()
            graded_now = {b[0].student: b for b in batches if b}
        else:
            graded_now = {}
        for sid, p in plan.items():
            results += sorted([*p.kept.values(), *graded_now.get(sid, [])], key=lambda r: chapters.index(r.notebook))
        results.sort(key=lambda r: (r.student, r.notebook))
        for r in results:  # ids not plain or alike, flagged in grades.csv and every export
            r.flag = students[r.student].flag if r.student in students else ""
        forget_students(out, state, set(earlier) - set(plan))
        t_report = time.perf_counter()
        write_reports(results, staged_out, earlier=out)
        share = (time.perf_counter() - t_report) / max(1, len(results))
        for r in results:
            if not r.reused:
                r.timings["report"] = share
        ledger.write_timings(results, staged_out / "timings.csv")
        for name in ("grades.csv", "cells.csv", "written.csv", "report.html", "report.csv", "timings.csv"):
            if (staged_out / name).exists():
                shutil.copyfile(staged_out / name, out / name)
        try:  # the points awarded in written.csv (kept for unchanged answers) onto the pages
            refresh_pages(out)
        except (ValueError, OSError) as e:
            print(f"warning: the feedback pages show no awarded written points: {e}", file=sys.stderr)
    if not quiet:
        print_summary(results, time.time() - t0)
    return results


@dataclass
class Plan:
    """One student's rows in this run: kept from the earlier run, or to grade now."""
    keys: dict[str, str]                                  # notebook -> row key
    kept: dict[str, Result] = field(default_factory=dict)  # notebook -> the stored row
    todo: list[str] = field(default_factory=list)          # notebooks to grade
    why: dict[str, str] = field(default_factory=dict)      # notebook -> new, changed, forced


def plan_rows(students: dict[str, Submission], chapters: list[str], state: "ledger.State", settings: dict,
              force: set[str] = frozenset()) -> dict[str, Plan]:
    """Which rows an earlier run into the same OUT already holds (same key) and which to grade."""
    version = ledger.course_version()
    plans = {}
    for sid, sub in students.items():
        plan = plans[sid] = Plan({ch: ledger.row_key(sub, ch, chapters, version, settings) for ch in chapters})
        rows = state.load(sid)
        for ch in chapters:
            row = rows.get(ch) if isinstance(rows.get(ch), dict) else None
            if sid not in force and row and row.get("key") == plan.keys[ch]:
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    plan.kept[ch] = ledger.restored(row["result"], Result)
                    continue
            plan.todo.append(ch)
            plan.why[ch] = "forced" if sid in force else "changed" if row else "new"
    return plans


def describe_plan(plans: dict[str, Plan]) -> str:
    """What a regrade will do, for the instructor."""
    kept = sum(len(p.kept) for p in plans.values())
    rows = [f"  {sid}/{ch}: {p.why[ch]}" for sid, p in sorted(plans.items()) for ch in p.todo]
    return f"{len(rows)} notebook(s) to grade, {kept} unchanged and kept" + ("\n" + "\n".join(rows) if rows else "")


def record_student(state: "ledger.State", plan: Plan, batch: list[Result]) -> None:
    """Store a finished student's rows with their keys, except rows the grader itself failed
    on (a resumed run tries those again)."""
    sid = batch[0].student
    rows = {ch: v for ch, v in state.load(sid).items() if ch not in plan.todo}
    rows.update({r.notebook: {"key": plan.keys[r.notebook], "result": ledger.stored(r)} for r in batch
                 if not r.detail.startswith("the grader failed")})
    state.save(sid, rows)


def publish_student(staged: Path, out: Path, sid: str, notebooks: list[str], whole: bool) -> None:
    """Replace one student's feedback pages and logs of `notebooks` in `out` by this run's
    (a page that this run did not make is removed); with `whole`, the student's folders
    are this run's alone."""
    for kind in ("feedback", "logs"):
        dest = out / kind / sid
        if whole:
            shutil.rmtree(dest, ignore_errors=True)
        for ch in notebooks:
            (dest / f"{ch}.{'html' if kind == 'feedback' else 'log'}").unlink(missing_ok=True)
        src = staged / kind / sid
        if not src.is_dir():
            continue
        for f in sorted(src.iterdir()):
            private_dir(dest)
            if f.name == "grader-error.log" and not whole and (dest / f.name).exists():
                with open(dest / f.name, "a") as log:
                    log.write(f.read_text())
            else:
                shutil.copyfile(f, dest / f.name)


def forget_students(out: Path, state: "ledger.State", gone: set[str]) -> None:
    """Students of an earlier run who are no longer in SUBMISSIONS: their state and pages go."""
    for sid in gone:
        if STUDENT_ID.match(sid):
            state.forget(sid)
            shutil.rmtree(out / "feedback" / sid, ignore_errors=True)


def publish(staged: Path, out: Path) -> None:
    """Copy the run's outputs from its private folder into `out` (folders 0700)."""
    for src in sorted(staged.rglob("*")):
        dest = out / src.relative_to(staged)
        if src.is_dir():
            private_dir(dest)
        else:
            private_dir(dest.parent)
            shutil.copyfile(src, dest)


def _warn_if_readable(submissions: Path, quiet: bool) -> None:
    """Kernels run as other users: a submissions folder others can read is readable to them."""
    try:
        folder = submissions.resolve()
        open_to_all = all(p.stat().st_mode & 0o001 for p in [folder, *folder.parents]) \
            and folder.stat().st_mode & 0o004
    except OSError:
        return
    if open_to_all and not quiet and sandbox.capabilities().user:
        print(f"warning: {submissions} can be read by every user of this machine, the grading kernels'"
              " users included: make it private (chmod 700) before grading", file=sys.stderr)


# ----------------------------------------------------------------------------- preflight

class PreflightError(RuntimeError):
    """The grader fails its own reference: no student is graded."""


def run_preflight(known: dict[str, seals.Chapter], template: Path, scratch: Path, env_extra: dict, timeout: float,
                  jobs: int, backend: str, scheduler: str | None, out: Path, quiet: bool,
                  run_secret: str = "") -> float:
    """Grade the instructor notebook and the blank student notebook of every chapter in the
    run's own sandbox, judge and template; raise PreflightError naming every cell that is
    off (the reference must get full marks, the blank zero). Returns the seconds it took."""
    t0 = time.time()
    home = private_dir(scratch / "preflight")
    refs = {"preflight-reference": instructor_notebook,
            "preflight-blank": student_notebook}
    work = []
    for sid, where in refs.items():
        sub = Submission(sid)
        folder = private_dir(home / "intake" / sid)
        for ch in known:
            copy = folder / f"{ch}.ipynb"
            copy.write_bytes(read_regular(where(ch)))
            sub.notebooks[copy.name] = copy
        work.append(Job(sid, sub, known, template, private_dir(home / "students"), private_dir(home / "out"),
                        env_extra, timeout, run_secret))
    reference, blank = run_jobs(work, min(max(jobs, 1), 2), backend, scheduler)
    seconds = time.time() - t0
    if problems := preflight_problems(reference, blank):
        publish(home / "out", out / "preflight")
        raise PreflightError("preflight failed, no student was graded (the grader itself is broken; logs in "
                             f"{out / 'preflight'}):\n  " + "\n  ".join(problems))
    if not quiet:
        print(f"preflight: reference full marks, blank zero, {len(known)} chapter(s), in {seconds:.1f} s")
    return seconds


def preflight_problems(reference: list[Result], blank: list[Result]) -> list[str]:
    """What is off: reference notebooks short of full marks (cells and their messages),
    blank notebooks above zero (cells), either not graded at all."""
    problems = []
    for r in reference:
        if r.status != "graded":
            problems.append(f"instructor notebook {r.notebook}: {r.status} ({r.detail})")
        elif r.max_score <= 0 or r.score < r.max_score:
            lost = [f"{c} {s:g}/{m:g}" + (f" ({r.messages[c]})" if c in r.messages else "")
                    for c, s, m in r.cells if s < m]
            problems.append(f"instructor notebook {r.notebook} scored {r.score:g}/{r.max_score:g}; lost: "
                            + ("; ".join(lost) or "no graded cell recorded"))
    for r in blank:
        if r.status != "graded":
            problems.append(f"blank student notebook {r.notebook}: {r.status} ({r.detail})")
        elif r.score > 0:
            problems.append(f"blank student notebook {r.notebook} scored {r.score:g} (should be 0): "
                            + ", ".join(f"{c} {s:g}/{m:g}" for c, s, m in r.cells if s > 0))
    return problems
