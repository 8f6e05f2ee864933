"""The Slack bot token only goes to Slack: file downloads refuse other origins and off-origin redirects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.core.config import SlackSettings
from bot.slack.file_fetch import FileOriginRefused, stream_slack_file
from bot.slack.file_origin import SLACK_FILE_ORIGIN, allowed_origins, is_allowed, origin_of
from storage.models import Message
from tests.canary import Canary
from tests.harness import STAFF, WA_ID, Bridge, all_text, bridges, eventually, now_ts, thread_with
from tests.helpers import BOT_TOKEN, SLACK_CHANNEL, inbound_text


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    async with bridges(aiohttp_client, db_url) as build:
        yield await build()


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    c = Canary()
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def test_origin_is_scheme_host_and_non_default_port() -> None:
    assert origin_of("HTTPS://Files.Slack.com:443/files-pri/T-F/x.pdf") == "https://files.slack.com"
    assert origin_of("http://127.0.0.1:8123/api/") == "http://127.0.0.1:8123"
    for bad in ("ftp://files.slack.com/x", "files.slack.com/x", "https://", "https://a:notaport/x", ""):
        assert origin_of(bad) is None, bad


def test_only_exact_origins_are_allowed() -> None:
    origins = allowed_origins("http://127.0.0.1:8123/api/", ["https://files.example-grid.com"])
    assert SLACK_FILE_ORIGIN in origins
    assert is_allowed("https://files.slack.com/files-pri/T1-F1/a.pdf", origins)
    assert is_allowed("http://127.0.0.1:8123/files-pri/T1-F1/a.pdf", origins)
    assert is_allowed("https://files.example-grid.com/x", origins)
    for attack in ("https://files.slack.com.evil.test/x", "https://files.slack.com@evil.test/x",
                   "https://evil.test/?https://files.slack.com/", "http://files.slack.com/x",
                   "http://127.0.0.1:8124/metrics", "http://127.0.0.1/x", "https://slack.com.evil.test/x"):
        assert not is_allowed(attack, origins), attack


def test_extra_origins_must_be_origins() -> None:
    base = {"bot_token": "xoxb-1", "signing_secret": "s"}
    assert SlackSettings.model_validate({**base, "file_origins": ["https://files.grid.test"]}).file_origins
    for bad in ("https://files.grid.test/path", "files.grid.test", "https://u@files.grid.test"):
        with pytest.raises(ValueError, match="not an origin"):
            SlackSettings.model_validate({**base, "file_origins": [bad]})


@pytest.fixture
async def slack_host(canary: Canary) -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for Slack's file host: serves /ok, redirects /hop to /ok and /away to the canary."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        if request.path == "/hop":
            raise web.HTTPFound("/ok")
        if request.path == "/away":
            raise web.HTTPFound(f"{canary.url}/stolen")
        return web.Response(body=b"name,phone\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def test_redirect_within_slack_is_followed_with_the_token(slack_host: tuple[str, list[str]]) -> None:
    base, seen = slack_host
    slack = SlackSettings(api_url=f"{base}/api/", bot_token=BOT_TOKEN, signing_secret="s")
    async with stream_slack_file(slack, f"{base}/hop", read_timeout=5) as resp:
        assert await resp.aread() == b"name,phone\n"
    assert seen == [f"Bearer {BOT_TOKEN}"] * 2


async def test_redirect_off_slack_is_refused_before_any_request(slack_host: tuple[str, list[str]],
                                                                  canary: Canary) -> None:
    base, _ = slack_host
    slack = SlackSettings(api_url=f"{base}/api/", bot_token=BOT_TOKEN, signing_secret="s")
    with pytest.raises(FileOriginRefused):
        async with stream_slack_file(slack, f"{base}/away", read_timeout=5):
            pass
    with pytest.raises(FileOriginRefused):
        async with stream_slack_file(slack, f"{canary.url}/metrics", read_timeout=5):
            pass
    assert canary.hits == []


async def test_configured_extra_origin_may_receive_the_token(canary: Canary) -> None:
    slack = SlackSettings(api_url="https://slack.com/api/", bot_token=BOT_TOKEN, signing_secret="s",
                          file_origins=[canary.url])
    async with stream_slack_file(slack, f"{canary.url}/f.pdf", read_timeout=5) as resp:
        assert resp.status_code == 200
    assert canary.hits == [("/f.pdf", f"Bearer {BOT_TOKEN}")]


async def test_shared_file_hosted_elsewhere_is_not_fetched_and_the_thread_says_so(bridge: Bridge,
                                                                                  canary: Canary) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "send me the brochure", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    file = dict(bridge.slack.add_file(b"%PDF", "brochure.pdf", "application/pdf", user=STAFF))
    file["url_private"] = f"{canary.url}/metrics"
    file["url_private_download"] = f"{canary.url}/metrics"
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "here", thread_ts=parent["ts"], files=[file])
    assert await bridge.event(event, event_id="EvREMOTE") == 200
    told = await eventually(lambda: bridge.slack.ephemerals)
    assert "not on Slack" in told[0]["text"]
    note = await eventually(lambda: [m for m in bridge.replies(parent["ts"]) if "leaves Slack" in all_text(m)])
    assert f"<@{STAFF}>" in all_text(note[0])
    assert canary.hits == []
    assert bridge.graph.sends_to(WA_ID) == []
    assert await bridge.count(Message, Message.source == "slack") == 0

