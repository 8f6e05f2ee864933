"""How conversations look in Slack: pure rendering, no I/O."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot.bridge.media import whatsapp_kind
from bot.slack import render
from bot.slack.display_names import isolate

CONTACT = render.ContactView("919812345678", "Ravi")
CHANNEL = render.ChannelView("lucknow", "+91 522 400 0000")


def _shown(posts: list[render.Post]) -> str:
    return json.dumps([{"text": p.text, "blocks": p.blocks} for p in posts], ensure_ascii=False)


def _view(kind: str, text: str | None = None, **content: Any) -> render.MessageView:
    return render.MessageView(direction="inbound", source="customer", type=kind, text=text,
                              content={"kind": kind, "text": text, **content})


def test_escape_neutralises_mentions_and_links() -> None:
    assert render.escape("<!channel> & <@U1> <http://x|y>") == "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://x|y&gt;"


@given(st.text())
def test_escaped_text_never_contains_angle_brackets(text: str) -> None:
    escaped = render.escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert render.unescape(escaped) == text


@given(st.text(alphabet="ab &<>\n", max_size=9000), st.integers(min_value=20, max_value=3000))
def test_split_keeps_every_character_and_respects_the_limit(text: str, limit: int) -> None:
    escaped = render.escape(text)
    chunks = render.split_text(escaped, limit)
    assert all(len(c) <= limit for c in chunks)
    assert not any(re.search(r"&[a-z]{0,3}$", c) for c in chunks[:-1])  # no entity cut in two
    rejoined = "".join(chunks)
    assert rejoined.replace("\n", "") == escaped.replace("\n", "")


def test_long_customer_message_is_split_not_truncated() -> None:
    text = ("word " * 2000).strip()  # 9,999 characters
    posts = render.message_posts(_view("text", text), CONTACT, CHANNEL)
    sections = [b["text"]["text"] for p in posts for b in p.blocks if b["type"] == "section"]
    assert len(sections) >= 4 and all(len(s) <= render.SECTION_LIMIT for s in sections)
    assert " ".join(s.strip() for s in sections).split() == text.split()


def test_customer_message_reads_as_the_customer() -> None:
    post = render.message_posts(_view("text", "hello"), CONTACT, CHANNEL)[0]
    assert post.username == f"{isolate('Ravi')} (+91 98123 45678)" and post.icon_emoji == render.CUSTOMER_ICON


def test_phone_app_echo_is_outbound_via_phone_app() -> None:
    view = render.MessageView(direction="outbound", source="phone_app", type="text", text="Saturday 10am",
                              content={})
    post = render.message_posts(view, CONTACT, CHANNEL)[0]
    assert post.username == "lucknow via phone app"
    assert f"*Outbound* to {isolate('Ravi')}" in post.blocks[0]["elements"][0]["text"]
    # The author name says it once; the blocks do not repeat it.
    assert "via phone app" not in json.dumps(post.blocks)


def test_slack_sent_reply_names_its_sender() -> None:
    view = render.MessageView(direction="outbound", source="slack", type="template", text="Hi Ravi",
                              content={}, slack_user="U0STAFF")
    assert "Template sent from Slack by <@U0STAFF>" in _shown(render.message_posts(view, CONTACT, CHANNEL))


def test_location_is_a_map_link_with_an_escaped_label() -> None:
    view = _view("location", location={"latitude": 26.8467, "longitude": 80.9462, "name": "Hazratganj <x>",
                                       "address": None})
    shown = _shown(render.message_posts(view, CONTACT, CHANNEL))
    assert "<https://www.google.com/maps/search/?api=1&amp;query=26.846700,80.946200|" in shown
    assert "Hazratganj &lt;x&gt;" in shown


def test_contacts_card_lists_name_phones_and_emails() -> None:
    card = {"name": {"formatted_name": "Priya S"}, "phones": [{"phone": "+91 99999 00000", "type": "CELL"}],
            "emails": [{"email": "p@example.com"}], "org": {"company": "Acme"}}
    shown = _shown(render.message_posts(_view("contacts", contacts=[card]), CONTACT, CHANNEL))
    for part in (f"*{isolate('Priya S')}*", "+91 99999 00000 (CELL)", "p@example.com", "Acme"):
        assert part in shown


def test_interactive_button_order_system_and_unsupported_are_readable() -> None:
    cases = {
        "interactive": (_view("interactive", "Monday", interactive={"type": "button_reply", "id": "b1",
                                                                    "title": "Monday"}), "Chose: *Monday*"),
        "list": (_view("interactive", "Batch B", interactive={"type": "list_reply", "id": "l", "title": "Batch B",
                                                              "description": "evenings"}),
                 "Picked from the list: *Batch B* — evenings"),
        "button": (_view("button", "Stop promotions", button={"payload": "STOP", "text": "Stop promotions"}),
                   "Tapped: *Stop promotions*"),
        "order": (_view("order", None, order={"catalog_id": "1", "text": "asap", "product_items": [
            {"product_retailer_id": "SKU1", "quantity": 2, "item_price": 50, "currency": "INR"}]}),
                  "2 x SKU1 @ 50 INR"),
        "system": (_view("system", "Customer changed number"), "Customer changed number"),
        "unsupported": (_view("unsupported", None, unsupported_type="poll", errors=[]),
                        "WhatsApp does not pass on to this app (*poll*)"),
    }
    for name, (view, expected) in cases.items():
        assert expected in _shown(render.message_posts(view, CONTACT, CHANNEL)), name


def test_reply_context_is_quoted_and_referral_named() -> None:
    view = render.MessageView(direction="inbound", source="customer", type="text", text="yes",
                              content={"context": {"id": "wamid.X"}, "referral": {"headline": "Summer batch",
                                                                                  "source_url": "https://fb.me/x"}},
                              quoted="Do you want <b>the</b> Monday batch?\nReply yes")
    shown = _shown(render.message_posts(view, CONTACT, CHANNEL))
    assert "> Do you want &lt;b&gt;the&lt;/b&gt; Monday batch?\\n> Reply yes" in shown
    assert "Came from an ad: Summer batch (https://fb.me/x)" in shown


def test_parent_shows_contact_number_channel_and_window() -> None:
    now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    post = render.parent_post(CONTACT, CHANNEL, now + timedelta(hours=3), now)
    shown = _shown([post])
    assert f"*{isolate('Ravi')}* · +91 98123 45678" in post.blocks[0]["text"]["text"]
    assert "lucknow (+91 522 400 0000)" in shown
    assert "Window open until 1 Jan 13:00 UTC" in shown
    closed = _shown([render.parent_post(CONTACT, CHANNEL, now - timedelta(hours=1), now)])
    assert "Window closed at 1 Jan 09:00 UTC" in closed


def test_status_reactions_and_failure_note() -> None:
    assert [render.status_reaction(s) for s in ("sent", "delivered", "read", "failed")] == [
        "heavy_check_mark", "ballot_box_with_check", "eyes", "x"]
    note = render.failure_text(131047, "Re-engagement message")
    assert "Meta error 131047" in note and "outside the 24-hour window: send a template" in note


def test_slack_text_becomes_plain_whatsapp_text() -> None:
    text = "See <https://x.example/a|the fees> &amp; <https://y.example> &lt;3 <@U1|asha>"
    assert render.slack_to_whatsapp(text) == "See the fees (https://x.example/a) & https://y.example <3 @asha"


def test_notes_are_recognised_by_prefix() -> None:
    prefixes = ["note:", "//"]
    assert render.is_note("  Note: internal", prefixes) and render.is_note("// later", prefixes)
    assert not render.is_note("a note: not at the start", prefixes)


def test_template_variables_are_found_and_filled_positionally_or_by_name() -> None:
    comps = [{"type": "HEADER", "format": "TEXT", "text": "Hello {{1}}"},
             {"type": "BODY", "text": "Class {{1}} at {{2}}, {{1}}"}]
    assert render.template_placeholders(comps) == [("header", "1"), ("body", "1"), ("body", "2")]
    assert render.template_components([("body", "1", "A"), ("body", "2", "B")]) == [
        {"type": "body", "parameters": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}]
    assert render.template_components([("body", "name", "Ravi")]) == [
        {"type": "body", "parameters": [{"type": "text", "text": "Ravi", "parameter_name": "name"}]}]
    assert render.fill_template("Class {{1}} at {{2}}", {"1": "A", "2": "B"}) == "Class A at B"


def test_whatsapp_media_limits_explain_what_cannot_go() -> None:
    assert whatsapp_kind("image/png", 1000, "a.png").kind == "image"
    assert whatsapp_kind("application/pdf", 10_000_000, "a.pdf").kind == "document"
    big = whatsapp_kind("image/jpeg", 7 * 1024 * 1024, "big.jpg")
    assert big.kind is None and "7.0 MB" in (big.reason or "") and "images up to 5.0 MB" in (big.reason or "")
    exe = whatsapp_kind("application/x-msdownload", 10, "setup.exe")
    assert exe.kind is None and "does not accept" in (exe.reason or "")
    assert whatsapp_kind(None, 10, "voice.ogg").kind == "audio"


def test_an_unsupported_message_is_one_line_without_parser_wording() -> None:
    err = {"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}
    posts = render.message_posts(_view("unsupported", None, unsupported_type="edit", original_type="unsupported",
                                       errors=[err]), CONTACT, CHANNEL)
    assert len(posts) == 1
    shown = _shown(posts)
    assert "a message of a kind WhatsApp does not pass on to this app (*edit*)" in shown
    legacy = _shown(render.message_posts(_view("unsupported", None, original_type="unknown", errors=[err]),
                                         CONTACT, CHANNEL))
    assert "(*unknown*)" not in legacy and "does not pass on" in legacy
    unread = _shown(render.message_posts(_view("unsupported", None, original_type="text",
                                               problem="text: 'text' object is missing or not an object",
                                               errors=[]), CONTACT, CHANNEL))
    assert "could not read" in unread and "object is missing" not in unread


def test_an_interactive_message_meta_could_not_deliver_says_so() -> None:
    err = {"code": 131000, "title": "Something went wrong", "message": "Something went wrong"}
    shown = _shown(render.message_posts(_view("unsupported", None, original_type="interactive", errors=[err],
                                              problem="interactive: 'interactive' object is missing"),
                                        CONTACT, CHANNEL))
    assert "Sent an *interactive* message that WhatsApp could not deliver here (Meta error 131000: " \
           "Something went wrong)" in shown
    assert "retrying" not in shown and "object is missing" not in shown


def test_a_failed_status_never_promises_a_retry() -> None:
    note = render.failure_text(131000, "Something went wrong")
    assert "retrying" not in note and "it is not retried: send it again if it still matters" in note


def test_request_welcome_and_referred_product_read_as_sentences() -> None:
    assert "Opened the chat for the first time" in _shown(render.message_posts(_view("request_welcome"), CONTACT,
                                                                                 CHANNEL))
    view = _view("text", "Is this still available?", context={
        "id": "wamid.P", "referred_product": {"catalog_id": "194836987003835", "product_retailer_id": "di9ozbzfi4"}})
    assert "Asked about product *di9ozbzfi4* from catalog 194836987003835" in _shown(
        render.message_posts(view, CONTACT, CHANNEL))
