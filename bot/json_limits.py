"""JSON from untrusted senders, refused when nested deeper than any real payload (before the parser recurses).

Python's json module recurses once per level, so a body of a few thousand `[` raises RecursionError, which
request handlers would turn into a 500 and a traceback. Meta's and Slack's payloads nest about ten deep.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class TooDeep(ValueError):
    """The document nests more than the allowed number of arrays and objects."""


def nesting_depth(text: str, stop_at: int = MAX_DEPTH + 1) -> int:
    """How deep arrays and objects nest in text (brackets inside strings ignored); stops counting at stop_at."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest >= stop_at:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing (TooDeep) documents nested deeper than max_depth; ValueError for bad JSON."""
    if nesting_depth(text, max_depth + 1) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)
