"""Record a chapter's metrics and figures for the course results page.

When WORKBOOK_RESULTS names a folder (the course runner sets it), metrics go to
``metrics.json`` and figures to PNG files there; otherwise metrics are only printed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def _folder() -> Path | None:
    folder = os.environ.get("WORKBOOK_RESULTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_metric(name: str, value: float, unit: str = "", note: str = "") -> float:
    """Print a metric and record it (name must be unique within the chapter)."""
    value = float(value)
    print(f"[metric] {name} = {value:.4g} {unit}".rstrip() + (f"  ({note})" if note else ""))
    folder = _folder()
    if folder is not None:
        file = folder / "metrics.json"
        data = json.loads(file.read_text()) if file.exists() else {}
        data[name] = {"value": value, "unit": unit, "note": note}
        file.write_text(json.dumps(data, indent=1, sort_keys=True))
    return value


def save_figure(fig, name: str) -> None:
    """Save a matplotlib figure as <name>.png for the results page (and keep it shown)."""
    folder = _folder()
    if folder is not None:
        fig.savefig(folder / f"{name}.png", dpi=90, bbox_inches="tight")
