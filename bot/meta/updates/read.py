"""The readers every update family decodes with: Meta's JSON is trusted for nothing, each reader checks the
type it returns, and a required part of the wrong shape raises `Malformed` (the only exception the parser
turns into a ParseProblem)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from bot.meta.events import Envelope, MetaError, ParseProblem, WebhookEvent

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# A decoder for one webhook field: the change's envelope, value (a dict) and JSON path.
Handler = Callable[[Envelope, dict, str], list[WebhookEvent]]


class Malformed(Exception):
    """A required key is missing or has the wrong type; becomes a ParseProblem, never escapes the parser."""


def as_dict(x: object) -> dict:
    return x if isinstance(x, dict) else {}


def as_list(x: object) -> list:
    return x if isinstance(x, list) else []


def storable(v: str) -> str:
    """NUL and lone surrogates are legal JSON escapes but no database text can hold them: U+FFFD instead.
    (json.loads joins valid surrogate pairs, so any surrogate left in a str is a lone one.)"""
    return _UNSTORABLE.sub("\ufffd", v)


def opt_str(d: dict, key: str) -> str | None:
    v = d.get(key)
    return storable(v) if isinstance(v, str) else None


def as_id(x: object) -> str | None:
    """Ids arrive as strings, but template ids are JSON integers."""
    if isinstance(x, str):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return None


def wa_number(x: object) -> str | None:
    """A phone number / wa_id as Meta sends it, without whitespace or a leading '+'; None if empty."""
    v = as_id(x)
    if v is None:
        return None
    v = v.strip().removeprefix("+")
    return v or None


def digits(x: str | None) -> str:
    return "".join(ch for ch in x if ch.isdigit()) if x else ""


def as_int(x: object) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str):
        try:
            return int(x.strip())
        except ValueError:
            return None
    return None


def as_time(x: object) -> datetime | None:
    """Unix seconds (int, float or numeric string) as an aware UTC datetime; None if unreadable."""
    if isinstance(x, bool):
        return None
    value: float
    if isinstance(x, int | float):
        value = x
    elif isinstance(x, str):
        try:
            value = float(x.strip())
        except ValueError:
            return None
    else:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def req_str(d: dict, key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise Malformed(f"'{key}' is missing or not a non-empty string")
    return storable(v)


def req_time(d: dict, key: str) -> datetime:
    t = as_time(d.get(key))
    if t is None:
        raise Malformed(f"'{key}' is missing or not a Unix timestamp")
    return t


def req_obj(d: dict, key: str) -> dict:
    v = d.get(key)
    if not isinstance(v, dict):
        raise Malformed(f"'{key}' object is missing or not an object")
    return v


def errors_of(x: object) -> list[MetaError]:
    """Meta's error objects; an unreadable entry is kept as code 0 rather than dropped."""
    out: list[MetaError] = []
    for item in as_list(x):
        if not isinstance(item, dict):
            out.append(MetaError(0, "unreadable error entry", type(item).__name__, None))
            continue
        code = as_int(item.get("code"))
        message = opt_str(item, "message")
        out.append(
            MetaError(
                code=code if code is not None else 0,
                title=opt_str(item, "title") or message or "",
                message=message,
                details=opt_str(as_dict(item.get("error_data")), "details"),
                href=opt_str(item, "href"),
            )
        )
    return out


def parse_errors(x: object) -> list[MetaError]:
    """Meta's `errors[]` wherever they sit (e.g. inside a group setting)."""
    return errors_of(x)


def problem(env: Envelope, where: str, exc: BaseException, value: object) -> ParseProblem:
    text = str(exc) if isinstance(exc, Malformed) else f"{type(exc).__name__}: {exc}"
    return ParseProblem(envelope=env, where=where, error=text, value=value)


def each(
    env: Envelope, items: object, where: str, build: Callable[[object], Iterable[WebhookEvent]]
) -> list[WebhookEvent]:
    """Run `build` on every element of a list; a failure costs only that element."""
    if not isinstance(items, list):
        return [ParseProblem(env, where, f"expected a list, got {type(items).__name__}", items)]
    out: list[WebhookEvent] = []
    for i, item in enumerate(items):
        try:
            out.extend(build(item))
        except Malformed as exc:  # one element's defect must not lose the others
            out.append(problem(env, f"{where}[{i}]", exc, item))
    return out



def usernames_of(value: dict) -> dict[str, str]:
    """Each contacts[] entry's username by every id it carries (phone and BSUID)."""
    out: dict[str, str] = {}
    for c in as_list(value.get("contacts")):
        name = opt_str(as_dict(as_dict(c).get("profile")), "username")
        if name:
            for key in (wa_number(as_dict(c).get("wa_id")), opt_str(as_dict(c), "user_id")):
                if key:
                    out[key] = name
    return out


