"""The run's data: what one student's grading needs (`Job`) and what each notebook's grading
gives (`Result`, one row of grades.csv), with the statuses a row can have.

Plain data, so a job and its results can travel to another process (a dask worker) and a
result can be stored and restored (`ledger.stored`, `ledger.restored`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .intake import Submission
from .seals import Chapter

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
    flag: str = ""  # for the instructor: an id not plain, or colliding with / looking like another


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
