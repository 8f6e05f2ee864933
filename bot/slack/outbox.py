"""The ordered, durable Slack outbox worker: rows of `slack_outbox` delivered to Slack in order, once.

Rules:
- Per `thread_key` only the head item is ever in flight (bot.slack.outbox_queue); different threads proceed
  in parallel, up to `concurrency`. One claim leases up to `claim_batch` heads (default 4 times concurrency)
  to spread its cost; those not started yet wait in this process, each still the only item of its thread in
  flight, and go back to the table unstarted if they wait too long or the worker stops.
- Every Slack call first waits for its slot in the pacer (bot.slack.pacer), which follows Slack's published
  limits per method and channel; a busy channel serves its items by kind priority.
- What a failed call leads to is decided by bot.slack.outbox_policy: 429 honours Retry-After on that channel
  only; 5xx, timeouts and connection errors back off exponentially and are retried for ever (nothing is lost
  while Slack is down, and a restart resumes from the table); a format error is sent once as plain text,
  then given up.
- Nothing is doubled: every post carries message metadata naming its outbox item; when a previous attempt's
  outcome is unknown (timeout, 5xx, expired lease) the thread or channel is searched for that metadata
  before posting again. File uploads record their file id before completing, and are checked the same way.

Kinds are handled by the `kinds` mapping the components hand to the worker, one handler registered per kind's
class (bot.slack.outbox_handlers; the kinds themselves are storage.outbox_kinds). A handler's view of its
attempt is bot.slack.outbox_context.ItemContext; the table's SQL, the failure policy and the pacing live in
their own modules.
"""


from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.loops import SLACK_OUTBOX, Wake, forever
from bot.deps import Deps
from bot.slack.backlog import estimate, owed_per_channel
from bot.slack.outbox_context import OUTBOX_EVENT, THREAD_EVENT, ItemContext
from bot.slack.outbox_errors import Deferred, GiveUp, Retry, SlackCallFailed, Thread
from bot.slack.outbox_handlers import Handler, Kinds
from bot.slack.outbox_policy import COALESCED_KINDS, TURN_FIRST, Action, Backoff, decide, priority_of
from bot.slack.outbox_queue import OutboxItem, OutboxQueue
from bot.slack.pacer import URGENT_BELOW, Pacer
from storage.workspaces import owed_per_workspace, paused_teams, states, top_labels

log = logging.getLogger(__name__)

_MAX_HELD_WAIT = 1.0  # many workspaces, or background work: the longest an item holds an outbox slot for its turn
_MAX_PACED_WAIT = 30.0  # a paused channel holds an item this long at most; beyond, it goes back to the table
_PREFETCH_FRESH = 1.0  # rows read with a claim serve an item that starts within this many seconds of it
WORKSPACE_LABELS = 20  # /metrics names this many workspaces (those owed most); the rest are "other"
PAUSED_REFRESH = 2.0  # seconds between reads of which workspaces wait for a reinstall

def _without_retries(client: AsyncWebClient) -> AsyncWebClient:
    """A copy of the Slack client that never re-sends by itself.

    slack_sdk's default handlers re-send a request whose connection dropped, which can post a message
    twice; the outbox retries on its own terms, after checking whether the first attempt landed.
    """
    return AsyncWebClient(token=client.token, base_url=client.base_url, timeout=client.timeout,
                          session=client.session, retry_handlers=[])


def wake_outbox(deps: Deps) -> None:
    """Tell this process's outbox worker (if it runs) that new rows were committed."""
    deps.wakes.wake(SLACK_OUTBOX)


class OutboxWorker:
    """Delivers `slack_outbox` rows; one per process, any number of processes per database."""

    def __init__(self, deps: Deps, kinds: Kinds, *, concurrency: int = 8, lease: float = 120.0,
                 poll_interval: float = 1.0, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 slack: AsyncWebClient | None = None, upload_timeout: float = 120.0,
                 claim_batch: int | None = None, pacer: Pacer | None = None,
                 backlog_interval: float = 10.0,
                 ensure_thread: Callable[[ItemContext, int], Awaitable[Thread]] | None = None,
                 owner: Callable[[], int | None] | None = None,
                 guard: Callable[[], Callable[[], bool]] | None = None,
                 prefetch: Callable[[Deps, Sequence[OutboxItem]], Awaitable[None]] | None = None) -> None:
        self.deps = deps
        self.kinds: Kinds = dict(kinds)
        # What a thread's parent says is the bridge's business, handed in by the wiring (bot.app).
        self._ensure_thread = ensure_thread
        self._prefetch = prefetch  # reads what a claim's items need in one query (bot.bridge.message_load)
        self.slack = slack or _without_retries(deps.slack)
        self.concurrency = max(1, concurrency)
        self.lease = timedelta(seconds=lease)
        # `owner`: this process's worker id; claims are then bound to its liveness and fenced. `guard`: its
        # heartbeat's check that a claim is still this process's, taken at each claim.
        self.queue = OutboxQueue(deps.sessions, self.lease, owner, guard)
        self.pacer = pacer or Pacer()
        self.poll_interval = poll_interval
        self.backoff_policy = Backoff(backoff_base, backoff_cap)
        self.backoff_cap = backoff_cap
        self.upload_timeout = upload_timeout
        self._wake = Wake()  # set by Deps.wakes (SLACK_OUTBOX) and whenever a delivery ends
        self._tasks: set[asyncio.Task[None]] = set()  # deliveries under way, each holding a slot
        self._background: set[asyncio.Task[None]] = set()
        # Deliveries whose outcome is being written: their slot is free (their thread stays leased meanwhile, so
        # nothing else of it is claimed), and the next item need not wait for a batch of outcomes to commit.
        self._settling: set[asyncio.Task[None]] = set()
        self.background_slots = max(1, self.concurrency // 2)
        self._urgent_kinds = frozenset(k for k in self.kinds if priority_of(k) < URGENT_BELOW)
        self.claim_batch = max(self.concurrency, claim_batch or self.concurrency * 4)
        # Claimed but not started: (item, loop time of its claim); one per thread, in claim order.
        self._queue: collections.deque[tuple[OutboxItem, float]] = collections.deque()
        self.backlog_interval = backlog_interval
        self._backlog_at = float("-inf")
        self._backlog_channels: set[str] = set()
        self._workspace_labels: set[str] = set()
        self._paused: set[str] = set()  # workspaces without an installation: their items wait in the table
        self._paused_at = float("-inf")

    async def make_thread(self, ctx: ItemContext, conversation_id: int) -> Thread:
        """The conversation's Slack thread, made by the bridge's thread maker handed in by the wiring."""
        if self._ensure_thread is None:
            raise GiveUp("this outbox worker was built without a thread maker (see bot.app.slack_component)")
        return await self._ensure_thread(ctx, conversation_id)

    # ---- public ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and deliver until cancelled (woken by `Deps.wakes` when rows are committed)."""
        self.deps.wakes.listen(SLACK_OUTBOX, self._wake)
        try:
            await forever(self._turn, self.poll_interval, self._wake, doing="claiming",
                          monitor=self.deps.loop_health.loop("slack outbox", log))
        finally:
            self.deps.wakes.forget(SLACK_OUTBOX, self._wake)
            running = self._tasks | self._settling
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            waiting = [item for item, _ in self._queue]
            self._queue.clear()
            if waiting:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.unclaim(waiting))
            await self.queue.close()

    async def _turn(self) -> float | None:
        """Start what was claimed, claim more while slots are free; 0 when more heads may be ready at once."""
        loop = asyncio.get_running_loop()
        await self._start_queued()
        await self._publish_backlog(loop.time())
        # With a slot free, what is still queued is background work held back by its share of the slots: claim
        # only urgent items then, and no more than the free slots, so the queue never grows past one claim of
        # leases waiting to wear thin.
        held_back = bool(self._queue)
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return None  # a delivery that ends wakes the loop
        want = free if held_back else self.claim_batch - len(self._tasks)
        claimed = await self.claim(want, kinds=self._urgent_kinds if held_back else None)
        if claimed and self._prefetch is not None:
            try:
                await self._prefetch(self.deps, claimed)
            except Exception:  # each item reads its own rows instead
                log.warning("slack outbox: cannot read ahead for %d items", len(claimed), exc_info=True)
        now = loop.time()
        self._queue.extend((item, now) for item in claimed)
        await self._start_queued()
        if claimed and len(claimed) == want and len(self._tasks) < self.concurrency:
            return 0.0  # there may be more heads ready
        return None

    async def _start_queued(self) -> None:
        """Start claimed items while there are free slots; hand back those whose lease has worn thin."""
        loop = asyncio.get_running_loop()
        stale: list[OutboxItem] = []
        deferred: list[tuple[OutboxItem, float]] = []
        while self._queue and len(self._tasks) < self.concurrency:
            item, claimed_at = self._queue.popleft()
            if loop.time() - claimed_at > self.lease.total_seconds() / 4:
                stale.append(item)  # too little lease left to be sure no other process takes it meanwhile
                continue
            if item.cache and loop.time() - claimed_at > _PREFETCH_FRESH:
                item.cache.clear()  # read too long ago: the handler reads afresh
            background = priority_of(item.kind) >= URGENT_BELOW
            if background and len(self._background) >= self.background_slots:
                # Reactions, parent refreshes and progress updates wait in slow buckets (Slack's tiers):
                # they may fill only part of the slots, so a customer's message always finds one.
                deferred.append((item, claimed_at))
                continue
            task = asyncio.create_task(self._deliver(item), name=f"slack-outbox-{item.id}")
            self._tasks.add(task)
            if background:
                self._background.add(task)
            task.add_done_callback(self._finished)
        self._queue.extendleft(reversed(deferred))
        if stale:
            try:
                await self.unclaim(stale)
            except Exception:
                log.warning("slack outbox: cannot hand back %d unstarted items; their leases will expire",
                            len(stale), exc_info=True)

    async def _publish_backlog(self, now: float) -> None:
        """Refresh /metrics' per-channel backlog (from the table, so every process reports the same)."""
        if now - self._backlog_at < self.backlog_interval:
            return
        self._backlog_at = now
        try:
            async with self.deps.sessions() as session:
                lags = estimate(await owed_per_channel(session))
        except Exception:
            log.warning("slack outbox: cannot measure the backlog", exc_info=True)
            return
        seen = {lag.channel for lag in lags}
        for lag in lags:
            self.deps.metrics.slack_backlog.labels(lag.channel).set(lag.owed)
            self.deps.metrics.slack_backlog_wait.labels(lag.channel).set(lag.wait_seconds)
        for gone in self._backlog_channels - seen:  # drained: say so rather than repeat the last figure
            self.deps.metrics.slack_backlog.labels(gone).set(0)
            self.deps.metrics.slack_backlog_wait.labels(gone).set(0)
        self._backlog_channels |= seen
        if self.deps.many_workspaces:
            await self._publish_workspaces()

    async def _publish_workspaces(self) -> None:
        """/metrics per workspace, bounded: the WORKSPACE_LABELS most owed, the rest as "other"."""
        try:
            async with self.deps.sessions() as session:
                owed = top_labels(await owed_per_workspace(session), WORKSPACE_LABELS)
                by_state = await states(session)
        except Exception:
            log.warning("slack outbox: cannot count posts per workspace", exc_info=True)
            return
        metrics = self.deps.metrics
        for gone in self._workspace_labels - set(owed):
            metrics.workspace_backlog.labels(gone).set(0)
        for team, n in owed.items():
            metrics.workspace_backlog.labels(team).set(n)
        self._workspace_labels |= set(owed)
        for state in ("active", "uninstalled", "revoked"):
            metrics.workspaces.labels(state).set(by_state.get(state, 0))

    def backoff(self, attempts: int) -> float:
        """Exponential delay for the n-th failed attempt, capped, with a little jitter."""
        return self.backoff_policy.delay(attempts)

    async def paced(self, method: str, channel: str | None, priority: int, workspace: str = "") -> None:
        """Wait for the call's slot (per channel, or per workspace for Slack's method tiers); a long Retry-After
        pause sends the item back to the table instead."""
        paused = self.pacer.paused_for(method, channel, workspace)
        if paused > _MAX_PACED_WAIT:
            raise Retry(f"{method} on {channel or workspace} rate limited", delay=paused)
        if self.deps.many_workspaces or priority >= URGENT_BELOW:
            # A slot held while the call waits its turn is a slot a customer's message cannot have: another
            # workspace's, or anyone's while background calls queue for a slow bucket (a parent refresh's
            # chat.update goes about once a second per workspace). A call more than a moment away goes back to
            # the table until about its turn.
            ahead = self.pacer.ahead(method, channel, priority, workspace)
            if ahead > _MAX_HELD_WAIT:
                raise Deferred(f"{method} on {channel or workspace}: {ahead:.1f} s of calls ahead",
                               delay=self.pacer.defer(method, channel, priority, workspace))
        await self.pacer.acquire(method, channel, priority, workspace)

    # ---- the table ---------------------------------------------------------------------------------

    async def claim(self, limit: int, now: datetime | None = None, *,
                    kinds: Collection[str] | None = None) -> list[OutboxItem]:
        """Lease up to limit thread heads (of these kinds) that are due and whose thread has nothing in flight."""
        if not self.deps.many_workspaces:
            return await self.queue.claim(limit, now, kinds=kinds)
        await self._refresh_paused()
        return await self.queue.claim(limit, now, kinds=kinds, paused=self._paused, workspaces=True)

    async def _refresh_paused(self) -> None:
        """Which workspaces wait for a reinstall (read from the table, so every process agrees within 2 s)."""
        now = asyncio.get_running_loop().time()
        if now - self._paused_at < PAUSED_REFRESH:
            return
        async with self.deps.sessions() as session:
            self._paused = await paused_teams(session)
        self._paused_at = now

    def resume(self) -> None:
        """A workspace installed again: read the paused ones afresh and look for work now."""
        self._paused_at = float("-inf")
        self._wake.set()

    async def unclaim(self, items: Sequence[OutboxItem]) -> None:
        """Hand back claimed items that were never started, as if this claim had not happened."""
        await self.queue.unclaim(items)

    async def save_progress(self, item_id: int, result: Mapping[str, Any], item: OutboxItem | None = None) -> None:
        """Record an item's progress mid-attempt (e.g. an upload about to be completed)."""
        await self.queue.save_progress(item_id, result, item)

    # ---- one item ----------------------------------------------------------------------------------

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._background.discard(task)
        self._settling.discard(task)
        self._wake.set()

    def _free_slot(self) -> None:
        """The delivery's work is done but for writing its outcome: its slot goes to the next item now."""
        task = asyncio.current_task()
        if task is not None and task in self._tasks:
            self._tasks.discard(task)
            self._background.discard(task)
            self._settling.add(task)
            self._wake.set()

    async def _deliver(self, item: OutboxItem) -> None:
        ctx = ItemContext(self, item)
        handler = self.kinds.get(item.kind)
        q = self.queue
        try:
            if self.deps.many_workspaces:
                client = await self.deps.slack_for(item.slack_team)
                if client is None:
                    # Uninstalled since this process last read which workspaces are paused: nothing is tried with
                    # a dead token. Back to the table for about as long as that read lasts; after it the claims
                    # leave the item alone until the workspace installs again, and then it is due at once.
                    raise Retry(f"workspace {item.slack_team} has no installation", delay=PAUSED_REFRESH)
                ctx.slack = client
            if handler is None:
                # Perhaps a newer process knows it (rolling upgrade): keep the row, try slowly.
                raise Retry(f"no handler for outbox kind {item.kind!r}", delay=self.backoff_cap)
            if (method := TURN_FIRST.get(item.kind)) is not None:
                await ctx.turn(method)
            if item.kind in COALESCED_KINDS:
                # This delivery shows the state as it is now: the items owed after it have nothing left to do.
                folded = await q.fold_later(item)
                if folded:
                    self.deps.metrics.slack_posts.labels(item.kind, "superseded").inc(folded)
            await handler(ctx)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(q.release(item, 0.0, True, "interrupted", ctx.result,
                                               retry=False, writes=ctx.writes))
            raise
        except Retry as r:
            delay = r.delay if r.delay is not None else self.backoff(item.attempts)
            deferred = isinstance(r, Deferred)  # its turn, not trouble: every minute in a busy hour
            log.log(logging.DEBUG if deferred else logging.INFO, "slack outbox %s (%s) retry in %.1fs: %s",
                    item.id, item.kind, delay, r)
            self.deps.metrics.slack_posts.labels(item.kind, "deferred" if deferred else "retry").inc()
            # Once an attempt may have posted, later certain failures (a 429 on the lookup) must not forget it.
            self._free_slot()
            await q.release(item, delay, r.uncertain or item.uncertain, str(r), ctx.result, writes=ctx.writes)
            return
        except SlackCallFailed as exc:
            outcome = decide(exc.error, item.attempts, plain_text_tried=True, backoff=self.backoff_policy)
            if outcome.action is Action.GIVE_UP:
                log.error("slack outbox %s (%s) given up: %s", item.id, item.kind, exc)
                self.deps.metrics.slack_posts.labels(item.kind, "given_up").inc()
                self._free_slot()
                await q.complete(item, ctx.result, str(exc), writes=ctx.writes)
                return
            # Operator-fixable (membership, token) or unknown: keep it and retry slowly; never drop it.
            log.log(logging.ERROR if outcome.operator else logging.WARNING, "slack outbox %s (%s): %s",
                    item.id, item.kind, exc)
            self.deps.metrics.slack_posts.labels(item.kind, "retry").inc()
            self._free_slot()
            await q.release(item, outcome.delay, item.uncertain, str(exc), ctx.result, writes=ctx.writes)
            return
        except GiveUp as exc:
            log.error("slack outbox %s (%s) given up: %s", item.id, item.kind, exc)
            self.deps.metrics.slack_posts.labels(item.kind, "given_up").inc()
            self._free_slot()
            await q.complete(item, ctx.result, str(exc), writes=ctx.writes)
            return
        except Exception as exc:
            log.exception("slack outbox %s (%s) failed", item.id, item.kind)
            self.deps.metrics.slack_posts.labels(item.kind, "retry").inc()
            self._free_slot()
            await q.release(item, self.backoff(item.attempts), True, repr(exc), ctx.result, writes=ctx.writes)
            return
        self._free_slot()
        await q.complete(item, ctx.result, writes=ctx.writes)
        self.deps.metrics.slack_posts.labels(item.kind, "ok").inc()


__all__ = ["OUTBOX_EVENT", "THREAD_EVENT", "GiveUp", "Handler", "ItemContext", "Kinds", "OutboxItem",
           "OutboxWorker", "Retry", "SlackCallFailed", "Thread", "wake_outbox"]
