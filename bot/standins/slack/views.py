"""Slack's `views.*` methods: modals opened by a trigger_id, pushed and updated, and the Home tab."""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any

from bot.standins.slack.state import SlackWorkspace
from bot.standins.slack.wire import MAX_SECTION_TEXT, SLACK_ID, SlackError, json_arg


def _plain_len(obj: Any) -> int:
    return len(str(obj.get("text") or "")) if isinstance(obj, dict) else 0


def _view_breaks_limits(view: dict[str, Any]) -> bool:
    """Block Kit's documented view limits, which Slack answers with `invalid_arguments`: title, submit and
    close up to 24 characters, private_metadata 3,000, section text 3,000, option text 75 and value 150,
    100 options in a select."""
    if _plain_len(view.get("title")) > 24 or _plain_len(view.get("submit")) > 24 or _plain_len(view.get("close")) > 24:
        return True
    if len(str(view.get("private_metadata") or "")) > 3000:
        return True
    for block in view.get("blocks") or []:
        if not isinstance(block, dict):
            return True
        if block.get("type") == "section" and _plain_len(block.get("text")) > MAX_SECTION_TEXT:
            return True
        element = block.get("element") or block.get("accessory") or {}
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options += group.get("options") or []
        if len(options) > 100:
            return True
        for option in options + ([element["initial_option"]] if element.get("initial_option") else []):
            if _plain_len(option.get("text")) > 75 or len(str(option.get("value") or "")) > 150:
                return True
    return False


def _use_trigger(ws: SlackWorkspace, trigger_id: Any) -> None:
    if not trigger_id or str(trigger_id) not in ws._triggers:
        raise SlackError("invalid_trigger_id")
    if ws._trigger_team.get(str(trigger_id), ws.team_id) != ws.caller_team():
        raise SlackError("invalid_trigger_id")  # issued to another workspace's payload
    issued = ws._triggers[str(trigger_id)]
    if issued is None:
        raise SlackError("exchanged_trigger_id")
    if time.monotonic() - issued > ws.trigger_ttl:
        raise SlackError("expired_trigger_id")
    ws._triggers[str(trigger_id)] = None


def _new_view(ws: SlackWorkspace, view_arg: Any, previous: str | None = None, root: str | None = None,
              ) -> dict[str, Any]:
    view = json_arg(view_arg, "invalid_arguments")
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        raise SlackError("invalid_arguments")
    if len(view.get("blocks") or []) > 100 or _view_breaks_limits(view):
        raise SlackError("invalid_arguments")
    view_id = "V" + secrets.token_hex(5).upper()
    stored = {
        "id": view_id,
        "team_id": ws.caller_team(),
        "type": view["type"],
        "title": view.get("title"),
        "submit": view.get("submit"),
        "close": view.get("close"),
        "blocks": view.get("blocks") or [],
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "root_view_id": root or view_id,
        "previous_view_id": previous,
        "app_id": ws.app_id,
        "bot_id": ws.bot_id,
    }
    ws.views[view_id] = stored
    return stored


async def open_view(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """views.open: spends the trigger_id."""
    _use_trigger(ws, args.get("trigger_id"))
    return {"view": copy.deepcopy(_new_view(ws, args.get("view")))}


async def push(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """views.push: spends the trigger_id."""
    _use_trigger(ws, args.get("trigger_id"))
    return {"view": copy.deepcopy(_new_view(ws, args.get("view")))}


async def update(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """views.update by view_id or external_id, refused on a stale hash."""
    current: dict[str, Any] | None = None
    team = ws.caller_team()
    if args.get("view_id"):
        current = ws.views.get(str(args["view_id"]))
    elif args.get("external_id"):
        current = next((v for v in ws.views.values() if v["external_id"] == args["external_id"]
                        and v["team_id"] == team), None)
    else:
        raise SlackError("invalid_arguments")
    if current is None or current["team_id"] != team:
        raise SlackError("not_found")  # another workspace's view: Slack does not know it here
    if args.get("hash") and args["hash"] != current["hash"]:
        raise SlackError("hash_conflict")
    replacement = _new_view(ws, args.get("view"), current["previous_view_id"], current["root_view_id"])
    del ws.views[replacement["id"]]
    replacement["id"] = current["id"]
    replacement["state"] = current["state"]
    ws.views[current["id"]] = replacement
    return {"view": copy.deepcopy(replacement)}


async def publish(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """views.publish: a user's Home tab."""
    # Slack: docs.slack.dev/reference/methods/views.publish (no scope; one Home view per user and app).
    user_id = str(args.get("user_id") or "")
    if not SLACK_ID.match(user_id) or (ws.strict and user_id not in ws.users):
        raise SlackError("invalid_arguments")
    if user_id in ws.users and not ws.sees_user(ws.users[user_id]):
        raise SlackError("user_not_found")  # another workspace's member
    home_views = ws.home_views_of(ws.caller_team())
    view = json_arg(args.get("view"), "invalid_arguments")
    if isinstance(view, dict) and view.get("type") == "home" and not ws.home_tab_enabled:
        raise SlackError("not_enabled")
    if len(json.dumps(view)) > 250_000:
        raise SlackError("view_too_large")
    current = home_views.get(user_id)
    if args.get("hash") and (current is None or args["hash"] != current["hash"]):
        raise SlackError("hash_conflict")
    published = _new_view(ws, view)
    if published["type"] != "home":
        del ws.views[published["id"]]
        raise SlackError("invalid_arguments")
    if current is not None:
        del ws.views[published["id"]]
        published["id"] = published["root_view_id"] = current["id"]
        ws.views[current["id"]] = published
    home_views[user_id] = published
    return {"view": copy.deepcopy(published)}


METHODS = {
    "views.open": open_view,
    "views.push": push,
    "views.update": update,
    "views.publish": publish,
}
