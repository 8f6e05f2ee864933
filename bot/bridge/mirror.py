"""The built-in outbox kinds: a conversation's messages (MessagePost), statuses (StatusMark) and notes (Note)
in its thread; alerts (Alert) in the alerts channel. The kinds are storage.outbox_kinds.

The message, status, note and alert kinds share loading a message with its
conversation, contact and channel, and the thread they post into.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, String, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import media
from bot.bridge.inbox import parent_with_inbox
from bot.bridge.message_load import HISTORY, ROWS, Loaded, contact_view, header_view, load_message, summary
from bot.bridge.status_ticks import skipped_statuses, status_reactions, statuses_seen
from bot.core.origin import Direction, Source
from bot.core.window import window_closes_at
from bot.onboarding.history import post_history_intro
from bot.slack import render, status_marks
from bot.slack.outbox import GiveUp, ItemContext, SlackCallFailed, Thread
from bot.slack.outbox_handlers import Kinds, handle, kinds
from bot.slack.outbox_policy import superseded
from bot.slack.parent import opening_parent
from storage import repository as repo
from storage.deferred import Write
from storage.inbox import labels_of
from storage.models import Channel, Contact, Conversation, Message, utcnow
from storage.outbox_kinds import Alert, MessagePost, Note, StatusMark
from storage.redactions import bridge_posts
from storage.thread_record import record_thread, records_thread, refresh_if_renamed

log = logging.getLogger(__name__)

MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
_THREAD_GONE = frozenset({"thread_not_found", "invalid_thread_ts"})
_THREADS = "threads"  # ctx.cache key: conversation id -> Thread, once known in this attempt


async def ensure_thread(ctx: ItemContext, conversation_id: int, opening: Opening | None = None) -> Thread:
    """The conversation's thread; its parent is posted (once) on the conversation's first message.

    With `opening`, a new parent carries that message too (recorded as the item's part); it is ignored when
    the thread exists already, so the caller checks `ctx.parts` to learn whether the message still needs a post.
    """
    known: dict[int, Thread] = ctx.cache.setdefault(_THREADS, {})
    if conversation_id in known:
        return known[conversation_id]
    thread = await _ensure_thread(ctx, conversation_id, opening)
    known[conversation_id] = thread
    return thread


@dataclass(frozen=True)
class Opening:
    """A conversation's first message, to be carried by its new thread parent as the item's `part`."""

    message_id: int
    post: render.Post
    part: str = "0"
    campaign_reply: bool = False  # opens its thread in the number's campaign_replies_channel, if set


async def _conversation_rows(ctx: ItemContext, conversation_id: int
                             ) -> tuple[Conversation, Contact | None, Channel | None]:
    """The conversation with its contact and channel: from this attempt's load, else in one query."""
    rows: dict[int, tuple[Conversation, Contact | None, Channel | None]] = ctx.cache.setdefault(ROWS, {})
    if conversation_id in rows:
        return rows[conversation_id]
    async with ctx.deps.read_session() as s:
        row = (await s.execute(
            select(Conversation, Contact, Channel)
            .outerjoin(Contact, Contact.id == Conversation.contact_id)
            .outerjoin(Channel, Channel.id == Conversation.channel_id)
            .where(Conversation.id == conversation_id))).first()
    if row is None:
        raise GiveUp(f"conversation {conversation_id} does not exist")
    conv, contact, channel_row = row
    rows[conversation_id] = (conv, contact, channel_row)
    return conv, contact, channel_row


async def _ensure_thread(ctx: ItemContext, conversation_id: int, opening: Opening | None = None) -> Thread:
    conv, contact, channel_row = await _conversation_rows(ctx, conversation_id)
    if conv.slack_thread_ts and conv.slack_channel:
        return Thread(conv.slack_channel, conv.slack_thread_ts)
    if contact is None or channel_row is None:
        raise GiveUp(f"conversation {conversation_id} has no contact or channel")
    cfg = ctx.deps.settings.channel_by_phone_number_id(channel_row.phone_number_id)
    spill = cfg.campaign_replies_channel if cfg and opening is not None and opening.campaign_reply else ""
    # A conversation names its number's channel from the start; a new thread may still open in the spill-over.
    slack_channel = spill or conv.slack_channel or (cfg.slack_channel if cfg else channel_row.slack_channel)
    if not slack_channel:
        raise GiveUp(f"channel {channel_row.name} has no Slack channel")
    ts = None
    if ctx.item.uncertain or "parent" in ctx.parts:
        ts = ctx.parts.get("parent")
        if ts is None:
            found = await ctx.find_thread_parent(slack_channel, conversation_id)
            if found is not None:
                ts = found.ts
                if opening is not None and found.carries(ctx.item.id, opening.part):
                    ctx.parts[opening.part] = ts
    posted_now = ts is None
    if ts is None:
        # Kept with the attempt's parts before the call, so a retry that finds this parent knows what it shows.
        ctx.parts[_SHOWN_NAME] = _name_mark(contact)
        header = parent_with_inbox(render.parent_post(
            await header_view(ctx, contact), render.ChannelView(channel_row.name, channel_row.display_phone_number),
            window_closes_at(conv.last_customer_message_at), utcnow(), ctx.deps.settings.timezone),
            conv, ctx.deps.settings.timezone, choices=ctx.deps.settings.inbox.labels)
        folded = opening_parent(header, opening.post) if opening is not None else None
        if opening is not None and folded is not None:
            ts = await ctx.post_parent(slack_channel, folded, conversation_id, part=opening.part)
            ctx.parts[opening.part] = ts
        else:
            ts = await ctx.post_parent(slack_channel, header, conversation_id)
    ctx.parts["parent"] = ts
    # Imported history goes in before the thread is recorded, so a retry after a crash still posts it. Most
    # conversations have none, as the message's load already told: then there is nothing to look up.
    if ctx.cache.get(HISTORY, {}).get(conversation_id, True):
        await post_history_intro(ctx, conversation_id, Thread(slack_channel, ts))
    if posted_now:
        # Recorded with this attempt's outcome (a batch of them records their threads in one statement): this
        # conversation's next item is claimed only once that outcome is written. A rename meanwhile is checked
        # against the names this attempt posted; the contact is locked before the conversation, in the order
        # the webhook worker's batches take them, so the two never wait for each other in a circle.
        ctx.defer(refresh_if_renamed(ctx.deps.sessions.kw["bind"].dialect, conversation_id, contact.id,
                                     contact.address_book_name, contact.profile_name, ts))
        ctx.defer(record_thread(conversation_id, slack_channel, ts))
        return Thread(slack_channel, ts)
    async with ctx.deps.sessions() as s, s.begin():
        recorded = await s.execute(update(Conversation).where(
            Conversation.id == conversation_id, Conversation.slack_thread_ts.is_(None)
        ).values(slack_thread_ts=ts, slack_channel=slack_channel))
        if recorded.rowcount:  # type: ignore[attr-defined]
            await _refresh_if_renamed_meanwhile(s, conversation_id, contact.id, ctx.parts.get(_SHOWN_NAME), ts)
            return Thread(slack_channel, ts)  # ours is the thread recorded: nothing to read back
        # Another attempt recorded its thread first: the one recorded wins.
        stored = (await s.execute(select(Conversation.slack_thread_ts, Conversation.slack_channel)
                                  .where(Conversation.id == conversation_id))).first()
        final_ts = (stored[0] if stored else None) or ts
        final_channel = (stored[1] if stored else None) or slack_channel
    return Thread(final_channel, final_ts)


_SHOWN_NAME = "parent_name"  # ctx.parts key: a digest of the name the parent was posted with (no personal data)


def _name_mark(contact: Contact) -> str:
    return hashlib.sha256((contact_view(contact).name or "").encode()).hexdigest()[:16]


async def _refresh_if_renamed_meanwhile(s: AsyncSession, conversation_id: int, contact_id: int,
                                       shown: str | None, ts: str) -> None:
    """A rename applied while the parent was being posted found no thread to refresh: owe the refresh here.

    The contact's row lock orders this against the rename's transaction, which writes the contact before it
    looks for threads: whichever commits second sees the other's write, so one of the two owes the refresh.
    `shown` is the mark of the name the parent was posted with (by this attempt or an earlier one)."""
    fresh = (await s.execute(select(Contact).where(Contact.id == contact_id).with_for_update()
                             .execution_options(populate_existing=True))).scalar_one_or_none()
    if fresh is not None and shown is not None and _name_mark(fresh) != shown:
        await repo.owe_parent_refresh(s, conversation_id, f"renamed-while-posting:{ts}")


async def current_parent(ctx: ItemContext, conv: Conversation, contact: Contact, channel_row: Channel,
                         parent_ts: str) -> render.Post:
    """The parent as it should read now: fresh header fields, and the first message if the parent carries it."""
    tz = ctx.deps.settings.timezone
    async with ctx.deps.sessions() as s:
        labels = await labels_of(s, conv.id)
    header = parent_with_inbox(render.parent_post(
        await header_view(ctx, contact), render.ChannelView(channel_row.name, channel_row.display_phone_number),
        window_closes_at(conv.last_customer_message_at), utcnow(), tz), conv, tz, labels,
        ctx.deps.settings.inbox.labels)
    async with ctx.deps.sessions() as s:
        carried = await s.scalar(select(Message.id).where(Message.conversation_id == conv.id,
                                                          Message.slack_ts == parent_ts).limit(1))
    loaded = await load_message(ctx, carried) if carried is not None else None
    if loaded is None:
        return header
    return opening_parent(header, message_posts(ctx, loaded)[0]) or header


def message_posts(ctx: ItemContext, loaded: Loaded) -> list[render.Post]:
    """A stored message as Slack posts, its latest version, edits and deletion shown as configured."""
    msg = loaded.msg
    view = render.MessageView(
        direction=msg.direction, source=msg.source, type=msg.type, text=msg.text, content=msg.content or {},
        slack_user=msg.slack_user, quoted=loaded.quoted, campaign=loaded.campaign)
    settings = ctx.deps.settings
    return render.message_posts(view, loaded.contact_view, loaded.channel_view, tz=settings.timezone,
                                show_deleted_text=settings.slack.show_deleted_text)


async def forget_thread(ctx: ItemContext, conversation_id: int, ts: str) -> None:
    """The parent was deleted in Slack: start a new thread with the next post."""
    async with ctx.deps.sessions() as s, s.begin():
        await s.execute(update(Conversation).where(
            Conversation.id == conversation_id, Conversation.slack_thread_ts == ts).values(slack_thread_ts=None))
    # A parent posted by this attempt is not recorded yet: its record, owed with the outcome, goes too.
    ctx.writes[:] = [w for w in ctx.writes if not records_thread(w, conversation_id)]
    ctx.parts.clear()
    ctx.cache.pop(_THREADS, None)
    ctx.cache.pop(ROWS, None)


async def _post_in_thread(ctx: ItemContext, conversation_id: int, post: render.Post, part: str) -> str:
    thread = await ctx.thread_for(conversation_id)
    try:
        return await ctx.post(thread.channel, post, thread_ts=thread.ts, part=part)
    except SlackCallFailed as exc:
        if exc.error not in _THREAD_GONE:
            raise
        await forget_thread(ctx, conversation_id, thread.ts)
        thread = await ctx.thread_for(conversation_id)
        return await ctx.post(thread.channel, post, thread_ts=thread.ts, part=part)


async def mirror_message(ctx: ItemContext, item: MessagePost) -> None:
    """Post one stored message into its conversation's thread."""
    loaded = await load_message(ctx, item.message_id)
    if loaded is None:
        log.warning("outbox %s: message %s is gone", ctx.item.id, item.message_id)
        return
    msg = loaded.msg
    if msg.is_history or msg.source is Source.CAMPAIGN:
        return  # history stays out of Slack; campaign sends have their own progress message
    try:
        await _mirror_message(ctx, loaded)
    finally:
        # What the bridge posted is kept with the message, also after a failed attempt (the posts exist), so
        # retention and erasure find it after the outbox's record has aged out.
        _record_posts(ctx, msg)


async def _mirror_message(ctx: ItemContext, loaded: Loaded) -> None:
    msg = loaded.msg
    if msg.type == "reaction":
        await _mirror_reaction(ctx, loaded)
        return
    posts = message_posts(ctx, loaded)
    first = msg.slack_ts
    if not loaded.conv.slack_thread_ts:
        # A new conversation: its parent carries this message, one post where there used to be two.
        campaign_reply = msg.direction is Direction.INBOUND and msg.campaign_id is not None
        await ensure_thread(ctx, loaded.conv.id, Opening(msg.id, posts[0], campaign_reply=campaign_reply))
    for i, post in enumerate(posts):
        ts = ctx.parts.get(str(i)) or await _post_in_thread(ctx, loaded.conv.id, post, str(i))
        first = first or ts
    thread = await ctx.thread_for(loaded.conv.id)
    if msg.direction is Direction.INBOUND and ctx.parts.get("parent") is None:
        await _refresh_parent_window(ctx, loaded)
    if msg.type in MEDIA_TYPES and msg.media_id and loaded.channel is not None:
        await media.mirror_to_slack(ctx, thread, msg, loaded.channel)
    if first and msg.direction is Direction.OUTBOUND and (msg.status or msg.status_history):
        await status_reactions(ctx, thread.channel, first, msg)


def _record_posts(ctx: ItemContext, msg: Message) -> None:
    """Keep the message's first post (when it had none) and every post and file the bridge made for it with the
    message, in the transaction that records this attempt's outcome (one statement, only when something changed)."""
    made = bridge_posts(ctx.parts)
    posts = made if (made["posts"] or made["files"]) and made != msg.slack_posts else None
    first = ctx.parts.get("0")
    first = first if first and not msg.slack_ts and msg.type != "reaction" else None
    if posts is not None or first is not None:
        ctx.defer(Write(_RECORD_POSTS, {"message_id": msg.id, "posts": posts, "first": first}))


# One template for every message's record (the outcomes of a batch write them in one executemany): a NULL
# parameter leaves its column as it is; a message's first post never replaces one already recorded.
_RECORD_POSTS = update(Message).where(Message.id == bindparam("message_id")).values(
    slack_posts=func.coalesce(bindparam("posts", type_=JSON(none_as_null=True)), Message.slack_posts),
    slack_ts=func.coalesce(Message.slack_ts, bindparam("first", type_=String)))


async def _refresh_parent_window(ctx: ItemContext, loaded: Loaded) -> None:
    """A customer's newest message moves the window's end: the parent's window line follows it."""
    msg = loaded.msg
    latest = loaded.conv.last_customer_message_at
    if latest is not None and latest > msg.wa_timestamp:
        return  # a later message already moved the window; its own post refreshes the parent
    tz = ctx.deps.settings.timezone
    previous = loaded.previous_inbound
    if previous is not None and _window_end(previous, tz) == _window_end(msg.wa_timestamp, tz):
        # The parent shows the window's end to the minute, and the customer's previous message left it showing
        # this very minute (its own refresh was owed, or skipped by this same rule): chat.update, a far smaller
        # allowance than posting, is kept for what changes. A burst of messages costs one refresh, not one each.
        return
    # Owed, not done here: chat.update has a far smaller allowance than posting, and the conversation's next
    # message must not wait for it. Owed in the transaction that records this item's outcome, not one of its
    # own; the worker looks for work again once the item is settled.
    dialect = ctx.deps.sessions.kw["bind"].dialect
    ctx.defer(repo.parent_refresh_write(dialect, loaded.conv.id, f"window:{msg.id}", msg.wa_timestamp))


def _window_end(customer_wrote_at: datetime, tz: str) -> str:
    """The window's end as the parent shows it (to the minute), after a customer's message at that time."""
    closes = window_closes_at(customer_wrote_at)
    return render.format_time(closes, tz) if closes is not None else ""


async def _mirror_reaction(ctx: ItemContext, loaded: Loaded) -> None:
    """A customer's reaction: a reaction on the mirrored message when possible, else a line of text."""
    reaction = (loaded.msg.content or {}).get("reaction") or {}
    emoji = str(reaction.get("emoji") or "")
    async with ctx.deps.sessions() as s:
        target = await s.scalar(select(Message).where(Message.wamid == reaction.get("message_id")))
    name = render.reaction_name(emoji) if emoji else None
    thread = await ctx.thread_for(loaded.conv.id)
    if target is not None and target.slack_ts:
        if not emoji:
            # Removed: WhatsApp does not say which emoji, so try the ones the customer may have used.
            previous = await _previous_reaction(ctx, loaded)
            if previous:
                await ctx.unreact(thread.channel, target.slack_ts, previous)
                return
        elif name:
            await ctx.react(thread.channel, target.slack_ts, name)
            return
    view = render.MessageView(direction=loaded.msg.direction, source=loaded.msg.source, type="reaction",
                              text=loaded.msg.text, content=loaded.msg.content or {},
                              quoted=summary(target) if target is not None else None)
    for i, post in enumerate(render.message_posts(view, loaded.contact_view, loaded.channel_view)):
        await _post_in_thread(ctx, loaded.conv.id, post, str(i))


async def _previous_reaction(ctx: ItemContext, loaded: Loaded) -> str | None:
    """The Slack name of the customer's last reaction to the same message, if it became one."""
    reaction = (loaded.msg.content or {}).get("reaction") or {}
    async with ctx.deps.sessions() as s:
        rows = (await s.scalars(
            select(Message).where(Message.conversation_id == loaded.conv.id, Message.type == "reaction",
                                  Message.id != loaded.msg.id, Message.wa_timestamp <= loaded.msg.wa_timestamp)
            .order_by(Message.wa_timestamp.desc()).limit(20))).all()
    for row in rows:
        r = (row.content or {}).get("reaction") or {}
        if r.get("message_id") == reaction.get("message_id") and r.get("emoji"):
            return render.reaction_name(str(r["emoji"]))
    return None


async def mirror_status(ctx: ItemContext, item: StatusMark) -> None:
    """A delivery status: a reaction on the mirrored message; a failure also gets a note explaining it."""
    async with ctx.deps.sessions() as s:
        msg = await s.get(Message, item.message_id)
        conv = await s.get(Conversation, msg.conversation_id) if msg is not None else None
    if msg is None or conv is None:
        return
    if superseded(item.status, msg.status):
        ctx.result["skipped"] = True  # the later state's item adds this tick too: one call saved per state
        return
    if msg.slack_ts and conv.slack_channel:
        # Earlier statuses were shown by their own items (or by the message's post when they came first),
        # except those skipped as superseded: this item adds theirs.
        seen = statuses_seen(msg)
        status = item.status
        earlier = seen[:seen.index(status)] if status in seen else []
        skipped = set(await skipped_statuses(ctx, msg.wamid, earlier))
        owed: list[str] = []  # skipped since the last item that ran (that one showed everything before it)
        for st in earlier:
            owed = [*owed, st] if st in skipped else []
        shown = [st for st in earlier if st not in owed]
        try:
            for name in status_marks.reactions_to_add([*owed, status],
                                                      already=status_marks.reactions_to_add(shown)):
                await ctx.react(conv.slack_channel, msg.slack_ts, name)
        except SlackCallFailed as exc:
            if exc.error not in ("message_not_found", "too_many_reactions"):
                raise
    if item.status == "failed":
        code = item.error_code
        post = render.note_post(render.failure_text(int(code) if code is not None else None, item.error_title))
        await _post_in_thread(ctx, conv.id, post, "failed")


async def mirror_note(ctx: ItemContext, note: Note) -> None:
    """A line from the bridge itself in a conversation's thread (opt-out changes, sends from Slack, …)."""
    raw = str(note.text or "")
    text = raw if note.mrkdwn else render.escape(raw)
    await _post_in_thread(ctx, int(note.conversation_id), render.note_post(text), "0")


async def mirror_alert(ctx: ItemContext, alert: Alert) -> None:
    """Template, quality and account changes go to the alerts channel (many workspaces: the channel of the
    number they are about, in its workspace)."""
    channel = alert.channel or ctx.deps.settings.slack.alerts_channel
    if not channel:
        log.info("alert not posted (slack.alerts_channel is not set): %s", alert.text)
        return
    await ctx.post(channel, render.alert_post(alert.payload()), part="0")


KINDS: Kinds = kinds(handle(MessagePost, mirror_message), handle(StatusMark, mirror_status),
                     handle(Note, mirror_note), handle(Alert, mirror_alert))
"""The built-in kinds, handed to the outbox worker by the Slack component."""
