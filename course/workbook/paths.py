"""Where chapters keep what they train (checkpoints, cached classifiers, encoders).

``artifacts_dir(profile)`` is $WORKBOOK_ARTIFACTS/<profile> if set, else
~/.cache/workbook/artifacts/<profile>. A later chapter loads what an earlier one saved
there (chapter 06 loads chapter 04's text encoder); nothing is ever downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path


def artifacts_dir(profile_name: str) -> Path:
    base = os.environ.get("WORKBOOK_ARTIFACTS") or "~/.cache/workbook/artifacts"
    path = Path(base).expanduser() / profile_name
    path.mkdir(parents=True, exist_ok=True)
    return path
