"""Posts rendered again: the Revision kind (a stored message was edited or deleted, so its mirrored post is
updated) and the ParentRefresh kind (the thread's parent shows the contact's current name and inbox state).

The post is re-rendered from the stored message (which carries its versions and
its deletion mark) and replaces the mirrored post with chat.update; updating twice gives the same post,
so a retry never doubles anything. A message not mirrored yet is left to its own "message" item, which
renders the latest version.
"""

from __future__ import annotations

import logging

from bot.bridge.message_load import load_message
from bot.bridge.mirror import current_parent, message_posts
from bot.slack.outbox import GiveUp, ItemContext, SlackCallFailed
from bot.slack.outbox_handlers import Kinds, handle, kinds
from storage.models import Channel, Contact, Conversation
from storage.outbox_kinds import ParentRefresh, Revision

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


async def refresh_parent(ctx: ItemContext, item: ParentRefresh) -> None:
    """Show the contact's current name (the phone's address book first) on the thread's parent."""
    conversation_id = item.conversation_id
    async with ctx.deps.sessions() as s:
        conv = await s.get(Conversation, conversation_id)
        contact = await s.get(Contact, conv.contact_id) if conv else None
        channel_row = await s.get(Channel, conv.channel_id) if conv else None
    if conv is None or contact is None or channel_row is None:
        raise GiveUp(f"conversation {conversation_id} is gone")
    if not conv.slack_thread_ts or not conv.slack_channel:
        return  # no thread yet: it will be created with the new name
    post = await current_parent(ctx, conv, contact, channel_row, conv.slack_thread_ts)
    try:
        await ctx.update_message(conv.slack_channel, conv.slack_thread_ts, post)
    except SlackCallFailed as exc:
        if exc.error not in ("message_not_found", "cant_update_message"):
            raise
        log.info("thread parent %s not renamed: %s", conv.slack_thread_ts, exc.error)


KINDS: Kinds = kinds(handle(Revision, revise_post), handle(ParentRefresh, refresh_parent))
