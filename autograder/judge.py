"""The judge: a notebook's hidden checks, run in a process that never runs learner code.

    python -m autograder.judge --socket PATH --chapter 01_autoencoders [--uid U --gid G] < CONFIG

The grader starts one judge per graded notebook, before nbgrader, and writes one JSON line
to its standard input (no file or argument the kernel could read):

    {"secret": "<hex>", "reports": "<grader-only path>",
     "cells": {"<token>": {"cell": "pca_checks", "checks": ["ch01_autoencoders.pca"]}, ...}}

`secret` is this student's and notebook's grading secret (seals.student_secret): the
hidden inputs are drawn from it (`hidden.hidden_seed`); without one the judge refuses to
start. `cells` names, per one-time token, the graded test cell whose hidden block holds it
and the checks (`verdict_key`) that block asks for (seals.add_seals).

The judge imports the chapter's hidden checks and the reference solutions (the kernel never
does), listens on a Unix socket only the slot's sandbox user may connect to, and prints
`ready`. Each hidden test block connects (`autograder.kernel_side.judged`), sends its cell's
token and names its check. The judge accepts a request only from the slot's user
(SO_PEERCRED), with a known token, for a check of that token's cell that was not judged
before; then it runs the check here, calling the learner's objects over the connection and
comparing what comes back (plain numbers and arrays) with the reference. The first verdict
of a check is final. The kernel gets one neutral line (passed; or failed, the details in
the feedback); the full report stays here. Any other request is refused and recorded as
evidence of tampering.

When its standard input closes (the grader is done with the notebook) it writes
`{"verdicts": ..., "reports": [{"cell", "check", "passed", "report"}], "evidence": [...]}`
to the `reports` file (mode 0600), prints the verdicts as one JSON line,
`{"NN_topic.check": true|false}`, and exits. The grader gives a graded cell its points
only if every check named in its hidden block passed here, puts the reports into the
cell's feedback, and sets a notebook with evidence to `tampered` (gradebook.enforce_verdict).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from autograder import confine, forked, hidden, integrity
from autograder.build import REPO, tool_env
from autograder.checknames import NAME
from autograder.checks_runner import run_check_hinted
from autograder.remote import Kernel, RemoteObject
from autograder.wire import Channel, RemoteGone, WireError, decode

START_TIMEOUT = 120.0  # seconds a forked judge has to listen
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

    def keep(self, cell: str, key: str, passed: bool, report: str, hint: str | None = None) -> None:
        with self.lock:
            self.verdicts[key] = passed
            self.reports.append({"cell": cell, "check": key, "passed": passed, "report": report[-MAX_REPORT:],
                                 "hint": hint[:1000] if hint else None})

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


def serve(path: str, chapter: str, config: Config, uid: int = -1, gid: int = -1,
          announce=lambda: print("ready", flush=True), until_done=lambda: sys.stdin.read()) -> None:
    """Answer check requests on the socket `path` until `until_done()` returns (standard
    input closed: the grader wants the verdicts), then write the record and exit.
    `announce()` tells the grader the socket is listening."""
    os.environ[hidden.SECRET_ENV] = config.secret   # read by hidden.hidden_seed, in this process only
    os.environ[hidden.SECRET_REQUIRED_ENV] = "1"    # and never the dev secret instead
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
            until_done()
            record.write()
        finally:  # never outlive the grader, even if it can no longer read the verdicts
            os._exit(0)

    threading.Thread(target=finish, daemon=True).start()
    announce()
    while True:
        conn, _ = srv.accept()
        conn.settimeout(CALL_TIMEOUT)
        with conn:
            answer(conn, chapter, record, allowed)


def answer(conn: socket.socket, chapter: str, record: Record, allowed_uid: int) -> None:
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
            or name.partition(".")[0] != chapter:
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
        passed, report, hint = (False, unreadable, None) if unreadable else run_check_hinted(name, args, kwargs, kernel)
        record.keep(cell, key, passed, report, hint)
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


# ============================================================================= grader side
# The judge's lifecycle, as the grader runs it (in the grader's process, never the judge's):
# start one judge per notebook (`judge_for`), read its record, and put the record into the
# grader's verdict and the autograded notebook (`apply_judge`, `insert_reports`).




@dataclass
class JudgeRun:
    socket: Path | None = None
    verdicts: dict = field(default_factory=dict)   # verdict key -> passed (the first verdict)
    reports: list = field(default_factory=list)    # {cell, check, passed, report}: the full reports
    evidence: list = field(default_factory=list)   # requests the judge refused
    log: str = ""
    started: float = 0.0                           # seconds until it said `ready`


@contextmanager
def judge_for(slot, chapter, env_extra: dict, secret: str):
    """A judge process (`autograder.judge`) for one notebook: started before nbgrader,
    listening on a socket only the slot's user may use, given on its standard input this
    notebook's grading `secret` and the chapter's one-time cell tokens (never in an
    environment, argument or file the kernel could read); on exit its record (verdicts,
    full reports, refused requests) is read from a grader-only file and it is stopped.
    `chapter` is the `seals.Chapter` the notebook is graded against. Yields a JudgeRun
    that fills in on exit."""
    run = JudgeRun()
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="workbook-judge-"))
    os.chmod(folder, 0o711)
    run.socket = folder / "judge.sock"
    record = folder / "record.json"   # written by the judge, mode 0600
    uid, gid = (slot.uid, slot.gid) if slot.confined else (-1, -1)
    env = tool_env(env_extra)
    env.pop("WORKBOOK_HIDDEN_SEED", None)
    config = json.dumps({"secret": secret, "reports": str(record), "cells": chapter.judge_cells})
    args = (str(run.socket), chapter.name, uid, gid)
    ctx = forked.context()
    proc = _ForkedJudge(ctx, args, env, folder) if ctx else _JudgeCommand(args, env)
    try:
        proc.start(config)   # returns once it listens (after its imports, when it is a command)
        run.started = time.perf_counter() - t0
        yield run
    finally:
        try:
            run.log = proc.finish(timeout=60)[-5000:]   # ends its input: the judge writes its record
            found = json.loads(record.read_text())
            run.verdicts = {str(k): v is True for k, v in found["verdicts"].items()}
            run.reports = [r for r in found["reports"] if isinstance(r, dict)]
            run.evidence = [str(e) for e in found["evidence"]]
        except (subprocess.TimeoutExpired, TimeoutError, OSError, ValueError, KeyError, TypeError, AttributeError):
            run.verdicts = {}
        finally:
            proc.kill()
            shutil.rmtree(folder, ignore_errors=True)


class _JudgeCommand:
    """The judge as `python -m autograder.judge`, its configuration on standard input."""

    def __init__(self, args: tuple, env: dict):
        path, chapter, uid, gid = args
        self.proc = subprocess.Popen([sys.executable, "-m", "autograder.judge", "--socket", path,
                                      "--chapter", chapter, "--uid", str(uid), "--gid", str(gid)],
                                     cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     preexec_fn=confine.judge_preexec)

    def start(self, config: str) -> None:
        self.proc.stdin.write(config + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the judge did not start: {self.proc.stderr.read()[-2000:]}")

    def finish(self, timeout: float) -> str:
        return self.proc.communicate(timeout=timeout)[1]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class _ForkedJudge:
    """The judge forked from the run's server (`autograder.forked`: torch, the checks and
    the wire already imported), its configuration and `ready` on a pipe of its own, its
    standard error in a grader-only file of the judge's folder."""

    def __init__(self, ctx, args: tuple, env: dict, folder: Path):
        self.ours, theirs = ctx.Pipe()
        self.log = folder / "stderr.log"
        self.proc = ctx.Process(target=_forked_judge, args=(theirs, str(self.log), args, env), daemon=True)
        self.proc.start()
        theirs.close()

    def start(self, config: str) -> None:
        self.ours.send(config)
        try:
            ready = self.ours.recv() if self.ours.poll(START_TIMEOUT) else None
        except (EOFError, OSError):
            ready = None
        if ready != "ready":
            raise RuntimeError(f"the judge did not start: {self._log()[-2000:]}")

    def finish(self, timeout: float) -> str:
        self.ours.close()   # the judge's until_done returns: it writes its record and exits
        self.proc.join(timeout)
        if self.proc.is_alive():
            raise TimeoutError("the judge did not write its record in time")
        return self._log()

    def _log(self, keep: int = 5000) -> str:
        """The last `keep` bytes of the judge's standard error."""
        with contextlib.suppress(OSError), open(self.log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - keep))
            return f.read().decode(errors="replace")
        return ""

    def kill(self) -> None:
        forked.stop(self.proc)
        self.ours.close()


def _forked_judge(conn, log: str, args: tuple, env: dict) -> None:
    """The judge's `main`, in a process forked from the run's server."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    forked.enter(str(REPO), env, confine.JUDGE_LIMITS, out)
    config = Config.parse(conn.recv())

    def until_done() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                conn.recv()

    path, chapter, uid, gid = args
    serve(path, chapter, config, uid, gid, announce=lambda: conn.send("ready"), until_done=until_done)


def apply_judge(nb: dict, verdict: integrity.Verdict, judge: JudgeRun, judged: dict[str, list[str]]) -> None:
    """The judge's record into the grader's verdict and the autograded notebook: a graded
    cell is judged passed only if every check of its hidden block passed; refused requests
    are evidence of tampering; each check's full report replaces the neutral line its cell
    printed (so it reaches the feedback, after grading, and the diagnoses)."""
    verdict.judged = {gid: all(judge.verdicts.get(k) is True for k in keys) for gid, keys in judged.items()}
    verdict.evidence += [f"judge: {e}" for e in judge.evidence]
    by_cell = {}
    for r in judge.reports:
        by_cell.setdefault(str(r.get("cell")), []).append(r)
    for cell in nb.get("cells", []):
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in by_cell and "outputs" in cell:
            insert_reports(cell, by_cell[gid])


def insert_reports(cell: dict, reports: list[dict]) -> None:
    """Put each judged check's full report where its cell shows the neutral line."""
    from .judge import neutral

    for r in reports:
        key, passed, report = str(r.get("check")), r.get("passed") is True, str(r.get("report", ""))
        line = neutral(key, passed)
        for out in cell["outputs"]:
            if out.get("output_type") == "error" and line in str(out.get("evalue", "")):
                out["evalue"] = str(out["evalue"]).replace(line, report.strip() or line)
                out["traceback"] = [f"{out.get('ename', 'Error')}: {out['evalue']}"]
                break
            if out.get("output_type") == "stream" and line in integrity._join(out.get("text", "")):
                out["text"] = integrity._join(out["text"]).replace(line, report.rstrip("\n") or line, 1)
                break
        else:  # the neutral line is gone (output cleared): the report still reaches the feedback
            cell["outputs"].append({"output_type": "stream", "name": "stdout", "text": report})


if __name__ == "__main__":
    main()
