"""One control group per graded notebook: a CPU share, a memory and a process limit, and
a kill that reaches every process in it (cgroup v1 or v2, whichever the machine has).

    group = Cgroup.create("workbook-slot3-3100042", Limits(memory=8 << 30, pids=512))
    group.join(pid)       # the kernel launcher joins it; everything it starts is inside
    group.kill()          # freeze, SIGKILL every member, thaw, wait until it is empty
    group.remove()

A process cannot leave its group without write access to another group's `cgroup.procs`
(root only), so a notebook's processes cannot escape the kill, whatever they do
(`setsid`, double forks, a subreaper of their own).
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("cpu", "memory", "pids", "freezer")


@dataclass(frozen=True)
class Limits:
    memory: int                  # bytes of memory (page cache and tmpfs of the group included)
    pids: int                    # processes and threads
    cpu_weight: int = 100        # v2 cpu.weight (v1: cpu.shares = 1024 * weight / 100): equal shares
    cpus: float | None = None    # hard cap in cores (None: only the share)


def _mounts() -> list[tuple[str, str, str, str]]:
    """(mount point, root inside the hierarchy, fs type, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if tail and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], fields[3], tail[0], tail[2] if len(tail) > 2 else ""))
    return found


def _own(hierarchy: str) -> str:
    """This process's cgroup path in the hierarchy named `hierarchy` ('' for v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (hierarchy == "" and names == "") or hierarchy in names.split(","):
            return path
    raise LookupError(hierarchy)


def _under(mount: str, root: str, own: str) -> Path:
    rel = os.path.relpath(own, root) if own.startswith(root) else own.lstrip("/")
    return Path(mount) / ("" if rel == "." else rel)


def parents() -> tuple[str, dict[str, Path]] | None:
    """("v1", {controller: folder}) or ("v2", {"": folder}): where this process's groups
    live, for making sub-groups; None when the machine has no usable cgroups."""
    mounts = _mounts()
    v1 = {}
    for ctl in V1_CONTROLLERS:
        for point, root, fstype, opts in mounts:
            if fstype == "cgroup" and ctl in opts.split(","):
                v1[ctl] = _under(point, root, _own(ctl))
    if len(v1) == len(V1_CONTROLLERS):
        return "v1", v1
    for point, root, fstype, _ in mounts:
        if fstype == "cgroup2" and Path(point, "cgroup.controllers").exists():
            try:
                return "v2", {"": _under(point, root, _own(""))}
            except LookupError:
                return None
    return None


def _write(path: Path, value) -> bool:
    try:
        path.write_text(str(value))
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Cgroup:
    version: str
    dirs: tuple[tuple[str, Path], ...]   # (controller, folder) per v1 controller; ("", folder) in v2

    @classmethod
    def create(cls, name: str, limits: Limits) -> "Cgroup":
        found = parents()
        if found is None:
            raise OSError("no cgroup hierarchy with cpu, memory, pids and freezer (v1) or cgroup2")
        version, where = found
        group = cls(version, tuple((ctl, parent / name) for ctl, parent in where.items()))
        for _, d in group.dirs:
            d.mkdir(exist_ok=True)
        group._limit(limits)
        return group

    @classmethod
    def from_env(cls, value: str) -> "Cgroup | None":
        """The group described by `str(group)` (passed to the kernel launcher), or None."""
        if not value:
            return None
        version, _, dirs = value.partition(":")
        pairs = (d.partition("=") for d in dirs.split(os.pathsep) if d)
        return cls(version, tuple((ctl, Path(path)) for ctl, _, path in pairs))

    def __str__(self) -> str:
        return f"{self.version}:" + os.pathsep.join(f"{ctl}={d}" for ctl, d in self.dirs)

    def _file(self, controller: str, name: str) -> Path:
        return dict(self.dirs)["" if self.version == "v2" else controller] / name

    def _limit(self, limits: Limits) -> None:
        """Set the limits; a limit the kernel refuses raises (the caller reports it)."""
        if self.version == "v1":
            checks = [(self._file("cpu", "cpu.shares"), 1024 * limits.cpu_weight // 100),
                      (self._file("memory", "memory.limit_in_bytes"), limits.memory),
                      (self._file("pids", "pids.max"), limits.pids)]
            if limits.cpus:
                period = int(self._file("cpu", "cpu.cfs_period_us").read_text())
                checks.append((self._file("cpu", "cpu.cfs_quota_us"), int(period * limits.cpus)))
        else:
            group = self.dirs[0][1]
            _write(group.parent / "cgroup.subtree_control", "+cpu +memory +pids")
            checks = [(group / "cpu.weight", limits.cpu_weight), (group / "memory.max", limits.memory),
                      (group / "pids.max", limits.pids)]
            if limits.cpus:
                checks.append((group / "cpu.max", f"{int(100_000 * limits.cpus)} 100000"))
        for path, value in checks:
            if not _write(path, value):
                raise OSError(f"could not set {path} to {value}")

    def join(self, pid: int) -> None:
        for _, d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def pids(self) -> set[int]:
        found = set()
        for _, d in self.dirs:
            try:
                found |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def _freeze(self, on: bool) -> None:
        if self.version == "v1":
            state = self._file("freezer", "freezer.state")
            _write(state, "FROZEN" if on else "THAWED")
            for _ in range(50):
                if not on or state.read_text().strip() == "FROZEN":
                    return
                time.sleep(0.02)
        else:
            _write(self._file("", "cgroup.freeze"), 1 if on else 0)

    def kill(self, wait: float = 10.0) -> bool:
        """SIGKILL every process in the group (frozen first, so none can fork meanwhile);
        True once the group is empty."""
        if not (self.version == "v2" and _write(self._file("", "cgroup.kill"), 1)):
            self._freeze(True)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self._freeze(False)  # frozen tasks die only once thawed
        deadline = time.time() + wait
        while self.pids():
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def remove(self) -> None:
        for _, d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass
