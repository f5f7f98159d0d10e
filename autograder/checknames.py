"""How hidden checks are named, defined once: `chNN_topic.function` (the module of
`autograder.hidden` and the check in it), and how a hidden block asks for one
(`_judged("chNN_topic.function", ...)`, optionally naming a quiz question next)."""
from __future__ import annotations

import re

NAME = re.compile(r"ch\d\d_[a-z0-9_]+\.[a-z][a-z0-9_]*")
JUDGED_CALL = re.compile(rf'_judged\(\s*"({NAME.pattern})"(?:\s*,\s*"([^"]*)")?')
