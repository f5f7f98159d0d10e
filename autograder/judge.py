"""The judge: a notebook's hidden checks, run in a process that never runs learner code.

    python -m autograder.judge --socket PATH --chapter 01_autoencoders [--uid U --gid G]

The grader starts one judge per graded notebook, before nbgrader. The judge imports the
chapter's hidden checks and the reference solutions (the kernel never does), listens on a
Unix socket only the slot's sandbox user may connect to, and prints `ready`. Each hidden
test block of the notebook connects once (`autograder.remote.judged`) and names its check;
the judge runs that check here, with inputs drawn from the grading secret (which only the
judge's environment holds), calling the learner's objects over the connection and
comparing what comes back (plain numbers and arrays) with the reference, then sends the
report for the learner to read. It keeps each check's verdict (the last one counts).

When its standard input closes (the grader is done with the notebook) it prints the
verdicts as one JSON line, `{"chNN_topic.check": true|false}`, and exits. The grader gives
a graded cell its points only if every check named in its hidden block passed here.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import socket
import sys
import threading

from autograder import remote
from autograder.remote import NAME, Channel, Kernel, RemoteGone, RemoteObject, WireError, decode

CALL_TIMEOUT = 900.0   # seconds one answer of the kernel may take (the grader's limits come first)


def verdict_key(name: str, args: tuple) -> str:
    """What a verdict is kept under: the check, and its first argument when that is a
    string (the quiz checks name the question: `quiz:answer_ae_loss`)."""
    return f"{name}:{args[0]}" if args and type(args[0]) is str else name


def run_check(name: str, args: tuple, kwargs: dict, kernel: Kernel) -> tuple[bool, str]:
    """(passed, report) of hidden check `name` on the learner's objects behind `kernel`."""
    from workbook.checks import CheckFailed

    module, _, fn_name = name.partition(".")
    try:
        mod = importlib.import_module(f"autograder.hidden.{module}")
    except ImportError:
        return False, f"no hidden checks named {module}\n"
    fn = getattr(mod, fn_name, None)
    if not NAME.fullmatch(name) or not callable(fn) or getattr(fn, "__module__", None) != mod.__name__:
        return False, f"no hidden check {name}\n"
    out = io.StringIO()
    remote._current.append(kernel)
    try:
        with contextlib.redirect_stdout(out):
            fn(*args, **kwargs)
        return True, out.getvalue()
    except CheckFailed as e:
        return False, out.getvalue() + f"{e}\n"
    except RemoteGone:
        return False, out.getvalue() + f"[{fn_name} (hidden)] the kernel stopped answering (interrupted or crashed)\n"
    except (WireError, OSError) as e:
        return False, out.getvalue() + f"[{fn_name} (hidden)] could not exchange values with the kernel: {e}\n"
    except Exception as e:  # noqa: BLE001 - e.g. a learner's value of an unexpected kind
        return False, out.getvalue() + (f"[{fn_name} (hidden)] the checks could not finish: "
                                        f"{type(e).__name__}: {e}\n")
    finally:
        remote._current.pop()


def serve(path: str, chapter: str, uid: int = -1, gid: int = -1) -> None:
    verdicts: dict[str, bool] = {}
    lock = threading.Lock()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    if uid >= 0:
        os.chown(path, uid, gid)
    srv.listen(8)

    def finish() -> None:  # stdin closed: the grader wants the verdicts
        sys.stdin.read()
        with lock:
            sys.stdout.write(json.dumps(verdicts) + "\n")
            sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=finish, daemon=True).start()
    print("ready", flush=True)
    module = f"ch{chapter}"
    while True:
        conn, _ = srv.accept()
        conn.settimeout(CALL_TIMEOUT)
        with conn:
            ch = Channel(conn)
            try:
                msg, bufs = ch.recv()
            except (WireError, RemoteGone, OSError):
                continue
            name, args = msg.get("name"), ()
            if msg.get("op") != "check" or type(name) is not str or not NAME.fullmatch(name) \
                    or name.partition(".")[0] != module:
                continue
            kernel = Kernel(ch)
            try:
                args = decode(msg.get("args"), bufs, lambda tag: RemoteObject(kernel, tag))
                kwargs = decode(msg.get("kwargs"), bufs, lambda tag: RemoteObject(kernel, tag))
                if type(args) is not tuple or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
                    raise WireError("arguments must be a tuple and a dict")
            except WireError as e:
                passed, report = False, f"could not read the learner's values: {e}\n"
            else:
                passed, report = run_check(name, args, kwargs, kernel)
            with lock:
                verdicts[verdict_key(name, args if isinstance(args, tuple) else ())] = passed
            with contextlib.suppress(OSError, WireError):
                ch.send({"op": "done", "passed": passed, "report": report[-200_000:]}, [])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m autograder.judge")
    p.add_argument("--socket", required=True)
    p.add_argument("--chapter", required=True)
    p.add_argument("--uid", type=int, default=-1)
    p.add_argument("--gid", type=int, default=-1)
    a = p.parse_args(argv)
    serve(a.socket, a.chapter, a.uid, a.gid)


if __name__ == "__main__":
    main()
