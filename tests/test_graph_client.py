"""GraphClient against the Graph stand-in, and the Meta error classification table."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.meta.errors import GraphError, SendAction, classify, explain, known_codes, parse_error_body
from bot.meta.graph import GraphClient
from bot.meta.origins import UntrustedURL
from bot.standins.graph import GraphStandin
from tests.canary import Canary

PNID = "100000000000001"
OTHER_PNID = "100000000000002"
WABA = "200000000000001"
TOKEN = "token-lucknow"
VERSION = "v23.0"


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    server = GraphStandin(tokens={TOKEN: [PNID, WABA]})
    server.add_phone_number(PNID, WABA, display_phone_number="+91 522 400 0000", verified_name="Lucknow Shop")
    server.add_token("token-other", OTHER_PNID)
    async with server:
        yield server


@pytest.fixture
async def client(standin: GraphStandin) -> AsyncIterator[GraphClient]:
    async with GraphClient(standin.base_url, VERSION, timeout=5.0) as graph:
        yield graph


class CountingTransport(httpx.AsyncBaseTransport):
    """Records every request URL, then forwards to a real transport."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


# ---- classification (pure) -----------------------------------------------------------------------

CLASSIFICATION = [
    (130429, SendAction.THROTTLE),
    (80007, SendAction.THROTTLE),
    (4, SendAction.THROTTLE),
    (131056, SendAction.RETRY_RECIPIENT_LATER),
    (131047, SendAction.WINDOW_CLOSED),
    (131026, SendAction.FAIL_RECIPIENT),
    (131049, SendAction.FAIL_RECIPIENT),
    (131051, SendAction.FAIL_RECIPIENT),
    (131052, SendAction.FAIL_RECIPIENT),
    (131053, SendAction.FAIL_RECIPIENT),
    (131008, SendAction.FAIL_RECIPIENT),
    (131009, SendAction.FAIL_RECIPIENT),
    (100, SendAction.FAIL_RECIPIENT),
    (132000, SendAction.FAIL_RECIPIENT),
    (132012, SendAction.FAIL_RECIPIENT),
    (131050, SendAction.OPT_OUT),
    (131042, SendAction.PAUSE_AND_ALERT),
    (190, SendAction.PAUSE_AND_ALERT),
    (368, SendAction.PAUSE_AND_ALERT),
    (131031, SendAction.PAUSE_AND_ALERT),
    (131048, SendAction.PAUSE_AND_ALERT),
    (132001, SendAction.PAUSE_AND_ALERT),
    (132015, SendAction.PAUSE_AND_ALERT),
    (132016, SendAction.PAUSE_AND_ALERT),
    (131000, SendAction.RETRY_BACKOFF),
    (131016, SendAction.RETRY_BACKOFF),
    (250, SendAction.PAUSE_AND_ALERT),  # the 200-299 permission range
]


@pytest.mark.parametrize(("code", "action"), CLASSIFICATION)
def test_each_documented_code_maps_to_its_send_action(code: int, action: SendAction) -> None:
    assert classify(code, 400) is action


@pytest.mark.parametrize(
    ("http_status", "action"),
    [
        (None, SendAction.RETRY_BACKOFF),
        (500, SendAction.RETRY_BACKOFF),
        (503, SendAction.RETRY_BACKOFF),
        (429, SendAction.THROTTLE),
        (401, SendAction.PAUSE_AND_ALERT),
        (400, SendAction.FAIL_RECIPIENT),
    ],
)
def test_unknown_code_falls_back_to_http_status(http_status: int | None, action: SendAction) -> None:
    assert classify(None, http_status) is action
    assert classify(999_999, http_status) is action


def test_code_wins_over_http_status() -> None:
    assert classify(131000, 400) is SendAction.RETRY_BACKOFF
    assert classify(131026, 500) is SendAction.FAIL_RECIPIENT


def test_inaccessible_object_subcode_pauses_instead_of_failing_the_recipient() -> None:
    assert classify(100, 400) is SendAction.FAIL_RECIPIENT
    assert classify(100, 400, subcode=33) is SendAction.PAUSE_AND_ALERT


def test_explanations_name_the_fix() -> None:
    assert explain(131047) == "outside the 24-hour window: send a template"
    assert explain(131042) == "payment problem: add a payment method in WhatsApp Manager"
    assert "token" in explain(190)
    assert explain(424242) == "WhatsApp error 424242"
    assert all(explain(code) for code in known_codes())


def test_parse_error_body_reads_every_field() -> None:
    body = {
        "error": {
            "message": "(#131047) Re-engagement message",
            "type": "OAuthException",
            "code": 131047,
            "error_subcode": 2494010,
            "error_user_title": "Re-engagement",
            "error_user_msg": "Send a template.",
            "error_data": {"messaging_product": "whatsapp", "details": "more than 24 hours"},
            "fbtrace_id": "Abc123",
        }
    }
    error = parse_error_body(400, body, "7")
    assert (error.http_status, error.code, error.subcode) == (400, 131047, 2494010)
    assert error.title == "Re-engagement"
    assert error.message == "(#131047) Re-engagement message"
    assert error.details == "more than 24 hours"
    assert error.fbtrace_id == "Abc123"
    assert error.user_message == "Send a template."
    assert error.retry_after == 7.0
    assert error.action is SendAction.WINDOW_CLOSED


def test_parse_error_body_without_user_title_uses_the_message_title() -> None:
    error = parse_error_body(400, {"error": {"message": "(#130429) Rate limit hit", "code": 130429}})
    assert error.title == "Rate limit hit"
    assert error.action is SendAction.THROTTLE


def test_parse_error_body_tolerates_non_json() -> None:
    error = parse_error_body(502, "<html>Bad gateway</html>")
    assert error.code is None
    assert error.action is SendAction.RETRY_BACKOFF


# ---- sending -------------------------------------------------------------------------------------


async def test_send_text_returns_wamid_and_records_the_payload(
    client: GraphClient, standin: GraphStandin
) -> None:
    result = await client.send_text(
        PNID, TOKEN, "+91 98123 45678", "Hello", reply_to="wamid.IN1", preview_url=True
    )
    assert result.wamid.startswith("wamid.")
    assert result.wa_id == "919812345678"
    [record] = standin.sends
    assert (record.phone_number_id, record.type, record.wamid) == (PNID, "text", result.wamid)
    assert record.payload["text"] == {"body": "Hello", "preview_url": True}
    assert record.payload["context"] == {"message_id": "wamid.IN1"}
    assert record.payload["recipient_type"] == "individual"


async def test_each_send_gets_a_distinct_wamid(client: GraphClient) -> None:
    first = await client.send_text(PNID, TOKEN, "919812345678", "one")
    second = await client.send_text(PNID, TOKEN, "919812345678", "two")
    assert first.wamid != second.wamid


async def test_send_template_with_matching_parameters(client: GraphClient, standin: GraphStandin) -> None:
    standin.add_template(WABA, "order_ready", "en", body="Hi {{1}}, order {{2}} is ready")
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": "Ravi"}, {"type": "text", "text": "42"}]}
    ]
    result = await client.send_template(PNID, TOKEN, "919812345678", "order_ready", "en", components)
    assert result.message_status == "accepted"
    template = standin.sends[-1].payload["template"]
    assert template["language"] == {"code": "en"}
    assert template["components"] == components


async def test_template_errors_are_classified(client: GraphClient, standin: GraphStandin) -> None:
    standin.add_template(WABA, "order_ready", "en", body="Hi {{1}}")
    standin.add_template(WABA, "old_promo", "en", body="Sale", status="PAUSED")
    with pytest.raises(GraphError) as wrong_count:
        await client.send_template(PNID, TOKEN, "919812345678", "order_ready", "en", [])
    assert (wrong_count.value.code, wrong_count.value.action) == (132000, SendAction.FAIL_RECIPIENT)
    with pytest.raises(GraphError) as missing:
        await client.send_template(PNID, TOKEN, "919812345678", "order_ready", "hi", [])
    assert (missing.value.code, missing.value.action) == (132001, SendAction.PAUSE_AND_ALERT)
    with pytest.raises(GraphError) as paused:
        await client.send_template(PNID, TOKEN, "919812345678", "old_promo", "en")
    assert (paused.value.code, paused.value.action) == (132015, SendAction.PAUSE_AND_ALERT)
    assert standin.sends == []


async def test_send_media_reaction_and_mark_read(client: GraphClient, standin: GraphStandin) -> None:
    await client.send_media(
        PNID, TOKEN, "919812345678", "document", "555", caption="Invoice", filename="inv.pdf"
    )
    await client.send_reaction(PNID, TOKEN, "919812345678", "wamid.IN1", "👍")
    assert await client.mark_read(PNID, TOKEN, "wamid.IN1") is True
    media, reaction = standin.sends
    assert media.payload["document"] == {"id": "555", "caption": "Invoice", "filename": "inv.pdf"}
    assert reaction.payload["reaction"] == {"message_id": "wamid.IN1", "emoji": "👍"}
    assert [r.payload["message_id"] for r in standin.reads] == ["wamid.IN1"]


async def test_send_media_refuses_combinations_whatsapp_rejects(
    client: GraphClient, standin: GraphStandin
) -> None:
    with pytest.raises(ValueError):
        await client.send_media(PNID, TOKEN, "919812345678", "audio", "555", caption="no")
    with pytest.raises(ValueError):
        await client.send_media(PNID, TOKEN, "919812345678", "image", "555", filename="x.png")
    with pytest.raises(ValueError):
        await client.send_media(PNID, TOKEN, "919812345678", "gif", "555")
    assert standin.sends == []


# ---- errors --------------------------------------------------------------------------------------


async def test_throughput_limit_raises_130429_throttle(client: GraphClient, standin: GraphStandin) -> None:
    standin.set_mps(PNID, 2)
    throttled: list[GraphError] = []
    for i in range(5):
        try:
            await client.send_text(PNID, TOKEN, "919812345678", f"m{i}")
        except GraphError as exc:
            throttled.append(exc)
    assert throttled, "five immediate sends at 2 mps must hit the limit"
    for error in throttled:
        assert (error.http_status, error.code, error.action) == (400, 130429, SendAction.THROTTLE)
        assert "Rate limit hit" in error.message
    assert len(standin.throttle_hits) == len(throttled)
    assert len(standin.sends) + len(throttled) == 5


async def test_invalid_token_raises_190_pause(client: GraphClient) -> None:
    with pytest.raises(GraphError) as info:
        await client.send_text(PNID, "expired-token", "919812345678", "hi")
    assert (info.value.http_status, info.value.code, info.value.action) == (
        401,
        190,
        SendAction.PAUSE_AND_ALERT,
    )
    assert info.value.fbtrace_id


async def test_token_of_another_number_cannot_send(client: GraphClient) -> None:
    with pytest.raises(GraphError) as info:
        await client.send_text(PNID, "token-other", "919812345678", "hi")
    assert (info.value.code, info.value.subcode) == (100, 33)
    assert info.value.action is SendAction.PAUSE_AND_ALERT


async def test_network_down_is_retry_backoff(standin: GraphStandin) -> None:
    url = standin.base_url
    await standin.stop()
    async with GraphClient(url, VERSION, timeout=2.0) as graph:
        with pytest.raises(GraphError) as info:
            await graph.send_text(PNID, TOKEN, "919812345678", "hi")
    assert info.value.code is None and info.value.http_status is None
    assert info.value.action is SendAction.RETRY_BACKOFF


async def test_timeout_is_retry_backoff(standin: GraphStandin) -> None:
    standin.set_latency(2.0)
    async with GraphClient(standin.base_url, VERSION, timeout=0.2) as graph:
        with pytest.raises(GraphError) as info:
            await graph.send_text(PNID, TOKEN, "919812345678", "hi")
    assert "timeout" in info.value.message
    assert info.value.action is SendAction.RETRY_BACKOFF


async def test_injected_failures(client: GraphClient, standin: GraphStandin) -> None:
    standin.fail_next(PNID, to="919812345678", code=131056)
    standin.fail_recipient("919800000000", 131026)
    standin.fail_next(code=131000, http_status=500, to="919811111111")
    with pytest.raises(GraphError) as pair:
        await client.send_text(PNID, TOKEN, "919812345678", "a")
    assert pair.value.action is SendAction.RETRY_RECIPIENT_LATER
    await client.send_text(PNID, TOKEN, "919812345678", "a again")  # fail_next is used up
    for _ in range(2):
        with pytest.raises(GraphError) as gone:
            await client.send_text(PNID, TOKEN, "919800000000", "b")
        assert gone.value.action is SendAction.FAIL_RECIPIENT
    with pytest.raises(GraphError) as server:
        await client.send_text(PNID, TOKEN, "919811111111", "c")
    assert (server.value.http_status, server.value.action) == (500, SendAction.RETRY_BACKOFF)
    assert [r.error_code for r in standin.rejected] == [131056, 131026, 131026, 131000]


# ---- media ---------------------------------------------------------------------------------------


async def test_media_round_trip_through_absolute_url(client: GraphClient, standin: GraphStandin) -> None:
    data = b"%PDF-1.4 invoice" * 100
    media_id = await client.upload_media(PNID, TOKEN, data, "application/pdf", "invoice.pdf")
    info = await client.get_media(media_id, TOKEN)
    assert info.url.startswith(standin.base_url + "/")
    assert (info.id, info.mime_type, info.file_size) == (media_id, "application/pdf", len(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await client.download_media(info.url, TOKEN) == data
    assert standin.media[media_id].filename == "invoice.pdf"


async def test_media_download_needs_the_token(client: GraphClient, standin: GraphStandin) -> None:
    media_id = standin.add_media(b"\x89PNG...", "image/png")
    info = await client.get_media(media_id, TOKEN)
    async with httpx.AsyncClient() as raw:
        assert (await raw.get(info.url)).status_code in (400, 401)
    with pytest.raises(GraphError) as bad:
        await client.download_media(info.url, "wrong")
    assert bad.value.code == 190


async def test_a_media_url_elsewhere_is_not_fetched_with_the_token(client: GraphClient, standin: GraphStandin) -> None:
    canary = Canary()
    await canary.start()
    try:
        standin.media_url_base = canary.url
        info = await client.get_media(standin.add_media(b"\x89PNG...", "image/png"), TOKEN)
        assert info.url.startswith(canary.url)
        with pytest.raises(UntrustedURL) as refused:
            await client.download_media(info.url, TOKEN)
        assert refused.value.origin == standin.media_url_base
    finally:
        await canary.stop()
    assert canary.hits == []


def test_only_graphs_origin_and_metas_media_host_are_followed() -> None:
    graph = GraphClient("https://graph.facebook.com", VERSION)
    followed = [
        "https://graph.facebook.com/v23.0/123/message_templates?after=x",
        "https://graph.facebook.com:443/v23.0/123",
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=3",
        "123/message_templates?after=x",  # relative: on Graph's base
    ]
    assert [graph.followable(u).split("/")[2] for u in followed] == [
        "graph.facebook.com", "graph.facebook.com", "lookaside.fbsbx.com", "graph.facebook.com"]
    refused = [
        "https://lookaside.fbsbx.com.evil.example/x",
        "http://lookaside.fbsbx.com/x",  # the token in the clear
        "https://graph.facebook.com:8443/v23.0/1",
        "https://graph.facebook.com@evil.example/v23.0/1",
        "//evil.example/v23.0/1",
        "https://evil.example/v23.0/1",
    ]
    for url in refused:
        with pytest.raises(UntrustedURL):
            graph.followable(url)


# ---- templates -----------------------------------------------------------------------------------


async def test_paging_elsewhere_stops_with_a_warning_and_sends_no_token(
        standin: GraphStandin, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(5):
        standin.add_template(WABA, f"template_{i}", "en")
    canary = Canary()
    await canary.start()
    try:
        standin.paging_base = elsewhere = canary.url
        async with GraphClient(standin.base_url, VERSION) as graph:
            seen = [t["name"] async for t in graph.list_templates(WABA, TOKEN, limit=2)]
    finally:
        await canary.stop()
    assert seen == ["template_0", "template_1"]
    assert canary.hits == []
    assert any("stopped paging" in r.getMessage() and elsewhere in r.getMessage() for r in caplog.records)




async def test_list_templates_follows_paging_over_three_pages(standin: GraphStandin) -> None:
    names = [f"template_{i}" for i in range(7)]
    for name in names:
        standin.add_template(WABA, name, "en")
    transport = CountingTransport()
    async with GraphClient(standin.base_url, VERSION, transport=transport) as graph:
        seen = [t["name"] async for t in graph.list_templates(WABA, TOKEN, limit=3)]
    assert seen == names
    assert len(transport.urls) == 3
    assert all("message_templates" in url for url in transport.urls)
    assert "after=" in transport.urls[1] and "after=" in transport.urls[2]


async def test_create_template_and_duplicate_is_an_error(client: GraphClient, standin: GraphStandin) -> None:
    template = {
        "name": "diwali_offer",
        "language": "hi",
        "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Namaste {{1}}"}],
    }
    created = await client.create_template(WABA, TOKEN, template)
    assert created["status"] == "PENDING" and created["category"] == "MARKETING"
    with pytest.raises(GraphError) as duplicate:
        await client.create_template(WABA, TOKEN, template)
    assert (duplicate.value.code, duplicate.value.subcode) == (100, 2388024)
    listed = [t async for t in client.list_templates(WABA, TOKEN)]
    assert [(t["id"], t["status"]) for t in listed] == [(created["id"], "PENDING")]


# ---- account and subscriptions -------------------------------------------------------------------


async def test_subscribe_app_then_list(client: GraphClient, standin: GraphStandin) -> None:
    assert await client.get_subscribed_apps(WABA, TOKEN) == []
    assert await client.subscribe_app(WABA, TOKEN) is True
    apps = await client.get_subscribed_apps(WABA, TOKEN)
    assert [a["whatsapp_business_api_data"]["id"] for a in apps] == [standin.app_id]


async def test_app_subscriptions_show_missing_echo_field(client: GraphClient, standin: GraphStandin) -> None:
    standin.set_app_fields(["messages", "message_template_status_update"])
    [subscription] = await client.get_app_subscriptions(standin.app_id, standin.app_token)
    assert subscription["object"] == "whatsapp_business_account"
    names = {f["name"] for f in subscription["fields"]}
    assert names == {"messages", "message_template_status_update"}
    with pytest.raises(GraphError):
        await client.get_app_subscriptions(standin.app_id, "not-an-app-token")


async def test_get_phone_number_fields(client: GraphClient, standin: GraphStandin) -> None:
    standin.set_phone_fields(PNID, throughput_level="HIGH", quality_rating="YELLOW", is_on_biz_app=True)
    number = await client.get_phone_number(PNID, TOKEN)
    assert number["throughput"] == {"level": "HIGH"}
    assert number["quality_rating"] == "YELLOW"
    assert number["is_on_biz_app"] is True
    assert number["display_phone_number"] == "+91 522 400 0000"
    only = await client.get_phone_number(PNID, TOKEN, ["throughput"])
    assert set(only) == {"throughput", "id"}


async def test_smb_app_data_once_per_sync_type(client: GraphClient, standin: GraphStandin) -> None:
    request_id = await client.smb_app_data(PNID, TOKEN, "smb_app_state_sync")
    assert request_id
    assert await client.smb_app_data(PNID, TOKEN, "history")
    with pytest.raises(GraphError):
        await client.smb_app_data(PNID, TOKEN, "history")
    assert [(p, s) for p, s, _ in standin.smb_sync_requests] == [
        (PNID, "smb_app_state_sync"),
        (PNID, "history"),
    ]


async def test_exchange_code_issues_a_working_token(client: GraphClient, standin: GraphStandin) -> None:
    standin.add_oauth_code("code-1", "token-new", OTHER_PNID)
    token = await client.exchange_code(standin.app_id, standin.app_secret, "code-1")
    assert token == "token-new"
    await client.send_text(OTHER_PNID, token, "919812345678", "works")
    with pytest.raises(GraphError) as reused:
        await client.exchange_code(standin.app_id, standin.app_secret, "code-1")
    assert reused.value.subcode == 36009
    with pytest.raises(GraphError) as bad_secret:
        await client.exchange_code(standin.app_id, "wrong", "code-1")
    assert bad_secret.value.code == 1


async def test_debug_token_lists_granted_ids(client: GraphClient, standin: GraphStandin) -> None:
    data = await client.debug_token(TOKEN, standin.app_token)
    assert data["is_valid"] is True
    assert "whatsapp_business_messaging" in data["scopes"]
    assert set(data["granular_scopes"][0]["target_ids"]) == {PNID, WABA}
    assert (await client.debug_token("nope", standin.app_token))["is_valid"] is False
