"""Account events that say what happened, from public fixtures into the real app: an offboarded account pauses
its number's campaigns and a reconnection resumes them (a manager's own pause stays), a reinstatement is good
news, a PIN reset names who should check, and a purchase Meta detected is a note in the customer's thread."""

from __future__ import annotations

from sqlalchemy import select

from bot.handlers import appkeys
from scheduler.campaigns.records import CampaignStatus, RunStatus
from storage.models import Campaign, CampaignRun, utcnow
from tests.harness import Bridge, all_text, eventually, thread_posts
from tests.test_real_traffic import fixture, settled


async def _campaigns(bridge: Bridge) -> dict[str, int]:
    """Three campaigns on the number: scheduled (cron), running mid-send, and one a manager paused."""
    deps = bridge.app[appkeys.DEPS]
    channel_id = next(iter(deps.channel_ids.values()))
    ids: dict[str, int] = {}
    async with deps.sessions() as s, s.begin():
        for name, status, kind in (("weekly", "scheduled", "cron"), ("sending", "running", "now"),
                                   ("held", "paused", "now")):
            c = Campaign(name=name, channel_id=channel_id, template_name="offer", language="en", category="MARKETING",
                         schedule_kind=kind, cron="0 10 * * 1" if kind == "cron" else None, status=status,
                         pause_reason="held by a manager" if status == "paused" else None)
            s.add(c)
            await s.flush()
            ids[name] = c.id
            if name == "sending":
                s.add(CampaignRun(campaign_id=c.id, scheduled_for=utcnow(), status=RunStatus.RUNNING.value))
    return ids


async def _state(bridge: Bridge) -> dict[int, tuple[str, list[str]]]:
    async with bridge.app[appkeys.SESSIONS]() as s:
        out: dict[int, tuple[str, list[str]]] = {}
        for c in (await s.scalars(select(Campaign))).all():
            runs = (await s.scalars(select(CampaignRun.status).where(CampaignRun.campaign_id == c.id))).all()
            out[c.id] = (c.status, list(runs))
        return out


async def test_offboarding_pauses_the_numbers_campaigns_and_reconnecting_resumes_them(bridge: Bridge) -> None:
    ids = await _campaigns(bridge)
    await bridge.webhook(fixture("account_offboarded"))
    await settled(bridge)
    state = await _state(bridge)
    assert state[ids["weekly"]][0] == state[ids["sending"]][0] == CampaignStatus.PAUSED.value
    assert state[ids["sending"]][1] == [RunStatus.PAUSED.value]
    alerts = await eventually(lambda: bridge.slack.messages("C0ALERTS"))
    text = all_text(alerts[-1])
    assert "WhatsApp Business account 200000000000001 (number +91 522 400 0000) was disconnected" in text
    assert "Mirroring and sending stop until it reconnects; 2 campaigns paused" in text

    await bridge.webhook(fixture("account_reconnected"))
    await settled(bridge)
    state = await _state(bridge)
    assert state[ids["weekly"]][0] == CampaignStatus.SCHEDULED.value
    assert state[ids["sending"]] == (CampaignStatus.RUNNING.value, [RunStatus.RUNNING.value])
    assert state[ids["held"]][0] == CampaignStatus.PAUSED.value  # the manager's pause is theirs to lift
    alerts = await eventually(lambda: (m := bridge.slack.messages("C0ALERTS")) and len(m) >= 2 and m)
    assert "is connected again: mirroring and sending resume; 2 paused campaigns resumed" in all_text(alerts[-1])


async def test_a_reinstatement_is_good_news_after_the_ban(bridge: Bridge) -> None:
    await bridge.webhook(fixture("account_update_disabled"))
    await bridge.webhook(fixture("account_update_reinstate"))
    await settled(bridge)
    alerts = await eventually(lambda: (m := bridge.slack.messages("C0ALERTS")) and len(m) >= 2 and m)
    texts = [all_text(a) for a in alerts]
    assert any(":rotating_light:" in t and "was disabled on October 9, 2023" in t for t in texts)
    assert any(":white_check_mark:" in t and "was reinstated on October 12, 2023" in t for t in texts)


async def test_a_pin_reset_request_is_an_alert_naming_who_should_check(bridge: Bridge) -> None:
    await bridge.webhook(fixture("security_pin_reset"))
    await settled(bridge)
    alerts = await eventually(lambda: bridge.slack.messages("C0ALERTS"))
    assert "someone asked to reset the two-step verification PIN (requested by 700000000000001)" in \
        all_text(alerts[0])


async def test_a_purchase_meta_detected_is_a_note_in_the_customers_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("referral"))  # Anita came from the ad
    await settled(bridge)
    await bridge.webhook(fixture("automatic_events_purchase"))
    await bridge.webhook(fixture("automatic_events_purchase"))  # redelivered: one note
    await settled(bridge)
    parent = await eventually(lambda: bridge.parents() and bridge.parents()[0])
    posts = await eventually(lambda: (p := thread_posts(bridge, parent)) and len(p) >= 2 and p)
    notes = [all_text(p) for p in posts if "purchase" in all_text(p)]
    assert len(notes) == 1 and "Meta detected a purchase of 4,500 INR in this chat" in notes[0]
    assert bridge.slack.messages("C0ALERTS") == []


# ---- marketing preferences ---------------------------------------------------------------------------


async def test_whatsapp_menu_stop_skips_marketing_campaigns_only_and_resume_lifts_it(bridge: Bridge) -> None:
    from scheduler.campaigns.records import RecipientStatus
    from storage.models import Contact
    from tests.test_campaign_support import Db, make_campaign, recipients, start_run

    deps = bridge.app[appkeys.DEPS]
    db = Db(None, deps.sessions, next(iter(deps.channel_ids.values())))  # type: ignore[arg-type]
    ravi, other = "919812345678", "919812399999"
    await bridge.webhook(fixture("text"))  # Ravi writes, then stops marketing from WhatsApp's menu
    await bridge.webhook(fixture("user_preferences"))
    await settled(bridge)
    assert (await bridge.one(Contact, Contact.wa_id == ravi)).opted_out is True

    marketing = await start_run(db, await make_campaign(db, [ravi, other], category="MARKETING", name="Offer"))
    utility = await start_run(db, await make_campaign(db, [ravi, other], category="UTILITY", name="Fee due"))
    sent = await recipients(db, marketing)
    assert sent[ravi].status == RecipientStatus.SKIPPED.value and sent[ravi].error_title == "opted out of marketing"
    assert sent[other].status != RecipientStatus.SKIPPED.value
    assert (await recipients(db, utility))[ravi].status != RecipientStatus.SKIPPED.value  # utility still goes

    await bridge.webhook(fixture("user_preferences_resume"))
    # (not `settled`: the campaigns' own progress posts come and go meanwhile)
    await eventually(lambda: bridge.one(Contact, Contact.wa_id == ravi), timeout=20)

    async def lifted() -> bool:
        return (await bridge.one(Contact, Contact.wa_id == ravi)).opted_out is False

    await eventually(lifted, timeout=20)
    again = await start_run(db, await make_campaign(db, [ravi], category="MARKETING", name="Offer 2"))
    assert (await recipients(db, again))[ravi].status != RecipientStatus.SKIPPED.value
    parent = await eventually(lambda: bridge.parents() and bridge.parents()[0])
    posts = await eventually(lambda: (p := thread_posts(bridge, parent)) and len(p) >= 3 and p)
    texts = [all_text(p) for p in posts]
    assert any("stopped marketing messages from WhatsApp's menu" in t for t in texts)
    assert any("resumed marketing messages from WhatsApp's menu" in t for t in texts)
