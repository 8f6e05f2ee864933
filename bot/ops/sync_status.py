"""How far each Business App data sync got, as the alerts-channel progress message and doctor describe it.

Read from the smb_syncs rows that bot.onboarding.syncs writes; kept here, below onboarding, because doctor
reads it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Channel, SmbSync

SYNC_CONTACTS = "smb_app_state_sync"
SYNC_HISTORY = "history"
SYNC_LABELS = {SYNC_CONTACTS: "contacts", SYNC_HISTORY: "chat history"}
OPEN_STATES = frozenset({"requested", "in_progress"})
PHASES = {0: "the last day", 1: "days 1 to 90", 2: "days 90 to 180"}
# doctor: a sync still open this long after it was asked for never completed; one without news this long
# has stalled.
NEVER_COMPLETED_AFTER = timedelta(hours=24)
STALLED_AFTER = timedelta(hours=6)


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
