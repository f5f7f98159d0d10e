"""Regenerate everything derived from the single sources, or check it is up to date.

    chapter text  autograder/chapters/NN_topic/narrative.py  ┐
    solutions     autograder/chapters/NN_topic/solutions.py  ┴─> solutions/NN_topic.ipynb
                                                                  (instructor notebook)
    instructor notebook --nbgrader generate_assignment--> course/NN_topic.ipynb (student)

`python -m autograder build` writes them; `python -m autograder build --check` builds into
a temporary directory and fails, listing the stale files, when the repository differs.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import authoring

REPO = authoring.REPO
SOLVED_DIR = REPO / "solutions"     # generated instructor notebooks (instructors only)
COURSE_DIR = REPO / "course"
CONFIG = REPO / "autograder" / "nbgrader_config.py"


def tool_env(extra: dict | None = None) -> dict:
    """Environment for nbgrader and kernels: this interpreter's bin first on PATH (nbgrader
    calls `alembic` and starts `python3` kernels by name)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def nbgrader(args: list[str], cwd: Path, env: dict | None = None, timeout: float | None = None):
    """Run one nbgrader command from a course root (its only reliable way to find the config)."""
    env = env or tool_env()
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def instructor_notebook(chapter: str) -> Path:
    """The generated instructor notebook of a chapter (solutions in place): `solutions/` in a
    clone; in an installed package (no `solutions/` beside it) generated from the chapter's
    sources into a cache folder, once per version of those sources."""
    path = SOLVED_DIR / f"{chapter}.ipynb"
    return path if path.exists() else _generated(chapter)[0]


def student_notebook(chapter: str) -> Path:
    """The generated student notebook of a chapter: `course/` in a clone, else generated
    (nbgrader generate_assignment) into the same cache folder as `instructor_notebook`."""
    path = COURSE_DIR / f"{chapter}.ipynb"
    return path if path.exists() else _generated(chapter)[1]


def _generated(chapter: str) -> tuple[Path, Path]:
    """(instructor, student) notebook of a chapter built from its sources into
    $WORKBOOK_CACHE (default ~/.cache/workbook)/generated/<hash of the chapter's sources>/."""
    import hashlib

    from . import chapters as chapters_pkg

    digest = hashlib.sha256()
    for part in ("narrative", "solutions"):
        digest.update(chapters_pkg.path(chapter, part).read_bytes())
    base = Path(os.environ.get("WORKBOOK_CACHE") or "~/.cache/workbook").expanduser()
    folder = base / "generated" / f"{chapter}-{digest.hexdigest()[:16]}"
    paths = folder / "solutions" / f"{chapter}.ipynb", folder / "course" / f"{chapter}.ipynb"
    if not all(p.exists() for p in paths):
        files = generate(folder, [chapter])
        for rel, text in files.items():
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, dest)  # atomic: parallel graders never read half a notebook
    return paths


def make_course_root(root: Path, chapters: list[str]) -> None:
    """Lay out an nbgrader course root: config + instructor notebooks."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFIG, root / "nbgrader_config.py")
    for ch in chapters:
        dst = root / "source" / ch
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(instructor_notebook(ch), dst / f"{ch}.ipynb")


def _student_notebook(text: str) -> str:
    """Canonical form of a generated student notebook (nbgrader's JSON, outputs cleared)."""
    nb = json.loads(text)
    nb["metadata"].pop("widgets", None)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def generate(out: Path, chapters: list[str] | None = None) -> dict[Path, str]:
    """Build every derived file into memory; return {repo-relative path: text}."""
    chapters = chapters or authoring.chapter_names()
    files: dict[Path, str] = {}
    with tempfile.TemporaryDirectory(prefix="workbook-build-") as tmp:
        root = Path(tmp)
        for ch in chapters:
            nb = authoring.build_instructor_notebook(ch)
            text = authoring.dumps(nb)
            files[Path("solutions") / f"{ch}.ipynb"] = text
            (root / "source" / ch).mkdir(parents=True)
            (root / "source" / ch / f"{ch}.ipynb").write_text(text)
        shutil.copy(CONFIG, root / "nbgrader_config.py")
        for ch in chapters:
            r = nbgrader(["generate_assignment", ch, "--force"], cwd=root)
            released = root / "release" / ch / f"{ch}.ipynb"
            if r.returncode != 0 or not released.exists():
                raise RuntimeError(f"nbgrader generate_assignment {ch} failed:\n{r.stdout}\n{r.stderr}")
            files[Path("course") / f"{ch}.ipynb"] = _student_notebook(released.read_text())
    return files


def build(check: bool = False, only: list[str] | None = None) -> int:
    chapters = authoring.chapter_names()
    if only:
        chapters = [c for c in chapters if any(c == o or c.startswith(f"{o}_") for o in only)]
        if not chapters:
            print(f"no chapter matches {only}")
            return 2
    files = generate(REPO, chapters)
    if check:
        stale = []
        for rel, text in files.items():
            path = REPO / rel
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
                old = path.read_text().splitlines() if path.exists() else []
                diff = list(difflib.unified_diff(old, text.splitlines(), str(rel), "regenerated",
                                                 lineterm="", n=1))
                print("\n".join(diff[:40]))
        # a generated file with no source any more is stale too (whole builds only)
        known = {REPO / rel for rel in files}
        for path in [] if only else [*SOLVED_DIR.glob("*.ipynb"), *COURSE_DIR.glob("[0-9][0-9]_*.ipynb")]:
            if path not in known:
                stale.append(path.relative_to(REPO))
        if stale:
            print("Generated files are stale; run `python -m autograder build`:\n  "
                  + "\n  ".join(map(str, stale)))
            return 1
        print(f"All {len(files)} generated files are up to date.")
        return 0
    for rel, text in files.items():
        path = REPO / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {rel}")
    return 0
