"""Live deliveries are claimed round robin across workspaces: one business's reply storm never queues in
front of another business's customers (counts and order of claims, no timings)."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from bot.app.factory import create_app
from bot.bridge.meta_events import EventContext
from bot.bridge.webhook_sources import WebhookSources
from bot.bridge.webhook_worker import WebhookWorker
from bot.core.config import parse_settings
from bot.handlers import appkeys
from bot.standins import GraphStandin, SlackStandin
from storage import webhook_logs
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Message, WebhookLog
from tests.helpers import inbound_text, signed, status
from tests.workspaces_harness import ALPHA, BETA, settings_raw


def _delivery(n: int, source: str) -> tuple[bytes, str, str]:
    return json.dumps({"n": n}).encode(), "message", source


async def _stored(db_url: str, rows: list[tuple[bytes, str, str]]) -> Any:
    await migrate(db_url)
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        await webhook_logs.store_many(conn, rows)
    return engine


def _numbers(claimed: list[webhook_logs.ClaimedLog]) -> list[int]:
    return sorted(json.loads(c.raw_body)["n"] for c in claimed)


async def test_a_live_claim_takes_each_workspaces_oldest_before_anyones_second(db_url: str) -> None:
    # Workspace S's storm of 30 stored first, then one customer message each for Q and R.
    rows = [_delivery(n, "team:T0S") for n in range(30)] + [_delivery(30, "team:T0Q"), _delivery(31, "team:T0R")]
    engine = await _stored(db_url, rows)
    sessions = make_sessionmaker(engine)
    try:
        first = await webhook_logs.claim_batch(sessions, 5, lanes=("live",), fair=True)
        assert _numbers(first) == [0, 1, 2, 30, 31]  # S's first three, Q's and R's only one
        second = await webhook_logs.claim_batch(sessions, 5, lanes=("live",), fair=True)
        assert _numbers(second) == [3, 4, 5, 6, 7]  # then the storm, in arrival order
        async with engine.begin() as conn:  # Q writes again while S's storm is still 22 deep
            await webhook_logs.store_many(conn, [_delivery(32, "team:T0Q")])
        third = await webhook_logs.claim_batch(sessions, 5, lanes=("live",), fair=True)
        assert _numbers(third) == [8, 9, 10, 11, 32]
    finally:
        await engine.dispose()


async def test_without_fairness_a_claim_takes_arrival_order(db_url: str) -> None:
    rows = [_delivery(n, "team:T0S") for n in range(30)] + [_delivery(30, "team:T0Q")]
    engine = await _stored(db_url, rows)
    try:
        claimed = await webhook_logs.claim_batch(make_sessionmaker(engine), 5, lanes=("live",))
        assert _numbers(claimed) == [0, 1, 2, 3, 4]
    finally:
        await engine.dispose()


async def test_two_workers_claiming_round_robin_never_share_a_delivery(pg_url: str) -> None:
    rows = [_delivery(n, f"team:T0{n % 3}") for n in range(60)]
    engine = await _stored(pg_url, rows)
    sessions = make_sessionmaker(engine)
    try:
        seen: list[int] = []
        while True:
            batches = await asyncio.gather(*(webhook_logs.claim_batch(sessions, 7, lanes=("live",), fair=True)
                                             for _ in range(2)))
            if not any(batches):
                break
            for claimed in batches:
                seen += _numbers(claimed)
                async with sessions() as session, session.begin():
                    await webhook_logs.mark_processed_many(session, [c.id for c in claimed])
        assert sorted(seen) == list(range(60))  # each once
    finally:
        await engine.dispose()


def test_a_deliverys_source_is_its_numbers_workspace() -> None:
    # Settings only: nothing is started or called.
    slack = SimpleNamespace(api_url="http://127.0.0.1:9/api/",
                            oauth=SimpleNamespace(client_id="1.2", client_secret="s"))
    graph = SimpleNamespace(base_url="http://127.0.0.1:9")
    settings = parse_settings(settings_raw("sqlite+aiosqlite:///unused.db", slack, graph), env={})  # type: ignore[arg-type]
    sources = WebhookSources()
    alpha = inbound_text("wamid.A", "hi")
    alpha["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = ALPHA[2]
    assert sources.of(settings, alpha) == "team:T0ALPHA"
    stranger = inbound_text("wamid.X", "hi")
    stranger["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    assert sources.of(settings, stranger) == "number:999"
    template = {"object": "whatsapp_business_account", "entry": [{"id": BETA[3], "changes": [
        {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]}
    assert sources.of(settings, template) == f"waba:{BETA[3]}"
    assert sources.of(settings, {"entry": "nonsense"}) == ""


async def test_a_storm_in_one_workspace_leaves_the_others_customer_in_the_first_batch(
        db_url: str, aiohttp_client: Any) -> None:
    slack, graph = SlackStandin(), GraphStandin()
    await slack.start()
    await graph.start()
    try:
        await _storm_and_one_customer(db_url, aiohttp_client, slack, graph)
    finally:
        await slack.stop()
        await graph.stop()


async def _storm_and_one_customer(db_url: str, aiohttp_client: Any, slack: SlackStandin, graph: GraphStandin
                                  ) -> None:
    settings = parse_settings(settings_raw(db_url, slack, graph), env={})
    client = await aiohttp_client(create_app(settings, workers=False, components=[]))
    app = client.app

    async def write(number: tuple[str, str, str, str], payload: dict[str, Any]) -> None:
        payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number[2]
        body, headers = signed(payload)
        assert (await client.post("/webhooks/meta", data=body, headers=headers)).status == 200

    now = int(time.time())
    for n in range(12):  # Alpha's reply storm, every message from a customer of its own
        await write(ALPHA, inbound_text(f"wamid.S{n}", f"storm {n}", wa_id=f"9198100000{n:02d}", ts=now - 60 + n))
    await write(ALPHA, status("wamid.S0", "delivered", ts=now - 30))
    await write(BETA, inbound_text("wamid.Q0", "is the clinic open today?", ts=now - 20))
    async with app[appkeys.SESSIONS]() as session:
        sources = (await session.scalars(select(WebhookLog.source).order_by(WebhookLog.id))).all()
    assert sources == ["team:T0ALPHA"] * 13 + ["team:T0BETA"]

    worker = WebhookWorker(app[appkeys.SESSIONS], lambda: EventContext(settings, app[appkeys.CHANNEL_IDS]),
                           app[appkeys.METRICS], batch=4, fair=True)
    assert await worker.process_available(lanes=("live",)) == 4
    async with app[appkeys.SESSIONS]() as session:
        applied = set((await session.scalars(select(Message.wamid))).all())
    assert applied == {"wamid.S0", "wamid.S1", "wamid.S2", "wamid.Q0"}  # Beta's customer did not wait
    while await worker.process_available():
        pass
    async with app[appkeys.SESSIONS]() as session:
        assert len((await session.scalars(select(Message.wamid))).all()) == 13
    await client.close()
