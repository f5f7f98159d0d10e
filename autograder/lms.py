"""Grades for a learning-management system, from a grading run's `grades.csv`.

    python -m autograder export DIR --format wide|canvas|moodle [--roster ROSTER.csv] [--out FILE]

- `wide`: one row per learner, one column per notebook (its score), then `total`; a second
  header-like row is not added, so any spreadsheet reads it.
- `canvas`: Canvas's gradebook import layout: `Student, ID, SIS User ID, SIS Login ID,
  Section`, one column per notebook, a `Points Possible` row first. Canvas matches rows by
  `SIS User ID` / `SIS Login ID` (or its own `ID`): take them from a roster.
- `moodle`: Moodle's "Import grades from CSV" layout: an identifier column (`Username`, or
  `Email address` with a roster that has `email`), one column per notebook; map the
  columns to grade items in Moodle's import form.

A roster is a CSV with a `student` column (the submission folder name) and any of `name`,
`canvas_id`, `sis_id`, `login`, `section`, `email`, `username`. Without one, the submission
id fills every identifier. Scores are those of grades.csv: a `missing`, `unreadable`,
`crashed` or `timed out` notebook counts what it earned (0 when nothing ran), a `tampered`
one 0; learners in the roster without a submission get empty cells (not 0), so the LMS
shows them as ungraded.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .outputs import write_csv

FORMATS = ("wide", "canvas", "moodle")


def read_grades(run: Path) -> tuple[list[str], dict[str, dict[str, float]], dict[str, float]]:
    """(notebooks, {student: {notebook: score}}, {notebook: max_score}) of a grading run."""
    path = Path(run) / "grades.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no grades.csv here (is {run} the --out folder of a grading run?)")
    scores: dict[str, dict[str, float]] = {}
    max_score: dict[str, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            student, nb = _plain(row["student"]), _plain(row["notebook"])
            try:
                scores.setdefault(student, {})[nb] = float(row["score"])
                max_score[nb] = max(max_score.get(nb, 0.0), float(row["max_score"]))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: a row for {student}/{nb} has no numeric score ({e})") from None
    return sorted(max_score), scores, max_score


def _plain(cell: str) -> str:
    """A cell as grades.csv wrote it, without the quote that keeps spreadsheets from
    reading it as a formula."""
    return cell[1:] if cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@", "\t", "\r") else cell


def read_roster(path: Path | None) -> dict[str, dict[str, str]]:
    if path is None:
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "student" not in rows[0]:
        raise ValueError(f"{path}: a roster needs a 'student' column (the submission folder name)")
    return {r["student"]: {k: (v or "").strip() for k, v in r.items()} for r in rows}


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def export(run: Path, fmt: str, out: Path | None = None, roster: Path | None = None) -> Path:
    """Write the grades of grading run `run` in format `fmt`; returns the file written
    (default `run/lms-<fmt>.csv`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    notebooks, scores, max_score = read_grades(run)
    people = read_roster(roster)
    students = sorted(set(scores) | set(people))
    out = Path(out) if out else Path(run) / f"lms-{fmt}.csv"

    def row_scores(s: str) -> list[float | None]:
        return [scores.get(s, {}).get(nb) for nb in notebooks]

    def total(vals: list[float | None]) -> str:
        got = [v for v in vals if v is not None]
        return _fmt(sum(got)) if got else ""

    if fmt == "wide":
        header = ["student", *notebooks, "total"]
        rows = [[s, *map(_fmt, row_scores(s)), total(row_scores(s))] for s in students]
        rows.append(["max_score", *(_fmt(max_score[nb]) for nb in notebooks), _fmt(sum(max_score.values()))])
    elif fmt == "canvas":
        header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *notebooks]
        rows = [["Points Possible", "", "", "", "", *(_fmt(max_score[nb]) for nb in notebooks)]]
        for s in students:
            p = people.get(s, {})
            rows.append([p.get("name") or s, p.get("canvas_id", ""), p.get("sis_id") or s,
                         p.get("login") or s, p.get("section", ""), *map(_fmt, row_scores(s))])
    else:  # moodle
        by_email = bool(people) and all(p.get("email") for p in people.values())
        header = ["Email address" if by_email else "Username", *notebooks]
        rows = [[(people[s]["email"] if by_email and s in people else people.get(s, {}).get("username") or s),
                 *map(_fmt, row_scores(s))] for s in students]
    write_csv(out, header, rows)
    return out
