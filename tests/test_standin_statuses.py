"""The Graph stand-in's status webhooks echo biz_opaque_callback_data, go wherever the callback names at each
attempt (nowhere while nobody listens), and the bridge's own parser reads the recipient id back."""

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

SECRET = "app-secret"


async def test_status_webhooks_echo_the_callback_data_to_whoever_listens_now() -> None:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(SECRET, body, request.headers.get("X-Hub-Signature-256"))
        received.append(body)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/meta", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    listening: list[str | None] = [None]  # nobody at first (an app restarting)
    graph = GraphStandin()
    await graph.start()
    client = GraphClient(graph.base_url, "v23.0")
    try:
        feed = graph.send_status_webhooks(lambda: listening[0], SECRET, delays=(("sent", 0.0),))
        sent = await client.send_template(PNID, WA_TOKEN, "+919800000001", "fee_reminder", "en",
                                          callback_data=callback_data(77))
        await eventually(lambda: feed.stats.retries >= 1)
        assert received == []
        listening[0] = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/meta"
        await eventually(lambda: received)
        [status] = parse_delivery(json.loads(received[0]))
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


def test_a_group_sends_statuses_name_the_group_without_pricing() -> None:
    from bot.meta.parser import parse_delivery
    from bot.standins.status_feed import status_payload

    payload = status_payload(waba_id="200000000000001", phone_number_id="100000000000001",
                             display_phone_number="915224000000", wamid="wamid.G1", state="sent",
                             recipient="Y2FwaV9ncm91cA", timestamp=1751280000, template=False, group=True)
    status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert (status["recipient_type"], status["recipient_id"]) == ("group", "Y2FwaV9ncm91cA")
    assert "pricing" not in status and "conversation" not in status
    event = parse_delivery(payload)[0]
    assert event.wamid == "wamid.G1" and event.status == "sent"  # type: ignore[union-attr]
