"""The sandbox fallback (WORKBOOK_SANDBOX=off: no own user, network or hidden files): the
seal and tamper checks still decide the points.

    WORKBOOK_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_sandbox.py
"""
import csv
import json
import shutil

import pytest

from autograder import grade as grading
from autograder import integrity, sandbox
from conftest import REPO

CH = "01_autoencoders"
SOURCE = REPO / "autograder" / "source" / CH / f"{CH}.ipynb"


def test_off_switch_turns_every_capability_off(monkeypatch):
    sandbox.capabilities.cache_clear()
    monkeypatch.setenv("WORKBOOK_SANDBOX", "off")
    try:
        assert sandbox.capabilities() == sandbox.Capabilities(False, False, False)
        assert sandbox.wrap_command(["true"]) == ["true"], "no network namespace in the fallback"
    finally:
        sandbox.capabilities.cache_clear()


def test_seal_tokens_are_bound_to_cell_nonce_and_key():
    key = b"k" * 32
    t = integrity.token(key, "s/nb", "pca_checks", "n1")
    assert len(t) == 32
    assert t != integrity.token(key, "s/nb", "pca_checks", "n2")
    assert t != integrity.token(key, "s/nb", "retrieval_checks", "n1")
    assert t != integrity.token(b"x" * 32, "s/nb", "pca_checks", "n1")
    assert t != integrity.token(key, "other/nb", "pca_checks", "n1")


def test_verify_notebook_rejects_forged_misplaced_and_edited_cells():
    key, ctx = b"k" * 32, "s/nb"
    locked = {"a": ("check_a()", "n1"), "b": ("check_b()", "n2")}
    good = f"[workbook-seal a {integrity.token(key, ctx, 'a', 'n1')}]\n"

    def cell(gid, src, text):
        return {"cell_type": "code", "source": src, "metadata": {"nbgrader": {"grade_id": gid}},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}

    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", good), cell("b", "check_b()", "")]}, locked, key, ctx)
    assert v.sealed == {"a"} and not v.evidence
    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", ""), cell("b", "check_b()", good)]}, locked, key, ctx)
    assert v.evidence and "misplaced" in v.evidence[0], "a seal printed in another cell must not count"
    forged = "[workbook-seal a " + "0" * 32 + "]"
    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", forged), cell("b", "check_b()", "")]}, locked, key, ctx)
    assert v.evidence and not v.sealed
    v = integrity.verify_notebook({"cells": [cell("a", "pass", good), cell("b", "check_b()", "")]}, locked, key, ctx)
    assert any("differs from the locked source" in e for e in v.evidence)
    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", good)]}, locked, key, ctx)
    assert any("b: graded cell present 0 times" in e for e in v.evidence)


@pytest.mark.slow
def test_fallback_grading_still_needs_the_seal(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_SANDBOX", "off")
    sandbox.capabilities.cache_clear()
    try:
        subs = tmp_path / "subs"
        (subs / "honest").mkdir(parents=True)
        shutil.copy(SOURCE, subs / "honest" / f"{CH}.ipynb")
        nb = json.loads(SOURCE.read_text())
        for c in nb["cells"]:
            if c["metadata"].get("nbgrader", {}).get("grade_id") == "pca":
                c["source"] = "".join(c["source"]) + (
                    "\nget_ipython().input_transformers_cleanup.append(\n"
                    "    lambda lines: [] if any('check' in ln for ln in lines) else lines)")
        (subs / "transformer").mkdir()
        (subs / "transformer" / f"{CH}.ipynb").write_text(json.dumps(nb))
        grading.grade(subs, tmp_path / "out", jobs=2, chapters=[CH], timeout=300)
        rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
        assert rows["honest"]["status"] == "graded" and rows["honest"]["score"] == rows["honest"]["max_score"], rows
        assert rows["transformer"]["status"] == "tampered" and float(rows["transformer"]["score"]) == 0, rows
    finally:
        sandbox.capabilities.cache_clear()
