"""Every Slack request is scoped to the workspace it came from, before any listener sees it.

A bolt middleware (after bolt's own signature check and authorization): it names the request's workspace
(the sentinel one in single-workspace mode) and its bot token for the rest of the request (bot.core.workspace:
lookups of threads and campaigns and every call through `Deps.slack` follow it), and refuses, with a log line,
a payload that names a bridged Slack channel of another workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse

from bot.core.workspace import DEFAULT_WORKSPACE, RequestScope, enter_scope, workspace_key
from bot.deps import Deps

log = logging.getLogger(__name__)


def register(bolt: AsyncApp, deps: Deps) -> None:
    bolt.use(partial(scope_request, deps))


def request_workspace(deps: Deps, context: AsyncBoltContext) -> str | None:
    """The workspace key of the request; None when it names none (many-workspace mode)."""
    if not deps.settings.slack.many_workspaces:
        return DEFAULT_WORKSPACE
    try:
        return workspace_key(context.team_id, context.enterprise_id, bool(context.is_enterprise_install))
    except ValueError:
        return None


def named_channels(body: dict[str, Any]) -> set[str]:
    """The Slack channel ids a payload names where listeners read them (events, commands, interactions)."""
    found: list[Any] = [body.get("channel_id")]
    for key in ("event", "channel", "container", "item"):
        part = body.get(key)
        if isinstance(part, dict):
            found += [part.get("channel"), part.get("channel_id"), part.get("id") if key == "channel" else None]
            item = part.get("item")
            if isinstance(item, dict):
                found.append(item.get("channel"))
    return {c for c in found if isinstance(c, str) and c}


async def scope_request(deps: Deps, context: AsyncBoltContext, body: dict[str, Any],
                        next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse | None:
    workspace = request_workspace(deps, context)
    kind = body.get("type") or ("command" if body.get("command") else "request")
    if workspace is None:
        log.warning("Slack %s naming no workspace refused", kind)
        return BoltResponse(status=200, body="")
    for channel in sorted(named_channels(body)):
        number = deps.channel_for_slack(channel)
        if number is None:
            continue
        owner = deps.settings.workspace_of(number)
        if owner != workspace:
            log.warning("Slack %s from workspace %s names channel %s of workspace %s: refused", kind, workspace,
                        channel, owner)
            return BoltResponse(status=200, body="")
    enter_scope(RequestScope(workspace, context.token if deps.settings.slack.many_workspaces else None))
    return await next()
