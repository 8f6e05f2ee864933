"""Slack payloads at the edge: their shape checked once (`check_shape`, the only source of "malformed"), and
values Slack echoes back to us (private_metadata, option values, button values) read without trusting them.

A forged or stale submission can carry anything in those values; these return None or {} instead of raising,
and the listener answers with a readable message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


class MalformedPayload(ValueError):
    """A Slack request whose shape is not one Slack sends (checked at the edge; answered 400)."""


_STR_FIELDS = ("type", "trigger_id", "response_url", "callback_id", "action_ts", "user_id", "channel_id", "command",
               "text", "value", "token", "team_id", "api_app_id", "event_id")
_DICT_FIELDS = ("message", "container", "item", "previous_message", "function_data", "assistant_thread")
_OWNER_FIELDS = ("team", "enterprise", "user", "channel")  # an id, or an object whose `id` is one
_EVENT_STR_FIELDS = ("type", "subtype", "ts", "thread_ts", "event_ts", "text", "tab", "bot_id")
_NEEDS_TRIGGER = ("message_action", "shortcut")


def check_shape(body: Mapping[str, Any]) -> None:
    """Raise MalformedPayload when a field bolt or a listener reads has a type Slack never sends.

    This is the one place a request is called malformed; anything a listener raises later is a fault of ours.
    """
    _fields(body, "")
    kind = body.get("type")
    event = body.get("event")
    if event is not None:
        _need(isinstance(event, dict), "event")
        _fields(event, "event.", strings=_EVENT_STR_FIELDS)
        _need(isinstance(event.get("files", []), list) and all(isinstance(f, dict) for f in event.get("files", [])),
              "event.files")
    view = body.get("view")
    if view is not None or kind in ("view_submission", "view_closed"):
        _view(view, submitted=kind == "view_submission")
    actions = body.get("actions")
    if actions is not None or kind == "block_actions":
        if not isinstance(actions, list) or not actions:
            raise MalformedPayload("actions has a shape Slack does not send")
        for i, action in enumerate(actions):
            _need(isinstance(action, dict), f"actions[{i}]")
            _fields(action, f"actions[{i}].", strings=("action_id", "block_id", "value", "type", "action_ts"),
                    objects=("selected_option",))
    if kind in _NEEDS_TRIGGER or ("command" in body and kind is None):
        _need(isinstance(body.get("trigger_id"), str), "trigger_id")
    if kind == "message_action":
        _need(isinstance(body.get("channel"), dict) and isinstance(body.get("message"), dict), "channel/message")


def _view(view: object, *, submitted: bool) -> None:
    _need(isinstance(view, dict), "view")
    assert isinstance(view, dict)
    _fields(view, "view.", strings=("id", "callback_id", "private_metadata", "hash", "type", "root_view_id"),
            objects=("state",))
    values = (view.get("state") or {}).get("values") if isinstance(view.get("state"), dict) else None
    if submitted or values is not None:
        _need(isinstance(values, dict) and all(isinstance(b, dict) and all(isinstance(a, dict) for a in b.values())
                                               for b in values.values()), "view.state.values")


def _fields(obj: Mapping[str, Any], where: str, *, strings: tuple[str, ...] = _STR_FIELDS,
            objects: tuple[str, ...] = _DICT_FIELDS) -> None:
    for name in strings:
        if name in obj:
            _need(isinstance(obj[name], str), where + name)
    for name in objects:
        if name in obj:
            _need(isinstance(obj[name], dict), where + name)
    for name in _OWNER_FIELDS:
        if name in obj:
            owner = obj[name]
            _need(isinstance(owner, str) or (isinstance(owner, dict) and isinstance(owner.get("id", ""), str)),
                  where + name)
    if "authorizations" in obj:
        _need(isinstance(obj["authorizations"], list) and all(isinstance(a, dict) for a in obj["authorizations"]),
              where + "authorizations")
    if "response_urls" in obj:
        _need(isinstance(obj["response_urls"], list) and all(isinstance(a, dict) for a in obj["response_urls"]),
              where + "response_urls")


def _need(ok: bool, field: str) -> None:
    if not ok:
        raise MalformedPayload(f"{field} has a shape Slack does not send")
