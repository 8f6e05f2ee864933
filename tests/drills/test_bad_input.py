"""Bad-input drills: hostile or broken requests never get a 500, never stop the processor, never act when they
should not, and customer text never becomes a live Slack mention.

- Signed arbitrary JSON-ish deliveries (hypothesis) into `POST /webhooks/meta` and on through processing and
  the Slack outbox: every answer is 200 or 400, every stored delivery ends processed (or with its error
  recorded), and the worker keeps going.
- Oversized bodies (announced or streamed) -> 413; invalid UTF-8 -> 400; wrong or missing signatures -> 401;
  none of them stored.
- A Slack request with a valid signature but a timestamp over five minutes away -> 401 and no action.
- `<!channel>`, `<!here>`, `<@U…>`, `<url|label>` in what a customer controls arrive escaped in the text
  and blocks Slack stores.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.app.factory import create_app
from bot.handlers import appkeys
from bot.meta.signature import sign
from storage.models import Message, SlackOutbox, WebhookLog
from tests.harness import STAFF, WA_ID, Bridge, bridges, eventually, now_ts, thread_with
from tests.helpers import (
    APP_SECRET,
    SIGNING_SECRET,
    SLACK_CHANNEL,
    envelope,
    inbound_text,
    make_settings,
    metadata,
    signed,
)
from tests.test_parser import EXPECTED, envelopes, json_values, load

# ---- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    """The app with its webhook worker and Slack outbox, against the Slack and Graph stand-ins."""
    async with bridges(aiohttp_client, db_url) as build:
        yield await build()


async def count(b: Bridge, model: Any, *where: Any) -> int:
    async with b.app[appkeys.SESSIONS]() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def post_signed(b: Bridge, body: bytes, headers: dict[str, str] | None = None) -> int:
    resp = await b.client.post("/webhooks/meta", data=body, headers=headers if headers is not None else signed(body)[1])
    await resp.read()
    return resp.status


# ---- fuzzing the webhook path ------------------------------------------------------------------------


@st.composite
def mutated_fixtures(draw: Callable[..., Any]) -> object:
    """A documented delivery with one sub-tree replaced by arbitrary JSON."""
    node: Any = load(draw(st.sampled_from(sorted(EXPECTED))))
    root = node
    parent: Any = None
    key: Any = None
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        parent = node
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(
            st.integers(0, len(node) - 1))
        node = node[key]
    if parent is None:
        return draw(json_values)
    parent[key] = draw(json_values)
    return root


hostile_text = st.text(max_size=300) | st.sampled_from(["<!channel>", "<!here|here>", "<@U0STAFF>", "*bold*",
                                                          "&amp;&lt;", "`code`", "```\n", "> quote", "\n" * 50])
texts_from_customers = st.builds(
    lambda wamid, text, wa_id, name, ts: inbound_text(f"wamid.{wamid}", text, wa_id=wa_id, name=name, ts=ts),
    st.text(max_size=20),
    hostile_text,
    st.sampled_from([WA_ID, "919800000001", ""]) | st.text(max_size=16),
    st.text(max_size=40),
    st.integers(min_value=-(2**40), max_value=2**40),
)
deliveries = st.one_of(mutated_fixtures(), envelopes, texts_from_customers, json_values)
encoded = st.builds(lambda payload, ascii_only: json.dumps(payload, ensure_ascii=ascii_only).encode(),
                    deliveries, st.booleans()) | st.binary(max_size=300)


async def nothing_left_over(b: Bridge) -> bool:
    """Every delivery processed or its error recorded; every Slack post done or given up with a reason."""
    return (await count(b, WebhookLog, WebhookLog.processed_at.is_(None), WebhookLog.error.is_(None)) == 0
            and await count(b, SlackOutbox, SlackOutbox.done_at.is_(None)) == 0)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=encoded)
async def test_arbitrary_signed_deliveries_never_get_a_500_and_never_stop_processing(bridge: Bridge,
                                                                                    body: bytes) -> None:
    status = await post_signed(bridge, body)
    assert status in (200, 400)
    # The worker took it (or recorded why not) and is still there for the next one; the outbox likewise.
    await eventually(lambda: nothing_left_over(bridge), timeout=10)


async def test_text_no_database_can_hold_as_sent_is_stored_and_mirrored_not_retried_for_ever(
        bridge: Bridge) -> None:
    # NUL and lone surrogates are legal JSON escapes; PostgreSQL text cannot hold NUL, UTF-8 no lone surrogate.
    odd = ["a\u0000b", "\ud83d", "x\udfffy", "\u202eevil", "\ufeff", "😀" * 2000]
    for i, text in enumerate(odd):
        assert await post_signed(bridge, signed(inbound_text(f"wamid.ODD{i}", text, ts=now_ts(i)))[0]) == 200
    await eventually(lambda: nothing_left_over(bridge), timeout=15)
    assert await count(bridge, WebhookLog, WebhookLog.error.is_not(None)) == 0
    assert await count(bridge, SlackOutbox, SlackOutbox.last_error.is_not(None)) == 0
    async with bridge.app[appkeys.SESSIONS]() as s:
        stored = {m.wamid: m.text for m in (await s.scalars(select(Message))).all()}
    assert stored["wamid.ODD0"] == "a\ufffdb" and stored["wamid.ODD2"] == "x\ufffdy"
    assert len(stored) == len(odd)


# ---- size, encoding and signatures ---------------------------------------------------------------------


async def test_oversized_bodies_are_413_whether_announced_or_streamed(aiohttp_client: Any, db_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url, server={"max_body_bytes": 4096}),
                                             workers=False))
    big, headers = signed({"object": "whatsapp_business_account", "pad": "x" * 10_000})

    async def stream() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse it by
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    assert (await client.post("/webhooks/meta", data=big, headers=headers)).status == 413
    assert (await client.post("/webhooks/meta", data=stream(), headers=headers)).status == 413
    fits, fits_headers = signed({"object": "whatsapp_business_account", "pad": "x" * 3000})
    assert (await client.post("/webhooks/meta", data=fits, headers=fits_headers)).status == 200
    async with client.app[appkeys.SESSIONS]() as s:
        assert (await s.scalars(select(WebhookLog.raw_body))).all() == [fits]


@pytest.mark.parametrize("body", [
    b'{"object": "whatsapp_business_account", "x": "\xff"}',
    b'{"object": "\xc3\x28"}',
    b'{"object": "\xc0\xaf"}',  # an overlong encoding of "/"
    b'{"object": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
    '{"object": "whatsapp_business_account"}'.encode("latin-1") + b"\xe9",
    '{"object": "whatsapp_business_account"}'.encode("utf-16"),  # valid JSON, but not UTF-8
])
async def test_invalid_utf8_with_a_valid_signature_is_400_and_not_stored(bridge: Bridge, body: bytes) -> None:
    assert await post_signed(bridge, body) == 400
    assert await count(bridge, WebhookLog) == 0


async def test_wrong_or_missing_signatures_are_401_and_nothing_is_stored(bridge: Bridge) -> None:
    body = signed(inbound_text("wamid.SIG", "hello"))[0]
    good = sign(APP_SECRET, body)
    wrong: list[dict[str, str]] = [
        {},
        {"X-Hub-Signature-256": ""},
        {"X-Hub-Signature-256": "sha256="},
        {"X-Hub-Signature-256": good.removeprefix("sha256=")},
        {"X-Hub-Signature-256": sign("another-secret", body)},
        {"X-Hub-Signature-256": sign(APP_SECRET, body + b" ")},
        {"X-Hub-Signature-256": good[:-1] + ("0" if good[-1] != "0" else "1")},
        {"X-Hub-Signature": "sha1=" + "0" * 40},
        {"X-Hub-Signature-256": "sha256=" + "é" * 64},
    ]
    for headers in wrong:
        assert await post_signed(bridge, body, {"Content-Type": "application/json", **headers}) == 401, headers
    assert await count(bridge, WebhookLog) == 0


# ---- Slack requests out of their time ------------------------------------------------------------------


def slack_event_body(b: Bridge, event: dict[str, Any], event_id: str) -> bytes:
    return json.dumps({"token": "t", "team_id": b.slack.team_id, "api_app_id": b.slack.app_id, "event": event,
                       "type": "event_callback", "event_id": event_id, "event_time": now_ts(),
                       "authorizations": [{"team_id": b.slack.team_id, "user_id": b.slack.bot_user_id,
                                           "is_bot": True}]}).encode()


async def post_slack(b: Bridge, body: bytes, timestamp: str) -> int:
    from bot.standins import sign_slack

    headers = {"Content-Type": "application/json", **sign_slack(SIGNING_SECRET, body, int(timestamp))}
    resp = await b.client.post("/slack/events", data=body, headers=headers)
    await resp.read()
    return resp.status


async def test_slack_request_with_a_valid_signature_but_an_old_timestamp_is_refused_and_not_acted_on(
        bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "Is the Monday batch full?", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    reply = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "Yes, 3 seats left", thread_ts=parent["ts"])

    for age in (301, 3600, -301):  # a replay from minutes ago, an hour ago, and one stamped in the future
        body = slack_event_body(bridge, reply, f"EvOLD{age}")
        assert await post_slack(bridge, body, str(int(time.time()) - age)) == 401, age
    await asyncio.sleep(1.0)  # had any of them been acted on, the send would be under way by now
    assert bridge.graph.sends_to(WA_ID) == []
    assert await count(bridge, Message, Message.source == "slack") == 0

    # The same request, fresh, is acted on: the refusals above were about its age, nothing else.
    assert await post_slack(bridge, slack_event_body(bridge, reply, "EvFRESH"), str(int(time.time()))) == 200
    await eventually(lambda: bridge.graph.sends_to(WA_ID))


# ---- mentions and links in customer text ---------------------------------------------------------------

INJECTIONS = ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil.example|click>",
              "<!subteam^S123>", "<#C123>", "<mailto:a@evil.example|mail>"]


def location(wamid: str, text: str, ts: int) -> dict[str, Any]:
    return envelope("messages", {
        "messaging_product": "whatsapp", "metadata": metadata(),
        "contacts": [{"profile": {"name": text}, "wa_id": "919800000002"}],
        "messages": [{"from": "919800000002", "id": wamid, "timestamp": str(ts), "type": "location",
                      "location": {"latitude": 26.8, "longitude": 80.9, "name": text, "address": text}}]})


async def test_mentions_and_links_in_customer_text_arrive_escaped(bridge: Bridge) -> None:
    hostile = " ".join(INJECTIONS)
    await bridge.webhook(inbound_text("wamid.INJ1", f"hi {hostile} bye", name=f"Ravi {hostile}", ts=now_ts(-60)))
    await bridge.webhook(location("wamid.INJ2", hostile, now_ts(-30)))
    await eventually(lambda: nothing_left_over(bridge), timeout=15)

    held = bridge.slack.messages(SLACK_CHANNEL)
    assert len(held) == 2  # two threads, each parent carrying its message
    for m in held:
        shown = json.dumps({"text": m.get("text"), "blocks": m.get("blocks")}, ensure_ascii=False)
        assert [raw for raw in INJECTIONS if raw in shown] == [], shown
        assert "<!" not in shown and "<@" not in shown and "<#" not in shown
    reply = next(m for m in held if "bye" in json.dumps(m.get("blocks"), ensure_ascii=False))
    body = json.dumps(reply.get("blocks"), ensure_ascii=False)  # `text` is only a short summary now
    assert "&lt;!channel&gt;" in body and "&lt;@U123&gt;" in body
    for call in bridge.slack.calls_to("chat.postMessage"):  # nothing asks Slack to turn names into mentions
        assert call.args.get("parse") in (None, "none") and not call.args.get("link_names")


async def test_slack_requests_with_malformed_signature_headers_or_bodies_are_refused_not_500(
        bridge: Bridge) -> None:
    from bot.standins import sign_slack

    body = slack_event_body(bridge, {"type": "message", "channel": SLACK_CHANNEL, "user": STAFF, "text": "x",
                                     "ts": "1700000000.000100"}, "EvBAD")
    good = sign_slack(SIGNING_SECRET, body)
    cases: list[tuple[bytes, dict[str, str]]] = [
        (body, {}),
        (body, {**good, "X-Slack-Request-Timestamp": "abc"}),
        (body, {**good, "X-Slack-Request-Timestamp": ""}),
        (body, {**good, "X-Slack-Signature": "v0=" + "é" * 64}),
        (b"\xff\xfe{}", sign_slack(SIGNING_SECRET, b"\xff\xfe{}")),
    ]
    answers = []
    for raw, headers in cases:
        resp = await bridge.client.post("/slack/events", data=raw,
                                        headers={"Content-Type": "application/json", **headers})
        answers.append((resp.status, headers.get("X-Slack-Request-Timestamp"), raw[:3]))
    assert [a for a in answers if a[0] not in (400, 401)] == []
