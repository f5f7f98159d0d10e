"""Grading processes forked from a server that imported the grader's tools once per run.

Each notebook of a class needs three short-lived processes of its own: its judge
(`autograder.judge`), `nbgrader autograde` and `nbgrader generate_feedback`. Started as
`python -m ...`, every one of them imports torch or nbgrader again (several seconds each,
paid per notebook). Here they are forked instead from one multiprocessing *forkserver*
that imported those modules when the run started (`PRELOAD`) and never sees a submission,
a secret or a learner's value: each child starts from the same clean state a fresh
interpreter would have after those imports, and it is still a process of its own, in a
session of its own, under the same resource limits, killed with everything it started.

Where a process may not have children of its own (a daemonic dask worker), where the main
module is a script (multiprocessing would import it again in every child), or with
`WORKBOOK_FORK=0`, `context()` is None and the callers run `python -m ...` as before.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from . import confine

PRELOAD = [
    "autograder.judge", "autograder.checks_runner", "autograder.execute", "autograder.feedback",
    "nbgrader.apps.nbgraderapp", "nbgrader.apps.autogradeapp", "nbgrader.apps.generatefeedbackapp",
    "nbgrader.converters.autograde", "nbgrader.converters.generate_feedback", "nbconvert.exporters.html",
]
_lock = threading.Lock()
_ctx: list = []


def context():
    """The run's forkserver context (None: start `python -m ...` processes instead)."""
    import multiprocessing

    if multiprocessing.current_process().daemon or os.environ.get("WORKBOOK_FORK") == "0":
        return None
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if getattr(main, "__file__", None) and not (spec and spec.name.endswith("__main__")):
        return None
    with _lock:
        if not _ctx:
            try:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(PRELOAD)
            except ValueError:
                ctx = None
            _ctx.append(ctx)
    return _ctx[0]


def enter(cwd: str, env: dict, limits=(), output: int | None = None) -> None:
    """In a forked child, before it does its job: a session of its own (so the whole
    group can be killed), `limits` (names in confine.LIMITS), standard input from
    /dev/null, standard output and error to `output` (or /dev/null), `cwd` and exactly `env`."""
    os.setsid()
    confine.set_limits(limits)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull if output is None else output, 1)
    os.dup2(devnull if output is None else output, 2)
    sys.stdin = open(0, closefd=False)   # noqa: SIM115 - the process's own descriptors
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)


def run(ctx, target, args: tuple, cwd: Path, timeout: float) -> tuple[int | None, str]:
    """`target(output_fd, *args)` in a forked child of its own session; what it writes to
    `output_fd` is read as it comes, capped (`confine.CappedReader`). As
    `confine.run_confined`: returns (exit code, or None on timeout; output), and kills the
    child's whole group and every process left under `cwd` when it ends."""
    read_end, write_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(target, write_end, args), daemon=True)
    proc.start()
    write_end.close()
    pipe = os.fdopen(os.dup(read_end.fileno()), "rb")
    read_end.close()
    reader = confine.CappedReader(pipe)
    proc.join(timeout)
    code = None if proc.is_alive() else proc.exitcode
    stop(proc)
    confine.kill_processes_under(cwd)
    out = reader.text()
    pipe.close()
    return code, out


def stop(proc) -> None:
    """SIGKILL a forked child's whole session (the child itself too, should it not have
    reached `enter` yet), and reap it."""
    with contextlib.suppress(ProcessLookupError, TypeError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.is_alive():
        proc.kill()
    proc.join()


def _child(target, write_end, args: tuple) -> None:
    target(write_end.fileno(), *args)
