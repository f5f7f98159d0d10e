"""Quiz answers: the format check learners see (one letter, or a set of letters) and
the grading check (letters in any container; a one-letter set counts as the letter)."""
import pytest
import torch

from autograder.hidden import grade_choice
from workbook.checks import CheckFailed, check_choice, substituted


@pytest.mark.parametrize("answer", ["B", "A", {"C"}])
def test_one_letter_accepted(answer):
    check_choice("q", answer, "ABCD")


@pytest.mark.parametrize("answer", ["Z", "AB", "", ["A", "B"], None, 1, {"Z"}])
def test_one_letter_rejected(answer):
    with pytest.raises(CheckFailed, match="q must be one letter from ABCD"):
        check_choice("q", answer, "ABCD")


@pytest.mark.parametrize("answer", [{"A", "C"}, ["C", "A"], ("A",), frozenset("B"), "A"])
def test_set_of_letters_accepted(answer):
    check_choice("q", answer, "ABCDE", many=True)


@pytest.mark.parametrize("answer", [set(), {"A", "Z"}, {"AB"}, [1], None])
def test_set_of_letters_rejected(answer):
    with pytest.raises(CheckFailed, match="a set of letters"):
        check_choice("q", answer, "ABCDE", many=True)


def test_grading_compares_letters_in_any_container():
    grade_choice("q", ["C", "A"], {"A", "C"})
    grade_choice("q", "B", {"B"})
    grade_choice("q", {"B"}, "B")
    grade_choice("q", "b", "B")                  # either case counts, as the contract says
    grade_choice("q", ["c", " a"], {"A", "C"})
    for wrong, want in ((["A"], {"A", "C"}), ("C", "B"), ({"A", "C", "D"}, {"A", "C"}), ("c", "B"), (3, "B"), ([], {"A"})):
        with pytest.raises(CheckFailed, match="is not right"):
            grade_choice("q", wrong, want)


def test_substituted_restores_the_learners_names():
    scope = {"helper": lambda: "learner's"}
    exec("def uses(): return helper()", scope)
    with substituted(scope["uses"], helper=lambda: "stand-in", absent=1):
        assert scope["uses"]() == "stand-in" and scope["absent"] == 1
    assert scope["uses"]() == "learner's" and "absent" not in scope


def test_substituted_reaches_through_decorators_to_the_learners_names():
    """A decorated definition (@torch.no_grad(), functools.wraps) is looked up in its own
    notebook's names, not in the decorator's module."""
    scope = {"helper": lambda: "learner's", "torch": torch}
    exec("@torch.no_grad()\ndef uses(): return helper()", scope)
    before = dict(vars(torch.autograd.grad_mode))
    with substituted(scope["uses"], helper=lambda: "stand-in"):
        assert scope["uses"]() == "stand-in"
    assert scope["uses"]() == "learner's" and dict(vars(torch.autograd.grad_mode)) == before


def test_a_wrong_answer_is_told_the_idea_not_the_letter():
    with pytest.raises(CheckFailed, match="the reconstruction error is an average"):
        grade_choice("q", "A", "B", explain="the reconstruction error is an average over pixels")


def test_check_choice_takes_lower_case_and_explains(capsys):
    check_choice("q", "b", "ABCD", explain="think about what the encoder sees")
    assert "think about what the encoder sees" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="one letter"):
        check_choice("q", "bb", "ABCD")
