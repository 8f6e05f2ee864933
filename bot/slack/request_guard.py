"""What a request to `/slack/events` must look like before bolt parses it (pure).

Bolt parses the body before checking anything and crashes (500) on JSON that is invalid, too deep, or not an
object, and reads fields of the wrong type; Slack never sends those. This says what is wrong (JSON, then the
payload's shape, `payloads.check_shape`) so the endpoint can answer 400 instead.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from bot.core import json_limits
from bot.slack.payloads import MalformedPayload, check_shape


def body_problem(body: str, content_type: str | None) -> str | None:
    """Why bolt could not parse this body (as bolt decides JSON or form), or None when it can."""
    if not body:
        return None
    if content_type == "application/json" or body.startswith("{"):
        document = body
    elif "payload" in body:
        payload = dict(parse_qsl(body, keep_blank_values=True)).get("payload")
        if payload is None:
            return None
        document = payload
    else:
        return _shape_problem(dict(parse_qsl(body, keep_blank_values=True)))
    try:
        parsed = json_limits.loads(document)
    except json_limits.TooDeep as exc:
        return str(exc)
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(parsed, dict):
        return "the body must be a JSON object"
    return _shape_problem(parsed)


def _shape_problem(parsed: dict[str, object]) -> str | None:
    try:
        check_shape(parsed)
    except MalformedPayload as exc:
        return str(exc)
    return None
