"""Malformed input gets a 4xx or a readable Slack answer, never a 5xx; refusals are logged one line each."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from bot.app.components import onboarding_component
from bot.app.factory import create_app
from bot.app.rejections import RateLimitedLog
from bot.app.slack_component import make_slack_component
from bot.core import json_limits
from bot.handlers import appkeys
from bot.handlers.slack_actions import PICKER_CALLBACK, STALE_FORM, TEMPLATE_BLOCK, TEMPLATE_SELECT, PickerTarget
from bot.slack.payloads import as_id, metadata
from bot.standins import GraphStandin, sign_slack
from storage.models import Conversation, Template, WebhookLog
from tests.harness import FAST_OUTBOX, STAFF, Bridge, now_ts, thread_with, workspace_standin
from tests.helpers import SIGNING_SECRET, SLACK_CHANNEL, WABA, inbound_text, make_settings, signed

DEEP = "[" * 100_000 + "]" * 100_000


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert json_limits.nesting_depth('{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]"}]}') == 3
    assert json_limits.nesting_depth(DEEP) == 100_000
    assert json_limits.nesting_depth('[[1], {"a": [2]}, "]]]]"]') == 3
    assert json_limits.loads('{"a": [1]}') == {"a": [1]}
    with pytest.raises(json_limits.TooDeep):
        json_limits.loads(DEEP)
    with pytest.raises(ValueError):
        json_limits.loads("{not json")


def test_ids_and_metadata_from_slack_are_checked_not_trusted() -> None:
    assert as_id("12") == 12 and as_id(" #7 ") == 7 and as_id(3) == 3
    for bad in ("x", "1.5", "²", "-1", "0", str(2**31), "9" * 5000, True, None, [1], {"a": 1}, 2**40):
        assert as_id(bad) is None, bad
    assert metadata('{"campaign_id": 3}') == {"campaign_id": 3}
    for bad in ("not json", "[1]", DEEP, None, 5, ""):
        assert metadata(bad) == {}, bad
    assert PickerTarget.load('{"conversation_id": "x", "channel": "C", "thread_ts": "1"}') is None
    assert PickerTarget.load('{"conversation_id": 4, "channel": "C", "thread_ts": "1.2"}') == PickerTarget(4, "C",
                                                                                                        "1.2")


def test_rejection_log_is_rate_limited_per_key_and_counts_what_it_held_back() -> None:
    now = [0.0]
    limiter = RateLimitedLog(per_window=2, window=60.0, clock=lambda: now[0])
    assert [limiter.admit("a")[0] for _ in range(5)] == [True, True, False, False, False]
    assert limiter.admit("b") == (True, 0)
    now[0] = 61.0
    assert limiter.admit("a") == (True, 3)
    assert limiter.admit("a") == (True, 0)


async def _raw(port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await reader.read()
    writer.close()
    return int(head.split(b" ", 2)[1])


async def test_requests_aiohttp_refuses_are_one_rate_limited_line_without_a_traceback(
        aiohttp_client: Any, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings(db_url), workers=False, webhooks=False)

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    port = client.server.port
    assert port is not None
    caplog.set_level(logging.INFO)
    long_query = b"GET /healthz?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(15):
        assert await _raw(port, long_query) == 400
    assert await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 100_000 + b"\r\n\r\n") == 400
    assert await _raw(port, b"GET /health\x00z HTTP/1.1\r\nHost: x\r\n\r\n") == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.app.rejections"]
    assert len(lines) == 10  # the limiter's lines per minute; the rest are counted, not written
    assert lines[0] == "rejected a malformed request from 127.0.0.1: 400 request line or header too long"
    assert all(len(line) < 300 and "qqqq" not in line for line in lines)
    assert [r for r in caplog.records if r.exc_info or r.name == "aiohttp.server"] == []

    assert (await client.get("/broken")).status == 500  # our own bug keeps its traceback
    bugs = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(bugs) == 1 and bugs[0].exc_info and isinstance(bugs[0].exc_info[1], RuntimeError)


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    """The app with Slack and the onboarding page mounted, against the stand-ins."""
    slack = await workspace_standin()
    graph = GraphStandin()
    await graph.start()
    settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url)
    client = await aiohttp_client(create_app(settings, components=[make_slack_component(**FAST_OUTBOX),
                                                                   onboarding_component]))
    try:
        yield Bridge(client, slack, graph)
    finally:
        await slack.stop()
        await graph.stop()


async def _slack(b: Bridge, body: bytes, content_type: str, *, sign: bool = True) -> tuple[int, str]:
    headers = {"Content-Type": content_type, **(sign_slack(SIGNING_SECRET, body) if sign else {})}
    resp = await b.client.post("/slack/events", data=body, headers=headers)
    return resp.status, await resp.text()


def _form(payload: str) -> bytes:
    return urlencode({"payload": payload}).encode()


async def test_deeply_nested_json_is_400_on_every_endpoint(bridge: Bridge, caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    caplog.set_level(logging.WARNING, logger="bot.app.rejections")
    body, headers = signed(DEEP.encode())
    resp = await bridge.client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 400 and "nested" in (await resp.json())["error"]
    assert await bridge.count(WebhookLog) == 0
    assert (await _slack(bridge, DEEP.encode(), "application/json"))[0] == 400
    assert (await _slack(bridge, DEEP.encode(), "application/json", sign=False))[0] == 401
    assert (await _slack(bridge, _form(DEEP), "application/x-www-form-urlencoded"))[0] == 400
    resp = await bridge.client.post("/onboard/complete", data=DEEP, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.app.rejections"]
    assert len(lines) == 5 and all("\n" not in line for line in lines)
    assert any("rejected POST /webhooks/meta" in line and "400" in line for line in lines)
    assert any("rejected POST /slack/events" in line and "401" in line for line in lines)


async def test_slack_bodies_bolt_cannot_parse_are_400(bridge: Bridge) -> None:
    for body, ctype in [(b"{not json", "application/json"), (b"[1, 2]", "application/json"),
                        (_form("{broken"), "application/x-www-form-urlencoded"),
                        (_form('"a string"'), "application/x-www-form-urlencoded")]:
        assert (await _slack(bridge, body, ctype))[0] == 400, body


async def _interaction(b: Bridge, payload: dict[str, Any]) -> tuple[int, str]:
    data = {"team": {"id": b.slack.team_id}, "api_app_id": b.slack.app_id, "user": {"id": STAFF}, **payload}
    return await _slack(b, _form(json.dumps(data)), "application/x-www-form-urlencoded")


def _picker(metadata_: str, template_value: str) -> dict[str, Any]:
    return {"type": "view_submission", "trigger_id": "1.2.3", "view": {
        "id": "V1", "type": "modal", "callback_id": PICKER_CALLBACK, "private_metadata": metadata_,
        "state": {"values": {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {"type": "static_select",
                                                                 "selected_option": {"value": template_value}}}}}}}


async def test_picker_submissions_with_bad_metadata_or_ids_get_a_readable_answer(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    conv = await bridge.one(Conversation)
    good_meta = PickerTarget(conv.id, SLACK_CHANNEL, parent["ts"]).dump()
    async with bridge.app[appkeys.SESSIONS]() as s, s.begin():
        s.add(Template(waba_id=WABA, name="hello", language="en", category="UTILITY", status="APPROVED",
                       components=[]))
    for meta in ("not json", "[1]", json.dumps({"conversation_id": "x"}), DEEP[:500]):
        status, text = await _interaction(bridge, _picker(meta, "1"))
        assert status == 200 and json.loads(text)["errors"][TEMPLATE_BLOCK] == STALE_FORM, meta
    for value in ("abc", "9" * 40, "1.5", "-3"):
        status, text = await _interaction(bridge, _picker(good_meta, value))
        assert status == 200 and json.loads(text)["errors"][TEMPLATE_BLOCK] == "Pick a template.", value
    assert bridge.graph.sends == []


async def test_wrong_types_in_slack_payloads_are_4xx_not_5xx(bridge: Bridge) -> None:
    cases: list[dict[str, Any]] = [
        {"type": "view_submission", "view": {"id": "V1", "callback_id": PICKER_CALLBACK, "private_metadata": 5,
                                             "state": "values"}},
        {"type": "view_submission", "view": {"id": "V1", "callback_id": PICKER_CALLBACK,
                                             "state": {"values": [1, 2]}}},
        {"type": "block_actions", "actions": [{"action_id": "wabridge_open_template_picker", "value": [1]}]},
        {"type": "block_actions", "actions": [{"action_id": TEMPLATE_SELECT, "selected_option": "x"}],
         "view": {"private_metadata": {"a": 1}}},
        {"type": "message_action", "callback_id": "wabridge_toggle_opt_out", "channel": ["C"], "message": 3},
        {"type": "view_submission", "view": "not a view"},
        {"type": ["view_submission"]},
    ]
    for payload in cases:  # refused at the edge by the payload check, before any listener runs
        status, text = await _interaction(bridge, payload)
        assert status == 400 and "shape" in text, payload
    event = {"token": "t", "team_id": bridge.slack.team_id, "api_app_id": bridge.slack.app_id,
             "type": "event_callback", "event_id": "EvODD", "event_time": now_ts(),
             "event": {"type": "message", "channel": {"id": "C"}, "user": ["U"], "ts": 5, "thread_ts": [1]}}
    status, _ = await _slack(bridge, json.dumps(event).encode(), "application/json")
    assert status == 400
