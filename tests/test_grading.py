"""The grading round trip through the real pipeline (nbgrader in a temporary course)."""
import csv
import json
import re
import shutil
import zipfile

import pytest

from autograder import grade as grading
from autograder import chapters, mutants
from conftest import REPO

pytestmark = pytest.mark.slow
CH = "01_autoencoders"
SOURCE = REPO / "solutions" / f"{CH}.ipynb"
STUDENT = REPO / "course" / f"{CH}.ipynb"
BROKEN = next(m for m in mutants.catalogue(CH)[0] if m.exercise == "retrieval_checks")


def _edit(nb_path, out_path, edit):
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = edit(meta.get("grade_id"), src)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(nb))


def _points(grade_id):
    nb = json.loads(SOURCE.read_text())
    return next(c["metadata"]["nbgrader"]["points"] for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    subs = tmp_path_factory.mktemp("subs")
    (subs / "full").mkdir()
    shutil.copy(SOURCE, subs / "full" / f"{CH}.ipynb")
    (subs / "blank").mkdir()
    shutil.copy(STUDENT, subs / "blank" / f"{CH}.ipynb")
    # one exercise broken by a catalogued mistake
    m = BROKEN
    _edit(SOURCE, subs / "broken" / f"{CH}.ipynb",
          lambda gid, src: src.replace(m.old, m.new) if gid == "retrieval" else src)
    # a locked test cell replaced by `pass`, and another deleted: both restored by nbgrader
    nb = json.loads(SOURCE.read_text())
    nb["cells"] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") != "quiz_ae_loss"]
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade_id") == "pca_checks":
            c["source"] = "pass"
    (subs / "tamper").mkdir()
    (subs / "tamper" / f"{CH}.ipynb").write_text(json.dumps(nb))
    # unreadable and misnamed
    (subs / "garbled").mkdir()
    (subs / "garbled" / f"{CH}.ipynb").write_text('{"cells": [')
    (subs / "renamed").mkdir()
    shutil.copy(STUDENT, subs / "renamed" / f"{CH} (1).ipynb")
    # a zipped student folder
    with zipfile.ZipFile(subs / "zipped.zip", "w") as zf:
        zf.write(SOURCE, f"zipped/{CH}.ipynb")
    out = tmp_path_factory.mktemp("out")
    results = grading.grade(subs, out, jobs=2, chapters=[CH])
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    return results, rows, out


def test_columns_and_statuses(graded):
    _, rows, out = graded
    assert set(rows) == {"full", "blank", "broken", "tamper", "garbled", "renamed", "zipped"}
    assert list(csv.reader(open(out / "grades.csv")))[0][:5] == ["student", "notebook", "score", "max_score", "status"]
    assert rows["garbled"]["status"] == "unreadable" and "JSON" in rows["garbled"]["detail"]
    assert rows["renamed"]["status"] == "missing" and "(1).ipynb" in rows["renamed"]["detail"]


def test_instructor_notebook_scores_full_marks(graded):
    _, rows, _ = graded
    for sid in ("full", "zipped"):
        assert rows[sid]["status"] == "graded"
        assert float(rows[sid]["score"]) == float(rows[sid]["max_score"]) > 0


def test_blank_student_notebook_scores_zero_without_crashing(graded):
    _, rows, _ = graded
    assert rows["blank"]["status"] == "graded" and float(rows["blank"]["score"]) == 0


def test_one_broken_exercise_loses_exactly_its_points(graded):
    _, rows, _ = graded
    assert float(rows["broken"]["score"]) == float(rows["broken"]["max_score"]) - _points("retrieval_checks")


def test_edited_and_deleted_locked_cells_are_restored(graded):
    results, rows, _ = graded
    assert float(rows["tamper"]["score"]) == float(rows["tamper"]["max_score"])
    cells = {name for r in results if r.student == "tamper" for name, _, _ in r.cells}
    assert {"pca_checks", "quiz_ae_loss"} <= cells


def test_feedback_has_no_hidden_tests_and_explains_failures(graded):
    _, _, out = graded
    hidden_source = chapters.path(CH, "hidden").read_text()
    needles = ["_hidden", "autograder.hidden"] + [
        ln.strip() for ln in hidden_source.splitlines() if len(ln.strip()) > 30 and not ln.strip().startswith(("#", '"""', "import ", "from "))][:40]
    pages = list((out / "feedback").rglob("*.html"))
    assert {p.parent.name for p in pages} >= {"full", "blank", "broken"}
    for page in pages:
        text = re.sub(r"<[^>]+>", "", page.read_text())
        for needle in needles:
            assert needle not in text, f"{page}: leaks {needle!r}"
    broken = re.sub(r"<[^>]+>", "", (out / "feedback" / "broken" / f"{CH}.html").read_text())
    assert BROKEN.recognised_in(broken), "the diagnosis of the broken exercise is not in the feedback"


def test_class_report_lists_pass_rates_and_diagnosed_mistakes(graded):
    _, _, out = graded
    rates = {r["exercise"]: r for r in csv.DictReader(open(out / "report.csv"))}
    assert rates["retrieval_checks"]["full_marks"] != rates["retrieval_checks"]["graded"]
    report = (out / "report.html").read_text()
    assert BROKEN.recognised_in(report), "the broken submission's diagnosis is not in the class report"
    assert "garbled" in report and "unreadable" in report
