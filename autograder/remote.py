"""The judge's side of a hidden check: the learner's objects, seen through the kernel.

The judge (`autograder.judge`) runs a hidden check on `RemoteObject`s: proxies for the
learner's functions, classes and answers that live in the kernel. Calling one, or reading
one of its attributes, is a request to the kernel (`Kernel.request`, answered by
`autograder.kernel_side.KernelSide`); what comes back are plain values (`autograder.wire`)
or further proxies. An error the learner's code raised comes back as a `RemoteError`
subclass carrying its type's name.

A hidden check runs harness snippets in the kernel with `run(name, **vars)` and, to keep
an identical copy here, `twin(name, **vars)`; both talk to the kernel whose check is
running (`serving`, entered by `autograder.checks_runner.run_check`).
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar

from autograder import harness
from autograder.wire import Channel, WireError, decode, encode


class RemoteError(Exception):
    """The learner's code raised while the judge called it; subclasses carry its type's name."""


class RemoteObject:
    """An object of the learner's kernel, seen from the judge: it can be called, its
    attributes read (plain values or further handles), and passed back in requests."""

    def __init__(self, kernel, tag: dict):
        self._kernel, self._id = kernel, tag["$h"]
        self._type = str(tag.get("type", "object"))[:80]
        self.__name__ = str(tag.get("name") or self._type)[:80]

    def __call__(self, *args, **kwargs):
        return self._kernel.request({"op": "call", "$h": self._id}, args=args, kwargs=kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") or name.startswith("_kernel") or name in ("_id", "_type"):
            raise AttributeError(name)
        return self._kernel.request({"op": "getattr", "$h": self._id, "name": name})

    def __repr__(self) -> str:
        return f"<{self._type} in the learner's kernel>"


class _Returned:
    """What the judge may send that is not a plain value: the kernel's own objects back."""

    @staticmethod
    def add(x) -> dict:
        if isinstance(x, RemoteObject):
            return {"$h": x._id}
        raise WireError(f"cannot send a {type(x).__name__}")


def _raise_remote(err: dict):
    kind = str(err.get("type", "Exception"))
    msg = str(err.get("msg", ""))
    if kind == "NotImplementedError":
        raise NotImplementedError(msg)
    cls = type(kind if kind.isidentifier() else "Exception", (RemoteError,), {})
    e = cls(msg)
    e.where = str(err.get("where", ""))
    raise e


class Kernel:
    """The judge's view of one connected kernel."""

    def __init__(self, channel: Channel | None):
        self.channel = channel

    def request(self, msg: dict, args: tuple = (), kwargs: dict | None = None, **extra):
        bufs: list = []
        msg = dict(msg)
        if args or msg["op"] == "call":
            msg["args"] = encode(list(args), bufs, _Returned)
            msg["kwargs"] = encode(dict(kwargs or {}), bufs, _Returned)
        for k, v in extra.items():
            msg[k] = encode(v, bufs, _Returned)
        reply, rbufs = self._exchange(msg, bufs)
        if "err" in reply:
            _raise_remote(reply["err"] if type(reply["err"]) is dict else {})
        return decode(reply.get("ok"), rbufs, lambda tag: RemoteObject(self, tag))

    def run(self, code: str, **vars):
        """Run a harness snippet (its registered name, or its exact registered text: see
        autograder/harness.py) in the kernel; its `result` comes back (plain or handles).
        Only the name crosses to the kernel."""
        return self.request({"op": "run", "name": harness.name_of(code)}, vars=vars)

    def _exchange(self, msg: dict, bufs: list) -> tuple[dict, list]:
        self.channel.send(msg, bufs)
        return self.channel.recv()


_serving: ContextVar[Kernel | None] = ContextVar("autograder.remote.serving", default=None)


@contextlib.contextmanager
def serving(kernel: Kernel):
    """While a hidden check runs: the kernel its `run` and `twin` talk to."""
    token = _serving.set(kernel)
    try:
        yield kernel
    finally:
        _serving.reset(token)


def run(code: str, **vars):
    """In a hidden check: run a harness snippet in the learner's kernel (see Kernel.run)."""
    kernel = _serving.get()
    if kernel is None:
        raise RuntimeError("remote.run is for hidden checks that the judge runs")
    return kernel.run(code, **vars)


def twin(code: str, **vars):
    """In a hidden check: run the same harness snippet here (in the judge) and in the
    learner's kernel, on the same plain inputs; returns (here, there). The way to give a
    learner's function an object to act on (a model and its optimizer, a stand-in that
    records its inputs) while the judge keeps an identical copy to compute the expected
    result with. A snippet that initialises weights seeds its own RNG:
    `with torch.random.fork_rng(): torch.manual_seed(seed); model = ...`."""
    name = harness.name_of(code)
    scope = harness.scope(**vars)
    exec(compile(harness.code_of(name), f"<harness {name}>", "exec"), scope)
    return scope["result"], run(name, **vars)
