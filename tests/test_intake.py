"""Intake and outputs of the grading command, without nbgrader: every submission file is
taken only as a regular file copied into grader-only staging, every notebook is validated
before anything relies on it, and what the grader writes (CSV, feedback pages, the class
report) cannot run anything in a spreadsheet or a browser."""
import csv
import json
import os
import re
import stat
import threading
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import grade as grading
from autograder import intake, outputs, student
from autograder.feedback import sanitize_for_feedback
from autograder.report import write_class_report, write_reports
from autograder.rows import Job, Result
from conftest import REPO

CH = "01_autoencoders"
NB = f"{CH}.ipynb"
SOURCE = REPO / "solutions" / NB
SECRET = "GRADER-ONLY-SOLUTION-TEXT def retrieval_precision(Z, y, ks): return 42"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "instructor" / NB
    path.parent.mkdir()
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
                                "secret": SECRET}))
    return path


def _collect(subs, tmp_path):
    return intake.collect(subs, tmp_path / "scratch")


def _row(sub):
    res = Result(sub.sid, CH)
    src = student._intake_row(sub, res, {CH: None})
    if src is not None:
        if bad := intake.check_notebook(src):
            res.status, res.detail = "unreadable", bad
    return res, src


def _no_secret(*texts):
    for text in texts:
        assert "GRADER-ONLY" not in str(text), text


# ----------------------------------------------------------------------------- links, special files

def test_symlinked_notebook_is_refused_not_read(tmp_path, secret_file):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / NB).symlink_to(secret_file)
    sub = _collect(subs, tmp_path)["alice"]
    assert NB not in sub.notebooks and "symbolic link" in sub.refused[NB]
    res, src = _row(sub)
    assert src is None and res.status == "unreadable" and "symbolic link" in res.detail
    _no_secret(res.detail, sub.refused)


def test_symlink_anywhere_in_the_path_is_not_followed(tmp_path, secret_file):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / "work").symlink_to(secret_file.parent, target_is_directory=True)
    (subs / "bob").symlink_to(secret_file.parent, target_is_directory=True)  # the student folder itself
    found = _collect(subs, tmp_path)
    alice, bob = found["alice"], found["bob"]
    assert not alice.notebooks and "work is a symbolic link" in alice.refused["work"]
    res, _ = _row(alice)
    assert res.status == "missing" and "symbolic link" in res.detail
    assert not bob.notebooks and "symbolic link" in bob.problem
    assert _row(bob)[0].status == "unreadable"
    _no_secret(res.detail, bob.problem)


def test_a_stray_unreadable_marker_is_never_read(tmp_path, secret_file):
    """A learner's own `.unreadable` (once the grader's marker) is just a file: ignored."""
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / ".unreadable").symlink_to(secret_file)
    (subs / "alice" / NB).write_bytes(SOURCE.read_bytes())
    sub = _collect(subs, tmp_path)["alice"]
    res, src = _row(sub)
    assert src is not None and res.status == "graded" and not sub.problem
    _no_secret(res.detail, sub.refused)


def test_named_pipe_does_not_hang_intake(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    os.mkfifo(subs / "alice" / NB)
    os.mkfifo(subs / "bob.zip")
    found = {}
    worker = threading.Thread(target=lambda: found.update(_collect(subs, tmp_path)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "intake blocked on a named pipe"
    assert "named pipe" in found["alice"].refused[NB]
    assert "named pipe" in found["bob"].problem


def test_folder_named_like_a_notebook_is_not_a_notebook(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice" / NB).mkdir(parents=True)
    sub = _collect(subs, tmp_path)["alice"]
    res, _ = _row(sub)
    assert res.status == "unreadable" and "is a folder" in res.detail


def test_oversized_file_is_refused_before_reading(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    with open(subs / "alice" / NB, "wb") as f:
        f.truncate(intake.MAX_NOTEBOOK_BYTES + 1)  # sparse: nothing to read anyway
    sub = _collect(subs, tmp_path)["alice"]
    assert "over the" in sub.refused[NB] and not sub.notebooks


def test_staged_copies_are_private_and_equal(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice" / "deep" / "er").mkdir(parents=True)
    (subs / "alice" / "deep" / "er" / NB).write_bytes(SOURCE.read_bytes())
    sub = _collect(subs, tmp_path)["alice"]
    copy = sub.notebooks[NB]
    assert copy.read_bytes() == SOURCE.read_bytes() and tmp_path / "scratch" in copy.parents
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    for folder in [p for p in copy.parents if tmp_path / "scratch" in [p, *p.parents]]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# ----------------------------------------------------------------------------- zips

def _zip_with(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def test_zip_members_that_are_links_or_unsafe_are_refused(tmp_path, secret_file):
    subs = tmp_path / "subs"
    subs.mkdir()
    _zip_with(subs / "alice.zip", [(f"alice/{NB}", str(secret_file), stat.S_IFLNK | 0o777),
                                   ("alice/../../escape.ipynb", SOURCE.read_bytes(), stat.S_IFREG | 0o644),
                                   ("alice/fifo.ipynb", b"", stat.S_IFIFO | 0o644)])
    sub = _collect(subs, tmp_path)["alice"]
    assert not sub.notebooks
    assert "symbolic link" in sub.refused[NB]
    assert any("unsafe path" in why for why in sub.refused.values())
    assert "named pipe" in sub.refused["fifo.ipynb"]
    assert not (tmp_path / "escape.ipynb").exists() and not (tmp_path / "scratch" / "escape.ipynb").exists()
    res, _ = _row(sub)
    assert res.status == "unreadable" and "symbolic link" in res.detail
    _no_secret(res.detail, sub.refused)


def test_zip_bomb_member_is_capped(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    _zip_with(subs / "alice.zip", [(NB, b"0" * (intake.MAX_NOTEBOOK_BYTES + 10), stat.S_IFREG | 0o644)])
    assert (subs / "alice.zip").stat().st_size < 100_000
    sub = _collect(subs, tmp_path)["alice"]
    assert "over the" in sub.refused[NB] and not sub.notebooks


def test_class_zip_refusals_reach_the_student(tmp_path, secret_file):
    _zip_with(tmp_path / "class.zip", [(f"class/alice/{NB}", str(secret_file), stat.S_IFLNK | 0o777),
                                       (f"class/bob/{NB}", SOURCE.read_bytes(), stat.S_IFREG | 0o644)])
    found = intake.collect(tmp_path / "class.zip", tmp_path / "scratch")
    assert set(found) == {"alice", "bob"}
    assert "symbolic link" in found["alice"].refused[NB]
    assert found["bob"].notebooks[NB].read_bytes() == SOURCE.read_bytes()


def test_not_a_zip(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "alice.zip").write_text("not a zip")
    sub = _collect(subs, tmp_path)["alice"]
    assert "not a readable zip" in sub.problem and _row(sub)[0].status == "unreadable"


# ----------------------------------------------------------------------------- notebook validation

def _nb(**edits):
    nb = json.loads(SOURCE.read_text())
    for gid, meta in edits.items():
        cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)
        cell["metadata"]["nbgrader"] = meta
    return json.dumps(nb).encode()


def test_the_reference_is_a_valid_notebook():
    nb, why = intake.parse_notebook(SOURCE.read_bytes())
    assert why is None and nb["cells"]


@pytest.mark.parametrize("meta, words", [
    ("just a string", "nbgrader metadata is str"),
    ({"grade": "yes", "grade_id": "pca", "solution": True}, "'grade' has the wrong type"),
    ({"grade": True, "grade_id": 7, "points": 1, "solution": False}, "'grade_id' has the wrong type"),
    ({"grade": True, "grade_id": "pca", "points": "2", "solution": False}, "'points' has the wrong type"),
    ({"grade": True, "grade_id": "pca", "points": True, "solution": False}, "'points' has the wrong type"),
    ({"grade": True, "grade_id": "pc a<b>", "points": 1, "solution": False}, "not a valid cell name"),
    ({"grade": True, "points": 1, "solution": False}, "without its nbgrader grade_id"),
])
def test_wrong_nbgrader_metadata_is_named(meta, words):
    nb, why = intake.parse_notebook(_nb(pca=meta))
    assert nb is None and words in why, why


def test_deeply_nested_json_is_refused_without_crashing(tmp_path):
    deep = b'{"cells": [], "metadata": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b'}, "nbformat": 4, "nbformat_minor": 5}'
    nb, why = intake.parse_notebook(deep)
    assert nb is None and "nested too deeply" in why
    shallow_enough = json.loads(SOURCE.read_text())
    shallow_enough["metadata"]["x"] = json.loads("[" * 100 + "]" * 100)
    nb, why = intake.parse_notebook(json.dumps(shallow_enough).encode())
    assert nb is None and "nested too deeply" in why
    path = tmp_path / NB
    path.write_bytes(deep)
    assert "nested too deeply" in intake.check_notebook(path)


@pytest.mark.parametrize("data, words", [
    (b'{"cells": [', "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "JSON list"),
    (b'{"cells": "no", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "not a valid Jupyter notebook"),
])
def test_broken_files_are_named(data, words):
    nb, why = intake.parse_notebook(data)
    assert nb is None and words in why, why


def test_a_bad_submission_costs_only_its_row(tmp_path):
    """Any failure inside grading one student becomes that student's rows, never an exception."""
    sub = intake.Submission("alice", notebooks={NB: tmp_path / "missing-copy.ipynb"})
    job = Job("alice", sub, {CH: None}, tmp_path / "no-template", tmp_path / "work", tmp_path / "out",
              {}, 10.0)
    rows = student.grade_student(job)
    assert [(r.student, r.notebook, r.status) for r in rows] == [("alice", CH, "crashed")]
    assert "grader-error.log" in rows[0].detail and "Traceback" not in rows[0].detail
    assert "Traceback" in (tmp_path / "out" / "logs" / "alice" / "grader-error.log").read_text()


# ----------------------------------------------------------------------------- CSV

def test_csv_cells_never_start_a_formula(tmp_path):
    risky = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-3", "@SUM(A1)", "\tx", "\rx"]
    outputs.write_csv(tmp_path / "t.csv", ["a", "b"], [[v, "plain"] for v in risky] + [["0.5", "ok"]])
    rows = list(csv.reader(open(tmp_path / "t.csv", newline="")))
    assert [r[0] for r in rows[1:]] == ["'" + v for v in risky] + ["0.5"]
    results = [Result("alice", CH, status="unreadable", detail="=cmd|' /C calc'!A0",
                      cells=[("-pca", 0.0, 2.0)])]
    write_reports(results, tmp_path)
    grades = list(csv.DictReader(open(tmp_path / "grades.csv")))
    cells = list(csv.DictReader(open(tmp_path / "cells.csv")))
    assert grades[0]["detail"] == "'=cmd|' /C calc'!A0" and cells[0]["cell"] == "'-pca"


# ----------------------------------------------------------------------------- HTML

HOSTILE = ('<html><head><title>t</title></head><body>'
           '<script>alert(1)</script><SCRIPT src="http://x/y.js"></SCRIPT>'
           '<img src="x" onerror="alert(2)"><a href=" javascript:alert(3)">a</a>'
           '<a href="data:text/html,<script>alert(4)</script>">b</a>'
           '<iframe src="http://x"></iframe><div onclick="alert(5)" style="color: red">Score: 14 / 14</div>'
           '<img src="data:image/png;base64,iVBORw0KGgo=">'
           '<meta http-equiv="refresh" content="0;url=http://x"></body></html>')


def _live(page):
    """What would run or load: script elements, event handlers in tags, script URLs, frames."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser")
    found = [t.name for t in soup.find_all(["script", "iframe", "object", "embed", "base", "form"])]
    found += [t.get("http-equiv") for t in soup.find_all("meta") if (t.get("http-equiv") or "").lower() == "refresh"]
    for tag in soup.find_all(True):
        found += [f"{tag.name}[{a}]" for a, v in tag.attrs.items() if a.lower().startswith("on")
                  or re.match(r"\s*(javascript|data:text)", str(v), re.I)]
    return found


def test_harden_page_removes_what_runs_and_adds_the_csp():
    page = outputs.harden_page(HOSTILE)
    assert not _live(page), _live(page)
    head = page[page.index("<head>"):page.index("</head>")]
    assert 'http-equiv="Content-Security-Policy"' in head and outputs.CSP in head
    assert head.index("Content-Security-Policy") < head.index("<title>")
    assert "data:image/png;base64" in page and "Score: 14 / 14" in page  # pictures and text stay


def test_learner_html_and_javascript_outputs_become_text(tmp_path):
    nb = json.loads(SOURCE.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [
        {"output_type": "display_data", "metadata": {},
         "data": {"text/html": "<script>alert(1)</script><h1>Score: 14 / 14</h1>", "text/plain": "<IPython.HTML>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": "alert(2)"}},
        {"output_type": "display_data", "metadata": {},
         "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "w"}},
        {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": "<svg onload='alert(3)'/>"}}]
    nb["cells"].append(nbformat.v4.new_markdown_cell("<script>alert(4)</script><img src=x onerror=alert(5)>"
                                                     "<style>body { display: none }</style>"))
    path = tmp_path / NB
    path.write_text(json.dumps(nb))
    sanitize_for_feedback(path)
    cleaned = json.loads(path.read_text())
    kinds = {k for c in cleaned["cells"] for o in c.get("outputs", []) for k in o.get("data", {})}
    assert kinds <= outputs.SHOWN_AS_IS, kinds
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(nbformat.reads(path.read_text(), as_version=4))
    hardened = outputs.harden_page(page)
    assert not _live(hardened), _live(hardened)
    assert "Content-Security-Policy" in hardened and "Score: 14 / 14" not in hardened  # its text/plain shown
    assert "[application/javascript output shown as text]" in hardened and "&lt;svg onload" in hardened
    assert "&lt;style&gt;body { display: none }" in hardened  # a learner's markdown styles nothing


def test_class_report_escapes_learner_strings_and_has_the_csp(tmp_path):
    results = [Result("alice", CH, status="unreadable", max_score=14,
                      detail="<script>alert(1)</script><img src=x onerror=alert(2)>"),
               Result("bob", CH, score=14, max_score=14, cells=[("pca", 2.0, 2.0)],
                      diagnoses=[("pca", "<b onmouseover=alert(3)>x</b>")])]
    write_class_report(results, tmp_path)
    report = (tmp_path / "report.html").read_text()
    assert outputs.CSP in report and "&lt;script&gt;" in report
    assert "<script" not in report and "<img src=x" not in report and "<b onmouseover" not in report


# ----------------------------------------------------------------------------- leak scrub

def test_scrub_catches_grader_code_inside_a_longer_line():
    line = 'got = _judged("01_autoencoders.retrieval", retrieval_precision, seed=hidden_seed + 17)'
    message = "retrieval_precision should return one precision per k, in the order of ks"
    protected = frozenset({line, f'c.fail("{message}")'})
    index = outputs.fragments(protected)
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "compile hook >>> x" + line[5:60] + "<<< end\n"},
        {"output_type": "display_data", "data": {"text/html": f"<pre>{line[:45]}</pre>"}},
        {"output_type": "error", "ename": "AssertionError", "evalue": message, "traceback": []},
        {"output_type": "stream", "name": "stdout", "text": "epoch 1: loss 0.25\n"}]}]}
    assert outputs.scrub_leaks(nb, protected, index) == 2
    kept = [o.get("text", o.get("evalue")) for o in nb["cells"][0]["outputs"]]
    assert kept == [outputs.LEAK_NOTE, outputs.LEAK_NOTE, message, "epoch 1: loss 0.25\n"]


def test_fragments_leave_out_public_text():
    line = "Z = X_centered @ torch.linalg.svd(X_centered, full_matrices=False).Vh[:k].T"
    assert outputs.fragments({line}) and not outputs.fragments({line}, public_text="# hint\n" + line)


# ----------------------------------------------------------------------------- preflight

def test_preflight_names_the_cells_that_are_off():
    ref = [Result("preflight-reference", CH, score=12, max_score=14,
                  cells=[("pca_checks", 2.0, 2.0), ("retrieval_checks", 0.0, 2.0)],
                  messages={"retrieval_checks": "AssertionError: precision at k=1 is 0.5, expected 1.0"})]
    blank = [Result("preflight-blank", CH, score=1, max_score=14, cells=[("quiz_ae_loss", 1.0, 1.0)])]
    problems = grading.preflight_problems(ref, blank)
    assert len(problems) == 2
    assert "retrieval_checks 0/2" in problems[0] and "expected 1.0" in problems[0] and "pca_checks" not in problems[0]
    assert "quiz_ae_loss 1/1" in problems[1]
    ok = [Result("preflight-reference", CH, score=14, max_score=14)]
    assert grading.preflight_problems(ok, [Result("preflight-blank", CH, max_score=14)]) == []
    crashed = [Result("preflight-blank", CH, status="crashed", detail="the judge did not start")]
    assert "the judge did not start" in grading.preflight_problems(ok, crashed)[0]


def test_fragment_search_is_exact_at_every_offset():
    """Any 40-character run of protected code is found wherever it sits; 39 characters never are."""
    line = "loss = F.binary_cross_entropy_with_logits(decoder(z), x_target, reduction='sum') / batch"
    index = outputs.fragments({line})
    for start in range(len(line) - 40):
        for pad in range(outputs.STRIDE + 1):
            assert outputs.leaks_fragment("#" * pad + line[start:start + 40] + "##", index), (start, pad)
            assert not outputs.leaks_fragment("#" * pad + line[start:start + 39] + "##", index), (start, pad)


def test_command_line_takes_no_preflight(tmp_path, capsys):
    from autograder.__main__ import main

    assert main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--no-preflight"]) == 2
    assert "does not exist" in capsys.readouterr().err
