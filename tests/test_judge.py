"""The judge boundary: values cross it as plain data, malformed messages are refused, and
the judge process runs hidden checks on a kernel's objects without running its code."""
import json
import os
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from autograder import remote
from autograder.remote import LocalKernel, RemoteError, RemoteGone, WireError, decode, encode, pack, unpack
from conftest import REPO
from solutions import ch01_autoencoders as ref


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
    remote._current.append(k)
    try:
        remote.run("with torch.no_grad():\n    m.weight.fill_(w)", m=model, w=2.0)
    finally:
        remote._current.pop()
    assert torch.all(k_model.weight == 2.0)


# ----------------------------------------------------------------------------- the judge process

@pytest.fixture
def judge(tmp_path):
    path = tmp_path / "judge.sock"
    env = {**os.environ, "WORKBOOK_HIDDEN_SEED": "judge-test-secret"}
    proc = subprocess.Popen([sys.executable, "-m", "autograder.judge", "--socket", str(path),
                             "--chapter", "01_autoencoders"], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    yield str(path), proc
    proc.kill()
    proc.wait()


def _verdicts(proc) -> dict:
    out, _ = proc.communicate(input="", timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def test_judge_runs_hidden_checks_on_the_kernels_objects(judge, monkeypatch):
    path, proc = judge
    monkeypatch.delenv("WORKBOOK_HIDDEN_SEED", raising=False)
    seen = []

    def spy(Z, y, ks):  # a learner's function: sees the judge's inputs, runs here only
        seen.append(Z.shape)
        return ref.retrieval_precision(Z, y, ks)

    passed, report = remote._ask_judge(path, "ch01_autoencoders.retrieval", (spy,), {})
    assert passed and "retrieval_precision (hidden)" in report and seen
    wrong = lambda Z, y, ks: ref.retrieval_precision(Z, y, ks) * 0.5  # noqa: E731
    passed, report = remote._ask_judge(path, "ch01_autoencoders.retrieval", (wrong,), {})
    assert not passed and "wrong values" in report
    passed, _ = remote._ask_judge(path, "ch01_autoencoders.quiz", ("answer_ae_loss", ref.answer_ae_loss), {})
    assert passed
    # garbage on the socket, a check of another chapter, a vanished kernel: refused, judge lives on
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(struct.pack("!Q", 10) + b"not a msg!")
    with pytest.raises(RemoteGone):
        remote._ask_judge(path, "ch02_denoising.quiz", ("x", "A"), {})
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(remote.pack({"op": "check", "name": "ch01_autoencoders.pca", "args": {"$t": [
            {"$h": 0}, {"$h": 1}, {"$h": 2}]}, "kwargs": {"$d": []}}, []))
        time.sleep(0.2)  # the judge calls handle 0; the kernel hangs up instead of answering
    passed, _ = remote._ask_judge(path, "ch01_autoencoders.principal_angles", (ref.principal_angles,), {})
    assert passed
    verdicts = _verdicts(proc)
    assert verdicts == {"ch01_autoencoders.retrieval": False, "ch01_autoencoders.quiz:answer_ae_loss": True,
                        "ch01_autoencoders.pca": False, "ch01_autoencoders.principal_angles": True}


def test_hidden_inputs_depend_on_the_judges_secret(tmp_path):
    """The kernel never holds the secret; the judge's inputs change with it."""
    shapes = []
    for secret in ("one", "two"):
        path = tmp_path / f"{secret}.sock"
        proc = subprocess.Popen([sys.executable, "-m", "autograder.judge", "--socket", str(path),
                                 "--chapter", "01_autoencoders"], cwd=REPO, text=True,
                                env={**os.environ, "WORKBOOK_HIDDEN_SEED": secret},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "ready"
        seen = []
        remote._ask_judge(str(path), "ch01_autoencoders.retrieval",
                          (lambda Z, y, ks: seen.append(Z.clone()) or ref.retrieval_precision(Z, y, ks),), {})
        _verdicts(proc)
        shapes.append(seen[0])
    assert not torch.equal(shapes[0], shapes[1])
