"""The webhook parser catches only its own `_Malformed`: a part of the wrong shape is a ParseProblem, alerted
and counted while the rest of the delivery is applied; a bug in the parser reaches the worker, which keeps the
delivery and retries it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.handlers import appkeys
from bot.meta import parser
from storage.models import Message, WebhookLog
from tests.harness import BridgeFactory, all_text, bridges, eventually, now_ts
from tests.helpers import inbound_text


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def test_a_parser_bug_is_raised_not_turned_into_a_parse_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise TypeError("a bug of ours")

    monkeypatch.setitem(parser._HANDLERS, "messages", broken)
    with pytest.raises(TypeError):
        parser.parse_delivery(inbound_text("wamid.BUG", "hello"))


async def test_a_malformed_part_is_alerted_and_counted_and_the_rest_applied(make: BridgeFactory) -> None:
    b = await make()
    payload = inbound_text("wamid.GOOD", "hello", ts=now_ts(-60))
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"].append({"from": "919812345678", "timestamp": str(now_ts(-50)), "type": "text",
                              "text": {"body": "no id"}})
    await b.webhook(payload)
    await eventually(lambda: b.count(Message))
    alerts = await eventually(lambda: [m for m in b.slack.messages("C0ALERTS") if "could not be read" in all_text(m)])
    assert "messages[1]" in all_text(alerts[0]) and "'id'" in all_text(alerts[0])
    applied = b.app[appkeys.METRICS].events_applied
    await eventually(lambda: applied.labels("ParseProblem")._value.get() == 1)


async def test_a_parser_bug_keeps_the_delivery_for_the_retry(make: BridgeFactory,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    b = await make()
    real = parser._HANDLERS["messages"]

    def broken(*_: Any) -> Any:
        raise KeyError("a bug of ours")

    monkeypatch.setitem(parser._HANDLERS, "messages", broken)
    await b.webhook(inbound_text("wamid.LATER", "hello", ts=now_ts(-60)))

    async def failed() -> bool:
        log = await b.one(WebhookLog)
        return log.attempts >= 1 and log.processed_at is None and "a bug of ours" in (log.error or "")

    await eventually(failed)
    assert await b.count(Message) == 0
    monkeypatch.setitem(parser._HANDLERS, "messages", real)  # the fix is deployed: the retry applies it
    await eventually(lambda: b.count(Message), timeout=20)
    assert (await b.one(WebhookLog)).processed_at is not None
