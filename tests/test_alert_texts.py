"""Alert sentences, readable fields and the edited/deleted marks (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bot.bridge import account_texts, alert_texts
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


def test_account_restriction_spells_out_what_is_restricted_and_until_when() -> None:
    e = only("account_update_restriction")
    assert isinstance(e, ev.AccountUpdate)
    _, text = account_texts.account(e, ["+91 522 400 0000"], "Asia/Kolkata")
    assert text == ("WhatsApp Business account 200000000000001 (number +91 522 400 0000) is restricted: adding "
                    "phone numbers until 7 Jul 2025. Review WhatsApp Manager > Account quality")


def _account(name: str, **counts: int) -> tuple[str, str]:
    e = only(name)
    assert isinstance(e, ev.AccountUpdate)
    return account_texts.account(e, ["+91 522 400 0000"], "Asia/Kolkata", **counts)


def test_account_events_say_what_happened_as_sentences() -> None:
    icon, text = _account("account_offboarded", paused=2)
    assert icon == account_texts.SIREN
    assert text.startswith("WhatsApp Business account 200000000000001 (number +91 522 400 0000) was disconnected")
    assert "Mirroring and sending stop until it reconnects; 2 campaigns paused" in text
    assert "finish registering the WhatsApp Business app on the phone" in text
    icon, text = _account("account_reconnected", resumed=1)
    assert icon == account_texts.OK and "is connected again: mirroring and sending resume; 1 paused campaign resumed" \
        in text
    icon, text = _account("account_update_reinstate")
    assert icon == account_texts.OK and "was reinstated on October 12, 2023: it can send and receive again" in text
    icon, text = _account("account_update_disabled")
    assert icon == account_texts.SIREN and "was disabled on October 9, 2023" in text
    assert "was linked to ad account 500000000000001" in _account("account_update_ad_account_linked")[1]
    assert ("business verification submitted by the partner (business 400000000000001) is failed: legal name not "
            "matching, website not matching") in _account("account_update_certification")[1]
    icon, text = _account("account_update_app_uninstalled")
    assert icon == account_texts.WARN and "removed app 600000000000001's access" in text
    assert ("moved to volume pricing tier TIER_2 for utility messages in India from 2025-07"
            in _account("account_update_volume_tier")[1])
    assert "broke a WhatsApp policy (scam)" in _account("account_update")[1]
    assert "pays authentication-international rates from 1 Jul 2024 (other dates: ID from 1 Jun 2024)" in \
        _account("account_update_auth_intl")[1]
    for name in ("account_update", "account_update_partner_added", "account_update_restriction",
                 "account_update_auth_intl", "account_update_disabled", "account_update_volume_tier"):
        text = _account(name)[1]
        assert " / " not in text and "Waba" not in text and "{" not in text, text


def test_a_numbers_settings_change_reads_as_a_sentence() -> None:
    icon, text = _account("account_settings_update")
    assert icon == account_texts.INFO
    assert text == ("WhatsApp Business account 200000000000001 (number 915224000000): settings changed (calling: "
                    "status enabled, call icon visibility default, callback permission status enabled)")


def test_an_unfamiliar_account_event_reads_its_leaves_not_paths() -> None:
    base = only("account_update_partner_added")
    assert isinstance(base, ev.AccountUpdate)
    e = ev.AccountUpdate(base.envelope, "SOMETHING_NEW", None, {"waba_info": {"waba_id": "1", "new_time": 1751880000}},
                         {})
    _, text = account_texts.account(e, [], "UTC")
    assert text == "WhatsApp Business account 200000000000001 reported something new: waba id 1; new time 7 Jul 2025"


def test_a_pin_reset_request_says_who_should_check() -> None:
    e = only("security_pin_reset")
    assert isinstance(e, ev.SecurityEvent)
    icon, text = account_texts.security(e)
    assert icon == account_texts.SIREN
    assert text.startswith("WhatsApp number 915224000000: someone asked to reset the two-step verification PIN "
                           "(requested by 700000000000001). The account's admins in WhatsApp Manager should confirm")


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
