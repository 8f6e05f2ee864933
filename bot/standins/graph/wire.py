"""Meta's Graph API conventions every endpoint shares: its error body, request bodies, cursors, numbers."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

# Titles Meta puts in `message` as "(#code) title"; used for injected errors.
ERROR_TITLES: Mapping[int, str] = {
    4: "Application request limit reached",
    100: "Invalid parameter",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131026: "Message undeliverable",
    131031: "Business Account locked",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business.",
    131051: "Unsupported message type",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    190: "Invalid OAuth access token",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
}


def digits(number: str) -> str:
    """A phone number's digits only (how Meta compares them)."""
    return re.sub(r"\D", "", number)


def graph_error(
    http_status: int,
    code: int,
    message: str | None = None,
    *,
    subcode: int | None = None,
    details: str | None = None,
    error_type: str = "OAuthException",
    user_title: str | None = None,
    user_msg: str | None = None,
) -> web.Response:
    """A response carrying Meta's error body."""
    text = message if message is not None else f"(#{code}) {ERROR_TITLES.get(code, 'Error')}"
    error: dict[str, Any] = {"message": text, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_title:
        error["error_user_title"] = user_title
    if user_msg:
        error["error_user_msg"] = user_msg
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = secrets.token_urlsafe(12)
    return web.json_response({"error": error}, status=http_status)


def missing(param: str) -> web.Response:
    """Meta's answer to a required parameter left out."""
    return graph_error(
        400, 100, f"(#100) The parameter {param} is required.", details=f"The parameter {param} is required."
    )


def invalid(details: str, code: int = 100) -> web.Response:
    """Meta's answer to a parameter with a wrong value."""
    return graph_error(400, code, details=details)


def unknown_object(method: str, object_id: str, tail: str) -> web.Response:
    """Meta's answer for an object the token cannot see (or that does not exist)."""
    return graph_error(400, 100, f"Unsupported {method} request. Object with ID '{object_id}' does not exist{tail}",
                       subcode=33, error_type="GraphMethodException")


async def body_of(request: web.Request) -> dict[str, Any] | None:
    """JSON or form body as a dict; None when it cannot be parsed."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def encode_cursor(index: int) -> str:
    """A paging cursor naming a position."""
    return base64.urlsafe_b64encode(f"pos:{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The position a cursor names; None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not raw.startswith("pos:") or not raw[4:].isdigit():
        return None
    return int(raw[4:])
