"""Doctor's findings about installed workspaces (many-workspace mode): which ones wait for a reinstall."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import Settings
from bot.ops.checks import CheckResult, failed, passed
from storage.workspaces import ACTIVE, WorkspaceRow, all_workspaces, held_posts


def check_workspaces(rows: Sequence[tuple[WorkspaceRow, int]], settings: Settings,
                     team: str | None = None) -> list[CheckResult]:
    """One finding per installed workspace (or only `team`'s): passed while active, failed while paused."""
    install = f"{settings.server.public_url.rstrip('/')}/slack/install"
    out: list[CheckResult] = []
    chosen = [(r, held) for r, held in rows if team is None or r.team == team]
    if not chosen:
        return [failed("slack workspaces", f"{team or 'no workspace'} has not installed the app",
                       f"open {install} and choose the workspace")]
    for row, held in chosen:
        name = f"slack workspace {row.team}" + (f" ({row.name})" if row.name else "")
        if row.state == ACTIVE:
            out.append(passed(name, "installed"))
            continue
        when = row.paused_at.strftime("%Y-%m-%d %H:%M UTC") if row.paused_at else "at an unknown time"
        what = "uninstalled the app" if row.state == "uninstalled" else "revoked the bot token"
        out.append(failed(name, f"{what} {when}: its work is paused, {held} Slack post(s) held",
                          f"install the app again from that workspace: {install}"))
    return out


async def workspace_rows(session: AsyncSession) -> list[tuple[WorkspaceRow, int]]:
    """Every workspace with its undelivered Slack posts."""
    return [(row, await held_posts(session, row.team)) for row in await all_workspaces(session)]
