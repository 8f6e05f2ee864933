"""Meta's nested JSON as words people read: flattened fields, humanised names, dates not epochs (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Unix seconds between 2001 and 2096: a bare number in that range under a time-like key is a date.
_EPOCH_MIN, _EPOCH_MAX = 1_000_000_000, 4_000_000_000
_TIME_WORDS = ("time", "timestamp", "date", "expiration", "expires", "until", "_at")
_HIDDEN = frozenset({"flow_token"})  # Flow bookkeeping, not an answer


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def day(at: datetime, tz: str = "UTC") -> str:
    """`2 May 2025`, in the configured timezone."""
    local = at.astimezone(_zone(tz))
    return f"{local.day} {local:%b %Y}"


def day_time(at: datetime, tz: str = "UTC") -> str:
    """`2 May 2025 14:05 IST`, in the configured timezone."""
    local = at.astimezone(_zone(tz))
    return f"{local.day} {local:%b %Y %H:%M} {local.tzname() or tz}"


def epoch(value: object) -> datetime | None:
    """Unix seconds (number or numeric string) as a UTC datetime, when plausibly a date."""
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    if not _EPOCH_MIN <= number <= _EPOCH_MAX:
        return None
    return datetime.fromtimestamp(number, UTC)


def label(key: str) -> str:
    """`violation_type` -> `Violation type`."""
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else key


def _timeish(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in _TIME_WORDS)


def scalar(key: str, value: object, tz: str = "UTC") -> str:
    """One leaf value as text: dates for time-like keys, yes/no for booleans, words for enum-like strings."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _timeish(key):
        at = epoch(value)
        if at is not None:
            return day_time(at, tz)
    return str(value)


def flatten(value: object, tz: str = "UTC", prefix: str = "") -> list[tuple[str, str]]:
    """Nested objects and lists as (label, text) pairs: `Address / City`, `Items 1`; order kept."""
    out: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if str(key) in _HIDDEN:
                continue
            name = f"{prefix} / {label(str(key))}" if prefix else label(str(key))
            out += flatten(inner, tz, name) if isinstance(inner, Mapping | list) else [
                (name, scalar(str(key), inner, tz))]
    elif isinstance(value, list):
        if all(not isinstance(v, Mapping | list) for v in value):
            out.append((prefix or "Values", ", ".join(scalar(prefix, v, tz) for v in value) or "none"))
        else:
            for i, inner in enumerate(value, 1):
                out += flatten(inner, tz, f"{prefix} {i}".strip())
    else:
        out.append((prefix or "Value", scalar(prefix, value, tz)))
    return out


def flow_answers(response_json: object) -> list[tuple[str, str]]:
    """A Flow's `response_json` (a JSON string, or already decoded) as answer pairs; [] if unreadable."""
    data = response_json
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return [("Answer", data)] if data.strip() else []
    if not isinstance(data, Mapping | list):
        return []
    return flatten(data)


def sentence(pairs: list[tuple[str, str]]) -> str:
    """Pairs as one readable clause: `Violation type: SCAM; Expiration: 3 Jul 2025 10:00 IST`."""
    return "; ".join(f"{k}: {v}" for k, v in pairs)
