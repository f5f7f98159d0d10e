"""One student's grading: every notebook of their submission, in a course root of their own.

`grade_student` copies the template course root, checks each staged notebook
(`_intake_row`), grades it (`autograde`: nbgrader in a sandbox slot with its judge, then the
autograded notebook checked and cleaned), reads the scores, enforces the verdict and writes
the feedback pages. Every stage is guarded: a failure costs that notebook's row (status
`crashed`, the traceback in the log), never the run.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import confine, forked, integrity, ledger, outputs, sandbox
from .build import tool_env
from .feedback import sanitize_for_feedback, write_feedback
from .gradebook import enforce_verdict, read_scores
from .intake import (Submission, check_notebook, drop_duplicated_locked_cells, learner_text, parse_notebook,
                     private_dir, read_regular)
from .judge import apply_judge, judge_for
from .rows import Job, Result
from .seals import cell_source, student_secret


def grade_student(job: Job) -> list[Result]:
    """One row per chapter for this student, whatever the submission does: every stage
    (intake checks, grading, scores, verdict, feedback) of every notebook is guarded, so a
    failure costs that notebook (status `crashed`, the traceback in the log), never the run."""
    results = [Result(job.sid, ch) for ch in job.chapters]
    watch = {res.notebook: ledger.Stopwatch() for res in results}
    try:
        if job.course and job.grader != f"{os.uname().nodename}:{os.getpid()}" and ledger.code_version() != job.course:
            raise RuntimeError(f"this worker ({os.uname().nodename}) has another version of the course than the "
                               "grader (instructor sources, hidden checks, solutions or grader code differ)")
        root = job.work / job.sid
        with _shared(watch, "setup"):
            shutil.copytree(job.template, root)
        verdicts = {}
        for res in results:
            src = None
            with _guard(job, res, "checking the notebook"), watch[res.notebook]("intake"):
                src = _intake_row(job.submission, res, job.chapters)
            if src is not None:
                with _guard(job, res, "grading"):
                    verdicts[res.notebook] = autograde(job, root, res, src, watch[res.notebook])
        with _guard(job, None, "reading the scores", results), _shared(watch, "scores"):
            read_scores(root, results, {ch: set(c.written) for ch, c in job.chapters.items()})
        for res in results:
            if res.notebook in verdicts:
                with _guard(job, res, "checking the verdict"), watch[res.notebook]("integrity"):
                    enforce_verdict(root, res, verdicts[res.notebook])
        write_feedback(job, root, results, watch)
    except Exception:  # noqa: BLE001 - the last net: the row says so, the run goes on
        _grader_failed(job, results, "grading this submission")
    for res in results:
        res.detail = learner_text(res.detail, 2000)
        res.timings = watch[res.notebook].seconds
        res.where = {"host": os.uname().nodename, "pid": os.getpid(), **res.where}
    return results


@contextmanager
def _shared(watch: dict[str, "ledger.Stopwatch"], stage: str):
    """A stage done once for all of a student's notebooks: its seconds split evenly."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        for w in watch.values():
            w.add(stage, (time.perf_counter() - t0) / max(1, len(watch)))


def _intake_row(sub: Submission, res: Result, chapters) -> Path | None:
    """The staged notebook to grade for this row, or None with status and detail set."""
    src = sub.notebooks.get(f"{res.notebook}.ipynb")
    if sub.problem:
        res.status, res.detail = "unreadable", sub.problem
    elif src is None and f"{res.notebook}.ipynb" in sub.refused:
        res.status, res.detail = "unreadable", sub.refused[f"{res.notebook}.ipynb"]
    elif src is None:
        others = sorted(learner_text(n, 60) for n in sub.notebooks if not any(n == f"{c}.ipynb" for c in chapters))
        links = sorted(why for name, why in sub.refused.items() if not any(name == f"{c}.ipynb" for c in chapters))[:3]
        res.status = "missing"
        res.detail = "; ".join([f"no {res.notebook}.ipynb"] + ([f"found {', '.join(others[:10])} (renamed?)"] if others else [])
                               + links)
    elif bad := check_notebook(src):
        res.status, res.detail = "unreadable", bad
    else:
        return src
    return None


@contextmanager
def _guard(job: Job, res: Result | None, stage: str, results: list[Result] | None = None):
    try:
        yield
    except Exception:  # noqa: BLE001 - one notebook's failure is that notebook's row
        _grader_failed(job, [res] if res else results or [], stage)


def _grader_failed(job: Job, results: list[Result], stage: str) -> None:
    """Rows of a notebook the grader itself failed on: status `crashed`, the traceback in
    logs/<student>/grader-error.log (the row names no internals)."""
    import traceback

    log = job.out / "logs" / job.sid / "grader-error.log"
    with contextlib.suppress(OSError):
        private_dir(log.parent)
        with open(log, "a") as f:
            f.write(outputs.log_text(f"--- {stage}\n{traceback.format_exc()}\n"))
    for res in results:
        if res.status in ("graded", "timed out"):
            res.status, res.score, res.cells = "crashed", 0.0, []
            res.detail = f"the grader failed while {stage}; see logs/{job.sid}/grader-error.log"


def autograde(job: Job, root: Path, res: Result, src: Path, watch: "ledger.Stopwatch | None" = None) -> integrity.Verdict:
    """Run nbgrader autograde on one notebook in a sandbox slot, then check and clean the
    autograded notebook. Sets status and detail (and where it ran); returns the integrity
    verdict. `watch` gets the seconds of its stages (ledger.STAGES)."""
    watch = watch or ledger.Stopwatch()
    sid, ch = job.sid, res.notebook
    t_intake = time.perf_counter()
    dst = root / "submitted" / sid / ch
    dst.mkdir(parents=True)
    handed_in = read_regular(src)
    nb_in, notes = drop_duplicated_locked_cells(parse_notebook(handed_in)[0])
    (dst / f"{ch}.ipynb").write_text(json.dumps(nb_in))
    key, context = secrets.token_bytes(32), f"{sid}/{ch}"
    key_file = root / f".seal-{ch}"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    t0 = time.time()
    watch.add("intake", time.perf_counter() - t_intake)
    judged = job.chapters[ch].judged
    with sandbox.slot() as slot, judge_for(slot, job.chapters[ch], job.env_extra,
                                           student_secret(job.secret, sid, ch, handed_in)) as judge:
        watch.add("judge_start", judge.started)
        res.where = {"uid": slot.uid, "confined": int(slot.confined)}
        extra = dict(job.env_extra)
        extra.pop("WORKBOOK_HIDDEN_SEED", None)  # the hidden inputs' secret stays with the judge
        env = tool_env({**extra, **sandbox.kernel_env(slot, key_file, context,
                                                      sandbox.write_kernelspec(root / ".jupyter"),
                                                      judge=judge.socket,
                                                      private=tuple(Path(p) for p in job.private))})
        env.pop("WORKBOOK_HIDDEN_SEED", None)
        argv = ["autograde", ch, "--student", sid, "--force", f"--Execute.kernel_name={sandbox.KERNEL_NAME}"]
        t_run = time.perf_counter()
        if ctx := forked.context():
            code, log = forked.run(ctx, _autograde_child, (str(root), argv, env, sandbox.capabilities().network),
                                   cwd=root, timeout=job.timeout)
        else:
            code, log = confine.run_confined(sandbox.wrap_command([sys.executable, "-m", "nbgrader", *argv]),
                                             cwd=root, env=env, timeout=job.timeout)
        t_done = time.perf_counter()
    t_check = time.perf_counter()
    key_file.unlink(missing_ok=True)
    (private_dir(job.out / "logs" / sid) / f"{ch}.log").write_text(outputs.log_text(log), encoding="utf-8")
    graded = root / "autograded" / sid / ch / f"{ch}.ipynb"
    verdict = integrity.Verdict()
    if code is None:
        res.status, res.detail = "timed out", f"grading took more than {job.timeout:.0f} s"
    elif not graded.exists():
        errors = [ln for ln in log.splitlines() if "ERROR" in ln or "Kernel died" in ln]
        res.status = "crashed"
        res.detail = "the notebook stopped the grader: " + (learner_text(errors[0][-200:], 200) if errors else "no log")
    if not graded.exists():
        watch.add("nbgrader_start", t_done - t_run)
        return verdict
    nb = json.loads(graded.read_text())
    split_autograde(watch, nb, t_run, t_done)
    if res.status == "graded" and (code < 0 or not any(c.get("execution_count") for c in nb["cells"])):
        res.status = "crashed"
        res.detail = (f"the grader was killed (signal {-code})" if code < 0 else "the notebook was not executed")
    verdict = integrity.verify_notebook(nb, job.chapters[ch].locked, key, context)
    apply_judge(nb, verdict, judge, judged)
    if removed := outputs.cap_outputs(nb):
        notes.append(f"output truncated ({removed:,} characters over the limit)")
    if leaks := outputs.scrub_leaks(nb, job.chapters[ch].protected, job.chapters[ch].fragments):
        notes.append(f"{leaks} output(s) with grader-only material removed")
    res.diagnoses = list(dict.fromkeys(diagnoses_of(judge.reports) + notebook_diagnoses(nb)))
    res.messages = _messages(nb)
    answers = written_cells_of(nb)
    res.written = [(gid, points, outputs.answer_text(answers.get(gid, "")))  # line breaks kept
                   for gid, (points, _) in job.chapters[ch].written.items()]
    graded.write_text(json.dumps(nb))
    sanitize_for_feedback(graded)
    res.detail = "; ".join([d for d in [res.detail, *notes, *describe_errors(nb, res)] if d]
                           + [f"graded in {time.time() - t0:.1f} s"])
    watch.add("integrity", time.perf_counter() - t_check)
    return verdict


def _autograde_child(output: int, root: str, argv: list[str], env: dict, network: bool) -> None:
    """`nbgrader autograde` in a process forked from the run's server (`autograder.forked`):
    what `python -m nbgrader` would do from the course root, in the same limits and, where
    the grader's `sandbox.capabilities()` has one, the same private network as the command
    (`sandbox.wrap_command`)."""
    forked.enter(root, env, confine.NBGRADER_LIMITS, output)
    if network:
        sandbox.private_network()
    from nbgrader.apps.nbgraderapp import NbGraderApp

    sys.argv = ["nbgrader", *argv]
    NbGraderApp.launch_instance(argv=argv)


def split_autograde(watch: "ledger.Stopwatch", nb: dict, t_run: float, t_done: float) -> None:
    """`nbgrader autograde`'s seconds as nbgrader_start (to the first cell's execution, the
    kernel's start included), kernel (first cell to last reply, from nbclient's timing
    metadata) and nbgrader_finish; all of it nbgrader_start when the notebook has no timing."""
    from datetime import datetime

    stamps = []
    for cell in nb.get("cells", []):
        ex = cell.get("metadata", {}).get("execution", {})
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            stamps += [datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp() for k, v in ex.items()
                       if k in ("iopub.execute_input", "shell.execute_reply")]
    total = t_done - t_run
    # perf_counter and the wall clock differ by a constant: map the cells' span onto the run's;
    # a stamp from outside it (a cell not run now keeps what the submission had) does not count
    started = time.time() - (time.perf_counter() - t_run)
    stamps = [t for t in stamps if started - 1.0 <= t <= started + total + 1.0]
    if not stamps:
        watch.add("nbgrader_start", total)
        return
    kernel = min(max(0.0, max(stamps) - min(stamps)), total)
    before = min(max(0.0, min(stamps) - started), total - kernel)
    watch.add("nbgrader_start", before)
    watch.add("kernel", kernel)
    watch.add("nbgrader_finish", total - kernel - before)


def describe_errors(nb: dict, res: Result) -> list[str]:
    """Status from the errors of the autograded notebook (a cell timed out, the kernel died)."""
    errs = _errors(nb)
    if res.status == "graded" and ("CellTimeoutError" in errs or "DeadKernelError" in errs):
        res.status = "timed out" if "CellTimeoutError" in errs else "crashed"
        ename = "CellTimeoutError" if res.status == "timed out" else "DeadKernelError"
        where = next((f"cell {i + 1}" + (f" ({gid})" if (gid := c.get("metadata", {}).get("nbgrader", {})
                                                         .get("grade_id")) else "")
                      for i, c in enumerate(nb.get("cells", []))
                      for o in c.get("outputs", []) if o.get("ename") == ename), "a cell")
        return [f"{where} {'ran past the per-cell time limit' if res.status == 'timed out' else 'killed the kernel'}"]
    return [f"{len(errs)} cell(s) raised errors"] if errs else []


def _errors(nb: dict) -> list[str]:
    return [o.get("ename", "") for c in nb.get("cells", []) if c.get("cell_type") == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def notebook_diagnoses(nb: dict) -> list[tuple[str, str]]:
    """(test cell, likely mistake) named by a visible check in the kernel (a failing visible
    check stops its cell before the hidden block): only texts the checks themselves can
    name (`known_diagnoses`), so a learner's exception reading "likely mistake: GRADER BUG"
    is no diagnosis."""
    known, found = known_diagnoses(), []
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and gid:
                for line in str(out.get("evalue", "")).splitlines():
                    text = line.strip()[len("likely mistake:"):].strip() \
                        if line.strip().startswith("likely mistake:") else None
                    if text and text in known:
                        found.append((gid, text))
    return found


@functools.lru_cache(maxsize=1)
def known_diagnoses() -> frozenset[str]:
    """Every likely mistake the checks can name in their own words: the visible checks'
    `DIAGNOSES` and library-error hints, the string literals they pass as `hint=`, and the
    catalogued mistakes' diagnoses (a hint composed at run time is left out: never listed,
    never faked)."""
    import ast
    import importlib

    import workbook
    import workbook.checks as wc

    from . import authoring, mutants

    texts = {hint for _, hint in getattr(wc, "LIBRARY_ERRORS", ())}
    for path in sorted(Path(workbook.__file__).parent.rglob("*.py")):
        with contextlib.suppress(OSError, SyntaxError, ValueError):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.keyword) and node.arg == "hint":
                    texts |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)
                              and isinstance(c.value, str)}
        if path.name == "checks.py" and path.parent.name.startswith("ch"):
            with contextlib.suppress(Exception):
                mod = importlib.import_module(f"workbook.{path.parent.name}.checks")
                texts |= {v for v in getattr(mod, "DIAGNOSES", {}).values() if isinstance(v, str)}
    for chapter in authoring.chapter_names():
        with contextlib.suppress(Exception):
            texts |= {m.diagnosis for m in mutants.catalogue(chapter)[0] if m.diagnosed}
    return frozenset(t.strip() for t in texts if t.strip())


def diagnoses_of(reports: list[dict]) -> list[tuple[str, str]]:
    """(test cell, likely mistake) for every failed hidden check that named a mistake, from
    the judge's record: the check's own text (`Checks.fail(hint=...)`), never a message
    read out of the notebook (a learner's exception can say "likely mistake: ..." too)."""
    return [(str(r["cell"]), learner_text(r["hint"], 300)) for r in reports
            if r.get("passed") is False and isinstance(r.get("hint"), str) and r["hint"].strip()]


def _messages(nb: dict) -> dict[str, str]:
    """grade_id -> `Error: message` of its first error (as feedback shows it), short."""
    found = {}
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if gid and gid not in found and out.get("output_type") == "error":
                found[gid] = learner_text(f"{out.get('ename', '')}: {out.get('evalue', '')}", 300)
    return found


def written_cells_of(nb: dict) -> dict[str, str]:
    """grade_id -> text of each markdown answer cell of a submitted notebook."""
    return {meta["grade_id"]: cell_source(c) for c in nb.get("cells", [])
            if c.get("cell_type") == "markdown" and (meta := c.get("metadata", {}).get("nbgrader", {})).get("grade_id")}
