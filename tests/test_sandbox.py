"""The sandbox fallback (WORKBOOK_SANDBOX=off: no own user, network or hidden files): the
seal and tamper checks still decide the points.

    WORKBOOK_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_sandbox.py
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from autograder import grade as grading
from autograder import confine, integrity, sandbox
from conftest import REPO

CH = "01_autoencoders"
SOURCE = REPO / "solutions" / f"{CH}.ipynb"


def test_off_switch_turns_every_capability_off(monkeypatch):
    sandbox.capabilities.cache_clear()
    monkeypatch.setenv("WORKBOOK_SANDBOX", "off")
    try:
        assert sandbox.capabilities() == sandbox.Capabilities(False, False, False)
        assert sandbox.wrap_command(["true"]) == ["true"], "no network namespace in the fallback"
    finally:
        sandbox.capabilities.cache_clear()


def test_seal_tokens_are_bound_to_cell_nonce_and_key():
    key = b"k" * 32
    t = integrity.token(key, "s/nb", "pca_checks", "n1")
    assert len(t) == 32
    assert t != integrity.token(key, "s/nb", "pca_checks", "n2")
    assert t != integrity.token(key, "s/nb", "retrieval_checks", "n1")
    assert t != integrity.token(b"x" * 32, "s/nb", "pca_checks", "n1")
    assert t != integrity.token(key, "other/nb", "pca_checks", "n1")


def test_verify_notebook_rejects_forged_misplaced_and_edited_cells():
    key, ctx = b"k" * 32, "s/nb"
    locked = {"a": ("check_a()", "n1"), "b": ("check_b()", "n2")}
    good = f"[workbook-seal a {integrity.token(key, ctx, 'a', 'n1')}]\n"

    def cell(gid, src, text):
        return {"cell_type": "code", "source": src, "metadata": {"nbgrader": {"grade_id": gid}},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}

    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", good), cell("b", "check_b()", "")]}, locked, key, ctx)
    assert v.sealed == {"a"} and not v.evidence
    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", ""), cell("b", "check_b()", good)]}, locked, key, ctx)
    assert v.evidence and "misplaced" in v.evidence[0], "a seal printed in another cell must not count"
    forged = "[workbook-seal a " + "0" * 32 + "]"
    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", forged), cell("b", "check_b()", "")]}, locked, key, ctx)
    assert v.evidence and not v.sealed
    v = integrity.verify_notebook({"cells": [cell("a", "pass", good), cell("b", "check_b()", "")]}, locked, key, ctx)
    assert any("differs from the locked source" in e for e in v.evidence)
    v = integrity.verify_notebook({"cells": [cell("a", "check_a()", good)]}, locked, key, ctx)
    assert any("b: graded cell present 0 times" in e for e in v.evidence)


@pytest.mark.slow
def test_fallback_grading_still_needs_the_seal(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_SANDBOX", "off")
    sandbox.capabilities.cache_clear()
    try:
        subs = tmp_path / "subs"
        (subs / "honest").mkdir(parents=True)
        shutil.copy(SOURCE, subs / "honest" / f"{CH}.ipynb")
        nb = json.loads(SOURCE.read_text())
        for c in nb["cells"]:
            if c["metadata"].get("nbgrader", {}).get("grade_id") == "pca":
                c["source"] = "".join(c["source"]) + (
                    "\nget_ipython().input_transformers_cleanup.append(\n"
                    "    lambda lines: [] if any('check' in ln for ln in lines) else lines)")
        (subs / "transformer").mkdir()
        (subs / "transformer" / f"{CH}.ipynb").write_text(json.dumps(nb))
        grading.grade(subs, tmp_path / "out", jobs=2, chapters=[CH], timeout=300, preflight=False)
        rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
        assert rows["honest"]["status"] == "graded" and rows["honest"]["score"] == rows["honest"]["max_score"], rows
        assert rows["transformer"]["status"] == "tampered" and float(rows["transformer"]["score"]) == 0, rows
    finally:
        sandbox.capabilities.cache_clear()


# ----------------------------------------------------------------------------- containment

needs_root_mounts = pytest.mark.skipif(not (sandbox.capabilities().mounts and sandbox.capabilities().user),
                                       reason="needs root and mount namespaces")

VIEW_PROBE = r'''
import json, os, sys
from pathlib import Path
from autograder import sandbox
top, uid = Path(sys.argv[1]), int(sys.argv[2])
view = sandbox.View.plan([top / "closed" / "env", top / "closed" / "interp"], [top / "private"],
                         [top / "closed" / "env" / "secret"], top / "scratch")
sandbox._mount_view(view, uid, uid)
if os.fork() == 0:
    sandbox._drop(uid, uid)
    def read(p):
        try:
            return open(p).read()
        except OSError as e:
            return type(e).__name__
    def ls(p):
        try:
            return os.listdir(p)
        except OSError as e:
            return type(e).__name__
    print(json.dumps({"env": read(top / "closed" / "env" / "lib.txt"),
                      "interp": read(top / "closed" / "interp" / "bin.txt"),
                      "other": read(top / "closed" / "other.txt"),
                      "secret": ls(top / "closed" / "env" / "secret"),
                      "private": ls(top / "private"),
                      "scratch_writable": os.access(top / "scratch", os.W_OK)}), flush=True)
    os._exit(0)
os.wait()
'''


@needs_root_mounts
def test_view_keeps_two_needed_paths_below_one_closed_folder(tmp_path):
    """The environment and the interpreter both under a 0700 folder (a venv in /root whose
    base interpreter is also in /root): the view exposes both to the kernel's uid, hides the
    rest of the closed folder, the private folders and the grader-only folder."""
    closed = tmp_path / "closed"
    for rel, text in [("env/lib.txt", "ENV"), ("interp/bin.txt", "INTERP"), ("other.txt", "OTHER"),
                      ("env/secret/answer.txt", "SECRET")]:
        (closed / rel).parent.mkdir(parents=True, exist_ok=True)
        (closed / rel).write_text(text)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "submission.ipynb").write_text("{}")
    (tmp_path / "scratch").mkdir()
    for d in (closed / "env", closed / "interp"):
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    closed.chmod(0o700)
    uid = sandbox.UID_BASE + sandbox.UID_COUNT - 1
    r = subprocess.run([sys.executable, "-c", VIEW_PROBE, str(tmp_path), str(uid)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["env"] == "ENV" and seen["interp"] == "INTERP", seen
    assert seen["other"] == "FileNotFoundError", "the rest of the closed folder must stay hidden"
    assert seen["secret"] == [] and seen["private"] in ([], "FileNotFoundError") and seen["scratch_writable"], seen


@needs_root_mounts
def test_launcher_names_the_cause_when_it_cannot_confine_the_kernel(tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    conn = tmp_path / "conn.json"
    conn.write_text("{}")
    env = {**os.environ, "WORKBOOK_SANDBOX_UID": "-1", "WORKBOOK_SANDBOX_GID": "-1",
           "WORKBOOK_SANDBOX_DIR": str(tmp_path / "scratch"), "WORKBOOK_SANDBOX_KEY": str(key),
           "WORKBOOK_SANDBOX_CONTEXT": "s/nb", "WORKBOOK_SANDBOX_HIDE": str(tmp_path / "no-such-folder")}
    r = subprocess.run([sys.executable, "-m", "autograder.sandbox", "-f", str(conn)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)  # imports torch first
    assert r.returncode == 1
    assert "ERROR: the grading kernel could not start" in r.stderr and "no-such-folder" in r.stderr, r.stderr


@pytest.mark.skipif(not sandbox.capabilities().cgroups, reason="needs writable cgroups")
def test_group_kill_reaches_a_respawning_fork_chain_in_its_own_session():
    group = sandbox._notebook_group(f"workbook-test-{os.getpid()}")
    chain = ("import os, time\nos.setsid()\nwhile True:\n    if os.fork():\n        os._exit(0)\n"
             "    for _ in range(3):\n        if os.fork() == 0:\n            time.sleep(60)\n    time.sleep(0.02)\n")
    try:
        subprocess.Popen([sys.executable, "-c", chain], preexec_fn=lambda: group.join(os.getpid()))
        deadline = time.time() + 10
        while len(group.pids()) < 10 and time.time() < deadline:
            time.sleep(0.1)
        assert len(group.pids()) >= 10, "the fork chain did not start"
        assert group.kill(), f"left alive: {group.pids()}"
        time.sleep(0.5)
        assert not group.pids()
    finally:
        group.kill()
        group.remove()


def test_grading_output_is_read_with_a_cap(tmp_path):
    """A command printing 20 MB: the grader keeps its first and last OUTPUT_KEEP bytes."""
    code, out = confine.run_confined(
        [sys.executable, "-c", "import sys\nsys.stdout.write('a' * 10**7 + 'b' * 10**7 + 'END')"],
        cwd=tmp_path, env=dict(os.environ), timeout=60)
    assert code == 0
    assert len(out) < 3 * confine.OUTPUT_KEEP and out.startswith("a" * 1000) and out.endswith("END"), len(out)
    assert "bytes of output discarded" in out


def test_judge_runs_under_the_kernels_limits():
    r = subprocess.run([sys.executable, "-c", "import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0],"
                        " resource.getrlimit(resource.RLIMIT_FSIZE)[0], resource.getrlimit(resource.RLIMIT_CPU)[0])"],
                       capture_output=True, text=True, preexec_fn=confine.judge_preexec, timeout=30)
    assert r.stdout.split() == [str(confine.LIMITS[n]) for n in ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CPU")]


def test_each_notebook_gets_a_fresh_uid(tmp_path):
    first, second = sandbox.allocate_uid(tmp_path), sandbox.allocate_uid(tmp_path)
    assert first != second and sandbox.is_sandbox_uid(first) and sandbox.is_sandbox_uid(second)


def test_a_cell_that_ignores_its_interrupt_stops_the_kernel_and_the_rest_is_not_run():
    """BoundedExecute (in place of nbgrader's Execute): the cell before keeps its output,
    the stubborn cell gets CellTimeoutError, the kernel is stopped after the grace period,
    later cells are recorded as not run; all within a few seconds of the cell's limit."""
    import nbformat

    from autograder.execute import NOT_RUN, BoundedExecute

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 41\nprint(x + 1)"),
        nbformat.v4.new_code_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                                  metadata={"nbgrader": {"grade_id": "stubborn"}}),
        nbformat.v4.new_code_cell("print(x)")])
    t0 = time.time()
    BoundedExecute(timeout=3, interrupt_grace=2, kernel_name="python3").preprocess(nb, {})
    took = time.time() - t0
    first, stubborn, later = nb.cells
    assert first.outputs[0]["text"] == "42\n"
    assert any(o.get("ename") == "CellTimeoutError" for o in stubborn.outputs), stubborn.outputs
    assert [o.get("ename") for o in later.outputs] == [NOT_RUN] and "cell 2 (stubborn)" in later.outputs[0]["evalue"]
    assert took < 30, f"took {took:.0f} s"
