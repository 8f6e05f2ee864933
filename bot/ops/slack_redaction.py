"""Redact one Slack thread: every post's text replaced through `chat.update`, every file removed through
`files.delete`. What Slack refuses (a teammate's own reply, a file someone else uploaded) is returned with
Slack's error, for the person who asked to remove by hand. Posts already redacted are left alone, so a
resumed redaction costs only what is left. Given the process's pacer, each call waits its turn behind live work
(bot.slack.pacer), and a 429 pauses the bucket for every caller sharing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import SlackPace
from bot.slack.errors import http_status, retry_after, slack_error_code, slack_reason

log = logging.getLogger(__name__)

RATE_LIMIT_TRIES = 5
MAX_WAIT = 120.0  # seconds: a longer Retry-After leaves the thread for the next pass
GONE_FILE = ("file_deleted", "file_not_found")  # already what we want
# Worth asking again later (the redaction stops and resumes at the next pass): Slack busy or down, or a token
# or scope the operator can fix (a reinstall grants files:write); any other error is Slack's answer for good,
# and listed.
TRANSIENT = frozenset({"ratelimited", "fatal_error", "internal_error", "service_unavailable", "request_timeout",
                       "unexpected_response", "unknown_error", "not_authed", "invalid_auth", "token_revoked",
                       "token_expired", "account_inactive", "missing_scope", "team_access_not_granted"})


ERASURE_PRIORITY = 3  # behind customers' messages, parent refreshes and reactions (bot.slack.outbox_policy)


@dataclass(frozen=True)
class Pace:
    """Where a redaction's calls wait their turn: the process's pacer, for one workspace's buckets."""

    pacer: SlackPace
    workspace: str = ""
    priority: int = ERASURE_PRIORITY


class SlackUnavailable(Exception):
    """Slack could not answer now; the thread is redacted at a later pass."""


def redacted_text(on: datetime) -> str:
    """What every redacted post says, dated in the workspace's time zone ("6 Dec")."""
    return f"Erased on request on {on.day} {on:%b}"


def _error(exc: SlackApiError) -> str:
    """Slack's error name; SlackUnavailable when it is one worth asking again later (or no error code came:
    a proxy's page, invalid JSON)."""
    error = slack_error_code(exc)
    if error is None or error in TRANSIENT or (http_status(exc) or 200) >= 500:
        raise SlackUnavailable(error or slack_reason(exc)) from exc
    return error


async def _paced(call: Callable[[], Awaitable[Any]], method: str, channel: str | None, pace: Pace | None) -> Any:
    """A Slack call in its turn, waiting out 429s (Retry-After) a few times before giving up with the error."""
    for attempt in range(RATE_LIMIT_TRIES):
        if pace is not None:
            await pace.pacer.acquire(method, channel, pace.priority, pace.workspace)
        try:
            return await call()
        except SlackApiError as exc:
            if http_status(exc) != 429 or attempt == RATE_LIMIT_TRIES - 1:
                raise
            wait = min(retry_after(exc), MAX_WAIT)
            if pace is None:
                await asyncio.sleep(wait)
            else:  # the bucket waits, for the outbox too; the next acquire waits it out
                await pace.pacer.pause(method, channel, wait, pace.workspace)
    raise AssertionError("unreachable")


def _is_redacted(message: dict[str, Any], text: str) -> bool:
    return message.get("text") == text and not message.get("blocks") and not message.get("attachments")


async def thread_messages(slack: AsyncWebClient, channel: str, ts: str, pace: Pace | None = None
                          ) -> list[dict[str, Any]]:
    """Every message of a thread, parent first, through conversations.replies' pages."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        resp = await _paced(partial(slack.conversations_replies, channel=channel, ts=ts, limit=200, cursor=cursor),
                            "conversations.replies", channel, pace)
        out.extend(resp.get("messages") or [])
        cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
        if not resp.get("has_more") or not cursor:
            return out


async def redact_thread(slack: AsyncWebClient, channel: str, ts: str, text: str, pace: Pace | None = None
                        ) -> list[dict[str, Any]]:
    """Redact the thread at (channel, ts); returns what Slack refused, each with its error.

    SlackUnavailable (or a transport error) when Slack cannot answer now: the thread is to be tried again."""
    try:
        messages = await thread_messages(slack, channel, ts, pace)
    except SlackApiError as exc:
        return [{"what": "thread", "channel": channel, "ts": ts, "error": _error(exc)}]
    refused: list[dict[str, Any]] = []
    for m in messages:
        m_ts = str(m.get("ts"))
        author = "post" if m.get("bot_id") else f"reply by <@{m.get('user', '?')}>"
        if not _is_redacted(m, text):
            try:
                await _paced(partial(slack.chat_update, channel=channel, ts=m_ts, text=text, blocks=[],
                                     attachments=[]), "chat.update", channel, pace)
            except SlackApiError as exc:
                refused.append({"what": author, "channel": channel, "ts": m_ts, "error": _error(exc)})
        for f in m.get("files") or []:
            if f.get("mode") == "tombstone" or not f.get("id"):
                continue
            file_id = str(f["id"])
            try:
                await _paced(partial(slack.files_delete, file=file_id), "files.delete", None, pace)
            except SlackApiError as exc:
                if _error(exc) not in GONE_FILE:
                    refused.append({"what": f"file {file_id} in {author}", "channel": channel, "ts": m_ts,
                                    "error": _error(exc)})
    log.info("thread %s/%s redacted; %d refused by Slack", channel, ts, len(refused))
    return refused


async def redact_post(slack: AsyncWebClient, channel: str, ts: str, text: str, pace: Pace | None = None
                      ) -> list[dict[str, Any]]:
    """Redact one post (the person's message in a group's thread, among other people's); returns what Slack
    refused. Files are not looked up: the post's own text is what names them."""
    try:
        await _paced(partial(slack.chat_update, channel=channel, ts=ts, text=text, blocks=[], attachments=[]),
                     "chat.update", channel, pace)
    except SlackApiError as exc:
        error = _error(exc)
        if error != "message_not_found":
            return [{"what": "group post", "channel": channel, "ts": ts, "error": error}]
    return []


async def delete_file(slack: AsyncWebClient, channel: str, file_id: str, pace: Pace | None = None
                      ) -> list[dict[str, Any]]:
    """Delete one file the bridge uploaded (the person's media in a group's thread); returns what Slack refused.
    A file already gone counts as done."""
    try:
        await _paced(partial(slack.files_delete, file=file_id), "files.delete", None, pace)
    except SlackApiError as exc:
        error = _error(exc)
        if error not in GONE_FILE:
            return [{"what": f"file {file_id} in a group post", "channel": channel, "ts": "", "error": error}]
    return []
