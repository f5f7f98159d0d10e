"""Stage timings, progress, resume and regrade in place, and the dask backend on a cluster of
worker processes, through the real pipeline (one small class graded once, module scope).

    WORKBOOK_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_regrade.py
"""
import csv
import io
import os
import re
import shutil

import pytest

from autograder import backends, bench, forked, ledger, sandbox, seals, student
from autograder import grade as grading
from autograder.intake import Submission, collect, private_dir
from autograder.rows import Job, Result
from test_grading import CH, SOURCE

pytestmark = pytest.mark.slow


def _page_text(text):
    """The text of a feedback page without what differs between two runs of the same notebook:
    the wall times it printed ("in 0.4 s") and the sandbox slot it ran in (its home's path)."""
    text = re.sub(r"\b\d+(\.\d+)? s\b", "<seconds> s", text)
    text = re.sub(r"/\S*workbook-sandbox-\d+/[^\s;:,'\"<]*", "<sandbox path>", text)
    # the words only: how a cell's printed lines were split into output areas depends on timing
    return " ".join(re.sub(r"<[^>]*>", " ", text).split())


def _tables(out):
    return {name: list(csv.reader(open(out / name))) for name in ("grades.csv", "cells.csv")}


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    subs = tmp_path_factory.mktemp("class")
    kinds = bench.make_class(subs, 3)  # s000 full, s001 blank, s002 a catalogued mistake
    return subs, kinds


@pytest.fixture(scope="module", autouse=True)
def course_pinned():
    """The course version as it is now, for the whole module: the repository may be edited
    while these tests run, which would rightly make every stored row stale
    (test_keys_follow_content_course_and_secret changes it on purpose)."""
    mp = pytest.MonkeyPatch()
    version = ledger.course_version()
    mp.setattr(ledger, "course_version", lambda root=None: version)
    yield version
    mp.undo()


@pytest.fixture(scope="module")
def first(klass, tmp_path_factory):
    """The class graded serially once: (OUT, its grades.csv and cells.csv)."""
    subs, _ = klass
    out = tmp_path_factory.mktemp("first")
    grading.grade(subs, out, jobs=1, chapters=[CH], preflight=False, quiet=True)
    return out, _tables(out)


@pytest.fixture
def again(first, tmp_path):
    """A copy of the first run's OUT to resume or regrade into."""
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    return out


def test_timings_per_stage(first, klass):
    out, _ = first
    rows = ledger.read_timings(out / "timings.csv")
    assert sorted((r["student"], r["notebook"]) for r in rows) == [(s, CH) for s in sorted(klass[1])]
    for r in rows:
        assert r["status"] in ("graded", "timed out") and r["reused"] == "0", r   # a loaded machine may time a cell out
        for stage in ("setup", "judge_start", "nbgrader_start", "kernel", "integrity", "feedback", "report"):
            assert r[stage] > 0, f"{r['student']}: no time recorded for {stage}"
        assert r["total"] == pytest.approx(sum(r[s] for s in ledger.STAGES), abs=0.01)
    if sandbox.capabilities().user:
        assert {r["confined"] for r in rows} == {"1"}
        assert len({r["uid"] for r in rows}) == len(rows), "two notebooks shared a kernel uid"


def test_resumed_run_grades_only_what_is_missing(first, again, klass):
    """As if the run had stopped before s001 finished: its state and pages are not there."""
    subs, _ = klass
    (again / ".state" / "s001.json").unlink()
    shutil.rmtree(again / "feedback" / "s001")
    (again / "grades.csv").unlink()
    results = grading.grade(subs, again, jobs=1, chapters=[CH], preflight=False, quiet=True)
    assert {r.student: r.reused for r in results} == {"s000": True, "s001": False, "s002": True}
    assert _tables(again) == first[1], "the resumed run differs from the uninterrupted one"
    assert (again / "feedback" / "s001" / f"{CH}.html").exists()


def test_only_regrades_the_named_students_in_place(first, again, klass):
    subs, _ = klass
    page = again / "feedback" / "s000" / f"{CH}.html"
    before = page.stat().st_mtime_ns
    regraded = again / "feedback" / "s002" / f"{CH}.html"
    old_page, old_time = regraded.read_text(), regraded.stat().st_mtime_ns
    results = grading.grade(subs, again, jobs=1, chapters=[CH], preflight=False, quiet=True, only=["s002"])
    assert {r.student: r.reused for r in results} == {"s000": True, "s001": True, "s002": False}
    assert _tables(again) == first[1], "regrading s002 with the run's secret changed the results"
    assert page.stat().st_mtime_ns == before
    # the judge's reports (expected values drawn from the secret) are those of the first run;
    # only wall times, the sandbox path and the split into output areas may differ
    assert regraded.stat().st_mtime_ns != old_time
    assert _page_text(regraded.read_text()) == _page_text(old_page)
    with pytest.raises(ValueError, match="no submission of nobody"):
        grading.grade(subs, again, chapters=[CH], preflight=False, quiet=True, only=["nobody"])


def test_changed_regrades_only_changed_submissions(first, again, klass, tmp_path):
    subs, kinds = klass
    edited = tmp_path / "subs"
    shutil.copytree(subs, edited)
    shutil.copy(SOURCE, edited / "s001" / f"{CH}.ipynb")   # the blank one handed in again, complete
    results = grading.grade(edited, again, jobs=1, chapters=[CH], preflight=False, quiet=True, changed=True)
    assert {r.student: r.reused for r in results} == {"s000": True, "s001": False, "s002": True}
    rows = {r[0]: r for r in _tables(again)["grades.csv"][1:]}
    old = {r[0]: r for r in first[1]["grades.csv"][1:]}
    assert rows["s001"][2] == rows["s001"][3] != old["s001"][2], "the new submission did not get full marks"
    assert {s: rows[s] for s in ("s000", "s002")} == {s: old[s] for s in ("s000", "s002")}


def test_keys_follow_content_course_and_secret(first, klass, tmp_path, monkeypatch):
    subs, _ = klass
    out, _ = first
    students = collect(subs, tmp_path)
    secret = (out / ".secret").read_text().strip()
    settings = {"timeout": 900.0, "profile": "smoke", "secret": ledger.secret_fingerprint(secret)}
    plan = grading.plan_rows(students, [CH], ledger.State(out), settings)
    assert all(not p.todo for p in plan.values()), "an unchanged class would be graded again"
    other = {**settings, "secret": ledger.secret_fingerprint("ab" * 32)}
    assert all(p.why == {CH: "changed"} for p in grading.plan_rows(students, [CH], ledger.State(out), other).values())
    monkeypatch.setattr(ledger, "course_version", lambda root=None: "another course")
    assert all(p.todo == [CH] for p in grading.plan_rows(students, [CH], ledger.State(out), settings).values())


def test_dask_cluster_of_worker_processes_matches_serial(first, klass, tmp_path):
    """Every student on a worker process of a real cluster, each notebook in a sandbox slot
    of its own there; grades identical to the serial run under the same secret."""
    distributed = pytest.importorskip("distributed")
    subs, _ = klass
    out, tables = first
    secret = (out / ".secret").read_text().strip()
    with backends.local_cluster(2) as cluster, distributed.Client(cluster) as client:
        workers = {str(pid) for pid in client.run(os.getpid).values()}
        assert all(client.run(lambda: forked.context() is not None).values()), "a worker process cannot fork its notebooks' processes"
        grading.grade(subs, tmp_path, backend="dask", scheduler=cluster.scheduler_address, chapters=[CH],
                      secret=secret, preflight=False, quiet=True)
    assert _tables(tmp_path) == tables, "grading on the dask cluster differs from the serial run"
    rows = ledger.read_timings(tmp_path / "timings.csv")
    assert {r["pid"] for r in rows} <= workers and str(os.getpid()) not in {r["pid"] for r in rows}
    if sandbox.capabilities().user:
        assert {r["confined"] for r in rows} == {"1"}, "a worker graded without a sandbox uid"
        assert len({r["uid"] for r in rows}) == len(rows)


# ----------------------------------------------------------------------------- without nbgrader

def _fake_grading(monkeypatch, seen, stop_at=None):
    """grade() with every student's grading replaced by a quick stand-in (one cell, 1/2)."""
    def grade_student(job):
        seen.append((job.sid, job.secret))
        if job.sid == stop_at:
            raise KeyboardInterrupt
        page = private_dir(job.out / "feedback" / job.sid)
        for ch in job.chapters:
            (page / f"{ch}.html").write_text(f"page of {job.sid}")
        return [Result(job.sid, ch, 1.0, 2.0, cells=[("a", 1.0, 2.0)], timings={"kernel": 0.5})
                for ch in job.chapters]

    monkeypatch.setattr(student, "grade_student", grade_student)
    monkeypatch.setattr(seals, "make_template", lambda root, chs: {ch: seals.Chapter(ch, {}) for ch in chs})


def test_an_interrupted_run_keeps_the_finished_students(klass, tmp_path, monkeypatch):
    subs, _ = klass
    seen = []
    _fake_grading(monkeypatch, seen, stop_at="s001")
    with pytest.raises(KeyboardInterrupt):
        grading.grade(subs, tmp_path, jobs=1, chapters=[CH], preflight=False, quiet=True)
    assert ledger.State(tmp_path).students() == ["s000"]
    assert (tmp_path / "feedback" / "s000" / f"{CH}.html").exists()
    secret = (tmp_path / ".secret").read_text().strip()
    seen.clear()
    _fake_grading(monkeypatch, seen)
    results = grading.grade(subs, tmp_path, jobs=1, chapters=[CH], preflight=False, quiet=True)
    assert seen == [("s001", secret), ("s002", secret)], "the resumed run did not use OUT/.secret"
    assert [(r.student, r.reused) for r in results] == [("s000", True), ("s001", False), ("s002", False)]
    assert len(_tables(tmp_path)["grades.csv"]) == 4
    seen.clear()
    grading.grade(subs, tmp_path, jobs=1, chapters=[CH], preflight=False, quiet=True, fresh=True)
    assert [s for s, _ in seen] == ["s000", "s001", "s002"] and seen[0][1] != secret


def test_changed_needs_an_earlier_run(klass, tmp_path):
    with pytest.raises(ValueError, match="no earlier run"):
        grading.grade(klass[0], tmp_path, chapters=[CH], preflight=False, quiet=True, changed=True)


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    rows = [Result("ada", CH, 12.0, 14.0, timings={"kernel": 2.0, "feedback": 1.5})]
    log = io.StringIO()
    progress = ledger.Progress(1, stream=log)
    progress.finished(rows)
    progress.close()
    assert log.getvalue() == f"graded ada/{CH}: 12/14 graded in 3.5 s\n"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    progress = ledger.Progress(2, stream=term)
    progress.finished(rows)
    progress.close()
    assert "1/2" in term.getvalue() and "student" in term.getvalue() and "graded ada" not in term.getvalue()
    quiet = io.StringIO()
    ledger.Progress(1, quiet=True, stream=quiet).finished(rows)
    assert quiet.getvalue() == ""


def test_bench_chapter_names():
    assert bench.chapter_list(None) == [CH] and bench.chapter_list(["01"]) == [CH]
    with pytest.raises(ValueError, match="no chapter matches"):
        bench.chapter_list(["99"])


def test_a_resubmission_meets_other_hidden_inputs_under_the_same_secret():
    run, s = "cd" * 32, seals.student_secret
    assert s(run, "ada", CH, b"version 1") == s(run, "ada", CH, b"version 1")
    assert len({s(run, "ada", CH, b"version 1"), s(run, "ada", CH, b"version 2"), s(run, "bob", CH, b"version 1")}) == 3


def test_autograde_split_by_the_cells_own_timing():
    """nbgrader_start up to the first cell, kernel to the last reply, the rest after; a stamp
    from before this run (a cell the submission had run, not run now) does not count."""
    import datetime
    import time

    def iso(t):
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")

    done = time.perf_counter()
    now = time.time()
    nb = {"cells": [{"metadata": {"execution": {"iopub.execute_input": iso(now - 7), "shell.execute_reply": iso(now - 6)}}},
                    {"metadata": {"execution": {"iopub.execute_input": iso(now - 5), "shell.execute_reply": iso(now - 2)}}},
                    {"metadata": {"execution": {"iopub.execute_input": "2020-01-01T00:00:00Z"}}}, {"metadata": {}}]}
    watch = ledger.Stopwatch()
    student.split_autograde(watch, nb, done - 10, done)
    assert watch.seconds == pytest.approx({"nbgrader_start": 3.0, "kernel": 5.0, "nbgrader_finish": 2.0}, abs=0.05)
    untimed = ledger.Stopwatch()
    student.split_autograde(untimed, {"cells": []}, done - 10, done)
    assert untimed.seconds == pytest.approx({"nbgrader_start": 10.0})


def test_a_worker_with_another_course_refuses(tmp_path):
    job = Job("ada", Submission("ada"), {CH: seals.Chapter(CH, {})}, tmp_path / "template",
              tmp_path / "work", tmp_path / "out", {}, 10.0, "ab" * 32, (), "another version", "elsewhere:1")
    [row] = student.grade_student(job)
    assert row.status == "crashed" and "grader-error.log" in row.detail
    assert "another version of the course" in (tmp_path / "out" / "logs" / "ada" / "grader-error.log").read_text()
