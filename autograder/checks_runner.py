"""Run one hidden check by name on the learner's objects behind a kernel, and say how it went.

The judge (`autograder.judge`) runs each check a kernel asks for through `run_check`; so
does the kernel itself outside grading (`autograder.kernel_side.judged`, through a
`LocalKernel`). The chapter's hidden checks are imported only here, when one runs.
"""
from __future__ import annotations

import contextlib
import io

from autograder import chapters
from autograder.checknames import NAME
from autograder.remote import Kernel, serving
from autograder.wire import RemoteGone, WireError


def run_check(name: str, args: tuple, kwargs: dict, kernel: Kernel) -> tuple[bool, str]:
    """(passed, report) of hidden check `name` on the learner's objects behind `kernel`."""
    return run_check_hinted(name, args, kwargs, kernel)[:2]


def run_check_hinted(name: str, args: tuple, kwargs: dict, kernel: Kernel) -> tuple[bool, str, str | None]:
    """(passed, report, likely mistake) of hidden check `name`: the likely mistake is the one
    the check itself named (`Checks.fail(hint=...)`), never read out of a message."""
    found = _run_check(name, args, kwargs, kernel)
    return (*found, None) if len(found) == 2 else found


def _run_check(name: str, args: tuple, kwargs: dict, kernel: Kernel) -> tuple:
    from workbook.checks import CheckFailed

    chapter, _, fn_name = name.partition(".")
    try:
        mod = chapters.module(chapter, "hidden")
    except (KeyError, ImportError):
        return False, f"no hidden checks named {chapter}\n"
    fn = getattr(mod, fn_name, None)
    if not NAME.fullmatch(name) or not callable(fn) or getattr(fn, "__module__", None) != mod.__name__:
        return False, f"no hidden check {name}\n"
    out = io.StringIO()
    try:
        with serving(kernel), contextlib.redirect_stdout(out):
            fn(*args, **kwargs)
        return True, out.getvalue()
    except CheckFailed as e:
        return False, out.getvalue() + f"{e}\n", getattr(e, "hint", None) if type(getattr(e, "hint", None)) is str else None
    except RemoteGone:
        return False, out.getvalue() + f"[{fn_name} (hidden)] the kernel stopped answering (interrupted or crashed)\n"
    except (WireError, OSError) as e:
        return False, out.getvalue() + f"[{fn_name} (hidden)] could not exchange values with the kernel: {e}\n"
    except Exception as e:  # noqa: BLE001 - e.g. a learner's value of an unexpected kind
        return False, out.getvalue() + (f"[{fn_name} (hidden)] the checks could not finish: "
                                        f"{type(e).__name__}: {e}\n")
