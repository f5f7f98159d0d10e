"""Every catalogued mistake loses exactly its exercise (named when diagnosed); every
correct alternative keeps full marks. Fast path: the test cells run in-process."""
import pytest

from autograder import fidelity
from conftest import chapters


@pytest.mark.parametrize("chapter", chapters())
def test_catalogue(chapter, monkeypatch):
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    outcomes = fidelity.check_chapter(chapter)
    exercises = {o.exercise for o in outcomes}
    assert exercises, "no mistakes catalogued"
    bad = [f"{o.kind} {o.name}: failed {o.failed}; message: {o.message[-300:]}" for o in outcomes if not o.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("chapter", chapters())
def test_hidden_checks_alone_catch_every_mistake(chapter, monkeypatch):
    """Without the visible checks (a submission that hard-codes the visible cases), the
    hidden checks must still fail every catalogued mistake and pass every alternative."""
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    outcomes = fidelity.check_chapter(chapter, hidden_only=True)
    bad = [f"{o.kind} {o.name}: failed {o.failed}; message: {o.message[-300:]}" for o in outcomes if not o.ok]
    assert not bad, "\n".join(bad)
