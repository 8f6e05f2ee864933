"""The Graph stand-in answers each accepted send with signed sent/delivered/read webhooks, retried until 200."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.meta.parser import parse_delivery
from bot.meta.signature import verify
from bot.standins import GraphStandin

TOKEN, PNID, SECRET = "EAAG-feed", "100000000000009", "feed-secret"


async def test_each_send_gets_three_signed_status_webhooks_and_refused_ones_are_retried() -> None:
    received: list[dict[str, Any]] = []
    refused_once: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get("X-Hub-Signature-256")):
            return web.Response(status=401)
        payload = json.loads(body)
        status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
        key = f"{status['id']}:{status['status']}"
        if status["status"] == "delivered" and key not in refused_once:
            refused_once.add(key)  # Meta retries a delivery that got no 200
            return web.Response(status=503)
        received.append(payload)
        return web.Response(text="EVENT_RECEIVED")

    app = web.Application()
    app.router.add_post("/webhooks/meta", hook)
    async with TestServer(app) as receiver, GraphStandin(tokens={TOKEN: [PNID]}) as graph:
        graph.add_phone_number(PNID, "200000000000009")
        feed = graph.send_status_webhooks(str(receiver.make_url("/webhooks/meta")), SECRET,
                                          delays=(("sent", 0.01), ("delivered", 0.02), ("read", 0.03)))
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{graph.base_url}/v23.0/{PNID}/messages", headers={
                "Authorization": f"Bearer {TOKEN}"}, json={
                "messaging_product": "whatsapp", "to": "+91 98765 43210", "type": "template",
                "template": {"name": "notice", "language": {"code": "en"}}})
        assert resp.status_code == 200
        wamid = resp.json()["messages"][0]["id"]
        for _ in range(200):
            if len(received) == 3:
                break
            await asyncio.sleep(0.05)
    events = [e for payload in received for e in parse_delivery(payload)]
    assert sorted((e.wamid, e.status) for e in events) == sorted(
        (wamid, s) for s in ("sent", "delivered", "read"))
    assert {e.recipient_id for e in events} == {"919876543210"}
    assert {e.envelope.phone_number_id for e in events} == {PNID}
    assert feed.stats.delivered == 3 and feed.stats.retries == 1
