"""The run's report for the instructor: grades.csv, cells.csv, written.csv (`write_reports`,
`write_written`), the class report (report.html with its plots, report.csv:
`write_class_report`) and the summary printed at the end (`print_summary`). Every CSV goes
through `outputs.write_csv`.
"""
from __future__ import annotations

import contextlib
import html
import re
from pathlib import Path

from . import outputs
from .intake import learner_text
from .rows import STATUSES, Result


def write_reports(results: list[Result], out: Path, earlier: Path | None = None,
                  models: dict[str, dict[str, tuple[float, str]]] | None = None) -> None:
    """grades.csv, cells.csv, written.csv, report.html and report.csv (every CSV through
    `outputs.write_csv`: no cell is a spreadsheet formula)."""
    write_written(results, out, earlier, models)
    outputs.write_csv(out / "grades.csv", GRADES_HEADER, [grades_row(r) for r in results])
    write_class_report(results, out)
    outputs.write_csv(out / "cells.csv", ["student", "notebook", "cell", "score", "max_score"],
                      ([r.student, r.notebook, name, f"{s:g}", f"{m:g}"] for r in results for name, s, m in r.cells))


GRADES_HEADER = ["student", "notebook", "score", "max_score", "status", "detail", "flag"]


def grades_row(r: Result) -> list[str]:
    """One row of grades.csv; a row that cannot be written says so (the others are written)."""
    try:
        return [learner_text(r.student, 100), r.notebook, f"{r.score:g}", f"{r.max_score:g}", r.status,
                learner_text(re.sub(r"(; )?graded in [0-9.]+ s", "", r.detail), 2000), learner_text(r.flag, 1000)]
    except Exception as e:  # noqa: BLE001 - a row, never the class
        return [learner_text(getattr(r, "student", "?"), 100), learner_text(getattr(r, "notebook", "?")), "0", "0",
                "crashed", f"the grader could not write this row ({type(e).__name__})", ""]


WRITTEN_HEADER = ["student", "notebook", "question", "points", "answer", "awarded", "rubric", "model_answer"]
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def write_written(results: list[Result], out: Path, earlier: Path | None = None,
                  models: dict[str, dict[str, tuple[float, str]]] | None = None) -> None:
    """written.csv: every written answer, for the instructor to grade (fill `awarded`, then
    `python -m autograder export` or `feedback`), with the question's rubric and model answer
    (from `models`, notebook -> `seals.written_cells` of its instructor notebook; by default
    read from solutions/). Answers keep their line breaks (the csv module quotes them).
    Points already awarded in an earlier run into the same folder are kept where the answer
    is unchanged (also from a written.csv of before line breaks were kept, where they read `?`)."""
    import csv as _csv

    awarded = {}
    old = (earlier or out) / "written.csv"
    if old.exists():
        with contextlib.suppress(OSError, KeyError, _csv.Error):
            with open(old, newline="") as f:
                for row in _csv.DictReader(f):
                    awarded[(row["student"], row["notebook"], row["question"], row["answer"])] = row["awarded"]
    models = models if models is not None else _model_answers({r.notebook for r in results if r.written})
    rows = []
    for r in results:
        for gid, points, answer in r.written:
            answer = "" if answer.strip() in ("", "YOUR ANSWER HERE") else answer
            model, rubric = split_model_answer(models.get(r.notebook, {}).get(gid, (0.0, ""))[1])
            cells = [r.student, r.notebook, gid, f"{points:g}", answer]
            keys = [tuple(outputs.csv_cell(x) for x in [*cells[:3], text]) for text in (answer, CONTROL.sub("?", answer))]
            given = next((awarded[k] for k in keys if k in awarded), "" if answer else "0")
            rows.append(cells + [given, rubric, model])
    if rows or old.exists():
        outputs.write_csv(out / "written.csv", WRITTEN_HEADER, rows)


def _model_answers(notebooks) -> dict[str, dict[str, tuple[float, str]]]:
    """notebook -> its written questions' (points, model answer and rubric), from the
    instructor notebooks (none for a notebook without one)."""
    from .build import instructor_notebook
    from .seals import written_cells

    found = {}
    for nb in notebooks:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            found[nb] = written_cells(instructor_notebook(nb))
    return found


def split_model_answer(text: str) -> tuple[str, str]:
    """(model answer, rubric) of an instructor's written cell (`**Model answer.** ...
    **Rubric.** ...`, authoring.py); the whole text as the model answer without a rubric."""
    at = text.find("**Rubric.**")
    model, rubric = (text[:at], text[at + len("**Rubric.**"):]) if at >= 0 else (text, "")
    model = re.sub(r"^\s*\*\*Model answer\.\*\*", "", model)
    return model.strip(), rubric.strip()


def print_summary(results: list[Result], seconds: float) -> None:
    students = sorted({r.student for r in results})
    kept = sum(r.reused for r in results)
    print(f"Graded {len(students)} student(s), {len(results)} notebook(s) in {seconds:.1f} s"
          + (f" ({kept} kept from the earlier run into this folder, unchanged)" if kept else ""))
    for nbname in sorted({r.notebook for r in results}):
        rows = [r for r in results if r.notebook == nbname]
        counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
        mean = sum(r.score for r in rows) / len(rows)
        print(f"  {nbname}: mean {mean:.2f} / {rows[0].max_score:g}; "
              + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for r in results:
        if r.status != "graded":
            print(f"  ! {learner_text(r.student)}/{r.notebook}: {r.status} ({learner_text(r.detail, 300)})")
    for sid, flag in sorted({(r.student, r.flag) for r in results if r.flag}):
        print(f"  ? {learner_text(sid)}: {learner_text(flag, 300)}")
    if open_kernels := sum(str(r.where.get("confined", "1")) == "0" for r in results):
        print(f"  warning: {open_kernels} notebook(s) ran in a kernel without a sandbox uid of its own (the grader or "
              "worker is not root, or lacks namespaces): see timings.csv, column confined")


def write_class_report(results: list[Result], out: Path) -> None:
    """report.html (score histogram, per-exercise pass rates, frequent mistakes, problem
    submissions) and report.csv (per-exercise pass rates) for the instructor."""
    import base64
    import io
    from collections import Counter

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    esc = html.escape
    parts = [f"<!doctype html><meta charset=utf-8>{outputs.CSP_META}<title>class report</title><h1>Class report</h1>"]
    rows = []
    for nbname in sorted({r.notebook for r in results}):
        mine = [r for r in results if r.notebook == nbname]
        graded = [r for r in mine if r.status == "graded"]
        fig, ax = plt.subplots(figsize=(5, 2.8))
        ax.hist([r.score for r in mine], bins=min(20, int(mine[0].max_score) + 1 or 1),
                range=(0, mine[0].max_score or 1))
        ax.set(title=f"{nbname}: scores of {len(mine)} submissions", xlabel="score", ylabel="students")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        parts.append(f"<h2>{esc(nbname)}</h2><img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>")
        parts.append("<table border=1 cellpadding=4><tr><th>exercise</th><th>full marks</th><th>pass rate</th></tr>")
        cells = sorted({c for r in graded for c, _, _ in r.cells})
        for cell in cells:
            scores = [(s, m) for r in graded for c, s, m in r.cells if c == cell]
            passed = sum(s >= m for s, m in scores)
            rate = passed / len(scores) if scores else 0.0
            rows.append([nbname, cell, passed, len(scores), f"{rate:.3f}"])
            parts.append(f"<tr><td>{esc(cell)}</td><td>{passed}/{len(scores)}</td><td>{rate:.0%}</td></tr>")
        parts.append("</table><h3>Most frequent diagnosed mistakes</h3><ol>")
        counts = Counter(d for r in mine for d in r.diagnoses)
        parts += [f"<li>{n} x <b>{html.escape(cell)}</b>: {html.escape(text)}</li>"
                  for (cell, text), n in counts.most_common(10)]
        parts.append("</ol><h3>Submissions that did not run to the end</h3><ul>")
        parts += [f"<li>{esc(r.student)}: {esc(r.status)} ({esc(r.detail)})</li>"
                  for r in mine if r.status != "graded"]
        parts.append("</ul>")
    if flagged := sorted({(r.student, r.flag) for r in results if r.flag}):
        parts.append("<h2>Ids to check (graded apart, flagged in grades.csv and the exports)</h2><ul>")
        parts += [f"<li>{esc(learner_text(sid))}: {esc(learner_text(flag, 1000))}</li>" for sid, flag in flagged]
        parts.append("</ul>")
    (out / "report.html").write_text("\n".join(parts), encoding="utf-8", errors="backslashreplace")
    outputs.write_csv(out / "report.csv", ["notebook", "exercise", "full_marks", "graded", "pass_rate"], rows)
