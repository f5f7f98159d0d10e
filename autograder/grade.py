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

import csv
import html
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import authoring
from .build import make_course_root, nbgrader, tool_env

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
MAX_ZIP_BYTES = 200 * 1024 * 1024
STATUSES = ("graded", "missing", "unreadable", "timed out", "crashed")


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
    return None


# ----------------------------------------------------------------------------- grading

def make_template(root: Path, chapters: list[str]) -> None:
    """A course root whose gradebook knows every chapter (generate_assignment run once)."""
    make_course_root(root, chapters)
    for ch in chapters:
        r = nbgrader(["generate_assignment", ch, "--force"], cwd=root)
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {ch} failed:\n{r.stderr[-3000:]}")
    shutil.rmtree(root / "release", ignore_errors=True)


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


def sanitize_for_feedback(path: Path) -> None:
    """Remove hidden tests from an autograded notebook's sources and keep only
    `Error: message` of every error, so feedback never shows hidden test code, not even
    as the source lines a traceback prints around a failure."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = HIDDEN_BLOCK.sub("", src)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
    path.write_text(json.dumps(nb, indent=1))


MEMORY_LIMIT = 8 * 1024**3       # address space of nbgrader and the kernel it starts
FILE_LIMIT = 256 * 1024**2       # largest file the submission may write


def _limits() -> None:
    """Runs in the child before exec: resource limits the kernel inherits."""
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
    kill_processes_under(cwd)  # the kernel runs in a session of its own
    return code, out[-200_000:]


def kill_processes_under(folder: Path) -> None:
    """Kill every process whose working directory is inside `folder`."""
    import psutil

    root = str(Path(folder).resolve())
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid != os.getpid() and p.cwd().startswith(root):
                p.kill()
        except (psutil.Error, OSError):
            pass


def grade_student(sid: str, folder: Path, chapters: list[str], template: Path, work: Path,
                  out: Path, env_extra: dict, timeout: float) -> list[Result]:
    root = work / sid
    shutil.copytree(template, root)
    results: list[Result] = []
    problem = (folder / ".unreadable").read_text() if (folder / ".unreadable").exists() else None
    present = {p.name: p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    for ch in chapters:
        res = Result(sid, ch)
        results.append(res)
        src = present.get(f"{ch}.ipynb")
        if problem:
            res.status, res.detail = "unreadable", problem
            continue
        if src is None:
            others = sorted(n for n in present if not any(n == f"{c}.ipynb" for c in chapters))
            res.status = "missing"
            res.detail = f"no {ch}.ipynb" + (f"; found {', '.join(others)} (renamed?)" if others else "")
            continue
        bad = check_notebook(src)
        if bad:
            res.status, res.detail = "unreadable", bad
            continue
        dst = root / "submitted" / sid / ch
        dst.mkdir(parents=True)
        shutil.copy(src, dst / f"{ch}.ipynb")
        t0 = time.time()
        code, log = run_confined([sys.executable, "-m", "nbgrader", "autograde", ch, "--student", sid,
                                  "--force"], cwd=root, env=tool_env(env_extra), timeout=timeout)
        if code is None:
            res.status = "timed out"
            res.detail = f"grading took more than {timeout:.0f} s"
        (out / "logs" / sid).mkdir(parents=True, exist_ok=True)
        (out / "logs" / sid / f"{ch}.log").write_text(log if isinstance(log, str) else log.decode())
        graded = root / "autograded" / sid / ch / f"{ch}.ipynb"
        if res.status == "timed out":
            continue
        if not graded.exists():
            errors = [ln for ln in log.splitlines() if "ERROR" in ln or "Kernel died" in ln]
            res.status = "crashed"
            res.detail = "the notebook stopped the grader: " + (errors[0][-200:] if errors else "no log")
            continue
        nb = json.loads(graded.read_text())
        errs = _errors(nb)
        if "CellTimeoutError" in errs or "DeadKernelError" in errs:
            res.status = "timed out" if "CellTimeoutError" in errs else "crashed"
            res.detail = f"a cell {'ran past the per-cell time limit' if res.status == 'timed out' else 'killed the kernel'}"
        elif errs:
            res.detail = f"{len(errs)} cell(s) raised errors"
        res.diagnoses = _diagnoses(nb)
        res.detail += f"{'; ' if res.detail else ''}graded in {time.time() - t0:.1f} s"
        sanitize_for_feedback(graded)
    # scores from this student's own gradebook
    _read_scores(root, results)
    # feedback
    for res in results:
        if (root / "autograded" / sid / res.notebook).exists():
            nbgrader(["generate_feedback", res.notebook, "--student", sid, "--force"], cwd=root)
            fb = root / "feedback" / sid / res.notebook / f"{res.notebook}.html"
            if fb.exists():
                (out / "feedback" / sid).mkdir(parents=True, exist_ok=True)
                shutil.copy(fb, out / "feedback" / sid / f"{res.notebook}.html")
    return results


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
          timeout: float = 900.0, seed: int | None = None) -> list[Result]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="workbook-grade-") as tmp:
        scratch = Path(tmp)
        students = collect(Path(submissions), scratch)
        if chapters is None:  # the chapters anybody handed in
            names = {p.stem for f in students.values() for p in f.rglob("*.ipynb")}
            chapters = [c for c in authoring.chapter_names() if c in names] or authoring.chapter_names()
        template = scratch / "template"
        make_template(template, chapters)
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
        ok = {s: f for s, f in students.items() if s not in bad_ids}
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(grade_student, sid, folder, chapters, template,
                                   scratch / "students", out, env_extra, timeout)
                       for sid, folder in ok.items()]
            for f in futures:
                results += f.result()
    results.sort(key=lambda r: (r.student, r.notebook))
    write_reports(results, out)
    print_summary(results, time.time() - t0)
    return results


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
