"""What the grader writes about learners, made safe for whoever opens it.

- CSV: a cell starting with `=`, `+`, `-`, `@`, tab or carriage return (after any leading
  blanks and line breaks) is a formula to a spreadsheet; `csv_cell` prefixes it with a single
  quote. Line breaks inside a cell are kept (the csv module quotes the cell). Every CSV the
  grader writes goes through `write_csv`; `answer_text` is a learner's written answer fit
  for one (line breaks kept, other control characters replaced).
- Feedback notebooks: learner output is shown as text and pictures only. Rich outputs
  that a browser would run or render as markup (HTML, JavaScript, SVG, Markdown, LaTeX,
  widgets, ...) become their text (escaped when the page is made); raw HTML tags in
  markdown cells are shown as text too.
- HTML pages (feedback and the class report): `harden_page` re-serialises the page
  without `<script>`, `<iframe>`, `<object>`, `<embed>`, `<base>`, `<form>`, `<meta>` refresh
  or `<link>` elements, event-handler attributes and `javascript:`/`vbscript:`/non-image
  `data:` URLs, and puts a strict Content-Security-Policy first in `<head>`, so that even
  markup that slips through cannot run or load anything.
- Leak fragments: `fragments` indexes every run of FRAGMENT characters of grader-only
  code, `leaks_fragment` finds one anywhere inside an output (not just as a whole line).
- Autograded notebooks: `cap_outputs` cuts outputs to MAX_CELL_OUTPUT characters per cell
  (pictures: MAX_CELL_PICTURES more) and MAX_NOTEBOOK_OUTPUT per notebook; `scrub_leaks`
  replaces every output that holds a grader-only line or fragment (its text and every mime
  type of its data, `output_text`) by LEAK_NOTE.
"""
from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path

from . import integrity

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ----------------------------------------------------------------------------- CSV

SEPARATED_FORMULA = re.compile(r"([,;\t][ \n]*)(?=[=+\-@\r])")


def csv_cell(value) -> str:
    """A value as a CSV cell a spreadsheet shows as text, never runs as a formula (nor
    after a spreadsheet trims its leading blanks and line breaks), whichever separator it
    splits the file on (`,`, `;` or tab): a formula start right after one of them inside
    the cell (`x;=2+3`) gets the quote too (`x;'=2+3`). Characters that are not text
    (lone surrogates of a file name in undecodable bytes) are written as escapes."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = SEPARATED_FORMULA.sub(r"\1'", text)
    return "'" + text if text.lstrip(" \n").startswith(FORMULA_START) else text


ANSWER_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def log_text(text: str) -> str:
    """Learner-derived text for a log file a person reads in a terminal: line breaks and
    tabs kept, every other control character (escape sequences: window title, clipboard,
    erase-line, carriage return) and bidi override replaced by `?`."""
    return ANSWER_CONTROL.sub("?", str(text).replace("\r\n", "\n").replace("\r", "?")) \
        .encode("utf-8", "backslashreplace").decode("utf-8")


def answer_text(text: str, limit: int = 10_000) -> str:
    """A learner's written answer for written.csv: line breaks (as `\\n`) and tabs kept, every
    other control or bidi-override character replaced by `?`, cut to `limit` characters."""
    text = ANSWER_CONTROL.sub("?", str(text).replace("\r\n", "\n").replace("\r", "\n"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_cell(h) for h in header])
        w.writerows([csv_cell(v) for v in row] for row in rows)


# ----------------------------------------------------------------------------- notebooks

SHOWN_AS_IS = {"text/plain", "image/png"}   # all a learner's output may be in feedback
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


def _as_text(value) -> str:
    return value if isinstance(value, str) else "".join(map(str, value)) if isinstance(value, list) else repr(value)


def plain_output(out: dict) -> bool:
    """One output reduced to what feedback may show (text, and PNG pictures whose data is
    base64): any other kind becomes its text (a picture of another kind a note), and no
    metadata is kept but a PNG's whole-number `width` and `height` (nbconvert writes them
    into the <img> tag unquoted). Returns whether it changed."""
    before = json.dumps(out, sort_keys=True, default=str)
    data = out.get("data")
    if isinstance(data, dict):
        kept = {k: v for k, v in data.items() if k in SHOWN_AS_IS}
        png = kept.get("image/png")
        if png is not None and not (isinstance(png, str) and BASE64.fullmatch(png)):
            kept.pop("image/png")
        rich = [(k, v) for k, v in data.items() if k not in kept]
        if rich and "text/plain" not in kept:
            kind, value = rich[0]
            kept["text/plain"] = (f"[{kind} output not shown]" if kind.startswith("image/") and "xml" not in kind
                                  else f"[{kind} output shown as text]\n{_as_text(value)}")
        out["data"] = kept
    if "metadata" in out:
        size = out.get("metadata", {}).get("image/png") if isinstance(out.get("metadata"), dict) else None
        size = {k: v for k, v in (size.items() if isinstance(size, dict) else ())
                if k in ("width", "height") and type(v) is int and 0 < v < 100_000}
        out["metadata"] = {"image/png": size} if size and "image/png" in out.get("data", {}) else {}
    return json.dumps(out, sort_keys=True, default=str) != before


def plain_outputs(nb: dict) -> int:
    """Keep only text and PNG pictures in every output of `nb` (`plain_output`; rich
    outputs become their source as text); raw cells (which nbconvert copies into the page
    as HTML) become their text in a code block, markdown shows its raw HTML tags as text.
    Returns how many outputs were changed."""
    changed = 0
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            changed += plain_output(out)
        if cell.get("cell_type") == "raw":  # an indented code block: text, whatever it holds
            text, keep = _as_text(cell.get("source", "")), {k: cell[k] for k in ("id",) if k in cell}
            cell.clear()
            cell.update({"cell_type": "markdown", "metadata": {}, **keep,
                         "source": "\n".join("    " + ln for ln in text.splitlines()) or "    "})
        elif cell.get("cell_type") == "markdown":
            cell["source"] = markup_as_text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown" and isinstance(cell.get("attachments"), dict):
            for files in cell["attachments"].values():
                if isinstance(files, dict):
                    for kind in [k for k in files if k not in SHOWN_AS_IS - {"text/plain"}]:
                        files.pop(kind)
    nb.get("metadata", {}).pop("widgets", None)
    return changed


def markup_as_text(source) -> str:
    """Markdown with its raw HTML tags shown as text (`<` of a tag becomes `&lt;`): a
    learner's `<style>`, `<script>` or fake banner is not markup in feedback. The course's
    own markdown has no raw HTML."""
    text = "".join(source) if isinstance(source, list) else str(source)
    return RAW_TAG.sub("&lt;", text)


RAW_TAG = re.compile(r"<(?=[A-Za-z/!?])")


# ----------------------------------------------------------------------------- pages

DROPPED_TAGS = ("script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "form",
                "link", "noscript", "template", "portal")
URL_ATTRS = ("href", "src", "action", "formaction", "xlink:href", "background", "poster", "srcset",
             "data", "codebase", "cite", "ping", "lowsrc", "dynsrc")
BAD_URL = re.compile(r"^\s*(javascript|vbscript|data|file|filesystem|blob)\s*:", re.I)
DATA_IMAGE = re.compile(r"^\s*data:image/(png|jpe?g|gif);", re.I)


def _bad_url(value: str) -> bool:
    v = re.sub(r"[\x00-\x20]", "", value)  # browsers ignore these inside a scheme
    return bool(BAD_URL.match(v)) and not DATA_IMAGE.match(v)


def harden_page(page: str) -> str:
    """The page without anything that runs or loads, and with a strict CSP first in <head>."""
    from bs4 import BeautifulSoup

    return harden_soup(BeautifulSoup(page, "html.parser"))


def harden_soup(soup) -> str:
    """`harden_page` of a page already parsed (with bs4's "html.parser"), as text."""
    from bs4 import BeautifulSoup

    for tag in soup.find_all(DROPPED_TAGS):
        tag.decompose()
    for tag in soup.find_all("meta"):
        if tag.get("http-equiv") or tag.get("content") and not tag.get("name"):
            tag.decompose()
    for tag in soup.find_all(True):
        for attr in list(tag.attrs):
            name = attr.lower()
            value = tag.attrs[attr]
            value = " ".join(value) if isinstance(value, list) else str(value)
            if name.startswith("on") or name in ("formaction", "srcdoc") \
                    or (name in URL_ATTRS and _bad_url(value)) \
                    or (name == "style" and re.search(r"expression\s*\(|url\s*\(|@import", value, re.I)):
                del tag.attrs[attr]
    for tag in soup.find_all("meta", charset=True):
        tag.decompose()   # one, first (again when a hardened page is hardened again)
    head = soup.find("head")
    csp = BeautifulSoup(CSP_META, "html.parser").meta
    if head is None:
        head = soup.new_tag("head")
        (soup.find("html") or soup).insert(0, head)
    head.insert(0, csp)
    charset = soup.new_tag("meta", charset="utf-8")
    head.insert(0, charset)
    text = str(soup)
    return text if text.lstrip().lower().startswith("<!doctype") else "<!DOCTYPE html>\n" + text


def harden_file(path: Path) -> None:
    path.write_text(harden_page(path.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")


# ----------------------------------------------------------------------------- leak fragments

FRAGMENT = 40  # characters of a grader-only line that may not appear anywhere in an output
STRING_LITERAL = re.compile(r"""[rbfuRBFU]{0,2}("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")


def code_grams(line: str, k: int = FRAGMENT) -> set[str]:
    """The k-character runs of a line that are not wholly inside one string literal (a
    check's message is meant to be read by the learner; its code is not)."""
    inside = [(m.start(1) + 1, m.end(1) - 1) for m in STRING_LITERAL.finditer(line)]
    return {line[i:i + k] for i in range(len(line) - k + 1)
            if not any(a <= i and i + k <= b for a, b in inside)}


def grams(text: str, k: int = FRAGMENT) -> set[str]:
    return {text[i:i + k] for i in range(len(text) - k + 1)}


def fragments(protected_lines, public_text: str = "") -> frozenset[str]:
    """Every FRAGMENT-character run of the protected lines (outside their string
    literals) that is not also in the public text."""
    found: set[str] = set()
    for line in protected_lines:
        found |= code_grams(line.strip())
    return frozenset(found - grams(public_text)) if public_text else frozenset(found)


STRIDE = 8  # positions of an output looked up: every 8th, through shorter grams


@functools.lru_cache(maxsize=16)
def _short_grams(index: frozenset[str]) -> frozenset[str]:
    """The (FRAGMENT - STRIDE)-character runs inside the fragments: any FRAGMENT-character
    run of a text holds one of them at a position divisible by STRIDE."""
    k = FRAGMENT - STRIDE
    return frozenset(g[i:i + k] for g in index for i in range(STRIDE + 1))


def leaks_fragment(text: str, index: frozenset[str], k: int = FRAGMENT) -> bool:
    """Whether any FRAGMENT-character run of `text` is in `index` (whitespace runs of
    `text` are tried as they are and collapsed, since printers re-indent). Looks up every
    STRIDE-th position in the shorter grams and confirms a hit around it exactly."""
    if not index or len(text) < k:
        return False
    short, n = _short_grams(index), k - STRIDE
    for variant in {text, re.sub(r"[ \t]+", " ", text)}:
        for p in range(0, len(variant) - n + 1, STRIDE):
            if variant[p:p + n] in short and any(variant[q:q + k] in index
                                                  for q in range(max(0, p - STRIDE), p + 1)):
                return True
    return False


# ----------------------------------------------------------------------------- caps and leak scrub

MAX_CELL_OUTPUT = 100_000        # characters of output kept per cell in feedback
MAX_CELL_PICTURES = 1_000_000    # ... and of pictures, per cell (smoke-profile figures: 38,000-784,000 each)
MAX_NOTEBOOK_OUTPUT = 2_000_000  # ... and of both per notebook


def _is_picture(out: dict) -> bool:
    """A display or result whose data is a raster picture (matplotlib's inline figures)."""
    data = out.get("data")
    return isinstance(data, dict) and any(k in data for k in ("image/png", "image/jpeg", "image/gif"))


def cap_outputs(nb: dict) -> int:
    """Truncate the outputs of an autograded notebook to MAX_CELL_OUTPUT characters per
    cell (pictures have MAX_CELL_PICTURES of their own) and MAX_NOTEBOOK_OUTPUT in all (a
    notice says so); returns how many were removed."""
    removed, budget = 0, MAX_NOTEBOOK_OUTPUT
    for cell in nb.get("cells", []):
        if "outputs" not in cell:
            continue
        room = {False: MAX_CELL_OUTPUT, True: MAX_CELL_PICTURES}
        kept, cut = [], 0
        for out in cell["outputs"]:
            size = len(json.dumps(out))
            picture = _is_picture(out)
            if size <= min(room[picture], budget):
                kept.append(out)
                room[picture] -= size
                budget -= size
                continue
            cut += size
            if out.get("output_type") == "stream" and min(room[False], budget) > 0:
                text = integrity._join(out.get("text", ""))[:min(room[False], budget)]
                kept.append({**out, "text": text})
                cut -= len(text)
                budget -= len(text)
                room[False] = 0
        if cut:
            kept.append({"output_type": "stream", "name": "stdout",
                         "text": f"\n[{cut:,} characters of output removed by the grader: over its size limit]\n"})
        cell["outputs"] = kept
        removed += cut
    return removed


LEAK_NOTE = "[output removed by the grader: it contained grader-only material]\n"


def output_text(out: dict) -> str:
    """Every piece of text an output shows in feedback (stream, error name and message:
    `feedback.sanitize_for_feedback` drops tracebacks; every mime type of its data), so markup
    cannot carry what plain text may not."""
    parts = [integrity._join(out.get("text", "")), str(out.get("ename", "")), str(out.get("evalue", ""))]
    data = out.get("data", {})
    if isinstance(data, dict):
        parts += [v if isinstance(v, str) else "".join(map(str, v)) if isinstance(v, list) else json.dumps(v)
                  for v in data.values()]
    return "\n".join(p for p in parts if p)


def scrub_leaks(nb: dict, protected: frozenset[str], fragments: frozenset[str] = frozenset()) -> int:
    """Replace every output that contains a line of the solutions or hidden checks, or
    any run of `outputs.FRAGMENT` characters of their code inside a longer line;
    returns how many were replaced."""
    count = 0
    for cell in nb.get("cells", []):
        for i, out in enumerate(cell.get("outputs", [])):
            text = output_text(out)
            if any(ln.strip() in protected for ln in text.splitlines()) or leaks_fragment(text, fragments):
                cell["outputs"][i] = {"output_type": "stream", "name": "stdout", "text": LEAK_NOTE}
                count += 1
    return count
