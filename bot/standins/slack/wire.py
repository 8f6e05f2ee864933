"""Slack's Web API conventions every method shares: its error answer, the recorded call, argument parsing."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
SLACK_ID = re.compile(r"^[A-Z][A-Z0-9]{2,}$")
TS = re.compile(r"^\d+\.\d+$")


class SlackError(Exception):
    """An `{"ok": false, "error": ...}` answer."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class SlackCall:
    """One request the stand-in received."""

    method: str
    args: dict[str, Any]
    time: float  # time.monotonic() at receipt
    status: int = 200
    ok: bool = True
    error: str | None = None
    team: str | None = None  # the workspace whose token made the call (None: no valid token)


def truthy(value: Any) -> bool:
    """Slack's reading of a boolean argument (JSON true or the form's "true"/"1")."""
    return value is True or str(value).lower() in ("true", "1")


def json_arg(value: Any, error: str = "invalid_arguments") -> Any:
    """An argument that is JSON in a form post and already decoded in a JSON body."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise SlackError(error) from exc
    return value


def int_arg(value: Any, default: int, maximum: int) -> int:
    """A page size: `default` when absent, clamped to 1..maximum."""
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise SlackError("invalid_limit") from exc
    return max(1, min(number, maximum))


def encode_cursor(offset: int) -> str:
    """An opaque `next_cursor` for the page starting at `offset`."""
    return base64.b64encode(f"next:{offset}".encode()).decode()


def decode_cursor(cursor: Any) -> int:
    """The offset a cursor stands for (0 when none)."""
    if not cursor:
        return 0
    try:
        raw = base64.b64decode(str(cursor)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SlackError("invalid_cursor") from exc
    if not raw.startswith("next:") or not raw[5:].isdigit():
        raise SlackError("invalid_cursor")
    return int(raw[5:])


def ts_key(ts: str) -> tuple[int, int]:
    """A message ts as a sortable pair (seconds, micros)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def visible(message: Mapping[str, Any], include_metadata: bool) -> dict[str, Any]:
    """A copy of a stored message as an API answer shows it."""
    shown = copy.deepcopy(dict(message))
    if not include_metadata:
        shown.pop("metadata", None)
    return shown
