"""Where students are graded: `run_jobs` runs `student.grade_student` for every job on a
thread pool here ("threads") or as one task per student on a dask.distributed cluster
("dask"), and hands each student's rows back to the grader's thread as they finish.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from . import student
from .rows import Job, Result

BACKENDS = ("threads", "dask")


def run_jobs(work: list[Job], jobs: int, backend: str, scheduler: str | None,
             on_done=None) -> list[list[Result]]:
    """`student.grade_student` for every job, in job order; `on_done(results)` is called here, in the
    grader's process and thread, as each student finishes (in the order they finish)."""
    on_done = on_done or (lambda results: None)
    if backend == "threads":
        from concurrent.futures import as_completed

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(student.grade_student, job) for job in work]
            for fut in as_completed(futures):
                on_done(fut.result())
            return [f.result() for f in futures]
    if backend == "dask":
        from distributed import Client

        if scheduler:
            with Client(scheduler) as client:
                return _dask_map(client, work, on_done)
        with local_cluster(max(1, jobs)) as cluster, Client(cluster) as client:
            return _dask_map(client, work, on_done)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def local_cluster(workers: int):
    """A dask LocalCluster of `workers` worker processes, one thread each. The workers are not
    daemonic processes (`distributed.worker.daemon`), so that each can fork its notebooks'
    judge and nbgrader from a server of its own (`forked.context()`) as `grade` does; their
    nanny still stops them when the cluster closes."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None)


def _dask_map(client, work: list[Job], on_done) -> list[list[Result]]:
    """One task per student (never retried elsewhere: a submission runs once)."""
    from distributed import as_completed

    futures = client.map(student.grade_student, work, pure=False, retries=0)
    for fut in as_completed(futures):
        on_done(fut.result())
    return client.gather(futures)
