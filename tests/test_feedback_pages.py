"""Feedback pages that serve a learner and an instructor: figures kept as inline PNGs, the
markdown's LaTeX as MathML (no script), automatic and written points shown apart and as
grades.csv has them, written.csv with line breaks, rubric and model answer, and
`python -m autograder feedback DIR` writing the instructor's awarded points into the pages.

The slow tests share one grading run of chapter 01's instructor notebook (no preflight);
the others are unit tests of the LaTeX conversion, the points and written.csv."""
import csv
import json
import shutil

import pytest
from bs4 import BeautifulSoup

from autograder import feedback, outputs, report
from autograder.__main__ import main
from autograder.rows import Result
from conftest import REPO

CH = "01_autoencoders"
SOURCE = REPO / "solutions" / f"{CH}.ipynb"
# alice's answer to written_collapse: several lines, a formula, a code span with dollars,
# and a first line a spreadsheet would run
ANSWER = "=SUM(A1:A9) is not a formula here\nSecond line: the loss $\\alpha \\le 1$.\n\nA code span `$HOME$` stays code."


def _soup(text):
    return BeautifulSoup(text, "html.parser")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from autograder import grade as grading

    subs = tmp_path_factory.mktemp("subs")
    nb = json.loads(SOURCE.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "written_collapse":
            cell["source"] = ANSWER
    (subs / "alice").mkdir()
    (subs / "alice" / f"{CH}.ipynb").write_text(json.dumps(nb))
    out = tmp_path_factory.mktemp("out")
    grading.grade(subs, out, jobs=1, chapters=[CH], preflight=False, quiet=True)
    page = out / "feedback" / "alice" / f"{CH}.html"
    return out, page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_page_keeps_the_figures_as_inline_pngs(graded):
    out, page = graded
    pictures = [img for img in _soup(page).find_all("img") if img.get("src", "").startswith("data:image/png;base64,")]
    assert len(pictures) >= 3, f"{len(pictures)} inline PNG figure(s) on the page"
    assert "img-src data:" in outputs.CSP and outputs.CSP in page
    grades = _rows(out / "grades.csv")[0]
    assert "truncated" not in grades["detail"], grades["detail"]  # the course's own figures fit the caps


@pytest.mark.slow
def test_page_renders_maths_as_mathml_and_runs_nothing(graded):
    _, page = graded
    soup = _soup(page)
    assert len(soup.find_all("math")) >= 10
    assert "<script" not in page.lower() and not soup.find_all("script")
    answer = soup.find("a", attrs={"name": "written_collapse"}).find_parent("div", class_="cell")
    assert answer.find("math") is not None, "the learner's formula is not MathML"
    assert answer.find("code", string="$HOME$") is not None, "a code span's dollars were taken for maths"


@pytest.mark.slow
def test_points_are_shown_apart_and_as_grades_csv_has_them(graded):
    out, page = graded
    row = _rows(out / "grades.csv")[0]
    assert row["status"] == "graded" and float(row["score"]) == float(row["max_score"]) > 0
    line = _soup(page).find(id="wb-points")
    text = " ".join(line.get_text().split())
    assert f"Automatic checks: {row['score']} / {row['max_score']}" in text, text
    assert "Written answers: pending (4 points, graded by your instructor)" in text, text
    assert (line["data-score"], line["data-max"]) == (row["score"], row["max_score"])
    assert "Score: 14.0 / 18.0" not in page
    toc = _soup(page).find(id="toc")
    assert "Test cell" not in toc.get_text() and "Written response" not in toc.get_text()
    pca = toc.find("a", href="#pca_checks").parent.get_text()
    assert "PCA" in pca and "pca_checks" in pca and "3 / 3" in pca, pca
    assert len(toc.find_all("span", class_="wb-written")) == 2


@pytest.mark.slow
def test_written_csv_keeps_line_breaks_rubric_and_model_answer(graded):
    out, _ = graded
    rows = {r["question"]: r for r in _rows(out / "written.csv")}
    assert set(rows) == {"written_linear_basis", "written_collapse"}
    model = rows["written_linear_basis"]
    assert "\n" in model["model_answer"] and "\n" in model["rubric"] and "?" not in model["answer"]
    assert model["model_answer"].startswith("The reconstruction") and model["rubric"].startswith("1 point")
    assert model["answer"].startswith("**Model answer.**") and "\n" in model["answer"]
    assert rows["written_collapse"]["answer"] == "'" + ANSWER  # line breaks kept, the formula neutralised
    assert rows["written_collapse"]["awarded"] == ""


@pytest.mark.slow
def test_feedback_command_puts_the_awarded_points_into_the_page(graded, tmp_path, capsys):
    out, _ = graded
    run = tmp_path / "run"
    shutil.copytree(out, run)
    rows = _rows(run / "written.csv")
    for row in rows:
        row["awarded"] = "1.5" if row["question"] == "written_collapse" else ""
    with open(run / "written.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    page = run / "feedback" / "alice" / f"{CH}.html"
    assert main(["feedback", str(run)]) == 0
    soup = _soup(page.read_text())
    text = " ".join(soup.find(id="wb-points").get_text().split())
    assert "Automatic checks: 14 / 14" in text and "Written answers: 1.5 / 2 so far, 2 more points pending" in text
    spans = {s["data-question"]: s.get_text() for s in soup.find_all("span", class_="wb-written")}
    assert spans["written_collapse"].startswith("1.5 / 2") and spans["written_linear_basis"].startswith("pending")
    rows[0]["awarded"] = rows[1]["awarded"] = "2"
    rows[[r["question"] for r in rows].index("written_collapse")]["awarded"] = "1.5"
    with open(run / "written.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["export", str(run)]) == 0   # export writes the points into the pages too
    text = " ".join(_soup(page.read_text()).find(id="wb-points").get_text().split())
    assert "Written answers: 3.5 / 4" in text and "Total: 17.5 / 18" in text, text
    wide = list(csv.reader(open(run / "lms-wide.csv", newline="")))
    assert wide[1] == ["alice", "17.5", "17.5"]  # the page's total is the exported one
    assert "<script" not in page.read_text().lower()


# ----------------------------------------------------------------------------- LaTeX as MathML

def _render(markdown_html):
    soup = _soup(f'<div class="text_cell_render">{markdown_html}</div>')
    n = feedback.render_math(soup)
    return n, soup


def test_inline_and_display_maths_become_mathml():
    n, soup = _render(r"<p>Inline $x^2$ and</p><p>$$\sum_i x_i^2$$</p><p>\begin{align}a &amp;= b\end{align}</p>")
    maths = soup.find_all("math")
    assert n == 3 and [m["display"] for m in maths] == ["inline", "block", "block"]
    assert maths[0].find("msup") is not None and "$" not in soup.get_text()


def test_sized_delimiters_become_their_characters():
    n, soup = _render(r"<p>$\big\lVert x \big\rVert^2$ and $\bigl\langle a, b \bigr\rangle$</p>")
    assert n == 2 and [m.string for m in soup.find_all("mo")] == ["\u2016", "\u2016", "\u27e8", ",", "\u27e9"]


def test_code_spans_and_prices_are_left_alone():
    n, soup = _render("<p>costs $5 and $10, <code>$y$</code></p><pre><code>echo $HOME$</code></pre>")
    assert n == 0 and not soup.find_all("math")
    assert soup.find("code").string == "$y$" and "costs $5 and $10" in soup.get_text()


def test_a_formula_that_does_not_convert_stays_as_its_text():
    n, soup = _render(r"<p>broken $x^{$, unknown $\foo{x}$, markup $\text{&lt;b&gt;x&lt;/b&gt;}$, ok $a&lt;b$</p>")
    assert n == 1 and len(soup.find_all("math")) == 1
    text = soup.get_text()
    assert r"$x^{$" in text and r"$\foo{x}$" in text and r"$\text{<b>x</b>}$" in text
    assert soup.find("b") is None and soup.find("math").find("mo").string == "<"


def test_mathml_has_no_links_or_styles():
    n, soup = _render(r"<p>$\href{javascript:alert(1)}{x}$ and $\color{red}{y}$</p>")
    maths = soup.find_all("math")
    assert maths and all(not set(t.attrs) & {"href", "style", "class", "id"} for m in maths for t in [m, *m.find_all(True)])


# ----------------------------------------------------------------------------- points

PAGE = ('<html><head></head><body><div class="panel-heading"><h4>nb (Score: 3.0 / 5.0)</h4><div id="toc"><ol>'
        '<li><a href="#a_checks">Test cell</a> (Score: 3.0 / 3.0)</li>'
        '<li><a href="#w1">Written response</a> (Score: 0.0 / 2.0)</li></ol></div></div>'
        '<div id="notebook-container"><div class="cell"><div class="text_cell_render"><h2>1 · Sums'
        '<a class="anchor-link" href="#x">¶</a></h2></div></div>'
        '<div class="cell"><a name="a_checks"></a><div class="panel-heading">Score: 3.0 / 3.0</div></div>'
        '<div class="cell"><div class="text_cell_render"><p><strong>W1 (2 points).</strong> Why?</p></div></div>'
        '<div class="cell"><div class="panel"><a name="w1"></a><div class="panel-heading">'
        '<span class="nbgrader-label">Student\'s answer</span><span class="pull-right">Score: 0.0 / 2.0 '
        '<a href="#top">(Top)</a></span></div></div></div></div></body></html>')


def test_page_names_cells_and_shows_points_apart_then_awarded():
    page = feedback.make_page(PAGE, feedback.Points(3, 3, "graded", {"w1": (2.0, None)}))
    soup = _soup(page)
    assert " ".join(soup.find(id="wb-points").get_text().split()) == \
        "Automatic checks: 3 / 3 · Written answers: pending (2 points, graded by your instructor)"
    toc = soup.find(id="toc").get_text()
    assert "1 · Sums" in toc and "a_checks" in toc and "W1 (2 points)" in toc and "Test cell" not in toc
    assert len(soup.find_all("span", class_="wb-written")) == 2   # in the list and in the answer's heading
    again = feedback.show_points(page, None, {"w1": (2.0, 1.5)})
    text = " ".join(_soup(again).find(id="wb-points").get_text().split())
    assert text.endswith("Written answers: 1.5 / 2 (graded by your instructor) · Total: 4.5 / 5")
    assert feedback.show_points(again, None, {"w1": (2.0, 1.5)}) == again
    tampered = feedback.show_points(page, feedback.Points(0, 3, "tampered"), {"w1": (2.0, 2.0)})
    assert "not counted" in _soup(tampered).find(id="wb-points").get_text()


# ----------------------------------------------------------------------------- written.csv and caps

def test_written_csv_keeps_awarded_points_of_unchanged_multiline_answers(tmp_path):
    models = {CH: {"w1": (2.0, "**Model answer.** Two\nlines.\n\n**Rubric.** 1 point: x.\n1 point: y.")}}
    results = [Result("ada", CH, written=[("w1", 2.0, "line one\nline two")]),
               Result("bob", CH, written=[("w1", 2.0, "=1+1\nsecond")])]
    report.write_written(results, tmp_path, models=models)
    rows = _rows(tmp_path / "written.csv")
    assert rows[0]["answer"] == "line one\nline two" and rows[1]["answer"] == "'=1+1\nsecond"
    assert rows[0]["model_answer"] == "Two\nlines." and rows[0]["rubric"] == "1 point: x.\n1 point: y."
    for row, points in zip(rows, ("2", "0.5")):
        row["awarded"] = points
    with open(tmp_path / "written.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    results[1].written = [("w1", 2.0, "=1+1\nsecond, changed")]
    report.write_written(results, tmp_path, models=models)
    assert [r["awarded"] for r in _rows(tmp_path / "written.csv")] == ["2", ""]
    # a written.csv from before line breaks were kept (they read `?`) still matches
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    outputs.write_csv(legacy / "written.csv", ["student", "notebook", "question", "points", "answer", "awarded"],
                      [["ada", CH, "w1", "2", "line one?line two", "1"]])
    report.write_written(results[:1], legacy, models=models)
    assert _rows(legacy / "written.csv")[0]["awarded"] == "1"
    assert outputs.answer_text("a\r\nb\x1bc\u202ed") == "a\nb?c?d"


def test_figures_have_room_of_their_own_under_the_output_caps():
    figure = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "A" * 150_000, "text/plain": "<Figure>"}}
    text = {"output_type": "stream", "name": "stdout", "text": "x" * 150_000}
    nb = {"cells": [{"cell_type": "code", "outputs": [figure, figure, text]}]}
    removed = outputs.cap_outputs(nb)
    kinds = [o.get("output_type") for o in nb["cells"][0]["outputs"]]
    assert kinds[:2] == ["display_data", "display_data"] and 0 < removed < 150_000
    many = {"cells": [{"cell_type": "code", "outputs": [figure] * 20} for _ in range(6)]}
    outputs.cap_outputs(many)
    assert sum(len(json.dumps(o)) for c in many["cells"] for o in c["outputs"]) < outputs.MAX_NOTEBOOK_OUTPUT + 1000


def test_csv_cells_after_leading_line_breaks_are_neutralised_too():
    assert outputs.csv_cell("\n=HYPERLINK(1)") == "'\n=HYPERLINK(1)" and outputs.csv_cell("a\n=b") == "a\n=b"


@pytest.mark.slow
def test_the_page_as_a_learner_sees_it_in_a_browser(graded, tmp_path):
    """The page opened in headless Chromium from disk, as a learner opens it: the figures
    decode and show, the maths lays out as MathML (a formula has width), nothing runs."""
    import os

    import browser as B

    if os.environ.get("WORKBOOK_REQUIRE_BROWSER") != "1" and B.available():
        pytest.skip(B.available())
    out, _ = graded
    page = out / "feedback" / "alice" / f"{CH}.html"
    copy = tmp_path / page.name  # the run's output folder is private to the grader
    copy.write_bytes(page.read_bytes())
    with B.browser(1200, 1600) as driver:
        driver.get(copy.as_uri())
        B.wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete", what="the page")
        shown = driver.execute_script(
            "return [...document.images].filter(i => i.complete && i.naturalWidth > 100).length")
        widths = driver.execute_script(
            "return [...document.getElementsByTagName('math')].map(m => m.getBoundingClientRect().width)")
        scripts = driver.execute_script("return document.scripts.length")
        text = driver.find_element("tag name", "body").text
        shots = os.environ.get("WORKBOOK_SCREENSHOTS")
        if shots:
            os.makedirs(shots, exist_ok=True)
            driver.save_screenshot(os.path.join(shots, "feedback_page.png"))
    assert shown >= 3, f"{shown} figure(s) shown"
    assert len(widths) >= 10 and sum(w > 0 for w in widths) >= 10, widths[:20]
    assert scripts == 0
    assert "Automatic checks: 14 / 14" in text and "Written answers: pending" in text
    assert "$\\mathbb" not in text  # no raw LaTeX left where a formula was
