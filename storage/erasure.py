"""One person's rows: found by any id they have, and erased in steps that can stop and resume.

A person is every contact row one of the ids given names (a phone number, a business-scoped user id, a
username), within the channels in scope (None: all). Erasure is keyed by their conversations and the
campaigns of those channels, so with several workspaces it stays inside the caller's numbers. Messages and
logs go in small batches (one short transaction each); the rest goes in one final transaction that also
moves the audit record on, so a stop anywhere leaves a record that says what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.core.identity_hash import USERNAME, wa_id_hash, wa_id_kind
from bot.core.workspace import DEFAULT_WORKSPACE
from storage.models import (
    AudienceMember,
    AutoReply,
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationEvent,
    ConversationLabel,
    Erasure,
    Message,
    MessageStatus,
    SlackOutbox,
    SuppressedIdentity,
    WebhookLog,
    WhatsAppGroup,
    utcnow,
)
from storage.outbox_kinds import conversation_thread
from storage.upsert import insert_ignore_many

ERASING, REDACTING, DONE = "erasing", "redacting", "done"
ERASED_PREFIX = "erased:"
ERASED_NOTE = "erased on request"
IDS_KEY = "_ids"
_OPEN_RECIPIENT = ("pending", "sending")


@dataclass(frozen=True)
class Person:
    """Everything that names one person in the database, within a scope of channels."""

    contact_ids: tuple[int, ...]
    ids: tuple[tuple[str, str], ...]  # (kind, value): every id they are known by
    conversation_ids: tuple[int, ...]
    threads: tuple[tuple[str, str, str], ...]  # (Slack channel, thread ts, workspace)
    elsewhere: bool  # they have conversations outside the scope: the contact rows stay for those

    @property
    def values(self) -> list[str]:
        return sorted({v for _, v in self.ids})

    @property
    def wa_ids(self) -> list[str]:
        """The ids a campaign audience or a status names them by (phone numbers and user ids)."""
        return sorted({v for k, v in self.ids if k != USERNAME})


def _scoped(column: Any, channel_ids: Sequence[int] | None) -> list[ColumnElement[bool]]:
    return [] if channel_ids is None else [column.in_(list(channel_ids))]


async def find_person(session: AsyncSession, values: Sequence[str],
                      channel_ids: Sequence[int] | None) -> Person | None:
    """The person any of values names (a wa_id, an identity, a username), or None when none does."""
    wanted = sorted({v.strip() for v in values if v.strip()})
    bare = {v.lstrip("@").lower() for v in wanted}
    lowered = sorted(bare | {f"@{v}" for v in bare})  # usernames are stored with or without their @
    by_identity = select(ContactIdentity.contact_id).where(or_(
        ContactIdentity.value.in_(wanted),
        (ContactIdentity.kind == USERNAME) & func.lower(ContactIdentity.value).in_(lowered)))
    contacts = (await session.scalars(select(Contact).where(or_(
        Contact.wa_id.in_(wanted), func.lower(Contact.username).in_(lowered), Contact.id.in_(by_identity)))
        .order_by(Contact.id))).all()
    members = await _group_members(session, set(wanted), set(lowered))
    if not contacts and not members:
        return None
    contact_ids = tuple(c.id for c in contacts)
    ids: set[tuple[str, str]] = {(wa_id_kind(c.wa_id), c.wa_id) for c in contacts}
    for m in members:  # a group participant has no contact row of their own
        ids |= {(kind, str(m[key])) for key, kind in (("wa_id", "phone"), ("user_id", "user_id"),
                                                      ("username", USERNAME)) if m.get(key)}
    ids |= {(USERNAME, c.username) for c in contacts if c.username}
    ids |= {(str(k), str(v)) for k, v in (await session.execute(select(ContactIdentity.kind, ContactIdentity.value)
                                                                .where(ContactIdentity.contact_id.in_(contact_ids))))}
    convs = (await session.execute(select(Conversation.id, Conversation.slack_channel, Conversation.slack_thread_ts,
                                          Conversation.slack_team)
                                   .where(Conversation.contact_id.in_(contact_ids),
                                          *_scoped(Conversation.channel_id, channel_ids))
                                   .order_by(Conversation.id))).all()
    elsewhere = channel_ids is not None and await session.scalar(
        select(Conversation.id).where(Conversation.contact_id.in_(contact_ids),
                                      Conversation.channel_id.not_in(list(channel_ids))).limit(1)) is not None
    return Person(contact_ids, tuple(sorted(ids)), tuple(c.id for c in convs),
                  tuple((str(c.slack_channel), str(c.slack_thread_ts), str(c.slack_team)) for c in convs
                        if c.slack_channel and c.slack_thread_ts), elsewhere)


async def _group_members(session: AsyncSession, wanted: set[str], lowered: set[str]) -> list[dict[str, Any]]:
    """Participant entries of WhatsApp groups that any of the wanted ids names."""
    out = []
    for participants in (await session.scalars(select(WhatsAppGroup.participants))).all():
        for p in participants or []:
            if (p.get("wa_id") in wanted or p.get("user_id") in wanted
                    or str(p.get("username") or "").lower() in lowered):
                out.append(p)
    return out


def campaigns_in(channel_ids: Sequence[int] | None) -> Any:
    return select(Campaign.id).where(*_scoped(Campaign.channel_id, channel_ids))


def runs_in(channel_ids: Sequence[int] | None) -> Any:
    return select(CampaignRun.id).where(CampaignRun.campaign_id.in_(campaigns_in(channel_ids)))


# ---- erasure ------------------------------------------------------------------------------------------


async def begin(session: AsyncSession, person: Person, *, requested_by: str, hashes: Sequence[str],
                channel_ids: Sequence[int] | None) -> Erasure:
    """The audit record of an erasure about to start, and the person's hashes kept out of campaigns."""
    await insert_ignore_many(session, SuppressedIdentity.__table__,  # type: ignore[arg-type]
                             [{"hash": h, "created_at": utcnow()} for h in sorted(set(hashes))], ["hash"])
    record = Erasure(requested_by=requested_by, requested_at=utcnow(), identity_hashes=sorted(set(hashes)),
                     scope=None if channel_ids is None else sorted(channel_ids), state=ERASING,
                     contact_ids=list(person.contact_ids), conversation_ids=list(person.conversation_ids),
                     threads=[list(t) for t in person.threads], slack_refused=[],
                     # While erasing only (finish clears it): ids no contact row holds, e.g. a group participant's.
                     counts={IDS_KEY: [list(i) for i in person.ids]})
    session.add(record)
    await session.flush()
    return record


async def erase_messages(session: AsyncSession, conversation_ids: Sequence[int], limit: int) -> int:
    """Delete up to limit messages of these conversations, with the statuses Meta reported for them."""
    rows = (await session.execute(select(Message.id, Message.wamid)
                                  .where(Message.conversation_id.in_(list(conversation_ids))).limit(limit))).all()
    wamids = [r.wamid for r in rows if r.wamid]
    if wamids:
        await session.execute(delete(MessageStatus).where(MessageStatus.wamid.in_(wamids)))
    if rows:
        await session.execute(delete(Message).where(Message.id.in_([r.id for r in rows])))
    return len(rows)


@dataclass(frozen=True)
class LogScan:
    """One span of webhook_logs looked through: the last id read (the one given when none were left), the
    deliveries deleted, and the first one naming the person that the worker has not applied yet."""

    last_id: int
    deleted: int
    first_waiting: int | None


async def erase_logs(session: AsyncSession, values: Sequence[str], after_id: int, span: int,
                     numbers: Sequence[str] | None = None) -> LogScan:
    """Delete the processed deliveries among the next span (by id, after after_id) that name the person, and
    (numbers given: the phone_number_ids in scope) were sent for one of those numbers.

    A delivery not yet processed is left for the worker (deleting it would lose other customers' events in
    it); the caller waits for it and looks again."""
    needles = [v.encode() for v in values if v]
    ours = None if numbers is None else [f'"{n}"'.encode() for n in numbers]
    rows = (await session.execute(select(WebhookLog.id, WebhookLog.raw_body, WebhookLog.processed_at)
                                  .where(WebhookLog.id > after_id).order_by(WebhookLog.id).limit(span))).all()
    naming = [r for r in rows if any(n in bytes(r.raw_body) for n in needles)
              and (ours is None or any(n in bytes(r.raw_body) for n in ours))]
    doomed = [r.id for r in naming if r.processed_at is not None]
    waiting = [r.id for r in naming if r.processed_at is None]
    if doomed:
        await session.execute(delete(WebhookLog).where(WebhookLog.id.in_(doomed)))
    return LogScan(rows[-1].id if rows else after_id, len(doomed), waiting[0] if waiting else None)


async def finish(session: AsyncSession, record: Erasure, person: Person, channel_ids: Sequence[int] | None
                 ) -> dict[str, int]:
    """Erase what is left in one transaction and move the record on to redacting Slack; counts by kind."""
    convs, wa_ids = list(person.conversation_ids), person.wa_ids
    counts: dict[str, int] = dict(record.counts or {})

    async def run(name: str, statement: Any) -> None:
        result = await session.execute(statement.execution_options(synchronize_session=False))
        counts[name] = counts.get(name, 0) + int(result.rowcount or 0)  # type: ignore[attr-defined]

    counts["messages"] = counts.get("messages", 0) + await erase_messages(session, convs, 1_000_000)
    recipients = CampaignRecipient.wa_id.in_(wa_ids), CampaignRecipient.run_id.in_(runs_in(channel_ids))
    sends = select(CampaignRecipient.wamid).where(*recipients, CampaignRecipient.wamid.is_not(None))
    await run("statuses", delete(MessageStatus).where(MessageStatus.wamid.in_(sends)))
    if not person.elsewhere:  # else the number's other statuses may be another workspace's sends
        await run("statuses", delete(MessageStatus).where(MessageStatus.recipient_id.in_(wa_ids)))
    await run("slack_outbox", delete(SlackOutbox).where(or_(
        SlackOutbox.conversation_id.in_(convs), SlackOutbox.thread_key.in_([conversation_thread(c) for c in convs]))))
    await run("audience_rows", delete(AudienceMember).where(
        AudienceMember.wa_id.in_(wa_ids), AudienceMember.campaign_id.in_(campaigns_in(channel_ids))))
    # Sends are counted per state in progress and reports: the rows stay, with nothing left that names anyone.
    await run("campaign_sends_skipped", update(CampaignRecipient).where(
        *recipients, CampaignRecipient.status == "pending").values(status="skipped", error_title=ERASED_NOTE))
    await run("campaign_sends", update(CampaignRecipient).where(*recipients).values(
        wa_id=literal(ERASED_PREFIX) + cast(CampaignRecipient.id, String), fields={}, wamid=None))
    # The inbox's audit of these conversations names only staff; it goes with them (SQLite keeps no cascade).
    await session.execute(delete(ConversationEvent).where(ConversationEvent.conversation_id.in_(convs))
                          .execution_options(synchronize_session=False))
    await session.execute(delete(AutoReply).where(AutoReply.conversation_id.in_(convs))
                          .execution_options(synchronize_session=False))
    await session.execute(delete(ConversationLabel).where(ConversationLabel.conversation_id.in_(convs))
                          .execution_options(synchronize_session=False))
    await run("conversations", delete(Conversation).where(Conversation.id.in_(convs)))
    if not person.elsewhere:
        contacts = list(person.contact_ids)
        await run("identities", delete(ContactIdentity).where(ContactIdentity.contact_id.in_(contacts)))
        await run("contacts", delete(Contact).where(Contact.id.in_(contacts)))
    counts.pop(IDS_KEY, None)
    record.counts = counts
    record.contact_ids, record.conversation_ids = [], []
    record.state = REDACTING
    return counts


async def unfinished(session: AsyncSession, before: datetime | None = None) -> list[Erasure]:
    """Erasures a stop left part-way (erasing, or their Slack threads not all redacted), oldest first; only those
    requested before `before` when given (younger ones may still be at work)."""
    query = select(Erasure).where(Erasure.state != DONE)
    if before is not None:
        query = query.where(Erasure.requested_at < before)
    return list((await session.scalars(query.order_by(Erasure.id))).all())


async def person_of(session: AsyncSession, record: Erasure) -> Person:
    """The person an unfinished erasure is about, from the rows it named (ids read again from them)."""
    contacts = [int(c) for c in record.contact_ids or []]
    values = list((await session.scalars(select(Contact.wa_id).where(Contact.id.in_(contacts)))).all())
    values += [str(v) for _, v in (record.counts or {}).get(IDS_KEY, [])]
    found = await find_person(session, values, record.scope) if values else None
    convs = tuple(int(c) for c in record.conversation_ids or [])
    threads = tuple(thread_of(t) for t in record.threads or [])
    if found is None:
        return Person(tuple(contacts), (), convs, threads, False)
    return Person(found.contact_ids, found.ids, tuple(sorted(set(convs) | set(found.conversation_ids))),
                  threads, found.elsewhere)


async def is_suppressed(session: AsyncSession, hashes: Sequence[str]) -> set[str]:
    """Which of these hashes belong to erased people still kept out of campaigns."""
    if not hashes:
        return set()
    return set((await session.scalars(select(SuppressedIdentity.hash)
                                      .where(SuppressedIdentity.hash.in_(list(hashes))))).all())


async def lift(session: AsyncSession, hashes: Sequence[str]) -> int:
    """An erased person opted back in (they wrote START): campaigns may reach them again."""
    if not hashes:
        return 0
    result = await session.execute(delete(SuppressedIdentity).where(SuppressedIdentity.hash.in_(list(hashes))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def workspace_channels(session: AsyncSession, team: str) -> list[int]:
    """The ids of the numbers one Slack workspace owns (bot.core.workspace): the scope of its requests."""
    return list((await session.scalars(select(Channel.id).where(Channel.slack_team == team)
                                       .order_by(Channel.id))).all())


ERASED_OPT_OUT = "erased on request earlier; opted out until they write START"


async def opt_out_if_erased(session: AsyncSession, contacts: Sequence[tuple[int, str]], salt: bytes) -> int:
    """Opt out the new contacts (id, wa_id) whose id an erasure keeps out of campaigns: an erased person who
    writes again starts a fresh contact, still opted out. Returns how many."""
    hashes = {cid: wa_id_hash(salt, wa_id) for cid, wa_id in contacts}
    erased = await is_suppressed(session, list(hashes.values()))
    ids = [cid for cid, h in hashes.items() if h in erased]
    if ids:
        await session.execute(update(Contact).where(Contact.id.in_(ids)).values(
            opted_out=True, opted_out_at=utcnow(), opt_out_reason=ERASED_OPT_OUT))
    return len(ids)


async def numbers_of(session: AsyncSession, channel_ids: Sequence[int] | None) -> list[str] | None:
    """The phone_number_ids of the channels in scope (None: every number)."""
    if channel_ids is None:
        return None
    return list((await session.scalars(select(Channel.phone_number_id).where(Channel.id.in_(list(channel_ids)))))
                .all())


def thread_of(stored: Sequence[Any]) -> tuple[str, str, str]:
    """(Slack channel, thread ts, workspace) of a thread an erasure record names ([channel, ts] before
    workspaces: the default one)."""
    return str(stored[0]), str(stored[1]), str(stored[2]) if len(stored) > 2 else DEFAULT_WORKSPACE


def is_single_post(stored: Sequence[Any]) -> bool:
    """True for one post to redact (the person's message in a group's thread), not a whole thread."""
    return len(stored) > 3 and stored[3] == "post"


def is_file(stored: Sequence[Any]) -> bool:
    """True for one file to delete (uploaded by the bridge for the person's message in a group's thread); its
    id stands where a thread's ts would."""
    return len(stored) > 3 and stored[3] == "file"
