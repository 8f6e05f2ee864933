"""What a send that got no answer means, and what the reply path does about Meta's throughput refusals.

- An answer lost after Meta took the request: `maybe_delivered`, never sent again (one send at the stand-in).
- A reused keep-alive connection the server had closed: sent again at once on a new one (one send).
- A 130429 on a reply penalises the number in the shared throttle and is counted per channel for good.
- A reply interrupted by a stop between its Graph call and its record is noted in its thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.handlers import appkeys
from bot.meta.delivery import Delivery, RequestTrace, delivery_of
from bot.meta.errors import GraphError
from bot.meta.graph import GraphClient
from bot.slack import reply_ledger
from bot.standins.graph import GraphStandin
from storage.models import Conversation, SendErrorCount, SlackAction, SlackOutbox, utcnow
from storage.send_errors import counts_since
from tests.harness import STAFF, WA_ID, Bridge, bridges, eventually, now_ts, thread_with
from tests.helpers import PNID, SLACK_CHANNEL, WA_TOKEN, inbound_text
from tests.test_campaign_runner import RecordingThrottle


def _trace(*, new: bool, written: bool, answered: bool = False) -> RequestTrace:
    return RequestTrace(new_connection=new, written=written, response_started=answered)


def test_where_the_transport_failed_decides_the_outcome() -> None:
    request = httpx.Request("POST", "http://x/")
    cases = [
        (httpx.ConnectError("refused", request=request), _trace(new=True, written=False), Delivery.NOT_SENT),
        (httpx.ConnectTimeout("slow", request=request), _trace(new=True, written=False), Delivery.NOT_SENT),
        (httpx.WriteError("broken pipe", request=request), _trace(new=False, written=True), Delivery.NOT_SENT),
        (httpx.ReadError("reset", request=request), _trace(new=True, written=True), Delivery.UNKNOWN),
        (httpx.ReadError("reset", request=request), _trace(new=False, written=True), Delivery.UNKNOWN),
        (httpx.ReadTimeout("slow", request=request), _trace(new=False, written=True), Delivery.UNKNOWN),
        (httpx.RemoteProtocolError("disconnected", request=request), _trace(new=False, written=True),
         Delivery.STALE_CONNECTION),
        (httpx.RemoteProtocolError("disconnected", request=request), _trace(new=True, written=True),
         Delivery.UNKNOWN),
        (httpx.RemoteProtocolError("bad chunk", request=request), _trace(new=False, written=True, answered=True),
         Delivery.UNKNOWN),
        (httpx.ReadError("reset", request=request), _trace(new=False, written=False), Delivery.NOT_SENT),
    ]
    for exc, trace, expected in cases:
        assert delivery_of(exc, trace) is expected, (exc, trace)


@pytest.fixture
async def graph() -> AsyncIterator[GraphStandin]:
    standin = GraphStandin()
    await standin.start()
    standin.add_phone_number(PNID, "200000000000001")
    standin.add_token(WA_TOKEN, "*")
    try:
        yield standin
    finally:
        await standin.stop()


@pytest.mark.parametrize("reused", [False, True])
async def test_an_answer_lost_after_meta_took_the_send_is_unknown_and_not_sent_again(graph: GraphStandin,
                                                                                   reused: bool) -> None:
    async with GraphClient(graph.base_url, "v23.0") as client:
        if reused:
            await client.send_text(PNID, WA_TOKEN, WA_ID, "warm-up")  # a kept-alive connection to reuse
        graph.drop_answer_next()
        with pytest.raises(GraphError) as err:
            await client.send_text(PNID, WA_TOKEN, WA_ID, "only once")
        assert err.value.maybe_delivered and err.value.code is None
        assert isinstance(err.value.__cause__, httpx.ReadError)
        assert [s.payload["text"]["body"] for s in graph.sends_to(WA_ID)] == ["warm-up"] * reused + ["only once"]


async def test_a_stale_keep_alive_connection_is_retried_on_a_new_one(graph: GraphStandin) -> None:
    async with GraphClient(graph.base_url, "v23.0") as client:
        await client.send_text(PNID, WA_TOKEN, WA_ID, "first")
        graph.close_idle_next()
        result = await client.send_text(PNID, WA_TOKEN, WA_ID, "second")
    assert result.wamid
    assert [s.payload["text"]["body"] for s in graph.sends_to(WA_ID)] == ["first", "second"]


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    async with bridges(aiohttp_client, db_url) as build:
        yield await build()


async def test_a_130429_on_a_reply_slows_the_number_and_is_counted(bridge: Bridge) -> None:
    deps = bridge.app[appkeys.DEPS]
    recording = RecordingThrottle(deps.throttle)
    deps.throttle = recording
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    bridge.graph.fail_next(to=WA_ID, code=130429)
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "a reply", thread_ts=parent["ts"])
    assert await bridge.event(event, event_id="EvTHROTTLED") == 200
    await eventually(lambda: recording.penalties)
    assert recording.penalties[0][0] == PNID

    async def counted() -> dict[tuple[int, int], int]:
        async with bridge.app[appkeys.SESSIONS]() as s:
            return await counts_since(s, utcnow() - timedelta(hours=24))

    channel_id = bridge.app[appkeys.CHANNEL_IDS][PNID]
    assert (await eventually(counted)) == {(channel_id, 130429): 1}
    # A later success does not clear it (unlike a recipient's error column).
    second = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "again", thread_ts=parent["ts"])
    assert await bridge.event(second, event_id="EvOK") == 200
    await eventually(lambda: bridge.graph.sends_to(WA_ID))
    assert await counted() == {(channel_id, 130429): 1}
    resp = await bridge.client.get("/metrics")
    assert 'wabridge_meta_throughput_errors_24h{channel="lucknow",code="130429"} 1.0' in await resp.text()


async def test_a_reply_is_on_record_until_stored_and_an_interrupted_one_is_noted(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "sent fine", thread_ts=parent["ts"])
    assert await bridge.event(event, event_id="EvFINE") == 200
    await eventually(lambda: bridge.graph.sends_to(WA_ID))
    deps = bridge.app[appkeys.DEPS]

    async def ledger() -> list[dict[str, Any] | None]:
        async with bridge.app[appkeys.SESSIONS]() as s:
            return [r.outcome for r in (await s.scalars(select(SlackAction))).all()]

    assert await eventually(lambda: _all_done(ledger)) == [{"state": "done", "outcome": "sent"}]
    # A process stopped after putting a reply on record and before storing what it sent:
    conversation = await bridge.one(Conversation)
    await reply_ledger.begin(deps.sessions, reply_ledger.reply_key(SLACK_CHANNEL, "1700000000.000900"),
                             conversation_id=conversation.id, user=STAFF, ts="1700000000.000900")
    assert await reply_ledger.sweep(deps, older_than=timedelta(0)) == 1
    note = await eventually(lambda: [m for m in bridge.replies(parent["ts"]) if "may not have reached" in
                                     str(m.get("text")) + str(m.get("blocks"))])
    assert f"<@{STAFF}>" in str(note[0])
    assert await reply_ledger.sweep(deps, older_than=timedelta(0)) == 0  # noted once
    assert await bridge.count(SlackOutbox, SlackOutbox.kind == "note") == 1
    assert await bridge.count(SendErrorCount) == 0


async def _all_done(ledger: Any) -> list[Any] | None:
    rows = await ledger()
    return rows if rows and all(r and r.get("state") == "done" for r in rows) else None
