"""Why a Slack Web API call failed, in one word, whatever the answer's body was.

slack_sdk's `SlackApiError.response` is a `SlackResponse` whose `.data` is Slack's JSON object, the text of a
non-JSON answer (a proxy's plain-text 503), or bytes; for a JSON content type with an invalid body it is the
aiohttp `ClientResponse` itself. Reading `exc.response.get("error")` raises on all but the first.
"""

from __future__ import annotations

import asyncio

import aiohttp
from slack_sdk.errors import SlackApiError


def slack_reason(exc: BaseException) -> str:
    """Slack's `error` code when it sent one, else what went wrong (`http_503`, `invalid_json`, `timeout`, …)."""
    if isinstance(exc, SlackApiError):
        return _api_reason(exc)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    return type(exc).__name__


def slack_error_code(exc: SlackApiError) -> str | None:
    """Slack's own `error` code (`ratelimited`, `channel_not_found`, …), or None when the body carried none."""
    data = getattr(exc.response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) and error else None


def http_status(exc: SlackApiError) -> int | None:
    """The HTTP status of the answer, whichever object slack_sdk put it on."""
    response = exc.response
    if isinstance(response, aiohttp.ClientResponse):
        return response.status
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def retry_after(exc: SlackApiError) -> float:
    """Seconds Slack asked to wait (Retry-After of a 429); 1.0 when the answer said nothing usable."""
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def _api_reason(exc: SlackApiError) -> str:
    code = slack_error_code(exc)
    if code is not None:
        return code
    status = http_status(exc)
    if isinstance(exc.response, aiohttp.ClientResponse):  # slack_sdk could not parse the JSON it was promised
        return f"invalid_json (HTTP {status})"
    data = getattr(exc.response, "data", None)
    if isinstance(data, (str, bytes)) and data:
        return f"http_{status}_not_json" if status is not None else "not_json"
    return f"http_{status}" if status is not None else "no_answer"
