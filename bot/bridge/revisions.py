"""The "revision" outbox kind: a stored message was edited or deleted, so its mirrored post is updated.

Payload: {message_id}. The post is re-rendered from the stored message (which carries its versions and
its deletion mark) and replaces the mirrored post with chat.update; updating twice gives the same post,
so a retry never doubles anything. A message not mirrored yet is left to its own "message" item, which
renders the latest version.
"""

from __future__ import annotations

import logging

from bot.bridge.mirror import load_message
from bot.slack import render
from bot.slack.outbox import ItemContext, SlackCallFailed, outbox_kind

log = logging.getLogger(__name__)


@outbox_kind("revision")
async def revise_post(ctx: ItemContext) -> None:
    """Replace the mirrored post of an edited or deleted message with its current rendering."""
    loaded = await load_message(ctx, int(ctx.item.payload["message_id"]))
    if loaded is None:
        return
    msg = loaded.msg
    if not msg.slack_ts or not loaded.conv.slack_channel:
        return  # not posted yet: the message's own outbox item posts the latest version
    view = render.MessageView(
        direction=msg.direction, source=msg.source, type=msg.type, text=msg.text, content=msg.content or {},
        slack_user=msg.slack_user, quoted=loaded.quoted, campaign=loaded.campaign)
    settings = ctx.deps.settings
    posts = render.message_posts(view, loaded.contact_view, loaded.channel_view, tz=settings.timezone,
                                 show_deleted_text=settings.slack.show_deleted_text)
    try:
        await ctx.update_message(loaded.conv.slack_channel, msg.slack_ts, posts[0])
    except SlackCallFailed as exc:
        if exc.error not in ("message_not_found", "cant_update_message", "edit_window_closed"):
            raise
        log.info("post %s of message %s not revised: %s", msg.slack_ts, msg.id, exc.error)
