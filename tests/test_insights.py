"""The managers' figures from tables of message sequences (bot/insights.py, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from bot.ops.insights import (
    PHONE_APP,
    BusinessHours,
    ConversationInput,
    Event,
    Kind,
    classify,
    figures,
    humanize,
    overdue,
    percentile,
    responder_of,
    trace,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def seq(*steps: tuple[float, str]) -> tuple[Event, ...]:
    """(minute, who): "c" customer, "p" phone app, "U…" a Slack user, "x" anything that is not a reply."""
    out = []
    for i, (minute, who) in enumerate(steps, start=1):
        if who == "c":
            out.append(Event(at(minute), Kind.CUSTOMER, ref=i))
        elif who == "x":
            out.append(Event(at(minute), Kind.OTHER, ref=i))
        else:
            out.append(Event(at(minute), Kind.REPLY, PHONE_APP if who == "p" else who, ref=i))
    return tuple(out)


# (description, steps, [(started, answered or None, responder)], replies per responder)
TRACES = [
    ("nothing", (), [], {}),
    ("customer only", ((0, "c"),), [(0, None, None)], {}),
    ("answered from slack", ((0, "c"), (5, "U1")), [(0, 5, "U1")], {"U1": 1}),
    ("answered from the phone", ((0, "c"), (12, "p")), [(0, 12, PHONE_APP)], {PHONE_APP: 1}),
    ("more customer messages do not restart the wait", ((0, "c"), (3, "c"), (9, "c"), (10, "U1")),
     [(0, 10, "U1")], {"U1": 1}),
    ("only the first reply ends the wait", ((0, "c"), (4, "p"), (6, "U1"), (7, "U2")),
     [(0, 4, PHONE_APP)], {PHONE_APP: 1, "U1": 1, "U2": 1}),
    ("a reply with nobody waiting opens nothing", ((0, "U1"), (5, "c")), [(5, None, None)], {"U1": 1}),
    ("notes, campaigns, history do not end a wait", ((0, "c"), (1, "x"), (2, "x"), (30, "U1")),
     [(0, 30, "U1")], {"U1": 1}),
    ("two waits", ((0, "c"), (5, "U1"), (60, "c"), (90, "p"), (120, "c")),
     [(0, 5, "U1"), (60, 90, PHONE_APP), (120, None, None)], {"U1": 1, PHONE_APP: 1}),
    ("out of order input is sorted by time", ((10, "U1"), (0, "c")), [(0, 10, "U1")], {"U1": 1}),
]


@pytest.mark.parametrize(("steps", "waits", "replies"), [t[1:] for t in TRACES], ids=[t[0] for t in TRACES])
def test_trace(steps: tuple[tuple[float, str], ...], waits: list[tuple[float, float | None, str | None]],
               replies: dict[str, int]) -> None:
    t = trace(seq(*steps))
    got = [(w.started_at, w.answered_at, w.responder) for w in t.waits]
    assert got == [(at(s), None if a is None else at(a), r) for s, a, r in waits]
    counted: dict[str, int] = {}
    for r in t.replies:
        counted[r.responder] = counted.get(r.responder, 0) + 1
    assert counted == replies
    assert (t.open_wait is not None) == bool(waits and waits[-1][1] is None)


# direction, source, type, is_note, is_history, status, slack_user -> kind
CLASSES = [
    ("inbound", "customer", "text", False, False, None, None, Kind.CUSTOMER),
    ("inbound", "customer", "image", False, False, None, None, Kind.CUSTOMER),
    ("inbound", "customer", "reaction", False, False, None, None, Kind.OTHER),
    ("inbound", "customer", "text", False, True, None, None, Kind.OTHER),
    ("outbound", "phone_app", "text", False, False, None, None, Kind.REPLY),
    ("outbound", "phone_app", "text", False, True, None, None, Kind.OTHER),
    ("outbound", "slack", "text", False, False, "sent", "U1", Kind.REPLY),
    ("outbound", "slack", "template", False, False, "delivered", "U1", Kind.REPLY),
    ("outbound", "slack", "text", True, False, None, "U1", Kind.OTHER),
    ("outbound", "slack", "text", False, False, "failed", "U1", Kind.OTHER),
    ("outbound", "campaign", "template", False, False, "read", None, Kind.OTHER),
    ("outbound", "api", "text", False, False, "sent", None, Kind.OTHER),
]


@pytest.mark.parametrize(("direction", "source", "type_", "note", "history", "status", "user", "kind"), CLASSES)
def test_classify(direction: str, source: str, type_: str, note: bool, history: bool, status: str | None,
                  user: str | None, kind: Kind) -> None:
    assert classify(direction=direction, source=source, type=type_, is_note=note, is_history=history,
                    status=status, slack_user=user) is kind


def test_responder_of() -> None:
    assert responder_of("phone_app", None) == PHONE_APP
    assert responder_of("slack", "U7") == "U7"


def conv(cid: int, *steps: tuple[float, str], channel: str = "lucknow") -> ConversationInput:
    return ConversationInput(cid, channel, f"customer {cid}", seq(*steps), ("C1", f"17000000{cid}.000100"))


def test_figures_percentiles_replies_and_waiting() -> None:
    convs = [
        conv(1, (0, "c"), (2, "U1")),  # 2 min
        conv(2, (0, "c"), (10, "p")),  # 10 min
        conv(3, (0, "c"), (4, "U2"), (30, "c")),  # 4 min, then waiting since 30
        conv(4, (20, "c")),  # waiting since 20
        conv(5, (0, "c"), (60, "U1")),  # 60 min
    ]
    f = figures(convs, since=at(-5), now=at(100))
    assert sorted(f.first_responses) == [timedelta(minutes=m) for m in (2, 4, 10, 60)]
    assert f.p50 == timedelta(minutes=4) and f.p90 == timedelta(minutes=60)
    assert f.replies == {"U1": 2, PHONE_APP: 1, "U2": 1}
    assert list(f.replies) == ["U1", "U2", PHONE_APP]  # most first, then by name
    assert f.answered_by == {"U1": (timedelta(minutes=2), timedelta(minutes=60)), PHONE_APP: (timedelta(minutes=10),),
                             "U2": (timedelta(minutes=4),)}
    assert [(w.conversation_id, w.waited) for w in f.waiting] == [(4, timedelta(minutes=80)),
                                                                  (3, timedelta(minutes=70))]
    assert f.closing == ()


def test_a_resolved_conversation_waits_on_nobody() -> None:
    from dataclasses import replace

    thanks = conv(1, (0, "c"), (2, "U1"), (5, "c"))  # "ok thanks 👍" after the answer
    assert [w.conversation_id for w in figures([thanks], since=at(-5), now=at(100)).waiting] == [1]
    f = figures([replace(thanks, resolved=True)], since=at(-5), now=at(100))
    assert f.waiting == () and f.first_responses == (timedelta(minutes=2),)  # its answer still counts


def test_figures_count_only_waits_answered_in_the_period() -> None:
    convs = [conv(1, (0, "c"), (2, "U1"), (50, "c"), (55, "U1"))]
    f = figures(convs, since=at(10), now=at(100))
    assert f.first_responses == (timedelta(minutes=5),)
    assert f.replies == {"U1": 1}
    assert figures([], since=at(0), now=at(1)).p50 is None


def test_windows_closing_within_two_hours_without_a_reply() -> None:
    now = at(24 * 60)  # 24 h after T0
    convs = [
        conv(1, (0, "c"), (100, "c")),  # closes at now+100 min: closing, and its last message counts
        conv(2, (-30, "c")),  # window already closed at now-30: waiting, not closing
        conv(3, (200, "c")),  # closes at now+200 min: not yet
        conv(4, (10, "c"), (20, "U1")),  # answered
        conv(5, (50, "c")),  # closes at now+50 min: sooner than 1
    ]
    f = figures(convs, since=at(-60), now=now)
    assert [w.conversation_id for w in f.closing] == [5, 1]
    assert [w.conversation_id for w in f.waiting] == [2, 1, 5, 3]


def test_overdue_is_strictly_past_the_limit() -> None:
    f = figures([conv(1, (0, "c")), conv(2, (10, "c")), conv(3, (25, "c"))], since=at(0), now=at(40))
    assert [w.conversation_id for w in overdue(f.waiting, timedelta(minutes=30))] == [1]


HOURS = BusinessHours(opens=time(9), closes=time(18), timezone="UTC")
ELAPSED = [
    ("inside one day", at(0), at(30), 30),
    ("customer writes at night, answered next morning", T0.replace(hour=22), T0 + timedelta(days=1, minutes=15),
     15),
    ("friday evening to monday", datetime(2026, 11, 27, 17, 30, tzinfo=UTC), datetime(2026, 11, 30, 9, 10,
                                                                                         tzinfo=UTC), 40),
    ("end before start", at(30), at(0), 0),
    ("a whole weekend", datetime(2026, 11, 28, 10, tzinfo=UTC), datetime(2026, 11, 29, 20, tzinfo=UTC), 0),
]


@pytest.mark.parametrize(("start", "end", "minutes"), [e[1:] for e in ELAPSED], ids=[e[0] for e in ELAPSED])
def test_business_hours_count_only_opening_time(start: datetime, end: datetime, minutes: int) -> None:
    assert HOURS.elapsed(start, end) == timedelta(minutes=minutes)


def test_business_hours_in_a_time_zone_and_in_figures() -> None:
    kolkata = BusinessHours(opens=time(10), closes=time(19), timezone="Asia/Kolkata")
    start = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 09:30 in Kolkata, 30 min before opening
    assert kolkata.elapsed(start, start + timedelta(hours=1)) == timedelta(minutes=30)
    night = [ConversationInput(1, "x", "c", (Event(T0.replace(hour=20), Kind.CUSTOMER),
                                            Event(T0 + timedelta(days=1, minutes=5), Kind.REPLY, "U1")))]
    assert figures(night, since=T0, now=T0 + timedelta(days=2), elapsed=HOURS.elapsed).p50 == timedelta(minutes=5)


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None), ([7], 90, 7), ([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 90, 4),
    ([5, 1, 3], 50, 3), (list(range(1, 11)), 90, 9),
])
def test_percentile_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(("minutes", "text"), [(0, "0 min"), (59, "59 min"), (65, "1 h 05 min"),
                                               (47 * 60, "47 h 00 min"), (50 * 60, "2 d 2 h")])
def test_humanize(minutes: int, text: str) -> None:
    assert humanize(timedelta(minutes=minutes)) == text
