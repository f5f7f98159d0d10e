"""What a learner sees in a notebook: a failed check shows its message first and none of the
checks' own frames; when the learner's code raised, the line of their code that raised stays;
a cell that calls an exercise not written yet says which one. The cell still fails."""
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.build import tool_env
from conftest import REPO, chapters

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


# ----------------------------------------------------------------------------- answers while working

@pytest.fixture
def answers_file(tmp_path, monkeypatch):
    """The open course's answers file, as `make lab` writes it, named by $WORKBOOK_ANSWERS."""
    from autograder import answers

    path = tmp_path / "build" / "answers.json"
    answers.write(path)
    monkeypatch.setenv("WORKBOOK_ANSWERS", str(path))
    return path


def test_quiz_says_right_or_wrong_with_the_idea(answers_file):
    from workbook import selfstudy
    from workbook.ch01 import QUIZ_EXPLAIN

    key = selfstudy.answers()["01_autoencoders"]["quiz"]
    assert set(key["answer_pca_vs_ae"]) == {"A", "C", "D"} and key["answer_ae_loss"] == "B"
    right = selfstudy.quiz_feedback("answer_ae_loss", " b", QUIZ_EXPLAIN["answer_ae_loss"])
    wrong = selfstudy.quiz_feedback("answer_pca_vs_ae", {"A", "C"}, QUIZ_EXPLAIN["answer_pca_vs_ae"])
    assert "✓ answer_ae_loss: right" in right and QUIZ_EXPLAIN["answer_ae_loss"] in right
    assert "✗ answer_pca_vs_ae: not right: the answer is {'A', 'C', 'D'}" in wrong
    assert QUIZ_EXPLAIN["answer_pca_vs_ae"] in wrong
    # every chapter's every quiz answer and written question is in the file
    for chapter in chapters():
        nb = nbformat.read(REPO / "solutions" / f"{chapter}.ipynb", as_version=4)
        written = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.cell_type == "markdown"
                   and c.metadata.get("nbgrader", {}).get("grade")}
        assert set(selfstudy.answers()[chapter]["written"]) == written


def test_a_release_without_answers_checks_the_format_only(monkeypatch, tmp_path, capsys):
    from workbook import selfstudy
    from workbook.checks import check_choice

    monkeypatch.delenv("WORKBOOK_ANSWERS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert selfstudy.answers() == {}
    check_choice("answer_ae_loss", "A", "ABCD", explain="the idea")  # a wrong answer passes the format check
    out = capsys.readouterr().out
    assert "graded when you submit" in out and "right" not in out and "the idea" in out


def test_an_answers_file_beside_the_notebook_is_used(monkeypatch, tmp_path):
    import json

    from workbook import selfstudy

    monkeypatch.delenv("WORKBOOK_ANSWERS", raising=False)
    (tmp_path / "answers.json").write_text(json.dumps({"01_autoencoders": {"quiz": {"answer_ae_loss": "C"}}}))
    monkeypatch.chdir(tmp_path)
    assert "✓" in selfstudy.quiz_feedback("answer_ae_loss", "C", None)
    (tmp_path / "answers.json").write_text("{not json")
    assert selfstudy.answers() == {}  # a broken file: no answers, no error


def test_a_written_answer_unlocks_its_model_answer_once_written(answers_file, monkeypatch, tmp_path, capsys):
    import json

    from workbook import selfstudy

    nb = json.loads((REPO / "course" / "01_autoencoders.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "written_linear_basis")
    compare = nb["cells"][nb["cells"].index(cell) + 1]
    assert "model_answer('01_autoencoders', 'written_linear_basis')" in "".join(compare["source"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    selfstudy.model_answer("01_autoencoders", "written_linear_basis")
    assert "Save the notebook" in capsys.readouterr().out
    (tmp_path / "01_autoencoders.ipynb").write_text(json.dumps(nb))
    selfstudy.model_answer("01_autoencoders", "written_linear_basis")
    assert "Write your answer in the cell above first" in capsys.readouterr().out
    cell["source"] = "The loss only sees the product of the encoder and decoder, so any invertible change works."
    (tmp_path / "01_autoencoders.ipynb").write_text(json.dumps(nb))
    selfstudy.model_answer("01_autoencoders", "written_linear_basis")
    out = capsys.readouterr().out
    assert "Model answer." in out and "Rubric." in out and "invertible" in out
    monkeypatch.delenv("WORKBOOK_ANSWERS")
    selfstudy.model_answer("01_autoencoders", "written_linear_basis")
    assert "arrives with your feedback" in capsys.readouterr().out


def test_validate_and_nbgrader_run_the_smoke_profile(monkeypatch):
    from workbook.profile import profile_name

    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    assert profile_name() == "smoke"
    assert profile_name("cpu") == "cpu"
    monkeypatch.setenv("WORKBOOK_PROFILE", "cpu")
    assert profile_name() == "cpu"
