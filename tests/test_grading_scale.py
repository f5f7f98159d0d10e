"""Parallel and distributed grading give the same grades as a serial run.

    WORKBOOK_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_grading_scale.py
"""
import csv

import pytest

from autograder import bench
from autograder import grade as grading
from autograder import backends

pytestmark = pytest.mark.slow
CH = bench.CH


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    subs = tmp_path_factory.mktemp("class")
    kinds = bench.make_class(subs, 4)  # full, blank, two with a catalogued mistake
    return subs, kinds


def _tables(out):
    return {name: list(csv.reader(open(out / name))) for name in ("grades.csv", "cells.csv")}


@pytest.fixture(scope="module")
def serial(klass, tmp_path_factory):
    subs, _ = klass
    out = tmp_path_factory.mktemp("serial")
    grading.grade(subs, out, jobs=1, chapters=[CH], preflight=False)
    return _tables(out)


def test_serial_grades_make_sense(klass, serial):
    _, kinds = klass
    rows = {r[0]: r for r in serial["grades.csv"][1:]}
    for sid, kind in kinds.items():
        score, top = float(rows[sid][2]), float(rows[sid][3])
        assert rows[sid][4] == "graded", rows[sid]
        if kind == "full":
            assert score == top > 0, rows[sid]
        else:
            assert score < top, f"{sid} ({kind}) kept full marks: {rows[sid]}"


def test_threads_match_serial(klass, serial, tmp_path):
    subs, _ = klass
    grading.grade(subs, tmp_path, jobs=2, chapters=[CH], preflight=False)
    assert _tables(tmp_path) == serial, "grading with --jobs 2 differs from the serial run"


def test_dask_local_cluster_matches_serial(klass, serial, tmp_path):
    pytest.importorskip("distributed")
    subs, _ = klass
    grading.grade(subs, tmp_path, jobs=2, chapters=[CH], backend="dask", preflight=False)
    assert _tables(tmp_path) == serial, "grading on a dask LocalCluster differs from the serial run"


def test_unknown_backend_is_refused(klass, tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        backends.run_jobs([], 1, "carrier-pigeon", None)
