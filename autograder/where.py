"""`python -m autograder where NAME`: every place of one exercise, from its name (a solution
definition such as `ddim_step`, or a test cell id such as `ddim_step_checks`): the narrative's
solution and test cells, the reference solution, the visible check, the hidden check and the
catalogued mistakes and alternatives, each as `path:line`."""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from . import authoring, chapters, mutants

REPO = authoring.REPO


def _rel(path: Path | str, line: int) -> str:
    return f"{Path(path).resolve().relative_to(REPO)}:{line}"


def _defs(path: Path) -> dict[str, int]:
    return {n.name: n.lineno for n in ast.parse(path.read_text()).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def places(name: str) -> list[tuple[str, str]]:
    """[(what, path:line)] of exercise `name` in whichever chapter holds it."""
    out: list[tuple[str, str]] = []
    for ch in chapters.names():
        narrative = chapters.path(ch, "narrative")
        cells = authoring.parse_cells(narrative.read_text(), str(narrative))
        copied = {c.line_no: {x for ln in c.lines for x in authoring.solution_names(ln)}
                  for c in cells if c.kind == "solution"}
        solved = set().union(*copied.values())
        trees = {c.line_no: ast.parse("\n".join(c.lines)) for c in cells if c.kind == "tests"}
        named = {c.line_no: {n.id for n in ast.walk(trees[c.line_no]) if isinstance(n, ast.Name)}
                 | {n.value for n in ast.walk(trees[c.line_no])   # a quiz names its answer
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)}
                 for c in cells if c.kind == "tests"}
        tests = [c for c in cells if c.kind == "tests" and (c.opts.get("id") == name or name in named[c.line_no])]
        if name not in solved and not tests:
            continue
        out += [("narrative, solution cell", _rel(narrative, line)) for line, names in copied.items() if name in names]
        hidden = chapters.path(ch, "hidden")
        checks = _defs(hidden)
        for c in tests:
            out.append((f"narrative, test cell {c.opts['id']}", _rel(narrative, c.line_no)))
            for stmt in trees[c.line_no].body:
                call = getattr(stmt, "value", None)
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                    fn = getattr(importlib.import_module(f"workbook.{call.func.value.id}"), call.func.attr)
                    row = ("visible check", _rel(inspect.getsourcefile(fn), inspect.getsourcelines(fn)[1]))
                    if row not in out:
                        out.append(row)
            if c.opts.get("hidden") in checks:
                out.append((f"hidden check {ch}.{c.opts['hidden']}", _rel(hidden, checks[c.opts["hidden"]])))
        solutions = chapters.path(ch, "solutions")
        src = authoring.SolutionSource(solutions)
        wanted = {name}.union(*(named[c.line_no] for c in tests))
        for t in sorted(wanted & set(src.nodes), key=lambda t: src.nodes[t].lineno):
            out.append(("reference solution", _rel(solutions, src.nodes[t].lineno)))
        ids = {c.opts["id"] for c in tests}
        found, alts = mutants.catalogue(ch)
        n_m = sum(m.target == name or m.exercise in ids for m in found)
        n_a = sum(a.target == name or a.exercise in ids for a in alts)
        out.append((f"catalogue: {n_m} mistakes, {n_a} alternatives", _rel(chapters.path(ch, "mistakes"), 1)))
    if not out:
        raise KeyError(f"no exercise named {name!r} (try a solution's name, e.g. a function the learner writes, "
                       "or a test cell id)")
    return out


def main(name: str) -> int:
    try:
        rows = places(name)
    except KeyError as e:
        print(f"error: {e.args[0]}")
        return 2
    width = max(len(w) for w, _ in rows)
    for what, where in rows:
        print(f"{what:<{width}}  {where}")
    return 0
