"""The course root every student is graded in, and the grader-only secrets it holds.

`make_template` makes the template course root: the config, the instructor notebooks and a
gradebook in which `nbgrader generate_assignment` registered every chapter. In the grader's
copy of each instructor notebook every graded test cell gets a seal line in a hidden block
(`add_seals`; the seal itself: autograder/integrity.py) and, where its hidden block asks the
judge, a one-time token (`token_call`). What the grader checks each notebook against is a
`Chapter`: the locked sources with their seal nonces, the lines (and code fragments) that
must never reach feedback (`protected_lines`), the written answers' model answers.

The run's secret (`new_run_secret`, kept in OUT/.secret by `store_run_secret`) and, derived
from it per student and notebook, the secret the judge draws that notebook's hidden inputs
from (`student_secret`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import integrity, outputs
from .build import make_course_root, nbgrader
from .chapters import path as chapter_part
from .checknames import JUDGED_CALL


def make_template(root: Path, chapters: list[str]) -> dict[str, "Chapter"]:
    """A course root whose gradebook knows every chapter (generate_assignment run once),
    made from the instructor notebooks with a seal line appended to every graded cell
    (see autograder/integrity.py). Returns what the grader checks each notebook against."""
    make_course_root(root, chapters)
    known = {}
    for ch in chapters:
        known[ch] = Chapter(ch, add_seals(root / "source" / ch / f"{ch}.ipynb"),
                            written=written_cells(root / "source" / ch / f"{ch}.ipynb"))
        r = nbgrader(["generate_assignment", ch, "--force"], cwd=root)
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {ch} failed:\n{r.stderr[-3000:]}")
        known[ch].protected = protected_lines(ch, root / "source" / ch / f"{ch}.ipynb",
                                              root / "release" / ch / f"{ch}.ipynb")
        release = root / "release" / ch / f"{ch}.ipynb"
        public = "\n".join(cell_source(c) for c in json.loads(release.read_text())["cells"]) if release.exists() else ""
        known[ch].fragments = outputs.fragments(known[ch].protected, public)
    shutil.rmtree(root / "release", ignore_errors=True)
    return known


def written_cells(path: Path) -> dict[str, tuple[float, str]]:
    """The manually graded (written) answer cells of a notebook: grade_id -> (points, text).
    In the instructor notebook the text is the model answer and rubric."""
    out = {}
    for cell in json.loads(path.read_text())["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "markdown" and meta.get("grade") and meta.get("solution") and meta.get("grade_id"):
            out[meta["grade_id"]] = (float(meta.get("points", 0)), cell_source(cell))
    return out


@dataclass
class Chapter:
    """What the grader checks a chapter's notebooks against (`make_template` makes one per chapter)."""
    name: str
    locked: dict[str, tuple[str, str]]         # graded cell -> (locked source, seal nonce)
    protected: frozenset[str] = frozenset()     # lines that must never reach feedback
    fragments: frozenset[str] = frozenset()     # ... nor any 40-character run of their code
    written: dict[str, tuple[float, str]] = field(default_factory=dict)  # written answer cell -> (points, model answer)

    @property
    def judged(self) -> dict[str, list[str]]:
        """graded cell -> the verdicts (`judge.verdict_key`) its hidden block asks the judge
        for (every hidden block calls `_judged`: tests/test_build.py)."""
        return {gid: [f"{n}:{q}" if q else n for n, q in JUDGED_CALL.findall(src)]
                for gid, (src, _) in self.locked.items() if JUDGED_CALL.search(src)}

    @property
    def judge_cells(self) -> dict[str, dict]:
        """What the judge admits: one-time token -> {cell, the checks its hidden block asks for}."""
        return {m[1]: {"cell": gid, "checks": self.judged.get(gid, [])}
                for gid, (src, _) in self.locked.items() if (m := TOKEN_CALL.search(src))}




def cell_source(cell: dict) -> str:
    """A notebook cell's source as one string."""
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def add_seals(path: Path) -> dict[str, tuple[str, str]]:
    """Append `seal(grade_id, nonce)` in a hidden block to every graded code cell of the
    grader's copy of an instructor notebook; a fresh random nonce per cell and run. A cell
    whose hidden block asks the judge (`_judged`) also gets, as that block's first line, a
    fresh random one-time token (`kernel_side.cell_token`) the judge admits its checks with."""
    nb = json.loads(path.read_text())
    locked = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        nonce, src = secrets.token_hex(8), cell_source(cell)
        if JUDGED_CALL.search(src):
            src = src.replace(HIDDEN_BEGIN, HIDDEN_BEGIN + token_call(secrets.token_hex(16)) + "\n", 1)
        cell["source"] = (src.rstrip("\n") + "\n" + HIDDEN_BEGIN
                          + integrity.seal_call(meta["grade_id"], nonce) + "\n### END HIDDEN TESTS")
        locked[meta["grade_id"]] = (cell["source"], nonce)
    path.write_text(json.dumps(nb, indent=1))
    return locked


HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS\n"
TOKEN_CALL = re.compile(r'_wb_token\("([0-9a-f]{32})"\)')


def token_call(token: str) -> str:
    """The line that hands a graded test cell's one-time token to `kernel_side.judged`."""
    return f'from autograder.kernel_side import cell_token as _wb_token; _wb_token("{token}")'


def student_secret(run_secret: str, sid: str, notebook: str, content: bytes = b"") -> str:
    """The grading secret of one student's notebook: the hidden inputs differ per student,
    notebook and run, and are reproduced by the same run secret (`grade --secret`, a
    resumed run). With `content` (the notebook as handed in) they differ per version of
    the notebook too: a resubmission regraded under the run's secret (`--changed`, `--only`)
    meets inputs other than those the feedback of the earlier version showed."""
    if len(run_secret) < 32:
        raise ValueError("no run secret: grading needs one (new_run_secret)")
    message = f"{sid}/{notebook}" + (f"/{hashlib.sha256(content).hexdigest()}" if content else "")
    return hmac.new(bytes.fromhex(run_secret), message.encode(), hashlib.sha256).hexdigest()


def new_run_secret(given: str | None) -> str:
    """The run's secret: `given` (hex, for an exact regrade) or a fresh random one."""
    if given is None:
        return secrets.token_hex(32)
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2}){16,}", given):
        raise ValueError("--secret must be hex digits (at least 32), as stored in OUT/.secret")
    return given.lower()


def store_run_secret(out: Path, run_secret: str) -> Path:
    """OUT/.secret (mode 0600, grader only): regrade this run exactly with `--secret`."""
    path = out / ".secret"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(run_secret + "\n")
    return path


def protected_lines(ch: str, instructor: Path, release: Path) -> frozenset[str]:
    """Lines of the solutions, the hidden checks and the hidden tests that learners never
    see (lines of the student notebook are public and left out)."""
    def lines(text: str) -> set[str]:
        return {ln.strip() for ln in text.splitlines() if len(ln.strip()) >= 24}

    texts = [cell_source(c) for c in json.loads(instructor.read_text())["cells"]]
    for extra in (chapter_part(ch, "solutions"), chapter_part(ch, "hidden")):
        if extra.exists():
            texts.append(extra.read_text())
    public = lines("\n".join(cell_source(c) for c in json.loads(release.read_text())["cells"])) if release.exists() else set()
    return frozenset(lines("\n".join(texts)) - public)
