"""How hidden checks are named, defined once: `NN_topic.function` (the chapter, whose
folder's `hidden.py` holds the check, and the check in it), and how a hidden block asks
for one (`_judged("NN_topic.function", ...)`, optionally naming a quiz question next)."""
from __future__ import annotations

import re

NAME = re.compile(r"\d\d_[a-z0-9_]+\.[a-z][a-z0-9_]*")
JUDGED_CALL = re.compile(rf'_judged\(\s*"({NAME.pattern})"(?:\s*,\s*"([^"]*)")?')
