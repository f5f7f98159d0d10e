"""Where a submission's code runs while it is graded.

nbgrader (which writes the gradebook) runs as the grader; only the kernel, which runs the
learner's code, is confined. Its kernelspec (`workbook-sandbox`) starts this module's
launcher instead of ipykernel; the launcher, still privileged, then

1. reads the run's seal key from a file only the grader can read, and deletes the file;
2. imports the visible checks and the wire to the judge, so the kernel needs no read
   access to them (the hidden checks are never imported here: they run in the judge,
   `autograder.judge`, a process that never runs learner code);
3. in a mount namespace of its own, covers the grader-only folders (solutions, hidden
   checks, instructor notebooks, mistakes, .git) with empty read-only file systems;
4. sets resource limits (CPU time, address space, file size, processes, open files);
5. becomes an unprivileged user of its own slot (`wbgrade<k>`, created with useradd when
   missing; no new privileges), with a private scratch folder as HOME, TMPDIR and cwd;
6. starts ipykernel, then arms the integrity seal (`autograder.integrity.arm`).

The whole `nbgrader autograde` runs in a network namespace with only loopback up (the
kernel talks to nbgrader over 127.0.0.1), so a submission has no network.

Each step is used only where it works here (`capabilities()`); without root the kernel
runs as the grader's own user with the same limits and seal, without a private network
or hidden folders. `WORKBOOK_SANDBOX=off` forces that fallback. docs/GRADING.md says what
holds in each case.

    python -m autograder.sandbox -f CONNECTION_FILE     (the kernel launcher)
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_NAME = "workbook-sandbox"
USER_PREFIX = "wbgrade"
MAX_SLOTS = 32
HIDDEN_FROM_KERNEL = ["solutions", "autograder/hidden", "autograder/source", "autograder/mistakes",
                      "autograder/notebooks", ".git", "build"]
LIMITS = {  # resource: soft = hard limit for the kernel
    "RLIMIT_CPU": 1200,               # CPU seconds (the wall-time limit usually comes first)
    "RLIMIT_AS": 8 * 1024**3,         # address space
    "RLIMIT_FSIZE": 256 * 1024**2,    # largest file it may write
    "RLIMIT_NPROC": 256,              # processes and threads of its user
    "RLIMIT_NOFILE": 1024,
    "RLIMIT_CORE": 0,
}


@dataclass(frozen=True)
class Capabilities:
    user: bool      # kernels run as an unprivileged user of their own
    network: bool   # `unshare --net` works: no network for the submission
    mounts: bool    # mount namespaces work: grader-only folders hidden from the kernel

    def describe(self) -> str:
        on = [n for n, ok in (("own user", self.user), ("no network", self.network),
                              ("grader files hidden", self.mounts)) if ok]
        return ", ".join(on) or "fallback: same user, network and files as the grader"


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=None)
def capabilities() -> Capabilities:
    """What confinement this machine allows (WORKBOOK_SANDBOX=off: none)."""
    if os.environ.get("WORKBOOK_SANDBOX", "auto") == "off":
        return Capabilities(False, False, False)
    root = os.geteuid() == 0
    user = root and shutil.which("useradd") is not None
    network = shutil.which("unshare") is not None and shutil.which("ip") is not None and _works(
        ["unshare", "--net", "--", "ip", "link", "set", "lo", "up"])
    mounts = root and _works(["unshare", "--mount", "--", "sh", "-c",
                              "mount -t tmpfs -o size=4k none /mnt || mount -t tmpfs -o size=4k none /tmp"])
    user = user and (mounts or _blocked_ancestor(Path(sys.base_prefix).resolve()) is None)
    return Capabilities(user, network, mounts)


# ----------------------------------------------------------------------------- grader side

def ensure_user(k: int) -> tuple[int, int]:
    """uid, gid of the slot's unprivileged user, created when missing."""
    name = f"{USER_PREFIX}{k}"
    for attempt in range(10):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                                "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                               capture_output=True, text=True)
            if r.returncode not in (0, 9):  # 9: created meanwhile by another process
                time.sleep(0.2 * (attempt + 1))  # /etc/passwd locked by a concurrent useradd
    raise RuntimeError(f"could not create the sandbox user {name}")


def kill_user_processes(uid: int) -> None:
    """Kill every process running as `uid` (never the grader's own user)."""
    import psutil

    if uid in (0, os.getuid()):
        return
    for _ in range(3):
        found = False
        for p in psutil.process_iter(["pid", "uids"]):
            try:
                if uid in (p.info["uids"].real, p.info["uids"].effective):
                    p.kill()
                    found = True
            except (psutil.Error, OSError, AttributeError):
                pass
        if not found:
            return
        time.sleep(0.2)


@dataclass(frozen=True)
class Slot:
    index: int
    uid: int
    gid: int
    scratch: Path       # the kernel's HOME, TMPDIR and working directory
    confined: bool      # uid is a sandbox user of its own


def _sandbox_root() -> Path:
    root = Path(tempfile.gettempdir()) / f"workbook-sandbox-{os.geteuid()}"
    root.mkdir(mode=0o711, exist_ok=True)
    os.chmod(root, 0o711)
    return root


@contextmanager
def slot():
    """A free slot (file lock, so processes on one machine share the pool): its user,
    and a fresh scratch folder only that user can enter. On exit every process of the
    slot's user is killed and the scratch folder removed."""
    caps = capabilities()
    base = _sandbox_root()
    for k in range(MAX_SLOTS):
        lock = open(base / f"slot{k}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        uid, gid = ensure_user(k) if caps.user else (os.getuid(), os.getgid())
        scratch = base / f"slot{k}"
        try:
            if caps.user:
                kill_user_processes(uid)
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(mode=0o700)
            os.chown(scratch, uid, gid)
            yield Slot(k, uid, gid, scratch, caps.user)
        finally:
            if caps.user:
                kill_user_processes(uid)
            shutil.rmtree(scratch, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
        return
    raise RuntimeError(f"all {MAX_SLOTS} sandbox slots are busy")


def write_kernelspec(folder: Path) -> Path:
    """A Jupyter data folder (for JUPYTER_PATH) holding the `workbook-sandbox` kernelspec."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "autograder.sandbox", "-f", "{connection_file}"],
        "display_name": "Python 3 (workbook grading sandbox)", "language": "python",
        "metadata": {"debugger": False}}))
    return folder


def kernel_env(s: Slot, key_file: Path, context: str, jupyter_path: Path, judge: Path) -> dict:
    """Environment for nbgrader: how to find the sandbox kernelspec and what its launcher needs,
    including the `judge` socket through which the hidden checks run (the kernel never
    imports them, nor the solutions they use)."""
    caps = capabilities()
    hide = [str(REPO / p) for p in HIDDEN_FROM_KERNEL if (REPO / p).is_dir()] if caps.mounts else []
    return {"JUPYTER_PATH": str(jupyter_path),
            "WORKBOOK_SANDBOX_UID": str(s.uid if s.confined else -1),
            "WORKBOOK_SANDBOX_GID": str(s.gid if s.confined else -1),
            "WORKBOOK_SANDBOX_DIR": str(s.scratch),
            "WORKBOOK_SANDBOX_KEY": str(key_file),
            "WORKBOOK_SANDBOX_CONTEXT": context,
            "WORKBOOK_SANDBOX_JUDGE": str(judge),
            "WORKBOOK_SANDBOX_HIDE": os.pathsep.join(hide)}


def wrap_command(cmd: list[str]) -> list[str]:
    """`cmd` in a network namespace of its own with only loopback, where that works."""
    if not capabilities().network:
        return cmd
    return ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]


# ----------------------------------------------------------------------------- kernel side

def _preload() -> None:
    """Import what the test cells use while the files are still readable. The chapter's
    hidden checks are not among them: they run in the judge (`autograder.judge`)."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (its import rebinds torch.manual_seed: before the snapshot)
    import torch.optim  # noqa: F401

    import workbook.checks  # noqa: F401
    from autograder import integrity, remote  # noqa: F401


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 8192, 16384, 1 << 18
CLONE_NEWNS = 0x00020000


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = (lambda x: x.encode() if x is not None else None)
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target} failed")


def _blocked_ancestor(path: Path) -> Path | None:
    """The highest folder above `path` that other users cannot enter (e.g. /root, 0700)."""
    for parent in reversed(path.parents):
        if not parent.stat().st_mode & 0o001:
            return parent
    return None


def _expose(libc, path: Path, stage: Path) -> None:
    """Make `path` reachable under its own name although a folder above it is closed to
    other users: cover that folder with an empty tmpfs and move `path` back into it."""
    closed = _blocked_ancestor(path)
    if closed is None:
        return
    stage.mkdir(parents=True, exist_ok=True)
    _mount(libc, str(path), str(stage), None, MS_BIND | MS_REC, None)
    _mount(libc, "tmpfs", str(closed), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    path.mkdir(parents=True, exist_ok=True)
    _mount(libc, str(stage), str(path), None, MS_MOVE, None)


def _mount_namespace(hide: list[str], stage: Path) -> None:
    """In a mount namespace of our own: keep the interpreter reachable by the sandbox user,
    and cover each grader-only folder with an empty read-only tmpfs."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    _mount(libc, "none", "/", None, MS_REC | MS_PRIVATE, None)
    for i, needed in enumerate(sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), REPO})):
        _expose(libc, needed, stage / f"{i}")
    for p in hide:
        _mount(libc, "tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")


def _limit() -> None:
    for name, value in LIMITS.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _drop(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError("could not drop privileges")
    ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binaries


def kernel_main(argv: list[str]) -> None:
    sys.dont_write_bytecode = True
    env = os.environ
    conn = Path(argv[argv.index("-f") + 1])
    uid, gid = int(env.pop("WORKBOOK_SANDBOX_UID", "-1")), int(env.pop("WORKBOOK_SANDBOX_GID", "-1"))
    scratch = Path(env.pop("WORKBOOK_SANDBOX_DIR"))
    key_file = Path(env.pop("WORKBOOK_SANDBOX_KEY"))
    context = env.pop("WORKBOOK_SANDBOX_CONTEXT")
    hide = [p for p in env.pop("WORKBOOK_SANDBOX_HIDE", "").split(os.pathsep) if p]
    judge = env.pop("WORKBOOK_SANDBOX_JUDGE", "")
    key = key_file.read_bytes()
    key_file.unlink()
    for sub in ("tmp", ".config/matplotlib", ".ipython", "artifacts"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(scratch), TMPDIR=str(scratch / "tmp"), MPLCONFIGDIR=str(scratch / ".config/matplotlib"),
               IPYTHONDIR=str(scratch / ".ipython"), WORKBOOK_ARTIFACTS=str(scratch / "artifacts"))
    env.pop("WORKBOOK_RESULTS", None)
    tempfile.tempdir = None
    own_conn = scratch / "connection.json"
    shutil.copy(conn, own_conn)
    if uid >= 0:
        for dirpath, dirnames, filenames in os.walk(scratch):
            for name in [dirpath, *[os.path.join(dirpath, f) for f in dirnames + filenames]]:
                os.chown(name, uid, gid)
    _preload()
    from autograder import remote

    remote.set_judge_path(judge or None)
    if hide:
        _mount_namespace(hide, scratch / ".stage")
    _limit()
    if uid >= 0:
        _drop(uid, gid)
    os.chdir(scratch)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from ipykernel.kernelapp import IPKernelApp

    from autograder import integrity

    app = IPKernelApp.instance()
    app.initialize(["-f", str(own_conn)])
    integrity.arm(key, context, (), shell=app.shell)
    del key
    app.start()


if __name__ == "__main__":
    kernel_main(sys.argv[1:])
