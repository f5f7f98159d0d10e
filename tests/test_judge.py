"""The judge boundary: values cross it as plain data, malformed messages are refused, and
the judge process runs hidden checks on a kernel's objects without running its code."""
import ast
import importlib
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from autograder import chapters, gradebook, harness, hidden, integrity, kernel_side, remote, seals, wire
from autograder.judge import JudgeRun, apply_judge
from autograder.kernel_side import LocalKernel
from autograder.remote import RemoteError
from autograder.rows import Result
from autograder.wire import RemoteGone, WireError, decode, encode, pack, unpack
from conftest import REPO
ref = chapters.module("01_autoencoders", "solutions")

CH = "01_autoencoders"


def _roundtrip(x):
    bufs: list = []
    header, bufs = unpack(pack({"v": encode(x, bufs)}, bufs)[8:])
    return decode(header["v"], bufs, lambda tag: pytest.fail("no handles expected"))


@pytest.mark.parametrize("x", [
    None, True, 3, -2**70, 1.5, float("inf"), "text", (1, "a", (2.0,)), [1, [2, 3]], {"a": 1, 2: (3,)},
    {1, 2, "x"}, frozenset({4}),
])
def test_plain_values_round_trip(x):
    assert _roundtrip(x) == x and type(_roundtrip(x)) is type(x)


@pytest.mark.parametrize("t", [
    torch.randn(3, 4, dtype=torch.float64), torch.arange(6).reshape(2, 3), torch.tensor(2.5), torch.zeros(0, 3),
    torch.randn(2, 2).to(torch.bfloat16), torch.tensor([True, False]), torch.randn(3, dtype=torch.complex64),
    torch.randn(4, 3).t(),
])
def test_tensors_round_trip(t):
    got = _roundtrip(t)
    assert type(got) is torch.Tensor and got.dtype == t.dtype and got.shape == t.shape and torch.equal(got, t)


def test_requires_grad_numpy_generator_and_dtype():
    w = torch.randn(3, requires_grad=True)
    assert _roundtrip(w).requires_grad and not _roundtrip(w.detach()).requires_grad
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(_roundtrip(a), a) and _roundtrip(np.float64(2.5)) == 2.5
    g = torch.Generator().manual_seed(7)
    g2 = _roundtrip(g)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=g2))
    assert _roundtrip(torch.float16) is torch.float16


def test_lying_values_arrive_as_their_data():
    class Liar(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return torch.zeros(())

        def __eq__(self, other):
            return True

    class Yes(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    lie = torch.tensor([1.0, 2.0]).as_subclass(Liar)
    got = _roundtrip(lie)
    assert type(got) is torch.Tensor and got.tolist() == [1.0, 2.0]
    ans = _roundtrip(Yes("B"))
    assert type(ans) is str and ans == "B" and ans != "A"
    assert type(_roundtrip(True)) is bool


@pytest.mark.parametrize("bad", [
    {"$T": 0, "dtype": "torch.float32", "shape": [3]},            # 3 floats need 12 bytes
    {"$T": 0, "dtype": "torch.float32", "shape": [-1]},
    {"$T": 5, "dtype": "torch.float32", "shape": [1]},            # no such buffer
    {"$T": 0, "dtype": "os.system", "shape": [1]},
    {"$N": 0, "dtype": "O", "shape": [1]},                        # object arrays would unpickle
    {"$l": "abc"}, {"$d": [[{"$l": []}, 1]]}, {"$s": [{"$l": []}]}, [1, 2], {"$what": 1}, {},
    {"$h": 0},
])
def test_malformed_values_are_refused(bad):
    def resolve(tag):
        raise WireError("unknown handle")

    with pytest.raises(WireError):
        decode(bad, [b"\0\0\0\0"], resolve)


def test_nesting_bomb_and_truncated_messages_are_refused():
    deep = {"$l": []}
    for _ in range(100):
        deep = {"$l": [deep]}
    with pytest.raises(WireError):
        decode(deep, [], lambda t: None)
    msg = pack({"v": 1}, [b"abc"])
    with pytest.raises(WireError):
        unpack(msg[8:-1])
    with pytest.raises(WireError):
        unpack(b"\xff\xff\xff\xff" + msg[12:])


def test_unknown_objects_travel_as_handles_and_errors_keep_their_kind():
    k = LocalKernel()

    def not_yet(x):
        raise NotImplementedError

    def bad(x):
        raise ValueError("wrong shape")

    def leaves(x):
        raise SystemExit(0)

    f_not_yet, f_bad, f_leaves, model = k.register((not_yet, bad, leaves, torch.nn.Linear(2, 3)))
    with pytest.raises(NotImplementedError):
        f_not_yet(1)
    with pytest.raises(RemoteError, match="wrong shape") as e:
        f_bad(torch.zeros(1))
    assert type(e.value).__name__ == "ValueError" and "raise ValueError" in e.value.where
    with pytest.raises(RemoteError) as e:
        f_leaves(1)
    assert type(e.value).__name__ == "SystemExit"
    out = model(torch.ones(4, 2))
    assert type(out) is torch.Tensor and out.shape == (4, 3)
    assert model.out_features == 3 and repr(model) == "<Linear in the learner's kernel>"
    # weights written by a harness snippet stay in the kernel's object
    k_model = k.side.handles.objects[3]
    with remote.serving(k):
        remote.run("common.copy_weights", model=model, weights=[torch.full((3, 2), 2.0), torch.zeros(3)])
    assert torch.all(k_model.weight == 2.0)


# ----------------------------------------------------------------------------- harness snippets

def test_snippets_cross_by_name_and_unregistered_ones_are_refused():
    k = LocalKernel()
    seen = []
    k.side.answer = (lambda answer: lambda msg, bufs: seen.append(dict(msg)) or answer(msg, bufs))(k.side.answer)
    (model,) = k.register((torch.nn.Linear(2, 3),))
    with remote.serving(k):
        shapes = remote.run(harness.SNIPPETS["common.shapes"], model=model)   # by its exact text
        with pytest.raises(harness.UnregisteredSnippet, match="not registered"):
            remote.run("result = __import__('os').getcwd()")
        with pytest.raises(harness.UnregisteredSnippet):
            remote.twin("result = 1")
    with pytest.raises(RuntimeError, match="for hidden checks"):   # outside a check: no kernel to run in
        remote.run("common.shapes", model=model)
    assert shapes == [(3, 2), (3,)]
    runs = [m for m in seen if m.get("op") == "run"]
    assert runs == [{"op": "run", "name": "common.shapes", "vars": runs[0]["vars"]}]  # the name, no source
    with pytest.raises(RemoteError, match="no harness snippet named"):
        k.request({"op": "run", "name": "os.system"})


def _snippet_arguments(path):
    """Values of the UPPER_CASE module constants and string literals that a hidden module
    hands to run / twin / in_kernel / run_reporting (directly or as an argument next to `run`)."""
    callers = {"run", "twin", "in_kernel", "run_reporting"}
    name = (f"autograder.chapters.{path.parent.name}.hidden" if path.stem == "hidden" else
            "autograder.hidden" + ("" if path.stem == "__init__" else f".{path.stem}"))
    mod = importlib.import_module(name)
    where = path.parent.name if path.stem == "hidden" else path.stem
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        fname = getattr(node.func, "id", getattr(node.func, "attr", None))
        if fname in callers or any(isinstance(a, ast.Name) and a.id in callers for a in node.args):
            for a in node.args:
                if isinstance(a, ast.Name) and a.id.isupper() and isinstance(getattr(mod, a.id, None), str):
                    yield f"{where}.{a.id}", getattr(mod, a.id)
                elif isinstance(a, ast.Constant) and isinstance(a.value, str) and (
                        "result" in a.value or a.value in harness.SNIPPETS):
                    yield f"{where}: {a.value[:40]!r}", a.value
    for const, value in vars(mod).items():  # any module constant that is code setting `result`
        if const.isupper() and type(value) is str and _sets_result(value):
            yield f"{where}.{const}", value


def _sets_result(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.Name) and n.id == "result" and isinstance(n.ctx, ast.Store) for n in ast.walk(tree))


def test_every_snippet_of_the_hidden_checks_is_registered():
    hidden = sorted((REPO / "autograder" / "hidden").glob("*.py")) + sorted((REPO / "autograder" / "chapters").glob("*/hidden.py"))
    found = dict(kv for p in hidden for kv in _snippet_arguments(p))
    assert len(found) >= 30
    missing = [where for where, name in found.items() if name not in harness.SNIPPETS]
    assert not missing, f"harness snippets not passed by a name registered in autograder/harness.py: {missing}"
    texts = list(harness.SNIPPETS.values())
    assert len(set(texts)) == len(texts), "two names for the same snippet in autograder/harness.py"
    unused = set(harness.SNIPPETS) - set(found.values())
    assert not unused, f"registered snippets that no hidden check uses: {sorted(unused)}"


def test_a_message_over_the_limit_is_refused_before_it_is_read():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("!Q", wire.MAX_MESSAGE + 1))   # the length only; no body follows
        b.settimeout(5)
        with pytest.raises(WireError, match="over the limit"):
            wire.Channel(b).recv()
    assert wire.MAX_MESSAGE <= 256 << 20


# ----------------------------------------------------------------------------- secrets

def test_student_secrets_differ_per_student_notebook_and_run_and_regrade_exactly(tmp_path):
    one, two = seals.new_run_secret(None), seals.new_run_secret(None)
    assert one != two and len(one) == 64
    s = seals.student_secret
    assert len({s(one, "ann", CH), s(one, "bob", CH), s(one, "ann", "02_denoising"), s(two, "ann", CH)}) == 4
    assert s(seals.new_run_secret(one.upper()), "ann", CH) == s(one, "ann", CH)
    for bad in ("", "xyz", "12ab"):
        with pytest.raises(ValueError):
            seals.new_run_secret(bad)
    with pytest.raises(ValueError):
        s("", "ann", CH)
    path = seals.store_run_secret(tmp_path, one)
    assert path.read_text().strip() == one and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_hidden_seed_reads_the_secret_at_each_call_and_the_judge_needs_one(monkeypatch):
    monkeypatch.setenv("WORKBOOK_HIDDEN_SEED", "a" * 64)
    a = hidden.hidden_seed("x")
    monkeypatch.setenv("WORKBOOK_HIDDEN_SEED", "b" * 64)
    assert hidden.hidden_seed("x") != a
    monkeypatch.delenv("WORKBOOK_HIDDEN_SEED")
    assert hidden.hidden_seed("x") == hidden.hidden_seed("x")   # in-process: the fixed dev secret
    monkeypatch.setenv(hidden.SECRET_REQUIRED_ENV, "1")
    with pytest.raises(RuntimeError, match="no grading secret"):
        hidden.hidden_seed("x")


# ----------------------------------------------------------------------------- tokens in the notebook

def test_each_judged_test_cell_gets_a_one_time_token_before_its_checks(tmp_path):
    nb = tmp_path / f"{CH}.ipynb"
    shutil.copy(REPO / "solutions" / f"{CH}.ipynb", nb)
    chapter = seals.Chapter(CH, seals.add_seals(nb))
    cells = chapter.judge_cells
    assert len(cells) == len(chapter.judged) >= 6
    assert {c["cell"]: c["checks"] for c in cells.values()} == chapter.judged
    for token, c in cells.items():
        src = chapter.locked[c["cell"]][0]
        assert src.index(token) < src.index("_judged(") and len(token) == 32
    shutil.copy(REPO / "solutions" / f"{CH}.ipynb", nb)
    again = seals.Chapter(CH, seals.add_seals(nb))
    assert not set(again.judge_cells) & set(cells)   # fresh per run


# ----------------------------------------------------------------------------- the judge process

SECRET = "5e" * 32
CELLS = {"tok-retrieval": {"cell": "retrieval_checks", "checks": ["01_autoencoders.retrieval"]},
         "tok-quiz": {"cell": "quiz_ae_loss", "checks": ["01_autoencoders.quiz:answer_ae_loss"]},
         "tok-pca": {"cell": "pca_checks", "checks": ["01_autoencoders.pca"]},
         "tok-angles": {"cell": "angles_checks", "checks": ["01_autoencoders.principal_angles"]}}


def _start_judge(tmp_path, config: dict | None, name="judge"):
    path = tmp_path / f"{name}.sock"
    env = {k: v for k, v in os.environ.items() if k != "WORKBOOK_HIDDEN_SEED"}
    proc = subprocess.Popen([sys.executable, "-m", "autograder.judge", "--socket", str(path),
                             "--chapter", CH], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(("" if config is None else json.dumps(config)) + "\n")
    proc.stdin.flush()
    return str(path), proc


@pytest.fixture
def judge(tmp_path):
    record = tmp_path / "record.json"
    path, proc = _start_judge(tmp_path, {"secret": SECRET, "reports": str(record), "cells": CELLS})
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    yield path, proc, record
    proc.kill()
    proc.wait()


def _verdicts(proc) -> dict:
    out, _ = proc.communicate(input="", timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def test_judge_runs_each_check_once_from_its_cell_and_tells_the_kernel_only_pass_or_fail(judge):
    path, proc, record = judge
    seen = []

    def spy(Z, y, ks):  # a learner's function: sees the judge's inputs, runs here only
        seen.append(Z.shape)
        return ref.retrieval_precision(Z, y, ks)

    passed, report = kernel_side._ask_judge(path, "01_autoencoders.retrieval", (spy,), {}, "tok-retrieval")
    assert passed and seen and report == "[retrieval (hidden)] passed"
    # the same check again (another answer, the same token): refused, the first verdict stays
    wrong = lambda Z, y, ks: ref.retrieval_precision(Z, y, ks) * 0.5  # noqa: E731
    passed, report = kernel_side._ask_judge(path, "01_autoencoders.retrieval", (wrong,), {}, "tok-retrieval")
    assert not passed and "judged already" in report
    # a quiz answer without a token, with another cell's token, with an unknown one: refused
    for token in (None, "tok-retrieval", "tok-forged"):
        passed, report = kernel_side._ask_judge(path, "01_autoencoders.quiz", ("answer_ae_loss", "A"), {}, token)
        assert not passed and "refused by the grader" in report
    # the quiz with its own token: a wrong answer fails, and the kernel learns nothing more
    passed, report = kernel_side._ask_judge(path, "01_autoencoders.quiz", ("answer_ae_loss", "Z"), {}, "tok-quiz")
    assert not passed and report == "[quiz answer_ae_loss (hidden)] failed: the details are in your feedback after grading"
    passed, _ = kernel_side._ask_judge(path, "01_autoencoders.quiz", ("answer_ae_loss", ref.answer_ae_loss), {},
                                  "tok-quiz")
    assert not passed   # trying the next option: refused
    # garbage on the socket, a check of another chapter, a vanished kernel: the judge lives on
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(struct.pack("!Q", 10) + b"not a msg!")
    with pytest.raises(RemoteGone):
        kernel_side._ask_judge(path, "02_denoising.quiz", ("x", "A"), {}, "tok-quiz")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(pack({"op": "check", "name": "01_autoencoders.pca", "token": "tok-pca", "args": {"$t": [
            {"$h": 0}, {"$h": 1}, {"$h": 2}]}, "kwargs": {"$d": []}}, []))
        time.sleep(0.2)  # the judge calls handle 0; the kernel hangs up instead of answering
    bad_angles = lambda A, B: ref.principal_angles(A, B) + 0.25  # noqa: E731
    passed, report = kernel_side._ask_judge(path, "01_autoencoders.principal_angles", (bad_angles,), {}, "tok-angles")
    assert not passed and "expected" not in report and "index" not in report
    verdicts = _verdicts(proc)
    assert verdicts == {"01_autoencoders.retrieval": True, "01_autoencoders.quiz:answer_ae_loss": False,
                        "01_autoencoders.pca": False, "01_autoencoders.principal_angles": False}
    # the full reports and the refusals: in the grader-only record
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    rec = json.loads(record.read_text())
    assert rec["verdicts"] == verdicts
    reports = {r["check"]: r for r in rec["reports"]}
    assert set(reports) == set(verdicts) and len(rec["reports"]) == 4
    assert reports["01_autoencoders.principal_angles"]["cell"] == "angles_checks"
    assert "principal_angles" in reports["01_autoencoders.principal_angles"]["report"]
    assert len(reports["01_autoencoders.principal_angles"]["report"]) > len(report)
    assert len(rec["evidence"]) == 5 and all("refused" in e for e in rec["evidence"])
    assert sum("judged already" in e for e in rec["evidence"]) == 2


def test_the_judge_refuses_to_start_without_a_secret(tmp_path):
    for config in (None, {"reports": str(tmp_path / "r.json"), "cells": {}},
                   {"secret": "", "reports": str(tmp_path / "r.json"), "cells": {}}):
        path, proc = _start_judge(tmp_path, config, name=f"s{id(config)}")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "ready" not in out, out
        assert "secret" in err or "JSON" in err, err
        assert not os.path.exists(path)


def test_the_judge_exits_when_the_grader_is_gone(tmp_path):
    record = tmp_path / "gone.json"
    path, proc = _start_judge(tmp_path, {"secret": SECRET, "reports": str(record), "cells": CELLS}, name="gone")
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    proc.stdout.close()   # nobody reads the verdicts line any more
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0 and json.loads(record.read_text())["verdicts"] == {}


def test_hidden_inputs_depend_on_the_judges_secret(tmp_path):
    """The kernel never holds the secret; the judge's inputs change with it."""
    seen = []
    for secret in ("1" * 64, "2" * 64, "1" * 64):
        path, proc = _start_judge(tmp_path, {"secret": secret, "reports": str(tmp_path / f"{len(seen)}.json"),
                                             "cells": CELLS}, name=f"j{len(seen)}")
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        got = []
        kernel_side._ask_judge(path, "01_autoencoders.retrieval",
                          (lambda Z, y, ks: got.append(Z.clone()) or ref.retrieval_precision(Z, y, ks),), {},
                          "tok-retrieval")
        _verdicts(proc)
        seen.append(got[0])
    assert not torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[2])


# ----------------------------------------------------------------------------- into the feedback

def test_the_judges_reports_replace_the_neutral_lines_and_refusals_are_evidence(tmp_path, monkeypatch):
    from autograder.judge import neutral

    key = "01_autoencoders.retrieval"
    nb = {"cells": [{"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "retrieval_checks"}},
                     "source": "", "outputs": [
                         {"output_type": "error", "ename": "CheckFailed", "evalue": neutral(key, False),
                          "traceback": ["..."]}]}]}
    run = JudgeRun(verdicts={key: False}, evidence=["01_autoencoders.quiz:x refused: ..."],
                   reports=[{"cell": "retrieval_checks", "check": key, "passed": False,
                             "report": "[retrieval_precision (hidden)] wrong values: expected 0.5\n"}])
    verdict = integrity.Verdict()
    apply_judge(nb, verdict, run, {"retrieval_checks": [key]})
    out = nb["cells"][0]["outputs"][0]
    assert out["evalue"] == "[retrieval_precision (hidden)] wrong values: expected 0.5"
    assert verdict.judged == {"retrieval_checks": False}
    assert verdict.evidence == ["judge: 01_autoencoders.quiz:x refused: ..."]
    verdict.sealed = {"retrieval_checks", "pca_checks"}
    res = Result("ann", CH, score=3.0, cells=[("retrieval_checks", 0.0, 2.0), ("pca_checks", 3.0, 3.0)])
    zeroed = []
    monkeypatch.setattr(gradebook, "zero_grades", lambda root, r: zeroed.append(r.student))
    gradebook.enforce_verdict(tmp_path, res, verdict)   # a refused request costs the notebook
    assert res.status == "tampered" and res.score == 0 and "refused" in res.detail and zeroed == ["ann"]
