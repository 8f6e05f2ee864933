"""Managers' figures from message sequences: who is waiting, first-response times, replies per responder.

Pure functions only: the callers load stored messages (bot/ops/insights_store.py) and hand them over here.

Definitions (also in docs/insights.md):
- a *wait* starts with a customer's message when nobody has replied since their previous one, and ends with
  the first *reply*: a message sent from Slack or typed in the WhatsApp Business app on the phone (a
  Coexistence echo). Campaign sends, messages from other API senders, Slack notes, imported history, failed
  sends and customers' reactions neither start nor end a wait;
- the *first-response time* of a wait runs from its start to that reply; with business hours configured only
  the time inside them counts;
- a wait belongs to the period in which it was answered; one still open is *unanswered*.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.core.hours import BusinessHours as BusinessHours  # re-exported: the figures' clock
from bot.core.origin import Direction, Source
from bot.core.window import WINDOW

PHONE_APP = "phone app"
"""The responder every Coexistence echo is credited to: Meta does not say who held the phone."""

CLOSING_SOON = timedelta(hours=2)
NOT_WAITING = frozenset({"reaction", "csat_answer"})  # customers' messages that ask nothing of anyone

Elapsed = Callable[[datetime, datetime], timedelta]


class Kind(StrEnum):
    CUSTOMER = "customer"
    REPLY = "reply"
    OTHER = "other"


@dataclass(frozen=True)
class Event:
    """One stored message as the figures see it."""

    at: datetime
    kind: Kind
    responder: str | None = None  # Slack user id, or PHONE_APP
    ref: int = 0  # the message's id: names the wait it starts (nudges are keyed on it)


def classify(*, direction: Direction, source: Source, type: str = "text", is_note: bool = False,
             is_history: bool = False, status: str | None = None, slack_user: str | None = None) -> Kind:
    """What a stored message means for waits."""
    if is_note or is_history:
        return Kind.OTHER
    if direction == Direction.INBOUND:
        return Kind.OTHER if type in NOT_WAITING else Kind.CUSTOMER
    if status == "failed":  # never reached the customer
        return Kind.OTHER
    if source == Source.PHONE_APP or (source == Source.SLACK and slack_user):
        return Kind.REPLY
    return Kind.OTHER


def responder_of(source: Source, slack_user: str | None) -> str | None:
    return PHONE_APP if source == Source.PHONE_APP else slack_user


@dataclass(frozen=True)
class Wait:
    started_at: datetime
    last_customer_at: datetime
    ref: int
    answered_at: datetime | None = None
    responder: str | None = None


@dataclass(frozen=True)
class Reply:
    at: datetime
    responder: str


@dataclass(frozen=True)
class ConversationTrace:
    waits: tuple[Wait, ...]
    replies: tuple[Reply, ...]

    @property
    def open_wait(self) -> Wait | None:
        last = self.waits[-1] if self.waits else None
        return last if last is not None and last.answered_at is None else None


def trace(events: Iterable[Event]) -> ConversationTrace:
    """Waits and replies of one conversation; events are sorted here by time, then by ref (message id)."""
    waits: list[Wait] = []
    replies: list[Reply] = []
    current: Wait | None = None
    for e in sorted(events, key=lambda e: (e.at, e.ref)):
        if e.kind is Kind.CUSTOMER:
            if current is None:
                current = Wait(started_at=e.at, last_customer_at=e.at, ref=e.ref)
            else:
                current = Wait(current.started_at, e.at, current.ref)
        elif e.kind is Kind.REPLY and e.responder:
            replies.append(Reply(e.at, e.responder))
            if current is not None:
                waits.append(Wait(current.started_at, current.last_customer_at, current.ref, e.at, e.responder))
                current = None
    if current is not None:
        waits.append(current)
    return ConversationTrace(tuple(waits), tuple(replies))


def wall_clock(start: datetime, end: datetime) -> timedelta:
    return max(end - start, timedelta(0))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Labelled(Protocol):
    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class ConversationInput:
    """A conversation's identity and its events, as the caller loaded them."""

    conversation_id: int
    channel: str
    customer: str | Labelled  # a label, or what makes one when the customer is shown (formatting costs)
    events: tuple[Event, ...]
    thread: tuple[str, str] | None = None  # (Slack channel, thread ts)
    resolved: bool = False  # marked resolved in the inbox: nobody is waited on until the customer writes again
    snoozed: bool = False  # snoozed in the inbox: out of the waiting lists until its time or the customer writes


@dataclass(frozen=True)
class Waiting:
    conversation_id: int
    channel: str
    customer: str
    since: datetime
    waited: timedelta
    window_closes_at: datetime
    ref: int
    thread: tuple[str, str] | None = None


@dataclass(frozen=True)
class Figures:
    """What managers see for one period."""

    since: datetime
    now: datetime
    first_responses: tuple[timedelta, ...]
    waiting: tuple[Waiting, ...]  # oldest first
    closing: tuple[Waiting, ...]  # unanswered, window closes within CLOSING_SOON, soonest first
    replies: dict[str, int] = field(default_factory=dict)  # responder -> replies, most first
    answered_by: dict[str, tuple[timedelta, ...]] = field(default_factory=dict)  # responder -> first responses

    @property
    def p50(self) -> timedelta | None:
        return pct(self.first_responses, 50)

    @property
    def p90(self) -> timedelta | None:
        return pct(self.first_responses, 90)


def pct(values: Sequence[timedelta], q: float) -> timedelta | None:
    """Nearest-rank percentile of durations."""
    found = percentile([v.total_seconds() for v in values], q)
    return None if found is None else timedelta(seconds=found)


def figures(conversations: Iterable[ConversationInput], *, since: datetime, now: datetime,
            elapsed: Elapsed = wall_clock, elapsed_of: Mapping[str, Elapsed] | None = None) -> Figures:
    """The period's first responses, replies per responder, and who is waiting now.

    `elapsed_of` gives a channel (by name) its own clock (its own opening hours); others use `elapsed`."""
    responses: list[timedelta] = []
    by: dict[str, list[timedelta]] = {}
    replies: Counter[str] = Counter()
    waiting: list[Waiting] = []
    for conv in conversations:
        clock = elapsed_of.get(conv.channel, elapsed) if elapsed_of else elapsed
        t = trace(conv.events)
        for w in t.waits:
            if w.answered_at is not None and w.responder and since <= w.answered_at <= now:
                responses.append(clock(w.started_at, w.answered_at))
                by.setdefault(w.responder, []).append(responses[-1])
        replies.update(r.responder for r in t.replies if since <= r.at <= now)
        open_wait = t.open_wait
        if open_wait is not None and open_wait.started_at <= now and not conv.resolved and not conv.snoozed:
            customer = conv.customer if isinstance(conv.customer, str) else conv.customer.label
            waiting.append(Waiting(conv.conversation_id, conv.channel, customer, open_wait.started_at,
                                   clock(open_wait.started_at, now), open_wait.last_customer_at + WINDOW,
                                   open_wait.ref, conv.thread))
    waiting.sort(key=lambda w: (w.since, w.conversation_id))
    closing = sorted((w for w in waiting if now < w.window_closes_at <= now + CLOSING_SOON),
                     key=lambda w: (w.window_closes_at, w.conversation_id))
    return Figures(since=since, now=now, first_responses=tuple(responses), waiting=tuple(waiting),
                   closing=tuple(closing), replies=dict(sorted(replies.items(), key=lambda kv: (-kv[1], kv[0]))),
                   answered_by={r: tuple(v) for r, v in by.items()})


def overdue(waiting: Iterable[Waiting], limit: timedelta) -> list[Waiting]:
    """Waits that have lasted longer than limit (the nudge threshold)."""
    return [w for w in waiting if w.waited > limit]


def humanize(span: timedelta) -> str:
    """`45 min`, `3 h 05 min`, `2 d 4 h`."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
