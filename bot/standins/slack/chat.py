"""Slack's `chat.*` methods: post, update, ephemeral and permalink, with Slack's content limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from bot.standins.slack.state import SlackWorkspace
from bot.standins.slack.wire import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TEXT, SlackError, json_arg, truthy, visible


def content(args: Mapping[str, Any], *, require: bool = True) -> dict[str, Any]:
    """Text/blocks/metadata of a post or update, validated like Slack does."""
    found: dict[str, Any] = {}
    text = args.get("text")
    blocks = json_arg(args.get("blocks"), "invalid_blocks_format") if args.get("blocks") else None
    attachments = json_arg(args.get("attachments")) if args.get("attachments") else None
    if require and not text and not blocks and not attachments:
        raise SlackError("no_text")
    if text is not None:
        if len(str(text)) > MAX_TEXT:
            raise SlackError("msg_too_long")
        found["text"] = str(text)
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            raise SlackError("invalid_blocks")
        for block in blocks:
            if not isinstance(block, dict) or "type" not in block:
                raise SlackError("invalid_blocks")
            section_text = block.get("text")
            if isinstance(section_text, dict) and len(str(section_text.get("text", ""))) > MAX_SECTION_TEXT:
                raise SlackError("invalid_blocks")
        found["blocks"] = blocks
    if attachments is not None:
        found["attachments"] = attachments
    if args.get("metadata"):
        metadata = json_arg(args["metadata"], "invalid_metadata_format")
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            raise SlackError("invalid_metadata_format")
        found["metadata"] = {
            "event_type": metadata["event_type"],
            "event_payload": metadata["event_payload"],
        }
    return found


async def post_message(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """chat.postMessage."""
    channel = ws.writable(args.get("channel"))
    message = ws.bot_message(**content(args))
    if args.get("username"):
        message["username"] = str(args["username"])
    if args.get("icon_url"):
        message["icons"] = {"image_48": str(args["icon_url"])}
    elif args.get("icon_emoji"):
        message["icons"] = {"emoji": str(args["icon_emoji"])}
    if truthy(args.get("reply_broadcast")) and args.get("thread_ts"):
        message["subtype"] = "thread_broadcast"
    stored = ws.store(channel["id"], message, args.get("thread_ts"))
    shown = visible(stored, include_metadata=True)
    for key in ("reply_count", "reply_users", "latest_reply"):
        shown.pop(key, None)
    return {"channel": channel["id"], "ts": stored["ts"], "message": shown}


async def update(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """chat.update: only the app's own messages."""
    channel = ws.channel_for(args.get("channel"))
    message = ws.find(channel["id"], args.get("ts"))
    if message is None:
        raise SlackError("message_not_found")
    if message.get("bot_id") != ws.bot_id:
        raise SlackError("cant_update_message")
    new = content(args)
    message.update(new)
    if "blocks" not in new and args.get("text") is not None:
        message.pop("blocks", None)  # Slack replaces the blocks when only text is sent
    message["edited"] = {"user": ws.bot_user_id, "ts": ws.next_ts()}
    return {
        "channel": channel["id"],
        "ts": message["ts"],
        "text": message.get("text", ""),
        "message": visible(message, include_metadata=True),
    }


async def post_ephemeral(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """chat.postEphemeral: kept in `ws.ephemerals`, never in the channel."""
    channel = ws.writable(args.get("channel"))
    if not args.get("user"):
        raise SlackError("user_not_found")
    user = ws.user_for(args["user"])
    ephemeral = {
        "channel": channel["id"],
        "user": user["id"],
        "thread_ts": args.get("thread_ts"),
        "message_ts": ws.next_ts(),
        **content(args),
    }
    ws.ephemerals.append(ephemeral)
    return {"message_ts": ephemeral["message_ts"]}


async def get_permalink(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """chat.getPermalink (a reply's link names its thread)."""
    channel = ws.channel_for(args.get("channel"))
    message = ws.find(channel["id"], args.get("message_ts"))
    if message is None:
        raise SlackError("message_not_found")
    link = f"https://standin.slack.com/archives/{channel['id']}/p{message['ts'].replace('.', '')}"
    if message.get("thread_ts") not in (None, message["ts"]):
        link += "?" + urlencode({"thread_ts": message["thread_ts"], "cid": channel["id"]})
    return {"channel": channel["id"], "permalink": link}


METHODS = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
}
