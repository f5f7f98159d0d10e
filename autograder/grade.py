"""Grade a folder of submissions end to end.

    python -m autograder grade SUBMISSIONS --out DIR [--jobs N] [--notebooks 01_autoencoders ...]

SUBMISSIONS is a folder with one sub-folder per student (`SUBMISSIONS/<student>/NN_topic.ipynb`),
a `<student>.zip` of such a sub-folder, or a .zip of the whole folder.

Each student is graded in a course root of their own, outside the repository, copied from
a template that holds the config, the instructor notebooks and a gradebook in which
`nbgrader generate_assignment` registered every chapter. So every run starts from a clean
gradebook, students cannot touch each other's grades, and `--jobs N` grades N students at
once with results identical to a serial run.

Intake (autograder/intake.py) copies every notebook, as a regular file only, into
grader-only staging before anything reads it and validates it; a preflight grades the
instructor notebook (full marks) and the blank one (zero) in the same sandbox before any
student. Every stage of one submission is guarded: it can cost that submission's row,
never the run.

Writes DIR/grades.csv (student, notebook, score, max_score, status, detail), DIR/cells.csv
(one row per graded cell), DIR/timings.csv (seconds per stage, autograder/ledger.py),
DIR/feedback/<student>/<notebook>.html and prints a summary; all of it first into the run's
private folder: a student's pages, logs and state (DIR/.state) are copied to DIR when that
student is done, the CSVs and the class report at the end (autograder/outputs.py makes CSV
cells and HTML pages safe to open). A later run into the same DIR resumes it: rows whose
key (submission content, course version, settings, secret) is unchanged are kept
(`--only`, `--changed`, `--fresh`: `grade`). Exit code 0 when every submission was graded,
whatever the scores.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import authoring, integrity, ledger, outputs, sandbox
from .build import REPO, make_course_root, nbgrader, tool_env
from .checknames import JUDGED_CALL

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
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
    messages: dict[str, str] = field(default_factory=dict)  # grade_id -> its first error, short
    timings: dict[str, float] = field(default_factory=dict)  # stage (ledger.STAGES) -> seconds
    where: dict = field(default_factory=dict)  # host, pid (the grading process), uid (the kernel's), confined
    reused: bool = False  # kept from an earlier run into the same OUT (its key unchanged)
    written: list[tuple[str, float, str]] = field(default_factory=list)  # (grade_id, points, the answer)


# ----------------------------------------------------------------------------- inputs
# Intake (autograder/intake.py) copies every notebook into grader-only staging, trusting
# nothing about the submission; its names stay importable from here.
from .intake import (MAX_NOTEBOOK_BYTES, MAX_ZIP_BYTES, IntakeError, Submission,  # noqa: E402,F401
                     check_notebook, collect, learner_text, parse_notebook, private_dir, read_regular)


# ----------------------------------------------------------------------------- grading

def make_template(root: Path, chapters: list[str]) -> dict[str, "Chapter"]:
    """A course root whose gradebook knows every chapter (generate_assignment run once),
    made from the instructor notebooks with a seal line appended to every graded cell
    (see autograder/integrity.py). Returns what the grader checks each notebook against."""
    make_course_root(root, chapters)
    known = {}
    for ch in chapters:
        known[ch] = Chapter(ch, add_seals(root / "source" / ch / f"{ch}.ipynb"),
                            written=written_cells(root / "source" / ch / f"{ch}.ipynb"))
        r = nbgrader(["generate_assignment", ch, "--force"], cwd=root)
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {ch} failed:\n{r.stderr[-3000:]}")
        known[ch].protected = protected_lines(ch, root / "source" / ch / f"{ch}.ipynb",
                                              root / "release" / ch / f"{ch}.ipynb")
        release = root / "release" / ch / f"{ch}.ipynb"
        public = "\n".join(_source(c) for c in json.loads(release.read_text())["cells"]) if release.exists() else ""
        known[ch].fragments = outputs.fragments(known[ch].protected, public)
    shutil.rmtree(root / "release", ignore_errors=True)
    return known


def written_cells(path: Path) -> dict[str, tuple[float, str]]:
    """The manually graded (written) answer cells of a notebook: grade_id -> (points, text).
    In the instructor notebook the text is the model answer and rubric."""
    out = {}
    for cell in json.loads(path.read_text())["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "markdown" and meta.get("grade") and meta.get("solution") and meta.get("grade_id"):
            out[meta["grade_id"]] = (float(meta.get("points", 0)), _source(cell))
    return out


@dataclass
class Chapter:
    name: str
    locked: dict[str, tuple[str, str]]         # graded cell -> (locked source, seal nonce)
    protected: frozenset[str] = frozenset()     # lines that must never reach feedback
    fragments: frozenset[str] = frozenset()     # ... nor any 40-character run of their code
    written: dict[str, tuple[float, str]] = field(default_factory=dict)  # written answer cell -> (points, model answer)

    @property
    def judged(self) -> dict[str, list[str]]:
        """graded cell -> the verdicts (`judge.verdict_key`) its hidden block asks the judge
        for (every hidden block calls `_judged`: tests/test_build.py)."""
        return {gid: [f"{n}:{q}" if q else n for n, q in JUDGED_CALL.findall(src)]
                for gid, (src, _) in self.locked.items() if JUDGED_CALL.search(src)}

    @property
    def judge_cells(self) -> dict[str, dict]:
        """What the judge admits: one-time token -> {cell, the checks its hidden block asks for}."""
        return {m[1]: {"cell": gid, "checks": self.judged.get(gid, [])}
                for gid, (src, _) in self.locked.items() if (m := TOKEN_CALL.search(src))}


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def add_seals(path: Path) -> dict[str, tuple[str, str]]:
    """Append `seal(grade_id, nonce)` in a hidden block to every graded code cell of the
    grader's copy of an instructor notebook; a fresh random nonce per cell and run. A cell
    whose hidden block asks the judge (`_judged`) also gets, as that block's first line, a
    fresh random one-time token (`remote.cell_token`) the judge admits its checks with."""
    nb = json.loads(path.read_text())
    locked = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        nonce, src = secrets.token_hex(8), _source(cell)
        if JUDGED_CALL.search(src):
            src = src.replace(HIDDEN_BEGIN, HIDDEN_BEGIN + token_call(secrets.token_hex(16)) + "\n", 1)
        cell["source"] = (src.rstrip("\n") + "\n" + HIDDEN_BEGIN
                          + integrity.seal_call(meta["grade_id"], nonce) + "\n### END HIDDEN TESTS")
        locked[meta["grade_id"]] = (cell["source"], nonce)
    path.write_text(json.dumps(nb, indent=1))
    return locked


HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS\n"
TOKEN_CALL = re.compile(r'_wb_token\("([0-9a-f]{32})"\)')


def token_call(token: str) -> str:
    """The line that hands a graded test cell's one-time token to `remote.judged`."""
    return f'from autograder.kernel_side import cell_token as _wb_token; _wb_token("{token}")'


def student_secret(run_secret: str, sid: str, notebook: str, content: bytes = b"") -> str:
    """The grading secret of one student's notebook: the hidden inputs differ per student,
    notebook and run, and are reproduced by the same run secret (`grade --secret`, a
    resumed run). With `content` (the notebook as handed in) they differ per version of
    the notebook too: a resubmission regraded under the run's secret (`--changed`, `--only`)
    meets inputs other than those the feedback of the earlier version showed."""
    if len(run_secret) < 32:
        raise ValueError("no run secret: grading needs one (new_run_secret)")
    message = f"{sid}/{notebook}" + (f"/{hashlib.sha256(content).hexdigest()}" if content else "")
    return hmac.new(bytes.fromhex(run_secret), message.encode(), hashlib.sha256).hexdigest()


def new_run_secret(given: str | None) -> str:
    """The run's secret: `given` (hex, for an exact regrade) or a fresh random one."""
    if given is None:
        return secrets.token_hex(32)
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2}){16,}", given):
        raise ValueError("--secret must be hex digits (at least 32), as stored in OUT/.secret")
    return given.lower()


def store_run_secret(out: Path, run_secret: str) -> Path:
    """OUT/.secret (mode 0600, grader only): regrade this run exactly with `--secret`."""
    path = out / ".secret"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(run_secret + "\n")
    return path


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


def _messages(nb: dict) -> dict[str, str]:
    """grade_id -> `Error: message` of its first error (as feedback shows it), short."""
    found = {}
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if gid and gid not in found and out.get("output_type") == "error":
                found[gid] = learner_text(f"{out.get('ename', '')}: {out.get('evalue', '')}", 300)
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
    outputs.plain_outputs(nb)  # learner HTML/JavaScript/widgets are shown as text, never live
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


OUTPUT_KEEP = 100_000   # bytes kept of the start and of the end of a grading command's output


class CappedReader:
    """Reads a pipe to its end in a thread, keeping the first and the last OUTPUT_KEEP
    bytes and counting what it drops, so a command that prints gigabytes costs no memory."""

    def __init__(self, pipe):
        import threading

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
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_limits)
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


def output_text(out: dict) -> str:
    """Every piece of text an output shows in feedback (stream, error name and message:
    `sanitize_for_feedback` drops tracebacks; every mime type of its data), so markup
    cannot carry what plain text may not."""
    parts = [integrity._join(out.get("text", "")), str(out.get("ename", "")), str(out.get("evalue", ""))]
    data = out.get("data", {})
    if isinstance(data, dict):
        parts += [v if isinstance(v, str) else "".join(map(str, v)) if isinstance(v, list) else json.dumps(v)
                  for v in data.values()]
    return "\n".join(p for p in parts if p)


def scrub_leaks(nb: dict, protected: frozenset[str], fragments: frozenset[str] = frozenset()) -> int:
    """Replace every output that contains a line of the solutions or hidden checks, or
    any run of `outputs.FRAGMENT` characters of their code inside a longer line;
    returns how many were replaced."""
    count = 0
    for cell in nb.get("cells", []):
        for i, out in enumerate(cell.get("outputs", [])):
            text = output_text(out)
            if any(ln.strip() in protected for ln in text.splitlines()) or outputs.leaks_fragment(text, fragments):
                cell["outputs"][i] = {"output_type": "stream", "name": "stdout", "text": LEAK_NOTE}
                count += 1
    return count


@dataclass
class Job:
    """Everything one student's grading needs; plain data, so it can go to another process."""
    sid: str
    submission: Submission
    chapters: dict[str, Chapter]
    template: Path
    work: Path
    out: Path
    env_extra: dict
    timeout: float
    secret: str = ""   # the run's grading secret (grader only; the judge gets student_secret of it)
    private: tuple = ()  # the grader's folders (submissions, outputs) covered in the kernel's view
    course: str = ""     # the grader's ledger.code_version(): a worker with other course or code refuses
    grader: str = ""     # host:pid of the grader (its own threads need no check)


FEEDBACK_TIMEOUT = 300.0  # seconds for one notebook's generate_feedback


def grade_student(job: Job) -> list[Result]:
    """One row per chapter for this student, whatever the submission does: every stage
    (intake checks, grading, scores, verdict, feedback) of every notebook is guarded, so a
    failure costs that notebook (status `crashed`, the traceback in the log), never the run."""
    results = [Result(job.sid, ch) for ch in job.chapters]
    watch = {res.notebook: ledger.Stopwatch() for res in results}
    try:
        if job.course and job.grader != f"{os.uname().nodename}:{os.getpid()}" and ledger.code_version() != job.course:
            raise RuntimeError(f"this worker ({os.uname().nodename}) has another version of the course than the "
                               "grader (instructor sources, hidden checks, solutions or grader code differ)")
        root = job.work / job.sid
        with _shared(watch, "setup"):
            shutil.copytree(job.template, root)
        verdicts = {}
        for res in results:
            src = None
            with _guard(job, res, "checking the notebook"), watch[res.notebook]("intake"):
                src = _intake_row(job.submission, res, job.chapters)
            if src is not None:
                with _guard(job, res, "grading"):
                    verdicts[res.notebook] = autograde(job, root, res, src, watch[res.notebook])
        with _guard(job, None, "reading the scores", results), _shared(watch, "scores"):
            _read_scores(root, results, {ch: set(c.written) for ch, c in job.chapters.items()})
        for res in results:
            if res.notebook in verdicts:
                with _guard(job, res, "checking the verdict"), watch[res.notebook]("integrity"):
                    enforce_verdict(root, res, verdicts[res.notebook])
        write_feedback(job, root, results, watch)
    except Exception:  # noqa: BLE001 - the last net: the row says so, the run goes on
        _grader_failed(job, results, "grading this submission")
    for res in results:
        res.detail = learner_text(res.detail, 2000)
        res.timings = watch[res.notebook].seconds
        res.where = {"host": os.uname().nodename, "pid": os.getpid(), **res.where}
    return results


@contextmanager
def _shared(watch: dict[str, "ledger.Stopwatch"], stage: str):
    """A stage done once for all of a student's notebooks: its seconds split evenly."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        for w in watch.values():
            w.add(stage, (time.perf_counter() - t0) / max(1, len(watch)))


def _intake_row(sub: Submission, res: Result, chapters) -> Path | None:
    """The staged notebook to grade for this row, or None with status and detail set."""
    src = sub.notebooks.get(f"{res.notebook}.ipynb")
    if sub.problem:
        res.status, res.detail = "unreadable", sub.problem
    elif src is None and f"{res.notebook}.ipynb" in sub.refused:
        res.status, res.detail = "unreadable", sub.refused[f"{res.notebook}.ipynb"]
    elif src is None:
        others = sorted(learner_text(n, 60) for n in sub.notebooks if not any(n == f"{c}.ipynb" for c in chapters))
        links = sorted(why for name, why in sub.refused.items() if not name.endswith(".ipynb"))[:3]
        res.status = "missing"
        res.detail = "; ".join([f"no {res.notebook}.ipynb"] + ([f"found {', '.join(others[:10])} (renamed?)"] if others else [])
                               + links)
    elif bad := check_notebook(src):
        res.status, res.detail = "unreadable", bad
    else:
        return src
    return None


@contextmanager
def _guard(job: Job, res: Result | None, stage: str, results: list[Result] | None = None):
    try:
        yield
    except Exception:  # noqa: BLE001 - one notebook's failure is that notebook's row
        _grader_failed(job, [res] if res else results or [], stage)


def _grader_failed(job: Job, results: list[Result], stage: str) -> None:
    """Rows of a notebook the grader itself failed on: status `crashed`, the traceback in
    logs/<student>/grader-error.log (the row names no internals)."""
    import traceback

    log = job.out / "logs" / job.sid / "grader-error.log"
    with contextlib.suppress(OSError):
        private_dir(log.parent)
        with open(log, "a") as f:
            f.write(f"--- {stage}\n{traceback.format_exc()}\n")
    for res in results:
        if res.status in ("graded", "timed out"):
            res.status, res.score, res.cells = "crashed", 0.0, []
            res.detail = f"the grader failed while {stage}; see logs/{job.sid}/grader-error.log"


def autograde(job: Job, root: Path, res: Result, src: Path, watch: "ledger.Stopwatch | None" = None) -> integrity.Verdict:
    """Run nbgrader autograde on one notebook in a sandbox slot, then check and clean the
    autograded notebook. Sets status and detail (and where it ran); returns the integrity
    verdict. `watch` gets the seconds of its stages (ledger.STAGES)."""
    watch = watch or ledger.Stopwatch()
    sid, ch = job.sid, res.notebook
    t_intake = time.perf_counter()
    dst = root / "submitted" / sid / ch
    dst.mkdir(parents=True)
    handed_in = read_regular(src)
    nb_in, notes = drop_duplicated_locked_cells(parse_notebook(handed_in)[0])
    (dst / f"{ch}.ipynb").write_text(json.dumps(nb_in))
    key, context = secrets.token_bytes(32), f"{sid}/{ch}"
    key_file = root / f".seal-{ch}"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    t0 = time.time()
    watch.add("intake", time.perf_counter() - t_intake)
    judged = job.chapters[ch].judged
    with sandbox.slot() as slot, judge_for(slot, job.chapters[ch], job.env_extra,
                                           student_secret(job.secret, sid, ch, handed_in)) as judge:
        watch.add("judge_start", judge.started)
        res.where = {"uid": slot.uid, "confined": int(slot.confined)}
        extra = dict(job.env_extra)
        extra.pop("WORKBOOK_HIDDEN_SEED", None)  # the hidden inputs' secret stays with the judge
        env = tool_env({**extra, **sandbox.kernel_env(slot, key_file, context,
                                                      sandbox.write_kernelspec(root / ".jupyter"),
                                                      judge=judge.socket,
                                                      private=tuple(Path(p) for p in job.private))})
        env.pop("WORKBOOK_HIDDEN_SEED", None)
        cmd = [sys.executable, "-m", "nbgrader", "autograde", ch, "--student", sid, "--force",
               f"--Execute.kernel_name={sandbox.KERNEL_NAME}"]
        t_run = time.perf_counter()
        code, log = run_confined(sandbox.wrap_command(cmd), cwd=root, env=env, timeout=job.timeout)
        t_done = time.perf_counter()
    t_check = time.perf_counter()
    key_file.unlink(missing_ok=True)
    (private_dir(job.out / "logs" / sid) / f"{ch}.log").write_text(log)
    graded = root / "autograded" / sid / ch / f"{ch}.ipynb"
    verdict = integrity.Verdict()
    if code is None:
        res.status, res.detail = "timed out", f"grading took more than {job.timeout:.0f} s"
    elif not graded.exists():
        errors = [ln for ln in log.splitlines() if "ERROR" in ln or "Kernel died" in ln]
        res.status = "crashed"
        res.detail = "the notebook stopped the grader: " + (learner_text(errors[0][-200:], 200) if errors else "no log")
    if not graded.exists():
        watch.add("nbgrader_start", t_done - t_run)
        return verdict
    nb = json.loads(graded.read_text())
    split_autograde(watch, nb, t_run, t_done)
    if res.status == "graded" and (code < 0 or not any(c.get("execution_count") for c in nb["cells"])):
        res.status = "crashed"
        res.detail = (f"the grader was killed (signal {-code})" if code < 0 else "the notebook was not executed")
    verdict = integrity.verify_notebook(nb, job.chapters[ch].locked, key, context)
    apply_judge(nb, verdict, judge, judged)
    if removed := cap_outputs(nb):
        notes.append(f"output truncated ({removed:,} characters over the limit)")
    if leaks := scrub_leaks(nb, job.chapters[ch].protected, job.chapters[ch].fragments):
        notes.append(f"{leaks} output(s) with grader-only material removed")
    res.diagnoses = _diagnoses(nb)
    res.messages = _messages(nb)
    answers = written_cells_of(nb)
    res.written = [(gid, points, learner_text(answers.get(gid, ""), 10_000))
                   for gid, (points, _) in job.chapters[ch].written.items()]
    graded.write_text(json.dumps(nb))
    sanitize_for_feedback(graded)
    res.detail = "; ".join([d for d in [res.detail, *notes, *describe_errors(nb, res)] if d]
                           + [f"graded in {time.time() - t0:.1f} s"])
    watch.add("integrity", time.perf_counter() - t_check)
    return verdict


def split_autograde(watch: "ledger.Stopwatch", nb: dict, t_run: float, t_done: float) -> None:
    """`nbgrader autograde`'s seconds as nbgrader_start (to the first cell's execution, the
    kernel's start included), kernel (first cell to last reply, from nbclient's timing
    metadata) and nbgrader_finish; all of it nbgrader_start when the notebook has no timing."""
    from datetime import datetime

    stamps = []
    for cell in nb.get("cells", []):
        ex = cell.get("metadata", {}).get("execution", {})
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            stamps += [datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp() for k, v in ex.items()
                       if k in ("iopub.execute_input", "shell.execute_reply")]
    total = t_done - t_run
    # perf_counter and the wall clock differ by a constant: map the cells' span onto the run's;
    # a stamp from outside it (a cell not run now keeps what the submission had) does not count
    started = time.time() - (time.perf_counter() - t_run)
    stamps = [t for t in stamps if started - 1.0 <= t <= started + total + 1.0]
    if not stamps:
        watch.add("nbgrader_start", total)
        return
    kernel = min(max(0.0, max(stamps) - min(stamps)), total)
    before = min(max(0.0, min(stamps) - started), total - kernel)
    watch.add("nbgrader_start", before)
    watch.add("kernel", kernel)
    watch.add("nbgrader_finish", total - kernel - before)


@dataclass
class JudgeRun:
    socket: Path | None = None
    verdicts: dict = field(default_factory=dict)   # verdict key -> passed (the first verdict)
    reports: list = field(default_factory=list)    # {cell, check, passed, report}: the full reports
    evidence: list = field(default_factory=list)   # requests the judge refused
    log: str = ""
    started: float = 0.0                           # seconds until it said `ready`


@contextmanager
def judge_for(slot, chapter: "Chapter", env_extra: dict, secret: str):
    """A judge process (`autograder.judge`) for one notebook: started before nbgrader,
    listening on a socket only the slot's user may use, given on its standard input this
    notebook's grading `secret` and the chapter's one-time cell tokens (never in an
    environment, argument or file the kernel could read); on exit its record (verdicts,
    full reports, refused requests) is read from a grader-only file and it is stopped.
    Yields a JudgeRun that fills in on exit."""
    run = JudgeRun()
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="workbook-judge-"))
    os.chmod(folder, 0o711)
    run.socket = folder / "judge.sock"
    record = folder / "record.json"   # written by the judge, mode 0600
    uid, gid = (slot.uid, slot.gid) if slot.confined else (-1, -1)
    env = tool_env(env_extra)
    env.pop("WORKBOOK_HIDDEN_SEED", None)
    proc = subprocess.Popen([sys.executable, "-m", "autograder.judge", "--socket", str(run.socket),
                             "--chapter", chapter.name, "--uid", str(uid), "--gid", str(gid)],
                            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=sandbox.judge_preexec)
    try:
        proc.stdin.write(json.dumps({"secret": secret, "reports": str(record),
                                     "cells": chapter.judge_cells}) + "\n")
        proc.stdin.flush()
        ready = proc.stdout.readline().strip()  # after its imports (a few seconds)
        if ready != "ready":
            raise RuntimeError(f"the judge did not start: {proc.stderr.read()[-2000:]}")
        run.started = time.perf_counter() - t0
        yield run
    finally:
        try:
            _out, err = proc.communicate(timeout=60)   # closes stdin: the judge writes its record
            found = json.loads(record.read_text())
            run.verdicts = {str(k): v is True for k, v in found["verdicts"].items()}
            run.reports = [r for r in found["reports"] if isinstance(r, dict)]
            run.evidence = [str(e) for e in found["evidence"]]
            run.log = err[-5000:]
        except (subprocess.TimeoutExpired, OSError, ValueError, KeyError, TypeError, AttributeError):
            run.verdicts = {}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            shutil.rmtree(folder, ignore_errors=True)


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
    """No point without proof: a graded cell that scored without its seal or without its
    checks' passing verdicts in the judge, or any evidence of tampering (including a request
    the judge refused: a check asked twice, without its cell's token or for another cell),
    sets the whole notebook to `tampered`, 0 (gradebook included, so feedback agrees)."""
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


def write_feedback(job: Job, root: Path, results: list[Result], watch: dict | None = None) -> None:
    """Feedback pages, hardened (`outputs.harden_page`: nothing in them runs or loads),
    into the run's private output folder; a failure or time-out costs only the page."""
    for res in results:
        if not (root / "autograded" / job.sid / res.notebook).exists():
            continue
        with (watch[res.notebook]("feedback") if watch else contextlib.nullcontext()):
            _feedback_page(job, root, res)


def _feedback_page(job: Job, root: Path, res: Result) -> None:
    """One notebook's page; a failure or time-out costs only the page (a note in its row)."""
    try:
        add_model_answers(root / "autograded" / job.sid / res.notebook / f"{res.notebook}.ipynb",
                          job.chapters[res.notebook].written)
        generate_feedback(root, res.notebook, job.sid)
        fb = root / "feedback" / job.sid / res.notebook / f"{res.notebook}.html"
        if fb.exists():
            dest = private_dir(job.out / "feedback" / job.sid) / f"{res.notebook}.html"
            dest.write_text(outputs.harden_page(fb.read_text(encoding="utf-8", errors="replace")))
    except Exception:  # noqa: BLE001 - no page, a note; the grade stands
        res.detail = "; ".join(d for d in [res.detail, "no feedback page (the feedback step failed)"] if d)
        with contextlib.suppress(OSError):
            with open(private_dir(job.out / "logs" / job.sid) / "grader-error.log", "a") as f:
                import traceback
                f.write(f"--- feedback {res.notebook}\n{traceback.format_exc()}\n")


def written_cells_of(nb: dict) -> dict[str, str]:
    """grade_id -> text of each markdown answer cell of a submitted notebook."""
    return {meta["grade_id"]: _source(c) for c in nb.get("cells", [])
            if c.get("cell_type") == "markdown" and (meta := c.get("metadata", {}).get("nbgrader", {})).get("grade_id")}


def add_model_answers(graded: Path, written: dict[str, tuple[float, str]]) -> None:
    """After each written answer of the graded notebook, the model answer and rubric (for the
    feedback page only: the learner has handed in and is shown them after grading)."""
    if not written or not graded.exists():
        return
    nb = json.loads(graded.read_text())
    cells = []
    for c in nb["cells"]:
        cells.append(c)
        gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if c.get("cell_type") == "markdown" and gid in written:
            cells.append({"cell_type": "markdown", "metadata": {}, "id": f"model-{gid}"[:64].replace("_", "-"),
                          "source": f"> **After grading: the model answer** (graded by your instructor, "
                                    f"{written[gid][0]:g} points)\n>\n" +
                                    "\n".join("> " + ln for ln in written[gid][1].splitlines())})
    nb["cells"] = cells
    graded.write_text(json.dumps(nb))


def generate_feedback(root: Path, notebook: str, sid: str, timeout: float = FEEDBACK_TIMEOUT) -> None:
    """`nbgrader generate_feedback` for one notebook, in a process of its own that is killed
    after `timeout`. The process is forked from a server that has imported nbgrader and
    nbconvert once per run and never sees a submission (`_feedback_server`), so each page
    starts from the same clean state without paying those imports again; where a process
    cannot have children of its own (a daemonic dask worker) it is `python -m nbgrader`."""
    ctx = _feedback_server()
    if ctx is None:
        nbgrader(["generate_feedback", notebook, "--student", sid, "--force"], cwd=root, timeout=timeout)
        return
    proc = ctx.Process(target=_feedback_child, args=(str(root), notebook, sid, tool_env()), daemon=True)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise TimeoutError(f"generate_feedback took more than {timeout:.0f} s")


FEEDBACK_PRELOAD = ["autograder.grade", "nbgrader.apps.nbgraderapp", "nbgrader.apps.generatefeedbackapp",
                    "nbgrader.converters.generate_feedback", "nbconvert.exporters.html"]
_feedback_lock = __import__("threading").Lock()
_feedback_ctx: list = []


def _feedback_server():
    """The run's forkserver context for feedback pages (None: use a plain subprocess)."""
    import multiprocessing

    if multiprocessing.current_process().daemon or os.environ.get("WORKBOOK_FEEDBACK_FORK") == "0":
        return None
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if getattr(main, "__file__", None) and not (spec and spec.name.endswith("__main__")):
        return None   # a script (or -m module) as main: multiprocessing would import it again in every child
    with _feedback_lock:
        if not _feedback_ctx:
            try:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(FEEDBACK_PRELOAD)
            except ValueError:
                ctx = None
            _feedback_ctx.append(ctx)
    return _feedback_ctx[0]


def _feedback_child(root: str, notebook: str, sid: str, env: dict) -> None:
    """In the forked process: nbgrader's own command line, from the course root (where it
    finds its config), its log discarded as the subprocess's was."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.chdir(root)
    os.environ.clear()
    os.environ.update(env)
    from nbgrader.apps.nbgraderapp import NbGraderApp

    sys.argv = ["nbgrader", "generate_feedback", notebook, "--student", sid, "--force"]
    NbGraderApp.launch_instance(argv=sys.argv[1:])


def _read_scores(root: Path, results: list[Result], written: dict[str, set[str]] | None = None) -> None:
    """Scores of the automatically graded cells. Written answers (manually graded cells) are
    left out of score and max_score: they are listed in written.csv for the instructor, and
    `export` adds the points awarded there."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for res in results:
            manual = (written or {}).get(res.notebook, set())
            nb = gb.find_notebook(res.notebook, res.notebook)
            res.max_score = float(nb.max_score) - sum(float(c.max_score) for c in nb.grade_cells if c.name in manual)
            try:
                sub = gb.find_submission_notebook(res.notebook, res.notebook, res.student)
            except MissingEntry:
                continue
            auto = [g for g in sub.grades if g.name not in manual]
            res.score = float(sum(g.score for g in auto))  # partial credit survives a timed-out cell
            res.cells = [(g.name, float(g.score), float(g.max_score)) for g in auto]


def grade(submissions: Path, out: Path, jobs: int = 1, chapters: list[str] | None = None,
          timeout: float = 900.0, secret: str | None = None, backend: str = "threads",
          scheduler: str | None = None, quiet: bool = False, preflight: bool = True,
          only: list[str] | None = None, changed: bool = False, fresh: bool = False) -> list[Result]:
    """Grade every submission; `backend` "threads" runs `jobs` students at once here,
    "dask" sends one task per student to a dask.distributed cluster (a local one with
    `jobs` workers, or the scheduler at `scheduler`; workers must see the same files).
    Hidden inputs come from a fresh random run secret (or `secret`, hex, to regrade a run
    exactly), stored in OUT/.secret (mode 0600) and, per student and notebook, derived
    for that notebook's judge only (student_secret).
    With `preflight`, the instructor notebook and the blank student notebook are graded
    first in the same sandbox: PreflightError unless they score full marks and zero.

    Resume and regrade: into an OUT that holds an earlier run (OUT/.state), the run secret
    is OUT/.secret's (unless `secret` is given) and a row whose key (`ledger.row_key`: the
    submission's content, the course version, the settings, the secret) is unchanged is
    kept, not graded again; `only` (student ids) regrades those students whatever their
    keys; `changed` insists on an earlier run and lists what changed; `fresh` forgets the
    earlier run (and its secret). Either way OUT ends as a full run would leave it.
    Each student's outputs are written into the run's private (0700) scratch folder and
    copied into `out` (0700) when that student is done, with its state, so an interrupted
    run loses only the students in progress; grades.csv, cells.csv, timings.csv and the
    class report are written at the end."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = ledger.State(out)
    if fresh:
        shutil.rmtree(state.folder, ignore_errors=True)
    earlier = state.students()
    if changed and not earlier:
        raise ValueError(f"--changed: {out} holds no earlier run to compare with")
    stored_secret = out / ".secret"
    if secret is None and earlier and stored_secret.exists():
        secret = stored_secret.read_text().strip()
    run_secret = new_run_secret(secret)
    if not stored_secret.exists() or stored_secret.read_text().strip() != run_secret:
        store_run_secret(out, run_secret)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="workbook-grade-") as tmp:
        scratch = Path(tmp)
        os.chmod(scratch, 0o700)
        staged_out = private_dir(scratch / "out")
        _warn_if_readable(Path(submissions), quiet)
        students = collect(Path(submissions), scratch)
        if unknown := sorted(set(only or ()) - set(students)):
            raise ValueError(f"--only: no submission of {', '.join(map(learner_text, unknown))} in {submissions}")
        if chapters is None:  # the chapters anybody handed in
            names = {n[:-len(".ipynb")] for sub in students.values() for n in [*sub.notebooks, *sub.refused]
                     if n.endswith(".ipynb")}
            chapters = [c for c in authoring.chapter_names() if c in names] or authoring.chapter_names()
        # PYTHONWARNINGS: nbgrader scores a test cell 0 for any stderr, and a library
        # warning is not a learner's mistake.
        env_extra = {"WORKBOOK_PROFILE": "smoke", "WORKBOOK_OFFLINE": "1", "WORKBOOK_PROGRESS": "0",
                     "MPLBACKEND": "Agg",
                     "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1",
                     "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, jobs)))}
        bad_ids = {s for s in students if not STUDENT_ID.match(s)}
        plan = plan_rows({s: sub for s, sub in students.items() if s not in bad_ids}, chapters, state,
                         settings={"timeout": timeout, "profile": env_extra["WORKBOOK_PROFILE"],
                                   "secret": ledger.secret_fingerprint(run_secret)},
                         force=set(only or ()))
        if changed and not quiet:
            print(describe_plan(plan), file=sys.stderr)
        todo = sorted({ch for p in plan.values() for ch in p.todo}, key=chapters.index)
        results: list[Result] = []
        for sid in bad_ids:
            results += [Result(learner_text(sid, 64), ch, status="unreadable",
                               detail="student folder name must be letters, digits, '.', '_' or '-'")
                        for ch in chapters]
        if todo:
            template = scratch / "template"
            known = make_template(template, todo)
            if preflight:
                run_preflight(known, template, scratch, env_extra, timeout, jobs, backend, scheduler, out, quiet,
                              run_secret)
            hidden = tuple(str(p.resolve()) for p in (Path(submissions), out))
            version = ledger.code_version()
            work = [Job(sid, students[sid], {ch: known[ch] for ch in p.todo}, template,
                        private_dir(scratch / "students"), staged_out, env_extra, timeout, run_secret, hidden,
                        version, f"{os.uname().nodename}:{os.getpid()}") for sid, p in plan.items() if p.todo]
            progress = ledger.Progress(len(work), quiet)

            def done(batch: list[Result]) -> None:
                sid = batch[0].student
                publish_student(staged_out, out, sid, plan[sid].todo, whole=not plan[sid].kept)
                record_student(state, plan[sid], batch)
                progress.finished(batch)

            try:
                batches = run_jobs(work, jobs, backend, scheduler, on_done=done)
            finally:
                progress.close()
            graded_now = {b[0].student: b for b in batches if b}
        else:
            graded_now = {}
        for sid, p in plan.items():
            results += sorted([*p.kept.values(), *graded_now.get(sid, [])], key=lambda r: chapters.index(r.notebook))
        results.sort(key=lambda r: (r.student, r.notebook))
        forget_students(out, state, set(earlier) - set(plan))
        t_report = time.perf_counter()
        write_reports(results, staged_out, earlier=out)
        share = (time.perf_counter() - t_report) / max(1, len(results))
        for r in results:
            if not r.reused:
                r.timings["report"] = share
        ledger.write_timings(results, staged_out / "timings.csv")
        for name in ("grades.csv", "cells.csv", "written.csv", "report.html", "report.csv", "timings.csv"):
            if (staged_out / name).exists():
                shutil.copyfile(staged_out / name, out / name)
    if not quiet:
        print_summary(results, time.time() - t0)
    return results


@dataclass
class Plan:
    """One student's rows in this run: kept from the earlier run, or to grade now."""
    keys: dict[str, str]                                  # notebook -> row key
    kept: dict[str, Result] = field(default_factory=dict)  # notebook -> the stored row
    todo: list[str] = field(default_factory=list)          # notebooks to grade
    why: dict[str, str] = field(default_factory=dict)      # notebook -> new, changed, forced


def plan_rows(students: dict[str, Submission], chapters: list[str], state: "ledger.State", settings: dict,
              force: set[str] = frozenset()) -> dict[str, Plan]:
    """Which rows an earlier run into the same OUT already holds (same key) and which to grade."""
    version = ledger.course_version()
    plans = {}
    for sid, sub in students.items():
        plan = plans[sid] = Plan({ch: ledger.row_key(sub, ch, chapters, version, settings) for ch in chapters})
        rows = state.load(sid)
        for ch in chapters:
            row = rows.get(ch) if isinstance(rows.get(ch), dict) else None
            if sid not in force and row and row.get("key") == plan.keys[ch]:
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    plan.kept[ch] = ledger.restored(row["result"], Result)
                    continue
            plan.todo.append(ch)
            plan.why[ch] = "forced" if sid in force else "changed" if row else "new"
    return plans


def describe_plan(plans: dict[str, Plan]) -> str:
    """What a regrade will do, for the instructor."""
    kept = sum(len(p.kept) for p in plans.values())
    rows = [f"  {sid}/{ch}: {p.why[ch]}" for sid, p in sorted(plans.items()) for ch in p.todo]
    return f"{len(rows)} notebook(s) to grade, {kept} unchanged and kept" + ("\n" + "\n".join(rows) if rows else "")


def record_student(state: "ledger.State", plan: Plan, batch: list[Result]) -> None:
    """Store a finished student's rows with their keys, except rows the grader itself failed
    on (a resumed run tries those again)."""
    sid = batch[0].student
    rows = {ch: v for ch, v in state.load(sid).items() if ch not in plan.todo}
    rows.update({r.notebook: {"key": plan.keys[r.notebook], "result": ledger.stored(r)} for r in batch
                 if not r.detail.startswith("the grader failed")})
    state.save(sid, rows)


def publish_student(staged: Path, out: Path, sid: str, notebooks: list[str], whole: bool) -> None:
    """Replace one student's feedback pages and logs of `notebooks` in `out` by this run's
    (a page that this run did not make is removed); with `whole`, the student's folders
    are this run's alone."""
    for kind in ("feedback", "logs"):
        dest = out / kind / sid
        if whole:
            shutil.rmtree(dest, ignore_errors=True)
        for ch in notebooks:
            (dest / f"{ch}.{'html' if kind == 'feedback' else 'log'}").unlink(missing_ok=True)
        src = staged / kind / sid
        if not src.is_dir():
            continue
        for f in sorted(src.iterdir()):
            private_dir(dest)
            if f.name == "grader-error.log" and not whole and (dest / f.name).exists():
                with open(dest / f.name, "a") as log:
                    log.write(f.read_text())
            else:
                shutil.copyfile(f, dest / f.name)


def forget_students(out: Path, state: "ledger.State", gone: set[str]) -> None:
    """Students of an earlier run who are no longer in SUBMISSIONS: their state and pages go."""
    for sid in gone:
        if STUDENT_ID.match(sid):
            state.forget(sid)
            shutil.rmtree(out / "feedback" / sid, ignore_errors=True)


def publish(staged: Path, out: Path) -> None:
    """Copy the run's outputs from its private folder into `out` (folders 0700)."""
    for src in sorted(staged.rglob("*")):
        dest = out / src.relative_to(staged)
        if src.is_dir():
            private_dir(dest)
        else:
            private_dir(dest.parent)
            shutil.copyfile(src, dest)


def _warn_if_readable(submissions: Path, quiet: bool) -> None:
    """Kernels run as other users: a submissions folder others can read is readable to them."""
    try:
        folder = submissions.resolve()
        open_to_all = all(p.stat().st_mode & 0o001 for p in [folder, *folder.parents]) \
            and folder.stat().st_mode & 0o004
    except OSError:
        return
    if open_to_all and not quiet and sandbox.capabilities().user:
        print(f"warning: {submissions} can be read by every user of this machine, the grading kernels'"
              " users included: make it private (chmod 700) before grading", file=sys.stderr)


# ----------------------------------------------------------------------------- preflight

class PreflightError(RuntimeError):
    """The grader fails its own reference: no student is graded."""


def run_preflight(known: dict[str, Chapter], template: Path, scratch: Path, env_extra: dict, timeout: float,
                  jobs: int, backend: str, scheduler: str | None, out: Path, quiet: bool,
                  run_secret: str = "") -> float:
    """Grade the instructor notebook and the blank student notebook of every chapter in the
    run's own sandbox, judge and template; raise PreflightError naming every cell that is
    off (the reference must get full marks, the blank zero). Returns the seconds it took."""
    t0 = time.time()
    home = private_dir(scratch / "preflight")
    refs = {"preflight-reference": lambda ch: REPO / "autograder" / "source" / ch / f"{ch}.ipynb",
            "preflight-blank": lambda ch: REPO / "course" / f"{ch}.ipynb"}
    work = []
    for sid, where in refs.items():
        sub = Submission(sid)
        folder = private_dir(home / "intake" / sid)
        for ch in known:
            copy = folder / f"{ch}.ipynb"
            copy.write_bytes(read_regular(where(ch)))
            sub.notebooks[copy.name] = copy
        work.append(Job(sid, sub, known, template, private_dir(home / "students"), private_dir(home / "out"),
                        env_extra, timeout, run_secret))
    reference, blank = run_jobs(work, min(max(jobs, 1), 2), backend, scheduler)
    seconds = time.time() - t0
    if problems := preflight_problems(reference, blank):
        publish(home / "out", out / "preflight")
        raise PreflightError("preflight failed, no student was graded (the grader itself is broken; logs in "
                             f"{out / 'preflight'}):\n  " + "\n  ".join(problems))
    if not quiet:
        print(f"preflight: reference full marks, blank zero, {len(known)} chapter(s), in {seconds:.1f} s")
    return seconds


def preflight_problems(reference: list[Result], blank: list[Result]) -> list[str]:
    """What is off: reference notebooks short of full marks (cells and their messages),
    blank notebooks above zero (cells), either not graded at all."""
    problems = []
    for r in reference:
        if r.status != "graded":
            problems.append(f"instructor notebook {r.notebook}: {r.status} ({r.detail})")
        elif r.max_score <= 0 or r.score < r.max_score:
            lost = [f"{c} {s:g}/{m:g}" + (f" ({r.messages[c]})" if c in r.messages else "")
                    for c, s, m in r.cells if s < m]
            problems.append(f"instructor notebook {r.notebook} scored {r.score:g}/{r.max_score:g}; lost: "
                            + ("; ".join(lost) or "no graded cell recorded"))
    for r in blank:
        if r.status != "graded":
            problems.append(f"blank student notebook {r.notebook}: {r.status} ({r.detail})")
        elif r.score > 0:
            problems.append(f"blank student notebook {r.notebook} scored {r.score:g} (should be 0): "
                            + ", ".join(f"{c} {s:g}/{m:g}" for c, s, m in r.cells if s > 0))
    return problems


BACKENDS = ("threads", "dask")


def run_jobs(work: list[Job], jobs: int, backend: str, scheduler: str | None,
             on_done=None) -> list[list[Result]]:
    """grade_student for every job, in job order; `on_done(results)` is called here, in the
    grader's process and thread, as each student finishes (in the order they finish)."""
    on_done = on_done or (lambda results: None)
    if backend == "threads":
        from concurrent.futures import as_completed

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(grade_student, job) for job in work]
            for fut in as_completed(futures):
                on_done(fut.result())
            return [f.result() for f in futures]
    if backend == "dask":
        from distributed import Client, LocalCluster

        if scheduler:
            with Client(scheduler) as client:
                return _dask_map(client, work, on_done)
        with LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            return _dask_map(client, work, on_done)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _dask_map(client, work: list[Job], on_done) -> list[list[Result]]:
    """One task per student (never retried elsewhere: a submission runs once)."""
    from distributed import as_completed

    futures = client.map(grade_student, work, pure=False, retries=0)
    for fut in as_completed(futures):
        on_done(fut.result())
    return client.gather(futures)


def write_reports(results: list[Result], out: Path, earlier: Path | None = None) -> None:
    """grades.csv, cells.csv, written.csv, report.html and report.csv (every CSV through
    `outputs.write_csv`: no cell is a spreadsheet formula)."""
    write_written(results, out, earlier)
    outputs.write_csv(out / "grades.csv", ["student", "notebook", "score", "max_score", "status", "detail"],
                      ([r.student, r.notebook, f"{r.score:g}", f"{r.max_score:g}", r.status,
                        re.sub(r"(; )?graded in [0-9.]+ s", "", r.detail)] for r in results))
    write_class_report(results, out)
    outputs.write_csv(out / "cells.csv", ["student", "notebook", "cell", "score", "max_score"],
                      ([r.student, r.notebook, name, f"{s:g}", f"{m:g}"] for r in results for name, s, m in r.cells))


WRITTEN_HEADER = ["student", "notebook", "question", "points", "answer", "awarded"]


def write_written(results: list[Result], out: Path, earlier: Path | None = None) -> None:
    """written.csv: every written answer, for the instructor to grade (fill `awarded`, then
    `python -m autograder export`). Points already awarded in an earlier run into the same
    folder are kept where the answer is unchanged."""
    import csv as _csv

    awarded = {}
    old = (earlier or out) / "written.csv"
    if old.exists():
        with contextlib.suppress(OSError, KeyError, _csv.Error):
            with open(old, newline="") as f:
                for row in _csv.DictReader(f):
                    awarded[(row["student"], row["notebook"], row["question"], row["answer"])] = row["awarded"]
    rows = []
    for r in results:
        for gid, points, answer in r.written:
            answer = "" if answer.strip() in ("", "YOUR ANSWER HERE") else answer
            cells = [r.student, r.notebook, gid, f"{points:g}", answer]
            escaped = [outputs.csv_cell(x) for x in cells]
            rows.append(cells + [awarded.get(tuple(escaped[:3] + escaped[4:5]), "" if answer else "0")])
    if rows or old.exists():
        outputs.write_csv(out / "written.csv", WRITTEN_HEADER, rows)


def print_summary(results: list[Result], seconds: float) -> None:
    students = sorted({r.student for r in results})
    kept = sum(r.reused for r in results)
    print(f"Graded {len(students)} student(s), {len(results)} notebook(s) in {seconds:.1f} s"
          + (f" ({kept} kept from the earlier run into this folder, unchanged)" if kept else ""))
    for nbname in sorted({r.notebook for r in results}):
        rows = [r for r in results if r.notebook == nbname]
        counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
        mean = sum(r.score for r in rows) / len(rows)
        print(f"  {nbname}: mean {mean:.2f} / {rows[0].max_score:g}; "
              + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for r in results:
        if r.status != "graded":
            print(f"  ! {learner_text(r.student)}/{r.notebook}: {r.status} ({learner_text(r.detail, 300)})")
    if open_kernels := sum(str(r.where.get("confined", "1")) == "0" for r in results):
        print(f"  warning: {open_kernels} notebook(s) ran in a kernel without a sandbox uid of its own (the grader or "
              "worker is not root, or lacks namespaces): see timings.csv, column confined")


def write_class_report(results: list[Result], out: Path) -> None:
    """report.html (score histogram, per-exercise pass rates, frequent mistakes, problem
    submissions) and report.csv (per-exercise pass rates) for the instructor."""
    import base64
    import io
    from collections import Counter

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    esc = html.escape
    parts = [f"<!doctype html><meta charset=utf-8>{outputs.CSP_META}<title>class report</title><h1>Class report</h1>"]
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
        parts.append(f"<h2>{esc(nbname)}</h2><img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>")
        parts.append("<table border=1 cellpadding=4><tr><th>exercise</th><th>full marks</th><th>pass rate</th></tr>")
        cells = sorted({c for r in graded for c, _, _ in r.cells})
        for cell in cells:
            scores = [(s, m) for r in graded for c, s, m in r.cells if c == cell]
            passed = sum(s >= m for s, m in scores)
            rate = passed / len(scores) if scores else 0.0
            rows.append([nbname, cell, passed, len(scores), f"{rate:.3f}"])
            parts.append(f"<tr><td>{esc(cell)}</td><td>{passed}/{len(scores)}</td><td>{rate:.0%}</td></tr>")
        parts.append("</table><h3>Most frequent diagnosed mistakes</h3><ol>")
        counts = Counter(d for r in mine for d in r.diagnoses)
        parts += [f"<li>{n} x <b>{html.escape(cell)}</b>: {html.escape(text)}</li>"
                  for (cell, text), n in counts.most_common(10)]
        parts.append("</ol><h3>Submissions that did not run to the end</h3><ul>")
        parts += [f"<li>{esc(r.student)}: {esc(r.status)} ({esc(r.detail)})</li>"
                  for r in mine if r.status != "graded"]
        parts.append("</ul>")
    (out / "report.html").write_text("\n".join(parts))
    outputs.write_csv(out / "report.csv", ["notebook", "exercise", "full_marks", "graded", "pass_rate"], rows)
