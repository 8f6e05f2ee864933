"""The Meta and Slack stand-ins behave like the real services towards unmodified clients."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.standins import GraphStandin, SlackStandin, sign_meta, sign_slack

PNID = "100000000000001"
TOKEN = "token-lucknow"
CHANNEL = "C0LUCKNOW"
BOT_TOKEN = "xoxb-test"


# ---- shared: a capture server for signed deliveries ---------------------------------------------


class Capture:
    """A tiny real server that records what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    async def __aenter__(self) -> Capture:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class FixedClock(Clock):
    def now(self) -> float:
        return 1_700_000_010.0


def test_sign_slack_matches_slack_sdk_verifier() -> None:
    body = b"token=x&team_id=T1&command=%2Fcampaign&text=new"
    headers = sign_slack("s3cret", body, timestamp=1_700_000_000)
    assert headers["X-Slack-Request-Timestamp"] == "1700000000"
    args = (body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert SignatureVerifier("s3cret", clock=FixedClock()).is_valid(*args)
    assert not SignatureVerifier("other", clock=FixedClock()).is_valid(*args)


def test_sign_meta_is_prefixed_hex_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    expected = hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    assert sign_meta("app-secret", body) == f"sha256={expected}"
    assert sign_meta("app-secret", body + b" ") != sign_meta("app-secret", body)


# ---- Graph stand-in, raw HTTP --------------------------------------------------------------------


@pytest.fixture
async def graph() -> AsyncIterator[GraphStandin]:
    async with GraphStandin(tokens={TOKEN: [PNID]}) as server:
        yield server


async def _post_message(base: str, body: Any, token: str = TOKEN) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{base}/v23.0/{PNID}/messages", json=body, headers={"Authorization": f"Bearer {token}"})


async def test_graph_missing_parameters_get_code_100_bodies(graph: GraphStandin) -> None:
    response = await _post_message(graph.base_url, {"to": "919812345678", "type": "text", "text": {"body": "x"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100
    assert "messaging_product" in error["message"]
    assert error["type"] == "OAuthException" and error["fbtrace_id"]
    response = await _post_message(
        graph.base_url,
        {"messaging_product": "whatsapp", "to": "919812345678", "type": "template", "template": {}},
    )
    assert response.json()["error"]["code"] == 100
    assert graph.sends == []


async def test_graph_wrong_token_gets_401_code_190(graph: GraphStandin) -> None:
    body = {"messaging_product": "whatsapp", "to": "91981", "type": "text", "text": {"body": "x"}}
    response = await _post_message(graph.base_url, body, token="bad")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190


async def test_graph_cap_holds_in_every_sliding_second_under_concurrency(graph: GraphStandin) -> None:
    graph.set_mps(PNID, 3)
    body = {"messaging_product": "whatsapp", "to": "919812345678", "type": "text", "text": {"body": "x"}}
    responses = await asyncio.gather(*(_post_message(graph.base_url, body) for _ in range(10)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == len(graph.sends)
    assert statuses.count(400) == len(graph.throttle_hits) >= 1
    for r in responses:
        if r.status_code == 400:
            assert r.json()["error"]["message"] == "(#130429) Rate limit hit"
    assert len(graph.attempts) == 10
    times = [s.time for s in graph.sends]
    for t in times:
        assert sum(1 for u in times if t <= u < t + 1.0) <= 3


async def test_graph_template_paging_next_is_absolute(graph: GraphStandin) -> None:
    graph.add_token(TOKEN, "waba-1")
    for i in range(3):
        graph.add_template("waba-1", f"t{i}", "en")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        first = (await http.get(f"{graph.base_url}/v23.0/waba-1/message_templates", params={"limit": 2})).json()
        assert [t["name"] for t in first["data"]] == ["t0", "t1"]
        assert first["paging"]["next"].startswith(graph.base_url)
        second = (await http.get(first["paging"]["next"])).json()
    assert [t["name"] for t in second["data"]] == ["t2"]
    assert "next" not in second["paging"]


async def test_graph_media_url_requires_token_and_signature(graph: GraphStandin) -> None:
    media_id = graph.add_media(b"voice-note", "audio/ogg")
    async with httpx.AsyncClient() as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        info = (await http.get(f"{graph.base_url}/v23.0/{media_id}", headers=auth)).json()
        assert info["messaging_product"] == "whatsapp" and info["file_size"] == len(b"voice-note")
        ok = await http.get(info["url"], headers=auth)
        assert ok.content == b"voice-note" and ok.headers["content-type"].startswith("audio/ogg")
        assert (await http.get(info["url"], headers={"Authorization": "Bearer bad"})).status_code == 401
        tampered = info["url"].split("?")[0] + "?sig=wrong"
        assert (await http.get(tampered, headers=auth)).status_code == 404


async def test_graph_upload_rejects_oversized_images(graph: GraphStandin) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        response = await http.post(
            f"{graph.base_url}/v23.0/{PNID}/media",
            data={"messaging_product": "whatsapp", "type": "image/jpeg"},
            files={"file": ("big.jpg", b"x" * (5 * 1024 * 1024 + 1), "image/jpeg")},
        )
    assert response.json()["error"]["code"] == 131053


async def test_graph_delivers_signed_webhooks(graph: GraphStandin) -> None:
    payload = {"object": "whatsapp_business_account", "entry": []}
    async with Capture() as capture:
        status, _ = await graph.deliver_webhook(capture.url, payload, app_secret="app-secret")
    assert status == 200
    [(headers, body)] = capture.requests
    assert json.loads(body) == payload
    assert headers["X-Hub-Signature-256"] == sign_meta("app-secret", body)


# ---- Slack stand-in with slack_sdk ---------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    async with SlackStandin(bot_token=BOT_TOKEN) as server:
        server.add_channel(CHANNEL, "lucknow")
        yield server


@pytest.fixture
def web_client(slack: SlackStandin) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


async def test_auth_test_and_invalid_auth(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    auth = await web_client.auth_test()
    assert (auth["user_id"], auth["bot_id"]) == (slack.bot_user_id, slack.bot_id)
    assert "chat:write" in auth.headers["X-OAuth-Scopes"]
    with pytest.raises(SlackApiError) as info:
        await AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url).auth_test()
    assert info.value.response["error"] == "invalid_auth"


async def test_post_message_in_thread(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    parent = await web_client.chat_postMessage(channel=CHANNEL, text="Ravi (+91 98123 45678)")
    reply = await web_client.chat_postMessage(
        channel=CHANNEL, thread_ts=parent["ts"], text="Hello", username="Ravi", icon_url="https://x/y.png"
    )
    assert float(reply["ts"]) > float(parent["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"]
    thread = slack.thread(CHANNEL, parent["ts"])
    assert [m["text"] for m in thread] == ["Ravi (+91 98123 45678)", "Hello"]
    assert thread[0]["reply_count"] == 1
    assert thread[1]["username"] == "Ravi" and thread[1]["icons"] == {"image_48": "https://x/y.png"}
    history = await web_client.conversations_history(channel=CHANNEL)
    assert [m["ts"] for m in history["messages"]] == [parent["ts"]]  # replies stay in the thread


async def test_rate_limit_answers_429_with_retry_after(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    slack.rate_limit("chat.postMessage", times=1, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=CHANNEL, text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"
    assert slack.messages(CHANNEL) == []
    await web_client.chat_postMessage(channel=CHANNEL, text="x")
    assert len(slack.messages(CHANNEL)) == 1


async def test_per_channel_limit_refuses_beyond_the_burst_per_channel_only(
        slack: SlackStandin, web_client: AsyncWebClient) -> None:
    slack.limit_per_channel("chat.postMessage", per_second=0.01, burst=3)  # refills in 100 s
    for i in range(3):
        await web_client.chat_postMessage(channel=CHANNEL, text=f"burst {i}")
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=CHANNEL, text="one too many")
    assert info.value.response.status_code == 429
    assert info.value.response["error"] == "ratelimited"
    assert 90 <= int(info.value.response.headers["Retry-After"]) <= 100
    await web_client.chat_postMessage(channel="C0OTHER", text="another channel has its own allowance")
    await web_client.reactions_add(channel=CHANNEL, timestamp=slack.messages(CHANNEL)[0]["ts"], name="eyes")
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["burst 0", "burst 1", "burst 2"]


async def test_rate_limit_retry_handler_gets_through(slack: SlackStandin) -> None:
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    client = AsyncWebClient(
        token=BOT_TOKEN,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    response = await client.chat_postMessage(channel=CHANNEL, text="after the wait")
    assert response["ok"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]


async def test_outage_and_recovery(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    slack.set_down(True)
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=CHANNEL, text="x")
    assert info.value.response.status_code == 503
    slack.set_down(False)
    await web_client.chat_postMessage(channel=CHANNEL, text="x")
    # A timed outage: the call right after it starts meets it (3 s is ample even on a busy machine) and it
    # ends by itself, no sooner than it said.
    started = time.monotonic()
    slack.outage(3.0)
    with pytest.raises(SlackApiError) as down:
        await web_client.auth_test()
    assert down.value.response.status_code == 503
    await asyncio.sleep(max(0.0, started + 3.0 - time.monotonic()))
    assert (await web_client.auth_test())["ok"]


async def test_files_upload_v2_end_to_end(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    parent = await web_client.chat_postMessage(channel=CHANNEL, text="thread")
    data = b"\x89PNG\r\n fake image bytes"
    response = await web_client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=parent["ts"],
        content=data,
        filename="photo.png",
        title="Customer photo",
        initial_comment="Ravi sent a photo",
    )
    file_id = response["file"]["id"]
    file = slack.files[file_id]
    assert (file["name"], file["title"], file["size"], file["mimetype"]) == (
        "photo.png",
        "Customer photo",
        len(data),
        "image/png",
    )
    [_, shared] = slack.thread(CHANNEL, parent["ts"])
    assert shared["text"] == "Ravi sent a photo" and shared["files"][0]["id"] == file_id
    assert file["shares"]["public"][CHANNEL][0]["ts"] == shared["ts"]
    info = await web_client.files_info(file=file_id)
    async with httpx.AsyncClient() as http:
        downloaded = await http.get(info["file"]["url_private"], headers={"Authorization": f"Bearer {BOT_TOKEN}"})
        assert downloaded.content == data
        assert (await http.get(info["file"]["url_private"])).status_code == 403
    assert [c.method for c in slack.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
        "files.info",
        "file_download",
        "file_download",
    ]


async def test_added_file_is_downloadable_with_bot_token(slack: SlackStandin) -> None:
    file = slack.add_file(b"%PDF", "quote.pdf")
    assert file["mimetype"] == "application/pdf"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as http:
        assert (await http.get(file["url_private_download"])).content == b"%PDF"


async def test_find_thread_by_metadata(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    metadata = {"event_type": "wabridge_conversation", "event_payload": {"wa_id": "919812345678"}}
    await web_client.chat_postMessage(channel=CHANNEL, text="other customer")
    parent = await web_client.chat_postMessage(channel=CHANNEL, text="Ravi", metadata=metadata)
    await web_client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text="hi")
    plain = await web_client.conversations_replies(channel=CHANNEL, ts=parent["ts"])
    assert all("metadata" not in m for m in plain["messages"])
    replies = await web_client.conversations_replies(channel=CHANNEL, ts=parent["ts"], include_all_metadata=True)
    assert replies["messages"][0]["metadata"] == metadata
    history = await web_client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    found = [m for m in history["messages"] if m.get("metadata", {}).get("event_payload") == {"wa_id": "919812345678"}]
    assert [m["ts"] for m in found] == [parent["ts"]]


async def test_history_paginates_newest_first(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    for i in range(5):
        await web_client.chat_postMessage(channel=CHANNEL, text=f"m{i}")
    first = await web_client.conversations_history(channel=CHANNEL, limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"]
    rest = await web_client.conversations_history(
        channel=CHANNEL, limit=10, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["m2", "m1", "m0"] and not rest["has_more"]


async def test_update_ephemeral_permalink_and_lookups(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    posted = await web_client.chat_postMessage(channel=CHANNEL, text="Campaign: 0/100 sent")
    updated = await web_client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Campaign: 100/100 sent")
    assert updated["text"] == "Campaign: 100/100 sent"
    assert slack.messages(CHANNEL)[0]["text"] == "Campaign: 100/100 sent"
    with pytest.raises(SlackApiError) as missing:
        await web_client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"
    slack.add_user("U0STAFF", "priya", real_name="Priya Sharma")
    ephemeral = await web_client.chat_postEphemeral(channel=CHANNEL, user="U0STAFF", text="Window closed")
    assert slack.ephemerals[0]["message_ts"] == ephemeral["message_ts"]
    link = await web_client.chat_getPermalink(channel=CHANNEL, message_ts=posted["ts"])
    assert CHANNEL in link["permalink"]
    user = await web_client.users_info(user="U0STAFF")
    assert user["user"]["real_name"] == "Priya Sharma"
    channel = await web_client.conversations_info(channel=CHANNEL)
    assert channel["channel"]["name"] == "lucknow"


async def test_strict_mode_rejects_unknown_channels_and_users() -> None:
    async with SlackStandin(bot_token=BOT_TOKEN, strict=True) as strict:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=strict.api_url)
        with pytest.raises(SlackApiError) as channel:
            await client.chat_postMessage(channel="C0NOPE", text="x")
        assert channel.value.response["error"] == "channel_not_found"
        with pytest.raises(SlackApiError) as user:
            await client.users_info(user="U0NOPE")
        assert user.value.response["error"] == "user_not_found"


async def test_reactions_add_and_remove(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    posted = await web_client.chat_postMessage(channel=CHANNEL, text="delivered?")
    await web_client.reactions_add(channel=CHANNEL, timestamp=posted["ts"], name="white_check_mark")
    with pytest.raises(SlackApiError) as again:
        await web_client.reactions_add(channel=CHANNEL, timestamp=posted["ts"], name="white_check_mark")
    assert again.value.response["error"] == "already_reacted"
    assert slack.messages(CHANNEL)[0]["reactions"][0]["name"] == "white_check_mark"
    await web_client.reactions_remove(channel=CHANNEL, timestamp=posted["ts"], name="white_check_mark")
    with pytest.raises(SlackApiError) as none:
        await web_client.reactions_remove(channel=CHANNEL, timestamp=posted["ts"], name="white_check_mark")
    assert none.value.response["error"] == "no_reaction"


async def test_views_need_a_fresh_trigger(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "campaign",
        "title": {"type": "plain_text", "text": "New"},
        "blocks": [],
    }
    with pytest.raises(SlackApiError) as invalid:
        await web_client.views_open(trigger_id="123.456.abc", view=view)
    assert invalid.value.response["error"] == "invalid_trigger_id"
    trigger = slack.issue_trigger_id()
    opened = await web_client.views_open(trigger_id=trigger, view=view)
    view_id = opened["view"]["id"]
    with pytest.raises(SlackApiError) as reused:
        await web_client.views_open(trigger_id=trigger, view=view)
    assert reused.value.response["error"] == "exchanged_trigger_id"
    assert SlackStandin(trigger_ttl=2.5).trigger_ttl == 2.5
    ttl, slack.trigger_ttl = slack.trigger_ttl, 0.0  # any time at all after it was issued is too late
    with pytest.raises(SlackApiError) as expired:
        await web_client.views_open(trigger_id=slack.issue_trigger_id(), view=view)
    assert expired.value.response["error"] == "expired_trigger_id"
    slack.trigger_ttl = ttl
    updated = await web_client.views_update(view_id=view_id, view={**view, "private_metadata": "step2"})
    assert slack.views[view_id]["private_metadata"] == "step2"
    with pytest.raises(SlackApiError) as conflict:
        await web_client.views_update(view_id=view_id, hash="stale", view=view)
    assert conflict.value.response["error"] == "hash_conflict"
    await web_client.views_update(view_id=view_id, hash=updated["view"]["hash"], view=view)
    pushed = await web_client.views_push(trigger_id=slack.issue_trigger_id(), view=view)
    assert pushed["view"]["id"] != view_id


async def test_views_over_block_kit_limits_are_refused(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    def modal(option_text: str = "o", value: str = "v", title: str = "New", n: int = 1) -> dict[str, Any]:
        options = [{"text": {"type": "plain_text", "text": option_text}, "value": f"{value}{i}"} for i in range(n)]
        return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": [
            {"type": "input", "label": {"type": "plain_text", "text": "l"},
             "element": {"type": "static_select", "action_id": "a", "options": options}}]}

    await web_client.views_open(trigger_id=slack.issue_trigger_id(), view=modal("o" * 75, "v" * 148, "t" * 24, 100))
    for bad in (modal(option_text="o" * 76), modal(value="v" * 150), modal(title="t" * 25), modal(n=101)):
        with pytest.raises(SlackApiError) as refused:
            await web_client.views_open(trigger_id=slack.issue_trigger_id(), view=bad)
        assert refused.value.response["error"] == "invalid_arguments"


async def test_injected_errors_and_call_log(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", "is_archived")
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=CHANNEL, text="x", thread_ts=None)
    assert info.value.response["error"] == "is_archived"
    call = slack.calls_to("chat.postMessage")[0]
    assert (call.ok, call.error, call.args["channel"], call.args["text"]) == (
        False,
        "is_archived",
        CHANNEL,
        "x",
    )


async def test_user_message_is_delivered_as_a_signed_event(slack: SlackStandin, web_client: AsyncWebClient) -> None:
    parent = await web_client.chat_postMessage(channel=CHANNEL, text="Ravi")
    slack.add_user("U0STAFF", "priya")
    event = slack.user_message(CHANNEL, "U0STAFF", "On its way!", thread_ts=parent["ts"])
    assert event["thread_ts"] == parent["ts"] and event["channel"] == CHANNEL
    async with Capture() as capture:
        status, _ = await slack.send_event(capture.url, event, "signing-secret")
    assert status == 200
    [(headers, body)] = capture.requests
    verifier = SignatureVerifier("signing-secret")
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    envelope = json.loads(body)
    assert envelope["type"] == "event_callback" and envelope["event"]["text"] == "On its way!"
    assert [m["text"] for m in slack.thread(CHANNEL, parent["ts"])] == ["Ravi", "On its way!"]


async def test_bolt_app_runs_against_the_standin(slack: SlackStandin) -> None:
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp

    bolt = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url),
        signing_secret="signing-secret",
        process_before_response=True,
    )
    view = {"type": "modal", "callback_id": "campaign", "title": {"type": "plain_text", "text": "New"}, "blocks": []}

    @bolt.command("/campaign")
    async def open_modal(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    @bolt.event("message")
    async def echo(event: dict[str, Any], say: Any) -> None:
        if event.get("bot_id") is None:
            await say(text=f"got: {event['text']}", thread_ts=event.get("thread_ts") or event["ts"])

    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        status, _ = await slack.send_slash_command(
            url, "/campaign", "", user_id="U0STAFF", channel_id=CHANNEL, signing_secret="signing-secret"
        )
        assert status == 200
        assert [v["callback_id"] for v in slack.views.values()] == ["campaign"]
        parent = await AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url).chat_postMessage(
            channel=CHANNEL, text="Ravi"
        )
        event = slack.user_message(CHANNEL, "U0STAFF", "hello", thread_ts=parent["ts"])
        status, _ = await slack.send_event(url, event, "signing-secret")
        assert status == 200
        assert [m["text"] for m in slack.thread(CHANNEL, parent["ts"])] == ["Ravi", "hello", "got: hello"]
        status, _ = await slack.send_event(url, event, "wrong-secret")
        assert status == 401
    finally:
        await runner.cleanup()
