"""The `slack_workspaces` rows: which workspaces installed the app, and which wait for a reinstall."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.models import Campaign, CampaignRun, Conversation, SlackOutbox, SlackWorkspace, utcnow
from storage.upsert import insert_ignore

ACTIVE = "active"
UNINSTALLED = "uninstalled"  # app_uninstalled: the workspace removed the app
REVOKED = "revoked"  # tokens_revoked: the bot token no longer works


@dataclass(frozen=True)
class WorkspaceRow:
    team: str
    enterprise_id: str | None
    name: str | None
    state: str
    installed_at: datetime
    paused_at: datetime | None


async def record_install(session: AsyncSession, team: str, *, enterprise_id: str | None, name: str | None) -> bool:
    """The workspace installed (or installed again): its work runs. True when it had been paused."""
    now = utcnow()
    await insert_ignore(session, SlackWorkspace, {"team": team, "enterprise_id": enterprise_id, "name": name,
                                                  "state": ACTIVE, "installed_at": now, "updated_at": now},
                        ["team"])
    row = await session.get(SlackWorkspace, team, populate_existing=True)
    assert row is not None  # inserted or already there, in this transaction
    was_paused = row.state != ACTIVE
    row.state, row.paused_at, row.updated_at = ACTIVE, None, now
    row.enterprise_id, row.name = enterprise_id, name or row.name
    if was_paused:
        row.installed_at = now
        # Posts tried while the workspace had no token wait out a back-off: they are due now.
        conversations = select(Conversation.id).where(Conversation.slack_team == team)
        await session.execute(update(SlackOutbox).where(
            SlackOutbox.done_at.is_(None), SlackOutbox.next_attempt_at.is_not(None),
            or_(SlackOutbox.conversation_id.in_(conversations),
                and_(SlackOutbox.conversation_id.is_(None), SlackOutbox.slack_team == team)))
            .values(next_attempt_at=None).execution_options(synchronize_session=False))
    return was_paused


async def record_removal(session: AsyncSession, team: str, state: str) -> bool:
    """The workspace's tokens are gone (uninstalled or revoked): its work waits. True when it was active."""
    now = utcnow()
    changed = await session.execute(update(SlackWorkspace).where(SlackWorkspace.team == team,
                                                                 SlackWorkspace.state == ACTIVE)
                                    .values(state=state, paused_at=now, updated_at=now))
    if getattr(changed, "rowcount", 0):
        return True
    await insert_ignore(session, SlackWorkspace, {"team": team, "state": state, "installed_at": now,
                                                  "paused_at": now, "updated_at": now}, ["team"])
    return False


async def paused_teams(session: AsyncSession) -> set[str]:
    """Workspaces whose work waits for a reinstall."""
    return set((await session.scalars(select(SlackWorkspace.team).where(SlackWorkspace.state != ACTIVE))).all())


async def workspace(session: AsyncSession, team: str) -> WorkspaceRow | None:
    row = await session.get(SlackWorkspace, team)
    return None if row is None else _row(row)


async def all_workspaces(session: AsyncSession) -> list[WorkspaceRow]:
    rows = (await session.scalars(select(SlackWorkspace).order_by(SlackWorkspace.team))).all()
    return [_row(r) for r in rows]


async def held_posts(session: AsyncSession, team: str) -> int:
    """Posts owed to a workspace's Slack and not delivered (its conversations' and its own)."""
    conversations = select(Conversation.id).where(Conversation.slack_team == team)
    own = await session.scalar(select(func.count()).select_from(SlackOutbox).where(
        SlackOutbox.done_at.is_(None), SlackOutbox.conversation_id.is_(None), SlackOutbox.slack_team == team))
    theirs = await session.scalar(select(func.count()).select_from(SlackOutbox).where(
        SlackOutbox.done_at.is_(None), SlackOutbox.conversation_id.in_(conversations)))
    return int(own or 0) + int(theirs or 0)


async def run_teams(session: AsyncSession, run_ids: Iterable[int]) -> dict[int, str]:
    """The workspace of each campaign run (its campaign's): a run's Slack posts (progress, unknown notices)
    belong to it, for fairness, pausing and /metrics alike."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    rows = (await session.execute(select(CampaignRun.id, Campaign.slack_team)
                                  .join(Campaign, Campaign.id == CampaignRun.campaign_id)
                                  .where(CampaignRun.id.in_(ids)))).tuples().all()
    return {int(run): str(team or DEFAULT_WORKSPACE) for run, team in rows}


def _row(r: SlackWorkspace) -> WorkspaceRow:
    return WorkspaceRow(r.team, r.enterprise_id, r.name, r.state, r.installed_at, r.paused_at)


async def owed_per_workspace(session: AsyncSession) -> dict[str, int]:
    """Undelivered Slack posts per workspace (a conversation's items count for its workspace)."""
    team = func.coalesce(Conversation.slack_team, SlackOutbox.slack_team)
    rows = (await session.execute(
        select(team, func.count()).select_from(SlackOutbox)
        .outerjoin(Conversation, Conversation.id == SlackOutbox.conversation_id)
        .where(SlackOutbox.done_at.is_(None)).group_by(team))).tuples().all()
    return {str(t): int(n) for t, n in rows}


async def states(session: AsyncSession) -> dict[str, int]:
    """How many workspaces are in each state."""
    rows = (await session.execute(select(SlackWorkspace.state, func.count()).group_by(SlackWorkspace.state)))
    return {str(s): int(n) for s, n in rows.tuples().all()}


def top_labels(counts: dict[str, int], keep: int) -> dict[str, int]:
    """The `keep` largest counts by name, the rest summed under "other": a bounded set of metric labels."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(ranked[:keep])
    rest = sum(n for _, n in ranked[keep:])
    if rest or len(ranked) > keep:
        out["other"] = rest
    return out
