"""Broken and hostile submissions: grading finishes, the status says what happened, no
unearned point, nothing left running, and the other students' grades are unaffected."""
import csv
import json
import shutil

import psutil
import pytest

from autograder import grade as grading
from conftest import REPO

pytestmark = pytest.mark.slow
CH = "01_autoencoders"
SOURCE = REPO / "autograder" / "source" / CH / f"{CH}.ipynb"

HOSTILE = {
    "exits": "import os\nos._exit(0)",
    "hog": "blobs = []\nwhile True:\n    blobs.append(bytearray(10**8))",
    "stubborn_loop": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
}


def test_hostile_submissions(tmp_path):
    subs = tmp_path / "subs"
    (subs / "honest").mkdir(parents=True)
    shutil.copy(SOURCE, subs / "honest" / f"{CH}.ipynb")
    for sid, code in HOSTILE.items():
        nb = json.loads(SOURCE.read_text())
        for c in nb["cells"]:
            if c["metadata"].get("nbgrader", {}).get("grade_id") == "train_step":
                c["source"] = "".join(c["source"]) + "\n" + code
        (subs / sid).mkdir()
        (subs / sid / f"{CH}.ipynb").write_text(json.dumps(nb))
    out = tmp_path / "out"
    grading.grade(subs, out, jobs=2, chapters=[CH], timeout=150)
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["honest"]["status"] == "graded" and rows["honest"]["score"] == rows["honest"]["max_score"]
    assert rows["exits"]["status"] == "crashed" and float(rows["exits"]["score"]) == 0
    assert rows["hog"]["status"] in {"crashed", "graded"} and float(rows["hog"]["score"]) < float(rows["hog"]["max_score"])
    assert rows["stubborn_loop"]["status"] == "timed out"
    assert float(rows["stubborn_loop"]["score"]) < float(rows["stubborn_loop"]["max_score"])
    leftovers = []
    for p in psutil.process_iter(["pid"]):
        try:
            if "workbook-grade-" in p.cwd():
                leftovers.append(p.pid)
        except psutil.Error:
            pass
    assert not leftovers, f"processes left running: {leftovers}"
