"""`wabridge tenants`: the workspaces this deployment serves, their numbers, state and held Slack posts."""

from __future__ import annotations

import argparse

from bot.cli.base import Command, add_command, run_async, settings_from
from bot.core.config import Settings
from bot.core.workspace import DEFAULT_WORKSPACE


def add_parsers(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "tenants", help="list the Slack workspaces served, their numbers, state and backlog",
                description="One line per Slack workspace: installed or paused (uninstalled, token revoked, "
                            "never installed), the WhatsApp numbers that belong to it and the Slack posts it is "
                            "owed. Needs database_url only.")


def cmd_tenants(args: argparse.Namespace) -> int:
    return run_async(_tenants(settings_from(args)))


async def _tenants(settings: Settings) -> int:
    from bot.cli.ops import runtime
    from storage.workspaces import all_workspaces, held_posts

    async with runtime(settings) as rt, rt.sessions() as session:
        rows = {r.team: r for r in await all_workspaces(session)}
        numbers: dict[str, list[str]] = {}
        for ch in settings.channels:
            numbers.setdefault(settings.workspace_of(ch), []).append(ch.name)
        teams = sorted(set(rows) | set(numbers))
        if not teams:
            print("no workspace yet: install the app from /slack/install")
            return 0
        for team in teams:
            row = rows.get(team)
            state = ("single workspace (slack.bot_token)" if team == DEFAULT_WORKSPACE and row is None
                     else row.state if row is not None else "not installed")
            name = f" ({row.name})" if row is not None and row.name else ""
            owned = ", ".join(numbers.get(team, [])) or "no numbers"
            print(f"{team}{name}: {state}; numbers: {owned}; Slack posts owed: {await held_posts(session, team)}")
    return 0


COMMANDS: dict[str, Command] = {"tenants": cmd_tenants}
