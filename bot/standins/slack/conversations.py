"""Slack's `conversations.*` methods: history and replies (paged, ranged), info, members, and opening a DM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.standins.slack.state import SlackWorkspace
from bot.standins.slack.wire import (
    SlackError,
    decode_cursor,
    encode_cursor,
    int_arg,
    truthy,
    ts_key,
    visible,
)


def _in_range(ts: str, args: Mapping[str, Any]) -> bool:
    inclusive = truthy(args.get("inclusive"))
    key = ts_key(ts)
    if args.get("oldest"):
        oldest = ts_key(str(args["oldest"]))
        if key < oldest or (key == oldest and not inclusive):
            return False
    if args.get("latest"):
        latest = ts_key(str(args["latest"]))
        if key > latest or (key == latest and not inclusive):
            return False
    return True


def _page(items: list[dict[str, Any]], args: Mapping[str, Any], default_limit: int) -> dict[str, Any]:
    limit = int_arg(args.get("limit"), default_limit, 1000)
    start = decode_cursor(args.get("cursor"))
    page = items[start : start + limit]
    more = start + limit < len(items)
    return {
        "messages": page,
        "has_more": more,
        "response_metadata": {"next_cursor": encode_cursor(start + limit) if more else ""},
    }


async def history(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """conversations.history: top-level messages (and broadcast replies), newest first."""
    channel = ws.channel_for(args.get("channel"))
    metadata = truthy(args.get("include_all_metadata"))
    items = [
        visible(m, metadata)
        for m in reversed(ws.messages(channel["id"]))
        if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
        and _in_range(m["ts"], args)
    ]
    return _page(items, args, 100)


async def replies(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """conversations.replies: a thread's parent, then its replies in range."""
    channel = ws.channel_for(args.get("channel"))
    message = ws.find(channel["id"], args.get("ts"))
    if message is None:
        raise SlackError("thread_not_found")
    root_ts = message.get("thread_ts") or message["ts"]
    metadata = truthy(args.get("include_all_metadata"))
    items = [
        visible(m, metadata)
        for m in ws.thread(channel["id"], root_ts)
        if m["ts"] == root_ts or _in_range(m["ts"], args)
    ]
    return _page(items, args, 1000)


async def info(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """conversations.info."""
    return {"channel": dict(ws.channel_for(args.get("channel")))}


async def members(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """conversations.members, paged."""
    channel = ws.channel_for(args.get("channel"))
    found = ws.members.get(channel["id"], [])
    limit = int_arg(args.get("limit"), 100, 1000)
    start = decode_cursor(args.get("cursor"))
    more = start + limit < len(found)
    return {"members": found[start : start + limit],
            "response_metadata": {"next_cursor": encode_cursor(start + limit) if more else ""}}


async def open_dm(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """conversations.open: a direct message with one user (created on first use)."""
    users = [u for u in str(args.get("users") or "").split(",") if u]
    if len(users) != 1:
        raise SlackError("invalid_arguments" if not users else "not_implemented")
    ws.user_for(users[0])
    dm_id = "D" + users[0][1:]
    if dm_id not in ws.channels:
        channel = ws.add_channel(dm_id, dm_id.lower())
        channel.update(is_channel=False, is_im=True, user=users[0])
        ws.members[dm_id].append(users[0])
    return {"channel": {"id": dm_id}}


METHODS = {
    "conversations.history": history,
    "conversations.replies": replies,
    "conversations.info": info,
    "conversations.members": members,
    "conversations.open": open_dm,
}
