"""Owe a campaign run's progress message a refresh when its counters moved, without piling refreshes up.

Statuses keep arriving long after a run's last send (and after its final report), in every batch the
webhook worker applies; the message must follow them without one Slack edit per batch.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.models import SlackOutbox
from storage.outbox_kinds import CampaignProgress, enqueue
from storage.workspaces import run_teams

PROGRESS_KIND = CampaignProgress.KIND  # the Slack outbox kind that renders a run's progress message


def progress_dedupe_key(run_id: int, key: str) -> str:
    return f"{PROGRESS_KIND}:{run_id}:{key}"


async def refresh(session: AsyncSession, run_ids: Iterable[int], key: str) -> int:
    """Owe each run's message a refresh; returns how many were added.

    A refresh already owed and not yet claimed renders the counts as they are when it is delivered, so it
    covers this change too: it is locked (no outbox claims it before this transaction commits) instead of
    adding another. Else one is added under `key`.
    """
    added = 0
    o = SlackOutbox
    wanted = sorted(set(run_ids))
    teams = await run_teams(session, wanted) if wanted else {}
    for run_id in wanted:
        item = CampaignProgress(run_id)
        owed = (select(o.id).where(o.thread_key == item.thread_key, o.kind == PROGRESS_KIND,
                                   o.done_at.is_(None), o.claimed_until.is_(None)).limit(1))
        if session.bind.dialect.name == "postgresql":
            owed = owed.with_for_update()
        if await session.scalar(owed) is None and await enqueue(
                session, item, dedupe_key=progress_dedupe_key(run_id, key),
                slack_team=teams.get(run_id, DEFAULT_WORKSPACE)):
            added += 1
    return added
