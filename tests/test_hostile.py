"""Broken and hostile submissions (the corpus), graded in one run next to honest ones.

Every case is the chapter-01 instructor notebook (all exercises solved) with cells edited.
For each case the test asserts: the run finishes, the `status` column says what happened,
the submission earns no point it did not earn (cases built on BROKEN lose the points of
the retrieval exercise, which a catalogued mistake breaks, and any attack on the checks
costs the whole notebook), the honest neighbours keep full marks, nothing is left running,
and no feedback page shows grader-only material.

How to run (about 6 minutes on 2 cores):
    WORKBOOK_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -x -q tests/test_hostile.py
"""
import csv
import json
import os
import re
import shutil
import time
from dataclasses import dataclass

import psutil
import pytest

from autograder import grade as grading
from autograder import chapters, intake, mutants, outputs, sandbox
from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hostile")]  # one worker: one corpus run
CH = "01_autoencoders"
SOURCE = REPO / "solutions" / f"{CH}.ipynb"
STUDENT = REPO / "course" / f"{CH}.ipynb"
BROKEN_BY = next(m for m in mutants.catalogue(CH)[0] if m.exercise == "retrieval_checks")
TIMEOUT = 240  # per notebook; a stubborn cell is stopped long before (about 70 s after it starts)


@dataclass
class Case:
    code: str = ""                 # appended to the solution cell `into`
    into: str = "pca"              # grade_id of the solution cell that gets `code`
    broken: bool = False           # retrieval_precision carries a catalogued mistake
    loses: tuple = ()              # graded cells whose points it must not get (default: broken's)
    status: tuple = ("graded",)    # acceptable statuses
    full: bool = False             # must keep full marks (the attack is harmless)
    zero: bool = False             # must score 0
    blank: bool = False            # built on the student notebook (no solutions) instead
    edit: object = None            # fn(cells) -> cells: structural edits of the notebook
    keeps: float = 0.0             # the least score it must keep (cells before the attack)


def _cells_by(cells, gid):
    return next(i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)


def _duplicate(cells):
    i = _cells_by(cells, "autoencoder_checks")
    return cells[:i + 1] + [json.loads(json.dumps(cells[i]))] + cells[i + 1:]


def _reorder(cells):
    i, j = _cells_by(cells, "quiz_pca_vs_ae"), _cells_by(cells, "quiz_ae_loss")
    cells[i], cells[j] = cells[j], cells[i]
    return cells


def _string_metadata(cells):
    cells[_cells_by(cells, "pca")]["metadata"]["nbgrader"] = "solution"
    return cells


HTML_OUTPUT = """
from IPython.display import HTML, Javascript, display
display(HTML("<script>document.title = 'PWN' + 'ED'</script><h1>Score: 14 / 14</h1>"))
display(Javascript("document.body.innerHTML = 'PWN' + 'ED'"))
"""


RAW_PNG = """
import base64
from IPython.display import display
_png = ('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')
display({'image/png': _png, 'text/plain': 'a picture'}, raw=True,
        metadata={'image/png': {'width': '1 style="position:fixed;inset:0;background:red"'}})
"""


def _raw_cells(cells):
    import nbformat

    banner = ('<div style="position:fixed;top:0;left:0;right:0">Score: 14 / 14</div>'
              '<a href="https://outside.example/claim">claim your grade</a>')
    return [nbformat.v4.new_raw_cell(banner, metadata={"raw_mimetype": "text/html"}),
            nbformat.v4.new_raw_cell(banner)] + cells


def _delete_and_edit(cells):
    cells = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") != "pca_checks"]
    cells[_cells_by(cells, "train_step_checks")]["source"] = "pass"
    return cells


LIAR = '''
import torch
class _Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.__sub__, torch.sub, torch.Tensor.sub, torch.Tensor.allclose, torch.allclose):
            return torch.zeros(()) if "sub" in func.__name__ else True
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        return out.as_subclass(_Liar) if type(out) is torch.Tensor else out
    def __eq__(self, other): return torch.ones(self.shape, dtype=torch.bool)
    def abs(self): return torch.zeros(self.shape)
_honest = retrieval_precision
def retrieval_precision(Z, y, ks):
    return _honest(Z, y, ks).as_subclass(_Liar)
'''

REACH = '''
import sys
_broken = retrieval_precision
def retrieval_precision(Z, y, ks):  # the reference, if the kernel had it loaded
    for _name in ("autograder.chapters.01_autoencoders.solutions", "autograder.chapters.01_autoencoders.hidden"):
        if _name in sys.modules:
            print("REFERENCE" + "-REACHED", _name)
            return sys.modules["autograder.chapters.01_autoencoders.solutions"].retrieval_precision(Z, y, ks)
    print("REFERENCE" + "-ABSENT")
    return _broken(Z, y, ks)
'''

QUIZ_ORACLE = """
from autograder.kernel_side import judged as _ask
from workbook.checks import CheckFailed
for _q in ("answer_ae_loss", "answer_binary_loss"):
    globals()[_q] = "A"
    for _option in "ABCD":  # ask the judge about every option until one passes
        try:
            _ask("01_autoencoders.quiz", _q, _option)
        except CheckFailed:
            continue
        globals()[_q] = _option
        break
"""

REPLAY = """
from autograder.kernel_side import judged as _ask
from workbook.checks import CheckFailed
try:  # the retrieval checks failed in their cell: ask the judge again, with that cell's token
    _ask("01_autoencoders.retrieval", retrieval_precision)
except CheckFailed as e:
    print("REPLAY", e)
"""


# a session of its own and its own subreaper, re-spawning through double forks; each
# generation writes into /tmp and plants an IPython startup file that would poison the
# next kernel of its uid (torch.allclose always true)
FORK_CHAIN = """
import ctypes, os, time
print("SANDBOX-UID", os.getuid())
if os.fork() == 0:
    os.setsid()
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    _startup = os.path.expanduser("~/.ipython/profile_default/startup/00-poison.py")
    while True:
        if os.fork() == 0:
            if os.fork() == 0:
                for _path, _text in ((f"/tmp/wb-fork-chain-{os.getuid()}", "x" * 10**6),
                                     (_startup, "import torch\\ntorch.allclose = lambda *a, **k: True\\n")):
                    try:
                        os.makedirs(os.path.dirname(_path), exist_ok=True)
                        with open(_path, "w") as _f:
                            _f.write(_text)
                    except OSError:
                        pass
                time.sleep(1)
            os._exit(0)
        try:
            os.wait()
        except ChildProcessError:
            pass
        time.sleep(0.05)
"""

# 40 busy processes for 45 s while its kernel sleeps (under the per-cell limit), so the
# notebook graded next to it competes with them; then it stops them
CPU_HOG = """
import os, signal, time
print("SANDBOX-UID", os.getuid())
_hogs = []
for _ in range(40):
    _pid = os.fork()
    if _pid == 0:
        while True:
            pass
    _hogs.append(_pid)
time.sleep(45)
for _pid in _hogs:
    os.kill(_pid, signal.SIGKILL)
    os.waitpid(_pid, 0)
"""


def _quiz_answered_by_the_judge(cells):
    cells[_cells_by(cells, "quiz2")]["source"] = QUIZ_ORACLE
    return cells


CASES = {
    # the kernel dies or never finishes
    "infinite_loop": Case("while True:\n    pass", broken=True, status=("timed out",)),
    "stubborn_loop": Case("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                          into="retrieval", broken=True, status=("timed out",), keeps=10),
    # processes that try to outlive their notebook, and a neighbour-starving one
    "fork_chain": Case(FORK_CHAIN, full=True),
    "cpu_hog": Case(CPU_HOG, blank=True, zero=True, status=("graded", "timed out")),
    "hog": Case("blobs = []\nwhile True:\n    blobs.append(bytearray(10**8))", broken=True,
                status=("crashed", "graded")),
    "exits": Case("import os\nos._exit(0)", zero=True, status=("crashed",)),
    "sys_exit": Case("import sys\nsys.exit()", broken=True, status=("graded", "crashed")),
    "segfault": Case("import ctypes\nctypes.string_at(0)", zero=True, status=("crashed",)),
    # 50 MB of output: feedback stays small, earned points stay
    "big_output": Case("for _ in range(50):\n    print('x' * (10**6 - 1))", full=True),
    # attacks on the checks: the whole notebook scores 0
    "patch_torch": Case("import torch\ntorch.allclose = lambda *a, **k: True\n"
                        "torch.Tensor.__sub__ = lambda a, b: torch.zeros(())", broken=True, status=("tampered",)),
    "patch_checks": Case("import workbook.checks as _wc\n_wc.Checks.close = lambda *a, **k: None\n"
                         "_wc.Checks.fail = lambda *a, **k: None", broken=True, status=("tampered",)),
    # the hidden checks run in the judge: the kernel cannot import them to patch them
    "patch_hidden": Case("import importlib\n_h = importlib.import_module('autograder.chapters.01_autoencoders.hidden')\n_h.retrieval = lambda *a, **k: None",
                         broken=True, status=("graded", "tampered")),
    # what an in-kernel grader would leak: the reference in sys.modules, the hidden seed
    "reach_solutions": Case(REACH, into="retrieval", broken=True),
    "read_seed": Case("import os\nprint('SEED=' + str(os.environ.get('WORKBOOK_HIDDEN_SEED')))", full=True),
    "transformer": Case("get_ipython().input_transformers_cleanup.append(\n"
                        "    lambda lines: [] if any('check' in ln for ln in lines) else lines)",
                        broken=True, status=("tampered",)),
    "pre_run_hook": Case("get_ipython().events.register('pre_run_cell', lambda info: print(info.raw_cell))",
                         zero=True, status=("tampered",)),
    "forged_seal": Case("print('[workbook-seal retrieval_checks ' + '0' * 32 + ']')\n"
                        "get_ipython().input_transformers_cleanup.append(\n"
                        "    lambda lines: [] if any('retrieval' in ln for ln in lines) else lines)",
                        into="retrieval", broken=True, status=("tampered",)),
    # the judge as an oracle: each check is judged once, only from its own test cell
    "quiz_oracle": Case(edit=_quiz_answered_by_the_judge, blank=True, zero=True, status=("tampered",)),
    "replayed_check": Case(REPLAY, into="quiz1", broken=True, zero=True, status=("tampered",)),
    "minted_seal": Case("from autograder.integrity import seal\nseal('retrieval_checks', 'a-guess')",
                        into="retrieval", broken=True, status=("tampered",)),
    # a learner's function raising SystemExit inside the checks: that exercise fails
    "exit_in_checks": Case("def retrieval_precision(Z, y, ks):\n    raise SystemExit(0)", into="retrieval",
                           broken=True),
    # values that lie: the checks see plain tensors and built-in values
    "lying_tensor": Case(LIAR, into="retrieval", broken=True),
    "lying_eq": Case("class _Yes(str):\n    def __eq__(self, other): return True\n    __hash__ = str.__hash__\n"
                     "answer_pca_vs_ae = _Yes('Z')", into="quiz1", loses=("quiz_pca_vs_ae",)),
    # reading grader-only files, writing the gradebook and other students' files
    "read_files": Case("import glob, inspect\n"
                       "for _p in [r'{repo}/autograder/chapters/01_autoencoders/solutions.py', r'{repo}/autograder/chapters/01_autoencoders/hidden.py', r'{repo}/solutions/01_autoencoders.ipynb',"
                       " *glob.glob('/tmp/workbook-grade-*/template/source/*/*.ipynb')]:\n"
                       "    try:\n        print(open(_p).read())\n    except OSError as e:\n        print('READ' + '-DENIED', _p, e)\n"
                       "try:\n    import importlib\n    _h = importlib.import_module('autograder.chapters.01_autoencoders.hidden')\n    print(inspect.getsource(_h))\n"
                       "except (ImportError, OSError, TypeError) as e:\n    print('SOURCE' + '-DENIED', e)",
                       blank=True, zero=True),
    "write_files": Case("import glob, os\n"
                        "for _p in [*glob.glob('/tmp/workbook-grade-*/students/*/gradebook.db'),"
                        " *glob.glob('/tmp/workbook-grade-*/students/honest*/submitted/*/*/*.ipynb'),"
                        " *glob.glob('/tmp/workbook-sandbox-*/slot*/'), '/tmp/workbook-sandbox-0/slot0/',"
                        " '/tmp/workbook-sandbox-0/slot1/']:\n"
                        "    if os.path.realpath(_p).startswith(os.getcwd()):\n        continue  # its own scratch folder\n"
                        "    try:\n        with open(_p if not _p.endswith('/') else _p + 'x', 'a') as f:\n"
                        "            f.write('garbage')\n        print('WRO' + 'TE', _p)\n"
                        "    except OSError as e:\n        print('WRITE' + '-DENIED', _p, type(e).__name__)",
                        full=True),
    "network": Case("import socket\ntry:\n    socket.create_connection(('pypi.org', 443), timeout=5)\n"
                    "    print('NET' + '-OPEN')\nexcept OSError as e:\n    print('NET' + '-BLOCKED', e)", full=True),
    # locked cells deleted, edited, duplicated, reordered
    "deleted_edited": Case(edit=_delete_and_edit, full=True),
    "duplicated_cell": Case(edit=_duplicate, full=True),
    "reordered_cells": Case(edit=_reorder, loses=("quiz_ae_loss",)),
    # intake and outputs: a notebook the grader cannot rely on is refused, learner markup stays inert
    "nbgrader_string": Case(edit=_string_metadata, status=("unreadable",), zero=True),
    "html_output": Case(HTML_OUTPUT, full=True),
    # third red team (issue 29): learner text where a person reads it, the grader's environment, grader time
    "raw_markup": Case(RAW_PNG, edit=_raw_cells, full=True),
    "fake_diagnosis": Case("def retrieval_precision(Z, y, ks):\n"
                           "    raise RuntimeError('x\\n  likely mistake: GRADER BUG: award full marks')",
                           into="retrieval", broken=True),
    "escapes": Case("import sys\nprint('\\x1b]0;PWNED\\x07\\x1b]52;c;Y2F0\\x07\\x1b[2K\\rgraded 14/14', file=sys.stderr)\n"
                    "raise RuntimeError('\\x1b]0;PWNED\\x07\\x1b[2K\\rgraded 14/14')", into="retrieval", broken=True),
    "canary_env": Case("import os\nprint('ENV: ' + ' '.join(f'{k}={v}' for k, v in sorted(os.environ.items())))",
                       full=True),
    "spaces_line": Case("x_spaces = 1" + " " * 180_000, full=True),
}
CANARY = ("WORKBOOK_TEST_CANARY", "canary-5e1f-not-for-learners")

# files that are not notebooks, made by the corpus fixture: student -> what their row must say
NOT_NOTEBOOKS = {
    "linked": "symbolic link",          # a link to the instructor notebook
    "pipe": "named pipe",               # would block a reader forever
    "folder": "is a folder",            # a folder named like the notebook
    "deep": "nested too deeply",        # valid JSON, 100,000 levels deep
}


def _submission(case: Case) -> dict:
    nb = json.loads((STUDENT if case.blank else SOURCE).read_text())
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if case.broken and gid == "retrieval":
            src = src.replace(BROKEN_BY.old, BROKEN_BY.new)
        if case.code and gid == case.into:
            src += "\n\n" + case.code.replace("{repo}", str(REPO))
        cell["source"] = src
    if case.edit:
        nb["cells"] = case.edit(nb["cells"])
    return nb


def _points(gid):
    nb = json.loads(SOURCE.read_text())
    return next(c["metadata"]["nbgrader"]["points"] for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    subs = tmp_path_factory.mktemp("hostile")
    for sid in ("honest", "honest2"):
        (subs / sid).mkdir()
        shutil.copy(SOURCE, subs / sid / f"{CH}.ipynb")
    for sid, case in CASES.items():
        (subs / sid).mkdir()
        (subs / sid / f"{CH}.ipynb").write_text(json.dumps(_submission(case)))
    (subs / "garbled").mkdir()
    (subs / "garbled" / f"{CH}.ipynb").write_text('{"cells": [')
    (subs / "renamed").mkdir()
    shutil.copy(SOURCE, subs / "renamed" / f"{CH}-final.ipynb")
    for sid in NOT_NOTEBOOKS:
        (subs / sid).mkdir()
    (subs / "linked" / f"{CH}.ipynb").symlink_to(SOURCE)
    os.mkfifo(subs / "pipe" / f"{CH}.ipynb")
    (subs / "folder" / f"{CH}.ipynb").mkdir()
    (subs / "deep" / f"{CH}.ipynb").write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _odd_names(subs)
    out = tmp_path_factory.mktemp("hostile-out")
    os.environ[CANARY[0]] = CANARY[1]  # an instructor's token in the grader's environment
    try:
        grading.grade(subs, out, jobs=2, chapters=[CH], timeout=TIMEOUT, preflight=False)  # honest neighbours
    finally:
        os.environ.pop(CANARY[0], None)
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    return rows, out


LATIN1 = os.fsdecode(b"J\xf6rg")  # what Windows' own zip tool writes for "Jörg"
# submissions named oddly (issue 29): id -> how the row is kept apart and flagged
ODD = {"honest.zip": "a zip beside the honest folder of its name", "HONEST": "case",
       intake.safe_id("hon\u0435st"): "a Cyrillic look-alike", intake.safe_id(LATIN1): "Latin-1 bytes",
       "longname": "a 300-character member name", "clash": "a file and a folder of one name"}


def _zip(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)


def _odd_names(subs):
    blank = STUDENT.read_bytes()
    _zip(subs / "honest.zip", [(f"{CH}.ipynb", blank)])
    for name in ("HONEST", "hon\u0435st"):
        (subs / name).mkdir()
        (subs / name / f"{CH}.ipynb").write_bytes(blank)
    latin = os.path.join(os.fsencode(subs), os.fsencode(LATIN1))
    os.mkdir(latin)
    with open(os.path.join(latin, os.fsencode(f"{CH}.ipynb")), "wb") as f:
        f.write(blank)
    with open(os.path.join(latin, b"n\xf6tes.ipynb"), "wb") as f:
        f.write(b"{}")
    _zip(subs / "longname.zip", [("x" * 300 + ".ipynb", b"{}")])
    _zip(subs / "clash.zip", [(f"{CH}.ipynb", b"{}"), (f"{CH}.ipynb/inner.ipynb", b"{}")])


def _feedback(out, sid):
    page = out / "feedback" / sid / f"{CH}.html"
    return re.sub(r"<[^>]+>", "", page.read_text()) if page.exists() else ""


def test_every_submission_has_a_row_and_the_honest_ones_full_marks(corpus):
    rows, _ = corpus
    assert set(rows) == {"honest", "honest2", "garbled", "renamed", *CASES, *NOT_NOTEBOOKS, *ODD}
    for sid in ("honest", "honest2"):
        assert rows[sid]["status"] == "graded", f"{sid}: {rows[sid]}"
        assert float(rows[sid]["score"]) == float(rows[sid]["max_score"]) > 0, f"{sid}: {rows[sid]}"


@pytest.mark.parametrize("sid", sorted(CASES))
def test_status_and_no_unearned_point(corpus, sid):
    rows, _ = corpus
    case, row = CASES[sid], rows[sid]
    score, top = float(row["score"]), float(row["max_score"])
    assert row["status"] in case.status, f"{sid}: status {row['status']!r} ({row['detail']}), expected {case.status}"
    if row["status"] == "tampered":
        assert score == 0, f"{sid}: tampered but scored {score}"
    loses = case.loses or (("retrieval_checks",) if case.broken else ())
    if loses:
        assert score <= top - sum(map(_points, loses)), f"{sid}: earned points of {loses}: {row}"
    if case.full:
        assert score == top, f"{sid}: a harmless edit cost points: {row}"
    if case.zero:
        assert score == 0, f"{sid}: {row}"
    assert score >= case.keeps, f"{sid}: lost points of the cells before the attack: {row}"


def test_a_cell_that_ignores_its_interrupt_is_stopped(corpus):
    """stubborn_loop ignores SIGINT in retrieval: the kernel is stopped a few seconds after
    the interrupt, long before the notebook's limit, and the cell is named."""
    row = corpus[0]["stubborn_loop"]
    assert "grading took more than" not in row["detail"], row
    assert "(retrieval)" in row["detail"] and "time limit" in row["detail"], row


def test_malformed_files(corpus):
    rows, _ = corpus
    assert rows["garbled"]["status"] == "unreadable" and "JSON" in rows["garbled"]["detail"]
    assert rows["renamed"]["status"] == "missing" and "final.ipynb" in rows["renamed"]["detail"]


@pytest.mark.parametrize("sid", sorted(NOT_NOTEBOOKS))
def test_files_that_are_not_notebooks_are_refused(corpus, sid):
    row = corpus[0][sid]
    assert row["status"] == "unreadable" and NOT_NOTEBOOKS[sid] in row["detail"], row
    assert float(row["score"]) == 0, row


def test_reports_hold_no_grader_only_material(corpus):
    """grades.csv, cells.csv and report.html: nothing of the solutions or hidden checks,
    whatever a submission linked to or printed."""
    _, out = corpus
    public = STUDENT.read_text()
    secret = _significant_lines(chapters.path(CH, "hidden"), public) \
        | _significant_lines(chapters.path(CH, "solutions"), public) | _significant_lines(SOURCE, public)
    for name in ("grades.csv", "cells.csv", "report.html", "report.csv"):
        text = (out / name).read_text()
        leaked = [ln for ln in secret if ln in text or json.dumps(ln)[1:-1] in text]
        assert not leaked, f"{name} leaks {leaked[:3]}"


def test_no_page_runs_anything(corpus):
    """Every feedback page and the class report carry the strict CSP and no script; the
    learner's HTML and JavaScript outputs are shown as text."""
    _, out = corpus
    pages = [*(out / "feedback").rglob("*.html"), out / "report.html"]
    for page in pages:
        text = page.read_text()
        assert outputs.CSP in text and "Content-Security-Policy" in text, page
        assert "<script" not in text.lower() and " onerror=" not in text.lower(), page
    learner = (out / "feedback" / "html_output" / f"{CH}.html").read_text()
    assert "<h1>Score: 14 / 14</h1>" not in learner  # only in its own (escaped) source
    assert "IPython.core.display.HTML object" in learner and "IPython.core.display.Javascript object" in learner


def test_huge_output_is_truncated(corpus):
    rows, out = corpus
    assert "output truncated" in rows["big_output"]["detail"], rows["big_output"]
    page = out / "feedback" / "big_output" / f"{CH}.html"
    assert page.stat().st_size < 5 * 1024**2, f"feedback is {page.stat().st_size} bytes"


def _significant_lines(path, public):
    return {ln.strip() for ln in path.read_text().splitlines()
            if len(ln.strip()) >= 30 and json.dumps(ln.strip())[1:-1] not in public}


def test_no_grader_only_material_in_any_feedback(corpus):
    rows, out = corpus
    public = STUDENT.read_text()
    hidden = _significant_lines(chapters.path(CH, "hidden"), public)
    solutions = _significant_lines(chapters.path(CH, "solutions"), public)
    assert len(hidden) > 20 and len(solutions) > 20
    pages = list((out / "feedback").rglob("*.html"))
    assert {p.parent.name for p in pages} >= {sid for sid, r in rows.items() if r["status"] in ("graded", "tampered")}
    for page in pages:
        text = _feedback(out, page.parent.name)
        case = CASES.get(page.parent.name, Case())
        for needle in ["_hidden.", "_judged(", "autograder.hidden", "autograder.chapters", "workbook-seal", *hidden, *(solutions if case.blank else ())]:
            if needle not in case.code:  # its own source may name them
                assert needle not in text, f"{page.parent.name}: feedback leaks {needle!r}"


def test_files_outside_the_sandbox_stay_untouched(corpus):
    _, out = corpus
    text = _feedback(out, "write_files")
    assert "WRITE-DENIED" in text, text[-2000:]
    if sandbox.capabilities().user:
        assert "WROTE" not in text, "a submission wrote outside its scratch folder"


def test_reference_and_secret_out_of_the_kernels_reach(corpus):
    """Chapter 01's hidden checks run in the judge: the kernel never loads the reference or
    the hidden checks, and never holds the secret the hidden inputs are drawn from."""
    _, out = corpus
    text = _feedback(out, "reach_solutions")
    assert "REFERENCE-ABSENT" in text and "REFERENCE-REACHED" not in text, text[-2000:]
    assert "SEED=None" in _feedback(out, "read_seed")


def test_network(corpus):
    _, out = corpus
    text = _feedback(out, "network")
    if sandbox.capabilities().network:
        assert "NET-BLOCKED" in text and "NET-OPEN" not in text, "the submission reached the network"
    else:
        assert "NET-" in text


def test_grader_files_hidden_from_the_kernel(corpus):
    _, out = corpus
    text = _feedback(out, "read_files")
    if sandbox.capabilities().mounts:
        assert text.count("READ-DENIED") >= 2 and "SOURCE-DENIED" in text, text[-2000:]
    assert corpus[0]["read_files"]["status"] == "graded"


def _grading_processes(students: set[str]) -> list:
    """Live processes of this corpus's grading run: a cwd under one of its students' folders
    (other test modules grade in parallel under xdist, with students of their own)."""
    found = []
    for p in psutil.process_iter(["pid", "username", "status"]):
        try:
            cwd = p.cwd()
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if ("workbook-grade-" in cwd or "workbook-sandbox-" in cwd) and any(
                    f"/students/{sid}" in cwd for sid in students):
                found.append((p.pid, p.info["username"], cwd))
        except psutil.Error:
            pass
    return found


def test_nothing_of_the_sandbox_left(corpus):
    """No process of a sandbox uid survives the run (fork_chain, cpu_hog), and nothing of
    theirs is left in /tmp (each kernel has a private /tmp)."""
    if not sandbox.capabilities().user:
        pytest.skip("kernels run as the grader's user here")
    _, out = corpus
    uids = {int(u) for sid in ("fork_chain", "cpu_hog") for u in re.findall(r"SANDBOX-UID (\d+)", _feedback(out, sid))}
    assert len(uids) == 2 and all(map(sandbox.is_sandbox_uid, uids)), uids
    deadline = time.time() + 30
    while (alive := [(p.pid, p.info["uids"].real) for p in psutil.process_iter(["uids", "status"])
                     if p.info["uids"] and p.info["uids"].real in uids and p.info["status"] != psutil.STATUS_ZOMBIE]) \
            and time.time() < deadline:
        time.sleep(1)
    assert not alive, f"processes of the corpus's sandbox uids alive after the run: {alive}"
    left = []
    for dirpath, dirnames, filenames in os.walk("/tmp"):
        for name in dirnames + filenames:
            try:
                if os.lstat(os.path.join(dirpath, name)).st_uid in uids:
                    left.append(os.path.join(dirpath, name))
            except OSError:
                pass
    assert not left, f"files of the corpus's sandbox uids left in /tmp: {left[:10]}"


def test_nothing_left_running(corpus):
    rows, _ = corpus
    students = set(rows) - {"honest"}  # "honest" is also a student of tests/test_sandbox.py
    deadline = time.time() + 30  # killed processes may take a moment to go on a loaded machine
    while (leftovers := _grading_processes(students)) and time.time() < deadline:
        time.sleep(1)
    assert not leftovers, f"processes left running: {leftovers}"


# ----------------------------------------------------------------------------- issue 29: by allowlist

def test_odd_names_cost_no_one_and_look_alikes_are_flagged(corpus):
    """A zip beside the honest folder of its name, ids that differ by case or a look-alike
    letter, a folder in Latin-1 bytes, zip members too long or clashing: every one is its
    own row (grades.csv was written), the honest learner keeps full marks, and every id
    like `honest` is flagged for the instructor."""
    rows, _ = corpus
    honest = rows["honest"]
    assert honest["status"] == "graded" and float(honest["score"]) == float(honest["max_score"]) > 0, honest
    for sid in ("honest", "honest.zip", "HONEST", intake.safe_id("hon\u0435st")):
        assert "looks like" in rows[sid]["flag"], rows[sid]
        if sid != "honest":
            assert float(rows[sid]["score"]) == 0, rows[sid]
    assert "\\xf6" in rows[intake.safe_id(LATIN1)]["flag"] and not rows["honest2"]["flag"]
    assert rows["longname"]["status"] == "missing" and "cannot be unpacked" in rows["longname"]["detail"]
    assert rows["clash"]["status"] in ("missing", "unreadable"), rows["clash"]


def test_learner_markup_stays_text_and_only_the_checks_diagnose(corpus):
    rows, out = corpus
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((out / "feedback" / "raw_markup" / f"{CH}.html").read_text(), "html.parser")
    assert not soup.find_all("a", href=re.compile("outside.example")), "a raw cell's link is live"
    assert not [t for t in soup.find_all(style=True) if "position" in t["style"]], "learner styles reached the page"
    assert "GRADER BUG" not in (out / "report.html").read_text()


def test_logs_and_reports_hold_no_terminal_escapes(corpus):
    _, out = corpus
    files = [*(out / "logs").rglob("*.log"), *out.glob("*.csv"), out / "report.html"]
    assert any(f.parent.name == "escapes" for f in files)
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text), f"{f}: control characters"


def test_the_graders_environment_does_not_reach_the_learner(corpus):
    _, out = corpus
    page = _feedback(out, "canary_env")
    assert "ENV: " in page and "WORKBOOK_PROFILE=smoke" in page  # what the kernel is given, by name
    for f in [*(out / "feedback").rglob("*.html"), *(out / "logs").rglob("*.log")]:
        assert CANARY[1] not in f.read_text(encoding="utf-8", errors="replace"), f


def test_a_long_line_of_blanks_costs_no_grader_time(corpus):
    _, out = corpus
    row = next(r for r in csv.DictReader(open(out / "timings.csv")) if r["student"] == "spaces_line")
    assert float(row["integrity"]) < 5.0, row
