"""Every instructor notebook runs top to bottom in the smoke profile; every student
notebook runs until its first unimplemented exercise, with no other error."""
import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.build import tool_env
from conftest import REPO, chapters

pytestmark = pytest.mark.slow


def _execute(nb, tmp_path, monkeypatch):
    for k, v in tool_env({"WORKBOOK_PROFILE": "smoke", "WORKBOOK_RESULTS": str(tmp_path / "results")}).items():
        monkeypatch.setenv(k, v)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "course")}})
    client.execute()
    return nb


@pytest.mark.parametrize("chapter", chapters())
def test_instructor_notebook_runs_in_smoke(chapter, tmp_path, monkeypatch):
    nb = nbformat.read(REPO / "solutions" / f"{chapter}.ipynb", as_version=4)
    _execute(nb, tmp_path, monkeypatch)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "profile=smoke" in printed
    assert (tmp_path / "results" / "metrics.json").exists(), "the chapter recorded no metrics"


@pytest.mark.parametrize("chapter", chapters())
def test_student_notebook_runs_to_first_exercise(chapter, tmp_path, monkeypatch):
    nb = nbformat.read(REPO / "course" / f"{chapter}.ipynb", as_version=4)
    first_solution = next(i for i, c in enumerate(nb.cells)
                          if c.metadata.get("nbgrader", {}).get("solution"))
    first_test = next(i for i, c in enumerate(nb.cells)
                      if i > first_solution and c.metadata.get("nbgrader", {}).get("grade"))
    with pytest.raises(CellExecutionError) as err:
        _execute(nb, tmp_path, monkeypatch)
    message = str(err.value)
    assert "NotImplementedError" in message or "is not implemented yet" in message, message[-2000:]
    failed = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.outputs)]
    # the stubs raise when called: in the solution cell itself, or in its check cell
    assert failed and failed[0] in (first_solution, first_test), \
        f"first error in cell {failed}, expected the first exercise (cells {first_solution}-{first_test})"
