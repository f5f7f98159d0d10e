"""The answers file: every chapter's quiz keys and written questions' model answers, for
self-study (`python -m autograder answers --out FILE`).

Learners read it through `workbook.selfstudy` (from `$WORKBOOK_ANSWERS`, or `answers.json`
beside the notebooks): a quiz check then says right or not at once, and the cell after a
written answer shows the model answer once the learner's is written. `make lab` writes it
to `build/answers.json` for a learner working from a clone of the open course. A release
for grading holds no such file unless the instructor hands it out (docs/GRADING.md,
"Answers while working"): whoever has it has every quiz answer.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from . import authoring, chapters


def chapter_answers(chapter: str) -> dict:
    """{"quiz": {name: letter or sorted letters}, "written": {grade_id: {"points", "text"}}}."""
    quiz = {}
    for node in ast.parse(chapters.path(chapter, "solutions").read_text()).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.startswith("answer_"):
                    value = ast.literal_eval(node.value)
                    quiz[target.id] = sorted(value) if isinstance(value, (set, frozenset)) else value
    source = chapters.path(chapter, "narrative")
    written = {c.opts["id"]: {"points": float(c.opts["points"]),
                              "text": authoring._markdown(c.lines, f"{chapter}/{source.name}:{c.line_no}")}
               for c in authoring.parse_cells(source.read_text(), source.name) if c.kind == "written"}
    return {"quiz": quiz, "written": written}


def write(out: Path, only: list[str] | None = None) -> list[str]:
    """Write the answers file of the chapters (all, or those starting with one of `only`)."""
    names = [c for c in chapters.names() if not only or any(c.startswith(o) for o in only)]
    if not names:
        raise ValueError(f"no chapter matches {only}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({c: chapter_answers(c) for c in names}, indent=1, ensure_ascii=False) + "\n")
    return names
