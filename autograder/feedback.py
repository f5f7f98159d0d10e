"""Feedback pages: what a learner sees of their graded notebook.

`sanitize_for_feedback` removes the hidden tests, the seal lines and every traceback from
the autograded notebook; `add_model_answers` puts the model answer after each written
answer; `generate_feedback` runs `nbgrader generate_feedback` in a process of its own
(`autograder.forked`); `write_feedback` hardens each page
(`outputs.harden_page`) into the run's private output folder. A failure or time-out costs
only the page.
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path

from . import forked, integrity, outputs
from .build import nbgrader, tool_env
from .intake import private_dir
from .rows import Job, Result

FEEDBACK_TIMEOUT = 300.0  # seconds for one notebook's generate_feedback
HIDDEN_BLOCK = re.compile(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.S)
SEAL_OUTPUT = re.compile(integrity.SEAL_LINE.pattern + r"\n?")


def sanitize_for_feedback(path: Path) -> None:
    """Remove hidden tests (and the grader's seal lines) from an autograded notebook and
    keep only `Error: message` of every error, so feedback never shows hidden test code, not even
    as the source lines a traceback prints around a failure."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = HIDDEN_BLOCK.sub("", src)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
            if out.get("output_type") == "stream":
                out["text"] = SEAL_OUTPUT.sub("", integrity._join(out.get("text", "")))
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "stream" or o["text"]]
    outputs.plain_outputs(nb)  # learner HTML/JavaScript/widgets are shown as text, never live
    path.write_text(json.dumps(nb, indent=1))


def write_feedback(job: Job, root: Path, results: list[Result], watch: dict | None = None) -> None:
    """Feedback pages, hardened (`outputs.harden_page`: nothing in them runs or loads),
    into the run's private output folder; a failure or time-out costs only the page."""
    for res in results:
        if not (root / "autograded" / job.sid / res.notebook).exists():
            continue
        with (watch[res.notebook]("feedback") if watch else contextlib.nullcontext()):
            _feedback_page(job, root, res)


def _feedback_page(job: Job, root: Path, res: Result) -> None:
    """One notebook's page; a failure or time-out costs only the page (a note in its row)."""
    try:
        add_model_answers(root / "autograded" / job.sid / res.notebook / f"{res.notebook}.ipynb",
                          job.chapters[res.notebook].written)
        generate_feedback(root, res.notebook, job.sid)
        fb = root / "feedback" / job.sid / res.notebook / f"{res.notebook}.html"
        if fb.exists():
            dest = private_dir(job.out / "feedback" / job.sid) / f"{res.notebook}.html"
            dest.write_text(outputs.harden_page(fb.read_text(encoding="utf-8", errors="replace")))
    except Exception:  # noqa: BLE001 - no page, a note; the grade stands
        res.detail = "; ".join(d for d in [res.detail, "no feedback page (the feedback step failed)"] if d)
        with contextlib.suppress(OSError):
            with open(private_dir(job.out / "logs" / job.sid) / "grader-error.log", "a") as f:
                import traceback
                f.write(f"--- feedback {res.notebook}\n{traceback.format_exc()}\n")


def add_model_answers(graded: Path, written: dict[str, tuple[float, str]]) -> None:
    """After each written answer of the graded notebook, the model answer and rubric (for the
    feedback page only: the learner has handed in and is shown them after grading)."""
    if not written or not graded.exists():
        return
    nb = json.loads(graded.read_text())
    cells = []
    for c in nb["cells"]:
        cells.append(c)
        gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if c.get("cell_type") == "markdown" and gid in written:
            cells.append({"cell_type": "markdown", "metadata": {}, "id": f"model-{gid}"[:64].replace("_", "-"),
                          "source": f"> **After grading: the model answer** (graded by your instructor, "
                                    f"{written[gid][0]:g} points)\n>\n" +
                                    "\n".join("> " + ln for ln in written[gid][1].splitlines())})
    nb["cells"] = cells
    graded.write_text(json.dumps(nb))


def generate_feedback(root: Path, notebook: str, sid: str, timeout: float = FEEDBACK_TIMEOUT) -> None:
    """`nbgrader generate_feedback` for one notebook, in a process of its own that is killed
    after `timeout`: forked from the run's server (`autograder.forked`, nbgrader and nbconvert
    imported once per run), or `python -m nbgrader` where that cannot be."""
    ctx = forked.context()
    if ctx is None:
        nbgrader(["generate_feedback", notebook, "--student", sid, "--force"], cwd=root, timeout=timeout)
        return
    code, _log = forked.run(ctx, _feedback_child, (str(root), notebook, sid, tool_env()), cwd=root, timeout=timeout)
    if code is None:
        raise TimeoutError(f"generate_feedback took more than {timeout:.0f} s")


def _feedback_child(output: int, root: str, notebook: str, sid: str, env: dict) -> None:
    """In the forked process: nbgrader's own command line, from the course root (where it
    finds its config), its log discarded as the subprocess's was."""
    forked.enter(root, env)
    from nbgrader.apps.nbgraderapp import NbGraderApp

    sys.argv = ["nbgrader", "generate_feedback", notebook, "--student", sid, "--force"]
    NbGraderApp.launch_instance(argv=sys.argv[1:])
