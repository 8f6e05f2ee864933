"""Business App data syncs (contacts and chat history): what was asked of Meta and how far it got.

Meta allows each sync once, within 24 hours of the signup. History arrives in phases (0: the last day,
1: days 1-90, 2: days 90-180), each in chunks that may come out of order and more than once; `progress` is
the overall percentage, 100 when the import is complete. Contacts arrive as `smb_app_state_sync` webhooks
with no end marker: the first one after the request marks that sync as received.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.workspace import DEFAULT_WORKSPACE
from bot.meta import events as ev
from storage import repository as repo
from storage.models import Channel, Contact, Conversation, Message, SmbSync, utcnow
from storage.outbox_kinds import HistoryProgress, enqueue

SYNC_CONTACTS = "smb_app_state_sync"
SYNC_HISTORY = "history"
SYNC_LABELS = {SYNC_CONTACTS: "contacts", SYNC_HISTORY: "chat history"}
HISTORY_DECLINED = 2593109  # the business turned history sharing off in the WhatsApp Business app
OPEN_STATES = frozenset({"requested", "in_progress"})
PHASES = {0: "the last day", 1: "days 1 to 90", 2: "days 90 to 180"}
# doctor: a sync still open this long after it was asked for never completed; one without news this long
# has stalled.
NEVER_COMPLETED_AFTER = timedelta(hours=24)
STALLED_AFTER = timedelta(hours=6)


async def record_request(session: AsyncSession, *, channel_id: int, sync_type: str, request_id: str | None,
                         error: str | None = None, slack_channel: str | None = None) -> SmbSync:
    """Keep one sync request (or its failure) as a new row."""
    row = SmbSync(channel_id=channel_id, sync_type=sync_type, request_id=request_id or None,
                  state="failed" if error else "requested", requested_at=utcnow(), chunks_seen=[], items=0,
                  error=error, completed_at=utcnow() if error else None, slack_channel=slack_channel)
    session.add(row)
    await session.flush()
    return row


async def latest_sync(session: AsyncSession, channel_id: int, sync_type: str) -> SmbSync | None:
    """The newest sync of this type for the channel, locked for update on PostgreSQL."""
    query = (select(SmbSync).where(SmbSync.channel_id == channel_id, SmbSync.sync_type == sync_type)
             .order_by(SmbSync.requested_at.desc(), SmbSync.id.desc()).limit(1))
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    return await session.scalar(query)


async def _sync_for(session: AsyncSession, channel_id: int, sync_type: str, slack_channel: str | None) -> SmbSync:
    sync = await latest_sync(session, channel_id, sync_type)
    if sync is None:  # e.g. a number onboarded elsewhere: track what arrives all the same
        sync = SmbSync(channel_id=channel_id, sync_type=sync_type, state="in_progress", requested_at=utcnow(),
                       chunks_seen=[], items=0, slack_channel=slack_channel)
        session.add(sync)
        await session.flush()
    return sync


def chunk_key(phase: int | None, chunk_order: int | None) -> str:
    """How one history chunk is recognised when Meta delivers it again."""
    return f"{phase}:{chunk_order}"


async def history_chunk(session: AsyncSession, *, channel_id: int, slack_channel: str | None,
                        chunk: ev.HistoryChunk, stored: int) -> None:
    """Fold one history chunk into its sync: progress, phase, messages, or the business's refusal."""
    now = utcnow()
    sync = await _sync_for(session, channel_id, SYNC_HISTORY, slack_channel)
    if chunk.errors:
        err = chunk.errors[0]
        if sync.state in OPEN_STATES or sync.state == "completed":
            sync.state = "declined" if err.code == HISTORY_DECLINED else "failed"
            sync.error = f"{err.code} {err.details or err.message or err.title}".strip()
            sync.completed_at = now
            await _owe_progress_post(session, sync, "final")
        return
    sync.last_progress_at = now
    if chunk.phase is None and chunk.progress is None:
        sync.items += stored  # media of earlier placeholders: no progress of its own
        return
    key = chunk_key(chunk.phase, chunk.chunk_order)
    seen = list(sync.chunks_seen or [])
    if key in seen:
        return  # delivered again: its messages were deduplicated, its progress already counted
    sync.chunks_seen = [*seen, key]
    sync.items += stored
    if chunk.phase is not None:
        sync.phase = max(sync.phase or 0, chunk.phase)
    if chunk.progress is not None:
        sync.progress = max(sync.progress or 0, min(100, chunk.progress))
    if sync.state in OPEN_STATES:
        sync.state = "in_progress"
        if (sync.progress or 0) >= 100:
            sync.state, sync.completed_at = "completed", now
    # Chunks can still arrive after the one saying 100%: each of those refreshes the final count.
    bucket = (f"final:{len(sync.chunks_seen)}" if sync.state == "completed"
              else f"{sync.phase}:{(sync.progress or 0) // 10}")
    await _owe_progress_post(session, sync, bucket)


async def _owe_progress_post(session: AsyncSession, sync: SmbSync, bucket: str) -> None:
    # One Slack update per tenth of progress and phase at most: chunks can number in the hundreds.
    team = await session.scalar(select(Channel.slack_team).where(Channel.id == sync.channel_id))
    await enqueue(session, HistoryProgress(sync.id), dedupe_key=f"history-progress:{sync.id}:{bucket}",
                  slack_team=team or DEFAULT_WORKSPACE)


async def contact_synced(session: AsyncSession, *, channel_id: int | None, event: ev.ContactSync) -> None:
    """Apply an address-book change from the phone; threads showing that contact get their parent renamed."""
    from storage.identities import Identity, resolve_contact

    # An entry without a phone number (a username-era customer) names the contact by BSUID: the same person.
    identity = Identity(phone=event.phone, user_id=event.user_id, username=event.username) \
        if (event.phone or event.user_id) else Identity.of(event.wa_id)
    contact = await resolve_contact(session, identity)
    if event.action == "remove":
        name = None
    else:
        name = event.full_name or event.first_name or contact.address_book_name
    changed = name != contact.address_book_name
    contact.address_book_name = name
    if channel_id is not None:
        sync = await _sync_for(session, channel_id, SYNC_CONTACTS, None)
        sync.items += 1
        sync.last_progress_at = utcnow()
        if sync.state in OPEN_STATES:
            sync.state, sync.completed_at = "completed", utcnow()
    if changed:
        await _rename_threads(session, contact)


async def _rename_threads(session: AsyncSession, contact: Contact) -> None:
    convs = (await session.scalars(select(Conversation).where(
        Conversation.contact_id == contact.id, Conversation.slack_thread_ts.is_not(None)))).all()
    for conv in convs:
        await repo.owe_parent_refresh(session, conv.id, f"renamed:{utcnow().isoformat()}")


# ---- what Slack and doctor show ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncView:
    """A sync as the progress message and doctor describe it."""

    channel: str
    sync_type: str
    state: str
    requested_at: datetime
    phase: int | None
    progress: int | None
    items: int
    last_progress_at: datetime | None
    completed_at: datetime | None
    error: str | None


def progress_text(view: SyncView) -> str:
    """The alerts-channel line for a history import: phase and percentage, or how it ended."""
    who = f"*{view.channel}*"
    count = f"{view.items:,} message{'s' if view.items != 1 else ''}"
    if view.state == "completed":
        return (f":white_check_mark: History import for {who} complete: {count} from the WhatsApp Business "
                "app. They are not posted one by one: a conversation's thread starts with a summary and the "
                "full transcript.")
    if view.state == "declined":
        return (f":no_entry: History import for {who}: the business chose not to share its chat history in "
                "the WhatsApp Business app. New messages are still mirrored.")
    if view.state == "failed":
        return f":warning: History import for {who} failed: {view.error or 'Meta gave no reason'}."
    phase = view.phase if view.phase is not None else 0
    return (f":inbox_tray: History import for {who}: phase {phase + 1} of 3 ({PHASES.get(phase, '?')}) · "
            f"{view.progress or 0}% · {count} so far")


def _ago(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} day(s)" if hours >= 48 else f"{hours} h"


def sync_problems(views: Sequence[SyncView], now: datetime) -> list[tuple[str, str, str, bool]]:
    """(check name, detail, fix, is_failure) for syncs that never completed or stalled; ok ones as well."""
    out: list[tuple[str, str, str, bool]] = []
    fix = ("check that the app is subscribed to the 'history' and 'smb_app_state_sync' webhook fields "
           "(doctor's webhook check); Meta allows each sync once within 24 h of signup, so connect the number "
           "again with /campaign connect to ask anew")
    for v in views:
        name = f"{v.channel}: {SYNC_LABELS.get(v.sync_type, v.sync_type)} sync"
        if v.state == "failed":
            out.append((name, f"request failed: {v.error or 'no reason given'}", fix, True))
        elif v.state in OPEN_STATES:
            since = now - v.requested_at
            quiet = now - (v.last_progress_at or v.requested_at)
            done = f" ({v.progress}% done)" if v.progress is not None else ""
            if since >= NEVER_COMPLETED_AFTER:
                out.append((name, f"requested {_ago(since)} ago and never completed{done}", fix, True))
            elif quiet >= STALLED_AFTER:
                out.append((name, f"no progress for {_ago(quiet)}{done}", fix, False))
            else:
                out.append((name, f"under way{done}", "", False))
        elif v.state == "declined":
            out.append((name, "declined by the business in the WhatsApp Business app", "", False))
        else:
            out.append((name, f"completed ({v.items:,} received)", "", False))
    return out


async def latest_views(sessions: async_sessionmaker[AsyncSession]) -> list[SyncView]:
    """The newest sync of each type for each channel."""
    async with sessions() as session:
        rows = (await session.execute(select(SmbSync, Channel.name).join(Channel, Channel.id == SmbSync.channel_id)
                                      .order_by(SmbSync.requested_at, SmbSync.id))).all()
    newest: dict[tuple[int, str], SyncView] = {}
    for sync, name in rows:
        newest[(sync.channel_id, sync.sync_type)] = view_of(sync, name)
    return list(newest.values())


def view_of(sync: SmbSync, channel: str) -> SyncView:
    return SyncView(channel, sync.sync_type, sync.state, sync.requested_at, sync.phase, sync.progress,
                    sync.items, sync.last_progress_at, sync.completed_at, sync.error)


async def fill_placeholder(session: AsyncSession, message: ev.HistoryMessage, content: dict[str, Any]) -> bool:
    """Give an imported media placeholder its media, which Meta sends later under the same wamid."""
    media = message.content.media
    if media is None or not media.id:
        return False
    row = await session.scalar(select(Message).where(Message.wamid == message.wamid))
    if row is None or not row.is_history or row.media_id:
        return False
    if row.type != "unsupported" and (row.content or {}).get("original_type") != "media_placeholder":
        return False
    row.type, row.text, row.content = message.content.kind, message.content.text, content
    row.media_id, row.media_mime = media.id, media.mime_type
    return True
