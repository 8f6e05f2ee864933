"""Every renderer fed real-world extremes stays inside Slack's documented Block Kit limits, loses nothing
it must not lose, and passes slack_sdk's own validators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.handlers.slack_actions import PickerTarget, picker_view
from bot.onboarding.history import History, HistoryLine, summary_post
from bot.slack import limits, render
from bot.slack.template_choice import Choosable, label, suggestions
from scheduler.campaigns import estimate, progress
from scheduler.campaigns.forms import (
    NAME_MAX,
    Form,
    Summary,
    TemplateChoice,
    confirm_view,
    create_modal,
    parse_submission,
    problem_view,
    template_suggestions,
)
from scheduler.campaigns.schedule import Schedule
from storage.models import Template
from tests.test_campaign_support import campaign_settings

CONTACT = render.ContactView("919812345678", "Ravi <@U1> & co")
CHANNEL = render.ChannelView("lucknow", "+91 522 400 0000")
NASTY = ("& < >" * 820)[:4096]  # the longest WhatsApp text, all of it characters Slack escapes


def valid_message(post: render.Post) -> None:
    assert limits.message_problems(post.text, post.blocks) == [], post.text
    for block in Block.parse_all(post.blocks):
        block.validate_json()


def valid_view(view: dict[str, Any]) -> None:
    assert limits.view_problems(view) == []
    View(**view).validate_json()


def section_texts(posts: list[render.Post]) -> str:
    return "".join(b["text"]["text"] for p in posts for b in p.blocks if b["type"] == "section")


def inbound(kind: str, text: str | None = None, **content: Any) -> render.MessageView:
    return render.MessageView(direction="inbound", source="customer", type=kind, text=text,
                              content={"kind": kind, "text": text, **content})


# ---- the fitting helpers themselves ---------------------------------------------------------------


def test_clip_marks_the_cut_and_never_halves_an_entity() -> None:
    assert limits.clip("short", 10) == "short"
    cut = limits.clip("&amp;" * 10, 12)
    assert cut.endswith(limits.ELLIPSIS) and len(cut) <= 12
    assert render.unescape(cut[:-1]) == "&" * (len(cut[:-1]) // 5)


def test_option_values_are_refused_rather_than_cut() -> None:
    with pytest.raises(limits.LimitError):
        limits.option("x", "v" * 151)
    with pytest.raises(limits.LimitError):
        limits.fit_view({"type": "modal", "title": limits.plain("t", 24), "blocks": [],
                         "private_metadata": "m" * 3001})


def test_pack_blocks_keeps_every_block_in_order_within_both_limits() -> None:
    blocks = [limits.section(str(i) * 2999) for i in range(9)] + [limits.context("c")] * 60
    packs = limits.pack_blocks(blocks)
    assert [b for p in packs for b in p] == blocks
    for pack in packs:
        assert len(pack) <= limits.BLOCKS_PER_MESSAGE
        assert sum(limits.block_text_length(b) for b in pack) <= limits.MESSAGE_BLOCK_TEXT


# ---- conversation posts ---------------------------------------------------------------------------


def test_longest_text_of_escaped_characters_is_split_never_cut_and_summarised() -> None:
    posts = render.message_posts(inbound("text", NASTY), CONTACT, CHANNEL)
    assert len(posts) == 2  # 16,400 characters once escaped: more than one message takes
    for post in posts:
        valid_message(post)
    assert section_texts(posts) == render.escape(NASTY)
    assert posts[0].text.startswith("(1 of 2)") and posts[1].text.startswith("(2 of 2)")
    assert "<@U1>" not in posts[0].text


def test_outbound_long_text_from_slack_with_quote_fits() -> None:
    view = render.MessageView(direction="outbound", source="slack", type="text", text=NASTY, slack_user="U1",
                              quoted=NASTY, content={"context": {"id": "wamid.1"}})
    posts = render.message_posts(view, CONTACT, CHANNEL)
    for post in posts:
        valid_message(post)
    assert render.escape(NASTY) in section_texts(posts)


def test_contact_cards_with_twenty_phones_each_keep_every_number() -> None:
    cards = [{"name": {"formatted_name": f"Person {c} " + "&" * 300},
              "phones": [{"phone": f"+91 98100 {c:02d}{p:03d}", "type": "CELL"} for p in range(20)],
              "emails": [{"email": f"p{c}@example.com"}], "urls": [{"url": "https://example.com/" + "a" * 500}]}
             for c in range(20)]
    posts = render.message_posts(inbound("contacts", contacts=cards), CONTACT, CHANNEL)
    for post in posts:
        valid_message(post)
    shown = section_texts(posts)
    for c in range(20):
        for p in range(20):
            assert f"+91 98100 {c:02d}{p:03d}" in shown


def test_long_list_titles_and_locations_fit() -> None:
    reply = {"type": "list_reply", "id": "x", "title": "<b>" * 2000, "description": "&" * 5000}
    for view in (inbound("interactive", interactive=reply),
                 inbound("location", location={"latitude": 1, "longitude": 2, "name": "N" * 5000,
                                               "address": "&" * 5000})):
        for post in render.message_posts(view, CONTACT, CHANNEL):
            valid_message(post)


def test_alerts_notes_parent_and_history_fit() -> None:
    valid_message(render.alert_post({"alert": "quality", "text": NASTY * 3}))
    valid_message(render.note_post("n" * 2000))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    valid_message(render.parent_post(render.ContactView("91", "N" * 5000), CHANNEL, None, now))
    lines = tuple(HistoryLine(now + timedelta(minutes=i), "W" * 400, NASTY) for i in range(50))
    valid_message(summary_post(History("lucknow", "91", "x" * 500, lines)))


def test_campaign_progress_with_a_very_long_name_fits() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    snap = progress.Snapshot(1, 1, "N&" * 1500, "t" * 512, "lucknow", "C1", "running", now, None, 100, 10, 0, 90,
                             80, 70, 5, 5, 0, 3.0, 20, estimate.Cost(1.0, "INR", {"ZZ" * 100: 3}))
    message = progress.render(snap, now, "p" * 5000)
    valid_message(render.Post(message["text"], message["blocks"]))


# ---- templates: 300 of them, 512-character names -----------------------------------------------------


def many_templates(n: int = 300, waba: str = "111") -> list[Choosable]:
    return [Choosable(i + 1, waba, ("very_long_template_name_" * 22)[:500] + f"_{i:04d}", "en_US", "MARKETING")
            for i in range(n)]


def test_every_one_of_300_templates_with_512_character_names_can_be_found() -> None:
    templates = many_templates()
    first = suggestions(templates, "")
    group = first["option_groups"][0]
    assert group["label"]["text"].startswith("100 of 300")
    assert len(group["options"]) == 100
    for t in templates:
        answer = suggestions(templates, f"_{t.name[-4:]}")
        options = answer.get("options") or answer["option_groups"][0]["options"]
        assert [o["value"] for o in options] == [str(t.id)]
        assert options[0]["text"]["text"].endswith(f"_{t.name[-4:]} (en_US)")  # the end that tells them apart
        assert len(options[0]["text"]["text"]) <= limits.OPTION_TEXT


def test_label_keeps_language_and_end() -> None:
    assert label("fee", "en") == "fee (en)"
    long = label("a" * 400 + "_final", "pt_BR")
    assert long.endswith("_final (pt_BR)") and limits.ELLIPSIS in long and len(long) == limits.OPTION_TEXT


def test_two_wabas_share_the_hundred_options_fairly() -> None:
    both = many_templates(300, "111") + [Choosable(1000 + i, "222", f"other_{i}", "en") for i in range(20)]
    answer = suggestions(both, "", lambda w: f"WABA {w}")
    counts = {g["label"]["text"].split(" (")[0]: len(g["options"]) for g in answer["option_groups"]}
    assert counts == {"WABA 111": 80, "WABA 222": 20}
    element = {"type": "external_select", "action_id": "a", "option_groups": answer["option_groups"]}
    assert limits.block_problems([{"type": "input", "label": limits.plain("l", 10), "element": element}]) == []


def test_campaign_modal_suggestions_follow_the_chosen_number() -> None:
    settings = campaign_settings("sqlite+aiosqlite://", more_channels=[
        {"name": "kanpur", "phone_number_id": "2", "waba_id": "999", "mode": "cloud_api", "access_token": "t",
         "slack_channel": "C2"}])
    waba = settings.channels[0].waba_id
    choices = [TemplateChoice(waba, t.name, t.language, t.category, [], t.id) for t in many_templates()]
    choices.append(TemplateChoice("999", "kanpur_only", "en", "UTILITY", [], 5000))
    assert [o["value"] for o in template_suggestions(settings, choices, "kanpur", "kanpur")["options"]] == ["5000"]
    assert template_suggestions(settings, choices, "kanpur", "lucknow") == {"options": []}
    modal = create_modal(settings, choices, channel=None, origin="C1")
    valid_view(modal)
    chosen = choices[123]
    values = {"name": {"value": {"value": "n" * (NAME_MAX + 1)}},
              "template": {"wabridge_campaign_template": {"selected_option": {"value": chosen.value}}}}
    errors = parse_submission(values, settings, choices)
    assert isinstance(errors, dict)
    assert errors["name"] == f"At most {NAME_MAX} characters." and "template" not in errors


def test_picker_with_a_512_character_template_and_long_body_fits() -> None:
    body = "Dear {{1}}, " + "& <b> " * 2000 + " {{2}}"
    selected = Template(id=7, waba_id="111", name="n" * 512, language="en_US", category="UTILITY",
                        status="APPROVED", components=[{"type": "BODY", "text": body}])
    view = picker_view(PickerTarget(1, "C1", "1.2"), "W" * 5000, True, selected)
    valid_view(view)
    assert view["blocks"][1]["element"]["initial_option"]["value"] == "7"


# ---- confirm and problem views ------------------------------------------------------------------------


def test_fifty_thousand_bad_rows_still_say_how_many_more() -> None:
    settings = campaign_settings("sqlite+aiosqlite://")
    form = Form(name="N" * NAME_MAX, channel=settings.channels[0], template="t" * 512, language="en",
                category="MARKETING", variables={"1": {"column": "c" * 2000}},
                schedule=Schedule("now", "Asia/Kolkata", run_at=datetime(2026, 1, 1, tzinfo=UTC)), file_id="F",
                file_name="f" * 1000 + ".csv")
    bad = [(i + 2, "not a phone number: " + "<&>" * 400) for i in range(50_000)]
    summary = Summary(1, form, 50_001, 1, 0, 0, bad[:10], 50_000, 1.0, estimate.Cost(1.0, "INR"),
                      ["w" * 5000] * 3)
    view = confirm_view(summary, "C1")
    valid_view(view)
    warning = view["blocks"][1]["text"]["text"]
    assert warning.startswith(":warning: *50,000 rows skipped:*") and warning.endswith("… and 49,990 more")
    assert warning.count("\nline ") == 10
    problem = problem_view("x&" * 5000)
    valid_view(problem)
    assert problem["blocks"][0]["text"]["text"].endswith("Fix the file and run `/campaign` again.")


def test_ops_answer_with_300_long_template_lines_fits_the_five_answers_of_a_response_url() -> None:
    from bot.handlers.slack_ops import RESPONSES, _cap, _sections

    lines = [f"• {'n' * 512} (en_US) · marketing · REJECTED: {'&lt;reason&gt; ' * 50}" for _ in range(300)]
    blocks = _cap(_sections(lines))
    packs = limits.pack_blocks(blocks)
    assert len(packs) <= RESPONSES
    for pack in packs:
        valid_message(render.Post(limits.summary("Templates"), pack))
    assert blocks[-1]["type"] == "context" and "more sections not shown" in blocks[-1]["elements"][0]["text"]
