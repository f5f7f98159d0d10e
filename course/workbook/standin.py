"""Stand-ins: exercises done by a library, so that a learner who is stuck can run the rest
of a chapter.

Each chapter whose later cells call an exercise has a module `workbook.chNN.standins` with
one stand-in per such exercise: the same signature and contract as the exercise's
docstring, built on torch, diffusers or open_clip (never on the course's own answers). A
learner switches to one with a single line at the end of the exercise's cell, e.g.

    UNet = ch05.standins.UNet

The chapter's experiments then run; the exercise earns no points: every visible check
refuses a stand-in at once (`refuse_stand_in`), with a message that says so.

A stand-in is marked by the attribute `__workbook_stand_in__ = True` (`@stand_in` sets it),
on functions and classes alike; instances and subclasses of a stand-in class count too, and so
does a definition whose code calls the stand-in of the same name (a one-line wrapper).
"""
from __future__ import annotations

import builtins
import dis
import functools
import inspect
import types

MARK = "__workbook_stand_in__"
# A refused check stops Run All there, as every failed check does; the chapter goes on from the
# next cell (JupyterLab's Run menu).
GO_ON = "To run the rest of the chapter: click the next cell, then Run > Run Selected Cell and All Below."


def stand_in(obj):
    """Mark a function or a class as a stand-in (sets `__workbook_stand_in__ = True`)."""
    setattr(obj, MARK, True)
    return obj


def _marked(obj) -> bool:
    try:
        return vars(obj).get(MARK) is True
    except Exception:  # no __dict__ (a number, a slot-only type, ...), or an odd one
        return False


def stand_in_name(obj) -> str | None:
    """'chNN.standins.Name' when `obj` is a stand-in (the function or class itself, one
    wrapped by a decorator or functools.partial, an instance of a stand-in class or of a
    subclass), else None."""
    seen = set()
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        classes = obj.__mro__ if isinstance(obj, type) else (obj, *type(obj).__mro__)
        for k in classes:
            if _marked(k):
                module = getattr(k, "__module__", "") or ""
                module = module[len("workbook."):] if module.startswith("workbook.") else module
                return f"{module}.{getattr(k, '__qualname__', getattr(k, '__name__', '?'))}"
        obj = obj.func if isinstance(obj, functools.partial) else _attribute(obj, "__wrapped__")
    return None


def _attribute(obj, name: str):
    try:
        return getattr(obj, name, None)
    except Exception:  # an object whose attribute lookup does more than look up
        return None


def _functions(obj) -> list:
    """The plain functions of a definition: itself, or a class's own methods (and those of its
    bases written in the same module), unwrapped from decorators."""
    if isinstance(obj, type):
        found = []
        for k in obj.__mro__:
            if k is obj or getattr(k, "__module__", None) == obj.__module__:
                for v in vars(k).values():
                    v = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
                    found.append(v)
        return [f for f in map(_unwrapped, found) if isinstance(f, types.FunctionType)]
    f = _unwrapped(obj)
    return [f] if isinstance(f, types.FunctionType) else []


def _unwrapped(f):
    while isinstance(f, functools.partial):
        f = f.func
    try:
        return inspect.unwrap(f)
    except Exception:  # a cycle of __wrapped__, or an odd object
        return f


def _named_objects(fn) -> list:
    """Every object the code of `fn` (nested functions and lambdas included) names as a global,
    a closure variable or a default, and every module or class attribute reached from one
    (`ch05.standins.UNet`)."""
    scope = dict(vars(builtins)) | fn.__globals__
    if fn.__closure__:
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__):
            try:
                scope[var] = cell.cell_contents
            except ValueError:  # an empty cell
                pass
    found = list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        codes += [k for k in code.co_consts if isinstance(k, types.CodeType)]
        ins = list(dis.get_instructions(code))
        for i, x in enumerate(ins):
            if x.opname not in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF") or x.argval not in scope:
                continue
            obj = scope[x.argval]
            found.append(obj)
            for y in ins[i + 1:]:  # an attribute chain, through modules and classes only
                if y.opname not in ("LOAD_ATTR", "LOAD_METHOD") or not isinstance(obj, (types.ModuleType, type)):
                    break
                obj = _attribute(obj, y.argval)
                found.append(obj)
    return found


def _calls_stand_in(obj, name: str) -> str | None:
    """'chNN.standins.NAME' when the code of `obj` names the stand-in of the same name."""
    for fn in _functions(obj):
        for named in _named_objects(fn):
            where = stand_in_name(named)
            if where and where.rsplit(".", 1)[-1] == name:
                return where
    return None


def refuse_stand_in(c, name: str, obj) -> None:
    """Fail the check `c` (a `workbook.checks.Checks`) at once when `obj`, given for the
    exercise's definition `name`, is a stand-in, or its code calls the stand-in of the same
    name: it earns no points."""
    where = stand_in_name(obj)
    if where:
        c.fail(f"this is the stand-in ({where}), not your code: it lets the chapter run but earns no points; "
               f"remove the line `{name} = {where}` when your own version is ready. {GO_ON}")
    where = _calls_stand_in(obj, name)
    if where:
        c.fail(f"your {name} calls the stand-in ({where}): it lets the chapter run but earns no points; "
               f"write {name} without it when your own version is ready. {GO_ON}")
