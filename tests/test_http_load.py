"""The benchmarks' open-loop loader: every request answered once, statuses as sent, hangs and drops counted."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

from bench import http_load


async def _server(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application()
    app.router.add_post("/hook", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook"))


async def test_each_request_is_sent_once_with_its_body_and_headers_and_its_status_kept(aiohttp_server: Any) -> None:
    seen: list[tuple[bytes, str]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((body, request.headers["X-Tag"]))
        return web.Response(status=503 if body.endswith(b"7") else 200, text="x" * (len(body) % 5))

    url = await _server(aiohttp_server, handler)
    loader = http_load.OpenLoop(url, connections=4)
    requests = [http_load.render(url, f"body {i}".encode(), {"X-Tag": str(i)}) for i in range(40)]
    try:
        outcomes = await loader.run(requests, rate=400)
    finally:
        loader.close()
    assert sorted(seen) == sorted((f"body {i}".encode(), str(i)) for i in range(40))
    assert Counter(o.status for o in outcomes) == {200: 36, 503: 4}
    assert all(o.latency >= 0 for o in outcomes)


async def test_a_request_the_server_never_answers_counts_as_failed_after_the_timeout(aiohttp_server: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        if (await request.read()) == b"hang":
            await asyncio.sleep(30)
        return web.Response(text="ok")

    url = await _server(aiohttp_server, handler)
    loader = http_load.OpenLoop(url, connections=2)
    try:
        outcomes = await loader.run([http_load.render(url, b, {}) for b in (b"a", b"hang", b"b")], rate=100,
                                    grace=0.5)
    finally:
        loader.close()
    assert sorted(o.status for o in outcomes) == [0, 200, 200]


async def test_a_dropped_connection_fails_its_request_and_the_next_ones_go_on_a_new_one(aiohttp_server: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        if (await request.read()) == b"drop":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(1)
        return web.Response(text="ok")

    url = await _server(aiohttp_server, handler)
    loader = http_load.OpenLoop(url, connections=1)
    try:
        outcomes = await loader.run([http_load.render(url, b, {}) for b in (b"a", b"drop", b"b", b"c")], rate=50)
    finally:
        loader.close()
    assert sorted(o.status for o in outcomes) == [0, 200, 200, 200]
