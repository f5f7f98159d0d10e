"""Chapters 05 and 06 through the real grading pipeline: the instructor notebook scores full
marks, the blank student notebook scores zero, and two catalogued mistakes in one submission
lose exactly the points of their exercises, with their diagnoses in the feedback."""
import csv
import json
import shutil

import pytest

from autograder import grade as grading
from autograder import mutants
from conftest import REPO
from workbook import ch05, ch06

pytestmark = pytest.mark.slow
# per chapter, two mistakes in different exercises, as (target, key of the chapter's DIAGNOSES)
CASES = {
    "05_diffusion": {("ddim_step", "ab_minus_one"), ("guided_eps", "guidance_inverted")},
    "06_latent_diffusion": {("generate", "scale_multiplied"), ("CrossAttention", "mask_ignored")},
}
DIAGNOSES = {"05_diffusion": ch05.DIAGNOSES, "06_latent_diffusion": ch06.DIAGNOSES}


def _source(ch):
    return REPO / "solutions" / f"{ch}.ipynb"


def _broken(ch):
    return {m.exercise: m for m in mutants.catalogue(ch)[0]
            if any(m.target == target and m.diagnosis == DIAGNOSES[ch][key] for target, key in CASES[ch])}


def _cells(ch):
    return json.loads(_source(ch).read_text())["cells"]


def _points(ch, grade_id):
    return next(c["metadata"]["nbgrader"]["points"] for c in _cells(ch)
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _solution_cell_of(ch, target):
    """The solution cell whose source defines `target`."""
    for c in _cells(ch):
        src = "".join(c["source"])
        if c["metadata"].get("nbgrader", {}).get("solution") and (f"def {target}(" in src or f"class {target}(" in src):
            return c["metadata"]["nbgrader"]["grade_id"]
    raise KeyError(target)


@pytest.fixture(scope="module", params=sorted(CASES))
def graded(request, tmp_path_factory):
    CH = request.param
    SOURCE, STUDENT, BROKEN = _source(CH), REPO / "course" / f"{CH}.ipynb", _broken(CH)
    assert len(BROKEN) == 2, "the catalogue no longer has the mistakes this test uses"
    subs = tmp_path_factory.mktemp("subs")
    (subs / "full").mkdir()
    shutil.copy(SOURCE, subs / "full" / f"{CH}.ipynb")
    (subs / "blank").mkdir()
    shutil.copy(STUDENT, subs / "blank" / f"{CH}.ipynb")
    nb = json.loads(SOURCE.read_text())
    for m in BROKEN.values():
        cell_id = _solution_cell_of(CH, m.target)
        for c in nb["cells"]:
            if c["metadata"].get("nbgrader", {}).get("grade_id") == cell_id:
                src = "".join(c["source"])
                assert src.count(m.old) == 1
                c["source"] = src.replace(m.old, m.new)
    (subs / "broken").mkdir()
    (subs / "broken" / f"{CH}.ipynb").write_text(json.dumps(nb))
    out = tmp_path_factory.mktemp("out")
    grading.grade(subs, out, jobs=2, chapters=[CH], timeout=600, preflight=False)  # has full and blank
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    cells = list(csv.DictReader(open(out / "cells.csv")))
    return CH, out, rows, cells


def test_full_blank_and_broken(graded):
    CH, out, rows, cells = graded
    BROKEN = _broken(CH)
    # written answers are graded by hand: not in the automatic score
    total = sum(c["metadata"]["nbgrader"]["points"] for c in _cells(CH)
                if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code")
    assert rows["full"]["status"] == "graded" and float(rows["full"]["score"]) == total
    assert rows["blank"]["status"] == "graded" and float(rows["blank"]["score"]) == 0
    lost = sum(_points(CH, ex) for ex in BROKEN)
    assert float(rows["broken"]["score"]) == total - lost
    failed = {c["cell"] for c in cells if c["student"] == "broken" and float(c["score"]) < float(c["max_score"])}
    assert failed == set(BROKEN)


def test_feedback_names_the_mistakes(graded):
    CH, out, _, _ = graded
    BROKEN = _broken(CH)
    html = next((out / "feedback" / "broken").glob("*.html")).read_text()
    for m in BROKEN.values():
        assert m.recognised_in(html), f"feedback does not name: {m.diagnosis}"
    assert "BEGIN HIDDEN TESTS" not in html and "_hidden." not in html
