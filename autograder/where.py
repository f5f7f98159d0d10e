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
        solved = {x for c in cells if c.kind == "solution" for ln in c.lines
                  if (m := authoring.DIRECTIVE.match(ln)) for x in m["names"].replace(",", " ").split()}
        tests = [c for c in cells if c.kind == "tests" and (c.opts.get("id") == name or name in solved and any(
            name in ln or c.opts.get("id") == f"{name}_checks" for ln in c.lines))]
        if name not in solved and not tests:
            continue
        for c in cells:
            if c.kind == "solution" and any(name in ln for ln in c.lines if authoring.DIRECTIVE.match(ln)):
                out.append(("narrative, solution cell", _rel(narrative, c.line_no)))
        for c in tests:
            out.append((f"narrative, test cell {c.opts['id']}", _rel(narrative, c.line_no)))
            code = "\n".join(c.lines)
            for stmt in ast.parse(code).body:
                call = getattr(stmt, "value", None)
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                    module = importlib.import_module(f"workbook.{call.func.value.id}")
                    fn = getattr(module, call.func.attr)
                    row = ("visible check", _rel(inspect.getsourcefile(fn), inspect.getsourcelines(fn)[1]))
                    if row not in out:
                        out.append(row)
            hidden = chapters.path(ch, "hidden")
            check = c.opts.get("hidden")
            if check in _defs(hidden):
                out.append((f"hidden check {ch}.{check}", _rel(hidden, _defs(hidden)[check])))
        solutions = chapters.path(ch, "solutions")
        src = authoring.SolutionSource(solutions)
        named = {n.id for c in tests for n in ast.walk(ast.parse("\n".join(c.lines))) if isinstance(n, ast.Name)}
        named |= {n.value for c in tests for n in ast.walk(ast.parse("\n".join(c.lines)))
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)}   # a quiz names its answer
        for t in sorted(({name} | named) & set(src.nodes), key=lambda t: src.nodes[t].lineno):
            out.append(("reference solution", _rel(solutions, src.nodes[t].lineno)))
        ids = {c.opts["id"] for c in tests}
        found, alts = mutants.catalogue(ch)
        mistakes = chapters.path(ch, "mistakes")
        n_m = sum(m.target == name or m.exercise in ids for m in found)
        n_a = sum(a.target == name or a.exercise in ids for a in alts)
        out.append((f"catalogue: {n_m} mistakes, {n_a} alternatives", _rel(mistakes, 1)))
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
