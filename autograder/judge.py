"""The judge: a notebook's hidden checks, run in a process that never runs learner code.

    python -m autograder.judge --socket PATH --chapter 01_autoencoders [--uid U --gid G] < CONFIG

The grader starts one judge per graded notebook, before nbgrader, and writes one JSON line
to its standard input (no file or argument the kernel could read):

    {"secret": "<hex>", "reports": "<grader-only path>",
     "cells": {"<token>": {"cell": "pca_checks", "checks": ["ch01_autoencoders.pca"]}, ...}}

`secret` is this student's and notebook's grading secret (grade.student_secret): the
hidden inputs are drawn from it (`mutants.hidden_seed`); without one the judge refuses to
start. `cells` names, per one-time token, the graded test cell whose hidden block holds it
and the checks (`verdict_key`) that block asks for (grade.add_seals).

The judge imports the chapter's hidden checks and the reference solutions (the kernel never
does), listens on a Unix socket only the slot's sandbox user may connect to, and prints
`ready`. Each hidden test block connects (`autograder.kernel_side.judged`), sends its cell's
token and names its check. The judge accepts a request only from the slot's user
(SO_PEERCRED), with a known token, for a check of that token's cell that was not judged
before; then it runs the check here (`checks_runner.run_check`), calling the learner's
objects over the connection and comparing what comes back (plain numbers and arrays) with
the reference. The first verdict of a check is final. The kernel gets one neutral line
(passed; or failed, the details in the feedback); the full report stays here. Any other
request is refused and recorded as evidence of tampering.

When its standard input closes (the grader is done with the notebook) it writes
`{"verdicts": ..., "reports": [{"cell", "check", "passed", "report"}], "evidence": [...]}`
to the `reports` file (mode 0600), prints the verdicts as one JSON line,
`{"chNN_topic.check": true|false}`, and exits. The grader gives a graded cell its points
only if every check named in its hidden block passed here, puts the reports into the
cell's feedback, and sets a notebook with evidence to `tampered` (grade.enforce_verdict).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field

from autograder import mutants
from autograder.checknames import NAME
from autograder.checks_runner import run_check
from autograder.remote import Kernel, RemoteObject
from autograder.wire import Channel, RemoteGone, WireError, decode

CALL_TIMEOUT = 900.0   # seconds one answer of the kernel may take (the grader's limits come first)


def verdict_key(name: str, args: tuple) -> str:
    """What a verdict is kept under: the check, and its first argument when that is a
    string (the quiz checks name the question: `quiz:answer_ae_loss`)."""
    return f"{name}:{args[0]}" if args and type(args[0]) is str else name


MAX_REPORT = 200_000   # characters of one check's report kept for the feedback


def label(key: str) -> str:
    """How the learner reads a check's name: `pca`, `quiz answer_ae_loss`."""
    return key.partition(".")[2].replace(":", " ")


def neutral(key: str, passed: bool) -> str:
    """All the kernel learns of a judged check."""
    return (f"[{label(key)} (hidden)] passed" if passed
            else f"[{label(key)} (hidden)] failed: the details are in your feedback after grading")


def refusal(key: str, why: str) -> str:
    return f"[{label(key)} (hidden)] refused by the grader: {why}"


@dataclass
class Config:
    """What the grader tells the judge on its standard input (see the module docstring)."""
    secret: str
    reports: str
    cells: dict[str, dict] = field(default_factory=dict)   # token -> {"cell": gid, "checks": [keys]}

    @classmethod
    def parse(cls, line: str) -> "Config":
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"autograder.judge: the configuration line is not JSON ({e})") from None
        if type(d) is not dict:
            raise SystemExit("autograder.judge: the configuration line must be a JSON object")
        secret, reports, cells = d.get("secret"), d.get("reports"), d.get("cells", {})
        if type(secret) is not str or len(secret) < 32:
            raise SystemExit("autograder.judge: no grading secret (\"secret\", at least 32 hex digits) "
                             "in the configuration: refusing to start")
        if type(reports) is not str or not reports:
            raise SystemExit("autograder.judge: no \"reports\" path in the configuration")
        if type(cells) is not dict or not all(
                type(t) is str and type(c) is dict and type(c.get("cell")) is str
                and type(c.get("checks")) is list for t, c in cells.items()):
            raise SystemExit("autograder.judge: \"cells\" must map tokens to {cell, checks}")
        return cls(secret, reports, cells)


class Record:
    """The judge's record for one notebook: verdicts (first one final), the full reports
    for the feedback, and evidence of tampering."""

    def __init__(self, config: Config):
        self.config = config
        self.verdicts: dict[str, bool] = {}
        self.reports: list[dict] = []
        self.evidence: list[str] = []
        self.lock = threading.Lock()

    def admit(self, token, key: str) -> tuple[str | None, str | None]:
        """(cell, None) when the request may be judged; else (None, why not), recorded."""
        cell = self.config.cells.get(token) if type(token) is str else None
        if cell is None:
            why = "it did not come from its graded test cell (no valid cell token)"
        elif key not in cell["checks"]:
            why = f"it is not a check of the test cell {cell['cell']} whose token it carries"
        elif key in self.verdicts:
            why = "it was judged already (each check is judged once)"
        else:
            return cell["cell"], None
        self.refuse(f"{key} refused: {why}")
        return None, why

    def refuse(self, what: str) -> None:
        with self.lock:
            self.evidence.append(what)

    def keep(self, cell: str, key: str, passed: bool, report: str) -> None:
        with self.lock:
            self.verdicts[key] = passed
            self.reports.append({"cell": cell, "check": key, "passed": passed, "report": report[-MAX_REPORT:]})

    def write(self) -> None:
        """The grader-only record, then the verdicts line on stdout."""
        with self.lock:
            fd = os.open(self.config.reports, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"verdicts": self.verdicts, "reports": self.reports, "evidence": self.evidence}, f)
            sys.stdout.write(json.dumps(self.verdicts) + "\n")
            sys.stdout.flush()


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED)."""
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


def serve(path: str, chapter: str, config: Config, uid: int = -1, gid: int = -1) -> None:
    os.environ[mutants.SECRET_ENV] = config.secret   # read by mutants.hidden_seed, in this process only
    os.environ[mutants.SECRET_REQUIRED_ENV] = "1"    # and never the dev secret instead
    record = Record(config)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    if uid >= 0:
        os.chown(path, uid, gid)
    srv.listen(8)
    allowed = uid if uid >= 0 else os.getuid()

    def finish() -> None:  # stdin closed: the grader wants the verdicts (or is gone)
        try:
            sys.stdin.read()
            record.write()
        finally:  # never outlive the grader, even if it can no longer read the verdicts
            os._exit(0)

    threading.Thread(target=finish, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(CALL_TIMEOUT)
        with conn:
            answer(conn, f"ch{chapter}", record, allowed)


def answer(conn: socket.socket, module: str, record: Record, allowed_uid: int) -> None:
    """One connection: a check request, admitted or refused, and its neutral reply."""
    ch = Channel(conn)
    if (who := peer_uid(conn)) != allowed_uid:
        record.refuse(f"a connection from user {who}, not the kernel's user {allowed_uid}")
        return
    try:
        msg, bufs = ch.recv()
    except (WireError, RemoteGone, OSError):
        return
    name = msg.get("name")
    if msg.get("op") != "check" or type(name) is not str or not NAME.fullmatch(name) \
            or name.partition(".")[0] != module:
        return
    kernel = Kernel(ch)
    try:
        args = decode(msg.get("args"), bufs, lambda tag: RemoteObject(kernel, tag))
        kwargs = decode(msg.get("kwargs"), bufs, lambda tag: RemoteObject(kernel, tag))
        if type(args) is not tuple or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            raise WireError("arguments must be a tuple and a dict")
    except WireError as e:
        args, kwargs, unreadable = (), {}, f"could not read the learner's values: {e}\n"
    else:
        unreadable = None
    key = verdict_key(name, args)
    cell, why = record.admit(msg.get("token"), key)
    if cell is None:
        reply = {"op": "done", "passed": False, "report": refusal(key, why)}
    else:
        passed, report = (False, unreadable) if unreadable else run_check(name, args, kwargs, kernel)
        record.keep(cell, key, passed, report)
        reply = {"op": "done", "passed": passed, "report": neutral(key, passed)}
    with contextlib.suppress(OSError, WireError):
        ch.send(reply, [])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m autograder.judge",
                                description="hidden checks of one notebook; configuration on stdin (one JSON line)")
    p.add_argument("--socket", required=True)
    p.add_argument("--chapter", required=True)
    p.add_argument("--uid", type=int, default=-1)
    p.add_argument("--gid", type=int, default=-1)
    a = p.parse_args(argv)
    config = Config.parse(sys.stdin.readline())
    serve(a.socket, a.chapter, config, a.uid, a.gid)


if __name__ == "__main__":
    main()
