"""Hidden checks outside the learner's process: the kernel's side of the judge.

While grading, a hidden test block calls

    from autograder.remote import judged as _judged
    _judged("ch01_autoencoders.pca", pca_fit, pca_encode, pca_decode)

`judged` connects to the judge (`autograder.judge`, a process the grader started, which
never runs learner code), sends the learner's objects as *handles*, and then serves the
judge's requests until it says the verdict:

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

Everything crosses the boundary through `encode`/`decode`: None, bool, int, float, str,
tuples, lists, sets, dicts, tensors (dtype, shape, raw bytes; subclasses stripped),
numpy arrays, dtypes and generator states; any other object of the kernel travels as a
handle that only the kernel can resolve. Decoding builds plain built-in values and plain
tensors and never unpickles, so nothing the learner returns can run code in the judge or
lie about its value. The verdict that counts is the judge's own record, which it reports
to the grader, not anything printed here (docs/GRADING.md).

Outside grading (the instructor's notebook, `python -m autograder fidelity`, the tests)
`judged` runs the same check in this process through `LocalKernel`, which pushes every
value through the same encode/decode round trip, so a check behaves as it will in grading.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import struct
import sys
import traceback

import numpy as np
import torch

from autograder import harness

MAX_MESSAGE = 256 << 20        # bytes in one message (refused from its length, before reading it)
MAX_DEPTH = 40                 # nesting of containers
NAME = re.compile(r"\d\d_[a-z0-9_]+\.[a-z][a-z0-9_]*")
_DTYPES = {str(d): d for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                               torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
                               torch.complex64, torch.complex128)}
_TAGS = ("$l", "$t", "$s", "$fs", "$d")
_JUDGE_ENV = "WORKBOOK_JUDGE"
_judge_path: str | None = None   # set by the sandbox launcher; the environment variable is removed


class WireError(ValueError):
    """A value that cannot cross the grading boundary, or a malformed message."""


class RemoteError(Exception):
    """The learner's code raised while the judge called it; subclasses carry its type's name."""


class RemoteGone(RuntimeError):
    """The kernel stopped answering (interrupted, crashed, or closed the connection)."""


# ----------------------------------------------------------------------------- encoding

def _plain_tensor(x: torch.Tensor) -> torch.Tensor:
    with torch._C.DisableTorchFunctionSubclass():
        t = torch._C.TensorBase.as_subclass(x, torch.Tensor) if type(x) is not torch.Tensor else x
        # a fresh dense copy: `contiguous()` keeps odd strides of size-1 dimensions
        # (`t.expand(1)` has stride 0), which the byte view below cannot take
        return t.detach().to("cpu").clone(memory_format=torch.contiguous_format), bool(x.requires_grad)


def encode(x, bufs: list, handles=None, depth: int = 0):
    """`x` as JSON-able data plus raw buffers; unknown objects become handles (or fail)."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if abs(x) < 2**53 else {"$i": str(x)}
    if t is float:
        return x if math.isfinite(x) else {"$f": repr(x)}
    if isinstance(x, torch.Tensor):
        plain, grad = _plain_tensor(x)
        if str(plain.dtype) not in _DTYPES or plain.layout != torch.strided:
            raise WireError(f"cannot send a tensor of dtype {plain.dtype} / layout {plain.layout}")
        bufs.append(plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b"")
        return {"$T": len(bufs) - 1, "dtype": str(plain.dtype), "shape": list(plain.shape), "grad": grad}
    if isinstance(x, np.ndarray) and x.dtype.kind in "biufc" and x.dtype != np.float16:
        a = np.ascontiguousarray(x)
        bufs.append(a.tobytes())
        return {"$N": len(bufs) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return encode(x.item(), bufs, handles, depth + 1)
    if isinstance(x, torch.Generator):
        bufs.append(x.get_state().numpy().tobytes())
        return {"$G": len(bufs) - 1}
    if isinstance(x, torch.dtype):
        return {"$D": str(x)}
    if t in (list, tuple, set, frozenset):
        tag = {list: "$l", tuple: "$t", set: "$s", frozenset: "$fs"}[t]
        return {tag: [encode(v, bufs, handles, depth + 1) for v in x]}
    if t is dict:
        return {"$d": [[encode(k, bufs, handles, depth + 1), encode(v, bufs, handles, depth + 1)]
                       for k, v in x.items()]}
    if isinstance(x, dict):  # OrderedDict, defaultdict, ...: their items as a plain dict
        return encode(dict(dict.items(x)), bufs, handles, depth + 1)
    for base in (int, float, str):  # subclasses: their plain value, never their methods
        if isinstance(x, base) and not isinstance(x, bool):
            return encode(getattr(base, f"__{base.__name__}__")(x), bufs, handles, depth + 1)
    if handles is not None:
        return handles.add(x)
    if isinstance(x, RemoteObject):
        return {"$h": x._id}
    raise WireError(f"cannot send a {t.__name__}")


def decode(d, bufs: list, resolve, depth: int = 0):
    """The value `encode` described; `resolve(tag_dict)` turns a handle into an object."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if d is None or type(d) in (bool, str, int, float):
        return d
    if type(d) is list:  # JSON arrays appear only inside tags
        raise WireError("bare list in message")
    if type(d) is not dict or len(d) == 0:
        raise WireError(f"malformed value {type(d).__name__}")
    if "$T" in d:
        dtype = _DTYPES.get(d.get("dtype"))
        shape = d.get("shape")
        if dtype is None or type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
            raise WireError("malformed tensor")
        buf = _buf(bufs, d["$T"])
        n = math.prod(shape)
        if len(buf) != n * torch.empty((), dtype=dtype).element_size():
            raise WireError("tensor size does not match its data")
        out = torch.empty(shape, dtype=dtype) if n == 0 else \
            torch.frombuffer(bytearray(buf), dtype=torch.uint8).view(dtype).reshape(shape)
        if d.get("grad") is True and (out.is_floating_point() or out.is_complex()):
            out.requires_grad_(True)
        return out
    if "$N" in d:
        try:
            dt = np.dtype(d["dtype"])
        except TypeError as e:
            raise WireError("malformed array") from e
        shape = d.get("shape")
        if dt.kind not in "biufc" or type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
            raise WireError("malformed array")
        buf = _buf(bufs, d["$N"])
        if len(buf) != math.prod(shape) * dt.itemsize:
            raise WireError("array size does not match its data")
        return np.frombuffer(buf, dtype=dt).reshape(shape).copy()
    if "$G" in d:
        g = torch.Generator()
        g.set_state(torch.frombuffer(bytearray(_buf(bufs, d["$G"])), dtype=torch.uint8))
        return g
    if "$D" in d:
        if d["$D"] not in _DTYPES:
            raise WireError("unknown dtype")
        return _DTYPES[d["$D"]]
    if "$i" in d:
        return int(str(d["$i"])[:400])
    if "$f" in d:
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(d["$f"], "nan"))
    if "$h" in d:
        return resolve(d)
    for tag in _TAGS:
        if tag in d:
            items = d[tag]
            if type(items) is not list:
                raise WireError("malformed container")
            if tag == "$d":
                if not all(type(kv) is list and len(kv) == 2 for kv in items):
                    raise WireError("malformed dict")
                out = {}
                for k, v in items:
                    key = decode(k, bufs, resolve, depth + 1)
                    if type(key) not in (str, int, float, bool, tuple, type(None)):
                        raise WireError("unhashable dict key")
                    out[key] = decode(v, bufs, resolve, depth + 1)
                return out
            vals = [decode(v, bufs, resolve, depth + 1) for v in items]
            if tag in ("$s", "$fs") and not all(type(v) in (str, int, float, bool, tuple, type(None)) for v in vals):
                raise WireError("unhashable set member")
            return {"$l": list, "$t": tuple, "$s": set, "$fs": frozenset}[tag](vals)
    raise WireError("unknown tag")


def _buf(bufs: list, i) -> bytes:
    if type(i) is not int or not 0 <= i < len(bufs):
        raise WireError("bad buffer index")
    return bufs[i]


# ----------------------------------------------------------------------------- framing

def pack(header: dict, bufs: list) -> bytes:
    head = json.dumps(header, allow_nan=False).encode()
    parts = [struct.pack("!II", len(head), len(bufs)), head]
    for b in bufs:
        parts += [struct.pack("!Q", len(b)), b]
    body = b"".join(parts)
    if len(body) > MAX_MESSAGE:
        raise WireError(f"message of {len(body):,} bytes is over the limit")
    return struct.pack("!Q", len(body)) + body


def unpack(body: bytes) -> tuple[dict, list]:
    try:
        n_head, n_bufs = struct.unpack_from("!II", body, 0)
        pos = 8
        if n_head > len(body) - pos or n_bufs * 8 > len(body) - pos - n_head:
            raise WireError("truncated message")
        header = json.loads(body[pos:pos + n_head].decode())
        pos += n_head
        bufs = []
        for _ in range(n_bufs):
            (n,) = struct.unpack_from("!Q", body, pos)
            pos += 8
            if pos + n > len(body):
                raise WireError("truncated buffer")
            bufs.append(body[pos:pos + n])
            pos += n
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"malformed message: {e}") from e
    if type(header) is not dict:
        raise WireError("malformed message")
    return header, bufs


class Channel:
    """Length-prefixed messages over a connected socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, header: dict, bufs: list) -> None:
        self.sock.sendall(pack(header, bufs))

    def recv(self) -> tuple[dict, list]:
        (n,) = struct.unpack("!Q", self._exactly(8))
        if n > MAX_MESSAGE:
            raise WireError(f"message of {n:,} bytes is over the limit")
        return unpack(self._exactly(n))

    def _exactly(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = self.sock.recv(min(n - got, 1 << 20))
            if not chunk:
                raise RemoteGone("the connection closed")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


# ----------------------------------------------------------------------------- kernel side

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
            scope = harness_scope(**arg("vars", {"$d": []}))
            exec(compile(code, f"<harness {msg.get('name')}>", "exec"), scope)
            return scope["result"]
        raise WireError(f"unknown request {op!r}")


def judged(name: str, *args, **kwargs) -> None:
    """Run the hidden check `name` ("chNN_topic.function") on the learner's objects."""
    if not NAME.fullmatch(name):
        raise ValueError(f"not a hidden check name: {name!r}")
    path = _judge_path or os.environ.get(_JUDGE_ENV)
    if not path:
        from autograder import judge  # instructor, fidelity and tests: this process

        k = LocalKernel()
        passed, report = judge.run_check(name, k.register(tuple(args)), k.register(dict(kwargs)), k)
    else:
        passed, report = _ask_judge(path, name, args, kwargs, _token)
    if not passed:  # the whole report is the message: what passed, then what failed and why
        from workbook.checks import CheckFailed

        raise CheckFailed(report.strip() or name)
    print(report, end="" if report.endswith("\n") else "\n")


_token: str | None = None   # the one-time token of the graded test cell now running


def cell_token(token: str) -> None:
    """First line of a graded test cell's hidden block while grading: the token that lets
    this cell's checks be judged (once each). Outside grading it has no effect."""
    global _token
    _token = str(token)


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


# ----------------------------------------------------------------------------- judge side

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
            msg["args"] = encode(list(args), bufs)
            msg["kwargs"] = encode(dict(kwargs or {}), bufs)
        for k, v in extra.items():
            msg[k] = encode(v, bufs)
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


class LocalKernel(Kernel):
    """The kernel in this very process (no grading): the same requests and the same
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


_current: list[Kernel] = []


def run(code: str, **vars):
    """In a hidden check: run a harness snippet in the learner's kernel (see Kernel.run)."""
    if not _current:
        raise RuntimeError("remote.run is for hidden checks that the judge runs")
    return _current[-1].run(code, **vars)


def harness_scope(**vars) -> dict:
    """What a harness snippet sees: torch, nn, F, np, its vars, and `result`."""
    return {"torch": torch, "np": np, "nn": torch.nn, "F": torch.nn.functional, "result": None, **vars}


def twin(code: str, **vars):
    """In a hidden check: run the same harness snippet here (in the judge) and in the
    learner's kernel, on the same plain inputs; returns (here, there). The way to give a
    learner's function an object to act on (a model and its optimizer, a stand-in that
    records its inputs) while the judge keeps an identical copy to compute the expected
    result with. A snippet that initialises weights seeds its own RNG:
    `with torch.random.fork_rng(): torch.manual_seed(seed); model = ...`."""
    name = harness.name_of(code)
    scope = harness_scope(**vars)
    exec(compile(harness.code_of(name), f"<harness {name}>", "exec"), scope)
    return scope["result"], run(name, **vars)


def set_judge_path(path: str | None) -> None:
    global _judge_path
    _judge_path = path
    os.environ.pop(_JUDGE_ENV, None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("autograder.remote is a library")
