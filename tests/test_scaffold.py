"""`python -m autograder new-chapter`: the chapter it lays out builds, passes fidelity, grades
(reference full marks, blank zero, the catalogued mistake loses its point) and passes its
own solution test, unchanged, in a copy of the repository."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from autograder import scaffold
from conftest import REPO

NEW = "08_scale_demo"


def _run(args, cwd, timeout=900):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(cwd / "course")])}
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_a_bad_name_or_an_existing_chapter_is_refused(tmp_path):
    with pytest.raises(ValueError, match="NN_topic"):
        scaffold.files("Scale")
    with pytest.raises(FileExistsError, match="01_"):
        scaffold.new_chapter("01_again")
    scaffold.new_chapter(NEW, root=tmp_path)
    with pytest.raises(FileExistsError, match="narrative.py"):
        scaffold.new_chapter(NEW, root=tmp_path)


@pytest.mark.slow
def test_a_new_chapter_builds_passes_fidelity_and_grades_as_it_stands(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "build", "__pycache__", "*.pt",
                                                               ".pytest_cache"))
    out = _run(["-m", "autograder", "new-chapter", NEW], copy)
    assert f"autograder/chapters/{NEW}/narrative.py" in out
    _run(["-m", "autograder", "build", "--only", "08"], copy)
    assert (copy / "solutions" / f"{NEW}.ipynb").exists() and (copy / "course" / f"{NEW}.ipynb").exists()
    _run(["-m", "autograder", "build", "--check"], copy)
    report = _run(["-m", "autograder", "fidelity", "--only", NEW], copy)
    assert "scale_checks: mistakes caught 1/1, alternatives passed 1/1" in report
    _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ch08_solutions.py"], copy)
    # grade: the reference notebook, the blank one, and the catalogued mistake
    subs = tmp_path / "subs"
    for sid, nb in (("ref", copy / "solutions" / f"{NEW}.ipynb"), ("blank", copy / "course" / f"{NEW}.ipynb")):
        (subs / sid).mkdir(parents=True)
        shutil.copy(nb, subs / sid / f"{NEW}.ipynb")
    wrong = json.loads((copy / "solutions" / f"{NEW}.ipynb").read_text())
    for cell in wrong["cells"]:
        src = "".join(cell["source"])
        if "return a * x" in src:
            cell["source"] = src.replace("return a * x", "return a + x")
    (subs / "wrong").mkdir()
    (subs / "wrong" / f"{NEW}.ipynb").write_text(json.dumps(wrong))
    _run(["-m", "autograder", "grade", str(subs), "--out", str(tmp_path / "out"), "--jobs", "2",
          "--timeout", "300"], copy)
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    assert rows["ref"]["status"] == "graded" and float(rows["ref"]["score"]) == float(rows["ref"]["max_score"]) == 1
    assert float(rows["blank"]["score"]) == 0 and float(rows["wrong"]["score"]) == 0, rows
    pages = [p for p in (tmp_path / "out" / "feedback").rglob("*.html") if "wrong" in p.parts]
    assert pages and "scaling multiplies" in pages[0].read_text()   # the mistake's diagnosis, in the feedback


def test_where_finds_every_part_of_an_exercise_from_its_name():
    from autograder import where

    rows = dict(where.places("ddim_step"))
    assert rows["narrative, solution cell"].startswith("autograder/chapters/05_diffusion/narrative.py:")
    assert rows["narrative, test cell ddim_step_checks"].startswith("autograder/chapters/05_diffusion/narrative.py:")
    assert rows["visible check"].startswith("course/workbook/ch05/checks.py:")
    assert rows["hidden check 05_diffusion.ddim_step"].startswith("autograder/chapters/05_diffusion/hidden.py:")
    assert rows["reference solution"].startswith("autograder/chapters/05_diffusion/solutions.py:")
    assert any(k.startswith("catalogue: ") and not k.startswith("catalogue: 0 ") for k in rows)
    with pytest.raises(KeyError, match="no exercise named"):
        where.places("no_such_exercise")
