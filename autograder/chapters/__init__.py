"""The chapters, one folder each: `autograder/chapters/NN_topic/` holds everything an
instructor writes for chapter `NN_topic`:

    narrative.py   the chapter's text, setup code and test cells (percent format)
    solutions.py   the reference implementation of every exercise
    hidden.py      the hidden checks, run by the judge while grading
    mistakes.py    the catalogue: realistic mistakes and correct alternatives

Generated from them (never edited by hand): `solutions/NN_topic.ipynb` (the instructor
notebook, solutions in place) and `course/NN_topic.ipynb` (the student notebook). What a
learner may read (visible checks, given models, plots) is `course/workbook/chNN/`.

A chapter's name is `NN_topic` everywhere: folder, notebooks, `--chapter`, gradebook
columns, and the check names the judge answers (`NN_topic.check`).
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
PARTS = ("narrative", "solutions", "hidden", "mistakes")
NAME = re.compile(r"^(?P<num>\d\d)_(?P<topic>[a-z][a-z0-9_]*)$")


def names() -> list[str]:
    """Every chapter in course order, e.g. ['01_autoencoders', ...]."""
    return sorted(p.name for p in HERE.iterdir() if p.is_dir() and NAME.match(p.name))


def folder(chapter: str) -> Path:
    """The chapter's folder; a clear error for a name that is not a chapter."""
    path = HERE / chapter
    if not NAME.match(chapter) or not path.is_dir():
        raise KeyError(f"no chapter {chapter!r}; the chapters are: {', '.join(names())}")
    return path


def path(chapter: str, part: str) -> Path:
    """`autograder/chapters/<chapter>/<part>.py` (part: one of PARTS)."""
    if part not in PARTS:
        raise ValueError(f"a chapter's parts are {PARTS}, not {part!r}")
    return folder(chapter) / f"{part}.py"


def module(chapter: str, part: str) -> ModuleType:
    """A chapter's python part, imported (`solutions`, `hidden` or `mistakes`)."""
    path(chapter, part)
    return importlib.import_module(f"{__name__}.{chapter}.{part}")
