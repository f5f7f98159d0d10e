"""The course as a learner meets it: JupyterLab in headless Chromium (selenium), started as
`make lab` starts it, on a copy of course/. What the learner sees is asserted on the page:
the start page's environment check, a failing check's message without internals, a quiz's
feedback, a progress bar, figures, and learner tools only. Screenshots go to
$WORKBOOK_SCREENSHOTS (default: the test's temporary folder)."""
import os
import shutil
from pathlib import Path

import pytest

import browser as B
from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]
if os.environ.get("WORKBOOK_REQUIRE_BROWSER") != "1" and B.available():  # CI requires it (.ci/run)
    pytest.skip(B.available(), allow_module_level=True)

ERROR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A learner's course folder (the student notebooks, plus chapter 01's instructor notebook
    as a learner's finished work) served by JupyterLab, with the open course's answers file."""
    from autograder import answers

    tmp = tmp_path_factory.mktemp("lab")
    folder = B.course_copy(tmp / "course")
    shutil.copy(REPO / "solutions" / "01_autoencoders.ipynb", folder / "finished_01.ipynb")
    answers.write(tmp / "build" / "answers.json")
    shots = Path(os.environ.get("WORKBOOK_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with B.lab(folder, answers=tmp / "build" / "answers.json") as (url, token), B.browser() as driver:
        yield driver, url, token, shots


def _open(lab, name):
    from selenium.webdriver.common.by import By

    driver, url, token, _ = lab
    workspace = name.split(".")[0].replace("_", "-").lower()  # a workspace of its own: this notebook alone
    driver.get(f"{url}/lab/workspaces/{workspace}/tree/{name}?reset&token={token}")
    B.wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), what=f"{name} to open")
    B.wait_for(driver, lambda d: "Idle" in d.find_element(By.ID, "jp-main-statusbar").text, what="the kernel")
    return driver


def _run_all(driver, timeout=300):
    import time

    B.run_all(driver)
    B.wait_for(driver, lambda d: B.busy_cells(d) > 0 or B.ran_cells(d) > 0, timeout=60, poll=0.05,
               what="Run All to start")
    time.sleep(1)
    B.wait_for(driver, lambda d: B.busy_cells(d) == 0, timeout=timeout, what="Run All to finish")


def _outputs(driver, selector=".jp-OutputArea-output"):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_the_start_page_checks_the_environment(lab):
    driver = _open(lab, "START_HERE.ipynb")
    _run_all(driver, timeout=120)
    text = "\n".join(o.text for o in _outputs(driver))
    assert "profile: smoke (set by WORKBOOK_PROFILE)" in text, text
    assert "answers while working: on" in text and "MNIST:" in text, text
    assert not _outputs(driver, ERROR)
    B.scroll_to(driver, ".jp-OutputArea-output")
    driver.save_screenshot(str(lab[3] / "start_here.png"))


def test_a_failing_check_shows_its_message_alone(lab):
    driver = _open(lab, "01_autoencoders.ipynb")
    _run_all(driver)  # a blank notebook: Run All stops at the first check
    errors = _outputs(driver, ERROR)
    assert len(errors) == 1, [e.text for e in errors]
    B.scroll_to(driver, ERROR)
    driver.save_screenshot(str(lab[3] / "failing_check.png"))
    lines = errors[0].text.splitlines()
    assert lines[0] == "CheckFailed: [pca] pca_fit is not implemented yet", lines
    assert lines[1].startswith("  input:") or lines[1].startswith("input:"), lines
    assert len(lines) <= 15 and not any("checks.py" in ln or "Traceback" in ln for ln in lines), lines


def test_quiz_feedback_progress_bars_and_figures(lab):
    driver = _open(lab, "finished_01.ipynb")
    B.run_all(driver)
    B.scroll_to(driver, ".jp-OutputArea-output .progress-bar", timeout=180)  # while it runs
    driver.save_screenshot(str(lab[3] / "progress_bar.png"))
    B.wait_for(driver, lambda d: B.busy_cells(d) == 0, timeout=300, what="Run All to finish")
    assert not _outputs(driver, ERROR), [e.text for e in _outputs(driver, ERROR)]
    quiz = next(o for o in _outputs(driver) if "answer_ae_loss" in o.text)
    assert "✓ answer_ae_loss: right" in quiz.text and "the idea:" in quiz.text, quiz.text
    B.scroll_to(driver, ".jp-OutputArea-output", containing="answer_ae_loss")
    driver.save_screenshot(str(lab[3] / "quiz_feedback.png"))
    figures = _outputs(driver, ".jp-OutputArea-output img")
    assert len(figures) >= 3 and all(f.size["width"] > 100 for f in figures[:3])


def test_learners_see_learner_tools_only(lab):
    driver = _open(lab, "01_autoencoders.ipynb")
    page = driver.page_source
    assert "Validate" in driver.find_element("css selector", ".jp-NotebookPanel-toolbar").text
    for instructor_tool in ("Formgrader", "Create Assignment", "Course List", "Assignment List"):
        assert instructor_tool not in page, instructor_tool
