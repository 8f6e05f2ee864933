"""Business App data syncs (contacts and chat history): what was asked of Meta and how far it got.

Meta allows each sync once, within 24 hours of the signup. History arrives in phases (0: the last day,
1: days 1-90, 2: days 90-180), each in chunks that may come out of order and more than once; `progress` is
the overall percentage, 100 when the import is complete. Contacts arrive as `smb_app_state_sync` webhooks
with no end marker: the first one after the request marks that sync as received.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from bot.meta import events as ev
from bot.ops.sync_status import OPEN_STATES, SYNC_CONTACTS, SYNC_HISTORY
from bot.ops.sync_status import SyncView as SyncView  # re-exported: the status of syncs is read below onboarding
from bot.ops.sync_status import latest_views as latest_views
from bot.ops.sync_status import progress_text as progress_text
from bot.ops.sync_status import sync_problems as sync_problems
from bot.ops.sync_status import view_of as view_of
from storage import repository as repo
from storage.identities import Identity, resolve_contact
from storage.models import Channel, Contact, Conversation, Message, SmbSync, utcnow
from storage.outbox_kinds import HistoryProgress, enqueue

HISTORY_DECLINED = 2593109  # the business turned history sharing off in the WhatsApp Business app


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
