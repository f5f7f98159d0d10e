"""Intake: copy submissions into the grader's own space, trusting nothing about them.

A submission folder (or zip) is learner data, and so is everything about it: file types,
names, sizes, links. Before anything reads a notebook, intake copies it into a staging
folder only the grader can enter (mode 0700 under the run's 0700 scratch folder, which the
kernels' users cannot see):

- only regular files are taken: every entry is examined with lstat, every folder and file
  is opened relative to its parent with O_NOFOLLOW (so no symbolic link is followed
  anywhere inside the submission), files with O_NONBLOCK and checked with fstat after
  opening (a FIFO never blocks the run, a device is never read); a folder named like a
  notebook is not a notebook;
- sizes are capped while copying (a file that grows or lies about its size is cut off);
- zip members that are links or special files, or whose names leave the folder, are refused;
  members are read with a cap, whatever their headers say.

What was refused is kept, with the reason, for the student's row. `check_notebook` then
validates every staged notebook (JSON nesting depth, nbformat schema, the nbgrader
metadata types the grader relies on), and `drop_duplicated_locked_cells` drops copies of a
locked test cell before nbgrader sees the notebook. Messages hold no file contents except short,
escaped pieces of the learner's own file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
MAX_ZIP_BYTES = 200 * 1024 * 1024      # a zip file, and what it may unpack to
MAX_ENTRIES = 2000                     # entries examined per submission (files and folders)
MAX_NOTEBOOKS = 100                    # notebooks taken per submission
MAX_FOLDER_DEPTH = 8
MAX_JSON_DEPTH = 64                    # a notebook is about 6 deep; outputs add a little
IGNORED = {"__MACOSX", ".DS_Store", ".ipynb_checkpoints", ".git"}
CHUNK = 1 << 20


class IntakeError(ValueError):
    """A file that is not taken; the message says why, in the learner's terms."""


@dataclass
class Submission:
    """One student's hand-in after intake. `notebooks`: file name -> staged copy (grader-only);
    `refused`: name (relative to the submission) -> why it was not taken; `problem`: why
    nothing of it could be taken (then every notebook of the student is `unreadable`)."""
    sid: str
    notebooks: dict[str, Path] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    handed_in: str = ""   # the folder name, or the zip's without .zip, as found (sid: `safe_id` of it)
    zipped: bool = False
    flag: str = ""        # for the instructor: an id not plain, or like another (`flag_parties`)


def learner_text(text: str, limit: int = 80) -> str:
    """A piece of learner data fit for a message, by allowlist: printable characters kept,
    every other one (control and format characters, terminal escapes, bidi overrides,
    zero-width spaces, the lone surrogates of undecodable bytes) replaced by `?`; cut short."""
    text = str(text)
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return "".join(c if c.isprintable() else "?" for c in text)


# ----------------------------------------------------------------------------- ids and names

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Latin letters' look-alikes (Cyrillic, Greek) folded for comparison only
LOOK_ALIKES = str.maketrans("аеорсухіјѕԁһӏⅼαεοκνρτυχ", "aeopcyxijsdhllaeoknptux")


def name_text(name: str) -> str:
    """A file or folder name as text: NFKC of what decodes; a byte that is not UTF-8 (the
    lone surrogate os.listdir gives for "Jörg" from a Windows zip) as `\\xf6`."""
    import unicodedata

    raw = name.encode("utf-8", "surrogateescape")
    try:
        return unicodedata.normalize("NFKC", raw.decode("utf-8"))
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def shown_name(name: str) -> str:
    """A name for a person to read: printable ASCII as given, anything else escaped
    (`\\u00f6`, `\\u200b`, `\\xf6` for an undecodable byte)."""
    text = name_text(name)
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def id_key(name: str) -> str:
    """What ids are compared by: NFKC, format characters (zero-width space) and blanks
    dropped, case-folded, look-alike letters folded."""
    import unicodedata

    text = "".join(c for c in name_text(name) if unicodedata.category(c) not in ("Cf", "Cc", "Zs", "Zl", "Zp"))
    return text.casefold().translate(LOOK_ALIKES)


def safe_id(name: str) -> str:
    """The id a submission is graded and filed under: the name itself where it is plain
    (letters, digits, `.`, `_`, `-`), else its escaped form with a short hash of its bytes."""
    import hashlib

    if SAFE_ID.match(name):
        return name
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", shown_name(name).replace("\\", "-")).strip("-.") or "id"
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{'x' if not text[0].isalnum() else ''}{text[:48]}-{digest}"


def flag_parties(students: dict[str, "Submission"]) -> None:
    """Flag, for the instructor, every id that is not plain or that collides with or looks
    like another (case, blanks, zero-width characters, look-alike letters, a folder and a
    zip of one name): each is graded as its own row; the flag names the others."""
    groups: dict[str, list[str]] = {}
    for sid, sub in students.items():
        groups.setdefault(id_key(sub.handed_in or sid), []).append(sid)

    def named(sid: str) -> str:
        sub = students[sid]
        return f"{shown_name(sub.handed_in or sid)!r}" + (" (a zip)" if sub.zipped else "")

    for sid, sub in students.items():
        notes = []
        if not SAFE_ID.match(sub.handed_in or sid):
            notes.append(f"handed in as {named(sid)}: graded as {sid}")
        if others := [o for o in groups[id_key(sub.handed_in or sid)] if o != sid]:
            notes.append(f"{sid} ({named(sid)}) looks like " + ", ".join(f"{o} ({named(o)})" for o in others)
                         + ": graded apart; check which learner is which before importing")
        sub.flag = "; ".join(notes)


def private_dir(path: Path) -> Path:
    """Create `path` (and the parents it lacks) as folders only their owner can enter."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)
        os.chmod(p, 0o700)
    os.chmod(path, 0o700)
    return path


# ----------------------------------------------------------------------------- files

def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _read_fd(fd: int, limit: int, name: str) -> bytes:
    """Read at most `limit` bytes of an open regular file; more is refused."""
    chunks, size = [], 0
    while chunk := os.read(fd, min(CHUNK, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise IntakeError(f"{name} is over the {limit:,}-byte limit")
    return b"".join(chunks)


def open_regular(name: str, dir_fd: int | None, limit: int) -> bytes:
    """The bytes of the regular file `name` (relative to `dir_fd`, or a path), never
    following a link at its end, never blocking on a pipe, never opening a device."""
    before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    shown = learner_text(os.path.basename(name))
    if not stat.S_ISREG(before.st_mode):
        raise IntakeError(f"{shown} is {_kind(before.st_mode)}, not a notebook file")
    if before.st_size > limit:
        raise IntakeError(f"{shown} is {before.st_size:,} bytes, over the {limit:,}-byte limit")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0),
                     dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise IntakeError(f"{shown} is a symbolic link, not a notebook file") from None
        raise IntakeError(f"{shown} cannot be read ({e.strerror})") from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise IntakeError(f"{shown} changed while it was read")
        return _read_fd(fd, limit, shown)
    finally:
        os.close(fd)


def read_regular(path: Path, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """`open_regular` for a path: its last component must not be a link."""
    return open_regular(str(path), None, limit)


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


# ----------------------------------------------------------------------------- folders

class _Walk:
    """Copies the notebooks of one submission folder into `dest`, opening every folder
    relative to its parent with O_NOFOLLOW."""

    def __init__(self, sub: Submission, dest: Path):
        self.sub, self.dest, self.entries = sub, private_dir(dest), 0

    def folder(self, dir_fd: int, rel: PurePosixPath, depth: int) -> None:
        with os.scandir(dir_fd) as it:
            names = sorted(e.name for e in it)
        subfolders = []
        for name in names:
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                self.sub.refused.setdefault("...", f"more than {MAX_ENTRIES} files: the rest was not looked at")
                return
            if name in IGNORED or name.startswith("._"):
                continue
            shown = str(rel / learner_text(name, 60))
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and not name.endswith(".ipynb"):
                subfolders.append(name)
            elif name.endswith(".ipynb"):
                self.notebook(name, dir_fd, shown)
            elif not stat.S_ISREG(st.st_mode):
                self.sub.refused[shown] = f"{shown} is {_kind(st.st_mode)}: not followed"
        for name in subfolders:
            shown = str(rel / learner_text(name, 60))
            if depth >= MAX_FOLDER_DEPTH:
                self.sub.refused[shown] = f"{shown}: folders nested deeper than {MAX_FOLDER_DEPTH}"
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as e:
                self.sub.refused[shown] = f"{shown} cannot be opened ({e.strerror})"
                continue
            try:
                self.folder(fd, rel / name, depth + 1)
            finally:
                os.close(fd)

    def notebook(self, name: str, dir_fd: int, shown: str) -> None:
        opened, name = name, name_text(name)  # its key: NFKC, undecodable bytes escaped
        if name in self.sub.notebooks or name in self.sub.refused:
            return  # the first one found (the shallowest) counts
        if len(self.sub.notebooks) >= MAX_NOTEBOOKS:
            self.sub.refused.setdefault("...", f"more than {MAX_NOTEBOOKS} notebooks: the rest was not taken")
            return
        try:
            data = open_regular(opened, dir_fd, MAX_NOTEBOOK_BYTES)
        except IntakeError as e:
            self.sub.refused[name] = str(e) if shown == name else f"{e} (in {shown})"
            return
        self.sub.notebooks[name] = _write_private(self.dest / f"{len(self.sub.notebooks):03d}.ipynb", data)


def stage_folder(sub: Submission, folder: Path, dest: Path, dir_fd: int | None = None) -> Submission:
    """Copy the notebooks of `folder` (relative to `dir_fd` if given) into `dest`."""
    try:
        fd = os.open(str(folder), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        sub.problem = ("the student folder is a symbolic link: not followed" if e.errno in (errno.ELOOP, errno.ENOTDIR)
                       else f"the student folder cannot be opened ({e.strerror})")
        return sub
    try:
        _Walk(sub, dest).folder(fd, PurePosixPath(), 0)
    finally:
        os.close(fd)
    return sub


# ----------------------------------------------------------------------------- zips

def _member_kind(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is refused by its type, or None for a regular file or folder."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return _kind(mode)
    return None


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    name = info.filename
    if "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("..", ".", "") for p in parts) or re.match(r"^[A-Za-z]:", parts[0]):
        return None
    return PurePosixPath(*parts)


def unpack_zip(data_path: Path, dest: Path, refused: dict[str, str], wanted=(".ipynb", ".zip"),
               limit: int = MAX_ZIP_BYTES) -> None:
    """Unpack the regular members of a zip whose names end in `wanted` into `dest` (0700),
    each read with a cap; refused members (links, special files, paths leaving the folder,
    over the size limits) go to `refused` by name. Raises IntakeError for an unusable zip."""
    private_dir(dest)
    total = 0
    try:
        zf = zipfile.ZipFile(data_path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise IntakeError(f"not a readable zip ({learner_text(e, 120)})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise IntakeError(f"the zip holds {len(infos):,} entries (limit {MAX_ENTRIES:,})")
        for info in infos:
            rel = _member_path(info)
            shown = learner_text(info.filename, 100)
            if rel is None:
                refused[shown] = f"{shown}: unsafe path in the zip, not unpacked"
                continue
            if any(p in IGNORED or p.startswith("._") for p in rel.parts):
                continue
            if (why := _member_kind(info)) is not None:
                refused[str(rel)] = f"{shown} is {why} in the zip, not unpacked"
                with contextlib.suppress(OSError):
                    _folders_for(dest, rel)  # its student still has a folder (and a row)
                continue
            if info.is_dir() or not rel.name.endswith(tuple(wanted)):
                continue
            cap = MAX_NOTEBOOK_BYTES if rel.name.endswith(".ipynb") else limit
            try:
                with zf.open(info) as f:
                    data = f.read(cap + 1)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError, EOFError) as e:
                refused[str(rel)] = f"{shown} cannot be unpacked ({learner_text(e, 80)})"
                continue
            total += len(data)
            if len(data) > cap:
                refused[str(rel)] = f"{shown} unpacks to over the {cap:,}-byte limit"
                with contextlib.suppress(OSError):
                    _folders_for(dest, rel)
                continue
            if total > limit:
                raise IntakeError(f"the zip unpacks to over {limit:,} bytes")
            try:  # a name too long for the disk, a file where a folder should be, ...
                target = _folders_for(dest, rel)
                if target.exists():
                    refused[str(rel)] = f"{shown} appears twice in the zip"
                    continue
                _write_private(target, data)
            except OSError as e:
                refused[str(rel)] = f"{shown} cannot be unpacked ({e.strerror or type(e).__name__})"


def _folders_for(dest: Path, rel: PurePosixPath) -> Path:
    """Create the (private) folders a member at `rel` lives in; returns its path."""
    if len(rel.parts) > 1:
        private_dir(dest.joinpath(*rel.parts[:-1]))
    return dest.joinpath(*rel.parts)


def _strip_wrappers(folder: Path) -> Path:
    """Descend through a lone wrapper folder (how most zip tools pack a folder); only used
    on folders intake made itself (no links in them)."""
    entries = [p for p in folder.iterdir() if p.name not in IGNORED]
    if len(entries) == 1 and entries[0].is_dir() and not any(entries[0].glob("*.ipynb")):
        return _strip_wrappers(entries[0])
    return folder


def _refused_under(refused: dict[str, str], prefix: PurePosixPath) -> dict[str, str]:
    """The refusals of a class zip that lie inside one student's folder, named from there."""
    found = {}
    for name, why in refused.items():
        p = PurePosixPath(name)
        if p.parts[:len(prefix.parts)] == prefix.parts and len(p.parts) > len(prefix.parts):
            found[str(PurePosixPath(*p.parts[len(prefix.parts):]))] = why
    return found


def stage_zip(sub: Submission, zip_path: Path, dest: Path, dir_fd: int | None = None) -> Submission:
    """A student's zip: copied into staging with a cap, unpacked there, notebooks taken."""
    try:
        data = open_regular(str(zip_path), dir_fd, MAX_ZIP_BYTES)
    except IntakeError as e:
        sub.problem = str(e)
        return sub
    private_dir(dest)
    copy = _write_private(dest / "submission.zip", data)
    del data
    refused: dict[str, str] = {}
    try:
        unpack_zip(copy, dest / "unpacked", refused, wanted=(".ipynb",))
    except IntakeError as e:
        sub.problem = f"{learner_text(zip_path.name)} is {e}" if str(e).startswith("not") else f"{learner_text(zip_path.name)}: {e}"
        return sub
    finally:
        copy.unlink()
    inner = _strip_wrappers(dest / "unpacked")
    stage_folder(sub, inner, dest / "notebooks")
    prefix = PurePosixPath(*inner.relative_to(dest / "unpacked").parts)
    for name, why in (_refused_under(refused, prefix) if prefix.parts else refused).items():
        sub.refused.setdefault(PurePosixPath(name).name if name.endswith(".ipynb") else name, why)
    return sub


# ----------------------------------------------------------------------------- the class

def collect(submissions: Path, scratch: Path) -> dict[str, Submission]:
    """{student id: Submission}, every notebook copied into `scratch`/intake (0700).
    SUBMISSIONS is a folder of student folders and/or `<student>.zip` files, or a .zip of
    such a folder. The folder itself is the instructor's (it may be a link); nothing inside
    it is followed."""
    submissions = Path(submissions)
    if not submissions.exists():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    staging = private_dir(scratch / "intake")
    class_refused: dict[str, str] = {}
    if submissions.is_file():
        if submissions.suffix != ".zip":
            raise ValueError(f"{submissions} is neither a folder nor a .zip of one")
        copy = private_dir(staging / "class-zip") / "class.zip"
        _write_private(copy, read_regular(submissions, MAX_ZIP_BYTES))
        unpack_zip(copy, staging / "class", class_refused)
        copy.unlink()
        root = _strip_wrappers(staging / "class")
        prefix = PurePosixPath(*root.relative_to(staging / "class").parts)
        class_refused = _refused_under(class_refused, prefix) if prefix.parts else class_refused
    else:
        root = submissions.resolve()
    students: dict[str, Submission] = {}
    root_fd = os.open(str(root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(root_fd) as it:
            entries = sorted((e.name, e.stat(follow_symlinks=False).st_mode) for e in it)
        folders = {name for name, mode in entries if not (name.endswith(".zip") and not stat.S_ISDIR(mode))}
        for i, (name, mode) in enumerate(entries):
            if name.startswith(".") or name in IGNORED:
                continue
            is_zip = name.endswith(".zip") and not stat.S_ISDIR(mode)
            if not (is_zip or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                continue  # a stray file next to the student folders
            # a zip beside a folder of its name is a party of its own, named with its .zip
            base = name[:-4] if is_zip and name[:-4] not in folders else name
            sid = safe_id(base)
            while sid in students:  # escaped names that meet: each still its own row
                sid = f"{sid[:60]}-{len(students)}"
            sub = students[sid] = Submission(sid, handed_in=base if not is_zip else name[:-4], zipped=is_zip)
            try:  # whatever one submission holds, it costs its own row only
                dest = staging / "students" / f"{i:05d}"
                if is_zip:
                    stage_zip(sub, Path(name), dest, dir_fd=root_fd)
                else:
                    stage_folder(sub, Path(name), dest, dir_fd=root_fd)
                    for rel, why in _refused_under(class_refused, PurePosixPath(name)).items():
                        sub.refused.setdefault(PurePosixPath(rel).name if rel.endswith(".ipynb") else rel, why)
            except Exception as e:  # noqa: BLE001 - the row names it, the class goes on
                sub.notebooks.clear()
                sub.problem = f"the grader could not take this submission in ({type(e).__name__}: {learner_text(e, 160)})"
    finally:
        os.close(root_fd)
    flag_parties(students)
    return students


# ----------------------------------------------------------------------------- notebooks

NBGRADER_TYPES = {"grade": bool, "solution": bool, "locked": bool, "task": bool,
                  "grade_id": str, "points": (int, float), "schema_version": int,
                  "checksum": str, "cell_type": str}
GRADE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


def json_depth(value) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def nbgrader_problem(nb: dict) -> str | None:
    """What is wrong with the nbgrader metadata the grader relies on, or None."""
    for i, cell in enumerate(nb.get("cells", [])):
        if "nbgrader" not in cell.get("metadata", {}):
            continue
        meta = cell["metadata"]["nbgrader"]
        where = f"cell {i + 1}"
        if not isinstance(meta, dict):
            return f"{where}: its nbgrader metadata is {type(meta).__name__}, not a set of fields (was it edited by hand?)"
        for key, kind in NBGRADER_TYPES.items():
            if key in meta and (not isinstance(meta[key], kind)
                                or (kind is not bool and isinstance(meta[key], bool))):
                return f"{where}: nbgrader field {key!r} has the wrong type ({type(meta[key]).__name__})"
        if "grade_id" in meta and not GRADE_ID.match(meta["grade_id"]):
            return f"{where}: nbgrader grade_id {learner_text(meta['grade_id'], 40)!r} is not a valid cell name"
        if isinstance(meta.get("points"), float) and not (0 <= meta["points"] < 1e6):
            return f"{where}: nbgrader points {meta['points']!r} out of range"
        if (meta.get("grade") or meta.get("solution")) and "grade_id" not in meta:
            return f"{where}: a graded or answer cell without its nbgrader grade_id"
    return None


def duplicated_answers(nb: dict) -> list[str]:
    ids = [c["metadata"]["nbgrader"].get("grade_id") for c in nb.get("cells", [])
           if "nbgrader" in c.get("metadata", {})
           and not (c["metadata"]["nbgrader"].get("grade") and not c["metadata"]["nbgrader"].get("solution"))]
    return sorted({g for g in ids if g and ids.count(g) > 1})


def parse_notebook(data: bytes) -> tuple[dict | None, str | None]:
    """(notebook, None) if `data` is a notebook the grader can grade, else (None, why)."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, f"file is {len(data):,} bytes, over the {MAX_NOTEBOOK_BYTES:,}-byte limit"
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "file is not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON (line {e.lineno}, column {e.colno}): was the file saved completely?"
    except RecursionError:
        return None, f"not a notebook: its JSON is nested too deeply (limit {MAX_JSON_DEPTH})"
    if not isinstance(raw, dict):
        return None, f"not a Jupyter notebook: the file holds a JSON {type(raw).__name__}, not an object"
    if json_depth(raw) > MAX_JSON_DEPTH:
        return None, f"not a notebook: its JSON is nested too deeply (limit {MAX_JSON_DEPTH})"
    try:
        nbformat.validate(nbformat.from_dict(raw))
    except Exception as e:  # nbformat raises several types
        first = (str(e).splitlines() or [type(e).__name__])[0]
        return None, f"not a valid Jupyter notebook: {learner_text(first, 160)}"
    if raw.get("nbformat") != 4:
        return None, f"not a version-4 Jupyter notebook (nbformat {learner_text(raw.get('nbformat'), 10)})"
    if bad := nbgrader_problem(raw):
        return None, f"not gradable: {bad}"
    if twice := duplicated_answers(raw):
        return None, f"cells {', '.join(twice)} appear more than once (a copied answer cell?): keep one of each"
    return raw, None


def check_notebook(path: Path) -> str | None:
    """None if the (staged) file at `path` is a notebook the grader can grade, else why not."""
    try:
        data = read_regular(path, MAX_NOTEBOOK_BYTES)
    except IntakeError as e:
        return str(e)
    return parse_notebook(data)[1]


def drop_duplicated_locked_cells(nb: dict) -> tuple[dict, list[str]]:
    """nbgrader stops on a notebook holding two cells with one grade_id (a copied cell keeps
    its metadata). Copies of a locked test cell are dropped (nbgrader restores the cell
    anyway); copies of other cells are left for check_duplicates to refuse."""
    seen, kept, dropped = set(), [], []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if gid and gid in seen and meta.get("grade") and not meta.get("solution"):
            dropped.append(gid)
            continue
        seen.add(gid)
        kept.append(cell)
    nb["cells"] = kept
    return nb, ([f"removed {len(dropped)} duplicated copy(ies) of locked cell(s) {', '.join(sorted(set(dropped)))}"]
                if dropped else [])
