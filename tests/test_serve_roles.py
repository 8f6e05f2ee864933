"""`serve --role`: a web process acks and stores, a worker process processes what it stored."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.app.campaign_component import CAMPAIGN_RUNNER
from bot.app.components import default_components
from bot.app.factory import create_app
from bot.app.slack_component import OUTBOX
from bot.cli.entry import build_parser
from bot.handlers import appkeys
from storage.models import Message, WebhookLog
from tests.harness import eventually
from tests.helpers import inbound_text, make_settings, signed


def _web_app(db_url: str):
    settings = make_settings(db_url)
    return create_app(settings, workers=False, components=default_components(settings, role="web"))


def _worker_app(db_url: str):
    settings = make_settings(db_url, server={"metrics_public": True})
    return create_app(settings, webhooks=False, components=default_components(settings, role="worker"))


async def _counts(app) -> tuple[int, int]:
    async with app[appkeys.SESSIONS]() as s:
        pending = await s.scalar(select(func.count()).select_from(WebhookLog)
                                 .where(WebhookLog.processed_at.is_(None)))
        messages = await s.scalar(select(func.count()).select_from(Message))
    return int(pending or 0), int(messages or 0)


async def _counts_are(app, expected: tuple[int, int]) -> bool:
    return await _counts(app) == expected


async def test_web_role_acks_and_stores_without_processing_and_worker_role_processes_it(
        aiohttp_client, db_url) -> None:
    web = await aiohttp_client(_web_app(db_url))
    for app_key in (appkeys.WEBHOOK_WORKER, OUTBOX, CAMPAIGN_RUNNER):
        assert app_key not in web.app
    body, headers = signed(inbound_text("wamid.ROLE1", "hello from the web role"))
    assert (await web.post("/webhooks/meta", data=body, headers=headers)).status == 200
    await asyncio.sleep(1.5)  # longer than a worker's poll interval: nothing in this process processes
    assert await _counts(web.app) == (1, 0)

    worker = await aiohttp_client(_worker_app(db_url))
    assert appkeys.WEBHOOK_WORKER in worker.app and OUTBOX in worker.app and CAMPAIGN_RUNNER in worker.app
    await eventually(lambda: _counts_are(worker.app, (0, 1)))


async def test_worker_role_serves_health_and_metrics_but_no_endpoints(aiohttp_client, db_url) -> None:
    worker = await aiohttp_client(_worker_app(db_url))
    assert (await worker.get("/healthz")).status == 200
    assert (await worker.get("/metrics")).status == 200
    body, headers = signed(inbound_text("wamid.ROLE2", "hi"))
    assert (await worker.post("/webhooks/meta", data=body, headers=headers)).status == 404
    assert (await worker.post("/slack/events", data=b"{}")).status == 404
    assert (await worker.get("/onboard")).status == 404
    assert appkeys.INGEST_WRITER not in worker.app


def test_serve_role_defaults_to_all() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).role == "all"
    assert parser.parse_args(["serve", "--role", "worker"]).role == "worker"
