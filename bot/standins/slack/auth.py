"""Slack's `api.*`, `auth.*` and `apps.connections.*` methods: who is calling, and the Socket Mode URL."""

from __future__ import annotations

from typing import Any

from bot.standins.slack.state import CALLER, SlackWorkspace


async def api_test(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """api.test: echo the string arguments."""
    return {"args": {k: v for k, v in args.items() if isinstance(v, str)}}


async def auth_test(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """auth.test: the calling token's workspace and bot."""
    caller = CALLER.get() or ws.team_id
    installed = ws.oauth.workspaces.get(caller)
    if caller == ws.team_id or installed is None:
        return {"url": "https://standin.slack.com/", "team": ws.team_name,
                "user": ws.users[ws.bot_user_id]["name"], "team_id": ws.team_id,
                "user_id": ws.bot_user_id, "bot_id": ws.bot_id, "is_enterprise_install": False}
    answer: dict[str, Any] = {"url": f"https://{installed.key.lower()}.slack.com/", "team": installed.name,
                              "user": "wabridge", "team_id": None if installed.is_org else installed.key,
                              "user_id": installed.bot_user_id, "bot_id": f"B{installed.bot_user_id[1:]}",
                              "is_enterprise_install": installed.is_org}
    if installed.enterprise_id:
        answer["enterprise_id"] = installed.enterprise_id
    return answer


async def apps_connections_open(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """apps.connections.open: a Socket Mode WebSocket URL (app-level token only)."""
    return {"url": ws.socket_mode.issue_url(ws.base_url)}


METHODS = {
    "api.test": api_test,
    "auth.test": auth_test,
    "apps.connections.open": apps_connections_open,
}
