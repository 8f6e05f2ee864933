"""`/wabridge find …`: the conversations of the request's workspace that match, on the numbers whose channel the
person is in, answered privately (up to 20, each linked to its thread).

The command is acknowledged at once; the search and the thread links follow through the response URL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select

from bot.core.workspace import DEFAULT_WORKSPACE, request_scope
from bot.deps import Deps
from bot.slack.lookup import lookup
from bot.slack.permissions import MembershipUnknown, Permissions
from bot.slack.search_view import answer_blocks, parse
from storage.models import Channel
from storage.search import Hit, find

log = logging.getLogger(__name__)


async def on_find(deps: Deps, permissions: Permissions, ack: Any, respond: Any, body: dict[str, Any],
                  text: str) -> None:
    """Answer `/wabridge find <text>` (text without the `find`)."""
    user = str(body.get("user_id") or "")
    parsed = parse(text, user, deps.settings.inbox.labels)
    if parsed.query is None:
        await ack(text=parsed.problem or "")
        return
    await ack()
    scope = request_scope()
    workspace = scope.workspace if scope is not None else DEFAULT_WORKSPACE
    visible, unchecked = await _visible_numbers(deps, permissions, workspace, user)
    async with deps.sessions() as s:
        channel_ids = list((await s.scalars(select(Channel.id).where(Channel.phone_number_id.in_(visible)))).all())
        hits = await find(s, parsed.query, workspace=workspace, channel_ids=channel_ids)
    links = await _links(deps, hits)
    blocks = answer_blocks(parsed.query, hits, links, deps.settings.timezone, unchecked)
    log.info("find by %s in %s: %d conversations", user, workspace, len(hits))
    await respond(text=f"{len(hits)} conversations found", blocks=blocks, response_type="ephemeral",
                  replace_original=False)


async def _visible_numbers(deps: Deps, permissions: Permissions, workspace: str, user: str
                           ) -> tuple[list[str], list[str]]:
    """The workspace's numbers whose channel the person is in; and those Slack did not say (left out)."""
    visible: list[str] = []
    unchecked: list[str] = []
    settings = deps.settings
    for number in settings.channels:
        if settings.workspace_of(number) != workspace or not number.slack_channel:
            continue
        try:
            if await permissions.in_channel(user, number.slack_channel):
                visible.append(number.phone_number_id)
        except MembershipUnknown:
            unchecked.append(number.name)
    return visible, unchecked


async def _links(deps: Deps, hits: list[Hit]) -> dict[int, str]:
    """Thread permalinks, asked together (a link Slack does not give leaves the name unlinked)."""
    threads = [h for h in hits if h.slack_channel and h.thread_ts]

    async def one(hit: Hit) -> tuple[int, str]:
        resp = await lookup(deps.slack.chat_getPermalink(channel=str(hit.slack_channel), message_ts=str(hit.thread_ts)),
                            f"the link to thread {hit.thread_ts}")
        return hit.conversation_id, str((resp or {}).get("permalink") or "")

    return {cid: link for cid, link in await asyncio.gather(*(one(h) for h in threads)) if link}
