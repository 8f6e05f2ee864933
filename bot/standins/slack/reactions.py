"""Slack's `reactions.*` methods: the bot's own emoji reactions on a message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.standins.slack.state import SlackWorkspace
from bot.standins.slack.wire import SlackError


def _target(ws: SlackWorkspace, args: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    channel = ws.channel_for(args.get("channel"))
    message = ws.find(channel["id"], args.get("timestamp"))
    if message is None:
        raise SlackError("message_not_found")
    name = str(args.get("name") or "").strip(":")
    if not name:
        raise SlackError("invalid_name")
    return message, name


async def add(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """reactions.add."""
    message, name = _target(ws, args)
    reactions = message.setdefault("reactions", [])
    reaction = next((r for r in reactions if r["name"] == name), None)
    if reaction is None:
        reaction = {"name": name, "users": [], "count": 0}
        reactions.append(reaction)
    if ws.bot_user_id in reaction["users"]:
        raise SlackError("already_reacted")
    reaction["users"].append(ws.bot_user_id)
    reaction["count"] += 1
    return {}


async def remove(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """reactions.remove."""
    message, name = _target(ws, args)
    reactions = message.get("reactions", [])
    reaction = next((r for r in reactions if r["name"] == name), None)
    if reaction is None or ws.bot_user_id not in reaction["users"]:
        raise SlackError("no_reaction")
    reaction["users"].remove(ws.bot_user_id)
    reaction["count"] -= 1
    if reaction["count"] == 0:
        reactions.remove(reaction)
    if not reactions:
        message.pop("reactions", None)
    return {}


METHODS = {
    "reactions.add": add,
    "reactions.remove": remove,
}
