"""The HTTP contract of /webhooks/meta: handshake, signatures, body checks, durability before the 200."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from bot.app.factory import create_app
from bot.handlers import appkeys
from storage.models import WebhookLog
from tests.helpers import VERIFY_TOKEN, history_chunk, inbound_text, make_settings, signed


async def _client(aiohttp_client, db_url, **kw):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(db_url, **kw), workers=False)
    return await aiohttp_client(app)


async def _log_count(client) -> int:  # type: ignore[no-untyped-def]
    async with client.app[appkeys.SESSIONS]() as s:
        return int(await s.scalar(select(func.count()).select_from(WebhookLog)) or 0)


async def test_handshake_echoes_the_challenge(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url)
    resp = await client.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                      "hub.challenge": "1158201444"})
    assert resp.status == 200
    assert await resp.text() == "1158201444"
    assert resp.content_type == "text/plain"


async def test_handshake_with_wrong_token_is_forbidden(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url)
    resp = await client.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                      "hub.challenge": "1"})
    assert resp.status == 403


async def test_bad_or_missing_signature_is_401_and_nothing_is_stored(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url)
    body, headers = signed(inbound_text("wamid.A", "hi"), secret="someone-else")
    assert (await client.post("/webhooks/meta", data=body, headers=headers)).status == 401
    assert (await client.post("/webhooks/meta", data=body)).status == 401
    assert await _log_count(client) == 0


async def test_malformed_json_is_400(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url)
    for raw in (b"{not json", b"\xff\xfe\x00", b"[1, 2]"):
        body, headers = signed(raw)
        resp = await client.post("/webhooks/meta", data=body, headers=headers)
        assert resp.status == 400, raw
    assert await _log_count(client) == 0


async def test_oversized_body_is_413(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    from bot.core.config import ServerSettings

    settings = make_settings(db_url)
    settings = settings.model_copy(update={"server": ServerSettings(max_body_bytes=2048)})
    client = await aiohttp_client(create_app(settings, workers=False))
    big = {"object": "whatsapp_business_account", "pad": "x" * 5000}
    body, headers = signed(big)
    resp = await client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 413
    assert await _log_count(client) == 0


async def test_a_history_chunk_of_ten_thousand_conversations_fits_the_default_limit(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    from bot.core.config import DEFAULT_MAX_BODY_BYTES

    client = await _client(aiohttp_client, db_url)
    body, headers = signed(history_chunk(10_000, 1))
    assert 2_000_000 < len(body) < 3_000_000  # what a real chunk of 10k conversations weighs
    resp = await client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 200
    assert await _log_count(client) == 1
    # Meta documents webhooks of up to 3 MB: the default keeps more than twice that as headroom.
    assert DEFAULT_MAX_BODY_BYTES >= 2 * 3_000_000
    over, over_headers = signed(b'{"pad": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}')
    assert (await client.post("/webhooks/meta", data=over, headers=over_headers)).status == 413
    assert await _log_count(client) == 1


async def test_signed_delivery_is_committed_before_the_200(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url)
    body, headers = signed(inbound_text("wamid.B", "hello"))
    resp = await client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 200
    # A separate connection sees the row: it was committed, not just flushed.
    from storage.db import make_engine, make_sessionmaker

    engine = make_engine(db_url)
    async with make_sessionmaker(engine)() as s:
        row = (await s.scalars(select(WebhookLog))).one()
    await engine.dispose()
    assert row.raw_body == body
    assert row.event_type == "message"
    assert row.processed_at is None
    assert json.loads(row.raw_body)["entry"][0]["changes"][0]["field"] == "messages"


async def test_healthz_and_metrics_answer(aiohttp_client, db_url, redis_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url, redis_url=redis_url, server={"metrics_public": True})
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json()) == {"status": "ok", "database": "ok", "redis": "ok"}
    body, headers = signed(inbound_text("wamid.C", "x"))
    await client.post("/webhooks/meta", data=body, headers=headers)
    await client.post("/webhooks/meta", data=body)
    text = await (await client.get("/metrics")).text()
    assert 'wabridge_webhooks_received_total{event_type="message"} 1.0' in text
    assert 'wabridge_webhooks_rejected_total{reason="bad_signature"} 1.0' in text


async def test_healthz_reports_redis_down_as_503(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await _client(aiohttp_client, db_url, redis_url="redis://127.0.0.1:1/0")
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["redis"].startswith("error")
