"""The gradebook: a notebook's scores as nbgrader's database holds them, and the verdict
that can take them away.

`read_scores` reads the automatically graded cells' scores (written answers are left out);
`enforce_verdict` sets a notebook without proof for its points, or with evidence of
tampering, to `tampered` and zero, in its row and in the gradebook (`zero_grades`), so the
feedback agrees.
"""
from __future__ import annotations

from pathlib import Path

from . import integrity
from .rows import Result


def read_scores(root: Path, results: list[Result], written: dict[str, set[str]] | None = None) -> None:
    """Scores of the automatically graded cells. Written answers (manually graded cells) are
    left out of score and max_score: they are listed in written.csv for the instructor, and
    `export` adds the points awarded there."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for res in results:
            manual = (written or {}).get(res.notebook, set())
            nb = gb.find_notebook(res.notebook, res.notebook)
            res.max_score = float(nb.max_score) - sum(float(c.max_score) for c in nb.grade_cells if c.name in manual)
            try:
                sub = gb.find_submission_notebook(res.notebook, res.notebook, res.student)
            except MissingEntry:
                continue
            auto = [g for g in sub.grades if g.name not in manual]
            res.score = float(sum(g.score for g in auto))  # partial credit survives a timed-out cell
            res.cells = [(g.name, float(g.score), float(g.max_score)) for g in auto]


def enforce_verdict(root: Path, res: Result, verdict: integrity.Verdict) -> None:
    """No point without proof: a graded cell that scored without its seal or without its
    checks' passing verdicts in the judge, or any evidence of tampering (including a request
    the judge refused: a check asked twice, without its cell's token or for another cell),
    sets the whole notebook to `tampered`, 0 (gradebook included, so feedback agrees)."""
    unsealed = [name for name, score, _ in res.cells if score > 0 and name not in verdict.sealed]
    unjudged = [name for name, score, _ in res.cells if score > 0 and verdict.judged.get(name) is False]
    evidence = verdict.evidence + [f"{name}: scored without proof that its checks ran" for name in unsealed] \
        + [f"{name}: scored although its hidden checks did not pass in the judge" for name in unjudged]
    if not evidence or res.status in ("missing", "unreadable"):
        return
    res.status = "tampered"
    res.detail = "; ".join(evidence[:5]) + (f" (+{len(evidence) - 5} more)" if len(evidence) > 5 else "")
    res.score = 0.0
    res.cells = [(name, 0.0, m) for name, _, m in res.cells]
    zero_grades(root, res)


def zero_grades(root: Path, res: Result) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            sub = gb.find_submission_notebook(res.notebook, res.notebook, res.student)
        except MissingEntry:
            return
        for g in sub.grades:
            g.auto_score, g.manual_score = 0.0, None
        gb.db.commit()
