import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "course")]
os.environ.setdefault("WORKBOOK_OFFLINE", "1")   # tests never touch the network
os.environ.setdefault("MPLBACKEND", "Agg")


def chapters():
    from autograder import authoring
    return authoring.chapter_names()


@pytest.fixture(scope="session")
def repo():
    return REPO
