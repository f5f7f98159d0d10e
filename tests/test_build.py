"""Single source: generated files are fresh, carry no outputs and leak nothing."""
import ast
import json
import re
import subprocess

import nbformat
import pytest

from autograder import authoring, build
from autograder import chapters as chapters_pkg
from conftest import REPO, chapters


def test_generated_files_are_up_to_date():
    assert build.build(check=True) == 0, "run `python -m autograder build` and commit the result"


def test_committed_notebooks_have_no_outputs():
    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    assert tracked, "no notebooks tracked"
    for path in tracked:
        nb = json.loads((REPO / path).read_text())
        dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
                 and (c.get("outputs") or c.get("execution_count"))]
        assert not dirty, f"{path}: cells {dirty} carry outputs"


def _solution_lines(chapter):
    """Every substantial line of every solution body (what students must not see)."""
    src = authoring.SolutionSource(authoring.solutions_path(chapter))
    wrapped = "\n".join(src.wrapped(n) for n in src.nodes)
    bodies = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", wrapped, re.S)
    lines = {ln.strip() for b in bodies for ln in b.splitlines()}
    return {ln for ln in lines if len(ln) > 12 and not ln.startswith(("#", "return ", '"""'))}


@pytest.mark.parametrize("chapter", chapters())
def test_student_notebook_has_no_solutions_or_hidden_tests(chapter):
    nb = nbformat.read(REPO / "course" / f"{chapter}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    leaked = [ln for ln in _solution_lines(chapter) if ln in text]
    assert not leaked, f"solution lines in course/{chapter}.ipynb: {leaked[:5]}"
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "autograder" not in text, "student notebook names the autograder package"
    hidden = chapters_pkg.path(chapter, "hidden")
    names = [n.name for n in ast.parse(hidden.read_text()).body if isinstance(n, ast.FunctionDef)]
    for name in names:
        assert not re.search(rf"_hidden\.{name}\b|_judged\(\s*\"{chapter}\.{name}\"", text), \
            f"hidden check {name} named in student notebook"
    # and nothing learner-visible in course/ imports the hidden checks or the solutions
    for py in (REPO / "course").rglob("*.py"):
        body = py.read_text()
        assert "autograder" not in body and "solutions" not in body.replace("no exercise solutions", ""), py


@pytest.mark.parametrize("chapter", chapters())
def test_every_exercise_has_visible_and_hidden_checks(chapter):
    nb = authoring.build_instructor_notebook(chapter)
    tests = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    assert tests
    for c in tests:
        visible, _, hidden = c.source.partition("### BEGIN HIDDEN TESTS")
        gid = c.metadata["nbgrader"]["grade_id"]
        assert visible.strip(), f"{gid}: no visible check"
        assert hidden.strip(), f"{gid}: no hidden check"
        # hidden checks run in the judge: the kernel (learner code) never imports them
        assert re.search(rf'_judged\(\s*"{chapter}\.', hidden), f"{gid}: hidden block does not ask the judge (_judged)"
        assert "autograder.hidden" not in hidden and "autograder.chapters" not in hidden and "solutions" not in hidden, \
            f"{gid}: hidden block imports grader-only code into the learner's kernel"


def test_authoring_errors_name_file_and_line():
    with pytest.raises(authoring.AuthoringError, match=r"x.py:3: unknown cell kind \[bogus\]"):
        authoring.parse_cells("# %%\nprint(1)\n# %% [bogus]\n", "x.py")
    with pytest.raises(authoring.AuthoringError, match="before the first"):
        authoring.parse_cells("print(1)\n", "x.py")


def test_solution_wrapping_keeps_contract_and_hides_bodies():
    src = authoring.SolutionSource(authoring.solutions_path("01_autoencoders"))
    text = src.wrapped("MLPAutoencoder")
    head, _, _ = text.partition("### BEGIN SOLUTION")
    assert "class MLPAutoencoder(nn.Module):" in head and '"""' in head
    assert text.count("### BEGIN SOLUTION") == text.count("### END SOLUTION") >= 3


@pytest.mark.parametrize("chapter", chapters())
def test_written_questions_keep_their_model_answer_from_learners(chapter):
    """Each chapter asks at least two written questions: manually graded markdown answer cells
    whose instructor text (model answer, rubric) never reaches the student notebook."""
    nb = authoring.build_instructor_notebook(chapter)
    written = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
               if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")}
    assert len(written) >= 2
    student = nbformat.read(REPO / "course" / f"{chapter}.ipynb", as_version=4)
    released = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in student.cells}
    for gid, model in written.items():
        assert "**Model answer.**" in model and "**Rubric.**" in model
        assert gid in released, f"{gid}: no answer cell in the student notebook"
        assert "Model answer" not in released[gid] and "Rubric" not in released[gid], f"{gid}: model answer leaked"


@pytest.mark.parametrize("chapter", chapters())
def test_every_code_cell_compiles(chapter):
    """A cell that cannot even be parsed (a line indented wrongly by an edit) is found here in
    a second, not after the whole notebook has run."""
    for where, nb in (("instructor", authoring.build_instructor_notebook(chapter)),
                      ("student", nbformat.read(REPO / "course" / f"{chapter}.ipynb", as_version=4))):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            code = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
            try:
                compile(code, f"{where} {chapter} cell {i}", "exec")
            except SyntaxError as e:
                pytest.fail(f"{where} notebook {chapter}, cell {i} ({cell.get('id')}): {e}")
