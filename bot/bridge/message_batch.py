"""Store a batch's plain customer messages and echoes with a few multi-row statements.

"Plain" is what most live traffic is: a message or echo for a configured number, not answering a campaign
message, not an opt-out keyword, not history. Those need no per-message decision, so their messages, Slack
posts and window moves are written set-based, with the same values `meta_events._store_message` writes.
Anything else is left to the per-delivery handlers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, Table, and_, bindparam, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import away, csat, inbox
from bot.bridge.meta_events import EventContext, content_json, is_business_number
from bot.bridge.optout import opt_change
from bot.core.origin import Direction, Source
from bot.meta import events as ev
from storage import repository as repo
from storage.among import among
from storage.contact_batch import ConversationKeys
from storage.identities import looks_like_user_id
from storage.message_rows import store_with_posts
from storage.model_base import UTCDateTime
from storage.models import Contact, Conversation, MessageStatus, utcnow
from storage.wamid_locks import lock_wamids


@dataclass(frozen=True)
class PlainMessage:
    """A message or echo that can be stored set-based, with its conversation's keys."""

    event: ev.InboundMessage | ev.MessageEcho
    channel_id: int
    wa_id: str

    @property
    def inbound(self) -> bool:
        return isinstance(self.event, ev.InboundMessage)


def plain_message(ctx: EventContext, e: ev.WebhookEvent) -> PlainMessage | None:
    """The event as a PlainMessage when it needs no per-message decision, else None (the handler's)."""
    if not isinstance(e, ev.InboundMessage | ev.MessageEcho):
        return None
    pnid = e.envelope.phone_number_id or ""
    channel_id = ctx.channel_ids.get(pnid)
    if channel_id is None or ctx.settings.channel_by_phone_number_id(pnid) is None:
        return None  # perhaps onboarded a moment ago: the handler adopts it
    if e.content.context and e.content.context.get("id"):
        return None  # may answer a campaign: the handler attributes it (and picks its Slack channel)
    if e.content.edits or e.content.revokes or e.content.errors or e.content.kind == "system":
        return None  # revises an earlier message, carries Meta's errors, or changes the customer's number
    if isinstance(e, ev.InboundMessage):
        if e.group_id:
            return None  # a group's message: its handler keeps the group thread and the sender
        if e.user_id or e.username or e.parent_user_id or (e.phone and e.phone != e.from_wa_id) \
                or looks_like_user_id(e.from_wa_id):
            return None  # a username-era customer: the handler resolves (and may merge) the contact
        payload = (e.content.button or {}).get("payload") or (e.content.interactive or {}).get("id")
        if opt_change(ctx.settings.opt_out, e.content.text, payload) is not None or csat.parse_answer(payload):
            return None  # an opt-out, or a survey's answer: the handler records it
        return PlainMessage(e, channel_id, e.from_wa_id)
    if e.to_user_id or looks_like_user_id(e.to_wa_id) or is_business_number(e.to_phone or e.to_wa_id, e.envelope):
        return None  # to a user id, or a note to self on the phone
    return PlainMessage(e, channel_id, e.to_wa_id)


def plain_messages(ctx: EventContext, events: list[ev.WebhookEvent]) -> list[PlainMessage] | None:
    """The delivery's messages when every event is a plain message or echo, else None."""
    out = []
    for e in events:
        found = plain_message(ctx, e)
        if found is None:
            return None
        out.append(found)
    return out


async def store_plain(session: AsyncSession, ctx: EventContext, messages: list[PlainMessage],
                      convs: Mapping[tuple[int, str], ConversationKeys]) -> None:
    """Store messages (convs: their conversations, from `ensure_conversations`) and owe Slack their posts."""
    if not messages:
        return
    await _rename_contacts(session, messages, {wa_id: keys.profile_name for (_, wa_id), keys in convs.items()})
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    for m in messages:
        e = m.event
        media = e.content.media
        rows.setdefault(e.wamid, {
            "wamid": e.wamid, "conversation_id": convs[(m.channel_id, m.wa_id)].conversation_id,
            "direction": Direction.INBOUND if m.inbound else Direction.OUTBOUND,
            "source": Source.CUSTOMER if m.inbound else Source.PHONE_APP, "type": e.content.kind,
            "text": e.content.text, "media_id": media.id if media else None,
            "media_mime": media.mime_type if media else None, "content": content_json(e.content),
            "wa_timestamp": e.timestamp,
        })
        ctx.count(type(e).__name__)
    # The messages and their posts (the post first, then any status that came before its echo, as one by one).
    new = await store_with_posts(session, list(rows.values()), now)
    duplicates = len(messages) - len(new)
    if duplicates:
        ctx.stats["duplicate_message"] = ctx.stats.get("duplicate_message", 0) + duplicates
    if not new:
        return
    await _move_windows(session, [rows[w] for w in new if rows[w]["direction"] == Direction.INBOUND])
    outbound = [w for w in new if rows[w]["direction"] == Direction.OUTBOUND]
    if outbound:
        # Statuses that came before their echo are folded in now, as the handler does; the lock makes a
        # status batch committing meanwhile either find these messages or be found here.
        await lock_wamids(session, outbound)
        early = (await session.scalars(_EARLY[session.bind.dialect.name == "postgresql"], {"wamids": outbound})).all()
        for wamid in sorted(early):
            await repo.owe_status_posts(session, wamid, await repo.apply_statuses(session, wamid))
    # After the messages' posts: the reopen note follows the message that caused it in the thread.
    inbound = [rows[w] for w in new if rows[w]["direction"] == Direction.INBOUND]
    await inbox.customer_wrote(session, _latest_inbound(inbound))
    await away.owe_away(session, ctx.settings, _latest_inbound([r for r in inbound
                                                               if r["type"] not in away.NOT_ASKING]))
    if csat.any_csat(ctx.settings):  # a text soon after a survey's answer is its comment
        for row in inbound:
            if row["type"] == "text":
                await csat.record_comment(session, ctx.settings, row["conversation_id"], row["text"],
                                          row["wa_timestamp"])


def _early(postgres: bool) -> Select[tuple[str]]:
    """The wamids among :wamids that have a status stored (built once per dialect; True: PostgreSQL)."""
    wamid = MessageStatus.__table__.c.wamid
    return select(wamid).where(among(wamid, "wamids", postgres=postgres)).distinct()


_EARLY = {postgres: _early(postgres) for postgres in (True, False)}


async def _rename_contacts(session: AsyncSession, messages: list[PlainMessage], names: dict[str, str | None]) -> None:
    """A newer profile name replaces the old one (the last one in the batch wins, as one by one)."""
    latest: dict[str, str] = {}
    for m in messages:
        if isinstance(m.event, ev.InboundMessage) and m.event.profile_name:
            latest[m.wa_id] = m.event.profile_name
    changed = [{"w": w, "name": n} for w, n in sorted(latest.items()) if names.get(w) != n]
    if changed:
        contacts: Table = Contact.__table__  # type: ignore[assignment]
        await session.execute(
            update(contacts).where(contacts.c.wa_id == bindparam("w"))
            .values(profile_name=bindparam("name"), updated_at=utcnow()), changed)


def _latest_inbound(inbound: list[dict[str, Any]]) -> dict[int, datetime]:
    """Each conversation's newest customer message among these rows."""
    latest: dict[int, datetime] = {}
    for row in inbound:
        conv_id, at = row["conversation_id"], row["wa_timestamp"]
        if conv_id not in latest or latest[conv_id] < at:
            latest[conv_id] = at
    return latest


_PG_WINDOWS = text(
    "UPDATE conversations AS c SET last_customer_message_at = u.at FROM unnest(:ids, :ats) AS u(id, at) "
    "WHERE c.id = u.id AND (c.last_customer_message_at IS NULL OR c.last_customer_message_at < u.at)"
).bindparams(bindparam("ids", type_=ARRAY(Integer)), bindparam("ats", type_=ARRAY(UTCDateTime())))


async def _move_windows(session: AsyncSession, inbound: list[dict[str, Any]]) -> None:
    """Move each conversation's 24-hour window to its latest new customer message; never backwards."""
    latest = sorted(_latest_inbound(inbound).items())
    if not latest:
        return
    if session.bind.dialect.name == "postgresql":  # one statement, whatever the number of conversations
        await session.execute(_PG_WINDOWS, {"ids": [conv for conv, _ in latest], "ats": [at for _, at in latest]})
        return
    table: Table = Conversation.__table__  # type: ignore[assignment]
    c = table.c
    await session.execute(
        update(table)
        .where(and_(c.id == bindparam("conv"),
                    or_(c.last_customer_message_at.is_(None), c.last_customer_message_at < bindparam("at"))))
        .values(last_customer_message_at=bindparam("at")),
        [{"conv": conv, "at": at} for conv, at in latest])
