"""Answers while you work: a quiz or prediction says right or wrong with its explanation; a
written answer, once written, unlocks its model answer and rubric.

Where the answers come from: an answers file, named by `$WORKBOOK_ANSWERS` or lying beside
the notebook as `answers.json`. Working from a clone of the open course, `make lab` writes
one and points JupyterLab's kernels at it; an instructor may hand one out.
A release for grading holds none unless the instructor opts in (docs/GRADING.md,
"Answers while working"); then a quiz check verifies the format only and the answers arrive
with the feedback. Nothing here changes how a question is graded, and nothing here raises:
a quiz check that found the format right passes, whatever the answer.
"""
from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

MIN_WORDS = 8  # an answer shorter than this is not written yet


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def answers() -> dict:
    """The answers this learner may see, by chapter ({} where there are none): see above."""
    for candidate in (os.environ.get("WORKBOOK_ANSWERS"), "answers.json"):
        try:
            path = Path(candidate).resolve() if candidate else None
            if path is not None and path.is_file():
                return _load(str(path), path.stat().st_mtime)
        except (OSError, ValueError):  # unreadable or not JSON: no answers, never an error
            continue
    return {}


def quiz_feedback(name: str, answer: Any, explain: str | None) -> str:
    """What a quiz check adds once the format is right: right or not, the answer and the idea;
    or, with no answers here, the idea to weigh and when it is graded."""
    key = next((ch["quiz"][name] for ch in answers().values() if name in ch.get("quiz", {})), None)
    if key is None:
        idea = f"  to weigh your answer: {explain}\n" if explain else ""
        return idea + "  (the answer is graded when you submit; your feedback then explains it)"
    want = set(key) if isinstance(key, list) else key
    from .checks import choice_letters  # the letters as the quiz checks read them

    letters = choice_letters(answer)
    right = set(letters) == want if isinstance(want, set) else len(set(letters)) == 1 and letters[0] == want
    shown = "{" + ", ".join(repr(x) for x in sorted(want)) + "}" if isinstance(want, set) else repr(want)
    verdict = "right" if right else f"not right: the answer is {shown}"
    return f"  {'✓' if right else '✗'} {name}: {verdict}" + (f"\n  the idea: {explain}" if explain else "")


def _notebook(chapter: str) -> Path | None:
    """The learner's notebook file as last saved: the one Jupyter or VS Code says this kernel
    runs, else `<chapter>.ipynb` in the working folder."""
    candidates = [os.environ.get("JPY_SESSION_NAME", "")]
    try:
        from IPython import get_ipython
        shell = get_ipython()
        if shell is not None:
            candidates.append(str(shell.user_ns.get("__vsc_ipynb_file__", "")))
    except ImportError:
        pass
    candidates.append(f"{chapter}.ipynb")
    for c in candidates:
        if c.endswith(".ipynb") and Path(c).is_file():
            return Path(c)
    return None


def _written_text(notebook: Path, grade_id: str) -> str | None:
    try:
        nb = json.loads(notebook.read_text())
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            src = cell.get("source", "")
            return "".join(src) if isinstance(src, list) else src
    return None


def model_answer(chapter: str, grade_id: str) -> None:
    """Show the model answer and rubric of a written question once your answer above is
    written and saved; or say what is missing."""
    entry = answers().get(chapter, {}).get("written", {}).get(grade_id)
    if entry is None:
        print("Your instructor grades this answer; the model answer arrives with your feedback.")
        return
    notebook = _notebook(chapter)
    text = _written_text(notebook, grade_id) if notebook else None
    if text is None:
        print(f"Save the notebook (Ctrl+S) as {chapter}.ipynb, then run this cell again.")
        return
    words = len(re.findall(r"\w+", text.replace("YOUR ANSWER HERE", "")))
    if words < MIN_WORDS:
        print(f"Write your answer in the cell above first ({words} words so far), save (Ctrl+S), "
              "then run this cell again: the model answer is shown once you have committed to yours.")
        return
    body = f"**Compare with your answer** ({entry['points']:g} points when graded)\n\n{entry['text']}"
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(body))  # its maths rendered in the notebook
    else:
        print(body)
