"""Alert sentences, readable fields and the edited/deleted marks (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bot.bridge import alert_texts
from bot.core.readable import flatten, flow_answers
from bot.meta import events as ev
from bot.meta.parser import parse_delivery
from bot.slack import render
from bot.slack.display_names import isolate

FIXTURES = Path(__file__).parent / "fixtures" / "meta"


def only(name: str) -> object:
    events = parse_delivery(json.loads((FIXTURES / f"{name}.json").read_text()))
    assert len(events) == 1
    return events[0]


def test_throughput_upgrade_points_up_and_a_downgrade_down() -> None:
    up = only("phone_number_quality_throughput")
    assert isinstance(up, ev.QualityUpdate)
    icon, text = alert_texts.quality(up)
    assert icon == alert_texts.UP and "can now send faster" in text and "10,000 customers a day" in text
    down = ev.QualityUpdate(up.envelope, "915224000000", "DOWNGRADE", "TIER_1K", {}, old_limit="TIER_10K")
    icon, text = alert_texts.quality(down)
    assert icon == alert_texts.DOWN and "1,000 customers a day (was 10,000 customers a day)" in text


def test_account_restriction_spells_out_its_fields_and_dates() -> None:
    e = only("account_update_restriction")
    assert isinstance(e, ev.AccountUpdate)
    _, text = alert_texts.account(e, "Asia/Kolkata")
    assert text == ("The WhatsApp Business account is restricted. Restriction info 1 / Restriction type: "
                    "RESTRICTED_ADD_PHONE_NUMBER_ACTION; Restriction info 1 / Expiration: 7 Jul 2025 14:50 IST")


def test_flow_answers_are_flattened_and_bookkeeping_hidden() -> None:
    answers = flow_answers('{"flow_token": "x", "visit": {"date": "2025-07-05", "slots": ["10am", "4pm"]}, '
                           '"consent": true}')
    assert answers == [("Visit / Date", "2025-07-05"), ("Visit / Slots", "10am, 4pm"), ("Consent", "yes")]
    assert flow_answers("not json") == [("Answer", "not json")]
    assert flatten({"expiration": 1751880000}, "UTC") == [("Expiration", "7 Jul 2025 09:20 UTC")]


def _view(content: dict[str, object]) -> render.MessageView:
    return render.MessageView(direction="inbound", source="customer", type="text", text="my old address",
                              content=content)


def test_deleted_message_is_struck_through_or_hidden_as_configured() -> None:
    at = datetime(2025, 7, 1, 8, 30, tzinfo=UTC).isoformat()
    contact, channel = render.ContactView("919812345678", "Ravi"), render.ChannelView("lucknow")
    shown = render.message_posts(_view({"revoked_at": at}), contact, channel, tz="Asia/Kolkata")[0]
    blocks = json.dumps(shown.blocks)
    assert "~my old address~" in blocks and "Deleted by the customer at 1 Jul 14:00 IST" in blocks
    hidden = render.message_posts(_view({"revoked_at": at}), contact, channel, show_deleted_text=False)[0]
    assert "my old address" not in json.dumps(hidden.blocks) and "_This message was deleted._" in json.dumps(
        hidden.blocks)


def test_a_contact_without_a_number_is_named_not_shown_as_an_id() -> None:
    view = render.ContactView("user.4f1c2b9a", None, "@meera.lko")
    assert view.label == isolate("@meera.lko") and not view.has_number
    assert render.ContactView("user.4f1c2b9a").label == "WhatsApp user (number hidden)"
