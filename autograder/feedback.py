"""Feedback pages: what a learner sees of their graded notebook.

`sanitize_for_feedback` removes the hidden tests, the seal lines and every traceback from
the autograded notebook; `add_model_answers` puts the model answer after each written
answer; `generate_feedback` runs `nbgrader generate_feedback` in a process of its own
(`autograder.forked`); `write_feedback` makes each page (`make_page`: LaTeX as MathML,
every graded cell named, the points shown apart) and hardens it (`outputs.harden_page`)
into the run's private output folder. A failure or time-out costs only the page.

The page's points: "Automatic checks: 14 / 14" (as grades.csv has them) and the written
answers apart, "pending (4 points, graded by your instructor)" until the instructor fills
`awarded` in written.csv; then `refresh_pages` (`python -m autograder feedback DIR`, also
run by `export` and at the end of `grade`) rewrites those lines in place, cheaply (no
nbgrader, no HTML parse: only the page's own marked elements change).
"""
from __future__ import annotations

import contextlib
import html
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import forked, integrity, outputs
from .build import nbgrader, tool_env
from .intake import private_dir
from .rows import Job, Result

FEEDBACK_TIMEOUT = 300.0  # seconds for one notebook's generate_feedback
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def without_hidden_blocks(src: str) -> str:
    """`src` without its hidden blocks (and the blanks before each and the line end after),
    in one pass: linear in the length of the learner's text (a regular expression starting
    with `[ \\t]*` took quadratic time on a line of 180,000 spaces: 28 s)."""
    kept, at = [], 0
    while (begin := src.find(HIDDEN_BEGIN, at)) >= 0 and (end := src.find(HIDDEN_END, begin)) >= 0:
        start = begin
        while start > at and src[start - 1] in " \t":
            start -= 1
        end += len(HIDDEN_END)
        while end < len(src) and src[end] in " \t":
            end += 1
        end += src.startswith("\n", end)
        kept.append(src[at:start])
        at = end
    kept.append(src[at:])
    return "".join(kept)

SEAL_OUTPUT = re.compile(integrity.SEAL_LINE.pattern + r"\n?")


def sanitize_for_feedback(path: Path) -> None:
    """Remove hidden tests (and the grader's seal lines) from an autograded notebook and
    keep only `Error: message` of every error, so feedback never shows hidden test code, not even
    as the source lines a traceback prints around a failure."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = without_hidden_blocks(src)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
            if out.get("output_type") == "stream":
                out["text"] = SEAL_OUTPUT.sub("", integrity._join(out.get("text", "")))
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "stream" or o["text"]]
    outputs.plain_outputs(nb)  # learner HTML/JavaScript/widgets are shown as text, never live
    path.write_text(json.dumps(nb, indent=1))


def write_feedback(job: Job, root: Path, results: list[Result], watch: dict | None = None) -> None:
    """Feedback pages, hardened (`outputs.harden_page`: nothing in them runs or loads),
    into the run's private output folder; a failure or time-out costs only the page."""
    for res in results:
        if not (root / "autograded" / job.sid / res.notebook).exists():
            continue
        with (watch[res.notebook]("feedback") if watch else contextlib.nullcontext()):
            _feedback_page(job, root, res)


def _feedback_page(job: Job, root: Path, res: Result) -> None:
    """One notebook's page; a failure or time-out costs only the page (a note in its row)."""
    try:
        add_model_answers(root / "autograded" / job.sid / res.notebook / f"{res.notebook}.ipynb",
                          job.chapters[res.notebook].written)
        generate_feedback(root, res.notebook, job.sid)
        fb = root / "feedback" / job.sid / res.notebook / f"{res.notebook}.html"
        if fb.exists():
            dest = private_dir(job.out / "feedback" / job.sid) / f"{res.notebook}.html"
            points = Points(res.score, res.max_score, res.status, {gid: (p, None) for gid, p, _ in res.written})
            dest.write_text(make_page(fb.read_text(encoding="utf-8", errors="replace"), points), encoding="utf-8")
    except Exception:  # noqa: BLE001 - no page, a note; the grade stands
        res.detail = "; ".join(d for d in [res.detail, "no feedback page (the feedback step failed)"] if d)
        with contextlib.suppress(OSError):
            with open(private_dir(job.out / "logs" / job.sid) / "grader-error.log", "a") as f:
                import traceback
                f.write(outputs.log_text(f"--- feedback {res.notebook}\n{traceback.format_exc()}\n"))


def add_model_answers(graded: Path, written: dict[str, tuple[float, str]]) -> None:
    """After each written answer of the graded notebook, the model answer and rubric (for the
    feedback page only: the learner has handed in and is shown them after grading)."""
    if not written or not graded.exists():
        return
    nb = json.loads(graded.read_text())
    cells = []
    for c in nb["cells"]:
        cells.append(c)
        gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if c.get("cell_type") == "markdown" and gid in written:
            cells.append({"cell_type": "markdown", "metadata": {}, "id": f"model-{gid}"[:64].replace("_", "-"),
                          "source": f"> **After grading: the model answer** (graded by your instructor, "
                                    f"{written[gid][0]:g} points)\n>\n" +
                                    "\n".join("> " + ln for ln in written[gid][1].splitlines())})
    nb["cells"] = cells
    graded.write_text(json.dumps(nb))


def generate_feedback(root: Path, notebook: str, sid: str, timeout: float = FEEDBACK_TIMEOUT) -> None:
    """`nbgrader generate_feedback` for one notebook, in a process of its own that is killed
    after `timeout`: forked from the run's server (`autograder.forked`, nbgrader and nbconvert
    imported once per run), or `python -m nbgrader` where that cannot be."""
    ctx = forked.context()
    if ctx is None:
        nbgrader(["generate_feedback", notebook, "--student", sid, "--force"], cwd=root, timeout=timeout)
        return
    code, _log = forked.run(ctx, _feedback_child, (str(root), notebook, sid, tool_env()), cwd=root, timeout=timeout)
    if code is None:
        raise TimeoutError(f"generate_feedback took more than {timeout:.0f} s")


def _feedback_child(output: int, root: str, notebook: str, sid: str, env: dict) -> None:
    """In the forked process: nbgrader's own command line, from the course root (where it
    finds its config), its log discarded as the subprocess's was."""
    forked.enter(root, env)
    from nbgrader.apps.nbgraderapp import NbGraderApp

    sys.argv = ["nbgrader", "generate_feedback", notebook, "--student", sid, "--force"]
    NbGraderApp.launch_instance(argv=sys.argv[1:])


# ----------------------------------------------------------------------------- the page

@dataclass
class Points:
    """What a page says about points: the automatic ones as grades.csv has them, and each
    written question's points and what the instructor awarded (None: not yet)."""
    score: float
    max_score: float
    status: str = "graded"
    written: dict[str, tuple[float, float | None]] = field(default_factory=dict)


PAGE_STYLE = """
#wb-points { font-size: 16px; margin: 0.6em 0 0.8em 0; }
#wb-points .wb-sep { color: #999; margin: 0 0.3em; }
.wb-toc-title { font-weight: bold; margin: 0.6em 0 0.2em 0; }
span.wb-written { font-weight: bold; }
math[display="block"] { margin: 0.6em 0; }
"""


def make_page(page: str, points: Points) -> str:
    """nbgrader's feedback page made for the learner: LaTeX of markdown cells as MathML
    (`render_math`), every graded cell named by its section and id and the written answers
    listed apart (`label_cells`), hardened (`outputs.harden_page`: no script, MathJax's
    included), then the points written in (`show_points`)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser")
    render_math(soup)
    label_cells(soup, points)
    head = soup.find("head")
    if head is not None:
        style = soup.new_tag("style")
        style.string = PAGE_STYLE
        head.append(style)
    return show_points(outputs.harden_soup(soup), points)


def label_cells(soup, points: Points) -> None:
    """nbgrader's header ("01_autoencoders (Score: 14.0 / 18.0)") and list of "Test cell"s
    become the notebook's name, a points line (`#wb-points`) and two lists: the automatic
    checks, each named by the section it is in and its id with its score, and the written
    answers with their status (`span.wb-written`, also in each answer's own heading)."""
    toc = soup.find(id="toc")
    heading = toc.find_previous("h4") if toc else None
    if heading is not None:
        name = re.sub(r"\s*\(Score:[^)]*\)\s*$", "", heading.get_text()).strip()
        heading.clear()
        heading.append(name)
        summary = soup.new_tag("p", attrs={"id": "wb-points"})
        heading.insert_after(summary)
    if toc is None:
        return
    auto, written = [], []
    for li in toc.find_all("li"):
        a = li.find("a", href=True)
        gid = a["href"][1:] if a is not None and a["href"].startswith("#") else ""
        score = re.search(r"Score:\s*([-0-9.]+)\s*/\s*([-0-9.]+)", li.get_text())
        if not gid or score is None:
            auto.append(li.extract())
            continue
        item = soup.new_tag("li")
        link = soup.new_tag("a", href=f"#{gid}")
        link.string = _section(soup, gid, written=gid in points.written or a.get_text().strip() == "Written response")
        code = soup.new_tag("code")
        code.string = gid
        item.extend([link, " ", code, ": "])
        if gid in points.written or a.get_text().strip() == "Written response":
            pts = points.written.get(gid, (float(score.group(2)), None))[0]
            item.append(_written_span(soup, gid, pts))
            written.append(item)
            _label_answer(soup, gid, pts)
        else:
            item.append(f"{float(score.group(1)):g} / {float(score.group(2)):g}")
            auto.append(item)
        li.decompose()
    toc.clear()
    for title, items in (("Automatic checks", auto), ("Written answers (graded by your instructor)", written)):
        if items:
            p = soup.new_tag("p", attrs={"class": "wb-toc-title"})
            p.string = title
            ol = soup.new_tag("ol")
            ol.extend(items)
            toc.extend([p, ol])


def _written_span(soup, gid: str, points: float):
    return soup.new_tag("span", attrs={"class": "wb-written", "data-question": gid, "data-points": f"{points:g}"})


def _label_answer(soup, gid: str, points: float) -> None:
    """The heading of a written answer's own cell: its status instead of "Score: 0.0 / 2.0"."""
    anchor = soup.find("a", attrs={"name": gid})
    bar = anchor.find_next_sibling("div", class_="panel-heading") if anchor else None
    right = bar.find("span", class_="pull-right") if bar else None
    if right is None:
        return
    for text in right.find_all(string=re.compile(r"Score:"), recursive=False):
        text.replace_with("Written answer: ")
    top = right.find("a")
    (top.insert_before if top else right.append)(_written_span(soup, gid, points))
    if top:
        top.insert_before(" ")


def _section(soup, gid: str, written: bool = False) -> str:
    """The heading of the section a graded cell is in (the markdown heading before it in the
    notebook), or its id; for a written answer, with the question's bold label ("W2 (2
    points)") where the cell before it starts with one."""
    anchor = soup.find("a", attrs={"name": gid})
    h = anchor.find_previous(["h1", "h2", "h3", "h4"]) if anchor else None
    text = ""
    if h is not None and h.find_parent(id="notebook-container") is not None:
        text = "".join(t for t in h.find_all(string=True) if t.find_parent("a", class_="anchor-link") is None)
    cell = anchor.find_parent("div", class_="cell") if anchor and written else None
    question = cell.find_previous_sibling("div", class_="cell") if cell else None
    paras = question.find_all("p", limit=3) if question else []
    label = next((p.strong for p in paras if p.strong and p.get_text().lstrip().startswith(p.strong.get_text().strip())
                  and p.strong.get_text().strip()), None)
    if label is not None and len(label.get_text().strip()) <= 40:
        text = f"{text}: {label.get_text().strip().rstrip('.:')}" if text else label.get_text().strip().rstrip(".:")
    text = " ".join(text.split())
    return (text if len(text) <= 100 else text[:97] + "...") or gid


# ----------------------------------------------------------------------------- points

SUMMARY = re.compile(r'<p\b[^>]*\bid="wb-points"[^>]*>.*?</p>', re.S)
WRITTEN_SPAN = re.compile(r'<span\b[^>]*\bclass="wb-written"[^>]*>.*?</span>', re.S)  # attributes in any order
ATTR = re.compile(r'\bdata-([a-z]+)="([^"]*)"')
PENDING = "graded by your instructor"


def show_points(page: str, points: Points | None = None,
                written: dict[str, tuple[float, float | None]] | None = None) -> str:
    """The page with its points line and every written question's status rewritten: the
    automatic points and status from `points` (else those the page holds), each written
    question's points and award from `written` or `points.written` (else the page's points,
    pending). Only the page's own marked elements change (`make_page` made them; markup of
    a learner never has them: markdown tags are text, outputs are escaped)."""
    written = dict(written if written is not None else points.written if points else {})
    for m in WRITTEN_SPAN.finditer(page):
        held = dict(ATTR.findall(m.group(0).split(">", 1)[0]))
        with contextlib.suppress(ValueError, KeyError):
            written.setdefault(held["question"], (float(held["points"]), None))
    summary = SUMMARY.search(page)
    if summary is None:
        return page
    if points is None:
        held = dict(ATTR.findall(summary.group(0)))
        try:
            points = Points(float(held["score"]), float(held["max"]), html.unescape(held.get("status", "graded")))
        except (KeyError, ValueError):
            return page
    counted = points.status != "tampered"
    def question(m: re.Match) -> str:
        gid = dict(ATTR.findall(m.group(0).split(">", 1)[0])).get("question", "")
        return _question(gid, *written[gid], counted) if re.fullmatch(r"[A-Za-z0-9_.-]+", gid) and gid in written \
            else m.group(0)

    page = WRITTEN_SPAN.sub(question, page)
    return SUMMARY.sub(lambda m: _summary(points, written, counted), page, count=1)


def _question(gid: str, points: float, awarded: float | None, counted: bool) -> str:
    text = ("not counted (a tampered notebook scores 0)" if not counted
            else f"pending ({points:g} point{'s' * (points != 1)}, {PENDING})" if awarded is None
            else f"{awarded:g} / {points:g} ({PENDING})")
    return (f'<span class="wb-written" data-awarded="{"" if awarded is None else f"{awarded:g}"}" '
            f'data-points="{points:g}" data-question="{gid}">{html.escape(text)}</span>')


def _summary(points: Points, written: dict[str, tuple[float, float | None]], counted: bool) -> str:
    esc = html.escape
    auto = f"{points.score:g} / {points.max_score:g}" + ("" if points.status == "graded" else f" ({points.status})")
    parts = [f"<b>Automatic checks:</b> {esc(auto)}"]
    if written:
        possible = sum(p for p, _ in written.values())
        given = [a for _, a in written.values() if a is not None]
        pending = sum(p for p, a in written.values() if a is None)
        if not counted:
            text = f"not counted ({possible:g} points; a tampered notebook scores 0)"
        elif not given:
            text = f"pending ({possible:g} point{'s' * (possible != 1)}, {PENDING})"
        elif pending:
            text = f"{sum(given):g} / {possible - pending:g} so far, {pending:g} more point{'s' * (pending != 1)} pending ({PENDING})"
        else:
            text = f"{sum(given):g} / {possible:g} ({PENDING})"
        parts.append(f"<b>Written answers:</b> {esc(text)}")
        if counted and given and not pending:
            parts.append(f"<b>Total:</b> {points.score + sum(given):g} / {points.max_score + possible:g}")
    attrs = (f'id="wb-points" data-score="{points.score:g}" data-max="{points.max_score:g}" '
             f'data-status="{esc(points.status, quote=True)}"')
    return f"<p {attrs}>" + '<span class="wb-sep"> · </span>'.join(parts) + "</p>"


def refresh_pages(run: Path) -> tuple[int, int]:
    """Rewrite the points of every feedback page of grading run `run` from its grades.csv
    and written.csv (the instructor's `awarded`; `lms.read_written` checks them); returns
    (pages, pages changed). Cheap: no nbgrader, no HTML parse."""
    import csv

    from .lms import _plain, read_written

    run = Path(run)
    if not (run / "grades.csv").exists():
        raise FileNotFoundError(f"{run / 'grades.csv'}: no grades.csv here (is {run} the --out folder of a grading run?)")
    grades = {}
    with open(run / "grades.csv", newline="") as f:
        for row in csv.DictReader(f):
            with contextlib.suppress(KeyError, ValueError):
                grades[(_plain(row["student"]), _plain(row["notebook"]))] = Points(
                    float(row["score"]), float(row["max_score"]), row.get("status") or "graded")
    written: dict[tuple[str, str], dict[str, tuple[float, float | None]]] = {}
    for student, nb, q, points, awarded in read_written(run):
        written.setdefault((student, nb), {})[q] = (points, awarded)
    pages = sorted((run / "feedback").glob("*/*.html"))
    changed = 0
    for page in pages:
        key = (page.parent.name, page.stem)
        text = page.read_text(encoding="utf-8", errors="replace")
        new = show_points(text, grades.get(key), written.get(key, {}))
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return len(pages), changed


# ----------------------------------------------------------------------------- maths

# As nbconvert finds maths in markdown (it leaves it as text for MathJax): $$...$$,
# \begin{env}...\end{env} and $...$ (not `$ ` nor ` $`: "costs $5 and $10" stays text).
# An environment holds no other \begin{ (each unclosed one is scanned only up to the next:
# linear time; with `.*?` 8,000 unclosed ones took 7.4 s, quadratic in a learner's answer).
MATH = re.compile(r"\$\$(?P<display>.+?)\$\$"
                  r"|(?P<env>\\begin\{(?P<name>[A-Za-z]*\*?)\}(?:(?!\\begin\{).)*?\\end\{(?P=name)\})"
                  r"|(?<![\\$])\$(?![\s$])(?P<inline>[^$]+?)(?<![\s\\])\$(?!\d)", re.S)
MAX_FORMULA = 4000      # characters of one formula converted (a longer one stays text)
MAX_FORMULAS = 5000     # formulas converted per page
NOT_MATH_INSIDE = ("code", "pre", "math", "script", "style", "textarea", "title")
MATHML_TAGS = frozenset(
    "math mrow mi mn mo ms mtext mspace msub msup msubsup mfrac msqrt mroot mstyle merror mpadded mphantom "
    "mfenced menclose munder mover munderover mtable mtr mtd mlabeledtr mmultiscripts mprescripts none "
    "semantics annotation maligngroup malignmark".split())
MATHML_ATTRS = frozenset(
    "display mathvariant stretchy fence separator separators lspace rspace displaystyle scriptlevel rowspacing "
    "columnspacing columnalign rowalign columnlines rowlines frame framespacing width height depth voffset accent "
    "accentunder movablelimits largeop symmetric minsize maxsize linethickness notation open close mathsize form "
    "rowspan columnspan encoding align equalrows equalcolumns side bevelled numalign denomalign mathcolor "
    "mathbackground".split())


def render_math(soup, within=None) -> int:
    """Replace the LaTeX of every markdown cell of a page (`div.text_cell_render`, or all
    of `within`) by MathML, which browsers render without a script; code spans and blocks
    are left alone, and a formula that does not convert stays as its text. Returns how many
    formulas were converted."""
    from bs4 import NavigableString

    roots = [within] if within is not None else soup.find_all("div", class_="text_cell_render")
    done = 0
    for root in roots:
        for node in root.find_all(string=re.compile(r"\$|\\begin\{")):
            if type(node) is not NavigableString or node.find_parent(NOT_MATH_INSIDE) is not None:
                continue
            pieces, at, text = [], 0, str(node)
            for m in MATH.finditer(text):
                if done >= MAX_FORMULAS:
                    break
                tex, display = ((m["display"], True) if m["display"] is not None else
                                (m["env"], True) if m["env"] is not None else (m["inline"], False))
                math = latex_to_mathml(tex, display, soup)
                if math is None:
                    continue
                pieces += [text[at:m.start()], math]
                at = m.end()
                done += 1
            if pieces:
                pieces.append(text[at:])
                node.replace_with(*[p for p in pieces if not isinstance(p, str) or p])
    return done


def latex_to_mathml(tex: str, display: bool, soup):
    """A <math> element (of `soup`) for one formula, or None where it does not convert:
    latex2mathml fails, leaves a command it does not know (`<mi>\\foo</mi>`), or makes
    anything but MathML elements and presentation attributes (`\\text{<b>}` is not markup,
    `\\href` links nothing)."""
    import xml.etree.ElementTree as ET

    if not tex.strip() or len(tex) > MAX_FORMULA:
        return None
    try:
        from latex2mathml.converter import convert

        xml = convert(tex.strip(), display="block" if display else "inline")
        if "<!" in xml or "<?" in xml:
            return None
        return _mathml(ET.fromstring(xml), soup)
    except Exception:  # noqa: BLE001 - any failure: the formula stays as its text
        return None


# latex2mathml leaves a delimiter after \big, \Bigl, ... as its command (`<mo>\lVert</mo>`)
DELIMITERS = {"\\|": "\u2016", "\\Vert": "\u2016", "\\lVert": "\u2016", "\\rVert": "\u2016", "\\vert": "|",
              "\\lvert": "|", "\\rvert": "|", "\\langle": "\u27e8", "\\rangle": "\u27e9", "\\{": "{", "\\}": "}",
              "\\lfloor": "\u230a", "\\rfloor": "\u230b", "\\lceil": "\u2308", "\\rceil": "\u2309"}


def _mathml(el, soup, depth: int = 0):
    name = el.tag.rsplit("}", 1)[-1]
    if name not in MATHML_TAGS or depth > 200:
        raise ValueError(f"not MathML: {name}")
    tag = soup.new_tag(name, attrs={k: v for k, v in el.attrib.items() if k in MATHML_ATTRS})
    if name == "mo" and el.text and el.text.strip() in DELIMITERS:
        el.text = DELIMITERS[el.text.strip()]
    if el.text:
        if re.match(r"\s*\\[A-Za-z]", el.text):
            raise ValueError(f"unknown command {el.text}")
        tag.append(el.text)
    for child in el:
        tag.append(_mathml(child, soup, depth + 1))
        if child.tail:
            tag.append(child.tail)
    return tag
