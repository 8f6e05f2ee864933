"""The pooled template sender speaks to the Graph stand-in exactly as the general client does."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from bot.meta.errors import GraphError, SendAction
from bot.meta.graph import GraphClient
from bot.meta.sender import TemplateBody, TemplateSender, may_have_been_sent
from bot.standins.graph import GraphStandin

PNID = "100000000000001"
TOKEN = "token-lucknow"
VERSION = "v23.0"
COMPONENTS = [{"type": "body", "parameters": [{"type": "text", "text": 'Zoë "the" <b>&\\ 🙂'}]}]


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    server = GraphStandin(tokens={TOKEN: [PNID]})
    server.add_phone_number(PNID)
    async with server:
        yield server


@pytest.fixture
async def sender(standin: GraphStandin) -> AsyncIterator[TemplateSender]:
    templates = TemplateSender(standin.base_url, VERSION, timeout=5.0)
    yield templates
    await templates.aclose()


async def test_the_body_is_what_the_general_client_sends(standin: GraphStandin, sender: TemplateSender) -> None:
    body = TemplateBody("order_ready", "en_US")
    sent = await sender.send(PNID, TOKEN, "919800000001", body, COMPONENTS)
    plain = await sender.send(PNID, TOKEN, "919800000002", body)
    async with GraphClient(standin.base_url, VERSION) as graph:
        await graph.send_template(PNID, TOKEN, "919800000001", "order_ready", "en_US", COMPONENTS)
        await graph.send_template(PNID, TOKEN, "919800000002", "order_ready", "en_US")
    fast, fast_plain, general, general_plain = (r.payload for r in standin.sends)
    assert fast == general and fast_plain == general_plain
    assert fast["template"]["components"][0]["parameters"][0]["text"] == 'Zoë "the" <b>&\\ 🙂'
    assert sent.wamid == standin.sends[0].wamid and sent.wa_id == "919800000001"
    assert plain.message_status == "accepted"


async def test_meta_errors_surface_as_graph_errors_with_their_action(standin: GraphStandin,
                                                                     sender: TemplateSender) -> None:
    body = TemplateBody("order_ready", "en_US")
    standin.fail_next(PNID, code=130429)
    with pytest.raises(GraphError) as throttled:
        await sender.send(PNID, TOKEN, "919800000003", body)
    assert throttled.value.code == 130429 and throttled.value.action is SendAction.THROTTLE
    with pytest.raises(GraphError) as unauthorised:
        await sender.send(PNID, "not-a-token", "919800000003", body)
    assert unauthorised.value.code == 190 and unauthorised.value.http_status == 401
    assert not may_have_been_sent(unauthorised.value)
    assert standin.sends == []


async def test_a_refused_connection_was_not_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    templates = TemplateSender(f"http://127.0.0.1:{port}", VERSION, timeout=2.0)
    try:
        with pytest.raises(GraphError) as err:
            await templates.send(PNID, TOKEN, "919800000004", TemplateBody("t", "en"))
    finally:
        await templates.aclose()
    assert err.value.code is None and not may_have_been_sent(err.value)


async def test_a_request_answered_by_a_dropped_connection_may_have_been_sent() -> None:
    received = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the request arrived; the answer never comes
        received.set()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    templates = TemplateSender(f"http://127.0.0.1:{port}", VERSION, timeout=2.0)
    try:
        with pytest.raises(GraphError) as err:
            await templates.send(PNID, TOKEN, "919800000005", TemplateBody("t", "en"))
    finally:
        await templates.aclose()
        server.close()
        await server.wait_closed()
    assert received.is_set()
    assert may_have_been_sent(err.value)
