"""How a failed check shows in a notebook: its message first, the checks' own code never.

A `CheckFailed` raised in a cell shows as the check's message (what failed, the input, what
was expected, what came back, the likely mistake). When your own code raised inside a check,
the line of your code that raised follows the message. The frames of the checks themselves
(`workbook/checks.py`, `Checks.call`, `Checks.fail`) never show: they say nothing about your
code. A cell that calls an exercise whose stub still raises `NotImplementedError()` says
which one, in three lines. JupyterLab, Notebook 7, VS Code, nbconvert and nbgrader's Validate all run an IPython
kernel, where `install()` (called when `workbook.checks` is imported) sets this up; in plain
Python the usual traceback shows.

The cell still fails as any error does (an `error` output, the execution stops), so
"Run all", Validate and grading treat it exactly as before.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

MAX_CODE_FRAMES = 2      # frames of your own code shown under the message
_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
_LIBRARIES = tuple({str(Path(p).resolve()) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
RED, BOLD, RESET = "\x1b[0;31m", "\x1b[1m", "\x1b[0m"


def _is_learner_file(filename: str) -> bool:
    """A notebook cell or a module of the learner's, not the workbook nor an installed library."""
    if filename.startswith("<"):
        return filename.startswith("<ipython-input")
    path = str(Path(filename).resolve())
    return not path.startswith(_PACKAGE) and not path.startswith(_LIBRARIES)


def _cell_name(shell, filename: str) -> str:
    """'Cell In[7]' for a notebook cell (as IPython names it), else the file's name."""
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return f"Cell In[{number}]" if number is not None else os.path.basename(filename)


def _cause(error: BaseException) -> BaseException | None:
    """The exception the learner's code raised inside the check, if any (not another check's)."""
    seen = set()
    inner = error.__cause__ or error.__context__
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if not isinstance(inner, AssertionError) or type(inner).__name__ != "CheckFailed":
            return inner
        inner = inner.__cause__ or inner.__context__
    return None


def learner_frames(error: BaseException, shell=None) -> list[str]:
    """'Cell In[7], line 5, in pca_fit' and its source line, for the innermost frames of the
    learner's own code in the traceback of the exception their code raised."""
    inner = _cause(error)
    if inner is None or isinstance(inner, NotImplementedError):  # a stub: the message says so
        return []
    frames = [f for f in traceback.extract_tb(inner.__traceback__) if _is_learner_file(f.filename)]
    lines = []
    for f in frames[-MAX_CODE_FRAMES:]:
        lines.append(f"  {_cell_name(shell, f.filename)}, line {f.lineno}, in {f.name}")
        if f.line:
            lines.append(f"    {f.line.strip()}")
    return lines


def message_lines(error: BaseException, shell=None, color: bool = True) -> list[str]:
    """What a learner sees of a failed check: the message, then where their code raised."""
    name = type(error).__name__
    text = str(error).splitlines() or [""]
    first = f"{RED}{name}{RESET}: {BOLD}{text[0]}{RESET}" if color else f"{name}: {text[0]}"
    lines = [first, *text[1:]]
    code = learner_frames(error, shell)
    if code:
        lines += ["where your code raised (most recent last):", *code]
    return lines


def stub_lines(error: NotImplementedError, shell=None, color: bool = True) -> list[str] | None:
    """What a learner sees when a cell calls an exercise not written yet (its stub raised
    `NotImplementedError()`), or None for any other NotImplementedError."""
    frames = traceback.extract_tb(error.__traceback__)
    if str(error) or not frames or not _is_learner_file(frames[-1].filename) \
            or (frames[-1].line or "").strip() not in ("raise NotImplementedError()", "raise NotImplementedError"):
        return None
    stub = frames[-1]
    name = f"{RED}NotImplementedError{RESET}" if color else "NotImplementedError"
    return [f"{name}: {stub.name} is not written yet ({_cell_name(shell, stub.filename)}): this cell needs it.",
            "Finish that exercise (its check cell tells you what is missing), or use its stand-in where",
            "the exercise offers one (\"Stuck?\"), to run the rest of the chapter."]


def _handler(shell, etype, value, tb, tb_offset=None):
    """IPython's custom-exception hook: show the message as the cell's error output."""
    try:
        stb = stub_lines(value, shell) if isinstance(value, NotImplementedError) else message_lines(value, shell)
        if stb is None:  # not a stub: IPython's own traceback
            stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    except Exception:  # noqa: BLE001 - never lose the failure: IPython's own traceback then
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    shell._showtraceback(etype, value, stb)  # an `error` output, as every failed cell has
    return None


def install() -> bool:
    """Show failed checks as their message in this IPython kernel (True if installed)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    from .checks import CheckFailed

    if CheckFailed in getattr(shell, "custom_exceptions", ()):
        return True
    shell.set_custom_exc((CheckFailed, NotImplementedError), _handler)
    return True
