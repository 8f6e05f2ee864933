"""Apply a claimed batch of deliveries in one transaction.

Status-only deliveries (nearly all of a campaign's traffic) and plain customer messages (most live traffic)
are applied set-based; every other delivery runs its handlers inside its own savepoint, so one that fails is
rolled back alone and keeps its error and retry time while the rest of the batch commits. A set-based write
that fails fails the batch's transaction: the worker then applies each delivery in a transaction of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import message_batch
from bot.bridge.meta_events import EventContext, apply_event
from bot.core.identity_hash import optional_salt
from bot.meta import events as ev
from bot.meta.parser import event_type_of, parse_delivery
from scheduler.campaigns.unknown_store import CallbackReport, note_callbacks
from storage import progress_refresh, webhook_logs
from storage.contact_batch import ConversationKeys, ensure_conversations
from storage.status_batch import apply_status_batch, runs_of
from storage.status_fold import StatusRow

log = logging.getLogger(__name__)

# PostgreSQL's deadlock_detected and serialization_failure: the batch is retried, nobody is blamed.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


@dataclass
class Parsed:
    """A claimed delivery and its events (or why it could not be parsed)."""

    item: webhook_logs.ClaimedLog
    event_type: str
    events: list[ev.WebhookEvent] = field(default_factory=list)
    error: Exception | None = None


def parse(item: webhook_logs.ClaimedLog) -> Parsed:
    """Parse one stored delivery; a parser failure is kept on the result, not raised."""
    try:
        payload = json.loads(item.raw_body)
    except ValueError:
        payload = None
    # The type the ack path stored with it, else read off the payload (a second walk of it).
    parsed = Parsed(item=item, event_type=item.event_type or event_type_of(payload))
    try:
        parsed.events = list(parse_delivery(payload))
    except Exception as exc:
        parsed.error = exc
    return parsed


def statuses_only(events: list[ev.WebhookEvent]) -> bool:
    """Whether the delivery carries status reports and nothing else (`status_rows` gives them)."""
    return bool(events) and all(isinstance(e, ev.StatusUpdate) for e in events)


def status_rows(events: list[ev.WebhookEvent]) -> list[StatusRow] | None:
    """The delivery's status reports, or None when it carries anything else (it is applied on its own)."""
    if not statuses_only(events):
        return None
    rows = []
    for e in events:
        assert isinstance(e, ev.StatusUpdate)
        err = e.errors[0] if e.errors else None
        pricing = None
        if e.pricing is not None:
            pricing = {"billable": e.pricing.billable, "pricing_model": e.pricing.pricing_model,
                       "category": e.pricing.category, "type": e.pricing.type}
        rows.append(StatusRow(wamid=e.wamid, status=e.status, wa_timestamp=e.timestamp,
                              recipient_id=e.recipient_id, error_code=err.code if err else None,
                              error_title=err.title if err else None, pricing=pricing))
    return rows


def callback_reports(events: list[ev.WebhookEvent]) -> list[CallbackReport]:
    """The status reports that carry `biz_opaque_callback_data` (campaign sends name their recipient)."""
    out = []
    for e in events:
        if isinstance(e, ev.StatusUpdate) and e.biz_opaque_callback_data:
            err = e.errors[0] if e.errors else None
            out.append(CallbackReport(e.biz_opaque_callback_data, e.wamid, e.status, e.recipient_id,
                                      (err.code, err.title) if err else (None, None),
                                      phone_number_id=e.envelope.phone_number_id))
    return out


@dataclass
class BatchOutcome:
    """Which deliveries were applied and which failed (with their error), plus the campaign runs touched."""

    applied: list[Parsed] = field(default_factory=list)
    failed: list[tuple[Parsed, Exception]] = field(default_factory=list)
    run_ids: set[int] = field(default_factory=set)


async def apply_batch(session: AsyncSession, ctx: EventContext, batch: list[Parsed],
                      retry_delay: Callable[[int], timedelta]) -> BatchOutcome:
    """Apply batch inside the caller's transaction; failures are recorded on their logs, not raised."""
    outcome = BatchOutcome()
    statuses: list[StatusRow] = []
    callbacks: list[CallbackReport] = []
    handled_statuses: set[str] = set()
    plain, rest = split_plain(ctx, batch)
    if plain:
        moved: set[str] = set()
        convs = await _prepare_conversations(session, ctx, plain, moved)
        if moved:
            # A customer's former number (a late message after a number change): the handlers find the contact
            # by any of its ids; the set-based path knows contacts by their current number only.
            rest = [p for p, found in plain if any(m.wa_id in moved for m in found)] + rest
            plain = [(p, found) for p, found in plain if not any(m.wa_id in moved for m in found)]
        # No savepoint: if the set-based write fails, the batch's transaction fails with it and the worker
        # applies each delivery on its own (the savepoint's two round trips were paid by every batch).
        await message_batch.store_plain(session, ctx, [m for _, found in plain for m in found], convs)
        outcome.applied.extend(p for p, _ in plain)
    for parsed in rest:
        if parsed.error is not None:
            await _keep_failure(session, outcome, parsed, parsed.error, retry_delay)
            continue
        rows = status_rows(parsed.events)
        if rows is not None:
            statuses.extend(rows)
            callbacks.extend(callback_reports(parsed.events))
            ctx.count(ev.StatusUpdate.__name__, len(rows))
            outcome.applied.append(parsed)
            continue
        try:
            async with session.begin_nested():
                for event in parsed.events:
                    await apply_event(session, ctx, event)
        except DBAPIError as exc:
            if _transient(exc):
                raise  # a deadlock or serialization failure is no fault of this delivery: retry the batch
            log.warning("webhook log %s failed (attempt %s): %r", parsed.item.id, parsed.item.attempts, exc,
                        exc_info=True)
            await _keep_failure(session, outcome, parsed, exc, retry_delay)
            continue
        except Exception as exc:
            log.warning("webhook log %s failed (attempt %s): %r", parsed.item.id, parsed.item.attempts, exc,
                        exc_info=True)
            await _keep_failure(session, outcome, parsed, exc, retry_delay)
            continue
        outcome.applied.append(parsed)
        handled_statuses.update(e.wamid for e in parsed.events if isinstance(e, ev.StatusUpdate))
    if callbacks:
        # First: a recipient whose send's answer was lost gets its wamid, so the statuses below reach it.
        await note_callbacks(session, callbacks)
    if statuses:
        result = await apply_status_batch(session, statuses)
        if result.duplicates:
            ctx.stats["duplicate_status"] = ctx.stats.get("duplicate_status", 0) + result.duplicates
        outcome.run_ids = result.run_ids
    if handled_statuses:  # statuses that came with messages went through their handler
        outcome.run_ids |= await runs_of(session, handled_statuses)
    if outcome.run_ids:
        # Counters moved: the progress message follows, also after the run's final report.
        await progress_refresh.refresh(session, outcome.run_ids, f"statuses:{batch[0].item.id}")
    await webhook_logs.mark_processed_many(session, [p.item.id for p in outcome.applied],
                                           [p.item.fence for p in outcome.applied])
    return outcome


def split_plain(ctx: EventContext, batch: list[Parsed]
                ) -> tuple[list[tuple[Parsed, list[message_batch.PlainMessage]]], list[Parsed]]:
    """The deliveries the set-based path can take, and the rest, for their handlers in claim order.

    The set-based write happens before any handler runs, so it takes plain deliveries only up to the first
    delivery about a customer that is not plain (a number change, a merge of two ids, an opt-out): what
    follows it may depend on it, and goes through the handlers after it, in order."""
    plain: list[tuple[Parsed, list[message_batch.PlainMessage]]] = []
    rest: list[Parsed] = []
    blocked = False
    for parsed in batch:
        found = None if blocked or parsed.error is not None else message_batch.plain_messages(ctx, parsed.events)
        if found:
            plain.append((parsed, found))
            continue
        rest.append(parsed)
        # Statuses and failed parses never change who a customer is: the plain ones after them still qualify.
        if parsed.error is None and not statuses_only(parsed.events):
            blocked = True
    return plain, rest


def _transient(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in TRANSIENT_SQLSTATES


async def _prepare_conversations(session: AsyncSession, ctx: EventContext,
                                 plain: list[tuple[Parsed, list[message_batch.PlainMessage]]], moved: set[str]
                                 ) -> dict[tuple[int, str], ConversationKeys]:
    """Find the plain messages' contacts and conversations, creating the new ones first, in one global order
    (see contact_batch); numbers a contact held before its current one are left out and added to moved.

    Only plain ones: the others' handlers resolve identities, merges and spill-over channels themselves."""
    wanted: set[tuple[int, str, str]] = set()
    names: dict[str, str] = {}
    for _, messages in plain:
        for m in messages:
            cfg = ctx.settings.channel_by_phone_number_id(m.event.envelope.phone_number_id or "")
            if cfg is None or not m.wa_id:
                continue
            if isinstance(m.event, ev.InboundMessage) and m.event.profile_name:
                names.setdefault(m.wa_id, m.event.profile_name)
            wanted.add((m.channel_id, m.wa_id, cfg.slack_channel))
    return await ensure_conversations(session, wanted, names, ctx.teams(), optional_salt(ctx.settings), moved=moved)


async def _keep_failure(session: AsyncSession, outcome: BatchOutcome, parsed: Parsed, exc: Exception,
                        retry_delay: Callable[[int], timedelta]) -> None:
    outcome.failed.append((parsed, exc))
    await webhook_logs.keep_failure(session, parsed.item.id, repr(exc), retry_delay(parsed.item.attempts),
                                    fence=parsed.item.fence)
