"""JSON from untrusted senders, refused when nested deeper than any real payload (before the parser recurses).

Python's json module recurses once per level, so a body of a few thousand `[` raises RecursionError, which
request handlers would turn into a 500 and a traceback. Meta's and Slack's payloads nest about ten deep.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64


class TooDeep(ValueError):
    """The document nests more than the allowed number of arrays and objects."""


_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1 opens, -1 closes


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in text (brackets inside strings ignored)."""
    # Outside strings only: drop escaped backslashes and quotes, then every other piece between quotes.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    brackets = _NOT_BRACKET.sub("", "".join(unescaped.split('"')[::2]))
    if not brackets:
        return 0
    # The running sum of +1/-1 steps is the depth; accumulate and max run in C, so a wide payload with
    # thousands of brackets costs about as much as parsing it.
    return max(0, max(accumulate(array("b", brackets.encode("ascii").translate(_STEP)))))


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing (TooDeep) documents nested deeper than max_depth; ValueError for bad JSON."""
    # Counting is C-speed; the scan runs only when there are enough brackets to nest that deep at all.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)
