"""Side lookups against Slack's Web API (names, channel info, user groups, members): short, and never fatal.

A lookup only adds to work that goes ahead without it (a name falls back to its id), so it waits at most
`LOOKUP_TIMEOUT` seconds rather than the client's 30, and any failure is one log line and `None`: a
proxy's plain-text 503, invalid JSON, a 429, a hang. Callers must not remember a `None` as an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.slack.errors import slack_reason

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 4.0  # seconds; read at call time so a drill can shorten it

_EXPECTED = (SlackApiError, aiohttp.ClientError, TimeoutError)


async def lookup(call: Awaitable[Any], what: str, within: float | None = None) -> dict[str, Any] | None:
    """Slack's answer to `call` as a JSON object (`ok: false` ones included), or None (logged) when Slack
    gave none in time: a 429, a 5xx, a body that is not JSON, a dropped connection, a timeout."""
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT if within is None else within):
            resp = await call
    except SlackApiError as exc:
        refusal = _refusal(exc)
        log.info("no answer from Slack for %s: %s", what, slack_reason(exc))
        return refusal
    except _EXPECTED as exc:
        log.info("no answer from Slack for %s: %s", what, slack_reason(exc))
        return None
    except Exception:  # slack_sdk itself fails on some bodies (a 200 in text/plain); still only a side matter
        log.warning("no answer from Slack for %s: the lookup failed", what, exc_info=True)
        return None
    data = getattr(resp, "data", None)
    if not isinstance(data, dict):
        log.info("no answer from Slack for %s: the body is not a JSON object", what)
        return None
    return data


def _refusal(exc: SlackApiError) -> dict[str, Any] | None:
    """Slack's own `ok: false` answer (HTTP 200, e.g. `no_such_subteam`): an answer, unlike a 429 or a 5xx."""
    data = getattr(exc.response, "data", None)
    if getattr(exc.response, "status_code", None) == 200 and isinstance(data, dict) and data.get("error"):
        return data
    return None


def as_dict(value: object) -> dict[str, Any]:
    """value when it is a JSON object, else {} (Slack's answers are read, not trusted)."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """value when it is a JSON array, else []."""
    return value if isinstance(value, list) else []
