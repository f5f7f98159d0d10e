"""The wire between a learner's kernel and the judge: values as plain data, and messages.

Everything crosses the grading boundary through `encode`/`decode`: None, bool, int, float,
str, tuples, lists, sets, dicts, tensors (dtype, shape, raw bytes; subclasses stripped),
numpy arrays, dtypes and generator states. Any other object travels as a *handle*: the
sender's `handles.add(x)` gives its tag, and only the side holding the object can resolve
it (`autograder.kernel_side.Handles`; the judge sends back the kernel's own handles,
`autograder.remote`). Decoding builds plain built-in values and plain tensors and never
unpickles, so nothing the learner returns can run code in the judge or lie about its value.

A message is a JSON header plus raw buffers (`pack`/`unpack`), length-prefixed on a
connected socket (`Channel`); one over MAX_MESSAGE is refused from its length, before it
is read. The protocol itself (what the kernel and the judge say) is in
`autograder.kernel_side`.
"""
from __future__ import annotations

import json
import math
import socket
import struct

import numpy as np
import torch

MAX_MESSAGE = 256 << 20        # bytes in one message (refused from its length, before reading it)
MAX_DEPTH = 40                 # nesting of containers
_DTYPES = {str(d): d for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                               torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
                               torch.complex64, torch.complex128)}
_TAGS = ("$l", "$t", "$s", "$fs", "$d")


class WireError(ValueError):
    """A value that cannot cross the grading boundary, or a malformed message."""


class RemoteGone(RuntimeError):
    """The other end stopped answering (interrupted, crashed, or closed the connection)."""


# ----------------------------------------------------------------------------- encoding

def _plain_tensor(x: torch.Tensor) -> torch.Tensor:
    with torch._C.DisableTorchFunctionSubclass():
        t = torch._C.TensorBase.as_subclass(x, torch.Tensor) if type(x) is not torch.Tensor else x
        # a fresh dense copy: `contiguous()` keeps odd strides of size-1 dimensions
        # (`t.expand(1)` has stride 0), which the byte view below cannot take
        return t.detach().to("cpu").clone(memory_format=torch.contiguous_format), bool(x.requires_grad)


def encode(x, bufs: list, handles=None, depth: int = 0):
    """`x` as JSON-able data plus raw buffers. Any other object becomes the tag that
    `handles.add(x)` returns (it may raise WireError); without `handles` it is refused."""
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
    if handles is None:
        raise WireError(f"cannot send a {t.__name__}")
    return handles.add(x)


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
