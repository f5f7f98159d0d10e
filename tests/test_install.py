"""A regular install, as an instructor makes it: `pip install` of the wheel into a fresh
environment (no editable install, no repository beside it), then the `autograder` command
grades a submission from a folder of its own. The wheel must carry every chapter."""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, chapters

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("install")]  # one wheel build, on one worker


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder, environment) of a fresh venv holding only the wheel; the heavy
    dependencies (torch, nbgrader, ...) are this environment's, reached through a .pth line,
    so that the test does not download them again."""
    tmp = tmp_path_factory.mktemp("install")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but the wheel is found
    # built from a copy of the sources: an in-tree build writes build/ and *.egg-info in the repository
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                ".pytest_cache", ".ipynb_checkpoints"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist")], check=True, capture_output=True, env=clean)
    wheel, = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # this environment's packages (not its editable install: a plain path line runs no .pth in it)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, env=clean)
    env = dict(clean)
    # the dependencies' commands (nbgrader calls `alembic`) are this environment's too
    path = os.pathsep.join([str(venv / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(WORKBOOK_CACHE=str(tmp / "cache"), PATH=path)
    return wheel, venv / "bin", env, tmp


def test_the_wheel_carries_every_chapter_and_the_command(installed):
    wheel, bin_dir, env, tmp = installed
    names = zipfile.ZipFile(wheel).namelist()
    for chapter in chapters():
        for part in ("narrative", "solutions", "hidden", "mistakes"):
            assert f"autograder/chapters/{chapter}/{part}.py" in names, (chapter, part)
    assert not any(n.startswith(("solutions/", "course/", "tests/")) for n in names)
    code = ("import autograder, workbook; from autograder import chapters; "
            "print(autograder.__file__, workbook.__file__, len(chapters.names()))")
    out = subprocess.run([bin_dir / "python", "-c", code], cwd=tmp, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert all(str(tmp / "venv") in p for p in out[:2]), out  # the installed copies, not the repository
    assert out[2] == str(len(chapters()))


def test_the_installed_command_grades_a_submission(installed):
    wheel, bin_dir, env, tmp = installed
    sub = tmp / "submissions" / "ann"
    sub.mkdir(parents=True)
    (sub / "01_autoencoders.ipynb").write_bytes((REPO / "solutions" / "01_autoencoders.ipynb").read_bytes())
    os.chmod(tmp / "submissions", 0o700)
    r = subprocess.run([bin_dir / "autograder", "grade", str(tmp / "submissions"), "--out", str(tmp / "out"),
                        "--no-preflight"], cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = (tmp / "out" / "grades.csv").read_text().splitlines()
    assert rows[1].startswith("ann,01_autoencoders,14,14,graded"), rows
    # the notebooks it graded against were generated from the installed sources, outside the package
    assert list((tmp / "cache" / "generated").glob("01_autoencoders-*/solutions/01_autoencoders.ipynb"))
