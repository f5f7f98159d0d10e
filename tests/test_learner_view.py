"""What a learner sees in a notebook: a failed check shows its message first and none of the
checks' own frames; when the learner's code raised, the line of their code that raised stays;
a cell that calls an exercise not written yet says which one. The cell still fails."""
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.build import tool_env
from conftest import REPO

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CHECKS_INTERNALS = ("workbook/checks.py", "checks.py", "Checks.call", "Checks.fail", "in call", "in fail",
                    "During handling of the above exception")


def _run(nb, monkeypatch, tmp_path, allow_errors=True):
    for k, v in tool_env({"WORKBOOK_PROFILE": "smoke", "WORKBOOK_RESULTS": str(tmp_path / "results"),
                          "MPLBACKEND": "Agg"}).items():
        monkeypatch.setenv(k, v)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(REPO / "course")}}).execute()
    return nb


def _errors(nb):
    return [(i, "\n".join(ANSI.sub("", line) for line in o.traceback))
            for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def _upto_first_test(nb, after=0):
    """The notebook's cells up to its first graded test cell after cell `after`."""
    first = next(i for i, c in enumerate(nb.cells) if i > after and c.metadata.get("nbgrader", {}).get("grade")
                 and c.cell_type == "code")
    nb.cells = nb.cells[:first + 1]
    return nb


def test_blank_notebook_failures_are_short_and_free_of_check_internals(monkeypatch, tmp_path):
    nb = nbformat.read(REPO / "course" / "01_autoencoders.ipynb", as_version=4)
    nb.cells = nb.cells[:16]
    errors = _errors(_run(nb, monkeypatch, tmp_path))
    assert len(errors) >= 3, errors
    for i, text in errors:
        lines = text.splitlines()
        assert len(lines) <= 15, f"cell {i}: {len(lines)} lines\n{text}"
        assert not any(x in text for x in CHECKS_INTERNALS), f"cell {i} shows the checks' frames:\n{text}"
        assert "is not implemented yet" in lines[0] or "is not written yet" in lines[0], text


def test_learner_error_keeps_the_learners_line_and_still_fails(monkeypatch, tmp_path):
    nb = _upto_first_test(nbformat.read(REPO / "course" / "01_autoencoders.ipynb", as_version=4))
    sol = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "pca")
    # a learner's pca_fit that multiplies by a matrix of the wrong size
    sol.source = sol.source.replace("raise NotImplementedError()", "return X @ torch.ones(3, k), None, None", 1)
    with pytest.raises(CellExecutionError) as err:  # the failed check stops "Run all" as before
        _run(nb, monkeypatch, tmp_path, allow_errors=False)
    (i, text), = _errors(nb)
    lines = text.splitlines()
    assert lines[0].startswith("CheckFailed: [pca] calling pca_fit raised RuntimeError"), text
    assert len(lines) <= 15 and not any(x in text for x in CHECKS_INTERNALS), text
    assert "where your code raised" in text and "return X @ torch.ones(3, k), None, None" in text, text
    assert re.search(r"Cell In\[\d+\], line \d+, in pca_fit", text), text
    assert "CheckFailed" in str(err.value)
