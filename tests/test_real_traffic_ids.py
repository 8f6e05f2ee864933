"""Usernames and ids to the end, from public fixtures into the real app: an old number, a user-id change,
history with ids, address-book entries without a number, blank names and usernames on echoes and calls.
Every sequence keeps one contact and one thread per person."""

from __future__ import annotations

import copy

from sqlalchemy import select

from bot.handlers import appkeys
from storage.models import Contact, ContactIdentity, Conversation, Message
from tests.harness import Bridge, all_text, eventually, thread_posts, thread_with
from tests.test_real_traffic import BSUID, fixture, settled

NEW_BSUID = "user.9b8a7c6d5e4f30211f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffee"


def _text_from(number: str, wamid: str, body: str, ts: str) -> dict:
    payload = copy.deepcopy(fixture("text"))
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = value["messages"][0]["from"] = number
    value["messages"][0].update(id=wamid, timestamp=ts, text={"body": body})
    return payload


async def _ids(bridge: Bridge) -> set[tuple[str, str]]:
    async with bridge.app[appkeys.SESSIONS]() as s:
        return {(i.kind, i.value) for i in (await s.scalars(select(ContactIdentity))).all()}


def _fresh_parent(bridge: Bridge) -> dict:
    return bridge.parents()[0]


async def test_old_number_new_number_and_a_late_message_from_the_old_one_share_one_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))  # Ravi on 919812345678
    parent, _ = await thread_with(bridge, 1)
    await bridge.webhook(fixture("system_new_wa_id"))  # the older spelling: system.new_wa_id
    await bridge.webhook(_text_from("919900011122", "wamid.after-change", "New number, same Ravi", "1751273100"))
    # A message sent from the old number before the change, delivered late (deliveries are not ordered).
    await bridge.webhook(_text_from("919812345678", "wamid.late-old", "Sent before I switched", "1751272990"))
    await settled(bridge)
    await thread_with(bridge, 4)
    assert len(bridge.parents()) == 1 and bridge.parents()[0]["ts"] == parent["ts"]
    assert await bridge.count(Contact) == 1 and await bridge.count(Conversation) == 1
    assert (await bridge.one(Contact)).wa_id == "919900011122"
    await eventually(lambda: "99000 11122" in all_text(_fresh_parent(bridge)))


async def test_user_id_change_and_user_id_update_keep_one_contact_and_one_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))  # Meera, known by BSUID only
    parent, _ = await thread_with(bridge, 1)
    await bridge.webhook(fixture("system_previous_user_id"))  # names the old id only inside `system`
    await bridge.webhook(fixture("user_id_update"))  # the same change, as its own field
    after = copy.deepcopy(fixture("inbound_bsuid"))
    value = after["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = value["messages"][0]["from_user_id"] = NEW_BSUID
    value["messages"][0]["id"] = "wamid.after-user-id-change"
    await bridge.webhook(after)  # she writes again under her new id
    await settled(bridge)
    await thread_with(bridge, 3)
    assert len(bridge.parents()) == 1 and bridge.parents()[0]["ts"] == parent["ts"]
    assert await bridge.count(Contact) == 1 and await bridge.count(Conversation) == 1
    ids = await _ids(bridge)
    assert ("user_id", BSUID) in ids and ("user_id", NEW_BSUID) in ids


async def test_user_id_update_alone_moves_replies_to_the_new_id(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))
    await thread_with(bridge, 1)
    await bridge.webhook(fixture("user_id_update"))
    await settled(bridge)
    assert (await bridge.one(Contact)).wa_id == NEW_BSUID and await bridge.count(Contact) == 1


async def test_history_keyed_by_user_id_goes_to_that_customer_with_directions_from_from(bridge: Bridge) -> None:
    await bridge.webhook(fixture("history_user_id"))
    await bridge.webhook(fixture("inbound_bsuid"))  # then she writes live
    await settled(bridge)
    assert await bridge.count(Contact) == 1 and await bridge.count(Conversation) == 1
    customer = await bridge.one(Message, Message.text == "Do you have parking?")
    business = await bridge.one(Message, Message.text == "Yes, two covered spots.")
    assert (customer.direction, customer.source) == ("inbound", "customer")
    assert (business.direction, business.source) == ("outbound", "phone_app")
    assert len(bridge.parents()) == 1


async def test_address_book_entry_without_a_number_names_the_id_only_contact(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))
    await thread_with(bridge, 1)
    await bridge.webhook(fixture("state_sync_user_id"))
    await settled(bridge)
    assert await bridge.count(Contact) == 1
    assert (await bridge.one(Contact)).address_book_name == "Meera Srivastava"
    await eventually(lambda: "Meera Srivastava" in all_text(_fresh_parent(bridge)))


async def test_a_blank_profile_name_shows_the_username_never_an_empty_bold(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_blank_name"))
    parent, replies = await thread_with(bridge, 1)
    shown = all_text(parent) + "".join(all_text(r) for r in replies)
    assert "@meera.lko" in shown
    assert "*   *" not in shown and "*  *" not in shown and "** " not in shown


async def test_echo_and_call_to_a_user_id_show_the_username(bridge: Bridge) -> None:
    await bridge.webhook(fixture("echo_username"))
    await bridge.webhook(fixture("calls_user_id"))
    await settled(bridge)
    await thread_with(bridge, 2)
    parent = _fresh_parent(bridge)  # opened by whichever came first: the call (bulk lane) or the echo
    shown = all_text(parent) + "".join(all_text(p) for p in thread_posts(bridge, parent))
    assert "@meera.lko" in shown and "number hidden" in shown and BSUID not in shown
    assert len(bridge.parents()) == 1 and await bridge.count(Contact) == 1


async def test_the_header_shows_the_number_once_it_becomes_known(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))
    parent, _ = await thread_with(bridge, 1)
    assert "number hidden" in all_text(parent)
    await bridge.webhook(fixture("inbound_phone_and_bsuid"))
    await settled(bridge)
    header = await eventually(lambda: (p := _fresh_parent(bridge)) and "98765 00142" in all_text(p) and p)
    assert header["ts"] == parent["ts"] and "number hidden" not in all_text(header)


async def test_the_business_username_is_announced(bridge: Bridge) -> None:
    await bridge.webhook(fixture("business_username_updates"))
    await settled(bridge)
    alerts = await eventually(lambda: bridge.slack.messages("C0ALERTS"))
    assert "WhatsApp number 915224000000: username @lucknowhomes was approved" in all_text(alerts[0])
