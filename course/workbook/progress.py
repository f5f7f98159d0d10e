"""Progress bars for the loops that run longer than a few seconds.

`progress(iterable, desc)` wraps a loop in a `tqdm.auto` bar (a widget in JupyterLab, text in a
terminal). It is quiet where nobody watches: when `WORKBOOK_PROGRESS=0` (set by the course runner
and the grader), under CI (`CI` set) or nbgrader (`NBGRADER_EXECUTION` set). Show the current loss with `bar.set_postfix(loss=...)`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable


def enabled() -> bool:
    """True unless progress bars are switched off (WORKBOOK_PROGRESS=0, or CI)."""
    return os.environ.get("WORKBOOK_PROGRESS", "1") != "0" and not os.environ.get("CI") \
        and not os.environ.get("NBGRADER_EXECUTION")  # nbgrader counts a bar's stderr as a failure


def progress(iterable: Iterable, desc: str = "", total: int | None = None, leave: bool = False):
    """`iterable` wrapped in a progress bar with rate and ETA (or returned as is when quiet)."""
    if not enabled():
        return _Quiet(iterable)
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)


class _Quiet:
    """The iterable itself, with the bar's `set_postfix` as a no-op."""

    def __init__(self, iterable: Iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __len__(self):
        return len(self.iterable)

    def set_postfix(self, *args, **kwargs) -> None:
        pass
