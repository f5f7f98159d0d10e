"""Execute the course in one profile and write a results page (the benchmark command).

    python -m autograder run --profile cpu [--only 01 02] [--out build/run-cpu]

Runs every instructor notebook top to bottom (solutions included) with
WORKBOOK_PROFILE set, and writes to OUT:
  NN_topic.ipynb          the executed notebook (open it in JupyterLab)
  NN_topic/               the chapter's metrics.json and figures (PNG)
  results.md, results.html, results.json
                          per chapter: wall time, status and every metric; all figures
"""
from __future__ import annotations

import base64
import html
import json
import os
import platform
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from . import authoring
from .build import instructor_notebook, student_notebook, tool_env

REPO = authoring.REPO


def _select(only: list[str] | None) -> list[str]:
    chapters = authoring.chapter_names()
    if not only:
        return chapters
    picked = [c for c in chapters if any(c == o or c.startswith(f"{o}_") or c[:2] == o for o in only)]
    if not picked:
        raise SystemExit(f"no chapter matches {only}; chapters are {chapters}")
    return picked


def run_course(profile: str | None = None, only: list[str] | None = None, out: Path | None = None,
               student: bool = False, cell_timeout: int = 3600) -> int:
    import torch

    profile = profile or os.environ.get("WORKBOOK_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    out = (out or REPO / "build" / f"run-{profile}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for ch in _select(only):
        src = student_notebook(ch) if student else instructor_notebook(ch)
        nb = nbformat.read(src, as_version=4)
        results_dir = out / ch
        if (results_dir / "metrics.json").exists():
            (results_dir / "metrics.json").unlink()
        env = tool_env({"WORKBOOK_PROFILE": profile, "WORKBOOK_RESULTS": str(results_dir), "WORKBOOK_PROGRESS": "0",
                        "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
        old_env = dict(os.environ)
        os.environ.update(env)  # the kernel inherits this process's environment
        t0 = time.time()
        status = "ok"
        try:
            # run in the results folder: nothing the run leaves lands where a learner works
            results_dir.mkdir(parents=True, exist_ok=True)
            # loopback TCP on this machine: the kernel's warning about unencrypted TCP is noise here
            NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                           extra_arguments=["--IPKernelApp.log_level=ERROR"],
                           resources={"metadata": {"path": str(results_dir)}}).execute()
        except Exception as e:  # report and go on with the next chapter
            status = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200] if str(e).strip() else ''}"
        finally:
            os.environ.clear()
            os.environ.update(old_env)
        seconds = time.time() - t0
        nbformat.write(nb, out / f"{ch}.ipynb")
        metrics = json.loads((results_dir / "metrics.json").read_text()) if (results_dir / "metrics.json").exists() else {}
        figures = sorted(p.name for p in results_dir.glob("*.png")) if results_dir.exists() else []
        rows.append({"chapter": ch, "seconds": round(seconds, 1), "status": status,
                     "metrics": metrics, "figures": figures})
        print(f"[{profile}] {ch}: {status} in {seconds:.1f} s, {len(metrics)} metrics, {len(figures)} figures")
    write_results(out, profile, rows)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def write_results(out: Path, profile: str, rows: list[dict]) -> None:
    (out / "results.json").write_text(json.dumps({"profile": profile, "machine": _machine(),
                                                   "chapters": rows}, indent=1))
    md = [f"# Course results, profile `{profile}`", "", f"Machine: {_machine()}", "",
          "| chapter | wall time (s) | status | metrics |", "|---|---:|---|---:|"]
    md += [f"| {r['chapter']} | {r['seconds']} | {r['status']} | {len(r['metrics'])} |" for r in rows]
    for r in rows:
        md += ["", f"## {r['chapter']}", "", "| metric | value | unit | note |", "|---|---:|---|---|"]
        md += [f"| {k} | {v['value']:.4g} | {v['unit']} | {v['note']} |" for k, v in r["metrics"].items()]
    (out / "results.md").write_text("\n".join(md) + "\n")
    parts = [f"<h1>Course results, profile <code>{profile}</code></h1><p>{html.escape(_machine())}</p>",
             "<table border=1 cellpadding=4><tr><th>chapter</th><th>wall time (s)</th><th>status</th></tr>"]
    parts += [f"<tr><td>{r['chapter']}</td><td>{r['seconds']}</td><td>{html.escape(r['status'])}</td></tr>"
              for r in rows]
    parts.append("</table>")
    for r in rows:
        parts.append(f"<h2>{r['chapter']}</h2><table border=1 cellpadding=4>"
                     "<tr><th>metric</th><th>value</th><th>unit</th><th>note</th></tr>")
        parts += [f"<tr><td>{html.escape(k)}</td><td>{v['value']:.4g}</td><td>{v['unit']}</td>"
                  f"<td>{html.escape(v['note'])}</td></tr>" for k, v in r["metrics"].items()]
        parts.append("</table>")
        for fig in r["figures"]:
            data = base64.b64encode((out / r["chapter"] / fig).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}'><figcaption>{fig}</figcaption></figure>")
    (out / "results.html").write_text("<!doctype html><meta charset=utf-8><title>results</title>"
                                      + "\n".join(parts))
    print(f"results: {out / 'results.md'} and {out / 'results.html'}")
