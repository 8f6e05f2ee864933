"""The Revision outbox kind: a stored message was edited or deleted, so its mirrored post is updated.

The post is re-rendered from the stored message (which carries its versions and
its deletion mark) and replaces the mirrored post with chat.update; updating twice gives the same post,
so a retry never doubles anything. A message not mirrored yet is left to its own "message" item, which
renders the latest version.
"""

from __future__ import annotations

import logging

from bot.bridge.mirror import current_parent, load_message, message_posts
from bot.slack.outbox import ItemContext, SlackCallFailed
from bot.slack.outbox_handlers import Kinds, handle, kinds
from storage.outbox_kinds import Revision

log = logging.getLogger(__name__)


async def revise_post(ctx: ItemContext, item: Revision) -> None:
    """Replace the mirrored post of an edited or deleted message with its current rendering."""
    loaded = await load_message(ctx, item.message_id)
    if loaded is None:
        return
    msg = loaded.msg
    if not msg.slack_ts or not loaded.conv.slack_channel:
        return  # not posted yet: the message's own outbox item posts the latest version
    if msg.slack_ts == loaded.conv.slack_thread_ts:
        # The thread's parent carries this message: its header is re-rendered along with it.
        post = await current_parent(ctx, loaded.conv, loaded.contact, loaded.channel_row, msg.slack_ts)
    else:
        post = message_posts(ctx, loaded)[0]
    try:
        await ctx.update_message(loaded.conv.slack_channel, msg.slack_ts, post)
    except SlackCallFailed as exc:
        if exc.error not in ("message_not_found", "cant_update_message", "edit_window_closed"):
            raise
        log.info("post %s of message %s not revised: %s", msg.slack_ts, msg.id, exc.error)


KINDS: Kinds = kinds(handle(Revision, revise_post))
