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
from bot.handlers.slack_privacy import FORGET_CONFIRM, SHORTCUT_EXPORT_CUSTOMER, SHORTCUT_FORGET_CUSTOMER
from bot.handlers.slack_saved_replies import NOT_HERE
from bot.slack import saved_replies as saved_ui
from bot.slack.inbox_view import (
    ACTIONS_BLOCK,
    ASSIGN_ACTION,
    LABELS_ACTION,
    MORE_BLOCK,
    REOPEN_ACTION,
    RESOLVE_ACTION,
    SNOOZE_ACTION,
    SNOOZE_DATE_ACTION,
    TAKE_ACTION,
    UNASSIGN_ACTION,
    UNSNOOZE_ACTION,
)
from scheduler.campaigns.unknown_notice import RESEND_ACTION
from storage.models import (
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Contact,
    Conversation,
    ConversationEvent,
    ConversationLabel,
    Message,
    SavedReply,
    Template,
)
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


async def _settled_thread(d: Deployment, number: tuple[str, str, str, str], wamid: str, text: str, wa_id: str,
                          name: str) -> tuple[int, str]:
    """A customer of `number` writes; (their conversation id, its thread ts) once the thread is recorded."""
    await d.customer_writes(number, wamid, text, wa_id=wa_id, name=name)
    parent = (await eventually(lambda: d.slack.messages(number[1], top_level_only=True)))[0]

    async def recorded() -> int | None:
        async with d.client.app[appkeys.SESSIONS]() as s:
            return await s.scalar(select(Conversation.id).where(Conversation.slack_thread_ts == parent["ts"]))

    return int(await eventually(recorded)), str(parent["ts"])


async def test_inbox_saved_replies_and_erasure_refuse_another_workspaces_ids(
        deployment: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    """The inbox (take, assign, unassign, resolve, reopen, the ✅ reaction, a note), the saved replies (library
    edit, delete and save; the picker's button, type-ahead, choice and send) and the erasure's confirmation,
    each reached from Alpha with an id of Beta's conversation, thread or saved reply: refused, logged, and
    nothing changed, sent, posted or opened."""
    d = deployment
    assert await d.install("T0ALPHA") == 200 and await d.install("T0BETA") == 200
    beta_conv, beta_ts = await _settled_thread(d, BETA, "wamid.B1", "Beta's customer asks", "919800000077", "Zubin")
    alpha_conv, alpha_ts = await _settled_thread(d, ALPHA, "wamid.A1", "Alpha's customer asks", "919800000066",
                                                 "Ravi")
    async with d.client.app[appkeys.SESSIONS]() as s, s.begin():
        reply = SavedReply(slack_team="T0BETA", name="Bank", text="Beta's bank: 0002", created_by=STAFF["T0BETA"])
        s.add(reply)
        await s.flush()
        reply_id = reply.id
    d.graph.reset_records()
    calls_before = len(d.slack.calls)
    library = {"id": "VLIB9", "type": "modal", "callback_id": saved_ui.LIBRARY_CALLBACK, "state": {"values": {}}}

    def picker(conversation_id: int, thread_ts: str, channel: str) -> dict[str, Any]:
        return {"id": "VSAVED9", "type": "modal", "callback_id": saved_ui.PICKER_CALLBACK, "hash": "h",
                "private_metadata": PickerTarget(conversation_id, channel, thread_ts).dump(), "state": {"values": {}}}

    chosen = {saved_ui.REPLY_BLOCK: {saved_ui.REPLY_SELECT: {"type": "external_select",
                                                             "selected_option": {"value": str(reply_id)}}},
              f"{saved_ui.TEXT_PREFIX}{reply_id}": {saved_ui.VALUE_ACTION: {"type": "plain_text_input",
                                                                            "value": "Beta's bank: 0002"}}}
    edited = {saved_ui.NAME_BLOCK: {saved_ui.VALUE_ACTION: {"type": "plain_text_input", "value": "Taken"}},
              saved_ui.BODY_BLOCK: {saved_ui.VALUE_ACTION: {"type": "plain_text_input", "value": "Alpha's now"}},
              saved_ui.NUMBER_BLOCK: {saved_ui.VALUE_ACTION: {"type": "static_select",
                                                              "selected_option": {"value": "*"}}}}

    # The inbox's buttons and select, naming Beta's conversation from Alpha's channel.
    for n, action_id in enumerate((TAKE_ACTION, ASSIGN_ACTION, UNASSIGN_ACTION, RESOLVE_ACTION, REOPEN_ACTION)):
        action: dict[str, Any] = {"action_id": action_id, "action_ts": f"7.{n}",
                                  "block_id": f"{ACTIONS_BLOCK}:{beta_conv}"}
        if action_id == ASSIGN_ACTION:
            action.update(type="users_select", selected_user=ASHA)
        else:
            action.update(type="button", value=json.dumps({"conversation_id": beta_conv}))
        assert await _interaction(d, {"type": "block_actions", "channel": {"id": ALPHA[1]},
                                      "actions": [action]}) == 200
    # The snooze menu, its date picker, Unsnooze and the labels, naming Beta's conversation.
    for n, action in enumerate((
            {"action_id": SNOOZE_ACTION, "type": "static_select", "selected_option": {"value": "1h"}},
            {"action_id": SNOOZE_DATE_ACTION, "type": "datepicker", "selected_date": "2099-01-01"},
            {"action_id": UNSNOOZE_ACTION, "type": "button", "value": json.dumps({"conversation_id": beta_conv})},
            {"action_id": LABELS_ACTION, "type": "multi_static_select",
             "selected_options": [{"value": "fees"}]})):
        action.update(action_ts=f"7.{n + 5}", block_id=f"{MORE_BLOCK}:{beta_conv}")
        assert await _interaction(d, {"type": "block_actions", "channel": {"id": ALPHA[1]},
                                      "actions": [action]}) == 200
    # Alpha's search finds Alpha's customer only, though Beta's wrote the same words.
    status, _ = await d.slack.send_slash_command(d.events_url, "/wabridge", "find customer asks", user_id=ASHA,
                                                 channel_id=ALPHA[1], signing_secret=SIGNING_SECRET,
                                                 team_id="T0ALPHA")
    assert status == 200
    found = await eventually(lambda: [c.args for c in d.slack.calls_to("response_url")])
    assert "1 conversation matching" in json.dumps(found[-1]) and "Zubin" not in json.dumps(found[-1])
    # A ✅ on Beta's parent and a note in Beta's thread, sent as Alpha.
    for n, event in enumerate(({"type": "reaction_added", "user": ASHA, "reaction": "white_check_mark",
                                "item": {"type": "message", "channel": BETA[1], "ts": beta_ts},
                                "event_ts": "1800000000.000200"},
                               {"type": "message", "channel": BETA[1], "user": ASHA, "text": "note: Alpha was here",
                                "ts": "1800000000.000300", "thread_ts": beta_ts})):
        status, _ = await d.slack.send_event(d.events_url, event, SIGNING_SECRET, team_id="T0ALPHA",
                                             event_id=f"EvCROSS{n}")
        assert status == 200
    # The erasure's confirmation, naming Beta's conversation.
    assert await _interaction(d, {"type": "view_submission", "view": {
        "id": "VFORGET9", "type": "modal", "callback_id": FORGET_CONFIRM, "state": {"values": {}},
        "private_metadata": json.dumps({"conversation_id": beta_conv})}}) == 200
    # Saved replies: Beta's reply edited, deleted and saved over from Alpha's library ...
    for n, action_id in enumerate((saved_ui.EDIT_ACTION, saved_ui.DELETE_ACTION)):
        assert await _interaction(d, {"type": "block_actions", "view": library,
                                      "container": {"type": "view", "view_id": library["id"]},
                                      "actions": [{"action_id": action_id, "block_id": "b", "type": "button",
                                                   "value": str(reply_id), "action_ts": f"8.{n}"}]}) == 200
    status, answer = await d.slack.send_interaction(d.events_url, {"user": {"id": ASHA}, "type": "view_submission",
        "view": {"id": "VEDIT9", "type": "modal", "callback_id": saved_ui.EDIT_CALLBACK,
                 "private_metadata": json.dumps({"id": reply_id}), "state": {"values": edited}}},
        SIGNING_SECRET, team_id="T0ALPHA")
    assert status == 200 and "gone" in answer
    # ... the picker opened on Beta's conversation, asked for options there, and Beta's reply picked and sent,
    # in Beta's conversation and in Alpha's own.
    assert await _interaction(d, {"type": "block_actions", "channel": {"id": ALPHA[1]}, "actions": [
        {"action_id": saved_ui.OPEN_ACTION, "type": "button", "action_ts": "8.5",
         "value": json.dumps({"conversation_id": beta_conv})}]}) == 200
    status, options = await d.slack.send_interaction(d.events_url, {
        "type": "block_suggestion", "user": {"id": ASHA}, "action_id": saved_ui.REPLY_SELECT,
        "block_id": saved_ui.REPLY_BLOCK, "value": "Ba", "view": picker(beta_conv, beta_ts, BETA[1])},
        SIGNING_SECRET, team_id="T0ALPHA")
    assert status == 200 and "Bank" not in options
    assert await _interaction(d, {"type": "block_actions", "view": picker(alpha_conv, alpha_ts, ALPHA[1]),
                                  "actions": [{"action_id": saved_ui.REPLY_SELECT, "block_id": saved_ui.REPLY_BLOCK,
                                               "type": "external_select", "action_ts": "8.7",
                                               "selected_option": {"value": str(reply_id)}}]}) == 200
    answers = []
    for conversation_id, thread_ts, channel in ((alpha_conv, alpha_ts, ALPHA[1]), (beta_conv, beta_ts, BETA[1])):
        status, answer = await d.slack.send_interaction(d.events_url, {
            "user": {"id": ASHA}, "type": "view_submission",
            "view": {**picker(conversation_id, thread_ts, channel), "state": {"values": chosen}}},
            SIGNING_SECRET, team_id="T0ALPHA")
        assert status == 200
        answers.append(answer)
    assert json.loads(answers[0]) == {"response_action": "errors", "errors": {saved_ui.REPLY_BLOCK: NOT_HERE}}

    def refused(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records if "refused" in r.getMessage())

    # Listeners answer after their ack: wait until each lookup has been refused.
    await eventually(lambda: refused(f"names the thread {BETA[1]}/{beta_ts} of workspace T0BETA") >= 12
                     and refused(f"names saved reply {reply_id} of workspace T0BETA") >= 4
                     and refused(f"names conversation {beta_conv} of workspace T0BETA") >= 1)
    assert refused("from workspace T0ALPHA names channel C0BETA of workspace T0BETA") >= 2  # the ✅ and the note
    assert d.graph.attempts == []
    later = d.slack.calls[calls_before:]
    assert [c.method for c in later if c.method.startswith("views.")] == []
    assert [c for c in later if c.team == "T0BETA"] == []
    async with d.client.app[appkeys.SESSIONS]() as s:
        beta = await s.get(Conversation, beta_conv)
        audit = (await s.scalars(select(ConversationEvent))).all()
        labels = (await s.scalars(select(ConversationLabel))).all()
        replies = (await s.execute(select(SavedReply.slack_team, SavedReply.name, SavedReply.text, SavedReply.uses)
                                   )).tuples().all()
        contact = await s.scalar(select(Contact.id).where(Contact.wa_id == "919800000077"))
        notes = (await s.scalars(select(Message.text).where(Message.conversation_id == beta_conv,
                                                            Message.is_note.is_(True)))).all()
    assert beta is not None and (beta.owner, beta.inbox_status, beta.snoozed_until) == (None, "open", None)
    assert audit == [] and labels == []
    assert replies == [("T0BETA", "Bank", "Beta's bank: 0002", 0)]
    assert contact is not None and notes == []
    # The same ids from Beta itself do work: the refusals were about the workspace, not the payloads' shape.
    status, _ = await d.slack.send_interaction(d.events_url, {
        "type": "block_actions", "user": {"id": STAFF["T0BETA"]}, "channel": {"id": BETA[1]},
        "actions": [{"action_id": TAKE_ACTION, "type": "button", "action_ts": "9.9",
                     "block_id": f"{ACTIONS_BLOCK}:{beta_conv}", "value": json.dumps({"conversation_id": beta_conv})}]},
        SIGNING_SECRET, team_id="T0BETA")
    assert status == 200

    async def taken_by_beta() -> bool:
        async with d.client.app[appkeys.SESSIONS]() as s:
            return await s.scalar(select(Conversation.owner).where(Conversation.id == beta_conv)) == STAFF["T0BETA"]

    await eventually(taken_by_beta)
