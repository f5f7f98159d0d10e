"""The catalogues through the real grading pipeline (a fast subset; the full run is
`python -m autograder fidelity --pipeline`, timed in docs/GRADING.md): each mistake's
submission loses exactly its exercise's points with the diagnosis in its feedback, each
alternative's submission keeps full marks."""
import pytest

from autograder import fidelity

pytestmark = pytest.mark.slow


def test_mistakes_and_alternatives_through_nbgrader(tmp_path, capsys):
    rc = fidelity.pipeline_report(["01_autoencoders"], tmp_path, jobs=2, limit=2)
    report = capsys.readouterr().out
    assert "mistakes caught 1/1" in report and "alternatives passed 1/1" in report, report
    assert rc == 0, report
