"""Where a submission's code runs while it is graded.

nbgrader (which writes the gradebook) runs as the grader; only the kernel, which runs the
learner's code, is confined. Its kernelspec (`workbook-sandbox`) starts this module's
launcher instead of ipykernel; the launcher, still privileged, then

1. reads the run's seal key from a file only the grader can read, and deletes the file;
2. imports the visible checks and the wire to the judge, so the kernel needs no read
   access to them (the hidden checks are never imported here: they run in the judge,
   `autograder.judge`, a process that never runs learner code);
3. joins the notebook's control group (`autograder.cgroups`: CPU share, memory, pids;
   the grader kills everything in it at the end);
4. builds the kernel's view of the files in a mount namespace of its own, in one go
   (`_mount_view`): private size-limited tmpfs on /tmp, /var/tmp, /dev/shm, the scratch
   folder and the usual data roots (/home, /root, /srv, /mnt, /media), the interpreter,
   the repository and the judge's socket put back at their own paths, the grader-only
   folders (solutions, hidden checks, instructor notebooks, mistakes, .git) covered with
   empty read-only file systems;
5. forks an init in a PID namespace of its own (`_init`: it mounts a /proc that shows only
   the kernel's processes, reaps orphans, and when the kernel ends, everything in the
   namespace ends); the launcher stays outside as the only reader of the kernel's own
   stdout/stderr (a pipe it forwards up to `SINK_KEEP` bytes of, discarding the rest);
6. in the kernel process: sets resource limits (`autograder.confine`), becomes a uid of its own for this
   notebook alone (`allocate_uid`, no passwd entry needed; no new privileges), HOME,
   TMPDIR, IPYTHONDIR and cwd in the fresh scratch folder, starts ipykernel and arms the
   integrity seal (`autograder.integrity.arm`).

The whole `nbgrader autograde` runs in a network namespace with only loopback up (the
kernel talks to nbgrader over 127.0.0.1), so a submission has no network.

Each step is used only where it works here (`capabilities()`); without root the kernel
runs as the grader's own user with the same limits and seal, without a private network,
files, PID namespace or control group. `WORKBOOK_SANDBOX=off` forces that fallback.
docs/GRADING.md says what holds in each case.

    python -m autograder.sandbox -f CONNECTION_FILE     (the kernel launcher)
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import confine
from .cgroups import Cgroup, Limits

REPO = Path(__file__).resolve().parent.parent
KERNEL_NAME = "workbook-sandbox"
MAX_SLOTS = 32
UID_BASE, UID_COUNT = 3_100_000, 100_000   # a fresh uid per notebook, from this range
HIDDEN_FROM_KERNEL = ["solutions", "autograder/chapters", "autograder/hidden", ".git", "build"]
PRIVATE_ROOTS = ["/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/srv", "/mnt", "/media"]
TMPFS_SIZE = {"/tmp": "512m", "/var/tmp": "64m", "/dev/shm": "256m"}   # others: 1m, empty
SCRATCH_SIZE = "512m"
GROUP_LIMITS = Limits(memory=confine.MEMORY_LIMIT, pids=512)   # the whole notebook (all its processes)
SINK_KEEP = 64 * 1024     # bytes of the kernel's own stdout/stderr passed on to nbgrader


@dataclass(frozen=True)
class Capabilities:
    user: bool      # kernels run as an unprivileged uid of their own (one per notebook)
    network: bool   # `unshare --net` works: no network for the submission
    mounts: bool    # mount namespaces work: private /tmp, grader-only folders hidden
    pids: bool = False      # PID namespaces work: the kernel's init ends all it started
    cgroups: str = ""       # "v1" or "v2": CPU share, memory and pids limits, kill by group

    def describe(self) -> str:
        on = [n for n, ok in (("own user", self.user), ("no network", self.network),
                              ("private files", self.mounts), ("own PID namespace", self.pids),
                              (f"cgroup {self.cgroups}", self.cgroups)) if ok]
        return ", ".join(on) or "fallback: same user, network and files as the grader"


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _cgroups_work() -> str:
    try:
        group = Cgroup.create(f"workbook-probe-{os.getpid()}", GROUP_LIMITS)
    except (OSError, LookupError, StopIteration, ValueError):
        return ""
    group.remove()
    return group.version


@lru_cache(maxsize=None)
def capabilities() -> Capabilities:
    """What confinement this machine allows (WORKBOOK_SANDBOX=off: none)."""
    if os.environ.get("WORKBOOK_SANDBOX", "auto") == "off":
        return Capabilities(False, False, False)
    root = os.geteuid() == 0
    network = shutil.which("unshare") is not None and shutil.which("ip") is not None and _works(
        ["unshare", "--net", "--", "ip", "link", "set", "lo", "up"])
    mounts = root and _works(["unshare", "--mount", "--", "sh", "-c",
                              "mount -t tmpfs -o size=4k none /mnt || mount -t tmpfs -o size=4k none /tmp"])
    pids = root and mounts and _works(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "true"])
    user = root and (mounts or _blocked_ancestor(Path(sys.base_prefix).resolve()) is None)
    return Capabilities(user, network, mounts, pids, _cgroups_work() if root else "")


# ----------------------------------------------------------------------------- grader side

def allocate_uid(base: Path) -> int:
    """A uid no notebook graded on this machine used recently: the next of the range
    (a counter shared under a file lock), skipping any uid that still has a process."""
    with open(base / "uid.counter", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = int(f.read().strip() or 0)
        busy = {p.info["uids"].real for p in confine.processes_of(set(range(UID_BASE, UID_BASE + UID_COUNT)))}
        while UID_BASE + n % UID_COUNT in busy:
            n += 1
        f.seek(0)
        f.truncate()
        f.write(str(n + 1))
    return UID_BASE + n % UID_COUNT


def is_sandbox_uid(uid: int) -> bool:
    return UID_BASE <= uid < UID_BASE + UID_COUNT


@dataclass(frozen=True)
class Slot:
    index: int
    uid: int
    gid: int
    scratch: Path       # the kernel's HOME, TMPDIR and working directory
    confined: bool      # uid is a sandbox uid of its own
    group: Cgroup | None = None   # the notebook's control group


def _sandbox_root() -> Path:
    root = Path(tempfile.gettempdir()) / f"workbook-sandbox-{os.geteuid()}"
    root.mkdir(mode=0o711, exist_ok=True)
    os.chmod(root, 0o711)
    return root


def _notebook_group(name: str) -> Cgroup | None:
    kind = capabilities().cgroups
    if not kind:
        return None
    cpus = float(os.environ["WORKBOOK_SANDBOX_CPUS"]) if os.environ.get("WORKBOOK_SANDBOX_CPUS") else None
    return Cgroup.create(name, Limits(GROUP_LIMITS.memory, GROUP_LIMITS.pids, cpus=cpus))


@contextmanager
def slot():
    """A free slot for one notebook (file lock, so processes on one machine share the
    pool): a fresh uid, a fresh scratch folder only that uid can enter, and a control group
    of its own. On exit every process in the group (and of the uid) is killed, the group
    and the scratch folder are removed."""
    caps = capabilities()
    base = _sandbox_root()
    for k in range(MAX_SLOTS):
        lock = open(base / f"slot{k}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        uid = allocate_uid(base) if caps.user else os.getuid()
        gid = uid if caps.user else os.getgid()
        scratch = base / f"slot{k}"
        group = None
        try:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(mode=0o700)
            os.chown(scratch, uid, gid)
            group = _notebook_group(f"workbook-slot{k}-{uid}")
            yield Slot(k, uid, gid, scratch, caps.user, group)
        finally:
            if group is not None:
                group.kill()
                group.remove()
            if caps.user:
                confine.kill_user_processes(uid)
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


def kernel_env(s: Slot, key_file: Path, context: str, jupyter_path: Path, judge: Path,
               private: tuple[Path, ...] = ()) -> dict:
    """Environment for nbgrader: how to find the sandbox kernelspec and what its launcher needs,
    including the `judge` socket through which the hidden checks run (the kernel never
    imports them, nor the solutions they use). `private`: more of the grader's folders
    (submissions, outputs) to cover in the kernel's view."""
    caps = capabilities()
    hide = [str(REPO / p) for p in HIDDEN_FROM_KERNEL if (REPO / p).is_dir()] if caps.mounts else []
    return {"JUPYTER_PATH": str(jupyter_path),
            "WORKBOOK_SANDBOX_UID": str(s.uid if s.confined else -1),
            "WORKBOOK_SANDBOX_GID": str(s.gid if s.confined else -1),
            "WORKBOOK_SANDBOX_DIR": str(s.scratch),
            "WORKBOOK_SANDBOX_KEY": str(key_file),
            "WORKBOOK_SANDBOX_CONTEXT": context,
            "WORKBOOK_SANDBOX_JUDGE": str(judge),
            "WORKBOOK_SANDBOX_HIDE": os.pathsep.join(hide),
            "WORKBOOK_SANDBOX_PRIVATE": os.pathsep.join(map(str, private)) if caps.mounts else "",
            "WORKBOOK_SANDBOX_PIDNS": "1" if caps.pids else "",
            "WORKBOOK_SANDBOX_CGROUP": str(s.group) if s.group else ""}


def wrap_command(cmd: list[str]) -> list[str]:
    """`cmd` in a network namespace of its own with only loopback, where that works."""
    if not capabilities().network:
        return cmd
    return ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]


def private_network() -> None:
    """What `wrap_command` does, for the calling process itself (a forked `nbgrader
    autograde`, `autograder.forked`, where `capabilities().network`, as the grader found
    it): a network namespace of its own with only loopback up; raises SandboxError if not."""
    _unshare(CLONE_NEWNET, "CLONE_NEWNET")
    if subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True).returncode != 0:
        raise SandboxError("could not bring up loopback in the grading network namespace")


# ----------------------------------------------------------------------------- kernel side

class SandboxError(RuntimeError):
    """The launcher could not confine the kernel; the message names the cause."""


def _preload() -> None:
    """Import what the test cells use while the files are still readable. The chapter's
    hidden checks are not among them: they run in the judge (`autograder.judge`)."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (its import rebinds torch.manual_seed: before the snapshot)
    import torch.optim  # noqa: F401

    import workbook.checks  # noqa: F401
    from autograder import integrity, kernel_side  # noqa: F401


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 8192, 16384, 1 << 18
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
ANCHOR = "/proc"   # staging place while the view is built (a fresh /proc replaces it)
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = (lambda x: x.encode() if x is not None else None)
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} failed: {os.strerror(err)}")


def _unshare(flags: int, what: str) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"unshare({what}) failed: {os.strerror(err)}")


def _blocked_ancestor(path: Path) -> Path | None:
    """The highest folder above `path` that other users cannot enter (e.g. /root, 0700)."""
    for parent in reversed(path.parents):
        if not parent.stat().st_mode & 0o001:
            return parent
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class View:
    """What the kernel sees: `needed` paths stay reachable at their own names, `covers`
    become empty tmpfs (private /tmp and data roots, and every closed folder above a
    needed path), `hidden` become empty read-only, `scratch` a private tmpfs."""
    needed: tuple[Path, ...]
    covers: tuple[Path, ...]
    hidden: tuple[Path, ...]
    scratch: Path

    @classmethod
    def plan(cls, needed: list[Path], private: list[Path], hidden: list[Path], scratch: Path) -> "View":
        needed = sorted({p.resolve() for p in needed})
        closed = [c for c in (_blocked_ancestor(p) for p in needed) if c is not None]
        covers = sorted({p.resolve() for p in [*private, *closed] if p.is_dir()}, key=lambda p: len(p.parts))
        covers = [c for c in covers if not any(_inside(c, n) for n in needed)]  # never over a needed path
        covers = [c for i, c in enumerate(covers) if not any(_inside(c, o) for o in covers[:i])]
        return cls(tuple(needed), tuple(covers), tuple(hidden), scratch)

    def staged(self) -> list[Path]:
        """Needed paths under a cover (nested ones travel with their outer path)."""
        under = [n for n in self.needed if any(_inside(n, c) for c in self.covers)]
        return [n for n in under if not any(o != n and _inside(n, o) for o in under)]


def _mount_view(view: View, uid: int, gid: int) -> None:
    """In a mount namespace of our own, build the kernel's view in one go: bind every
    needed path into a staging tmpfs first, then cover, then move each back to its own
    name (so two needed paths below one closed folder both stay reachable), then the
    private scratch tmpfs and the read-only covers of the grader-only folders."""
    _unshare(CLONE_NEWNS, "CLONE_NEWNS")
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    os.umask(0o022)
    staged = view.staged()
    step = "staging"
    try:
        _mount("tmpfs", ANCHOR, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700")
        for i, path in enumerate(staged):
            step = f"staging {path}"
            os.mkdir(f"{ANCHOR}/{i}")
            _mount(str(path), f"{ANCHOR}/{i}", None, MS_BIND | MS_REC, None)
        for cover in view.covers:
            step = f"covering {cover}"
            mode = "1777" if str(cover) in TMPFS_SIZE else "0755"
            _mount("tmpfs", str(cover), "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={TMPFS_SIZE.get(str(cover), '1m')},mode={mode}")
        for i, path in enumerate(staged):
            step = f"putting back {path}"
            path.mkdir(parents=True, exist_ok=True)
            _mount(f"{ANCHOR}/{i}", str(path), None, MS_MOVE, None)
        if _libc.umount2(ANCHOR.encode(), MNT_DETACH) != 0:
            raise OSError(ctypes.get_errno(), f"umount {ANCHOR}")
        step = f"the scratch folder {view.scratch}"
        view.scratch.mkdir(parents=True, exist_ok=True)
        _mount("tmpfs", str(view.scratch), "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={SCRATCH_SIZE},mode=0700,uid={uid if uid >= 0 else os.getuid()},"
               f"gid={gid if gid >= 0 else os.getgid()}")
        for p in view.hidden:
            step = f"hiding {p}"
            _mount("tmpfs", str(p), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    except OSError as e:
        raise SandboxError(f"could not build the kernel's view of the files ({step}): {e}; "
                           f"needed {', '.join(map(str, view.needed))}") from None


def _drop(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError("could not drop privileges")
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binaries


@dataclass
class Launch:
    """What the grader tells the launcher (environment variables, removed once read)."""
    conn: bytes       # the connection file's content (read before the view hides its folder)
    uid: int
    gid: int
    scratch: Path
    key: bytes
    context: str
    judge: str
    hide: list[str]
    private: list[str]
    pidns: bool
    group: Cgroup | None

    @classmethod
    def from_env(cls, argv: list[str]) -> "Launch":
        env = os.environ
        split = (lambda name: [p for p in env.pop(name, "").split(os.pathsep) if p])
        key_file = Path(env.pop("WORKBOOK_SANDBOX_KEY"))
        key = key_file.read_bytes()
        key_file.unlink()
        env.pop("JPY_PARENT_PID", None)  # the kernel's parent is its init (pid 1): no parent poller
        return cls(Path(argv[argv.index("-f") + 1]).read_bytes(), int(env.pop("WORKBOOK_SANDBOX_UID", "-1")),
                   int(env.pop("WORKBOOK_SANDBOX_GID", "-1")), Path(env.pop("WORKBOOK_SANDBOX_DIR")), key,
                   env.pop("WORKBOOK_SANDBOX_CONTEXT"), env.pop("WORKBOOK_SANDBOX_JUDGE", ""),
                   split("WORKBOOK_SANDBOX_HIDE"), split("WORKBOOK_SANDBOX_PRIVATE"),
                   env.pop("WORKBOOK_SANDBOX_PIDNS", "") == "1",
                   Cgroup.from_env(env.pop("WORKBOOK_SANDBOX_CGROUP", "")))

    def view(self) -> View:
        needed = [Path(sys.base_prefix), Path(sys.prefix), REPO] + ([Path(self.judge).parent] if self.judge else [])
        return View.plan(needed, [Path(p) for p in PRIVATE_ROOTS + self.private],
                         [Path(p) for p in self.hide], self.scratch)


# The grading kernel's whole environment, by name: nothing else of the grader's (tokens,
# keys, an instructor's canary) is inherited. HOME, TMPDIR, USER, ... are set afresh below.
KERNEL_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
              "NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "MPLBACKEND", "PYTHONWARNINGS", "TQDM_DISABLE",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
              "WORKBOOK_PROFILE", "WORKBOOK_OFFLINE", "WORKBOOK_PROGRESS", "WORKBOOK_DATA", "WORKBOOK_DEVICE")


def kernel_environment(env) -> dict[str, str]:
    """The variables of `env` the learner's kernel is given (KERNEL_ENV), no others."""
    return {k: env[k] for k in KERNEL_ENV if k in env}


def _prepare_scratch(launch: Launch) -> Path:
    """HOME, TMPDIR, IPYTHONDIR, matplotlib's config: fresh folders of this notebook's uid."""
    scratch = launch.scratch
    allowed = kernel_environment(os.environ)
    os.environ.clear()
    os.environ.update(allowed)
    for sub in ("tmp", ".config/matplotlib", ".ipython", "artifacts"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    os.environ.update(HOME=str(scratch), TMPDIR=str(scratch / "tmp"), USER=f"uid{launch.uid}",
                      LOGNAME=f"uid{launch.uid}", MPLCONFIGDIR=str(scratch / ".config/matplotlib"),
                      IPYTHONDIR=str(scratch / ".ipython"), WORKBOOK_ARTIFACTS=str(scratch / "artifacts"))
    os.environ.pop("WORKBOOK_RESULTS", None)
    tempfile.tempdir = None
    own_conn = scratch / "connection.json"
    own_conn.write_bytes(launch.conn)
    if launch.uid >= 0:
        for dirpath, dirnames, filenames in os.walk(scratch):
            for name in [dirpath, *[os.path.join(dirpath, f) for f in dirnames + filenames]]:
                os.chown(name, launch.uid, launch.gid)
    return own_conn


def _kernel(launch: Launch, own_conn: Path) -> None:
    """The kernel process: limits, its own uid, then ipykernel (never returns)."""
    confine.kernel_limits()
    if launch.uid >= 0:
        _drop(launch.uid, launch.gid)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    os.chdir(launch.scratch)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from ipykernel.kernelapp import IPKernelApp

    from autograder import integrity

    app = IPKernelApp.instance()
    app.initialize(["-f", str(own_conn)])
    integrity.arm(launch.key, launch.context, (), shell=app.shell)
    launch.key = b""
    app.start()
    os._exit(0)


def _init(launch: Launch, own_conn: Path) -> None:
    """PID 1 of the kernel's PID namespace: a /proc of its own, then the kernel as its
    child; reaps every orphan; when the kernel ends, so does the namespace (the kernel
    kills every process left in it)."""
    _unshare(CLONE_NEWNS, "CLONE_NEWNS")  # the new /proc is for the namespace only
    _libc.umount2(b"/proc", MNT_DETACH)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    kernel = os.fork()
    if kernel == 0:
        _run(_kernel, launch, own_conn)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == kernel:
            os._exit(_exit_code(status))


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _run(fn, *args) -> None:
    """Run `fn` in a forked child; any error is reported on stderr and ends the child."""
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - the child must never return into the parent's code
        print(f"[workbook-sandbox] ERROR: the grading kernel could not start: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


def _supervise(child: int, sink: int) -> int:
    """The launcher's last job, outside the kernel's namespaces: pass on at most SINK_KEEP
    bytes of what the kernel writes to its own stdout/stderr (the rest is counted, not
    kept) until the kernel's side ends; SIGTERM ends it. Returns the exit code."""
    def stop(*_):
        try:
            os.kill(child, signal.SIGKILL)   # the init: its namespace goes with it
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, stop)
    kept = dropped = 0
    while True:
        try:
            ready, _, _ = select.select([sink] if sink >= 0 else [], [], [], 0.5)
            if ready:
                data = os.read(sink, 1 << 16)
                if not data:
                    os.close(sink)
                    sink = -1
                room = max(0, SINK_KEEP - kept)
                if room:
                    os.write(2, data[:room])
                kept += min(room, len(data))
                dropped += max(0, len(data) - room)
            done, status = os.waitpid(child, os.WNOHANG)
        except InterruptedError:
            continue
        if done:
            break
    if dropped:
        os.write(2, f"\n[workbook-sandbox] {dropped:,} bytes of kernel output on stdout/stderr discarded\n".encode())
    return _exit_code(status)


def kernel_main(argv: list[str]) -> None:
    sys.dont_write_bytecode = True
    try:
        launch = Launch.from_env(argv)
        _preload()
        from autograder import kernel_side

        kernel_side.set_judge_path(launch.judge or None)
        if launch.group is not None:
            launch.group.join(os.getpid())
        if launch.hide:  # mount namespaces are available
            _mount_view(launch.view(), launch.uid, launch.gid)
        own_conn = _prepare_scratch(launch)
        if launch.pidns:
            _unshare(CLONE_NEWPID, "CLONE_NEWPID")
    except (OSError, SandboxError, KeyError, ValueError) as e:
        print(f"[workbook-sandbox] ERROR: the grading kernel could not start: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel (same process group)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        _run(_init if launch.pidns else _kernel, launch, own_conn)
    os.close(write_end)
    launch.key = b""
    sys.exit(_supervise(child, read_end))


if __name__ == "__main__":
    kernel_main(sys.argv[1:])
