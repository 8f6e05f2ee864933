"""Contacts, conversations, messages and statuses: the writes that webhook and Slack handlers share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.origin import Source
from bot.core.workspace import DEFAULT_WORKSPACE
from storage.deferred import Write
from storage.models import (
    Campaign,
    CampaignRecipient,
    Channel,
    Contact,
    Conversation,
    Message,
    MessageStatus,
    SlackOutbox,
    utcnow,
)
from storage.outbox_kinds import ParentRefresh, StatusMark, enqueue, outbox_row
from storage.status_fold import (
    MessageFold,
    RecipientFold,
    StatusRow,
    fold_message,
    fold_recipient,
    status_item_order,
)
from storage.turns import take_turn
from storage.upsert import insert_ignore, insert_ignore_write
from storage.wamid_locks import lock_wamids

_SYNC_LOCK_KEY = 0x5AB0_C4A7  # pg_advisory_xact_lock key serializing the channels' sync at start-up


async def sync_channels(sessions: async_sessionmaker[AsyncSession], channels: Iterable[Any],
                        workspace_of: Callable[[Any], str] | None = None) -> dict[str, int]:
    """Mirror the configured channels into the database; returns phone_number_id -> channel id.

    `workspace_of` names each channel's workspace (Settings.workspace_of; without it, single-workspace mode's
    'default'). A channel given a real workspace takes its 'default' conversations, campaigns and posts along
    (a deployment moving from one bot token to installs); rows already in another workspace stay there."""
    out: dict[str, int] = {}
    async with sessions() as session, session.begin():
        # Processes starting together (`serve --processes N`, a web and its workers) sync one after the other: each
        # would otherwise insert the numbers the other has not committed yet, and fail to start.
        await take_turn(session, _SYNC_LOCK_KEY)
        for ch in channels:
            # A row is a number: its conversations were had with that number, so a name now given to another
            # number moves to a new row (the old one keeps its threads, renamed), never the other way round.
            row = await session.scalar(select(Channel).where(Channel.phone_number_id == ch.phone_number_id))
            named = await session.scalar(select(Channel).where(Channel.name == ch.name))
            if named is not None and named is not row:
                named.name = retired_name(named.name, named.phone_number_id)
                await session.flush()
            if row is None:
                row = Channel(name=ch.name, phone_number_id=ch.phone_number_id)
                session.add(row)
            row.name = ch.name
            row.phone_number_id = ch.phone_number_id
            row.waba_id = ch.waba_id
            row.display_phone_number = ch.display_phone_number
            row.mode = str(ch.mode)
            row.mps = ch.mps
            row.slack_channel = ch.slack_channel
            team = workspace_of(ch) if workspace_of is not None else DEFAULT_WORKSPACE
            row.slack_team = team
            await session.flush()
            if team != DEFAULT_WORKSPACE:
                await _adopt_default_rows(session, row.id, team)
            out[ch.phone_number_id] = row.id
    return out


async def _adopt_default_rows(session: AsyncSession, channel_id: int, team: str) -> None:
    """File the channel's rows from single-workspace days under its workspace."""
    conversations = select(Conversation.id).where(Conversation.channel_id == channel_id)
    await session.execute(update(SlackOutbox).where(SlackOutbox.slack_team == DEFAULT_WORKSPACE,
                                                    SlackOutbox.conversation_id.in_(conversations))
                          .values(slack_team=team))
    for model in (Conversation, Campaign):
        await session.execute(update(model).where(model.channel_id == channel_id,
                                                  model.slack_team == DEFAULT_WORKSPACE).values(slack_team=team))


def retired_name(name: str, phone_number_id: str) -> str:
    """The name a number's row keeps once its configured name went to another number (names are unique)."""
    suffix = f" (was {phone_number_id})"
    return name[:100 - len(suffix)] + suffix


async def contact_for(session: AsyncSession, wa_id: str, profile_name: str | None = None) -> Contact:
    """The contact for wa_id, created on first sight; a newer profile name replaces the old one."""
    await insert_ignore(session, Contact, {"wa_id": wa_id, "profile_name": profile_name,
                                           "opted_out": False, "created_at": utcnow(),
                                           "updated_at": utcnow()}, ["wa_id"])
    contact = (await session.scalars(select(Contact).where(Contact.wa_id == wa_id))).one()
    if profile_name and contact.profile_name != profile_name:
        contact.profile_name = profile_name
    return contact


async def conversation_for(session: AsyncSession, channel_id: int, contact_id: int,
                           slack_channel: str | None, slack_team: str = DEFAULT_WORKSPACE) -> Conversation:
    """The one conversation of channel x contact, created on first sight (in the channel's workspace)."""
    await insert_ignore(session, Conversation, {"channel_id": channel_id, "contact_id": contact_id,
                                                "slack_channel": slack_channel, "created_at": utcnow(),
                                                "slack_team": slack_team},
                        ["channel_id", "contact_id"])
    return (await session.scalars(select(Conversation).where(
        Conversation.channel_id == channel_id, Conversation.contact_id == contact_id))).one()


async def touch_window(session: AsyncSession, conversation_id: int, at: datetime) -> None:
    """Move the 24-hour window forward to at; never backwards (deliveries arrive out of order)."""
    conv = await session.get(Conversation, conversation_id)
    if conv is not None and (conv.last_customer_message_at is None or conv.last_customer_message_at < at):
        conv.last_customer_message_at = at


async def insert_message(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Store a message once per wamid; returns its id, or None when the wamid was already stored."""
    values = {"status_history": [], "is_history": False, "is_note": False, "created_at": utcnow(),
              **values}
    values.setdefault("wa_timestamp", utcnow())
    if values.get("wamid") is None:
        msg = Message(**values)
        session.add(msg)
        await session.flush()
        return msg.id
    return await insert_ignore(session, Message, values, ["wamid"])


async def record_status(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Keep a status report once per (wamid, status); True when it was new."""
    return await insert_ignore(session, MessageStatus, {"created_at": utcnow(), **values},
                               ["wamid", "status"]) is not None


async def owe_status_posts(session: AsyncSession, wamid: str, statuses: list[str]) -> None:
    """Owe the thread a status item for each of these statuses of a message stored after them.

    Lanes let a status be applied before its message; folded in when the message arrives, it still gets its
    reaction (and, for `failed`, the note explaining Meta's error) through its own item, after the message."""
    if not statuses:
        return
    msg = await session.scalar(select(Message).where(Message.wamid == wamid))
    if msg is None or msg.source is Source.CAMPAIGN:
        return
    rows = (await session.scalars(select(MessageStatus).where(
        MessageStatus.wamid == wamid, MessageStatus.status.in_(statuses)))).all()
    for st in rows:
        await enqueue(session, StatusMark(msg.id, st.status, msg.conversation_id, st.error_code, st.error_title),
                      dedupe_key=f"status:{wamid}:{st.status}",
                      order_ts=status_item_order(st.status, st.wa_timestamp, msg.wa_timestamp))


async def apply_statuses(session: AsyncSession, wamid: str) -> list[str]:
    """Fold every known status of wamid into its message and campaign recipient; returns the new ones.

    Call it after the message or recipient row carries the wamid: the lock makes a status batch committing
    at the same time either see that row or be seen here."""
    await lock_wamids(session, [wamid])
    statuses = list((await session.scalars(
        select(MessageStatus).where(MessageStatus.wamid == wamid).order_by(MessageStatus.wa_timestamp)
    )).all())
    if not statuses:
        return []
    rows = [StatusRow(st.wamid, st.status, st.wa_timestamp, st.recipient_id, st.error_code, st.error_title,
                      st.pricing) for st in statuses]
    applied: list[str] = []
    msg = await session.scalar(select(Message).where(Message.wamid == wamid))
    if msg is not None:
        mf = fold_message(MessageFold(msg.status, list(msg.status_history or []), msg.error_code, msg.error_title,
                                      msg.pricing_category, msg.billable), rows)
        msg.status, msg.status_history = mf.status, mf.status_history
        msg.error_code, msg.error_title = mf.error_code, mf.error_title
        msg.pricing_category, msg.billable = mf.pricing_category, mf.billable
        applied = [st.status for st in mf.applied]
    recipient = await session.scalar(select(CampaignRecipient).where(CampaignRecipient.wamid == wamid))
    if recipient is not None:
        rf = fold_recipient(RecipientFold(recipient.status, recipient.error_code, recipient.error_title,
                                          recipient.pricing_category, recipient.billable), rows)
        recipient.status, recipient.error_code, recipient.error_title = rf.status, rf.error_code, rf.error_title
        recipient.pricing_category, recipient.billable = rf.pricing_category, rf.billable
    return applied


def parent_refresh_write(dialect: Any, conversation_id: int, reason: str,
                         order_ts: datetime | None = None) -> Write:
    """`owe_parent_refresh` as a write, to run in a transaction of the caller's choosing (an outbox item's
    outcome: no transaction of its own per customer message)."""
    row = outbox_row(ParentRefresh(conversation_id), dedupe_key=f"parent:{conversation_id}:{reason}",
                     order_ts=order_ts)
    return insert_ignore_write(dialect, SlackOutbox, row, ["dedupe_key"])


async def owe_parent_refresh(session: AsyncSession, conversation_id: int, reason: str,
                             order_ts: datetime | None = None) -> bool:
    """Owe the thread's parent a refresh (name, window); `reason` makes it once per cause.

    Refreshes travel in a thread of their own, apart from the conversation's messages, which never wait
    for Slack's slower chat.update allowance; a later refresh owed makes an earlier one unnecessary."""
    return await enqueue(session, ParentRefresh(conversation_id), dedupe_key=f"parent:{conversation_id}:{reason}",
                         order_ts=order_ts)


async def set_opt_out(session: AsyncSession, contact_id: int, opted_out: bool, reason: str) -> bool:
    """Change a contact's marketing opt-out; True when it changed."""
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.opted_out == opted_out:
        return False
    await session.execute(update(Contact).where(Contact.id == contact_id).values(
        opted_out=opted_out, opted_out_at=utcnow() if opted_out else None,
        opt_out_reason=reason if opted_out else None, updated_at=utcnow()))
    return True
