"""The Graph stand-in's status webhooks: signed like Meta's, echoing biz_opaque_callback_data, retried
until a 200, and parsed by the bridge's own parser into the recipient id the send carried."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from bot.meta.errors import GraphError
from bot.meta.graph import GraphClient
from bot.meta.parser import parse_delivery
from bot.meta.signature import verify
from bot.standins import GraphStandin
from scheduler.campaigns.unknowns import callback_data, recipient_of
from tests.harness import eventually
from tests.helpers import PNID, WA_TOKEN


async def test_accepted_sends_get_a_signed_sent_status_echoing_the_callback_data_until_answered_200() -> None:
    received: list[bytes] = []
    answers = iter([500, 503])  # Meta's webhook is refused twice, then taken

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify("standin-app-secret", body, request.headers.get("X-Hub-Signature-256"))
        received.append(body)
        return web.Response(status=next(answers, 200))

    app = web.Application()
    app.router.add_post("/webhooks/meta", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    graph = GraphStandin()
    await graph.start()
    client = GraphClient(graph.base_url, "v23.0")
    try:
        graph.send_status_webhooks(f"http://127.0.0.1:{port}/webhooks/meta", retry_every=0.05)
        sent = await client.send_template(PNID, WA_TOKEN, "+919800000001", "fee_reminder", "en",
                                          callback_data=callback_data(77))
        await eventually(lambda: len(received) >= 3)
        assert [code for _, _, code in graph.status_deliveries] == [500, 503, 200]
        events = parse_delivery(json.loads(received[-1]))
        assert len(events) == 1
        status = events[0]
        assert getattr(status, "wamid", None) == sent.wamid and getattr(status, "status", None) == "sent"
        assert recipient_of(getattr(status, "biz_opaque_callback_data", None)) == 77
        assert getattr(status, "recipient_id", None) == "919800000001"

        with pytest.raises(ValueError):
            await client.send_template(PNID, WA_TOKEN, "+919800000001", "fee_reminder", "en",
                                       callback_data="x" * 513)
    finally:
        await client.aclose()
        await graph.stop()
        await runner.cleanup()


async def test_the_stand_in_refuses_callback_data_over_512_characters_as_meta_does() -> None:
    graph = GraphStandin()
    await graph.start()
    client = GraphClient(graph.base_url, "v23.0")
    try:
        payload = {"messaging_product": "whatsapp", "to": "919800000001", "type": "template",
                   "template": {"name": "t", "language": {"code": "en"}}, "biz_opaque_callback_data": "x" * 513}
        with pytest.raises(GraphError) as err:
            await client._send_message(PNID, WA_TOKEN, payload)
        assert err.value.code == 100
        assert graph.sends == []
    finally:
        await client.aclose()
        await graph.stop()
