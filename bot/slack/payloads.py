"""Reading values Slack echoes back to us (private_metadata, option values, button values) without trusting them.

A forged or stale submission can carry anything there; these return None or {} instead of raising, and the
listener answers with a readable message.
"""

from __future__ import annotations

import re
from typing import Any

from bot.core import json_limits

MAX_ID = 2**31 - 1  # the largest primary key every supported database stores in an INTEGER column
_DIGITS = re.compile(r"[0-9]{1,10}")


def as_id(value: object) -> int | None:
    """A database id (ASCII digits, 1..MAX_ID) from a str or int, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip().lstrip("#")):
        n = int(value.strip().lstrip("#"))
    else:
        return None
    return n if 1 <= n <= MAX_ID else None


def metadata(raw: object) -> dict[str, Any]:
    """A view's private_metadata (or a button's value) as a JSON object; {} when it is anything else."""
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        data = json_limits.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
