"""Defences by allowlist on the grading run's intake and outputs (issue 29), without nbgrader:
no submission stops the class (odd zip members and names cost their own row), ids are
normalised and look-alikes flagged (never zeroing an honest party), learner text reaches a
person only as text (CSV under `,` `;` and tab, logs, report.html diagnoses, feedback pages),
the kernel's environment comes from a list, and learner text is processed in linear time.
The attacks of the third red team are the cases here; tests/test_hostile.py grades some of
them in a real run."""
import csv
import json
import os
import random
import re
import stat
import subprocess
import sys
import time
import zipfile

import nbformat
import pytest

from autograder import feedback, intake, lms, outputs, sandbox, student
from autograder.report import print_summary, write_reports
from autograder.rows import Job, Result
from conftest import REPO

CH = "01_autoencoders"
NB = f"{CH}.ipynb"
SOURCE = REPO / "solutions" / NB
LATIN1 = os.fsdecode(b"J\xf6rg")            # what Windows' zip writes for "Jörg"
LATIN1_NB = os.fsdecode(b"n\xf6tes.ipynb")


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _grade_rows(students):
    """The rows intake alone gives (no notebook is run): what grades.csv holds for them."""
    rows = []
    for sid, sub in sorted(students.items()):
        res = Result(sid, CH, max_score=14)
        if student._intake_row(sub, res, {CH: None}) is not None:
            res.score = 14.0
        res.flag = sub.flag
        rows.append(res)
    return rows


# ----------------------------------------------------------------------------- one submission, one row

def test_no_submission_can_stop_the_class(tmp_path, capsys):
    """A 300-character member name (ENAMETOOLONG), a file and a folder of one name
    (NotADirectoryError), a folder and a notebook named in Latin-1 bytes: each costs at most
    its own row; everyone is taken in, grades.csv, report.html and every export are written."""
    subs = tmp_path / "subs"
    (subs / "ada").mkdir(parents=True)
    (subs / "ada" / NB).write_bytes(SOURCE.read_bytes())
    _zip(subs / "longname.zip", [("x" * 300 + ".ipynb", b"{}"), (NB, SOURCE.read_bytes())])
    _zip(subs / "clash.zip", [(NB, SOURCE.read_bytes()), (f"{NB}/inner.ipynb", b"{}")])
    _zip(subs / "clash2.zip", [(f"{NB}/inner.ipynb", b"{}"), (NB, SOURCE.read_bytes())])
    latin = os.path.join(os.fsencode(subs), os.fsencode(LATIN1))
    os.mkdir(latin)
    with open(os.path.join(latin, os.fsencode(LATIN1_NB)), "wb") as f:
        f.write(b"{}")
    with open(os.path.join(latin, os.fsencode(NB)), "wb") as f:
        f.write(SOURCE.read_bytes())
    students = intake.collect(subs, tmp_path / "scratch")
    assert len(students) == 5 and "ada" in students
    assert students["longname"].notebooks.keys() == {NB}
    assert any("cannot be unpacked" in why for why in students["longname"].refused.values())
    assert NB in students["clash"].notebooks and "Not a directory" in str(students["clash"].refused)
    assert "folder" in students["clash2"].refused[NB]   # a folder where its notebook should be: named
    jorg = next(s for s in students.values() if s.handed_in == LATIN1)
    assert jorg.sid.isascii() and intake.SAFE_ID.match(jorg.sid) and "\\xf6" in jorg.flag
    assert jorg.notebooks.keys() == {NB, "n\\xf6tes.ipynb"}
    rows = _grade_rows(students)
    write_reports(rows, tmp_path, models={})
    print_summary(rows, 1.0)
    capsys.readouterr()
    grades = _rows(tmp_path / "grades.csv")
    assert {g["student"] for g in grades} == set(students), grades
    assert [g["student"] for g in grades if g["score"] != "14"] == ["clash2"], grades
    assert "\\xf6" in (tmp_path / "report.html").read_text()
    for fmt in lms.FORMATS:
        assert len(_rows(lms.export(tmp_path, fmt))) >= 5


def test_a_failure_anywhere_in_intake_costs_that_row(tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    for sid in ("ada", "bob"):
        (subs / sid).mkdir(parents=True)
        (subs / sid / NB).write_bytes(SOURCE.read_bytes())
    real = intake.stage_folder

    def broken(sub, folder, dest, dir_fd=None):
        if sub.sid == "bob":
            raise OSError(36, "File name too long")
        return real(sub, folder, dest, dir_fd)

    monkeypatch.setattr(intake, "stage_folder", broken)
    students = intake.collect(subs, tmp_path / "scratch")
    assert students["ada"].notebooks and not students["bob"].notebooks
    assert "could not take this submission in" in students["bob"].problem


# ----------------------------------------------------------------------------- ids

def test_look_alike_ids_are_graded_apart_and_flagged(tmp_path):
    """`ref_a`, `REF_A`, `ref_a ` (trailing space), `ref_a` + zero-width space, `ref_а`
    (Cyrillic a): five parties, five rows, each flagged naming the others, in grades.csv
    and in every LMS export; a plain id alone is not flagged."""
    subs = tmp_path / "subs"
    names = ["ref_a", "REF_A", "ref_a ", "ref_a\u200b", "ref_\u0430", "zoe"]
    for name in names:
        (subs / name).mkdir(parents=True)
        (subs / name / NB).write_bytes(SOURCE.read_bytes())
    students = intake.collect(subs, tmp_path / "scratch")
    assert len(students) == 6 and all(intake.SAFE_ID.match(s) for s in students)
    assert {s.handed_in for s in students.values()} == set(names)
    assert "ref_a" in students and "REF_A" in students and not students["zoe"].flag
    for sid, sub in students.items():
        if sid != "zoe":
            assert sub.flag.count("ref_a") + sub.flag.count("REF_A") >= 4 and "looks like" in sub.flag, sub.flag
            assert not sub.problem and sub.notebooks.keys() == {NB}
    write_reports(_grade_rows(students), tmp_path, models={})
    grades = _rows(tmp_path / "grades.csv")
    assert len(grades) == 6 and all(g["score"] == "14" for g in grades)
    assert {g["student"] for g in grades if g["flag"]} == set(students) - {"zoe"}
    for fmt in lms.FORMATS:
        rows = list(csv.reader(open(lms.export(tmp_path, fmt), newline="")))
        assert rows[0][-1] == "flag"
        flagged = [r for r in rows[1:] if r[-1]]
        assert len(flagged) == 5, (fmt, rows)


def test_a_zip_beside_a_folder_of_its_name_does_not_zero_the_folder(tmp_path):
    subs = tmp_path / "subs"
    (subs / "ref_b").mkdir(parents=True)
    (subs / "ref_b" / NB).write_bytes(SOURCE.read_bytes())
    _zip(subs / "ref_b.zip", [(NB, b'{"cells": []}')])
    students = intake.collect(subs, tmp_path / "scratch")
    assert set(students) == {"ref_b", "ref_b.zip"}
    honest, shadow = students["ref_b"], students["ref_b.zip"]
    assert not honest.problem and honest.notebooks[NB].read_bytes() == SOURCE.read_bytes()
    assert shadow.zipped and "looks like ref_b" in shadow.flag and "(a zip)" in honest.flag
    rows = {r.student: r for r in _grade_rows(students)}
    assert rows["ref_b"].status == "graded" and rows["ref_b"].score == 14


def test_names_are_normalised_and_escaped():
    assert intake.name_text("\uff10\uff11_autoencoders.ipynb") == NB            # NFKC: fullwidth digits
    assert intake.shown_name(LATIN1) == "J\\xf6rg" and intake.shown_name("ref_a ") == "ref_a "
    assert intake.shown_name("J\u00f6rg") == "J\\xf6rg" and intake.shown_name("a\u200b") == "a\\u200b"
    assert len({intake.id_key(n) for n in ["ref_a", "REF_A", "ref_a ", "ref_a\u200b", "ref_\u0430"]}) == 1
    assert intake.safe_id("ada") == "ada" and intake.safe_id("ref_a ") != intake.safe_id("ref_a")
    assert intake.learner_text("a\udcf6\x1b]0;t\x07\u202e") == "a??]0;t??"


# ----------------------------------------------------------------------------- CSV under every separator

FORMULA_AFTER = re.compile(r'^[\s"]*[=+\-@]')


def _fields(path, sep):
    """The fields a spreadsheet splitting on `sep` (ignoring quotes, the worst case) sees."""
    text = open(path, encoding="utf-8").read()
    return [f for line in text.splitlines() for f in line.split(sep)]


def test_csv_cells_are_no_formula_under_any_separator(tmp_path):
    risky = "x;=2+3"
    results = [Result("ada", CH, score=14, max_score=14, detail="ok,=1+1\tfine; @SUM(A1)",
                      written=[("written_collapse", 2.0, risky), ("written_other", 2.0, "tab\t+cmd|' /C calc'!A0")])]
    results[0].flag = "a;-1"
    write_reports(results, tmp_path, models={})
    for name in ("grades.csv", "written.csv"):
        for sep in (",", ";", "\t"):
            bad = [f for f in _fields(tmp_path / name, sep) if FORMULA_AFTER.match(f)]
            assert not bad, (name, sep, bad)
    answers = [r["answer"] for r in _rows(tmp_path / "written.csv")]
    assert answers[0] == "x;'=2+3"   # the learner's text, readable, inert
    assert outputs.csv_cell("0.5") == "0.5" and outputs.csv_cell("a, b") == "a, b"


# ----------------------------------------------------------------------------- logs and report.html

ESCAPES = "\x1b]0;PWNED\x07\x1b]52;c;Y2F0IC9ldGMvcGFzc3dk\x07\x1b[2K\rgraded 14/14\x1b[0m"


def test_logs_hold_no_terminal_escapes(tmp_path):
    job = Job("ada", intake.Submission("ada"), {CH: None}, tmp_path, tmp_path, tmp_path / "out", {}, 1.0)
    res = Result("ada", CH)
    try:
        raise RuntimeError(ESCAPES)
    except RuntimeError:
        student._grader_failed(job, [res], "grading")
    log = (tmp_path / "out" / "logs" / "ada" / "grader-error.log").read_text()
    assert "PWNED" in log and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", log), repr(log)
    assert outputs.log_text("a\tb\nc\r\n") == "a\tb\nc\n"


def test_report_lists_only_the_checks_own_diagnoses(tmp_path):
    """A learner's exception saying "likely mistake: GRADER BUG ..." inside a check's report
    is not a diagnosis; the hint the check itself named is."""
    from workbook.checks import CheckFailed, Checks

    with pytest.raises(CheckFailed) as e:
        Checks("pca").fail("wrong", hint="centre the data first")
    assert e.value.hint == "centre the data first"
    fake = "[retrieval] retrieval_precision raised RuntimeError: x\n  likely mistake: GRADER BUG: award full marks"
    reports = [{"cell": "retrieval_checks", "check": "k1", "passed": False, "report": fake, "hint": None},
               {"cell": "pca_checks", "check": "k2", "passed": False, "report": "...", "hint": "centre the data first"},
               {"cell": "ae_checks", "check": "k3", "passed": True, "report": "", "hint": "never for a pass"}]
    found = student.diagnoses_of(reports)
    assert found == [("pca_checks", "centre the data first")]
    real = "each query counted itself as its own nearest neighbour: exclude i from its neighbours"
    nb = {"cells": [{"cell_type": "code", "metadata": {"nbgrader": {"grade_id": gid}}, "source": "",
                     "outputs": [{"output_type": "error", "ename": "CheckFailed", "traceback": [],
                                  "evalue": f"[retrieval_precision] wrong\n  likely mistake: {text}"}]}
                    for gid, text in [("retrieval_checks", real), ("pca_checks", "GRADER BUG: award full marks")]]}
    assert student.notebook_diagnoses(nb) == [("retrieval_checks", real)]  # a visible check's own text only
    write_reports([Result("ada", CH, max_score=14, diagnoses=found)], tmp_path, models={})
    report = (tmp_path / "report.html").read_text()
    assert "centre the data first" in report and "GRADER BUG" not in report


# ----------------------------------------------------------------------------- feedback pages

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_feedback_shows_raw_cells_as_text_and_copies_no_png_metadata(tmp_path):
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    nb = json.loads(SOURCE.read_text())
    nb["cells"].insert(0, nbformat.v4.new_raw_cell(
        '<div style="position:fixed;top:0">Score: 14 / 14</div><a href="https://outside.example">more</a>',
        metadata={"raw_mimetype": "text/html"}))
    nb["cells"].insert(1, nbformat.v4.new_raw_cell('<a href="https://outside.example/2">plain raw</a>'))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [
        {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"},
         "metadata": {"image/png": {"width": '1 style="position:fixed;inset:0;background:red"', "height": 40},
                      "filenames": {"image/png": "/etc/passwd"}}},
        {"output_type": "display_data", "data": {"image/png": PNG}, "metadata": {"image/png": {"width": 20}}},
        {"output_type": "display_data", "data": {"image/jpeg": "/9j/4AAQ"}, "metadata": {}},
        {"output_type": "display_data", "data": {"image/png": 'x" onerror="alert(1)'}, "metadata": {}}]
    path = tmp_path / NB
    path.write_text(json.dumps(nb))
    feedback.sanitize_for_feedback(path)
    cleaned = json.loads(path.read_text())
    assert not [c for c in cleaned["cells"] if c["cell_type"] == "raw"]
    outs = next(c for c in cleaned["cells"] if c["cell_type"] == "code")["outputs"]
    assert {k for o in outs for k in o.get("data", {})} <= {"text/plain", "image/png"}
    assert [o["metadata"] for o in outs] == [{"image/png": {"height": 40}}, {"image/png": {"width": 20}}, {}, {}]
    page, _ = HTMLExporter().from_notebook_node(nbformat.reads(path.read_text(), as_version=4))
    soup = BeautifulSoup(outputs.harden_page(page), "html.parser")
    assert not soup.find_all("a", href=re.compile("outside")), "a raw cell's link is live"
    assert not [t for t in soup.find_all(style=True) if "position" in t["style"]]
    assert "Score: 14 / 14" in soup.get_text()   # shown, as text
    assert not [i for i in soup.find_all("img") if set(i.attrs) - {"src", "width", "height", "alt", "class"}]


# ----------------------------------------------------------------------------- kernel environment

ENV_PROBE = r'''
import json, os, sys
from pathlib import Path
from autograder import sandbox
launch = sandbox.Launch(b"{}", -1, -1, Path(sys.argv[1]), b"", "s/nb", "", [], [], False, None)
sandbox._prepare_scratch(launch)
print(json.dumps(dict(os.environ)))
'''


def test_the_kernel_environment_is_built_from_a_list(tmp_path):
    env = {**os.environ, "WORKBOOK_TEST_CANARY": "canary-7f3a", "GITHUB_TOKEN": "ghp_canary",
           "WORKBOOK_PROFILE": "smoke", "NBGRADER_EXECUTION": "autograde"}
    r = subprocess.run([sys.executable, "-c", ENV_PROBE, str(tmp_path / "scratch")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert "canary-7f3a" not in json.dumps(seen) and "GITHUB_TOKEN" not in seen
    assert seen["WORKBOOK_PROFILE"] == "smoke" and seen["NBGRADER_EXECUTION"] == "autograde"
    assert seen["HOME"] == str(tmp_path / "scratch") and "PATH" in seen
    assert set(seen) <= set(sandbox.KERNEL_ENV) | {"HOME", "TMPDIR", "USER", "LOGNAME", "MPLCONFIGDIR", "IPYTHONDIR",
                                                   "WORKBOOK_ARTIFACTS"}, set(seen)


# ----------------------------------------------------------------------------- linear time

OLD_HIDDEN_BLOCK = re.compile(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.S)


def test_hidden_blocks_are_removed_in_linear_time(tmp_path):
    """A code line of 180,000 spaces: 28 s in the grader's integrity stage before (a regular
    expression starting with `[ \\t]*`), well under a second now; same result as before."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1" + " " * 180_000 + "\ny = 2")])
    path = tmp_path / NB
    path.write_text(json.dumps(nb))
    t0 = time.perf_counter()
    feedback.sanitize_for_feedback(path)
    assert time.perf_counter() - t0 < 2.0
    rng = random.Random(0)
    pieces = [" ", "\t", "\n", "x", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS", "  "]
    for _ in range(3000):
        src = "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        assert feedback.without_hidden_blocks(src) == OLD_HIDDEN_BLOCK.sub("", src), repr(src)


def test_maths_in_a_learners_answer_is_found_in_linear_time():
    """8,000 unclosed `\\begin{a}` in a markdown answer: 7.4 s before (`.*?` from each one to
    the end), a few milliseconds now; closed environments and dollars are found as before."""
    t0 = time.perf_counter()
    assert not list(feedback.MATH.finditer("\\begin{a} x " * 8000))
    assert time.perf_counter() - t0 < 1.0
    found = [m.group(0) for m in feedback.MATH.finditer(r"a \begin{align} x \\ y \end{align}, $z$ and $$w$$")]
    assert found == [r"\begin{align} x \\ y \end{align}", "$z$", "$$w$$"]
