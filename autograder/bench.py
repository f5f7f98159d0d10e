"""Grading throughput: a generated class graded serially and in parallel.

    python -m autograder bench-grading --students 40 --jobs 1,2 [--backend threads|dask] [--chapters 01 02]

For every chapter (default 01) generates a class from its instructor notebook (a quarter
full marks, a quarter blank student notebooks, half with one exercise broken by a
catalogued mistake, cycling through the catalogue), grades it once per `--jobs` value
(with `--backend dask`, the number of workers of a local cluster), checks that every run
gives identical grades.csv and cells.csv, and prints throughput, the seconds per
submission split by stage (from each run's timings.csv, `autograder.ledger.STAGES`) and
the speedup.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import authoring, ledger, mutants
from . import grade as grading
from .build import instructor_notebook, student_notebook

CH = "01_autoencoders"


def _solution_cell(nb: dict, target: str, old: str) -> dict:
    """The solution cell that defines `target` and contains `old`."""
    defines = re.compile(rf"^(def |class ){target}\b|^{target}\s*=", re.M)
    return next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")
                and defines.search("".join(c["source"])) and old in "".join(c["source"]))


def make_class(folder: Path, students: int, chapter: str = CH) -> dict[str, str]:
    """Write `students` submissions into `folder`; returns {student: kind}."""
    source = instructor_notebook(chapter)
    blank = student_notebook(chapter)
    mistakes = [m for m in mutants.catalogue(chapter)[0]]
    kinds, broken = {}, 0
    for i in range(students):
        sid = f"s{i:03d}"
        (folder / sid).mkdir(parents=True)
        dst = folder / sid / f"{chapter}.ipynb"
        if i % 4 == 0:
            shutil.copy(source, dst)
            kinds[sid] = "full"
        elif i % 4 == 1:
            shutil.copy(blank, dst)
            kinds[sid] = "blank"
        else:
            m = mistakes[broken % len(mistakes)]
            broken += 1
            nb = json.loads(source.read_text())
            cell = _solution_cell(nb, m.target, m.old)
            src = "".join(cell["source"])
            cell["source"] = src.replace(m.old, m.new, 1)
            dst.write_text(json.dumps(nb))
            kinds[sid] = f"broken: {m.exercise}"
    return kinds


def _table(path: Path) -> list[list[str]]:
    return list(csv.reader(open(path)))


def chapter_list(given: list[str] | None) -> list[str]:
    """Chapter names from numbers or names ("01", "01_autoencoders"); default chapter 01."""
    names = authoring.chapter_names()
    if not given:
        return [CH]
    found = [c for c in names if any(c == g or c.startswith(f"{g}_") for g in given)]
    if not found:
        raise ValueError(f"no chapter matches {' '.join(given)} (chapters: {', '.join(names)})")
    return found


def stage_means(timings: list[dict]) -> dict[str, float]:
    """Mean seconds per submission of every stage (and `total`) over timings.csv rows."""
    rows = [t for t in timings if t["status"] not in ("missing", "unreadable")] or timings
    return {s: sum(t[s] for t in rows) / max(1, len(rows)) for s in (*ledger.STAGES, "total")}


def bench(students: int = 40, jobs: list[int] = (1, 2), backend: str = "threads",
          out: Path | None = None, timeout: float = 900.0, chapters: list[str] | None = None) -> int:
    """Grade a generated class of every chapter once per jobs value; print wall time,
    throughput, seconds per submission split by stage (timings.csv) and the speedup.
    Returns 0 when every run of a chapter gave identical grades.csv and cells.csv."""
    out = Path(out or tempfile.mkdtemp(prefix="workbook-bench-"))
    unit = "workers" if backend == "dask" else "jobs"
    table, same_all = [], True
    for ch in chapter_list(chapters):
        subs = out / f"submissions-{ch}"
        shutil.rmtree(subs, ignore_errors=True)
        kinds = make_class(subs, students, ch)
        counts = {}
        for v in kinds.values():
            counts[v.split(":")[0]] = counts.get(v.split(":")[0], 0) + 1
        print(f"{ch}: class of {students}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), flush=True)
        runs = {}
        for j in jobs:
            dest = out / f"{ch}-{unit}{j}"
            shutil.rmtree(dest, ignore_errors=True)  # a fresh run, never a resumed one
            t0 = time.time()
            grading.grade(subs, dest, jobs=j, chapters=[ch], timeout=timeout, backend=backend, quiet=True,
                          preflight=False)  # a throughput figure; the class has full and blank notebooks
            runs[j] = time.time() - t0
            means = stage_means(ledger.read_timings(dest / "timings.csv"))
            table.append((ch, j, runs[j], means))
            print(f"  {unit}={j} ({backend}): {runs[j]:.1f} s, {students / runs[j] * 60:.1f} submissions/minute, "
                  f"{runs[j] / students:.1f} s wall per submission, {means['total']:.1f} s of stages each", flush=True)
            print("    " + ", ".join(f"{s} {means[s]:.1f}" for s in ledger.STAGES), flush=True)
        first = jobs[0]
        same = all(_table(out / f"{ch}-{unit}{j}" / name) == _table(out / f"{ch}-{unit}{first}" / name)
                   for j in jobs[1:] for name in ("grades.csv", "cells.csv"))
        same_all &= same
        for j in jobs[1:]:
            print(f"  speedup {unit}={j} vs {unit}={first}: {runs[first] / runs[j]:.2f}x")
        print(f"  grades.csv and cells.csv identical across runs: {'yes' if same else 'NO'}")
    print(f"\nseconds per submission by stage (mean over the class; wall = run time / students; {backend}):")
    head = ["chapter", unit, "wall", *ledger.STAGES, "total"]
    print(" | ".join(head))
    for ch, j, wall, means in table:
        print(" | ".join([ch, str(j), f"{wall / students:.1f}", *(f"{means[s]:.1f}" for s in (*ledger.STAGES, "total"))]))
    print(f"results in {out}")
    return 0 if same_all else 1
