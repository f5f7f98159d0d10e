"""Grade a folder of submissions end to end.

    python -m autograder grade SUBMISSIONS --out DIR [--jobs N] [--notebooks 01_autoencoders ...]

SUBMISSIONS is a folder with one sub-folder per student (`SUBMISSIONS/<student>/NN_topic.ipynb`),
a `<student>.zip` of such a sub-folder, or a .zip of the whole folder.

Each student is graded in a course root of their own, outside the repository, copied from
a template that holds the config, the instructor notebooks and a gradebook in which
`nbgrader generate_assignment` registered every chapter. So every run starts from a clean
gradebook, students cannot touch each other's grades, and `--jobs N` grades N students at
once with results identical to a serial run.

Writes DIR/grades.csv (student, notebook, score, max_score, status, detail), DIR/cells.csv
(one row per graded cell), DIR/feedback/<student>/<notebook>.html and prints a summary.
Exit code 0 when every submission was graded, whatever the scores.
"""
from __future__ import annotations

import contextlib
import csv
import html
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import authoring, integrity, sandbox
from .build import REPO, make_course_root, nbgrader, tool_env

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
MAX_ZIP_BYTES = 200 * 1024 * 1024
STATUSES = ("graded", "missing", "unreadable", "timed out", "crashed", "tampered")


@dataclass
class Result:
    student: str
    notebook: str
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"
    detail: str = ""
    cells: list[tuple[str, float, float]] = field(default_factory=list)  # (grade_id, score, max)
    diagnoses: list[tuple[str, str]] = field(default_factory=list)  # (grade_id, likely mistake)


# ----------------------------------------------------------------------------- inputs

def _safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract a zip, refusing absolute paths, `..` and archives that unpack too large."""
    with zipfile.ZipFile(zip_path) as zf:
        total = sum(i.file_size for i in zf.infolist())
        if total > MAX_ZIP_BYTES:
            raise ValueError(f"{zip_path.name} unpacks to {total} bytes (limit {MAX_ZIP_BYTES})")
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not str(target).startswith(str(dest.resolve())) or info.filename.startswith("/"):
                raise ValueError(f"{zip_path.name} contains an unsafe path {info.filename!r}")
        zf.extractall(dest)


def _strip_wrappers(folder: Path) -> Path:
    """Descend through a lone wrapper folder (how most zip tools pack a folder)."""
    entries = [p for p in folder.iterdir() if p.name not in {"__MACOSX", ".DS_Store"}]
    if len(entries) == 1 and entries[0].is_dir() and not any(entries[0].glob("*.ipynb")):
        return _strip_wrappers(entries[0])
    return folder


def collect(submissions: Path, scratch: Path) -> dict[str, Path]:
    """{student id: folder holding that student's notebooks}."""
    if not submissions.exists():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    if submissions.is_file():
        if submissions.suffix != ".zip":
            raise ValueError(f"{submissions} is neither a folder nor a .zip of one")
        dest = scratch / "unzipped"
        dest.mkdir(parents=True)
        _safe_extract(submissions, dest)
        submissions = _strip_wrappers(dest)
    students: dict[str, Path] = {}
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        sid = entry.stem if entry.suffix == ".zip" else entry.name
        if entry.is_file() and entry.suffix == ".zip":
            dest = scratch / "student-zips" / sid
            dest.mkdir(parents=True)
            try:
                _safe_extract(entry, dest)
            except (zipfile.BadZipFile, ValueError) as e:
                dest = scratch / "bad-zips" / sid
                dest.mkdir(parents=True)
                (dest / ".unreadable").write_text(f"{entry.name} is not a readable zip: {e}")
            students[sid] = _strip_wrappers(dest)
        elif entry.is_dir():
            students[sid] = entry
    return students


def check_notebook(path: Path) -> str | None:
    """None if `path` is a readable notebook, else what is wrong with it."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return f"file is {path.stat().st_size} bytes, over the {MAX_NOTEBOOK_BYTES}-byte limit"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return "file is not UTF-8 text"
    except json.JSONDecodeError as e:
        return f"not valid JSON (line {e.lineno}, column {e.colno}): was the file saved completely?"
    try:
        nb = nbformat.from_dict(raw)
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises several types
        return f"not a valid Jupyter notebook: {str(e).splitlines()[0][:200]}"
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in raw.get("cells", [])
           if not (c.get("metadata", {}).get("nbgrader", {}).get("grade")
                   and not c.get("metadata", {}).get("nbgrader", {}).get("solution"))]
    twice = sorted({g for g in ids if g and ids.count(g) > 1})
    if twice:
        return f"cells {', '.join(twice)} appear more than once (a copied answer cell?): keep one of each"
    return None


# ----------------------------------------------------------------------------- grading

def make_template(root: Path, chapters: list[str]) -> dict[str, "Chapter"]:
    """A course root whose gradebook knows every chapter (generate_assignment run once),
    made from the instructor notebooks with a seal line appended to every graded cell
    (see autograder/integrity.py). Returns what the grader checks each notebook against."""
    make_course_root(root, chapters)
    known = {}
    for ch in chapters:
        known[ch] = Chapter(ch, add_seals(root / "source" / ch / f"{ch}.ipynb"))
        r = nbgrader(["generate_assignment", ch, "--force"], cwd=root)
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {ch} failed:\n{r.stderr[-3000:]}")
        known[ch].protected = protected_lines(ch, root / "source" / ch / f"{ch}.ipynb",
                                              root / "release" / ch / f"{ch}.ipynb")
    shutil.rmtree(root / "release", ignore_errors=True)
    return known


@dataclass
class Chapter:
    name: str
    locked: dict[str, tuple[str, str]]         # graded cell -> (locked source, seal nonce)
    protected: frozenset[str] = frozenset()     # lines that must never reach feedback

    @property
    def judged(self) -> dict[str, list[str]]:
        """graded cell -> the verdicts (`judge.verdict_key`) its hidden block asks the judge
        for (every hidden block calls `_judged`: tests/test_build.py)."""
        return {gid: [f"{n}:{q}" if q else n for n, q in JUDGED_CALL.findall(src)]
                for gid, (src, _) in self.locked.items() if JUDGED_CALL.search(src)}


JUDGED_CALL = re.compile(r'_judged\(\s*"(ch\d\d_[a-z0-9_]+\.[a-z][a-z0-9_]*)"(?:\s*,\s*"([^"]*)")?')


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def add_seals(path: Path) -> dict[str, tuple[str, str]]:
    """Append `seal(grade_id, nonce)` in a hidden block to every graded code cell of the
    grader's copy of an instructor notebook; a fresh random nonce per cell and run."""
    nb = json.loads(path.read_text())
    locked = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        nonce = secrets.token_hex(8)
        cell["source"] = (_source(cell).rstrip("\n") + "\n### BEGIN HIDDEN TESTS\n"
                          + integrity.seal_call(meta["grade_id"], nonce) + "\n### END HIDDEN TESTS")
        locked[meta["grade_id"]] = (cell["source"], nonce)
    path.write_text(json.dumps(nb, indent=1))
    return locked


def protected_lines(ch: str, instructor: Path, release: Path) -> frozenset[str]:
    """Lines of the solutions, the hidden checks and the hidden tests that learners never
    see (lines of the student notebook are public and left out)."""
    def lines(text: str) -> set[str]:
        return {ln.strip() for ln in text.splitlines() if len(ln.strip()) >= 24}

    texts = [_source(c) for c in json.loads(instructor.read_text())["cells"]]
    for extra in (authoring.REPO / "solutions" / f"ch{ch}.py", authoring.REPO / "autograder" / "hidden" / f"ch{ch}.py"):
        if extra.exists():
            texts.append(extra.read_text())
    public = lines("\n".join(_source(c) for c in json.loads(release.read_text())["cells"])) if release.exists() else set()
    return frozenset(lines("\n".join(texts)) - public)


def _errors(nb: dict) -> list[str]:
    return [o.get("ename", "") for c in nb.get("cells", []) if c.get("cell_type") == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


HIDDEN_BLOCK = re.compile(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.S)


def _diagnoses(nb: dict) -> list[tuple[str, str]]:
    """(test cell, likely mistake) for every failed graded cell whose check named a mistake."""
    found = []
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and gid:
                m = re.search(r"likely mistake: (.+)", out.get("evalue", ""))
                if m:
                    found.append((gid, m.group(1).strip()))
    return found


SEAL_OUTPUT = re.compile(integrity.SEAL_LINE.pattern + r"\n?")


def sanitize_for_feedback(path: Path) -> None:
    """Remove hidden tests (and the grader's seal lines) from an autograded notebook and
    keep only `Error: message` of every error, so feedback never shows hidden test code, not even
    as the source lines a traceback prints around a failure."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = HIDDEN_BLOCK.sub("", src)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
            if out.get("output_type") == "stream":
                out["text"] = SEAL_OUTPUT.sub("", integrity._join(out.get("text", "")))
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "stream" or o["text"]]
    path.write_text(json.dumps(nb, indent=1))


MEMORY_LIMIT = 8 * 1024**3       # address space of nbgrader and the kernel it starts
FILE_LIMIT = 256 * 1024**2       # largest file the submission may write
MAX_CELL_OUTPUT = 100_000        # characters of output kept per cell in feedback
MAX_NOTEBOOK_OUTPUT = 2_000_000  # ... and per notebook


def _limits() -> None:
    """Runs in the child before exec: resource limits nbgrader and the kernel inherit."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_confined(cmd: list[str], cwd: Path, env: dict, timeout: float) -> tuple[int | None, str]:
    """Run a grading command in its own process group with resource limits; on timeout
    (returns code None) or completion, kill the whole group, so a submission's kernel or
    any process it started cannot outlive its grading."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True, preexec_fn=_limits)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    kill_processes_under(cwd)
    return code, out[-200_000:]


def kill_processes_under(folder: Path) -> None:
    """Kill every process whose working directory is inside `folder` (the sandbox slot
    also kills every process of its user)."""
    import psutil

    root = str(Path(folder).resolve())
    for p in psutil.process_iter(["pid"]):
        try:
            cwd = p.cwd()
            if p.pid != os.getpid() and (cwd == root or cwd.startswith(root + os.sep)):
                p.kill()
        except (psutil.Error, OSError):
            pass


def cap_outputs(nb: dict) -> int:
    """Truncate the outputs of an autograded notebook to MAX_CELL_OUTPUT characters per
    cell and MAX_NOTEBOOK_OUTPUT in all (a notice says so); returns how many were removed."""
    removed, budget = 0, MAX_NOTEBOOK_OUTPUT
    for cell in nb.get("cells", []):
        if "outputs" not in cell:
            continue
        room = start = min(MAX_CELL_OUTPUT, budget)
        kept, cut = [], 0
        for out in cell["outputs"]:
            size = len(json.dumps(out))
            if size <= room:
                kept.append(out)
                room -= size
                continue
            cut += size
            if out.get("output_type") == "stream" and room > 0:
                text = integrity._join(out.get("text", ""))[:room]
                kept.append({**out, "text": text})
                cut -= len(text)
                room = 0
        if cut:
            kept.append({"output_type": "stream", "name": "stdout",
                         "text": f"\n[{cut:,} characters of output removed by the grader: over its size limit]\n"})
        cell["outputs"] = kept
        budget -= start - room
        removed += cut
    return removed


LEAK_NOTE = "[output removed by the grader: it contained grader-only material]\n"


def scrub_leaks(nb: dict, protected: frozenset[str]) -> int:
    """Replace every output that contains a line of the solutions or hidden checks;
    returns how many were replaced."""
    count = 0
    for cell in nb.get("cells", []):
        for i, out in enumerate(cell.get("outputs", [])):
            text = integrity.cell_text({"outputs": [out]})
            if any(ln.strip() in protected for ln in text.splitlines()):
                cell["outputs"][i] = {"output_type": "stream", "name": "stdout", "text": LEAK_NOTE}
                count += 1
    return count


@dataclass
class Job:
    """Everything one student's grading needs; plain data, so it can go to another process."""
    sid: str
    folder: Path
    chapters: dict[str, Chapter]
    template: Path
    work: Path
    out: Path
    env_extra: dict
    timeout: float


def grade_student(job: Job) -> list[Result]:
    root = job.work / job.sid
    shutil.copytree(job.template, root)
    results = [Result(job.sid, ch) for ch in job.chapters]
    problem = (job.folder / ".unreadable").read_text() if (job.folder / ".unreadable").exists() else None
    present = {p.name: p for p in job.folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    verdicts = {}
    for res in results:
        src = present.get(f"{res.notebook}.ipynb")
        if problem:
            res.status, res.detail = "unreadable", problem
        elif src is None:
            others = sorted(n for n in present if not any(n == f"{c}.ipynb" for c in job.chapters))
            res.status = "missing"
            res.detail = f"no {res.notebook}.ipynb" + (f"; found {', '.join(others)} (renamed?)" if others else "")
        elif bad := check_notebook(src):
            res.status, res.detail = "unreadable", bad
        else:
            verdicts[res.notebook] = autograde(job, root, res, src)
    _read_scores(root, results)
    for res in results:
        if res.notebook in verdicts:
            enforce_verdict(root, res, verdicts[res.notebook])
    write_feedback(job, root, results)
    return results


def autograde(job: Job, root: Path, res: Result, src: Path) -> integrity.Verdict:
    """Run nbgrader autograde on one notebook in a sandbox slot, then check and clean the
    autograded notebook. Sets status and detail; returns the integrity verdict."""
    sid, ch = job.sid, res.notebook
    dst = root / "submitted" / sid / ch
    dst.mkdir(parents=True)
    nb_in, notes = drop_duplicated_locked_cells(json.loads(src.read_text(encoding="utf-8")))
    (dst / f"{ch}.ipynb").write_text(json.dumps(nb_in))
    key, context = secrets.token_bytes(32), f"{sid}/{ch}"
    key_file = root / f".seal-{ch}"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    t0 = time.time()
    judged = job.chapters[ch].judged
    with sandbox.slot() as slot, judge_for(slot, ch, job.env_extra) as judge:
        extra = dict(job.env_extra)
        extra.pop("WORKBOOK_HIDDEN_SEED", None)  # the hidden inputs' secret stays with the judge
        env = tool_env({**extra, **sandbox.kernel_env(slot, key_file, context,
                                                      sandbox.write_kernelspec(root / ".jupyter"),
                                                      judge=judge.socket)})
        env.pop("WORKBOOK_HIDDEN_SEED", None)
        cmd = [sys.executable, "-m", "nbgrader", "autograde", ch, "--student", sid, "--force",
               f"--Execute.kernel_name={sandbox.KERNEL_NAME}"]
        code, log = run_confined(sandbox.wrap_command(cmd), cwd=root, env=env, timeout=job.timeout)
    key_file.unlink(missing_ok=True)
    (job.out / "logs" / sid).mkdir(parents=True, exist_ok=True)
    (job.out / "logs" / sid / f"{ch}.log").write_text(log)
    graded = root / "autograded" / sid / ch / f"{ch}.ipynb"
    verdict = integrity.Verdict()
    if code is None:
        res.status, res.detail = "timed out", f"grading took more than {job.timeout:.0f} s"
    elif not graded.exists():
        errors = [ln for ln in log.splitlines() if "ERROR" in ln or "Kernel died" in ln]
        res.status = "crashed"
        res.detail = "the notebook stopped the grader: " + (errors[0][-200:] if errors else "no log")
    if not graded.exists():
        return verdict
    nb = json.loads(graded.read_text())
    if res.status == "graded" and (code < 0 or not any(c.get("execution_count") for c in nb["cells"])):
        res.status = "crashed"
        res.detail = (f"the grader was killed (signal {-code})" if code < 0 else "the notebook was not executed")
    verdict = integrity.verify_notebook(nb, job.chapters[ch].locked, key, context)
    verdict.judged = {gid: all(judge.verdicts.get(k) is True for k in keys) for gid, keys in judged.items()}
    if removed := cap_outputs(nb):
        notes.append(f"output truncated ({removed:,} characters over the limit)")
    if leaks := scrub_leaks(nb, job.chapters[ch].protected):
        notes.append(f"{leaks} output(s) with grader-only material removed")
    res.diagnoses = _diagnoses(nb)
    graded.write_text(json.dumps(nb))
    sanitize_for_feedback(graded)
    res.detail = "; ".join([d for d in [res.detail, *notes, *describe_errors(nb, res)] if d]
                           + [f"graded in {time.time() - t0:.1f} s"])
    return verdict


@dataclass
class JudgeRun:
    socket: Path | None = None
    verdicts: dict = field(default_factory=dict)   # verdict key -> passed
    log: str = ""


@contextmanager
def judge_for(slot, chapter: str, env_extra: dict):
    """A judge process (`autograder.judge`) for one notebook: started before nbgrader,
    listening on a socket only the slot's user may use; on exit its verdicts are read and
    it is stopped. Yields a JudgeRun whose `verdicts` fill in on exit."""
    run = JudgeRun()
    folder = Path(tempfile.mkdtemp(prefix="workbook-judge-"))
    os.chmod(folder, 0o711)
    run.socket = folder / "judge.sock"
    uid, gid = (slot.uid, slot.gid) if slot.confined else (-1, -1)
    proc = subprocess.Popen([sys.executable, "-m", "autograder.judge", "--socket", str(run.socket),
                             "--chapter", chapter, "--uid", str(uid), "--gid", str(gid)],
                            cwd=REPO, env=tool_env(env_extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = proc.stdout.readline().strip()  # after its imports (a few seconds)
        if ready != "ready":
            raise RuntimeError(f"the judge did not start: {proc.stderr.read()[-2000:]}")
        yield run
    finally:
        try:
            out, err = proc.communicate(input="", timeout=60)
            last = out.strip().splitlines()[-1] if out.strip() else "{}"
            found = json.loads(last)
            run.verdicts = {str(k): v is True for k, v in found.items()} if isinstance(found, dict) else {}
            run.log = err[-5000:]
        except (subprocess.TimeoutExpired, ValueError):
            run.verdicts = {}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            shutil.rmtree(folder, ignore_errors=True)


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


def describe_errors(nb: dict, res: Result) -> list[str]:
    """Status from the errors of the autograded notebook (a cell timed out, the kernel died)."""
    errs = _errors(nb)
    if res.status == "graded" and ("CellTimeoutError" in errs or "DeadKernelError" in errs):
        res.status = "timed out" if "CellTimeoutError" in errs else "crashed"
        ename = "CellTimeoutError" if res.status == "timed out" else "DeadKernelError"
        where = next((f"cell {i + 1}" + (f" ({gid})" if (gid := c.get("metadata", {}).get("nbgrader", {})
                                                         .get("grade_id")) else "")
                      for i, c in enumerate(nb.get("cells", []))
                      for o in c.get("outputs", []) if o.get("ename") == ename), "a cell")
        return [f"{where} {'ran past the per-cell time limit' if res.status == 'timed out' else 'killed the kernel'}"]
    return [f"{len(errs)} cell(s) raised errors"] if errs else []


def enforce_verdict(root: Path, res: Result, verdict: integrity.Verdict) -> None:
    """No point without proof: a graded cell that scored without its seal, or any evidence
    of tampering, sets the whole notebook to 0 (gradebook included, so feedback agrees)."""
    unsealed = [name for name, score, _ in res.cells if score > 0 and name not in verdict.sealed]
    unjudged = [name for name, score, _ in res.cells if score > 0 and verdict.judged.get(name) is False]
    evidence = verdict.evidence + [f"{name}: scored without proof that its checks ran" for name in unsealed] \
        + [f"{name}: scored although its hidden checks did not pass in the judge" for name in unjudged]
    if not evidence or res.status in ("missing", "unreadable"):
        return
    res.status = "tampered"
    res.detail = "; ".join(evidence[:5]) + (f" (+{len(evidence) - 5} more)" if len(evidence) > 5 else "")
    res.score = 0.0
    res.cells = [(name, 0.0, m) for name, _, m in res.cells]
    zero_grades(root, res)


def zero_grades(root: Path, res: Result) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            sub = gb.find_submission_notebook(res.notebook, res.notebook, res.student)
        except MissingEntry:
            return
        for g in sub.grades:
            g.auto_score, g.manual_score = 0.0, None
        gb.db.commit()


def write_feedback(job: Job, root: Path, results: list[Result]) -> None:
    for res in results:
        if (root / "autograded" / job.sid / res.notebook).exists():
            nbgrader(["generate_feedback", res.notebook, "--student", job.sid, "--force"], cwd=root)
            fb = root / "feedback" / job.sid / res.notebook / f"{res.notebook}.html"
            if fb.exists():
                (job.out / "feedback" / job.sid).mkdir(parents=True, exist_ok=True)
                shutil.copy(fb, job.out / "feedback" / job.sid / f"{res.notebook}.html")


def _read_scores(root: Path, results: list[Result]) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for res in results:
            nb = gb.find_notebook(res.notebook, res.notebook)
            res.max_score = float(nb.max_score)
            try:
                sub = gb.find_submission_notebook(res.notebook, res.notebook, res.student)
            except MissingEntry:
                continue
            res.score = float(sub.score)  # partial credit survives a timed-out cell
            res.cells = [(g.name, float(g.score), float(g.max_score)) for g in sub.grades]


def grade(submissions: Path, out: Path, jobs: int = 1, chapters: list[str] | None = None,
          timeout: float = 900.0, seed: int | None = None, backend: str = "threads",
          scheduler: str | None = None, quiet: bool = False) -> list[Result]:
    """Grade every submission; `backend` "threads" runs `jobs` students at once here,
    "dask" sends one task per student to a dask.distributed cluster (a local one with
    `jobs` workers, or the scheduler at `scheduler`; workers must see the same files)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="workbook-grade-") as tmp:
        scratch = Path(tmp)
        students = collect(Path(submissions), scratch)
        if chapters is None:  # the chapters anybody handed in
            names = {p.stem for f in students.values() for p in f.rglob("*.ipynb")}
            chapters = [c for c in authoring.chapter_names() if c in names] or authoring.chapter_names()
        template = scratch / "template"
        known = make_template(template, chapters)
        # PYTHONWARNINGS: nbgrader scores a test cell 0 for any stderr, and a library
        # warning is not a learner's mistake.
        secret = seed if seed is not None else os.environ.get("WORKBOOK_GRADING_SECRET", "20261123")
        env_extra = {"WORKBOOK_PROFILE": "smoke", "WORKBOOK_OFFLINE": "1",
                     "WORKBOOK_HIDDEN_SEED": str(secret), "MPLBACKEND": "Agg",
                     "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1",
                     "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, jobs)))}
        results: list[Result] = []
        bad_ids = {s: f for s, f in students.items() if not STUDENT_ID.match(s)}
        for sid in bad_ids:
            results += [Result(sid, ch, status="unreadable",
                               detail="student folder name must be letters, digits, '.', '_' or '-'")
                        for ch in chapters]
        work = [Job(sid, folder, known, template, scratch / "students", out, env_extra, timeout)
                for sid, folder in students.items() if sid not in bad_ids]
        for batch in run_jobs(work, jobs, backend, scheduler):
            results += batch
    results.sort(key=lambda r: (r.student, r.notebook))
    write_reports(results, out)
    if not quiet:
        print_summary(results, time.time() - t0)
    return results


BACKENDS = ("threads", "dask")


def run_jobs(work: list[Job], jobs: int, backend: str, scheduler: str | None) -> list[list[Result]]:
    """grade_student for every job, in job order."""
    if backend == "threads":
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(grade_student, work))
    if backend == "dask":
        from distributed import Client, LocalCluster

        if scheduler:
            with Client(scheduler) as client:
                return client.gather(client.map(grade_student, work, pure=False))
        with LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            return client.gather(client.map(grade_student, work, pure=False))
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def write_reports(results: list[Result], out: Path) -> None:
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "score", "max_score", "status", "detail"])
        for r in results:
            w.writerow([r.student, r.notebook, f"{r.score:g}", f"{r.max_score:g}", r.status,
                        re.sub(r"(; )?graded in [0-9.]+ s", "", r.detail)])
    write_class_report(results, out)
    with open(out / "cells.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "cell", "score", "max_score"])
        for r in results:
            for name, s, m in r.cells:
                w.writerow([r.student, r.notebook, name, f"{s:g}", f"{m:g}"])


def print_summary(results: list[Result], seconds: float) -> None:
    students = sorted({r.student for r in results})
    print(f"Graded {len(students)} student(s), {len(results)} notebook(s) in {seconds:.1f} s")
    for nbname in sorted({r.notebook for r in results}):
        rows = [r for r in results if r.notebook == nbname]
        counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
        mean = sum(r.score for r in rows) / len(rows)
        print(f"  {nbname}: mean {mean:.2f} / {rows[0].max_score:g}; "
              + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for r in results:
        if r.status != "graded":
            print(f"  ! {r.student}/{r.notebook}: {r.status} ({html.unescape(r.detail)})")


def write_class_report(results: list[Result], out: Path) -> None:
    """report.html (score histogram, per-exercise pass rates, frequent mistakes, problem
    submissions) and report.csv (per-exercise pass rates) for the instructor."""
    import base64
    import io
    from collections import Counter

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["<!doctype html><meta charset=utf-8><title>class report</title><h1>Class report</h1>"]
    rows = []
    for nbname in sorted({r.notebook for r in results}):
        mine = [r for r in results if r.notebook == nbname]
        graded = [r for r in mine if r.status == "graded"]
        fig, ax = plt.subplots(figsize=(5, 2.8))
        ax.hist([r.score for r in mine], bins=min(20, int(mine[0].max_score) + 1 or 1),
                range=(0, mine[0].max_score or 1))
        ax.set(title=f"{nbname}: scores of {len(mine)} submissions", xlabel="score", ylabel="students")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        parts.append(f"<h2>{nbname}</h2><img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>")
        parts.append("<table border=1 cellpadding=4><tr><th>exercise</th><th>full marks</th><th>pass rate</th></tr>")
        cells = sorted({c for r in graded for c, _, _ in r.cells})
        for cell in cells:
            scores = [(s, m) for r in graded for c, s, m in r.cells if c == cell]
            passed = sum(s >= m for s, m in scores)
            rate = passed / len(scores) if scores else 0.0
            rows.append([nbname, cell, passed, len(scores), f"{rate:.3f}"])
            parts.append(f"<tr><td>{cell}</td><td>{passed}/{len(scores)}</td><td>{rate:.0%}</td></tr>")
        parts.append("</table><h3>Most frequent diagnosed mistakes</h3><ol>")
        counts = Counter(d for r in mine for d in r.diagnoses)
        parts += [f"<li>{n} x <b>{html.escape(cell)}</b>: {html.escape(text)}</li>"
                  for (cell, text), n in counts.most_common(10)]
        parts.append("</ol><h3>Submissions that did not run to the end</h3><ul>")
        parts += [f"<li>{html.escape(r.student)}: {r.status} ({html.escape(r.detail)})</li>"
                  for r in mine if r.status != "graded"]
        parts.append("</ul>")
    (out / "report.html").write_text("\n".join(parts))
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "exercise", "full_marks", "graded", "pass_rate"])
        w.writerows(rows)
