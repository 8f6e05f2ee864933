"""Meta webhook parser: every documented shape, batches, unknowns, malformed input and fuzzing."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.meta.events import (
    AccountUpdate,
    AutomaticEvent,
    BusinessUsername,
    CallEvent,
    ChangeErrors,
    ContactSync,
    Direction,
    GroupEvent,
    HistoryChunk,
    InboundMessage,
    MessageEcho,
    ParseProblem,
    QualityUpdate,
    SecurityEvent,
    StatusUpdate,
    TemplateCategory,
    TemplateComponents,
    TemplateQuality,
    TemplateStatus,
    UnknownChange,
    UserIdChange,
    UserPreference,
    WebhookEvent,
)
from bot.meta.parser import event_type_of, parse_delivery

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
WABA, PNID, BIZ = "200000000000001", "100000000000001", "915224000000"
RAVI, ANITA, SUNIL = "919812345678", "919876543210", "918765432109"
EVENT_CLASSES = typing.get_args(WebhookEvent)


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def only(name: str) -> WebhookEvent:
    events = parse_delivery(load(name))
    assert len(events) == 1, events
    return events[0]


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


T = 1751270400  # the fixtures' base timestamp

# fixture -> (event classes in order, webhook_logs.event_type)
EXPECTED: dict[str, tuple[list[type], str]] = {
    "text": ([InboundMessage], "message"),
    "text_reply": ([InboundMessage], "message"),
    "image": ([InboundMessage], "message"),
    "audio_voice": ([InboundMessage], "message"),
    "video": ([InboundMessage], "message"),
    "document": ([InboundMessage], "message"),
    "sticker": ([InboundMessage], "message"),
    "location": ([InboundMessage], "message"),
    "contacts": ([InboundMessage], "message"),
    "interactive_button_reply": ([InboundMessage], "message"),
    "interactive_list_reply": ([InboundMessage], "message"),
    "interactive_nfm_reply": ([InboundMessage], "message"),
    "button": ([InboundMessage], "message"),
    "reaction": ([InboundMessage], "message"),
    "reaction_removed": ([InboundMessage], "message"),
    "order": ([InboundMessage], "message"),
    "system": ([InboundMessage], "message"),
    "referral": ([InboundMessage], "message"),
    "unsupported": ([InboundMessage], "message"),
    "unknown_type": ([InboundMessage], "message"),
    "inbound_bsuid": ([InboundMessage], "message"),
    "status_sent": ([StatusUpdate], "status"),
    "status_delivered": ([StatusUpdate], "status"),
    "status_read": ([StatusUpdate], "status"),
    "status_played": ([StatusUpdate], "status"),
    "status_failed": ([StatusUpdate], "status"),
    "status_deleted": ([StatusUpdate], "status"),
    "change_errors": ([ChangeErrors], "message"),
    "smb_message_echoes": ([MessageEcho, MessageEcho], "smb_message_echo"),
    "smb_app_state_sync": ([ContactSync, ContactSync], "app_state_sync"),
    "history": ([HistoryChunk], "history"),
    "history_media": ([HistoryChunk], "history"),
    "history_declined": ([HistoryChunk], "history"),
    "message_template_status_update": ([TemplateStatus], "template_status"),
    "message_template_quality_update": ([TemplateQuality], "template_status"),
    "template_category_update": ([TemplateCategory], "template_status"),
    "phone_number_quality_update": ([QualityUpdate], "quality_update"),
    "account_update": ([AccountUpdate], "account_update"),
    "unknown_field": ([UnknownChange], "unknown"),
    "user_preferences": ([UserPreference], "user_preferences"),
    "edit": ([InboundMessage], "message"),
    "revoke": ([InboundMessage], "message"),
    "echo_edit": ([MessageEcho], "smb_message_echo"),
    "echo_revoke": ([MessageEcho], "smb_message_echo"),
    "echo_to_user_id": ([MessageEcho], "smb_message_echo"),
    "echo_to_self": ([MessageEcho], "smb_message_echo"),
    "inbound_phone_and_bsuid": ([InboundMessage], "message"),
    "system_user_changed_user_id": ([InboundMessage], "message"),
    "call_permission_reply": ([InboundMessage], "message"),
    "call_permission_declined": ([InboundMessage], "message"),
    "calls_connect": ([CallEvent], "call"),
    "calls_terminate": ([CallEvent], "call"),
    "calls_missed": ([CallEvent], "call"),
    "calls_status": ([CallEvent], "call"),
    "change_errors_interactive": ([ChangeErrors], "message"),
    "template_category_change": ([TemplateCategory], "template_status"),
    "template_category_notice": ([TemplateCategory], "template_status"),
    "message_template_components_update": ([TemplateComponents], "template_status"),
    "account_update_disabled": ([AccountUpdate], "account_update"),
    "account_update_restriction": ([AccountUpdate], "account_update"),
    "account_update_auth_intl": ([AccountUpdate], "account_update"),
    "account_update_partner_added": ([AccountUpdate], "account_update"),
    "phone_number_quality_throughput": ([QualityUpdate], "quality_update"),
    "request_welcome": ([InboundMessage], "message"),
    "referred_product": ([InboundMessage], "message"),
    "interactive_undeliverable": ([InboundMessage], "message"),
    "status_failed_131000": ([StatusUpdate], "status"),
    "system_new_wa_id": ([InboundMessage], "message"),
    "system_previous_user_id": ([InboundMessage], "message"),
    "user_id_update": ([UserIdChange], "user_id_update"),
    "business_username_updates": ([BusinessUsername], "business_username"),
    "state_sync_user_id": ([ContactSync], "app_state_sync"),
    "echo_username": ([MessageEcho], "smb_message_echo"),
    "calls_user_id": ([CallEvent], "call"),
    "inbound_blank_name": ([InboundMessage], "message"),
    "history_user_id": ([HistoryChunk], "history"),
    "account_offboarded": ([AccountUpdate], "account_update"),
    "account_reconnected": ([AccountUpdate], "account_update"),
    "account_update_reinstate": ([AccountUpdate], "account_update"),
    "account_update_ad_account_linked": ([AccountUpdate], "account_update"),
    "account_update_certification": ([AccountUpdate], "account_update"),
    "account_update_app_uninstalled": ([AccountUpdate], "account_update"),
    "account_update_volume_tier": ([AccountUpdate], "account_update"),
    "security_pin_reset": ([SecurityEvent], "account_update"),
    "automatic_events_purchase": ([AutomaticEvent], "automatic_event"),
    "user_preferences_resume": ([UserPreference], "user_preferences"),
    "calls_business_ringing": ([CallEvent], "call"),
    "calls_business_accepted": ([CallEvent], "call"),
    "calls_business_terminate": ([CallEvent], "call"),
    "account_settings_update": ([AccountUpdate], "account_update"),
    "group_create": ([GroupEvent], "group"),
    "group_message": ([InboundMessage], "message"),
    "group_message_other": ([InboundMessage], "message"),
    "group_participants_add": ([GroupEvent], "group"),
    "group_participant_leaves": ([GroupEvent], "group"),
    "group_join_request": ([GroupEvent], "group"),
    "group_settings_update": ([GroupEvent], "group"),
    "group_suspend": ([GroupEvent], "group"),
    "group_suspend_cleared": ([GroupEvent], "group"),
    "batch": (
        [InboundMessage] * 3 + [StatusUpdate] * 2 + [InboundMessage] * 2 + [MessageEcho] * 2,
        "mixed",
    ),
}


def test_every_fixture_has_an_expectation() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_its_event_types_and_log_type(name: str) -> None:
    classes, log_type = EXPECTED[name]
    events = parse_delivery(load(name))
    assert [type(e) for e in events] == classes
    assert event_type_of(load(name)) == log_type


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_events_are_frozen_and_timestamps_are_utc(name: str) -> None:
    for event in parse_delivery(load(name)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.envelope = None  # type: ignore[misc,assignment]
        ts = getattr(event, "timestamp", None)
        if ts is not None:
            assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0


# --- messages field ----------------------------------------------------------------------------


def test_text_message_carries_envelope_sender_profile_and_body() -> None:
    m = only("text")
    assert isinstance(m, InboundMessage)
    assert m.envelope.waba_id == WABA and m.envelope.field == "messages"
    assert m.envelope.phone_number_id == PNID and m.envelope.display_phone_number == BIZ
    assert m.wamid.startswith("wamid.") and m.from_wa_id == RAVI and m.profile_name == "Ravi Kumar"
    assert m.timestamp == at(T)
    assert m.content.kind == "text" and m.content.original_type == "text"
    assert m.content.text == "Namaste, is the 2 BHK on Hazratganj still available?"
    assert m.content.media is None and m.content.context is None and m.content.errors == []
    assert m.raw["id"] == m.wamid


def test_reply_keeps_the_context_of_the_quoted_message() -> None:
    m = only("text_reply")
    assert isinstance(m, InboundMessage)
    ctx = m.content.context
    assert ctx is not None and ctx["from"] == BIZ and ctx["id"].startswith("wamid.")
    assert ctx["forwarded"] is False and ctx["frequently_forwarded"] is False


@pytest.mark.parametrize(
    ("name", "kind", "media_id", "caption", "filename", "voice", "animated", "forwarded", "frequently"),
    [
        ("image", "image", "1234567890123456", "Front gate photo", None, False, False, True, False),
        ("audio_voice", "audio", "2345678901234567", None, None, True, False, False, False),
        ("video", "video", "3456789012345678", "Walkthrough of the flat", None, False, False, False, True),
        (
            "document",
            "document",
            "4567890123456789",
            "My ID proof",
            "aadhaar.pdf",
            False,
            False,
            False,
            False,
        ),
        ("sticker", "sticker", "5678901234567890", None, None, False, True, False, False),
    ],
)
def test_media_messages_expose_media_fields(
    name: str,
    kind: str,
    media_id: str,
    caption: str | None,
    filename: str | None,
    voice: bool,
    animated: bool,
    forwarded: bool,
    frequently: bool,
) -> None:
    m = only(name)
    assert isinstance(m, InboundMessage)
    c = m.content
    assert c.kind == kind and c.media is not None
    assert c.media.id == media_id and c.media.mime_type and c.media.sha256
    assert (c.media.caption, c.media.filename, c.media.voice, c.media.animated) == (
        caption,
        filename,
        voice,
        animated,
    )
    assert c.text == caption
    ctx = c.context or {"forwarded": False, "frequently_forwarded": False}
    assert (ctx["forwarded"], ctx["frequently_forwarded"]) == (forwarded, frequently)


def test_location_and_contacts_messages() -> None:
    loc = only("location")
    assert isinstance(loc, InboundMessage) and loc.content.kind == "location"
    assert loc.content.location == {
        "latitude": 26.8467,
        "longitude": 80.9462,
        "name": "Hazratganj",
        "address": "Hazratganj, Lucknow, Uttar Pradesh 226001",
        "url": None,
    }
    card = only("contacts")
    assert isinstance(card, InboundMessage) and card.content.kind == "contacts"
    assert card.content.contacts[0]["phones"][0]["wa_id"] == SUNIL


@pytest.mark.parametrize(
    ("name", "itype", "iid", "title", "description", "text"),
    [
        ("interactive_button_reply", "button_reply", "visit-yes", "Book a visit", None, "Book a visit"),
        (
            "interactive_list_reply",
            "list_reply",
            "slot-sat-11",
            "Saturday 11:00",
            "Site visit, 45 minutes",
            "Saturday 11:00",
        ),
        ("interactive_nfm_reply", "nfm_reply", None, None, None, "Sent"),
    ],
)
def test_interactive_replies(
    name: str, itype: str, iid: str | None, title: str | None, description: str | None, text: str
) -> None:
    m = only(name)
    assert isinstance(m, InboundMessage)
    i = m.content.interactive
    assert m.content.kind == "interactive" and i is not None
    assert (i["type"], i["id"], i["title"], i["description"]) == (itype, iid, title, description)
    assert m.content.text == text
    assert m.content.context is not None and m.content.context["from"] == BIZ


def test_flow_reply_keeps_the_response_json() -> None:
    m = only("interactive_nfm_reply")
    assert isinstance(m, InboundMessage) and m.content.interactive is not None
    assert json.loads(m.content.interactive["response_json"])["flow_token"] == "visit-2025-07"


def test_template_quick_reply_button() -> None:
    m = only("button")
    assert isinstance(m, InboundMessage)
    assert m.content.kind == "button"
    assert m.content.button == {"payload": "STOP promotions", "text": "Stop promotions"}
    assert m.content.text == "Stop promotions"
    assert m.content.context is not None and m.content.context["id"].startswith("wamid.")


def test_reaction_and_removed_reaction() -> None:
    added, removed = only("reaction"), only("reaction_removed")
    assert isinstance(added, InboundMessage) and isinstance(removed, InboundMessage)
    assert added.content.reaction is not None and removed.content.reaction is not None
    assert added.content.reaction["emoji"] == "\U0001f44d" and added.content.reaction["removed"] is False
    assert removed.content.reaction["emoji"] == "" and removed.content.reaction["removed"] is True
    assert removed.content.reaction["message_id"] == added.content.reaction["message_id"]
    assert removed.content.text is None


def test_order_message() -> None:
    m = only("order")
    assert isinstance(m, InboundMessage) and m.content.order is not None
    assert m.content.order["catalog_id"] == "730000000000001"
    assert [p["product_retailer_id"] for p in m.content.order["product_items"]] == ["mat-queen", "pillow-std"]
    assert m.content.text == "Please deliver by Friday"


def test_system_message_for_a_changed_number_without_contacts_array() -> None:
    m = only("system")
    assert isinstance(m, InboundMessage)
    assert m.profile_name is None and m.from_wa_id == RAVI
    assert m.content.kind == "system" and m.content.system is not None
    assert m.content.system["type"] == "user_changed_number" and m.content.system["wa_id"] == "919900011122"
    assert m.content.text is not None and "changed from" in m.content.text


def test_ad_referral_is_kept_and_profile_matches_sender() -> None:
    m = only("referral")
    assert isinstance(m, InboundMessage)
    assert m.from_wa_id == ANITA and m.profile_name == "Anita Singh"
    assert m.content.referral is not None and m.content.referral["source_type"] == "ad"
    assert m.content.referral["ctwa_clid"].startswith("Aff-")


def test_unsupported_message_keeps_type_inner_type_and_errors() -> None:
    m = only("unsupported")
    assert isinstance(m, InboundMessage)
    c = m.content
    assert (c.kind, c.original_type, c.unsupported_type) == ("unsupported", "unsupported", "edit")
    assert c.errors[0].code == 131051 and c.errors[0].title == "Message type unknown"
    assert c.errors[0].details == "Message type is currently not supported."
    legacy = only("unknown_type")
    assert isinstance(legacy, InboundMessage)
    assert (legacy.content.kind, legacy.content.original_type) == ("unsupported", "unknown")


def test_message_type_new_to_the_parser_is_kept_as_unsupported_with_its_type() -> None:
    payload = load("text")
    msg = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del msg["text"]
    msg["type"] = "poll"
    msg["poll"] = {"type": "single_choice", "question": "Best visit day?"}
    m = parse_delivery(payload)[0]
    assert isinstance(m, InboundMessage)
    assert (m.content.kind, m.content.original_type, m.content.unsupported_type) == (
        "unsupported",
        "poll",
        "single_choice",
    )
    assert m.content.problem is None and m.raw["poll"]["question"] == "Best visit day?"


def test_sender_without_phone_number_falls_back_to_business_scoped_user_id() -> None:
    m = only("inbound_bsuid")
    assert isinstance(m, InboundMessage)
    assert m.from_wa_id.startswith("user.") and m.user_id == m.from_wa_id
    assert m.profile_name == "Meera" and m.username == "@meera.lko"


# --- statuses and change-level errors ------------------------------------------------------------


def test_sent_status_has_conversation_and_pricing() -> None:
    s = only("status_sent")
    assert isinstance(s, StatusUpdate)
    assert (s.status, s.recipient_id, s.timestamp) == ("sent", RAVI, at(T + 2000))
    assert s.conversation_id == "6ceb9d929c9bdc4f90e967a32f8639b4" and s.conversation_origin == "marketing"
    assert s.conversation_expires_at == at(T + 2000 + 86400)
    assert s.pricing is not None
    assert (s.pricing.billable, s.pricing.pricing_model, s.pricing.category, s.pricing.type) == (
        True,
        "PMP",
        "marketing",
        "regular",
    )
    assert s.biz_opaque_callback_data == "campaign:42:recipient:7" and s.errors == []


def test_read_status_without_conversation_or_pricing() -> None:
    s = only("status_read")
    assert isinstance(s, StatusUpdate)
    assert s.status == "read" and s.pricing is None and s.conversation_id is None
    assert s.conversation_origin is None and s.conversation_expires_at is None


@pytest.mark.parametrize("name", ["status_delivered", "status_played", "status_deleted"])
def test_other_statuses_keep_their_value(name: str) -> None:
    s = only(name)
    assert isinstance(s, StatusUpdate) and s.status == name.removeprefix("status_")


def test_failed_status_carries_meta_error() -> None:
    s = only("status_failed")
    assert isinstance(s, StatusUpdate) and s.status == "failed" and s.recipient_id == ANITA
    (err,) = s.errors
    assert err.code == 131049 and err.title.startswith("This message was not delivered")
    assert err.details is not None and err.details.startswith("In order to maintain")
    assert err.href is not None


def test_change_level_errors() -> None:
    e = only("change_errors")
    assert isinstance(e, ChangeErrors)
    assert e.envelope.phone_number_id == PNID
    assert [x.code for x in e.errors] == [131042]


# --- Coexistence fields -----------------------------------------------------------------------


def test_echoes_go_from_business_to_customer() -> None:
    first, second = parse_delivery(load("smb_message_echoes"))
    assert isinstance(first, MessageEcho) and isinstance(second, MessageEcho)
    assert first.envelope.field == "smb_message_echoes"
    assert (first.from_number, first.to_wa_id, first.timestamp) == (BIZ, RAVI, at(T + 3000))
    assert first.content.text == "Sure Ravi, see you Saturday at 11."
    assert second.to_wa_id == ANITA and second.content.kind == "image"
    assert second.content.media is not None and second.content.media.caption == "Floor plan"


def test_echo_to_number_with_plus_is_normalised() -> None:
    payload = load("smb_message_echoes")
    payload["entry"][0]["changes"][0]["value"]["message_echoes"][0]["to"] = "+" + RAVI
    echo = parse_delivery(payload)[0]
    assert isinstance(echo, MessageEcho) and echo.to_wa_id == RAVI


def test_app_state_sync_adds_and_removes_contacts() -> None:
    added, removed = parse_delivery(load("smb_app_state_sync"))
    assert isinstance(added, ContactSync) and isinstance(removed, ContactSync)
    assert (added.action, added.wa_id, added.full_name, added.first_name) == (
        "add",
        RAVI,
        "Ravi Kumar",
        "Ravi",
    )
    assert added.timestamp == at(T + 4000)
    assert (removed.action, removed.wa_id, removed.full_name) == ("remove", SUNIL, None)


def test_history_chunk_has_progress_and_directions_per_thread() -> None:
    chunk = only("history")
    assert isinstance(chunk, HistoryChunk)
    assert (chunk.phase, chunk.chunk_order, chunk.progress) == (1, 2, 55) and chunk.errors == []
    rows = [(m.wa_id, m.direction, m.content.kind, m.status) for m in chunk.messages]
    assert rows == [
        (RAVI, Direction.INBOUND, "text", "read"),
        (RAVI, Direction.OUTBOUND, "text", "read"),
        (RAVI, Direction.OUTBOUND, "unsupported", "played"),
        (ANITA, Direction.OUTBOUND, "text", "delivered"),
    ]
    assert chunk.messages[2].content.original_type == "media_placeholder"
    assert chunk.messages[0].timestamp == at(T - 30 * 86400)


def test_history_media_follow_up_tells_direction_from_business_number() -> None:
    chunk = only("history_media")
    assert isinstance(chunk, HistoryChunk) and chunk.phase is None
    outbound, inbound = chunk.messages
    assert (outbound.wa_id, outbound.direction, outbound.content.kind) == (RAVI, Direction.OUTBOUND, "image")
    assert (inbound.wa_id, inbound.direction, inbound.content.kind) == (RAVI, Direction.INBOUND, "audio")
    assert inbound.content.media is not None and inbound.content.media.voice is True


def test_declined_history_is_a_chunk_with_errors() -> None:
    chunk = only("history_declined")
    assert isinstance(chunk, HistoryChunk)
    assert chunk.messages == [] and [e.code for e in chunk.errors] == [2593109]


# --- account and template fields --------------------------------------------------------------


def test_template_status_update() -> None:
    t = only("message_template_status_update")
    assert isinstance(t, TemplateStatus)
    assert t.envelope.phone_number_id is None and t.envelope.entry_time == at(T + 5000)
    assert (t.event, t.template_id, t.name, t.language, t.reason, t.category) == (
        "REJECTED",
        "1689556908129835",
        "visit_reminder",
        "en",
        "INVALID_FORMAT",
        "UTILITY",
    )
    assert "recommendation" in t.details["rejection_info"]


def test_template_quality_update() -> None:
    q = only("message_template_quality_update")
    assert isinstance(q, TemplateQuality)
    assert (q.template_id, q.name, q.language, q.previous_score, q.new_score) == (
        "806312974732579",
        "diwali_offer",
        "hi",
        "GREEN",
        "YELLOW",
    )


def test_quality_update_sent_under_the_status_field_is_still_read_as_quality() -> None:
    payload = load("message_template_quality_update")
    payload["entry"][0]["changes"][0]["field"] = "message_template_status_update"
    (event,) = parse_delivery(payload)
    assert isinstance(event, TemplateQuality) and event.new_score == "YELLOW"


def test_template_category_update() -> None:
    c = only("template_category_update")
    assert isinstance(c, TemplateCategory)
    assert (c.new_category, c.correct_category, c.previous_category) == ("UTILITY", "MARKETING", None)
    assert c.effective_at == at(T + 5200 + 86400)


def test_phone_number_quality_update() -> None:
    q = only("phone_number_quality_update")
    assert isinstance(q, QualityUpdate)
    assert (q.display_phone_number, q.event, q.current_limit, q.old_limit) == (
        BIZ,
        "UPGRADE",
        "TIER_2K",
        "TIER_250",
    )
    assert q.envelope.display_phone_number == BIZ


def test_account_update() -> None:
    a = only("account_update")
    assert isinstance(a, AccountUpdate)
    assert (a.event, a.phone_number) == ("ACCOUNT_VIOLATION", BIZ)
    assert a.details == {"violation_info": {"violation_type": "SCAM"}}


# --- batches, unknowns, malformed input -------------------------------------------------------


def test_batch_yields_one_event_per_message_status_and_echo_in_order() -> None:
    events = parse_delivery(load("batch"))
    envs = [(e.envelope.waba_id, e.envelope.phone_number_id) for e in events]
    assert envs == [(WABA, PNID)] * 5 + [("200000000000002", "100000000000002")] * 4
    inbound = [e for e in events if isinstance(e, InboundMessage)]
    assert [(m.from_wa_id, m.profile_name) for m in inbound] == [
        (RAVI, "Ravi Kumar"),
        (ANITA, "Anita Singh"),
        (RAVI, "Ravi Kumar"),
        (SUNIL, "Sunil Verma"),
        (SUNIL, "Sunil Verma"),
    ]
    assert [s.status for s in events if isinstance(s, StatusUpdate)] == ["delivered", "read"]
    echoes = [e for e in events if isinstance(e, MessageEcho)]
    assert [(e.from_number, e.to_wa_id, e.content.kind) for e in echoes] == [
        ("915224000001", SUNIL, "text"),
        ("915224000001", SUNIL, "location"),
    ]
    assert len({e.wamid for e in inbound + echoes}) == 7


def test_unknown_field_becomes_unknown_change_with_its_value() -> None:
    (u,) = parse_delivery(load("unknown_field"))
    assert isinstance(u, UnknownChange)
    assert u.envelope.field == "partner_solutions_future_field"
    assert "partner_solutions_future_field" in u.reason
    assert isinstance(u.value, dict) and u.value["partner_solutions"][0]["status"] == "ACTIVE"


def test_user_preferences_stop_becomes_a_typed_marketing_opt_out() -> None:
    (p,) = parse_delivery(load("user_preferences"))
    assert isinstance(p, UserPreference)
    assert (p.wa_id, p.category, p.value) == (RAVI, "marketing_messages", "stop")
    assert p.timestamp is not None and p.timestamp.tzinfo is not None


def test_messages_change_without_content_is_unknown_not_dropped() -> None:
    payload = load("text")
    del payload["entry"][0]["changes"][0]["value"]["messages"]
    (u,) = parse_delivery(payload)
    assert isinstance(u, UnknownChange) and u.envelope.field == "messages"


def test_malformed_message_costs_only_itself() -> None:
    payload = load("batch")
    messages = payload["entry"][0]["changes"][0]["value"]["messages"]
    del messages[1]["id"]
    messages[2]["timestamp"] = "yesterday"
    events = parse_delivery(payload)
    problems = [e for e in events if isinstance(e, ParseProblem)]
    assert [p.where for p in problems] == [
        "entry[0].changes[0].value.messages[1]",
        "entry[0].changes[0].value.messages[2]",
    ]
    assert "'id'" in problems[0].error and "'timestamp'" in problems[1].error
    assert problems[0].envelope.phone_number_id == PNID
    assert sum(isinstance(e, InboundMessage) for e in events) == 3  # first of change 0, both of entry 1


def test_unreadable_type_object_keeps_the_message_with_a_problem() -> None:
    payload = load("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"] = {"body": 42}
    (m,) = parse_delivery(payload)
    assert isinstance(m, InboundMessage)
    assert (m.content.kind, m.content.original_type) == ("unsupported", "text")
    assert m.content.problem is not None and "body" in m.content.problem


def test_malformed_status_and_template_become_parse_problems() -> None:
    status = load("status_sent")
    del status["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
    (p,) = parse_delivery(status)
    assert isinstance(p, ParseProblem) and "'status'" in p.error
    template = load("message_template_status_update")
    del template["entry"][0]["changes"][0]["value"]["event"]
    (p,) = parse_delivery(template)
    assert isinstance(p, ParseProblem) and "'event'" in p.error
    assert p.where == "entry[0].changes[0].value"


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ([], "payload"),
        ("not json", "payload"),
        ({"object": "whatsapp_business_account"}, "entry"),
        ({"object": "whatsapp_business_account", "entry": [7]}, "entry[0]"),
        ({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": {}}]}, "entry[0].changes"),
        (
            {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"value": {}}]}]},
            "entry[0].changes[0]",
        ),
        (
            {
                "object": "whatsapp_business_account",
                "entry": [{"id": WABA, "changes": [{"field": "messages", "value": None}]}],
            },
            "entry[0].changes[0].value",
        ),
    ],
)
def test_broken_envelopes_become_parse_problems(payload: object, where: str) -> None:
    (p,) = parse_delivery(payload)
    assert isinstance(p, ParseProblem) and p.where == where and p.error
    assert event_type_of(payload) == "unknown"


def test_other_object_types_are_unknown() -> None:
    (u,) = parse_delivery({"object": "page", "entry": []})
    assert isinstance(u, UnknownChange) and "page" in u.reason


def test_event_type_of_mixed_and_single_kinds() -> None:
    both = load("text")
    both["entry"][0]["changes"].append(load("status_read")["entry"][0]["changes"][0])
    assert event_type_of(both) == "mixed"
    two_texts = load("text")
    two_texts["entry"].append(copy.deepcopy(two_texts["entry"][0]))
    assert event_type_of(two_texts) == "message"
    assert event_type_of({"object": "whatsapp_business_account", "entry": []}) == "unknown"


# --- fuzzing ----------------------------------------------------------------------------------

KEYS = [
    "object",
    "entry",
    "id",
    "time",
    "changes",
    "field",
    "value",
    "metadata",
    "phone_number_id",
    "display_phone_number",
    "contacts",
    "profile",
    "wa_id",
    "messages",
    "statuses",
    "errors",
    "message_echoes",
    "history",
    "threads",
    "state_sync",
    "contact",
    "from",
    "to",
    "timestamp",
    "type",
    "text",
    "body",
    "status",
    "event",
    "interactive",
    "reaction",
    "context",
    "pricing",
    "conversation",
]
FIELDS = [
    "messages",
    "smb_message_echoes",
    "history",
    "smb_app_state_sync",
    "message_template_status_update",
    "message_template_quality_update",
    "template_category_update",
    "phone_number_quality_update",
    "account_update",
    "calls",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from([*FIELDS, "whatsapp_business_account", "1751270400", "contact", "text", "read"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=40,
)
envelopes = st.builds(
    lambda fld, value, entry_id: {
        "object": "whatsapp_business_account",
        "entry": [{"id": entry_id, "changes": [{"field": fld, "value": value}]}],
    },
    st.sampled_from(FIELDS),
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6),
    json_values,
)


def _assert_events(payload: object) -> None:
    events = parse_delivery(payload)
    assert isinstance(events, list)
    assert all(isinstance(e, EVENT_CLASSES) for e in events)
    assert isinstance(event_type_of(payload), str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | envelopes)
def test_parse_delivery_never_raises_on_arbitrary_json(payload: object) -> None:
    _assert_events(payload)


def _mutate(data: st.DataObject, node: object) -> object:
    """Replace one randomly chosen sub-tree of a fixture with arbitrary JSON."""
    if isinstance(node, dict) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node)))
        node[key] = _mutate(data, node[key])
        return node
    if isinstance(node, list) and node and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(node) - 1))
        node[i] = _mutate(data, node[i])
        return node
    return data.draw(json_values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXPECTED)), st.data())
def test_parse_delivery_never_raises_on_mutated_fixtures(name: str, data: st.DataObject) -> None:
    payload = _mutate(data, load(name))
    _assert_events(payload)


# ---- edits, deletions, usernames, calls ------------------------------------------------------------------


def test_edit_is_the_new_content_marked_with_the_message_it_replaces() -> None:
    e = only("edit")
    assert isinstance(e, InboundMessage)
    assert e.content.kind == "text" and e.content.original_type == "edit"
    assert e.content.text == "Namaste, is the 2 BHK on Hazratganj still available? Or the 3 BHK?"
    assert e.content.edits == load("text")["entry"][0]["changes"][0]["value"]["messages"][0]["id"]


def test_revoke_names_the_deleted_message() -> None:
    e = only("echo_revoke")
    assert isinstance(e, MessageEcho)
    assert e.content.kind == "revoke" and e.content.revokes and e.content.revokes.startswith("wamid.")


def test_edit_without_its_message_is_kept_as_unreadable() -> None:
    payload = copy.deepcopy(load("edit"))
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["edit"]["message"]
    e = only_payload(payload)
    assert isinstance(e, InboundMessage) and e.content.kind == "unsupported" and "edit" in (e.content.problem or "")


def only_payload(payload: dict) -> WebhookEvent:
    events = parse_delivery(payload)
    assert len(events) == 1, events
    return events[0]


def test_phone_and_bsuid_are_both_kept_with_the_username() -> None:
    e = only("inbound_phone_and_bsuid")
    assert isinstance(e, InboundMessage)
    assert (e.phone, e.from_wa_id, e.username) == ("919876500142", "919876500142", "@meera.lko")
    assert e.user_id and e.user_id.startswith("user.4f1c")


def test_echo_to_a_user_id_names_the_customer_by_it() -> None:
    e = only("echo_to_user_id")
    assert isinstance(e, MessageEcho)
    assert e.to_phone is None and e.to_user_id == e.to_wa_id and e.to_wa_id.startswith("user.")


def test_calls_name_the_customer_whichever_side_called() -> None:
    connect, terminate, status = only("calls_connect"), only("calls_terminate"), only("calls_status")
    assert isinstance(connect, CallEvent) and isinstance(terminate, CallEvent) and isinstance(status, CallEvent)
    assert (connect.event, connect.customer, connect.direction) == ("connect", RAVI, "USER_INITIATED")
    assert (terminate.status, terminate.duration) == ("COMPLETED", 90)
    assert (status.event, status.status, status.customer) == ("status", "REJECTED", RAVI)


def test_call_permission_reply_is_read() -> None:
    e = only("call_permission_reply")
    assert isinstance(e, InboundMessage)
    info = e.content.interactive or {}
    assert (info["type"], info["response"], info["is_permanent"], info["expires_at"]) == (
        "call_permission_reply", "accept", False, 1753522200)


def test_category_notice_reads_the_current_and_the_coming_category() -> None:
    from bot.bridge import alert_texts

    notice, change = only("template_category_notice"), only("template_category_change")
    assert isinstance(notice, TemplateCategory) and isinstance(change, TemplateCategory)
    assert alert_texts.template_category(notice, "Asia/Kolkata")[1] == (
        "welcome_template (en-US) is UTILITY and becomes MARKETING on 2 May 2025: it will be billed as marketing")
    assert alert_texts.template_category(change)[1] == (
        "welcome_template (en-US) changed category: UTILITY → MARKETING; from now on it will be billed as marketing")


# ---- issue 29: regressions -------------------------------------------------------------------------


def test_request_welcome_is_its_own_kind() -> None:
    m = only("request_welcome")
    assert isinstance(m, InboundMessage)
    assert (m.content.kind, m.content.original_type, m.content.problem) == ("request_welcome", "request_welcome", None)
    assert m.from_wa_id == SUNIL and m.profile_name == "Sunil Verma"


def test_referred_product_is_kept_in_the_context() -> None:
    m = only("referred_product")
    assert isinstance(m, InboundMessage) and m.content.text == "Is this still available?"
    assert m.content.context is not None
    assert m.content.context["referred_product"] == {"catalog_id": "194836987003835",
                                                     "product_retailer_id": "di9ozbzfi4"}


def test_interactive_message_meta_could_not_deliver_keeps_its_error() -> None:
    m = only("interactive_undeliverable")
    assert isinstance(m, InboundMessage)
    assert (m.content.kind, m.content.original_type) == ("unsupported", "interactive")
    assert [e.code for e in m.content.errors] == [131000]


# ---- issue 29: usernames and ids to the end -----------------------------------------------------------

BSUID = "user.4f1c2b9a7d3e8f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718"
NEW_BSUID = "user.9b8a7c6d5e4f30211f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffee"


def test_system_new_wa_id_is_the_older_spelling_of_the_new_number() -> None:
    m = only("system_new_wa_id")
    assert isinstance(m, InboundMessage) and m.content.system is not None
    assert (m.content.system["type"], m.content.system["wa_id"]) == ("user_changed_number", "919900011122")


def test_a_user_id_change_without_from_names_the_customer_by_the_id_it_replaces() -> None:
    m = only("system_previous_user_id")
    assert isinstance(m, InboundMessage) and m.content.system is not None
    assert (m.from_wa_id, m.user_id, m.phone) == (BSUID, BSUID, None)
    assert (m.content.system["user_id"], m.content.system["previous_user_id"]) == (NEW_BSUID, BSUID)


def test_user_id_update_and_business_username() -> None:
    u = only("user_id_update")
    assert isinstance(u, UserIdChange)
    assert (u.previous_user_id, u.current_user_id, u.phone) == (BSUID, NEW_BSUID, None)
    b = only("business_username_updates")
    assert isinstance(b, BusinessUsername)
    assert (b.display_phone_number, b.username, b.status) == (BIZ, "lucknowhomes", "approved")
    singular = load("business_username_updates")
    singular["entry"][0]["changes"][0]["field"] = "business_username_update"
    assert isinstance(parse_delivery(singular)[0], BusinessUsername)


def test_contact_sync_without_a_phone_number_names_the_bsuid() -> None:
    c = only("state_sync_user_id")
    assert isinstance(c, ContactSync)
    assert (c.wa_id, c.phone, c.user_id, c.username, c.full_name) == (BSUID, None, BSUID, "@meera.lko",
                                                                       "Meera Srivastava")


def test_echoes_and_calls_to_a_user_id_carry_the_username_from_contacts() -> None:
    e = only("echo_username")
    assert isinstance(e, MessageEcho) and (e.to_user_id, e.username) == (BSUID, "@meera.lko")
    c = only("calls_user_id")
    assert isinstance(c, CallEvent)
    assert (c.customer, c.customer_user_id, c.username, c.profile_name) == (BSUID, BSUID, "@meera.lko", None)


def test_a_blank_profile_name_is_no_name() -> None:
    m = only("inbound_blank_name")
    assert isinstance(m, InboundMessage) and (m.profile_name, m.username) == (None, "@meera.lko")


def test_history_direction_comes_from_from_and_the_thread_context_names_the_customer() -> None:
    chunk = only("history_user_id")
    assert isinstance(chunk, HistoryChunk)
    first, second = chunk.messages
    assert (first.direction, first.wa_id, first.user_id, first.username) == (Direction.INBOUND, BSUID, BSUID,
                                                                            "@meera.lko")
    assert (second.direction, second.wa_id) == (Direction.OUTBOUND, BSUID)


# ---- issue 29: account events --------------------------------------------------------------------------


def test_offboarding_names_the_account_and_security_and_automatic_events_are_read() -> None:
    off = only("account_offboarded")
    assert isinstance(off, AccountUpdate) and (off.event, off.envelope.waba_id, off.details) == (
        "ACCOUNT_OFFBOARDED", WABA, {})
    pin = only("security_pin_reset")
    assert isinstance(pin, SecurityEvent)
    assert (pin.display_phone_number, pin.event, pin.requester) == (BIZ, "PIN_RESET_REQUEST", "700000000000001")
    buy = only("automatic_events_purchase")
    assert isinstance(buy, AutomaticEvent)
    assert (buy.event_name, buy.currency, buy.value) == ("Purchase", "INR", 4500000)
    assert buy.wamid.startswith("wamid.") and buy.ctwa_clid


# ---- issue 29: groups ----------------------------------------------------------------------------------

GROUP = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"


def test_group_messages_carry_the_group_and_their_sender() -> None:
    m = only("group_message")
    assert isinstance(m, InboundMessage)
    assert (m.group_id, m.from_wa_id, m.profile_name, m.content.text) == (
        GROUP, RAVI, "Ravi Kumar", "Is the Saturday visit still on?")


def test_group_events_are_read_by_type() -> None:
    create = only("group_create")
    assert isinstance(create, GroupEvent)
    assert (create.group_id, create.type, create.subject, create.invite_link) == (
        GROUP, "group_create", "Gomti Nagar site visit", "https://chat.whatsapp.com/LINK_ID")
    add = only("group_participants_add")
    assert isinstance(add, GroupEvent) and [m.wa_id for m in add.added] == [SUNIL] and add.reason == "invite_link"
    leave = only("group_participant_leaves")
    assert isinstance(leave, GroupEvent) and leave.initiated_by == "participant"
    assert [m.wa_id for m in leave.removed] == [SUNIL]
    join = only("group_join_request")
    assert isinstance(join, GroupEvent) and join.member is not None and join.member.wa_id == "919811112222"
    settings = only("group_settings_update")
    assert isinstance(settings, GroupEvent) and settings.subject == "Gomti Nagar visit, Saturday 11am"
    assert set(settings.settings) == {"group_subject", "group_description"}
    assert [only(n).type for n in ("group_suspend", "group_suspend_cleared")] == [  # type: ignore[union-attr]
        "group_suspend", "group_suspend_cleared"]
