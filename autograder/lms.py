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

Written answers (manually graded) are listed by the grading run in `written.csv`
(`student, notebook, question, points, answer, awarded, rubric, model_answer`; columns are
read by name): fill the `awarded` column (0 to `points`) and export again; their points are
added to each notebook's score and maximum. A row whose `awarded` is empty counts 0 and is
reported as pending. (`python -m autograder export` also writes the awarded points into
the learners' feedback pages: `feedback.refresh_pages`.)

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


def read_flags(run: Path) -> dict[str, str]:
    """{student: flag} of the ids a grading run flagged (not plain, or like another id)."""
    flags: dict[str, str] = {}
    with open(Path(run) / "grades.csv", newline="") as f:
        for row in csv.DictReader(f):
            if (row.get("flag") or "").strip():
                flags[_plain(row["student"])] = _plain(row["flag"])
    return flags


def read_grades(run: Path) -> tuple[list[str], dict[str, dict[str, float]], dict[str, float]]:
    """(notebooks, {student: {notebook: score}}, {notebook: max_score}) of a grading run."""
    path = Path(run) / "grades.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no grades.csv here (is {run} the --out folder of a grading run?)")
    scores: dict[str, dict[str, float]] = {}
    max_score: dict[str, float] = {}
    tampered: set[tuple[str, str]] = set()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            student, nb = _plain(row["student"]), _plain(row["notebook"])
            if row.get("status") == "tampered":
                tampered.add((student, nb))
            try:
                scores.setdefault(student, {})[nb] = float(row["score"])
                max_score[nb] = max(max_score.get(nb, 0.0), float(row["max_score"]))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: a row for {student}/{nb} has no numeric score ({e})") from None
    _add_written(Path(run), scores, max_score, tampered)
    return sorted(max_score), scores, max_score


def read_written(run: Path) -> list[tuple[str, str, str, float, float | None]]:
    """(student, notebook, question, points, awarded or None while pending) of every row of
    `run/written.csv` ([] without one); ValueError names a row whose numbers are wrong or
    whose `awarded` is outside 0..points. Columns are read by name (others are ignored)."""
    path = Path(run) / "written.csv"
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            student, nb, q = _plain(row["student"]), _plain(row["notebook"]), _plain(row["question"])
            try:
                points = float(row["points"])
                awarded = float(row["awarded"]) if (row.get("awarded") or "").strip() else None
            except ValueError:
                raise ValueError(f"{path}: {student}/{nb}/{q}: points and awarded must be numbers") from None
            if awarded is not None and not 0 <= awarded <= points:
                raise ValueError(f"{path}: {student}/{nb}/{q}: awarded {awarded:g} is outside 0..{points:g}")
            rows.append((student, nb, q, points, awarded))
    return rows


def _add_written(run: Path, scores: dict[str, dict[str, float]], max_score: dict[str, float],
                 tampered: set[tuple[str, str]] = frozenset()) -> int:
    """Add the instructor's points for written answers (`run/written.csv`, column `awarded`)
    to scores (not to a tampered notebook, which scores 0) and their possible points to
    max_score; returns how many are still pending."""
    path = run / "written.csv"
    pending, possible = 0, {}
    for student, nb, q, points, awarded in read_written(run):
        possible.setdefault(nb, {})[q] = points
        if awarded is None:
            pending += 1
        elif student in scores and nb in scores[student] and (student, nb) not in tampered:
            scores[student][nb] += awarded
    for nb, qs in possible.items():
        max_score[nb] = max_score.get(nb, 0.0) + sum(qs.values())
    if pending:
        import sys
        print(f"note: {pending} written answer(s) in {path} have no 'awarded' points yet (counted 0)", file=sys.stderr)
    return pending


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
    flags = read_flags(run)
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
    if flags:  # ids graded apart that an LMS could confuse: a last column for the instructor
        header.append("flag")
        named = {(people.get(s, {}).get(k) or s): s for s in students for k in ("name", "email", "username")}
        for row in rows:
            row.append(flags.get(named.get(row[0], row[0]), ""))
    write_csv(out, header, rows)
    return out
