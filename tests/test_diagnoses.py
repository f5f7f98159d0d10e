"""One source per diagnosis: every chapter's texts for the learner live once, keyed, in
`workbook.chNN.checks.DIAGNOSES` (and the ideas behind its quizzes in `QUIZ_EXPLAIN`); the visible
checks, the hidden checks and the catalogue of mistakes all name them by key."""
import collections
import importlib

import pytest

from autograder.mutants import catalogue

CHAPTERS = ["01_autoencoders", "02_denoising", "03_vae", "04_clip", "05_diffusion", "06_latent_diffusion",
            "07_flow_matching"]


def _chapter(chapter: str):
    return importlib.import_module(f"workbook.ch{chapter[:2]}.checks")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_diagnosis_comes_from_the_chapter_text(chapter):
    texts = set(_chapter(chapter).DIAGNOSES.values())
    mistakes, _ = catalogue(chapter)
    stray = [f"{m.target}: {m.diagnosis}" for m in mistakes
             if m.diagnosed and not m.exercise.startswith("quiz") and m.diagnosis not in texts]
    assert not stray, f"diagnoses written outside ch{chapter[:2]}/checks.py DIAGNOSES: {stray}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_two_diagnoses_share_one_text(chapter):
    counts = collections.Counter(_chapter(chapter).DIAGNOSES.values())
    assert not [text for text, n in counts.items() if n > 1]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_quiz_has_its_explanation(chapter):
    ch = _chapter(chapter)
    quizzes = set(getattr(ch, "QUIZ_OPTIONS", {}))
    assert set(getattr(ch, "QUIZ_EXPLAIN", {})) == quizzes
    assert all(ch.QUIZ_EXPLAIN[q].strip() for q in quizzes)
    mistakes, _ = catalogue(chapter)
    assert {m.target for m in mistakes if m.exercise.startswith("quiz")} <= quizzes
