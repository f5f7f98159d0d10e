"""Grading throughput: a generated class graded serially and in parallel.

    python -m autograder bench-grading --students 40 --jobs 1,2 [--backend threads|dask]

Generates a class from the chapter-01 instructor notebook (a quarter full marks, a
quarter blank student notebooks, half with one exercise broken by a catalogued mistake,
cycling through the catalogue), grades it once per `--jobs` value, checks that every run
gives identical grades.csv and cells.csv, and prints throughput and speedup.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import grade as grading
from . import mutants
from .authoring import REPO

CH = "01_autoencoders"


def _solution_cell(nb: dict, target: str, old: str) -> dict:
    """The solution cell that defines `target` and contains `old`."""
    defines = re.compile(rf"^(def |class ){target}\b|^{target}\s*=", re.M)
    return next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")
                and defines.search("".join(c["source"])) and old in "".join(c["source"]))


def make_class(folder: Path, students: int, chapter: str = CH) -> dict[str, str]:
    """Write `students` submissions into `folder`; returns {student: kind}."""
    source = REPO / "autograder" / "source" / chapter / f"{chapter}.ipynb"
    blank = REPO / "course" / f"{chapter}.ipynb"
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


def bench(students: int = 40, jobs: list[int] = (1, 2), backend: str = "threads",
          out: Path | None = None, timeout: float = 900.0) -> int:
    out = Path(out or tempfile.mkdtemp(prefix="workbook-bench-"))
    subs = out / "submissions"
    shutil.rmtree(subs, ignore_errors=True)
    kinds = make_class(subs, students)
    print(f"class of {students}: " + ", ".join(f"{n} {k}" for k, n in sorted(
        {k.split(':')[0]: sum(v.split(':')[0] == k.split(':')[0] for v in kinds.values()) for k in kinds.values()}.items())))
    runs = {}
    for j in jobs:
        dest = out / f"jobs{j}"
        shutil.rmtree(dest, ignore_errors=True)
        t0 = time.time()
        grading.grade(subs, dest, jobs=j, chapters=[CH], timeout=timeout, backend=backend, quiet=True,
                      preflight=False)  # a throughput figure; the class has full and blank notebooks
        runs[j] = time.time() - t0
        print(f"jobs={j} ({backend}): {runs[j]:.1f} s, {students / runs[j] * 60:.1f} submissions/minute")
    first = jobs[0]
    same = all(_table(out / f"jobs{j}" / name) == _table(out / f"jobs{first}" / name)
               for j in jobs[1:] for name in ("grades.csv", "cells.csv"))
    for j in jobs[1:]:
        print(f"speedup jobs={j} vs jobs={first}: {runs[first] / runs[j]:.2f}x")
    print(f"grades.csv and cells.csv identical across runs: {'yes' if same else 'NO'}")
    print(f"results in {out}")
    return 0 if same else 1
