"""Proof, checked outside the kernel, that a graded cell's hidden checks ran to their end.

The grader appends one line to the hidden block of every graded test cell of its own copy
of the instructor notebook (the course root in a temporary folder; the repository is not
touched):

    from autograder.integrity import seal as _wb_seal; _wb_seal("pca_checks", "<nonce>")

`nonce` is drawn at random for each grading run and each cell; it reaches the kernel only
when that cell runs (the kernel cannot read the course root). In the grading kernel the
sandbox launcher (`autograder.sandbox`) calls `arm()` before any learner code runs: it
keys an HMAC with a per-run key that only the grader and the launcher hold, records the
objects the checks rely on, and hardens the checks against lying values. When a cell
reaches its last line, `seal()` re-checks those objects and prints

    [workbook-seal pca_checks <HMAC(key, student/notebook/grade_id/nonce)>]

The grader (`verify_notebook`) gives a graded cell its points only when its output holds
that exact line; a cell that an input transformer emptied, a hook replaced, or whose
failure was swallowed earns nothing. What this does and does not hold: docs/GRADING.md.
"""
from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import sys
from dataclasses import dataclass, field

MARK = "workbook-seal"
SEAL_LINE = re.compile(r"\[workbook-seal (?P<gid>[A-Za-z0-9_.-]+) (?P<token>[0-9a-f]{32})\]")
TAMPER_NAME = "GradingIntegrityError"


class GradingIntegrityError(RuntimeError):
    """Something the checks rely on was modified in the grading kernel."""


def token(key: bytes, context: str, grade_id: str, nonce: str) -> str:
    return hmac.new(key, f"{context}/{grade_id}/{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


def seal_call(grade_id: str, nonce: str) -> str:
    """The line the grader appends to a graded cell's hidden block."""
    return f"from autograder.integrity import seal as _wb_seal; _wb_seal({grade_id!r}, {nonce!r})"


# ----------------------------------------------------------------------------- kernel side

_WATCHED_BUILTINS = ("isinstance", "issubclass", "type", "len", "bool", "set", "frozenset", "getattr",
                     "hasattr", "print", "abs", "all", "any", "float", "int", "str", "tuple", "list",
                     "dict", "range", "zip", "sorted", "min", "max", "sum", "repr", "super", "object",
                     "Exception", "BaseException", "AssertionError", "NotImplementedError", "__import__",
                     "compile", "exec", "eval")
_WATCHED_SHELL_METHODS = ("run_cell", "run_cell_async", "transform_cell", "run_ast_nodes", "run_code",
                          "should_run_async", "showtraceback", "_run_cell")
_WATCHED_EVENTS = ("pre_run_cell", "pre_execute")


def _namespaces(hidden_modules) -> list[tuple[str, dict]]:
    """(name, live namespace) of everything a check's verdict depends on."""
    import numpy
    import torch
    import torch.nn.functional

    import workbook.checks

    spaces = [("torch", vars(torch)), ("torch.Tensor", vars(torch.Tensor)),
              ("torch._C.TensorBase", vars(torch._C.TensorBase)),
              ("torch.nn.functional", vars(torch.nn.functional)), ("torch.nn.Module", vars(torch.nn.Module)),
              ("torch.linalg", vars(torch.linalg)), ("numpy", vars(numpy)),
              ("workbook.checks", vars(workbook.checks)), ("Checks", vars(workbook.checks.Checks)),
              ("autograder.integrity", vars(sys.modules[__name__]))]
    for mod in hidden_modules:
        spaces.append((mod.__name__, vars(mod)))
        package = sys.modules.get(mod.__name__.rpartition(".")[0])
        if package is not None:  # helpers shared by the chapters' hidden checks
            spaces.append((package.__name__, vars(package)))
    return spaces


@dataclass
class _Snapshot:
    spaces: list = field(default_factory=list)       # (name, live dict, {key: object})
    builtins: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)
    shell: object = None
    shell_lists: dict = field(default_factory=dict)  # what: (live list, copy)
    shell_methods: dict = field(default_factory=dict)


def _shell_lists(shell) -> dict:
    manager = shell.input_transformer_manager
    lists = {"input_transformers_cleanup": shell.input_transformers_cleanup,
             "input_transformers_post": shell.input_transformers_post,
             "line_transforms": manager.line_transforms, "token_transformers": manager.token_transformers,
             "ast_transformers": shell.ast_transformers}
    for ev in _WATCHED_EVENTS:
        lists[f"events[{ev}]"] = shell.events.callbacks.get(ev, [])
    return {k: (v, list(v)) for k, v in lists.items()}


def _take(hidden_modules, shell) -> _Snapshot:
    s = _Snapshot()
    s.spaces = [(name, ns, dict(ns)) for name, ns in _namespaces(hidden_modules)]
    s.builtins = {n: getattr(builtins, n) for n in _WATCHED_BUILTINS}
    s.modules = {name: sys.modules[name] for name, _ in _namespaces(hidden_modules) if name in sys.modules}
    if shell is not None:
        s.shell = shell
        s.shell_lists = _shell_lists(shell)
        s.shell_methods = {n: getattr(type(shell), n, None) for n in _WATCHED_SHELL_METHODS}
    return s


def _differences(s: _Snapshot) -> list[str]:
    bad = []
    for name, live, saved in s.spaces:
        bad += [f"{name}.{k}" for k, v in saved.items() if live.get(k, _MISSING) is not v]
    bad += [f"builtins.{k}" for k, v in s.builtins.items() if getattr(builtins, k, _MISSING) is not v]
    bad += [f"sys.modules[{k!r}]" for k, v in s.modules.items() if sys.modules.get(k) is not v]
    if sys.gettrace() is not None or sys.getprofile() is not None:
        bad.append("a trace or profile function (sys.settrace / sys.setprofile)")
    if s.shell is not None:
        from IPython import get_ipython

        if get_ipython() is not s.shell:
            bad.append("the IPython shell")
        now = _shell_lists(s.shell)
        for what, (live, saved) in s.shell_lists.items():
            current = now[what][0]
            if current is not live or len(current) != len(saved) or any(a is not b for a, b in zip(current, saved)):
                bad.append(f"IPython {what}")
        for n, v in s.shell_methods.items():
            if getattr(type(s.shell), n, None) is not v or n in vars(s.shell):
                bad.append(f"IPython shell method {n}")
    return bad


_MISSING = object()


def _plain(x, depth: int = 0):
    """A learner's value as plain built-in types: tensor subclasses become torch.Tensor,
    int/float/str subclasses their base value, containers are rebuilt; objects of other
    types are refused when `depth` > 0 inside an answer (see `_answer`)."""
    import torch

    if isinstance(x, torch.Tensor) and type(x) is not torch.Tensor:
        with torch._C.DisableTorchFunctionSubclass():
            return torch._C.TensorBase.as_subclass(x, torch.Tensor)
    if isinstance(x, bool):
        return x
    for base in (int, float, str):
        if isinstance(x, base) and type(x) is not base:
            return getattr(base, f"__{base.__name__}__")(x)
    if type(x) in (tuple, list):
        return type(x)(_plain(v, depth + 1) for v in x)
    return x


class _Refused:
    """Stands in for an answer of a type the checks do not accept: equal to nothing."""

    def __init__(self, what: str):
        self.what = what

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<refused answer of type {self.what}>"


_ANSWER_TYPES = (str, int, float, bool, type(None))


def _answer(x):
    """A quiz answer (a value, not a function or class) reduced to exact built-in types."""
    if callable(x) or isinstance(x, type):
        return x
    import torch

    if isinstance(x, torch.Tensor):
        return _plain(x)
    if type(x) in _ANSWER_TYPES:
        return x
    if type(x) in (set, frozenset, list, tuple):
        items = [_answer(v) for v in x]
        if any(isinstance(v, _Refused) for v in items):
            return _Refused(type(x).__name__ + " holding values of other types")
        return type(x)(items)
    plain = _plain(x)
    if type(plain) in _ANSWER_TYPES:
        return plain
    return _Refused(type(x).__name__)


def _harden(hidden_modules) -> None:
    """Grading only: checks see the learner's values as plain built-in types."""
    import functools

    import workbook.checks as checks

    C = checks.Checks
    orig_call, orig_tensor, orig_close = C.call, C.tensor, C.close

    @functools.wraps(orig_call)
    def call(self, fn, *args, **kwargs):
        out = orig_call(self, fn, *args, **kwargs)
        return _plain(out)

    @functools.wraps(orig_tensor)
    def tensor(self, what, got, *args, **kwargs):
        return orig_tensor(self, what, _plain(got), *args, **kwargs)

    @functools.wraps(orig_close)
    def close(self, what, got, expected, *args, **kwargs):
        return orig_close(self, what, _plain(got), expected, *args, **kwargs)

    C.call, C.tensor, C.close = call, tensor, close
    for mod in hidden_modules:
        for name, fn in list(vars(mod).items()):
            if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", None) == mod.__name__ \
                    and not isinstance(fn, type):
                setattr(mod, name, _answers_made_plain(fn))


def _answers_made_plain(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*[_answer(a) for a in args], **{k: _answer(v) for k, v in kwargs.items()})
    return wrapper


_armed: dict = {}


def arm(key: bytes, context: str, hidden_modules=(), shell=None, harden: bool = True) -> None:
    """Kernel start-up (sandbox launcher, before any learner code): key the seal, harden
    the checks, record what they rely on. Holds the key only inside a keyed HMAC object."""
    if harden:
        _harden(hidden_modules)
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    stream = sys.stdout
    snapshot = _take(hidden_modules, shell)

    def _seal(grade_id: str, nonce: str) -> None:
        bad = _differences(snapshot)
        if bad:
            raise GradingIntegrityError(
                "grading integrity: modified since the kernel started: " + ", ".join(bad[:8])
                + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else ""))
        h = keyed.copy()
        h.update(f"{context}/{grade_id}/{nonce}".encode())
        out = sys.stdout if shell is None else stream
        out.write(f"[{MARK} {grade_id} {h.hexdigest()[:32]}]\n")
        out.flush()

    _armed["seal"] = _seal


def seal(grade_id: str, nonce: str) -> None:
    """Last line of every graded cell while grading: prove the cell's checks ran."""
    sealer = _armed.get("seal")
    if sealer is None:
        raise GradingIntegrityError("grading integrity: this kernel was not started by the grader's sandbox")
    sealer(grade_id, nonce)


# ----------------------------------------------------------------------------- grader side

def cell_text(cell: dict) -> str:
    """All stream and text output of a cell."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(_join(out.get("text", "")))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename', '')}: {out.get('evalue', '')}")
        else:
            parts.append(_join(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def _join(x) -> str:
    return "".join(x) if isinstance(x, list) else str(x)


@dataclass
class Verdict:
    evidence: list[str] = field(default_factory=list)  # why the notebook cannot be trusted
    sealed: set[str] = field(default_factory=set)       # graded cells with a valid seal
    judged: dict[str, bool] = field(default_factory=dict)  # graded cell -> its judge verdicts all passed


# how nbgrader re-adds a deleted graded code cell (OverwriteCells.missing_cell_notification)
READDED = "# This cell (id:{gid}) was missing from the submission. It was added back by nbgrader.\n\n"


def verify_notebook(nb: dict, locked: dict[str, tuple[str, str]], key: bytes, context: str) -> Verdict:
    """Check an autograded notebook against the grader's own record.

    `locked` maps grade_id -> (locked source the grader registered, nonce). Evidence of
    tampering: a graded cell missing, duplicated or with another source; a seal that
    reported modified checks; a seal line that is not valid for its cell."""
    v = Verdict()
    seen: dict[str, int] = {}
    for cell in nb.get("cells", []):
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        text = cell_text(cell)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") == TAMPER_NAME:
                v.evidence.append(f"{gid or 'a cell'}: {out.get('evalue', '')[:300]}")
        for m in SEAL_LINE.finditer(text):
            want = locked.get(m["gid"])
            if m["gid"] != gid or want is None or not hmac.compare_digest(
                    m["token"], token(key, context, m["gid"], want[1])):
                v.evidence.append(f"{gid or 'a cell'}: printed a forged or misplaced grading seal for {m['gid']}")
            else:
                v.sealed.add(gid)
        if gid in locked:
            seen[gid] = seen.get(gid, 0) + 1
            src = _join(cell.get("source", "")).strip()
            if src not in (locked[gid][0].strip(), (READDED.format(gid=gid) + locked[gid][0]).strip()):
                v.evidence.append(f"{gid}: the graded cell's source differs from the locked source")
    for gid in locked:
        if seen.get(gid, 0) != 1:
            v.evidence.append(f"{gid}: graded cell present {seen.get(gid, 0)} times")
    return v
