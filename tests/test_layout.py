"""The package's shape: no import cycles between the modules of `autograder` (subpackages
included, imports inside functions too), and no module of it sets another module's
attributes (state travels as arguments, or through a function of the module that owns it).
Tests may monkeypatch; the package may not."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "autograder"
OWN = ("autograder", "workbook", "solutions")   # the project's own packages


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    """Dotted name -> (path, syntax tree) of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = (path, ast.parse(path.read_text(), str(path)))
    return out


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[:len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _imports(module: str, path: Path, tree: ast.Module, known) -> set[str]:
    """The modules of the package that `module` imports, anywhere in its text."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in known and m != module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str):
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    mods = _modules()
    graph = {m: _imports(m, p, t, mods) for m, (p, t) in mods.items()}
    assert len(graph) > 30 and any(graph.values())
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]   # the search finds one
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _module_names(module: str, path: Path, tree: ast.Module) -> dict[str, str]:
    """Local name -> the project's module it is bound to by an import in this file."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    names[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            for a in node.names:
                if base.split(".")[0] in OWN and _is_module(f"{base}.{a.name}"):
                    names[a.asname or a.name] = f"{base}.{a.name}"
    return {k: v for k, v in names.items() if v.split(".")[0] in OWN}


def _targets(node: ast.AST):
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _targets(elt)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def _foreign_assignments(module: str, path: Path, tree: ast.Module) -> list[str]:
    bound = _module_names(module, path, tree)
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?", lineno=node.lineno)]
        for t in (x for t in targets for x in _targets(t)):
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in bound:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: sets {bound[t.value.id]}.{t.attr}")
    return found


def test_no_module_sets_another_modules_attributes():
    sample = ast.parse("from autograder import mutants\ndef f():\n    mutants.SECRET_REQUIRED = True\n")
    assert _foreign_assignments("autograder.judge", PACKAGE / "judge.py", sample)   # the check can fail
    found = [f for m, (p, t) in _modules().items() for f in _foreign_assignments(m, p, t)]
    assert not found, "modules setting another module's attributes (pass state instead):\n" + "\n".join(found)
