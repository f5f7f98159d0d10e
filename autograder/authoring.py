"""Turn a chapter's text source into its instructor notebook.

A chapter is written once, in `autograder/notebooks/NN_<topic>.py` (percent format,
see docs/AUTHORING.md), and its solution code once, in `solutions/chNN_<topic>.py`.
This module joins the two:

    # %% [markdown]                     -> markdown cell ("# " prefixes stripped)
    # %%                                -> plain code cell
    # %% [solution id=pca]              -> nbgrader solution cell; every line
    #| solution: pca_fit pca_encode        `#| solution: NAME ...` is replaced by the
                                           definitions copied from the solutions module,
                                           bodies wrapped in BEGIN/END SOLUTION markers
    # %% [tests id=pca_checks points=3] -> nbgrader graded test cell (locked)
    # %% [written id=why_kl points=2]   -> nbgrader manually graded answer cell (markdown):
                                           its text is the model answer and rubric, which
                                           learners never receive ("YOUR ANSWER HERE")

Only the bodies are hidden from learners: the `def`/`class` line, the signature and
the docstring (the exercise's contract) stay visible in the student notebook.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
CONTENT_DIR = REPO / "autograder" / "notebooks"
SOLUTIONS_DIR = REPO / "solutions"

HEADER = re.compile(r"^# %%(?:\s*\[(?P<kind>\w+)(?P<opts>[^\]]*)\])?\s*$")
DIRECTIVE = re.compile(r"^#\| solution:\s*(?P<names>.+?)\s*$")
NAME = re.compile(r"^(?P<num>\d\d)_(?P<topic>[a-z0-9_]+)$")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


class AuthoringError(ValueError):
    """A chapter source that cannot be turned into a notebook (says file and line)."""


@dataclass
class Cell:
    kind: str                      # "markdown" | "code" | "solution" | "tests" | "written"
    lines: list[str]
    line_no: int                   # 1-based line of the `# %%` header
    opts: dict[str, str] = field(default_factory=dict)


def chapter_names() -> list[str]:
    """Every chapter in course order, e.g. ['01_autoencoders', ...]."""
    return sorted(p.stem for p in CONTENT_DIR.glob("[0-9][0-9]_*.py"))


def solutions_path(chapter: str) -> Path:
    return SOLUTIONS_DIR / f"ch{chapter}.py"


def parse_cells(text: str, source: str = "<chapter>") -> list[Cell]:
    cells: list[Cell] = []
    for i, line in enumerate(text.splitlines(), start=1):
        m = HEADER.match(line)
        if m:
            kind = m["kind"] or "code"
            if kind not in {"code", "markdown", "solution", "tests", "written"}:
                raise AuthoringError(f"{source}:{i}: unknown cell kind [{kind}]")
            opts = dict(o.split("=", 1) for o in m["opts"].split()) if m["opts"] else {}
            cells.append(Cell(kind, [], i, opts))
        elif cells:
            cells[-1].lines.append(line)
        elif line.strip():
            raise AuthoringError(f"{source}:{i}: text before the first '# %%' header")
    for c in cells:  # trim blank lines around each cell
        while c.lines and not c.lines[-1].strip():
            c.lines.pop()
        while c.lines and not c.lines[0].strip():
            c.lines.pop(0)
    return cells


def _markdown(lines: list[str], where: str) -> str:
    out = []
    for line in lines:
        if line == "#":
            out.append("")
        elif line.startswith("# "):
            out.append(line[2:])
        else:
            raise AuthoringError(f"{where}: markdown lines must start with '# ', got {line!r}")
    return "\n".join(out)


class SolutionSource:
    """The definitions of one solutions module, ready to be wrapped for nbgrader."""

    def __init__(self, path: Path, text: str | None = None):
        self.path = path
        self.text = path.read_text() if text is None else text
        self.lines = self.text.splitlines()
        tree = ast.parse(self.text, filename=str(path))
        self.nodes: dict[str, ast.stmt] = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.nodes[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        self.nodes[t.id] = node

    def _start(self, node: ast.stmt) -> int:
        """0-based first line of a node, decorators and the comment block above included."""
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        while first > 0 and self.lines[first - 1].lstrip().startswith("#"):
            first -= 1
        return first

    @staticmethod
    def _body_span(fn: ast.FunctionDef) -> tuple[int, int] | None:
        """0-based [start, end) lines of a function body after its docstring (and after
        a leading `super().__init__(...)`, which stays visible)."""
        body = list(fn.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        if body and ast.unparse(body[0]).startswith("super().__init__("):
            body = body[1:]
        if not body:
            return None
        return body[0].lineno - 1, fn.end_lineno

    def plain(self, name: str) -> str:
        """Source of `name` as written (comment block above included), no solution markers."""
        if name not in self.nodes:
            raise AuthoringError(f"{self.path.name}: no top-level definition named {name!r}")
        node = self.nodes[name]
        return "\n".join(self.lines[self._start(node):node.end_lineno])

    def wrapped(self, name: str) -> str:
        """Source of `name` with every function body between BEGIN/END SOLUTION."""
        if name not in self.nodes:
            raise AuthoringError(f"{self.path.name}: no top-level definition named {name!r}")
        node = self.nodes[name]
        start, end = self._start(node), node.end_lineno
        spans: list[tuple[int, int]] = []
        if isinstance(node, ast.FunctionDef):
            spans = [s for s in [self._body_span(node)] if s]
        elif isinstance(node, ast.ClassDef):
            spans = [s for f in node.body if isinstance(f, ast.FunctionDef)
                     for s in [self._body_span(f)] if s]
        else:  # an assignment (e.g. a quiz answer): the whole statement is the solution
            spans = [(node.lineno - 1, node.end_lineno)]
        out: list[str] = []
        i = start
        for s, e in spans:
            out += self.lines[i:s]
            indent = re.match(r"\s*", self.lines[s]).group(0)
            out += [indent + BEGIN, *self.lines[s:e], indent + END]
            i = e
        out += self.lines[i:end]
        return "\n".join(out)


def build_instructor_notebook(chapter: str, solutions_text: str | None = None) -> nbformat.NotebookNode:
    """The instructor (source) notebook of one chapter, e.g. chapter='01_autoencoders'.
    With `solutions_text` (a changed solutions module, e.g. a catalogued mistake applied),
    the solution cells hold that code as written, without solution markers: a submission."""
    if not NAME.match(chapter):
        raise AuthoringError(f"chapter name {chapter!r} must look like 'NN_topic'")
    src_path = CONTENT_DIR / f"{chapter}.py"
    cells = parse_cells(src_path.read_text(), src_path.name)
    sol_path = solutions_path(chapter)
    if solutions_text is not None:
        solutions = SolutionSource(sol_path, solutions_text)
    else:
        solutions = SolutionSource(sol_path) if sol_path.exists() else None

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    seen_ids: set[str] = set()
    for n, c in enumerate(cells):
        where = f"{src_path.name}:{c.line_no}"
        cell_id = f"c{n:03d}"
        if c.kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_markdown(c.lines, where))
        elif c.kind == "code":
            cell = nbformat.v4.new_code_cell("\n".join(c.lines))
        else:
            grade_id = c.opts.get("id")
            if not grade_id or grade_id in seen_ids:
                raise AuthoringError(f"{where}: [{c.kind}] cells need a unique id=..., got {grade_id!r}")
            seen_ids.add(grade_id)
            cell_id = grade_id.replace("_", "-")
            if c.kind == "written":
                points = c.opts.get("points")
                if points is None or not points.replace(".", "", 1).isdigit():
                    raise AuthoringError(f"{where}: [written] cell {grade_id!r} needs points=N")
                text = _markdown(c.lines, where)
                if "**Model answer.**" not in text or "**Rubric.**" not in text:
                    raise AuthoringError(f"{where}: [written] cell {grade_id!r} needs a **Model answer.** and a "
                                         "**Rubric.**")
                cell = nbformat.v4.new_markdown_cell(text)
                cell.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False,
                                             "points": float(points), "grade_id": grade_id, "schema_version": 3}
                cell.id = cell_id
                nb.cells.append(cell)
                continue
            if c.kind == "solution":
                if solutions is None:
                    raise AuthoringError(f"{where}: solution cell but {sol_path} does not exist")
                body: list[str] = []
                for line in c.lines:
                    m = DIRECTIVE.match(line)
                    if m:
                        names = m["names"].replace(",", " ").split()
                        show = solutions.wrapped if solutions_text is None else solutions.plain
                        body.append("\n\n\n".join(show(x) for x in names))
                    else:
                        body.append(line)
                text = "\n".join(body)
                if BEGIN not in text and solutions_text is None:
                    raise AuthoringError(f"{where}: solution cell {grade_id!r} has no solution region")
                meta = {"grade": False, "solution": True, "locked": False}
            else:
                points = c.opts.get("points")
                if points is None or not points.replace(".", "", 1).isdigit():
                    raise AuthoringError(f"{where}: [tests] cell {grade_id!r} needs points=N")
                text = "\n".join(c.lines)
                last = [ln for ln in c.lines if ln.strip() and not ln.lstrip().startswith("#")]
                if not last or not re.match(r"\s*(assert|[\w.]+\()", last[-1]):
                    raise AuthoringError(f"{where}: a [tests] cell must end with a call or an assert")
                meta = {"grade": True, "solution": False, "locked": True, "points": float(points)}
            cell = nbformat.v4.new_code_cell(text)
            cell.metadata["nbgrader"] = {**meta, "grade_id": grade_id, "schema_version": 3}
        cell.id = cell_id
        nb.cells.append(cell)
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(nb))


def dumps(nb: nbformat.NotebookNode) -> str:
    """Canonical JSON of a notebook: no outputs, no execution counts, sorted keys."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nbformat.writes(nb) + ("" if nbformat.writes(nb).endswith("\n") else "\n")
