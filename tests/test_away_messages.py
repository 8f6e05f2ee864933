"""Away messages through both stand-ins: a customer writing while the number is closed gets its away message
once per closed period, shown in the thread as sent by the bridge; never on a Coexistence number in
`cloud_api_only` mode, never to a phone-app echo, an opted-out customer, a retried webhook or twice across two
processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.bridge.away import owe_away
from bot.core.origin import Source
from bot.handlers import appkeys
from bot.standins import GraphStandin
from storage.models import AutoReply, Message
from tests.harness import WA_ID, Bridge, BridgeFactory, bridges, eventually, now_ts, thread_with
from tests.helpers import PNID, echo_text, inbound_text


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def closed_hours() -> dict[str, Any]:
    """Hours closed for the whole of the test: yesterday, today and tomorrow (UTC) are holidays."""
    today = datetime.now(UTC).date()
    return {"opens": "09:00", "closes": "18:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "timezone": "UTC", "holidays": [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]}


AWAY = "Hello {first_name}, we are closed; we answer from 9:00. ({business})"


def closed_number(mode: str = "cloud_api") -> dict[str, Any]:
    return {"mode": mode, "hours": closed_hours(), "away_message": AWAY}


def away_sends(graph: GraphStandin) -> list[str]:
    return [str(r.payload.get("text", {}).get("body")) for r in graph.sends
            if r.to == WA_ID and r.type == "text" and "we are closed" in str(r.payload)]


async def settled_rows(b: Bridge) -> list[AutoReply]:
    """Every owed message once none is pending or half-sent: this process's sender runs here, and its background
    loop may be sending one at this moment."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while True:
        await b.app[appkeys.AUTO_REPLIES].run_once()
        async with b.app[appkeys.SESSIONS]() as s:
            found = list((await s.scalars(select(AutoReply).order_by(AutoReply.id))).all())
        if not any(r.state in ("pending", "sending") for r in found):
            return found
        assert asyncio.get_running_loop().time() < deadline, [(r.kind, r.state) for r in found]
        await asyncio.sleep(0.05)


settled = settled_rows
SETTLE_SECONDS = 15.0


async def test_a_customer_writing_while_closed_gets_the_away_message_once(make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number())
    await b.webhook(inbound_text("wamid.A1", "Is the batch on tomorrow?", ts=now_ts(-5)))
    sent = await eventually(lambda: away_sends(b.graph))
    assert sent == ["Hello Ravi, we are closed; we answer from 9:00. (lucknow)"]
    _, posts = await thread_with(b, 2)
    shown = posts[-1]
    assert "Sent automatically by Wabridge" in str(shown["blocks"]) and "we are closed" in str(shown["blocks"])
    stored = await b.one(Message, Message.source == Source.BRIDGE.value)
    assert (stored.direction, stored.slack_user, stored.content) == ("outbound", None, {"auto": "away"})

    # The same night: a second message, and Meta retrying the first delivery, owe nothing more.
    await b.webhook(inbound_text("wamid.A2", "Hello?", ts=now_ts(-1)))
    await b.webhook(inbound_text("wamid.A1", "Is the batch on tomorrow?", ts=now_ts(-5)))
    await thread_with(b, 3)
    rows = await settled(b)
    assert [(r.kind, r.state) for r in rows] == [("away", "sent")]
    assert rows[0].wamid == stored.wamid
    assert len(away_sends(b.graph)) == 1
    assert await b.count(Message, Message.source == Source.BRIDGE.value) == 1


async def test_a_new_closed_period_owes_the_away_message_again(make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number())
    await b.webhook(inbound_text("wamid.B1", "Hi", ts=now_ts(-5)))
    await eventually(lambda: away_sends(b.graph))
    settings = b.app[appkeys.SETTINGS]
    conv_id = (await b.one(AutoReply)).conversation_id
    # The period is named by its start: the same conversation in another closed period (a week on, as the
    # owing step sees it) is owed again; the same period is not.
    later = datetime.now(UTC) + timedelta(days=7)
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        assert await owe_away(s, settings, {conv_id: datetime.now(UTC)}) == 0
    hours = {**closed_hours(), "holidays": [(later.date() + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]}
    raw = settings.model_dump()
    raw["channels"][0]["hours"] = hours
    week_on = type(settings).model_validate(raw)
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        assert await owe_away(s, week_on, {conv_id: later - timedelta(seconds=5)}, now=later) == 1
    periods = {r.period_key for r in await b_rows(b)}
    assert len(periods) == 2


async def b_rows(b: Bridge) -> list[AutoReply]:
    async with b.app[appkeys.SESSIONS]() as s:
        return list((await s.scalars(select(AutoReply))).all())


async def test_a_coexistence_number_leaves_it_to_the_phone_app_by_default(make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number("coexistence"))
    await b.webhook(inbound_text("wamid.C1", "Anyone there?", ts=now_ts(-5)))
    await thread_with(b, 1)
    assert await settled(b) == []
    assert away_sends(b.graph) == []


async def test_always_mode_answers_on_a_coexistence_number_too(make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number("coexistence"), settings_extra={"away": {"mode": "always"}})
    await b.webhook(inbound_text("wamid.D1", "Anyone there?", ts=now_ts(-5)))
    assert await eventually(lambda: away_sends(b.graph))


async def test_no_away_message_after_a_phone_app_answer_to_an_opt_out_or_an_old_message(
        make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number())
    # Someone answers from the phone at night: the customer's next message needs no away message.
    await b.webhook(echo_text("wamid.E0", "We'll call you back", ts=now_ts(-60)))
    await b.webhook(inbound_text("wamid.E1", "ok, when?", ts=now_ts(-50)))
    # Another customer opts out at night, then writes again.
    await b.webhook(inbound_text("wamid.E2", "STOP", wa_id="919800000002", ts=now_ts(-40)))
    await b.webhook(inbound_text("wamid.E3", "one more thing", wa_id="919800000002", ts=now_ts(-30)))
    # A third whose message is delivered more than a day late: the window is closed.
    await b.webhook(inbound_text("wamid.E4", "late", wa_id="919800000003", ts=now_ts(-26 * 3600)))
    await eventually(lambda: len(b.parents()) == 3)
    await eventually(lambda: _count_is(b, 5))
    assert await settled(b) == []
    assert away_sends(b.graph) == []
    # The same night, a customer nobody answered yet still gets it (the checks above are what held it back).
    await b.webhook(inbound_text("wamid.E5", "hello?", wa_id="919800000004", ts=now_ts(-5)))
    assert await eventually(lambda: [r for r in b.graph.sends if r.to == "919800000004"])


async def _count_is(b: Bridge, n: int) -> bool:
    return await b.count(Message) == n


async def test_two_processes_send_one_away_message(make: BridgeFactory) -> None:
    first = await make(channel_extra=closed_number())
    second = await make(slack=first.slack, graph=first.graph, channel_extra=closed_number())
    payload = inbound_text("wamid.F1", "Hi there", ts=now_ts(-5))
    await first.webhook(payload)
    await second.webhook(payload)  # the same delivery reaching the other process
    await eventually(lambda: away_sends(first.graph))
    await settled(first)
    rows = await settled(second)
    assert [r.state for r in rows] == ["sent"]
    assert len(away_sends(first.graph)) == 1


async def test_a_refused_away_message_is_told_in_the_thread_and_not_sent_again(make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number())
    b.graph.fail_next(PNID, WA_ID, code=131026)
    await b.webhook(inbound_text("wamid.G1", "Hi", ts=now_ts(-5)))
    _, posts = await thread_with(b, 2)
    assert "The away message was not sent" in str(posts[-1]) and "131026" in str(posts[-1])
    rows = await settled(b)
    assert [(r.state, r.wamid) for r in rows] == [("failed", None)]
    assert len(b.graph.sends_to(WA_ID)) == 0 and away_sends(b.graph) == []


async def test_an_answer_lost_on_the_way_back_is_never_sent_again(make: BridgeFactory) -> None:
    b = await make(channel_extra=closed_number())
    b.graph.drop_answer_next()
    await b.webhook(inbound_text("wamid.H1", "Hi", ts=now_ts(-5)))
    await eventually(lambda: b.graph.attempts)
    rows = await eventually(lambda: settled_not_pending(b))
    assert [r.state for r in rows] == ["failed"]
    assert len(b.graph.attempts) == 1


async def settled_not_pending(b: Bridge) -> list[AutoReply] | None:
    rows = await settled(b)
    return rows if rows and all(r.state not in ("pending", "sending") for r in rows) else None


def _with_hours(settings: Any, hours: dict[str, Any]) -> Any:
    raw = settings.model_dump()
    raw["channels"][0].update(hours=hours, away_message=AWAY, mode="cloud_api")
    return type(settings).model_validate(raw)


@pytest.mark.parametrize(("hours", "same", "new", "open_at"), [
    # Open 18:00 to 02:00 the next morning: 02:30 and noon are one closed period; the next morning another.
    ({"opens": "18:00", "closes": "02:00", "overnight": True}, ((8, 2, 30), (8, 12, 0), (8, 17, 59)),
     (9, 3, 0), (8, 1, 0)),
    # Closed 22:00 to 07:00: 23:00 and 06:00 the next day are one period across midnight.
    ({"opens": "07:00", "closes": "22:00"}, ((7, 23, 0), (8, 0, 30), (8, 6, 59)), (8, 22, 30), (8, 12, 0)),
], ids=["open-past-midnight", "closed-across-midnight"])
async def test_a_closed_period_across_midnight_owes_the_away_message_once(
        make: BridgeFactory, hours: dict[str, Any], same: tuple[tuple[int, int, int], ...],
        new: tuple[int, int, int], open_at: tuple[int, int, int]) -> None:
    b = await make(channel_extra={"mode": "cloud_api"})  # no hours yet: the webhook owes nothing
    await b.webhook(inbound_text("wamid.N1", "Hi", ts=now_ts(-5)))
    await thread_with(b, 1)
    conv_id = (await b.one(Message)).conversation_id
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    settings = _with_hours(b.app[appkeys.SETTINGS], {**hours, "days": every_day, "timezone": "Asia/Kolkata"})

    def ist(day: int, hour: int, minute: int) -> datetime:
        return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo("Asia/Kolkata")).astimezone(UTC)

    owed = []
    for moment in (*same, new, open_at):
        at = ist(*moment)
        async with b.app[appkeys.SESSIONS]() as s, s.begin():
            owed.append(await owe_away(s, settings, {conv_id: at}, now=at + timedelta(seconds=1)))
    assert owed == [1] + [0] * (len(same) - 1) + [1, 0]
    assert len({r.period_key for r in await b_rows(b)}) == 2
