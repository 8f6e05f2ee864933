"""Redact the Slack posts of messages the retention pass deleted, a post at a time, behind live work.

The retention pass records each deleted message's posts in `slack_redactions` (storage/redactions.py) in the
transaction that deletes it; this worker works them off with each workspace's own token:
- never in front of a customer: a workspace that owes a live post (a customer's message, a note, an alert)
  gets no redaction until it is posted, and every call waits for the pacer's slot at the lowest priority,
  without the reserve kept for urgent calls (bot.slack.pacer), in every process sharing the buckets;
- at Slack's pace, and at most half of it: chat.update is tier 3 (about 50 a minute per workspace), shared
  with live edits (a thread parent's owner and status, an edited message); this worker takes no more than
  OWN_SHARE of it in each process, so those never queue behind it; a 429 pauses the bucket;
- resumable: a row is done only once Slack answered; a stop leaves it claimed until its lease ends, then it is
  redone (chat.update with the same text changes nothing twice).
A post that was the thread's parent is refreshed instead (its header and buttons stay; the deleted message
goes from it). A row for files only (media past `retention.media_days`) deletes the files the bridge uploaded and
leaves the post. What Slack refuses for good (a channel gone, a post deleted) is recorded, not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.loops import forever, monitor_of
from bot.core.metrics import Metrics
from bot.ops.slack_redaction import GONE_FILE, TRANSIENT
from bot.slack.errors import http_status, retry_after, slack_error_code
from bot.slack.pacer import Pacer
from bot.slack.pacing import SLACK_LIMITS, Limit
from storage import redactions
from storage.models import Conversation
from storage.redactions import Owed
from storage.repository import owe_parent_refresh
from storage.workspaces import paused_teams

log = logging.getLogger(__name__)

REDACTED = "Removed: older than this workspace's retention period."
BULK_PRIORITY = 9  # behind every outbox kind (bot.slack.outbox_policy), never in the urgent reserve
BATCH = 20  # rows claimed at a time; the rest stay in the table for other processes
IDLE = 5.0  # seconds between looks when nothing is owed, or every owing workspace is busy
LEASE = timedelta(minutes=10)
GONE_POST = frozenset({"message_not_found"})  # already what we want
OWN_SHARE = 0.5  # of Slack's allowance per workspace for the calls below; the rest stays with live edits
CALLS = ("chat.update", "files.delete")


def _own_pacer(share: float) -> Pacer | None:
    """This worker's own cap per workspace (a share of Slack's allowance, no burst); None for no cap."""
    if share >= 1:
        return None
    return Pacer({m: Limit(SLACK_LIMITS[m].per_second * share, 1.0) for m in CALLS})


def _backoff(attempts: int) -> float:
    return float(min(3600, 15 * 2 ** max(0, attempts - 1)))


class _Later(Exception):
    """Slack cannot answer now: the row goes back, due after `delay` seconds."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class RedactionWorker:
    """Works `slack_redactions` off, a post at a time, each workspace only while it owes no live post."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 slack_for: Callable[[str], Awaitable[AsyncWebClient | None]], pacer: Pacer, *,
                 metrics: Metrics | None = None, batch: int = BATCH, idle: float = IDLE,
                 share: float = OWN_SHARE) -> None:
        self._sessions = sessions
        self._slack_for = slack_for
        self._pacer = pacer
        self._own = _own_pacer(share)
        self._metrics = metrics
        self._batch = batch
        self._idle = idle

    async def _held(self) -> set[str]:
        """Workspaces whose redactions wait: those owing a live post, and those without a token."""
        async with self._sessions() as session:
            return await redactions.live_teams(session) | await paused_teams(session)

    async def pass_once(self) -> int:
        """Claim a batch and redact it, stopping for any workspace that starts owing a live post; returns
        how many posts were settled."""
        items = await redactions.claim(self._sessions, self._batch, LEASE, held=await self._held())
        settled = 0
        for n, item in enumerate(items):
            if n and item.slack_team in await self._held():
                # A customer wrote (or a token went) meanwhile: what is left waits for their posts.
                await redactions.release(self._sessions, items[n:], 0, started=False)
                break
            settled += await self._one(item)
        return settled

    async def _one(self, item: Owed) -> int:
        try:
            outcome = await self._redact(item)
        except _Later as later:
            await redactions.release(self._sessions, [item], later.delay, str(later))
            return 0
        await redactions.settle(self._sessions, item, outcome)
        if self._metrics is not None:
            self._metrics.retention_rows.labels("slack_files" if item.files_only else "slack_posts").inc()
        return 1

    async def _redact(self, item: Owed) -> str:
        """Redact one post (and its files); Slack's refusal for good as the outcome, _Later for "not now"."""
        if item.parent:
            async with self._sessions() as session, session.begin():
                # An erasure since may have taken the conversation (and redacted its thread) already.
                if item.conversation_id is None or await session.get(Conversation, item.conversation_id) is None:
                    return "conversation gone"
                await owe_parent_refresh(session, item.conversation_id, f"retention:{item.id}")
            if not item.files:
                return "parent refreshed"
        client = await self._slack_for(item.slack_team)
        if client is None:
            raise _Later(f"workspace {item.slack_team} has no token", _backoff(item.attempts))
        refused: str | None = None
        if not item.files_only and not item.parent:  # media past retention.media_days: the post's words stay
            refused = await self._call(item, "chat.update", item.channel, lambda: client.chat_update(
                channel=item.channel, ts=item.ts, text=REDACTED, blocks=[], attachments=[]), GONE_POST)
        for file_id in item.files:
            error = await self._call(item, "files.delete", None, partial(client.files_delete, file=file_id),
                                     frozenset(GONE_FILE))
            refused = refused or error
        if item.parent:
            return refused or "parent refreshed"
        return refused or ("files deleted" if item.files_only else "redacted")

    async def _call(self, item: Owed, method: str, channel: str | None, call: Callable[[], Awaitable[object]],
                    gone: frozenset[str]) -> str | None:
        """One paced call; None when done (or already gone), Slack's error when it refuses for good."""
        if self._own is not None:
            await self._own.acquire(method, channel, BULK_PRIORITY, item.slack_team)
        await self._pacer.acquire(method, channel, BULK_PRIORITY, item.slack_team)
        try:
            await call()
        except SlackApiError as exc:
            status, error = http_status(exc), slack_error_code(exc)
            if status == 429:
                wait = retry_after(exc)
                await self._pacer.pause(method, channel, wait, item.slack_team)
                raise _Later("ratelimited", wait) from exc
            if error is None or error in TRANSIENT or (status or 200) >= 500:
                raise _Later(error or f"HTTP {status}", _backoff(item.attempts)) from exc
            if error in gone:
                return None
            log.info("retention: Slack refused to redact %s/%s: %s", item.channel, item.ts, error)
            return error
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Later(type(exc).__name__, _backoff(item.attempts)) from exc
        return None

    async def run(self) -> None:
        async def turn() -> float | None:
            return 0.0 if await self.pass_once() else None  # settled some: more may be owed at once

        # A side job: its failures are logged, but never make the process unhealthy.
        await forever(turn, self._idle, doing="retention redaction pass",
                      monitor=monitor_of(None, "retention redaction", log, reported=False))
