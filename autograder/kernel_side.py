"""What runs in the learner's kernel for the hidden checks: asking the judge, and answering it.

While grading, a hidden test block calls

    from autograder.kernel_side import judged as _judged
    _judged("01_autoencoders.pca", pca_fit, pca_encode, pca_decode)

`judged` connects to the judge (`autograder.judge`, a process the grader started, which
never runs learner code), sends the learner's objects as *handles* (`autograder.wire`),
and then serves the judge's requests until it says the verdict:

    call    h, args, kwargs   call the learner's object `h` on the judge's inputs
    getattr h, name           read one attribute of it
    run     name, vars        run a harness snippet of the check (build a model, copy
                              weights in, read parameters back) and send `result`; the
                              snippet travels by name, its code is the kernel's own copy
                              in the public `autograder.harness`
    done    passed, report    print the report; raise CheckFailed if it failed

The first message carries the test cell's one-time token: the grader puts one into every
graded test cell's hidden block (`cell_token`, grade.add_seals), and the judge accepts each
check once, only with the token of the cell it belongs to. While grading, the report the
kernel receives is one neutral line (passed, or failed with "the details are in your
feedback"); the judge's full report goes to the grader, which puts it into the feedback.
The verdict that counts is the judge's own record, which it reports to the grader, not
anything printed here (docs/GRADING.md).

The sandbox launcher tells this module where the judge listens (`set_judge_path`).
Outside grading (the instructor's notebook, `python -m autograder fidelity`, the tests)
there is no judge: `judged` runs the same check in this process through `LocalKernel`,
which pushes every value through the same encode/decode round trip, so a check behaves as
it will in grading.
"""
from __future__ import annotations

import os
import socket
import traceback

from autograder import harness
from autograder.checknames import NAME
from autograder.checks_runner import run_check
from autograder.remote import Kernel, RemoteObject
from autograder.wire import Channel, WireError, decode, encode, pack, unpack

_JUDGE_ENV = "WORKBOOK_JUDGE"
_judge_path: str | None = None   # set by the sandbox launcher; the environment variable is removed
_token: str | None = None        # the one-time token of the graded test cell now running


class Handles:
    """Objects of the kernel the judge refers to by number."""

    def __init__(self):
        self.objects: list = []

    def add(self, x) -> dict:
        self.objects.append(x)
        return {"$h": len(self.objects) - 1, "type": type(x).__name__[:80],
                "name": str(getattr(x, "__name__", ""))[:80] if isinstance(getattr(x, "__name__", None), str) else ""}

    def get(self, d: dict):
        i = d.get("$h")
        if type(i) is not int or not 0 <= i < len(self.objects):
            raise WireError("unknown handle")
        return self.objects[i]


def _learner_frames(tb) -> str:
    """The last lines of a traceback that are the learner's own code (not this module)."""
    frames = [f for f in traceback.extract_tb(tb) if f.filename != __file__]
    return "".join(traceback.format_list(frames[-3:]))[-1500:]


def _error(e: BaseException) -> dict:
    return {"type": type(e).__name__[:80], "msg": str(e)[:2000], "where": _learner_frames(e.__traceback__)}


class KernelSide:
    """Answers the judge's requests with the learner's objects."""

    def __init__(self):
        self.handles = Handles()

    def answer(self, msg: dict, bufs: list) -> tuple[dict, list]:
        out: list = []
        try:
            value = self._do(msg, bufs)
            return {"ok": encode(value, out, self.handles)}, out
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit from learner code is an answer too
            return {"err": _error(e)}, []

    def _do(self, msg: dict, bufs: list):
        op = msg.get("op")
        arg = (lambda k, default: decode(msg.get(k, default), bufs, self.handles.get))
        if op == "call":
            fn = self.handles.get(msg)
            return fn(*arg("args", {"$l": []}), **arg("kwargs", {"$d": []}))
        if op == "getattr":
            return getattr(self.handles.get(msg), str(msg.get("name")))
        if op == "run":
            code = harness.code_of(str(msg.get("name")))
            scope = harness.scope(**arg("vars", {"$d": []}))
            exec(compile(code, f"<harness {msg.get('name')}>", "exec"), scope)
            return scope["result"]
        raise WireError(f"unknown request {op!r}")


class LocalKernel(Kernel):
    """The kernel in this very process (no grading): the judge's requests and the same
    encode/decode round trip, answered by a KernelSide here."""

    def __init__(self):
        super().__init__(None)
        self.side = KernelSide()

    def register(self, x):
        bufs: list = []
        d = encode(x, bufs, self.side.handles)
        return decode(d, bufs, lambda tag: RemoteObject(self, tag))

    def _exchange(self, msg: dict, bufs: list) -> tuple[dict, list]:
        header, bufs = unpack(pack(msg, bufs)[8:])
        reply, rbufs = self.side.answer(header, bufs)
        return unpack(pack(reply, rbufs)[8:])


def judged(name: str, *args, **kwargs) -> None:
    """Run the hidden check `name` ("NN_topic.function") on the learner's objects."""
    if not NAME.fullmatch(name):
        raise ValueError(f"not a hidden check name: {name!r}")
    path = _judge_path or os.environ.get(_JUDGE_ENV)
    if not path:  # instructor, fidelity and tests: this process
        k = LocalKernel()
        passed, report = run_check(name, k.register(tuple(args)), k.register(dict(kwargs)), k)
    else:
        passed, report = _ask_judge(path, name, args, kwargs, _token)
    if not passed:  # the whole report is the message: what passed, then what failed and why
        from workbook.checks import CheckFailed

        raise CheckFailed(report.strip() or name)
    print(report, end="" if report.endswith("\n") else "\n")


def cell_token(token: str) -> None:
    """First line of a graded test cell's hidden block while grading: the token that lets
    this cell's checks be judged (once each). Outside grading it has no effect."""
    global _token
    _token = str(token)


def set_judge_path(path: str | None) -> None:
    """Where the judge listens (the sandbox launcher, before the kernel starts); None: no
    judge, checks run in this process. The environment variable is removed."""
    global _judge_path
    _judge_path = path
    os.environ.pop(_JUDGE_ENV, None)


def _ask_judge(path: str, name: str, args: tuple, kwargs: dict, token: str | None = None) -> tuple[bool, str]:
    side = KernelSide()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        ch = Channel(s)
        bufs: list = []
        header = {"op": "check", "name": name, "token": token, "args": encode(tuple(args), bufs, side.handles),
                  "kwargs": encode(dict(kwargs), bufs, side.handles)}
        ch.send(header, bufs)
        while True:
            msg, mbufs = ch.recv()
            if msg.get("op") == "done":
                return bool(msg.get("passed")), str(msg.get("report", ""))
            ch.send(*side.answer(msg, mbufs))
