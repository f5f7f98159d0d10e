"""Instructor command line.

    python -m autograder build [--check] [--only 02]     regenerate (or check) derived notebooks
    python -m autograder run [--profile P] [--only 01]   execute the course, write results
    python -m autograder grade SUBMISSIONS --out DIR     grade a folder of submissions
    python -m autograder grade SUBMISSIONS --out DIR --only ada bob   regrade these students in place
    python -m autograder grade SUBMISSIONS --out DIR --changed        regrade what changed since the last run
    python -m autograder export DIR --format canvas      grades for Canvas, Moodle or a wide CSV
    python -m autograder feedback DIR                    put the written answers' awarded points into the pages
    python -m autograder bench-grading --students 40 --jobs 1,2 [--chapters 01 02]
                                                         seconds per submission by stage, speedup
    python -m autograder fidelity [--only NN_topic]      prove the checks catch every catalogued mistake
    python -m autograder fidelity --pipeline [--limit K] the same through the real grading pipeline
    python -m autograder fidelity --hidden-only          what the hidden checks catch without the visible ones
    python -m autograder fidelity --secrets 200          verdicts that do not depend on the grading secret
    python -m autograder where ddim_step                 every file and line of one exercise
    python -m autograder answers --out answers.json      quiz keys and model answers, to hand out for self-study
    python -m autograder new-chapter 08_topic            lay out a new chapter that builds, grades and passes fidelity

Grading into an --out folder that holds an earlier run resumes it: the run secret is read
from OUT/.secret, and a notebook whose key is unchanged (a hash of the submitted notebook,
of the course version: instructor sources, hidden checks, solutions, the workbook package;
of the settings and the secret) keeps its row; the rest is graded (after a fix to the
grader's own code, regrade with --fresh). `--only STUDENT ...` regrades those students whatever their keys,
`--changed` insists on an earlier run and lists what changed, `--fresh` starts over with
a new secret. grades.csv, cells.csv, timings.csv, the class report and the feedback pages
end as a full run would leave them. A progress bar (rate, ETA) shows on a terminal, one
line per finished notebook otherwise; OUT/timings.csv has the seconds of every stage.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="regenerate instructor and student notebooks")
    b.add_argument("--check", action="store_true", help="fail if any generated file is stale")
    b.add_argument("--only", nargs="*", default=None, help="chapter numbers or names (default: all)")
    r = sub.add_parser("run", help="execute every chapter and write a results page")
    r.add_argument("--profile", choices=["smoke", "cpu", "gpu"], default=None)
    r.add_argument("--only", nargs="*", default=None, help="chapter numbers or names")
    r.add_argument("--out", type=Path, default=None, help="default build/run-<profile>")
    r.add_argument("--student", action="store_true",
                   help="run the student notebooks instead (they stop at the first exercise)")
    g = sub.add_parser("grade", help="grade a folder (or zip) of submissions")
    g.add_argument("submissions", type=Path)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--jobs", type=int, default=1)
    g.add_argument("--notebooks", nargs="*", default=None, help="chapters to grade (default: those handed in)")
    g.add_argument("--timeout", type=float, default=900.0, help="wall-time limit per notebook, seconds")
    g.add_argument("--secret", default=None,
                   help="the run secret (hex) of an earlier run, from its OUT/.secret: regrade it exactly "
                        "(default: a fresh random one)")
    g.add_argument("--backend", choices=["threads", "dask"], default="threads",
                   help="threads: N students at once here; dask: one task per student on a dask cluster")
    g.add_argument("--scheduler", default=None,
                   help="dask scheduler address (default: a local cluster of --jobs workers)")
    g.add_argument("--no-preflight", action="store_true",
                   help="skip grading the instructor notebook (full marks) and the blank one (zero) first")
    g.add_argument("--only", nargs="+", default=None, metavar="STUDENT",
                   help="regrade these students (their outputs in OUT are replaced; the others' are kept)")
    g.add_argument("--changed", action="store_true",
                   help="regrade only notebooks whose content (or the course) changed since the run in OUT")
    g.add_argument("--fresh", action="store_true",
                   help="forget the run in OUT (and its secret): grade everything anew")
    ex = sub.add_parser("export", help="grades of a grading run for an LMS (Canvas, Moodle) or a wide CSV")
    ex.add_argument("run", type=Path, help="the --out folder of a grading run")
    ex.add_argument("--format", choices=["wide", "canvas", "moodle"], default="wide")
    ex.add_argument("--roster", type=Path, default=None,
                    help="CSV with a 'student' column and any of name, canvas_id, sis_id, login, section, email, username")
    ex.add_argument("--out", type=Path, default=None, help="default RUN/lms-<format>.csv")
    fb = sub.add_parser("feedback", help="rewrite the points on a grading run's feedback pages from its grades.csv "
                                         "and written.csv (once the instructor filled 'awarded')")
    fb.add_argument("run", type=Path, help="the --out folder of a grading run")
    bg = sub.add_parser("bench-grading", help="grade a generated class serially and in parallel")
    bg.add_argument("--students", type=int, default=40)
    bg.add_argument("--jobs", default="1,2", help="comma-separated worker counts, the first is the baseline")
    bg.add_argument("--backend", choices=["threads", "dask"], default="threads",
                    help="dask: --jobs is the number of workers of a local cluster")
    bg.add_argument("--chapters", nargs="+", default=["01"], help="chapter numbers or names (default: 01)")
    bg.add_argument("--out", type=Path, default=None)
    f = sub.add_parser("fidelity", help="run the mistake and alternative catalogues against the checks")
    f.add_argument("--only", nargs="*", default=None, help="chapter names")
    f.add_argument("--pipeline", action="store_true",
                   help="grade one submission per mistake and alternative with the real grading command")
    f.add_argument("--jobs", type=int, default=2, help="with --pipeline: students graded at once; with --secrets: processes")
    f.add_argument("--limit", type=int, default=None,
                   help="with --pipeline: at most K mistakes and K alternatives per chapter (spread over exercises)")
    f.add_argument("--out", type=Path, default=Path("build/fidelity"), help="with --pipeline: working folder")
    f.add_argument("--hidden-only", action="store_true",
                   help="leave the visible checks out: which mistakes the hidden checks alone catch")
    f.add_argument("--secrets", type=int, default=None, metavar="N",
                   help="run the hidden checks under N grading secrets: the reference and every alternative "
                        "must pass under all, every mistake must be caught under at least 99%% of them")
    w = sub.add_parser("where", help="every file and line of one exercise")
    w.add_argument("name", help="a solution's name (e.g. ddim_step) or a test cell id (e.g. ddim_step_checks)")
    an = sub.add_parser("answers", help="write the answers file (quiz keys, model answers) an instructor may hand out "
                                        "so that learners get feedback on every question while working")
    an.add_argument("--out", required=True, type=Path, help="e.g. release/answers.json (beside the notebooks)")
    an.add_argument("--only", nargs="*", help="chapters, e.g. 01 02 (default: all)")
    nc = sub.add_parser("new-chapter", help="lay out a new chapter (one exercise, its checks, a mistake, an alternative)")
    nc.add_argument("chapter", help="NN_topic, e.g. 08_score_matching")
    a = p.parse_args(argv)

    if a.cmd == "build":
        from .build import build
        return build(check=a.check, only=a.only)
    if a.cmd == "run":
        from .run import run_course
        return run_course(profile=a.profile, only=a.only, out=a.out, student=a.student)
    if a.cmd == "grade":
        from .grade import PreflightError, grade
        try:
            grade(a.submissions, a.out, jobs=a.jobs, chapters=a.notebooks, timeout=a.timeout,
                  backend=a.backend, scheduler=a.scheduler, secret=a.secret, preflight=not a.no_preflight,
                  only=a.only, changed=a.changed, fresh=a.fresh)
        except (FileNotFoundError, ValueError, PreflightError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if a.cmd == "export":
        from .lms import export
        from .feedback import refresh_pages
        try:
            print(export(a.run, a.format, a.out, a.roster))
            pages, changed = refresh_pages(a.run)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if changed:
            print(f"feedback pages: points rewritten in {changed} of {pages}", file=sys.stderr)
        return 0
    if a.cmd == "feedback":
        from .feedback import refresh_pages
        try:
            pages, changed = refresh_pages(a.run)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{a.run / 'feedback'}: points rewritten in {changed} of {pages} page(s) (from grades.csv and written.csv)")
        return 0
    if a.cmd == "bench-grading":
        from .bench import bench
        try:
            return bench(a.students, [int(j) for j in a.jobs.split(",")], a.backend, a.out, chapters=a.chapters)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if a.cmd == "fidelity":
        if a.pipeline:
            from .fidelity import pipeline_report
            return pipeline_report(a.only, a.out, jobs=a.jobs, limit=a.limit)
        if a.secrets:
            from .fidelity import sweep_report
            return sweep_report(a.only, a.secrets, jobs=a.jobs)
        from .fidelity import report
        return report(a.only, hidden_only=a.hidden_only)
    if a.cmd == "where":
        from .where import main as where
        return where(a.name)
    if a.cmd == "answers":
        from .answers import write
        try:
            names = write(a.out, a.only)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {a.out}: the quiz keys and model answers of {len(names)} chapter(s). Whoever has it sees "
              "every answer at once: hand it out for self-study only (docs/GRADING.md, 'Answers while working').")
        return 0
    if a.cmd == "new-chapter":
        from .scaffold import new_chapter
        try:
            made = new_chapter(a.chapter)
        except (ValueError, FileExistsError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("\n".join(["wrote:", *(f"  {p}" for p in made),
                         f"next: python -m autograder build --only {a.chapter[:2]} && "
                         f"python -m autograder fidelity --only {a.chapter}"]))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
