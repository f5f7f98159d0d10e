"""Every catalogued mistake loses exactly its exercise (named when diagnosed); every
correct alternative keeps full marks. Fast path: the test cells run in-process."""
import pytest

from autograder import fidelity
from conftest import chapters


@pytest.mark.parametrize("chapter", chapters())
def test_catalogue(chapter, monkeypatch):
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    outcomes = fidelity.check_chapter(chapter)
    exercises = {o.exercise for o in outcomes}
    assert exercises, "no mistakes catalogued"
    bad = [f"{o.kind} {o.name}: failed {o.failed}; message: {o.message[-300:]}" for o in outcomes if not o.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("chapter", chapters())
def test_hidden_checks_alone_catch_every_mistake(chapter, monkeypatch):
    """Without the visible checks (a submission that hard-codes the visible cases), the
    hidden checks must still fail every catalogued mistake and pass every alternative."""
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    outcomes = fidelity.check_chapter(chapter, hidden_only=True)
    bad = [f"{o.kind} {o.name}: failed {o.failed}; message: {o.message[-300:]}" for o in outcomes if not o.ok]
    assert not bad, "\n".join(bad)


def _fake_grading(cases, spoil=None):
    """A stand-in for `grade`: each submission's own notebook graded as the catalogue says
    (a mistake loses its exercise, with its diagnosis HTML-escaped in the feedback), the
    other chapters "missing" with every cell at 0; `spoil` makes one alternative lose a cell."""
    import csv
    import html

    def fake(submissions, graded, jobs=1, chapters=None, **_):
        cells = {ch: list(fidelity._cells(ch)[1]) for ch in chapters}
        graded.mkdir(parents=True)
        with open(graded / "grades.csv", "w", newline="") as g, open(graded / "cells.csv", "w", newline="") as c:
            gw, cw = csv.writer(g), csv.writer(c)
            gw.writerow(["student", "notebook", "score", "max_score", "status", "detail"])
            cw.writerow(["student", "notebook", "cell", "score", "max_score"])
            for case in cases():
                for ch in chapters:
                    own = ch == case.chapter
                    gw.writerow([case.student, ch, 0, 1, "graded" if own else "missing", ""])
                    for cell in cells[ch]:
                        lost = not own or (case.kind == "mistake" and cell == case.exercise) or \
                            (case.student == spoil and cell == cells[ch][0])
                        cw.writerow([case.student, ch, cell, 0 if lost else 1, 1])
                fb = graded / "feedback" / case.student
                fb.mkdir(parents=True, exist_ok=True)
                said = html.escape(case.mistake.diagnosis) if case.mistake else ""
                (fb / f"{case.chapter}.html").write_text(f"<pre>likely mistake: {said}</pre>")
    return fake


def test_pipeline_report_reads_each_submission_in_its_own_chapter(tmp_path, monkeypatch, capsys):
    """Several chapters at once: every student has a row per chapter, "missing" for the ones
    they did not hand in; the report must judge each case on its own chapter's row only."""
    from autograder import grade as grading

    chapters = ["01_autoencoders", "03_vae"]
    cases = lambda: fidelity.write_submissions(chapters, tmp_path / "again", limit=1)  # noqa: E731
    monkeypatch.setattr(grading, "grade", _fake_grading(cases))
    assert fidelity.pipeline_report(chapters, tmp_path / "a", limit=1) == 0, capsys.readouterr().out
    alternative = next(c.student for c in cases() if c.kind == "alternative")
    monkeypatch.setattr(grading, "grade", _fake_grading(cases, spoil=alternative))
    assert fidelity.pipeline_report(chapters, tmp_path / "b", limit=1) == 1
    assert f"BAD alternative [{alternative}]" in capsys.readouterr().out


@pytest.mark.parametrize("chapter", chapters())
def test_verdicts_do_not_depend_on_the_secret(chapter, monkeypatch):
    """A cheap slice of `fidelity --secrets N`: under two more grading secrets the reference
    and every alternative pass every hidden check, and every mistake is still caught."""
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    rows = fidelity.sweep_chapter(chapter, 2, first=10_000)
    unfair = [u for r in rows.values() for u in r.unfair]
    assert not unfair, "\n".join(unfair)
    weak = [f"{r.exercise}: {r.worst_mistake[1]}" for r in rows.values() if r.worst_mistake[0] < 1.0]
    assert not weak, "mistakes that escape the hidden checks under some secret:\n" + "\n".join(weak)
