"""Nothing crosses between workspaces: every Slack entry point, reached from one workspace with the ids of
another's channel, thread, conversation or campaign, is refused (and logged) and acts on nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.handlers import appkeys
from bot.handlers.slack_actions import (
    PICKER_CALLBACK,
    SHORTCUT_EXPORT,
    SHORTCUT_OPT_OUT,
    SHORTCUT_SEND_TEMPLATE,
    TEMPLATE_BLOCK,
    TEMPLATE_SELECT,
    PickerTarget,
)
from bot.handlers.slack_messages import OPEN_PICKER_ACTION
from bot.handlers.slack_privacy import SHORTCUT_EXPORT_CUSTOMER, SHORTCUT_FORGET_CUSTOMER
from scheduler.campaigns.unknown_notice import RESEND_ACTION
from storage.models import Campaign, CampaignRecipient, CampaignRun, Channel, Contact, Conversation, Template
from tests.harness import eventually
from tests.helpers import SIGNING_SECRET
from tests.workspaces_harness import ALPHA, BETA, STAFF, Deployment, deployment_of

ASHA = STAFF["T0ALPHA"]  # Alpha's staff member, who tries Beta's ids


@pytest.fixture
async def deployment(aiohttp_client: Any, db_url: str) -> AsyncIterator[Deployment]:
    async with deployment_of(aiohttp_client, db_url) as d:
        yield d


async def _beta_thread(d: Deployment) -> tuple[str, int, int, int]:
    """Both installed; Beta has a thread, a template and a campaign with an `unknown` recipient:
    (Beta's thread ts, conversation id, template id, campaign id)."""
    assert await d.install("T0ALPHA") == 200
    assert await d.install("T0BETA") == 200
    await d.customer_writes(BETA, "wamid.B1", "Beta's customer asks", wa_id="919800000077", name="Zubin")
    parents = await eventually(lambda: d.slack.messages(BETA[1], top_level_only=True))
    async with d.client.app[appkeys.SESSIONS]() as s, s.begin():
        conv = (await s.scalars(select(Conversation).where(Conversation.slack_team == "T0BETA"))).one()
        beta_channel = (await s.scalars(select(Channel).where(Channel.phone_number_id == BETA[2]))).one()
        tpl = Template(waba_id=BETA[3], name="hello", language="en", category="UTILITY", status="APPROVED",
                       components=[{"type": "BODY", "text": "Hello!"}])
        camp = Campaign(name="beta offer", channel_id=beta_channel.id, template_name="hello", language="en",
                        schedule_kind="now", status="running", slack_channel=BETA[1], slack_team="T0BETA")
        s.add_all([tpl, camp])
        await s.flush()
        run = CampaignRun(campaign_id=camp.id, scheduled_for=datetime.now(UTC), status="done")
        s.add(run)
        await s.flush()
        s.add(CampaignRecipient(run_id=run.id, wa_id="919800000009", status="unknown", attempts=1))
        return str(parents[0]["ts"]), conv.id, tpl.id, camp.id


async def _interaction(d: Deployment, payload: dict[str, Any]) -> int:
    status, _ = await d.slack.send_interaction(d.events_url, {"user": {"id": ASHA}, **payload}, SIGNING_SECRET,
                                               team_id="T0ALPHA")
    return status


async def test_every_entry_point_refuses_another_workspaces_ids(deployment: Deployment,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    d = deployment
    thread_ts, conv_id, template_id, campaign_id = await _beta_thread(d)
    d.graph.reset_records()
    calls_before = len(d.slack.calls)
    message = d.slack.thread(BETA[1], thread_ts)[0]

    # A reply typed "in Beta's thread", sent as Alpha.
    status, _ = await d.slack.send_event(d.events_url, {
        "type": "message", "channel": BETA[1], "user": ASHA, "text": "hello from the wrong workspace",
        "ts": "1800000000.000100", "thread_ts": thread_ts}, SIGNING_SECRET, team_id="T0ALPHA")
    assert status == 200
    # Message shortcuts on Beta's thread.
    for n, callback in enumerate((SHORTCUT_SEND_TEMPLATE, SHORTCUT_OPT_OUT, SHORTCUT_EXPORT,
                                  SHORTCUT_EXPORT_CUSTOMER, SHORTCUT_FORGET_CUSTOMER)):
        assert await _interaction(d, {"type": "message_action", "callback_id": callback,
                                      "channel": {"id": BETA[1]}, "message": message,
                                      "message_ts": message["ts"], "action_ts": f"9.{n}",
                                      "response_url": f"{d.slack.base_url}/response-url/x"}) == 200
    # The template picker's button and its modal, naming Beta's conversation from Alpha's channel.
    assert await _interaction(d, {"type": "block_actions", "channel": {"id": ALPHA[1]}, "actions": [
        {"action_id": OPEN_PICKER_ACTION, "type": "button", "action_ts": "9.5",
         "value": json.dumps({"conversation_id": conv_id})}]}) == 200
    values = {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {"type": "static_select",
                                                 "selected_option": {"value": str(template_id)}}}}
    assert await _interaction(d, {"type": "view_submission", "view": {
        "id": "VPICK9", "type": "modal", "callback_id": PICKER_CALLBACK,
        "private_metadata": PickerTarget(conv_id, BETA[1], thread_ts).dump(),
        "state": {"values": values}}}) == 200
    # The picker's type-ahead, asked for Beta's conversation: no templates offered.
    status, options = await d.slack.send_interaction(d.events_url, {
        "type": "block_suggestion", "user": {"id": ASHA}, "action_id": TEMPLATE_SELECT, "block_id": TEMPLATE_BLOCK,
        "value": "hel", "view": {"id": "VPICK9", "type": "modal", "callback_id": PICKER_CALLBACK,
                                 "private_metadata": PickerTarget(conv_id, BETA[1], thread_ts).dump()}},
        SIGNING_SECRET, team_id="T0ALPHA")
    assert status == 200 and "hello" not in options
    # "Resend N" of Beta's campaign, and /campaign commands naming it.
    assert await _interaction(d, {"type": "block_actions", "channel": {"id": ALPHA[1]},
                                  "response_url": f"{d.slack.base_url}/response-url/y", "actions": [
                                      {"action_id": RESEND_ACTION, "type": "button", "action_ts": "9.6",
                                       "value": f"{campaign_id}:999999"}]}) == 200
    answers: dict[str, str] = {}
    for text in (f"show {campaign_id}", f"pause {campaign_id}", f"cancel {campaign_id}", "list"):
        status, answers[text] = await d.slack.send_slash_command(
            d.events_url, "/campaign", text, user_id=ASHA, channel_id=ALPHA[1], signing_secret=SIGNING_SECRET,
            team_id="T0ALPHA")
        assert status == 200
    # A command typed in Beta's channel by a request from Alpha.
    status, _ = await d.slack.send_slash_command(d.events_url, "/campaign", "list", user_id=ASHA,
                                                 channel_id=BETA[1], signing_secret=SIGNING_SECRET, team_id="T0ALPHA")
    assert status == 200

    def refusals(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records if "refused" in r.getMessage())

    # Listeners answer after their ack: wait for the lookups of Beta's thread and campaign to be refused.
    await eventually(lambda: refusals(f"names the thread {BETA[1]}/{thread_ts} of workspace T0BETA") >= 3
                     and refusals(f"names campaign {campaign_id} of workspace T0BETA") >= 4)
    # Nothing reached WhatsApp, no picker opened, nothing was posted or marked in Beta's workspace.
    assert d.graph.attempts == []
    later = d.slack.calls[calls_before:]
    assert [c.method for c in later if c.method in ("views.open", "views.push")] == []
    assert [c for c in later if c.team == "T0BETA"] == []
    async with d.client.app[appkeys.SESSIONS]() as s:
        contact = (await s.scalars(select(Contact).join(Conversation, Conversation.contact_id == Contact.id)
                                   .where(Conversation.id == conv_id))).one()
        camp = await s.get(Campaign, campaign_id)
        unknown = (await s.scalars(select(CampaignRecipient.status))).all()
    assert not contact.opted_out
    assert camp is not None and camp.status == "running"
    assert unknown == ["unknown"]
    # The commands were told the campaign does not exist, as if it did not.
    for verb in ("show", "pause", "cancel"):
        assert answers[f"{verb} {campaign_id}"].lower().startswith(f"campaign {campaign_id} does not exist"), answers
    assert "beta offer" not in answers["list"]
    assert not any("beta offer" in a for a in answers.values())
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert sum("from workspace T0ALPHA names channel C0BETA of workspace T0BETA" in m for m in refused) == 7
    # Ids that name no channel (a conversation in a button or a modal, a campaign) are refused where they are
    # looked up, and logged there.
    assert sum(f"names the thread {BETA[1]}/{thread_ts} of workspace T0BETA" in m for m in refused) >= 3
    assert sum(f"names campaign {campaign_id} of workspace T0BETA" in m for m in refused) >= 4
    # Alpha's own thread still works: the refusals were about Beta's ids only.
    await d.customer_writes(ALPHA, "wamid.A1", "Alpha's customer")
    await eventually(lambda: any("Alpha's customer" in str(m) for m in d.posts(ALPHA)))


async def test_the_home_tab_shows_a_workspace_its_own_numbers_with_its_own_token(deployment: Deployment) -> None:
    d = deployment
    await _beta_thread(d)  # Beta has a customer waiting
    status, _ = await d.slack.send_event(d.events_url, {"type": "app_home_opened", "user": ASHA, "tab": "home"},
                                         SIGNING_SECRET, team_id="T0ALPHA")
    assert status == 200
    published = await eventually(lambda: [c for c in d.slack.calls_to("views.publish") if c.ok])
    assert {(c.team, c.args.get("user_id")) for c in published} == {("T0ALPHA", ASHA)}
    view = json.dumps(published[0].args.get("view"))
    assert "alpha" in view and "beta" not in view.lower() and "Zubin" not in view
