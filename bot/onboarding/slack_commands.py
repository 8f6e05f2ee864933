"""Manager sub-commands of `/campaign` for onboarding: `connect [#slack-channel] [name]` hands out a one-time
/onboard link; `history @number` posts a conversation's imported history into its thread.

Permission checks (managers only) belong to the dispatcher in bot.handlers.slack_campaign.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select

from bot.core.workspace import DEFAULT_WORKSPACE, request_scope
from bot.deps import Deps
from bot.onboarding.links import DEFAULT_VALID, create_link, link_url
from bot.ops.export import find_contacts
from bot.slack.outbox import wake_outbox
from bot.slack.render import format_time
from storage.models import Channel, Conversation, Message, utcnow
from storage.outbox_kinds import HistoryPost, enqueue

log = logging.getLogger(__name__)

ONBOARDING_SUBCOMMANDS = ("connect", "history")
WORKING = "Working on it…"
_CHANNEL = re.compile(r"^<#(?P<id>[CG][A-Z0-9]+)(?:\|[^>]*)?>$|^(?P<raw>[CG][A-Z0-9]{4,})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
CONNECT_USAGE = "Usage: /campaign connect [#slack-channel] [name], e.g. /campaign connect #shop-whatsapp shop"
HISTORY_USAGE = "Usage: /campaign history @number (in the number's Slack channel, or give the full number)"


def parse_connect(args: str, origin: str | None) -> tuple[str, str | None] | str:
    """(Slack channel, channel name or None) from the command's words, or what is wrong with them."""
    slack_channel, name = origin or "", None
    for word in args.split():
        m = _CHANNEL.match(word)
        if m:
            slack_channel = m.group("id") or m.group("raw")
        elif word.startswith("#"):
            return f"Pick the channel from Slack's list so it becomes a link (#channel). {CONNECT_USAGE}"
        elif _NAME.match(word.lower()) and name is None:
            name = word.lower()
        else:
            return f"{word!r} is neither a channel nor a name (lower-case letters, digits, - and _). {CONNECT_USAGE}"
    if not slack_channel:
        return f"Say which Slack channel the number's chats go to. {CONNECT_USAGE}"
    return slack_channel, name


async def connect_reply(deps: Deps, *, user_id: str, args: str, slack_channel: str | None) -> str:
    """A one-time link for the shop owner, and what it will do."""
    parsed = parse_connect(args, slack_channel)
    if isinstance(parsed, str):
        return parsed
    target, name = parsed
    meta = deps.settings.meta
    missing = [k for k, v in (("meta.app_id", meta.app_id), ("meta.embedded_signup_config_id",
                                                            meta.embedded_signup_config_id),
                              ("meta.token_key", meta.token_key)) if not v]
    if missing:
        return f"Connecting numbers is not set up: set {', '.join(missing)} in app.yaml (see docs/onboarding.md)."
    scope = request_scope()  # the number joins the workspace whose /campaign connect made the link
    token, expires = await create_link(deps.sessions, slack_channel=target, channel_name=name,
                                       requested_by=user_id, valid_for=DEFAULT_VALID,
                                       slack_team=scope.workspace if scope is not None else DEFAULT_WORKSPACE)
    url = link_url(deps.settings, token)
    until = format_time(expires, deps.settings.timezone)
    note = "" if url.startswith("http") else " (set server.public_url so this becomes a full address)"
    return (f"Send this link to the shop owner{note}: {url}\n"
            f"It works once, until {until}. Their WhatsApp Business app number will be bridged into "
            f"<#{target}>{f' as {name}' if name else ''}; contacts and chat history are imported after they "
            "connect, with progress in the alerts channel.")


async def history_reply(deps: Deps, *, user_id: str, query: str, slack_channel: str | None) -> str:
    """Queue the imported history of one conversation for its thread."""
    query = query.strip().lstrip("@").strip()
    if not query:
        return HISTORY_USAGE
    bridged = deps.channel_for_slack(slack_channel) if slack_channel else None
    async with deps.sessions() as session, session.begin():
        contacts = await find_contacts(session, query, deps.settings.default_region)
        if not contacts:
            return f"No contact {query} is known yet."
        rows = (await session.execute(
            select(Conversation.id, Channel.name, func.count(Message.id))
            .join(Channel, Channel.id == Conversation.channel_id)
            .join(Message, (Message.conversation_id == Conversation.id) & Message.is_history.is_(True))
            .where(Conversation.contact_id.in_([c.id for c in contacts]))
            .group_by(Conversation.id, Channel.name))).all()
        if bridged is not None:
            rows = [r for r in rows if r[1] == bridged.name]
        if not rows:
            return f"There is no imported WhatsApp Business app history for {query}."
        if len(rows) > 1:
            return (f"{query} has history on {', '.join(sorted(str(r[1]) for r in rows))}: run the command in "
                    "that number's Slack channel.")
        conversation_id, channel, count = rows[0]
        await enqueue(session, HistoryPost(conversation_id, requested_by=user_id),
                      dedupe_key=f"history:{conversation_id}:{utcnow().isoformat()}")
    wake_outbox(deps)
    return f"The earlier history of {query} on {channel} ({count} messages) will appear in its thread shortly."


async def run_onboarding_command(deps: Deps, name: str, args: str, *, user_id: str,
                                 slack_channel: str | None = None) -> str:
    """Run `connect` or `history` with the rest of the command's text."""
    if name == "connect":
        return await connect_reply(deps, user_id=user_id, args=args, slack_channel=slack_channel)
    if name == "history":
        return await history_reply(deps, user_id=user_id, query=args, slack_channel=slack_channel)
    raise ValueError(f"not an onboarding sub-command: {name}")


Respond = Callable[..., Awaitable[Any]]


async def respond_with(deps: Deps, respond: Respond, name: str, args: str, *, user_id: str,
                       slack_channel: str | None) -> None:
    """Run the sub-command and answer through response_url (only the requester sees it)."""
    try:
        text = await run_onboarding_command(deps, name, args, user_id=user_id, slack_channel=slack_channel)
    except Exception:
        log.exception("/campaign %s failed", name)
        text = f"Something went wrong running /campaign {name}; the error is in the logs."
    await respond(text=text, response_type="ephemeral", replace_original=False)


def onboarding_in_background(deps: Deps, tasks: set[asyncio.Task[None]], respond: Respond, name: str, args: str,
                             *, user_id: str, slack_channel: str | None) -> None:
    """Start a sub-command after the command was acknowledged; tasks keeps it referenced until done."""
    task = asyncio.create_task(respond_with(deps, respond, name, args, user_id=user_id,
                                            slack_channel=slack_channel))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
