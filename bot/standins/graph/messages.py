"""POST /{phone_number_id}/messages: validation as Meta does it, the send cap, templates, injected faults."""

from __future__ import annotations

import re
import secrets
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.standins.graph.state import GraphAccount, SendRecord
from bot.standins.graph.wire import body_of, digits, graph_error, invalid, missing

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
MESSAGE_TYPES = ("text", "template", "reaction", "location", "contacts", "interactive", *MEDIA_KINDS)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def _template_placeholders(template: Mapping[str, Any], component_type: str) -> int:
    for component in template.get("components") or []:
        if str(component.get("type", "")).upper() == component_type and component.get("text"):
            return len(set(_PLACEHOLDER.findall(str(component["text"]))))
    return 0


def _request_parameters(payload_template: Mapping[str, Any], component_type: str) -> int:
    for component in payload_template.get("components") or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == component_type:
            return len(component.get("parameters") or [])
    return 0


def _reply_buttons_problem(content: Mapping[str, Any]) -> str | None:
    """What Meta refuses in a reply-buttons message: body text (1,024 characters at most), one to three buttons,
    each a `reply` with an id (256 at most) and a title of 1 to 20 characters, titles unique."""
    body = content.get("body")
    text = body.get("text") if isinstance(body, Mapping) else None
    if not isinstance(text, str) or not text.strip() or len(text) > 1024:
        return "interactive['body']['text'] is required, at most 1024 characters."
    action = content.get("action")
    buttons = action.get("buttons") if isinstance(action, Mapping) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return "interactive['action']['buttons'] takes 1 to 3 buttons."
    titles = []
    for button in buttons:
        reply = button.get("reply") if isinstance(button, Mapping) else None
        if not isinstance(button, Mapping) or button.get("type") != "reply" or not isinstance(reply, Mapping):
            return "each button is {type: reply, reply: {id, title}}."
        bid, title = reply.get("id"), reply.get("title")
        if not isinstance(bid, str) or not bid or len(bid) > 256:
            return "a button's reply id is required, at most 256 characters."
        if not isinstance(title, str) or not title.strip() or len(title) > 20:
            return "a button's title is required, at most 20 characters."
        titles.append(title)
    if len(set(titles)) != len(titles):
        return "button titles must be unique."
    return None


def _validate_message(payload: Mapping[str, Any]) -> web.Response | None:
    if payload.get("messaging_product") != "whatsapp":
        return missing("messaging_product")
    # A phone number goes in `to`, a business-scoped user id in `recipient`; `to` wins when both are set.
    if not payload.get("to") and not payload.get("recipient"):
        return missing("to")
    opaque = payload.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
        return invalid("Param biz_opaque_callback_data must be a string of at most 512 characters.")
    kind = payload.get("type", "text")
    if kind not in MESSAGE_TYPES:
        return graph_error(400, 131051, details=f"Message type {kind!r} is not supported.")
    content = payload.get(kind)
    if not isinstance(content, dict):
        return missing(kind)
    if kind == "text" and not str(content.get("body") or "").strip():
        return missing("text['body']")
    if kind == "text" and len(str(content["body"])) > 4096:
        return invalid("text['body'] is longer than 4096 characters.")
    if kind == "template":
        if not content.get("name"):
            return missing("template['name']")
        language = content.get("language")
        if not isinstance(language, dict) or not language.get("code"):
            return missing("template['language']['code']")
    if kind in MEDIA_KINDS:
        if not content.get("id") and not content.get("link"):
            return missing(f"{kind}['id'] or {kind}['link']")
        if content.get("caption") and kind in ("audio", "sticker"):
            return invalid(f"Param {kind}['caption'] is not allowed for {kind} messages.")
        if len(str(content.get("caption") or "")) > 1024:
            return invalid(f"{kind}['caption'] is longer than 1024 characters.")
    if kind == "interactive" and content.get("type") == "button":
        problem = _reply_buttons_problem(content)
        if problem is not None:
            return invalid(problem)
    if kind == "reaction" and (not content.get("message_id") or "emoji" not in content):
        return missing("reaction['message_id'] and reaction['emoji']")
    return None


def _check_template(g: GraphAccount, pnid: str, content: Mapping[str, Any]) -> tuple[int, web.Response] | None:
    number = g.phone_numbers.get(pnid)
    if number is None or number.waba_id is None or not g.templates.get(number.waba_id):
        return None  # nothing registered for this number: accept any template
    name = content.get("name")
    language = (content.get("language") or {}).get("code")
    found = next(
        (t for t in g.templates[number.waba_id] if t["name"] == name and t["language"] == language),
        None,
    )
    if found is None or found["status"] not in ("APPROVED", "PAUSED", "DISABLED"):
        details = f"template name ({name}) does not exist in {language}"
        return 132001, graph_error(404 if found is None else 400, 132001, details=details)
    if found["status"] == "PAUSED":
        return 132015, graph_error(400, 132015, details=f"Template {name} is paused")
    if found["status"] == "DISABLED":
        return 132016, graph_error(400, 132016, details=f"Template {name} is disabled")
    expected = _template_placeholders(found, "BODY")
    given = _request_parameters(content, "BODY")
    if expected != given:
        details = (
            f"body: number of localizable_params ({given}) does not match the expected "
            f"number of params ({expected})"
        )
        return 132000, graph_error(400, 132000, details=details)
    return None


def _report_status(g: GraphAccount, pnid: str, record: SendRecord, payload: Mapping[str, Any], group: bool) -> None:
    """Have the status feed (when on) answer the accepted send with its status webhooks."""
    if g.status_feed is None or record.wamid is None:
        return
    number = g.phone_numbers.get(pnid)
    g.status_feed.schedule(
        waba_id=(number.waba_id if number is not None else None) or "200000000000001",
        phone_number_id=pnid, display_phone_number=number.display_phone_number if number else "",
        wamid=record.wamid, recipient=record.to if group else digits(record.to), template=record.type == "template",
        callback_data=str(payload["biz_opaque_callback_data"]) if payload.get("biz_opaque_callback_data")
        else None, group=group)


async def send(g: GraphAccount, request: web.Request) -> web.Response:
    """A message send, a read receipt, or Meta's refusal of one."""
    connection = request.transport
    reused = connection is not None and g.seen_connection(connection)
    if reused and connection is not None and g.take_drop("stale"):
        connection.close()
        return web.Response(status=204)  # never written: the connection is gone
    pnid = request.match_info["node"]
    auth = g.auth(request, pnid)
    if isinstance(auth, web.Response):
        return auth
    now = time.monotonic()
    payload = await body_of(request)
    if payload is None:
        return invalid("Request body is not valid JSON.")
    if payload.get("status") == "read":
        if not payload.get("message_id"):
            return missing("message_id")
        g.reads.append(SendRecord(now, pnid, "", "read", payload))
        return web.json_response({"success": True})
    problem = _validate_message(payload)
    if problem is not None:
        return problem
    to = str(payload.get("to") or payload["recipient"])
    by_user_id = not payload.get("to")
    group = payload.get("recipient_type") == "group"  # Groups API: `to` is the group's id
    kind = str(payload.get("type", "text"))
    record = SendRecord(now, pnid, to, kind, payload)

    def reject(response: web.Response, code: int) -> web.Response:
        record.error_code, record.http_status = code, response.status
        g.rejected.append(record)
        return response

    if g.throttled(pnid, now):
        g.throttle_hits.append(record)
        details = (
            "Message failed to send because there were too many messages sent from this phone "
            "number in a short period of time"
        )
        return reject(graph_error(400, 130429, details=details), 130429)
    fault = g.take_fault(pnid, to)
    if fault is not None:
        return reject(graph_error(fault.http_status, fault.code, details=fault.details), fault.code)
    if kind == "template":
        template_problem = _check_template(g, pnid, payload["template"])
        if template_problem is not None:
            return reject(template_problem[1], template_problem[0])
    record.wamid = "wamid." + secrets.token_urlsafe(27)
    g.sends.append(record)
    g.count_send(pnid, now)
    _report_status(g, pnid, record, payload, group)
    message: dict[str, Any] = {"id": record.wamid}
    if kind == "template":
        message["message_status"] = "accepted"
    if connection is not None and g.take_drop("after_send"):
        sock = connection.get_extra_info("socket")
        if sock is not None:  # linger 0: the close is a reset, which the sender reads as ReadError
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.abort()
        return web.Response(status=204)  # never written: the connection is gone
    return web.json_response(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "user_id": to} if by_user_id else {"input": to, "wa_id": digits(to)}],
            "messages": [message],
        }
    )
