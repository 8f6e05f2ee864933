"""The ordered, durable Slack outbox: rows of `slack_outbox` delivered to Slack in order, once.

Rules:
- Per `thread_key` only the head item (earliest `order_ts`, then id) is ever in flight, so a thread's posts
  appear in WhatsApp timestamp order; different threads proceed in parallel, up to `concurrency`.
- Items are claimed with a lease (a conditional UPDATE); several processes cooperate on one database.
  Claims are serialized per database (PostgreSQL advisory lock, SQLite's write lock) so that two processes
  can never both put an item of one thread in flight. One claim leases up to `claim_batch` heads (default
  4 times concurrency) to spread its cost; those not started yet wait in this process, each still the only
  item of its thread in flight, and go back to the table unstarted if they wait too long or the worker stops.
- Slack 429 honours Retry-After; 5xx, timeouts and connection errors back off exponentially (capped) and
  are retried for ever: nothing is lost while Slack is down, and a restart resumes from the table.
- Nothing is doubled: every post carries message metadata naming its outbox item; when a previous attempt's
  outcome is unknown (timeout, 5xx, expired lease) the thread or channel is searched for that metadata
  before posting again. File uploads record their file id before completing, and are checked the same way.

Kinds are handled by functions in `OUTBOX_KINDS`; other modules add theirs (e.g. campaign progress).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Executable, Table, and_, exists, or_, select, text, update
from sqlalchemy.orm import aliased

from bot.core.liveness import Fence
from bot.deps import Deps
from bot.slack.render import Post
from storage.fencing import FencedOut, claim_values, held_by, settle
from storage.models import SlackOutbox, utcnow

log = logging.getLogger(__name__)

OUTBOX_EVENT = "wabridge_outbox"
THREAD_EVENT = "wabridge_thread"
_CLAIM_LOCK_KEY = 0x5AB0_0B0C  # pg_advisory_xact_lock key serializing outbox claims

# Slack answers that mean "try again later" but leave the outcome unknown.
_TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                               "team_added_to_org"})
# Answers that only an operator can fix (token, membership, archive): keep the items, retry slowly.
_CONFIG_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "invalid_auth", "not_authed",
                            "account_inactive", "token_revoked", "token_expired", "missing_scope",
                            "restricted_action", "ekm_access_denied", "no_permission"})
# Answers about the message itself: retried once as plain text, then the post is given up.
_FORMAT_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "invalid_arguments",
                            "no_text", "too_many_attachments", "invalid_metadata_format",
                            "invalid_metadata_schema", "metadata_too_large", "metadata_must_be_sent_from_app"})
_MAX_COOLDOWN_WAIT = 30.0
_SETTLE_RETRY_CAP = 5.0  # seconds between attempts to record an outcome while the database is away


class Retry(Exception):
    """Try the item again later: after `delay` seconds (None: exponential backoff)."""

    def __init__(self, reason: str, *, delay: float | None = None, uncertain: bool = False) -> None:
        super().__init__(reason)
        self.delay = delay
        self.uncertain = uncertain


class GiveUp(Exception):
    """The item can never be delivered (e.g. Slack rejects its content); it is closed with the reason."""


class SlackCallFailed(Exception):
    """A Slack answer `{"ok": false, "error": …}` that is neither transient nor a rate limit."""

    def __init__(self, error: str, method: str) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error
        self.method = method


@dataclass
class OutboxItem:
    """One claimed row, as a handler sees it."""

    id: int
    thread_key: str
    kind: str
    payload: dict[str, Any]
    conversation_id: int | None
    attempts: int  # this attempt included
    result: dict[str, Any]  # progress kept across attempts (posted parts, pending uploads)
    uncertain: bool  # a previous attempt may have reached Slack without us knowing
    claimed_until: datetime | None = None  # this claim's lease, which names it when handed back unstarted
    fence: Fence | None = None  # owner and token of this claim, when bound to a process's liveness


@dataclass(frozen=True)
class Thread:
    """Where a conversation lives in Slack."""

    channel: str
    ts: str


Handler = Callable[["ItemContext"], Awaitable[None]]

_TABLE: Table = SlackOutbox.__table__  # type: ignore[assignment]

OUTBOX_KINDS: dict[str, Handler] = {}
"""kind -> handler; a handler raises Retry to be tried later, returns normally when the item is done."""


def outbox_kind(kind: str) -> Callable[[Handler], Handler]:
    """Decorator registering a handler for one outbox kind."""

    def register(fn: Handler) -> Handler:
        OUTBOX_KINDS[kind] = fn
        return fn

    return register


def _retry_after(exc: SlackApiError) -> float:
    headers: Any = getattr(exc.response, "headers", None) or {}
    value = None
    if hasattr(headers, "get"):
        value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def _ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ts.split(".") if p.isdigit())


def _error_of(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "unknown_error")
    return "unexpected_response"


class ItemContext:
    """What a handler uses to talk to Slack for one item, with idempotency and error mapping built in."""

    def __init__(self, worker: OutboxWorker, item: OutboxItem) -> None:
        self.worker = worker
        self.deps = worker.deps
        self.slack = worker.slack
        self.item = item
        self.result: dict[str, Any] = dict(item.result)
        self.parts: dict[str, str] = dict(self.result.get("parts") or {})
        self.result["parts"] = self.parts
        self._found: dict[tuple[str, str | None], dict[str, str]] = {}
        self.cache: dict[str, Any] = {}
        """Rows and answers handlers keep for the rest of this attempt (so they are read once)."""
        self.writes: list[Executable] = []

    def write_with_outcome(self, statement: Executable) -> None:
        """Execute statement in the transaction that records this attempt's outcome (done or retry)."""
        self.writes.append(statement)

    # ---- calls -------------------------------------------------------------------------------------

    async def call(self, method: str, channel: str | None, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Slack call, mapping failures onto Retry / SlackCallFailed."""
        if channel:
            await self.worker.wait_cooldown(channel)
        try:
            return await fn()
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", 200)
            error = _error_of(exc)
            if status == 429 or error == "ratelimited":
                delay = _retry_after(exc)
                if channel:
                    self.worker.cool_down(channel, delay)
                raise Retry(f"{method}: rate limited for {delay:g}s", delay=delay) from exc
            if status >= 500 or error in _TRANSIENT_ERRORS:
                raise Retry(f"{method}: HTTP {status} {error}", uncertain=True) from exc
            raise SlackCallFailed(error, method) from exc
        except (TimeoutError, aiohttp.ClientError, httpx.TransportError, OSError) as exc:
            raise Retry(f"{method}: {type(exc).__name__}: {exc}", uncertain=True) from exc

    def _metadata(self, part: str) -> dict[str, Any]:
        return {"event_type": OUTBOX_EVENT, "event_payload": {"outbox_id": self.item.id, "part": part}}

    async def _messages(self, channel: str, thread_ts: str | None) -> list[dict[str, Any]]:
        """Recent messages with their metadata: a thread's replies, or the channel's history."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(20 if thread_ts else 5):
            resp = await self.call("conversations.replies" if thread_ts else "conversations.history", channel,
                                   self._page_fetcher(channel, thread_ts, cursor))
            out.extend(resp.get("messages") or [])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not resp.get("has_more") or not cursor:
                break
        return out

    def _page_fetcher(self, channel: str, thread_ts: str | None, cursor: str | None
                      ) -> Callable[[], Awaitable[Any]]:
        def fetch() -> Awaitable[Any]:
            if thread_ts:
                return self.slack.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                        limit=200, cursor=cursor)
            return self.slack.conversations_history(channel=channel, include_all_metadata=True, limit=200,
                                                    cursor=cursor)

        return fetch

    async def find_posted(self, channel: str, thread_ts: str | None) -> dict[str, str]:
        """Parts of this item already in Slack (part -> ts), found by their metadata."""
        key = (channel, thread_ts)
        if key not in self._found:
            found: dict[str, str] = {}
            for m in await self._messages(channel, thread_ts):
                meta = m.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == OUTBOX_EVENT and payload.get("outbox_id") == self.item.id:
                    part, ts = str(payload.get("part")), str(m["ts"])
                    if part not in found or _ts_key(ts) < _ts_key(found[part]):
                        found[part] = ts
            self._found[key] = found
        return self._found[key]

    async def post(self, channel: str, post: Post, *, thread_ts: str | None = None, part: str = "0",
                   reply_broadcast: bool = False) -> str:
        """Post one message (once per item and part, across attempts and processes); returns its ts."""
        if part in self.parts:
            return self.parts[part]
        if self.item.uncertain:
            found = (await self.find_posted(channel, thread_ts)).get(part)
            if found:
                self.parts[part] = found
                return found
        args: dict[str, Any] = {"channel": channel, "text": post.text, "metadata": self._metadata(part),
                                "unfurl_links": False, "unfurl_media": False}
        if post.blocks:
            args["blocks"] = post.blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
            if reply_broadcast:
                args["reply_broadcast"] = True
        if post.username:
            args["username"] = post.username
        if post.icon_emoji:
            args["icon_emoji"] = post.icon_emoji
        try:
            resp = await self.call("chat.postMessage", channel, lambda: self.slack.chat_postMessage(**args))
        except SlackCallFailed as exc:
            if exc.error not in _FORMAT_ERRORS:
                raise
            # Slack refused the layout: the words matter more than the blocks, so send them plainly.
            log.warning("outbox %s: Slack refused the post (%s); sending plain text", self.item.id, exc.error)
            args.pop("blocks", None)
            args["text"] = post.text[:39_000]
            try:
                resp = await self.call("chat.postMessage", channel, lambda: self.slack.chat_postMessage(**args))
            except SlackCallFailed as again:
                if again.error in _FORMAT_ERRORS:
                    raise GiveUp(f"Slack refused the message: {again.error}") from again
                raise
        ts = str(resp["ts"])
        self.parts[part] = ts
        return ts

    async def update_message(self, channel: str, ts: str, post: Post) -> None:
        """Replace a message's text and blocks (idempotent by nature)."""
        args: dict[str, Any] = {"channel": channel, "ts": ts, "text": post.text, "blocks": post.blocks or []}
        await self.call("chat.update", channel, lambda: self.slack.chat_update(**args))

    async def react(self, channel: str, ts: str, name: str) -> None:
        """Add a reaction; one already there counts as done."""
        try:
            await self.call("reactions.add", channel,
                            lambda: self.slack.reactions_add(channel=channel, timestamp=ts, name=name))
        except SlackCallFailed as exc:
            if exc.error != "already_reacted":
                raise

    async def unreact(self, channel: str, ts: str, name: str) -> None:
        """Remove the bot's reaction; one that is not there counts as done."""
        try:
            await self.call("reactions.remove", channel,
                            lambda: self.slack.reactions_remove(channel=channel, timestamp=ts, name=name))
        except SlackCallFailed as exc:
            if exc.error != "no_reaction":
                raise

    async def upload(self, channel: str, thread_ts: str | None, data: bytes, filename: str, *,
                     title: str | None = None, part: str = "file") -> str:
        """Upload a file into a channel or thread once per item and part; returns the file id."""
        if part in self.parts:
            return self.parts[part]
        pending: dict[str, str] = self.result.setdefault("pending_files", {})
        if part in pending:
            file_id = pending[part]
            try:
                info = await self.call("files.info", channel, lambda: self.slack.files_info(file=file_id))
                shares = (info.get("file") or {}).get("shares") or {}
                if any(channel in group for group in shares.values()):
                    self.parts[part] = file_id
                    pending.pop(part, None)
                    return file_id
            except SlackCallFailed:
                pass  # gone or never completed: upload afresh
            pending.pop(part, None)
        got = await self.call("files.getUploadURLExternal", None, lambda: self.slack.files_getUploadURLExternal(
            filename=filename, length=len(data)))
        file_id, upload_url = str(got["file_id"]), str(got["upload_url"])
        try:
            async with httpx.AsyncClient(timeout=self.worker.upload_timeout) as http:
                resp = await http.post(upload_url, content=data,
                                       headers={"Content-Type": "application/octet-stream"})
        except httpx.HTTPError as exc:
            raise Retry(f"file upload: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise Retry(f"file upload: HTTP {resp.status_code}")
        # Known before completing: if completion's answer is lost, the next attempt asks Slack about it.
        pending[part] = file_id
        await self.worker.save_progress(self.item.id, self.result, self.item)
        files: list[dict[str, str | None]] = [{"id": file_id, "title": title or filename}]
        try:
            await self.call("files.completeUploadExternal", channel, lambda: self.slack.files_completeUploadExternal(
                files=files, channel_id=channel, thread_ts=thread_ts))
        except Retry:
            raise
        except SlackCallFailed:
            pending.pop(part, None)
            raise
        pending.pop(part, None)
        self.parts[part] = file_id
        return file_id

    # ---- threads -----------------------------------------------------------------------------------

    async def thread_for(self, conversation_id: int) -> Thread:
        """The conversation's Slack thread, posting its parent message first when there is none yet."""
        if self.worker._ensure_thread is None:
            raise GiveUp("this outbox worker was built without a thread maker (see bot.app.slack_component)")
        return await self.worker._ensure_thread(self, conversation_id)

    async def find_thread_parent(self, channel: str, conversation_id: int) -> str | None:
        """A parent posted by an attempt whose answer was lost, found by its metadata."""
        found = []
        for m in await self._messages(channel, None):
            meta = m.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == THREAD_EVENT and payload.get("conversation_id") == conversation_id:
                found.append(str(m["ts"]))
        # Should there ever be two, the first one posted is the thread people have seen longest.
        return min(found, key=_ts_key) if found else None

    async def post_parent(self, channel: str, post: Post, conversation_id: int) -> str:
        """Post a thread parent tagged with its conversation (so a lost answer can be found again)."""
        args: dict[str, Any] = {
            "channel": channel, "text": post.text, "blocks": post.blocks, "unfurl_links": False,
            "metadata": {"event_type": THREAD_EVENT, "event_payload": {"conversation_id": conversation_id}},
        }
        resp = await self.call("chat.postMessage", channel, lambda: self.slack.chat_postMessage(**args))
        return str(resp["ts"])


@dataclass
class _Cooldowns:
    until: dict[str, float] = field(default_factory=dict)


def _without_retries(client: AsyncWebClient) -> AsyncWebClient:
    """A copy of the Slack client that never re-sends by itself.

    slack_sdk's default handlers re-send a request whose connection dropped, which can post a message
    twice; the outbox retries on its own terms, after checking whether the first attempt landed.
    """
    return AsyncWebClient(token=client.token, base_url=client.base_url, timeout=client.timeout,
                          session=client.session, retry_handlers=[])


_WORKERS: dict[int, OutboxWorker] = {}


def wake_outbox(deps: Deps) -> None:
    """Tell this process's outbox worker (if it runs) that new rows were committed."""
    worker = _WORKERS.get(id(deps))
    if worker is not None:
        worker.wake()


class OutboxWorker:
    """Delivers `slack_outbox` rows; one per process, any number of processes per database."""

    def __init__(self, deps: Deps, *, concurrency: int = 4, lease: float = 120.0, poll_interval: float = 1.0,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0, slack: AsyncWebClient | None = None,
                 upload_timeout: float = 120.0, claim_batch: int | None = None,
                 ensure_thread: Callable[[ItemContext, int], Awaitable[Thread]] | None = None,
                 owner: Callable[[], int | None] | None = None) -> None:
        self.deps = deps
        # This process's worker id: claims are bound to its liveness (taken over once it is silent) and fenced.
        self._owner = owner or (lambda: None)
        # What a thread's parent says is the bridge's business, handed in by the wiring (bot.app).
        self._ensure_thread = ensure_thread
        self.slack = slack or _without_retries(deps.slack)
        self.concurrency = max(1, concurrency)
        self.lease = timedelta(seconds=lease)
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.upload_timeout = upload_timeout
        self._wake = asyncio.Event()
        self._cool = _Cooldowns()
        self._tasks: set[asyncio.Task[None]] = set()
        self.claim_batch = max(self.concurrency, claim_batch or self.concurrency * 4)
        # Claimed but not started: (item, loop time of its claim); one per thread, in claim order.
        self._queue: collections.deque[tuple[OutboxItem, float]] = collections.deque()

    # ---- public ------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now rather than at the next poll (called after new rows are committed)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and deliver until cancelled."""
        _WORKERS[id(self.deps)] = self
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._start_queued()
                want = self.claim_batch - len(self._tasks)
                claimed: list[OutboxItem] = []
                if len(self._tasks) < self.concurrency:  # hence nothing queued
                    try:
                        claimed = await self.claim(want)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("slack outbox: claiming failed; retrying")
                    now = loop.time()
                    self._queue.extend((item, now) for item in claimed)
                    await self._start_queued()
                if claimed and len(claimed) == want and len(self._tasks) < self.concurrency:
                    continue  # there may be more heads ready
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
                self._wake.clear()
        finally:
            if _WORKERS.get(id(self.deps)) is self:
                del _WORKERS[id(self.deps)]
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            waiting = [item for item, _ in self._queue]
            self._queue.clear()
            if waiting:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.unclaim(waiting))

    async def _start_queued(self) -> None:
        """Start claimed items while there are free slots; hand back those whose lease has worn thin."""
        loop = asyncio.get_running_loop()
        stale: list[OutboxItem] = []
        while self._queue and len(self._tasks) < self.concurrency:
            item, claimed_at = self._queue.popleft()
            if loop.time() - claimed_at > self.lease.total_seconds() / 4:
                stale.append(item)  # too little lease left to be sure no other process takes it meanwhile
                continue
            task = asyncio.create_task(self._deliver(item), name=f"slack-outbox-{item.id}")
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        if stale:
            try:
                await self.unclaim(stale)
            except Exception:
                log.warning("slack outbox: cannot hand back %d unstarted items; their leases will expire",
                            len(stale), exc_info=True)

    def backoff(self, attempts: int) -> float:
        """Exponential delay for the n-th failed attempt, capped, with a little jitter."""
        delay = min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempts - 1)))
        return delay * (0.9 + 0.2 * random.random())

    # ---- rate limits -------------------------------------------------------------------------------

    def cool_down(self, channel: str, seconds: float) -> None:
        """Slack said wait: hold every post to this channel (from this process) for seconds."""
        until = asyncio.get_running_loop().time() + seconds
        self._cool.until[channel] = max(until, self._cool.until.get(channel, 0.0))

    async def wait_cooldown(self, channel: str) -> None:
        remaining = self._cool.until.get(channel, 0.0) - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        if remaining > _MAX_COOLDOWN_WAIT:
            raise Retry(f"channel {channel} rate limited", delay=remaining)
        await asyncio.sleep(remaining)

    # ---- the table ---------------------------------------------------------------------------------

    async def claim(self, limit: int, now: datetime | None = None) -> list[OutboxItem]:
        """Lease up to limit thread heads that are due and whose thread has nothing in flight."""
        now = now or utcnow()
        o = SlackOutbox
        earlier = aliased(SlackOutbox)
        busy = aliased(SlackOutbox)
        is_head = ~exists().where(
            earlier.thread_key == o.thread_key, earlier.done_at.is_(None),
            or_(earlier.order_ts < o.order_ts, and_(earlier.order_ts == o.order_ts, earlier.id < o.id)),
        )
        thread_idle = ~exists().where(
            busy.thread_key == o.thread_key, busy.done_at.is_(None), busy.claimed_until.is_not(None),
            busy.claimed_until >= now,
        )
        due = or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now)
        async with self.deps.sessions() as session, session.begin():
            if session.bind.dialect.name == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLAIM_LOCK_KEY})
            heads = (await session.execute(
                select(o.id, o.owner_id).where(o.done_at.is_(None), is_head, thread_idle, due)
                .order_by(o.order_ts, o.id).limit(limit)
            )).all()
            if not heads:
                return []
            ids = [h.id for h in heads]
            # A claim that never settled (its process died, or was taken over) may have posted anything.
            unsettled = {h.id for h in heads if h.owner_id is not None}
            claimable = or_(o.claimed_until.is_(None), o.claimed_until < now)
            until = now + self.lease
            owner = self._owner()
            owned = claim_values(_TABLE, owner) if owner is not None else {"owner_id": None}
            rows = (await session.execute(
                update(o).where(o.id.in_(ids), o.done_at.is_(None), claimable)
                .values(claimed_until=until, attempts=o.attempts + 1, **owned)
                .returning(o.id, o.thread_key, o.kind, o.payload, o.conversation_id, o.attempts, o.result, o.fence)
                .execution_options(synchronize_session=False)
            )).all()
            items = []
            for row in rows:
                result = dict(row.result or {})
                # A previous attempt that recorded no outcome (crash, expired lease) may have posted.
                uncertain = row.attempts > 1 and (row.id in unsettled or bool(result.get("uncertain", True)))
                items.append(OutboxItem(id=row.id, thread_key=row.thread_key, kind=row.kind,
                                        payload=dict(row.payload or {}), conversation_id=row.conversation_id,
                                        attempts=row.attempts, result=result, uncertain=uncertain,
                                        claimed_until=until,
                                        fence=Fence(owner, row.fence) if owner is not None else None))
            order = {item_id: i for i, item_id in enumerate(ids)}
            return sorted(items, key=lambda i: order[i.id])

    async def unclaim(self, items: Sequence[OutboxItem]) -> None:
        """Hand back claimed items that were never started, as if this claim had not happened."""
        o = SlackOutbox
        async with self.deps.sessions() as session, session.begin():
            for item in items:
                await session.execute(
                    update(o).where(o.id == item.id, o.done_at.is_(None), o.claimed_until == item.claimed_until,
                                    *self._held(item))
                    .values(claimed_until=None, attempts=o.attempts - 1, owner_id=None)
                    .execution_options(synchronize_session=False))

    @staticmethod
    def _held(item: OutboxItem) -> list[Any]:
        """The condition that this claim still holds the row (none for a claim without an owner)."""
        return [held_by(_TABLE, item.fence)] if item.fence is not None else []

    async def save_progress(self, item_id: int, result: Mapping[str, Any], item: OutboxItem | None = None) -> None:
        """Record an item's progress mid-attempt (e.g. an upload about to be completed)."""
        async with self.deps.sessions() as session, session.begin():
            await session.execute(update(SlackOutbox).where(SlackOutbox.id == item_id,
                                                            *(self._held(item) if item else []))
                                  .values(result={**result, "uncertain": True}))

    async def _complete(self, item: OutboxItem, result: Mapping[str, Any], error: str | None = None,
                        writes: Sequence[Executable] = ()) -> None:
        await self._settle(item, lambda: {
            "done_at": utcnow(), "claimed_until": None, "next_attempt_at": None, "result": dict(result),
            "last_error": error[:4000] if error else None, "owner_id": None}, writes=writes)

    async def _release(self, item: OutboxItem, delay: float, uncertain: bool, error: str,
                       result: Mapping[str, Any], *, retry: bool = True, writes: Sequence[Executable] = ()
                       ) -> None:
        await self._settle(item, lambda: {
            "claimed_until": None, "next_attempt_at": utcnow() + timedelta(seconds=delay),
            "result": {**result, "uncertain": uncertain}, "last_error": error[:4000], "owner_id": None},
            retry=retry, writes=writes)

    async def _settle(self, item: OutboxItem, values: Callable[[], dict[str, Any]], *, retry: bool = True,
                      writes: Sequence[Executable] = ()) -> None:
        """Write an item's outcome; while the database is unreachable, keep trying (unless retry is False).

        Until the outcome is written the item stays leased and its whole thread waits behind it: giving up
        would hold the conversation for the rest of the lease (minutes) after a database outage of seconds.
        """
        wait = 0.5
        while True:
            try:
                async with self.deps.sessions() as session, session.begin():
                    # What the attempt learnt (e.g. a message's Slack ts) commits with its outcome, or neither.
                    for statement in writes:
                        await session.execute(statement)
                    await settle(session, update(_TABLE).where(_TABLE.c.id == item.id, *self._held(item))
                                 .values(**values()), expected=1 if item.fence is not None else 0)
                return
            except FencedOut:
                # Taken over while this process was silent: the new claimant checks Slack before posting and
                # records the outcome; what this attempt learnt is rolled back with its settle.
                log.warning("slack outbox %s was taken over by another process; its outcome is theirs", item.id)
                return
            except Exception:
                if not retry:
                    raise
                log.warning("slack outbox %s: cannot record its outcome yet; retrying in %.1fs", item.id, wait,
                            exc_info=True)
                await asyncio.sleep(wait)
                wait = min(_SETTLE_RETRY_CAP, wait * 2)

    # ---- one item ----------------------------------------------------------------------------------

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _deliver(self, item: OutboxItem) -> None:
        ctx = ItemContext(self, item)
        handler = OUTBOX_KINDS.get(item.kind)
        try:
            if handler is None:
                # Perhaps a newer process knows it (rolling upgrade): keep the row, try slowly.
                raise Retry(f"no handler for outbox kind {item.kind!r}", delay=self.backoff_cap)
            await handler(ctx)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(item, 0.0, True, "interrupted", ctx.result,
                                                   retry=False, writes=ctx.writes))
            raise
        except Retry as r:
            delay = r.delay if r.delay is not None else self.backoff(item.attempts)
            log.info("slack outbox %s (%s) retry in %.1fs: %s", item.id, item.kind, delay, r)
            self.deps.metrics.slack_posts.labels(item.kind, "retry").inc()
            await self._release(item, delay, r.uncertain, str(r), ctx.result, writes=ctx.writes)
            return
        except SlackCallFailed as exc:
            # Operator-fixable (membership, token) or unknown: keep it and retry slowly; never drop it.
            level = logging.ERROR if exc.error in _CONFIG_ERRORS else logging.WARNING
            log.log(level, "slack outbox %s (%s): %s", item.id, item.kind, exc)
            self.deps.metrics.slack_posts.labels(item.kind, "retry").inc()
            await self._release(item, self.backoff(item.attempts), False, str(exc), ctx.result, writes=ctx.writes)
            return
        except GiveUp as exc:
            log.error("slack outbox %s (%s) given up: %s", item.id, item.kind, exc)
            self.deps.metrics.slack_posts.labels(item.kind, "given_up").inc()
            await self._complete(item, ctx.result, str(exc), writes=ctx.writes)
            return
        except Exception as exc:
            log.exception("slack outbox %s (%s) failed", item.id, item.kind)
            self.deps.metrics.slack_posts.labels(item.kind, "retry").inc()
            await self._release(item, self.backoff(item.attempts), True, repr(exc), ctx.result, writes=ctx.writes)
            return
        await self._complete(item, ctx.result, writes=ctx.writes)
        self.deps.metrics.slack_posts.labels(item.kind, "ok").inc()


__all__ = ["OUTBOX_EVENT", "OUTBOX_KINDS", "THREAD_EVENT", "GiveUp", "ItemContext", "OutboxItem",
           "OutboxWorker", "Retry", "SlackCallFailed", "Thread", "outbox_kind", "wake_outbox"]
