"""Limits on the processes that grade a submission, and their end.

The one place for both:

- resource limits (`LIMITS`, soft = hard): the kernel gets all of them (`kernel_limits`,
  in the sandbox launcher), the judge the ones a value it is handed could exhaust
  (`judge_preexec`), nbgrader and everything it starts the address-space and file-size
  limits and no core dumps (`nbgrader_preexec`);
- killing what a submission left running: every process of a sandbox uid
  (`kill_user_processes`) or with its working directory inside a folder
  (`kill_processes_under`), in rounds until none is left;
- `run_confined`: a grading command in its own process group under those limits, killed
  with everything it started when it ends or runs out of time, its output read as it comes
  and capped (`CappedReader`).
"""
from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from pathlib import Path

MEMORY_LIMIT = 8 * 1024**3       # address space of nbgrader, the kernel it starts and the judge
FILE_LIMIT = 256 * 1024**2       # largest file the submission may write
LIMITS = {  # resource: soft = hard limit for the kernel (and a part of it for the judge and nbgrader)
    "RLIMIT_CPU": 1200,               # CPU seconds (the wall-time limit usually comes first)
    "RLIMIT_AS": MEMORY_LIMIT,        # address space
    "RLIMIT_FSIZE": FILE_LIMIT,       # largest file it may write
    "RLIMIT_NPROC": 256,              # processes and threads of its user
    "RLIMIT_NOFILE": 1024,
    "RLIMIT_CORE": 0,
}
JUDGE_LIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")
NBGRADER_LIMITS = ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CORE")


def set_limits(names=tuple(LIMITS)) -> None:
    """Set the `names` limits of LIMITS (soft = hard) on this process."""
    for name in names:
        resource.setrlimit(getattr(resource, name), (LIMITS[name], LIMITS[name]))


def kernel_limits() -> None:
    """In the kernel process, before it runs learner code: every limit of LIMITS."""
    set_limits(tuple(LIMITS))


def judge_preexec() -> None:
    """Runs in the judge's process before exec: the kernel's resource limits (address
    space, CPU time, file size, open files, no core dumps), so a learner's function that
    hands the judge a huge value cannot grow it past what the kernel itself may use."""
    set_limits(JUDGE_LIMITS)


def nbgrader_preexec() -> None:
    """Runs in the child before exec: resource limits nbgrader and the kernel inherit."""
    set_limits(NBGRADER_LIMITS)


# ----------------------------------------------------------------------------- killing

def processes_of(uids: set[int]) -> list:
    """Every process whose real or effective uid is one of `uids`."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "uids"]):
        try:
            if {p.info["uids"].real, p.info["uids"].effective} & uids:
                found.append(p)
        except (psutil.Error, OSError, AttributeError, TypeError):
            pass
    return found


def processes_under(folder: Path) -> list:
    """Every process (but this one) whose working directory is `folder` or inside it."""
    import psutil

    root = str(Path(folder).resolve())
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            cwd = p.cwd()
            if p.pid != os.getpid() and (cwd == root or cwd.startswith(root + os.sep)):
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def _kill_until_gone(find) -> None:
    """Kill every process `find()` returns; again, up to three rounds 0.2 s apart, until it
    finds none (a process started while the others were killed is killed too)."""
    import psutil

    for _ in range(3):
        found = find()
        for p in found:
            try:
                p.kill()
            except (psutil.Error, OSError):
                pass
        if not found:
            return
        time.sleep(0.2)


def kill_user_processes(uid: int) -> None:
    """Kill every process running as `uid` (never the grader's own user)."""
    if uid in (0, os.getuid()):
        return
    _kill_until_gone(lambda: processes_of({uid}))


def kill_processes_under(folder: Path) -> None:
    """Kill every process whose working directory is inside `folder` (the sandbox slot
    also kills every process of its user)."""
    _kill_until_gone(lambda: processes_under(folder))


# ----------------------------------------------------------------------------- a confined command

OUTPUT_KEEP = 100_000   # bytes kept of the start and of the end of a grading command's output


class CappedReader:
    """Reads a pipe to its end in a thread, keeping the first and the last OUTPUT_KEEP
    bytes and counting what it drops, so a command that prints gigabytes costs no memory."""

    def __init__(self, pipe):
        self.head, self.tail, self.dropped = bytearray(), bytearray(), 0
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe) -> None:
        while chunk := pipe.read1(1 << 16):
            room = OUTPUT_KEEP - len(self.head)
            self.head += chunk[:max(room, 0)]
            self.tail += chunk[max(room, 0):]
            if len(self.tail) > OUTPUT_KEEP:
                self.dropped += len(self.tail) - OUTPUT_KEEP
                del self.tail[:len(self.tail) - OUTPUT_KEEP]

    def text(self, wait: float = 10.0) -> str:
        self.thread.join(wait)
        note = f"\n[... {self.dropped:,} bytes of output discarded by the grader ...]\n" if self.dropped else ""
        return (bytes(self.head).decode(errors="replace") + note + bytes(self.tail).decode(errors="replace"))


def run_confined(cmd: list[str], cwd: Path, env: dict, timeout: float) -> tuple[int | None, str]:
    """Run a grading command in its own process group with resource limits; on timeout
    (returns code None) or completion, kill the whole group, so a submission's kernel or
    any process it started cannot outlive its grading (the sandbox slot also kills its
    control group). Its output is read as it comes, capped (`CappedReader`)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=nbgrader_preexec)
    reader = CappedReader(proc.stdout)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kill_processes_under(cwd)
    out = reader.text()
    proc.stdout.close()
    return code, out
