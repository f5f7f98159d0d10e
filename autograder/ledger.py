"""What a grading run has done: per-submission stage timings, progress, and the state that
lets a run be resumed or regraded in place.

- `Stopwatch`: seconds per stage of one notebook (STAGES), summed when a stage repeats.
- `write_timings`: OUT/timings.csv, one row per student x notebook, one column per stage.
- `Progress`: a tqdm bar with rate and ETA when stderr is a terminal, otherwise one log
  line per finished submission (student, notebook, points, seconds).
- `course_version`, `row_key`, `State`: a row of a run is kept by a later run into the same
  OUT only when its key, a hash of the submission's content, the course version (instructor
  sources, hidden checks, solutions, the workbook package), the settings and the run
  secret, is the same; OUT/.state/<student>.json holds the
  key and the full result of every row (grader only, mode 0600 in a 0700 folder).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

from .authoring import REPO
from .outputs import write_csv

# setup: the student's course root; intake: checking and staging the notebook; judge_start:
# the judge's imports until `ready`; nbgrader_start, kernel, nbgrader_finish: `nbgrader
# autograde` until the kernel runs the first cell, the notebook's execution, the rest
# (autograde as a whole when the log has no marks); integrity: seals, judge verdicts, caps,
# scrub, sanitising, the verdict; scores: the gradebook read; feedback: generate_feedback
# and hardening the page; report: this row's share of grades.csv, cells.csv, report.html.
STAGES = ("setup", "intake", "judge_start", "nbgrader_start", "kernel", "nbgrader_finish", "integrity",
          "scores", "feedback", "report")


class Stopwatch:
    """Seconds per stage: `with watch("kernel"): ...`; `watch.add(stage, seconds)`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.seconds[stage] = self.seconds.get(stage, 0.0) + max(0.0, seconds)


def write_timings(results, path: Path) -> None:
    """timings.csv: student, notebook, status, one column per stage (seconds), total, and
    where it ran (host, worker process, the kernel's uid, whether that uid was a sandbox
    uid of its own) and whether this run reused the row from an earlier one."""
    head = ["student", "notebook", "status", *STAGES, "total", "host", "pid", "uid", "confined", "reused"]
    write_csv(path, head, ([r.student, r.notebook, r.status, *(f"{r.timings.get(s, 0.0):.3f}" for s in STAGES),
                            f"{sum(r.timings.values()):.3f}", r.where.get("host", ""), r.where.get("pid", ""),
                            r.where.get("uid", ""), r.where.get("confined", ""), int(r.reused)] for r in results))


def read_timings(path: Path) -> list[dict]:
    """The rows of a timings.csv, stage columns as floats."""
    import csv

    with open(path, newline="") as f:
        return [{**row, **{s: float(row[s]) for s in (*STAGES, "total")}} for row in csv.DictReader(f)]


# ----------------------------------------------------------------------------- progress

class Progress:
    """Shows finished submissions: a tqdm bar (rate, ETA) on a terminal, one line each otherwise."""

    def __init__(self, total: int, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet, self.done, self.t0 = quiet, 0, time.time()
        self.bar = None
        if not quiet and total and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="student", file=self.stream, dynamic_ncols=True)

    def finished(self, results) -> None:
        """One student's rows are in."""
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            if results:
                self.bar.set_postfix_str(results[0].student[:24], refresh=False)
            self.bar.update(1)
            return
        for r in results:
            print(f"graded {r.student}/{r.notebook}: {r.score:g}/{r.max_score:g} {r.status} "
                  f"in {sum(r.timings.values()):.1f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- resume

# What a row's points depend on besides the submission: the chapter folders (narrative,
# solutions, hidden checks, mistakes), the shared hidden-check helpers, the generated
# instructor notebooks and the learner-visible package. The grader's own code
# (CODE_PARTS) is not in a row's key: a grader fix regrades with --only or --fresh.
COURSE_PARTS = ("autograder/chapters", "autograder/hidden", "solutions", "course/workbook")
CODE_PARTS = ("autograder",)


def _tree_hash(parts, root: Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        base = root / part
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts and p.suffix != ".pyc")
        for p in files:
            h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def course_version(root: Path = REPO) -> str:
    """sha256 over the path and bytes of every file of COURSE_PARTS (caches left out)."""
    return _tree_hash(COURSE_PARTS, root)


def code_version(root: Path = REPO) -> str:
    """The course version and the grader's code (autograder/, which holds the sources and
    hidden checks too): what a dask worker must share with the grader."""
    return _tree_hash(COURSE_PARTS + CODE_PARTS, root)


def secret_fingerprint(run_secret: str) -> str:
    """Names the run secret in the state without revealing it."""
    return hmac.new(bytes.fromhex(run_secret), b"workbook-state", hashlib.sha256).hexdigest()[:32]


def row_key(submission, chapter: str, chapters: list[str], version: str, settings: dict) -> str:
    """The hash that decides whether a stored row still stands: the notebook's bytes (or,
    without one, what the submission holds instead, which the row's detail names), the
    course version, the grading settings and the run secret's fingerprint."""
    name = f"{chapter}.ipynb"
    h = hashlib.sha256(json.dumps({"chapter": chapter, "version": version, "settings": settings,
                                   "problem": submission.problem, "refused": submission.refused.get(name)},
                                  sort_keys=True).encode())
    if name in submission.notebooks and not submission.problem:
        h.update(b"notebook\0" + hashlib.sha256(Path(submission.notebooks[name]).read_bytes()).digest())
    else:  # a missing row names the other files and the chapters of the run
        h.update(json.dumps({"names": sorted(submission.notebooks), "refused": sorted(submission.refused.items()),
                             "chapters": sorted(chapters)}).encode())
    return h.hexdigest()


class State:
    """OUT/.state/<student>.json: {"rows": {notebook: {"key": ..., "result": {...}}}}."""

    def __init__(self, out: Path):
        self.folder = Path(out) / ".state"

    def load(self, sid: str) -> dict[str, dict]:
        try:
            return json.loads((self.folder / f"{sid}.json").read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def students(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []

    def save(self, sid: str, rows: dict[str, dict]) -> None:
        """Atomically (a finished student is either wholly in the state or not at all)."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        tmp = self.folder / f".{sid}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"rows": rows}, f)
        os.replace(tmp, self.folder / f"{sid}.json")

    def forget(self, sid: str) -> None:
        (self.folder / f"{sid}.json").unlink(missing_ok=True)


STORED = ("student", "notebook", "score", "max_score", "status", "detail", "cells", "diagnoses", "messages",
          "timings", "where", "written")


def stored(result) -> dict:
    """A result as the state keeps it (plain JSON)."""
    return {k: v for k, v in asdict(result).items() if k in STORED}


def restored(data: dict, cls):
    """The result a state row holds, marked as reused."""
    names = {f.name for f in fields(cls)}
    r = cls(**{k: v for k, v in data.items() if k in names})
    r.cells = [tuple(c) for c in r.cells]
    r.diagnoses = [tuple(d) for d in r.diagnoses]
    r.written = [tuple(w) for w in r.written]
    r.reused = True
    return r
