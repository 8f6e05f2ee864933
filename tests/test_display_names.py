"""Customer names in Slack: bidi controls and zero-width tricks removed, what is left isolated (FSI … PDI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from bot.bridge.group_events import group_note
from bot.handlers.slack_ops import slack_title
from bot.meta import events as ev
from bot.ops.export import Transcript
from bot.slack import render
from bot.slack.display_names import FSI, PDI, ZWJ, ZWNJ, clean_name, isolate, shown_name

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
INVISIBLE = "\u200b\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f\u2065"
CHANNEL = render.ChannelView("lucknow", "+91 522 400 0000")


def test_bidi_overrides_embeddings_and_isolates_are_removed() -> None:
    # "\u202e" would show "evil.exe" reversed and reorder the number after it.
    assert clean_name("\u202eexe.live\u202c") == "exe.live"
    assert clean_name("\u2067\u0633\u0627\u0631\u0627\u2069 \u202bx\u202c") == "\u0633\u0627\u0631\u0627 x"
    assert clean_name("A\u200eB\u200fC\u061cD") == "ABCD"


def test_zero_width_and_invisible_characters_are_removed() -> None:
    assert clean_name("Ra\u200bvi\ufeff\u2060") == "Ravi"
    assert clean_name("R\u200davi") == "Ravi"  # a joiner between letters only makes look-alikes
    assert clean_name("x\U000e0041\U000e0042\U000e0043") == "x"  # tag characters smuggling "ABC"
    assert clean_name("a\ufe0f\ufe0f\ufe0f\ufe0fb") == "a\ufe0fb"  # a run of selectors could carry data


def test_line_breaks_controls_and_blank_names_collapse() -> None:
    assert clean_name("Ravi\n> *boss*\r\n\tK") == "Ravi > *boss* K"
    assert clean_name("\u2800\u2800\u3164") is None  # the usual "empty name" trick
    assert clean_name("\u200b\u200c\u200d\u202e") is None
    assert clean_name("") is None and clean_name(None) is None


def test_emoji_sequences_flags_and_indic_conjuncts_keep_their_joiners() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert clean_name(f"{family} Sharma") == f"{family} Sharma"
    assert clean_name("\u2764\ufe0f") == "\u2764\ufe0f" and clean_name("1\ufe0f\u20e3") == "1\ufe0f\u20e3"
    england = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    assert clean_name(england) == england
    assert clean_name("\u0915\u094d\u200d\u0937") == "\u0915\u094d\u200d\u0937"  # after a virama: a conjunct form
    assert clean_name("\u0915\u094d\u200c\u0937") == "\u0915\u094d\u200c\u0937"


def test_shown_names_are_isolated() -> None:
    assert shown_name("Ravi") == f"{FSI}Ravi{PDI}" == isolate("Ravi")
    assert shown_name("\u200b") is None


def test_labels_isolate_the_name_and_fall_back_to_the_number() -> None:
    arabic = "\u0633\u0627\u0631\u0627"
    assert render.ContactView("919812345678", f"\u202e{arabic}").label == f"{FSI}{arabic}{PDI} (+91 98123 45678)"
    assert render.ContactView("919812345678", "\u200b\u200d\u2066").label == "+91 98123 45678"
    assert render.ContactView("user.4f1c2b9a", "\u2800", "@\u202emeera").label == f"{FSI}@meera{PDI}"
    assert render.ContactView("user.4f1c2b9a", "\u200b").label == "WhatsApp user (number hidden)"


def test_no_post_carries_a_raw_control_from_a_name() -> None:
    contact = render.ContactView("919812345678", "\u202eRavi\u200b\u2067x", "@r\u2066")
    view = render.MessageView(direction="inbound", source="customer", type="text", text="hello")
    posts = [render.parent_post(contact, CHANNEL, None, datetime.now(UTC)),
             *render.message_posts(view, contact, CHANNEL)]
    shown = json.dumps([[p.text, p.blocks, p.username] for p in posts], ensure_ascii=False)
    assert not set(shown) & set(BIDI.replace(FSI, "").replace(PDI, "") + INVISIBLE + ZWJ + ZWNJ)
    assert f"*{FSI}Ravix{PDI}* · +91 98123 45678" in shown
    assert posts[1].username == f"{FSI}Ravix{PDI} (+91 98123 45678)"


@given(st.text(alphabet=st.sampled_from(list(BIDI + INVISIBLE + "ab \n\u0915\u094d\U0001f468\u200d\u200c\ufe0f")),
               max_size=40))
def test_cleaning_removes_every_control_and_is_stable(name: str) -> None:
    cleaned = clean_name(name)
    if cleaned is None:
        return
    assert not set(cleaned) & set(BIDI + INVISIBLE) and "\n" not in cleaned
    assert cleaned == cleaned.strip() and cleaned.strip()
    for i, ch in enumerate(cleaned):
        if ch in (ZWJ, ZWNJ):  # only after a virama, or a ZWJ between two pictographs
            assert cleaned[i - 1] == "\u094d" or (ch == ZWJ and 0 < i < len(cleaned) - 1)
    assert clean_name(cleaned) == cleaned


def test_a_shared_contact_card_name_is_cleaned_and_isolated() -> None:
    card = {"name": {"formatted_name": "\u202eSupport\u200b Desk"}, "phones": [{"phone": "+91 98100 00001"}]}
    view = render.MessageView(direction="inbound", source="customer", type="contacts", content={"contacts": [card]})
    assert render.body_text(view).splitlines()[0] == f":bust_in_silhouette: *{FSI}Support Desk{PDI}*"
    blank = {"name": {"formatted_name": "\u200b\u2066"}}
    view = render.MessageView(direction="inbound", source="customer", type="contacts", content={"contacts": [blank]})
    assert render.body_text(view) == ":bust_in_silhouette: *Contact*"


def test_an_exported_transcript_is_named_in_slack_with_the_cleaned_name() -> None:
    t = Transcript(channel="lucknow", business_number="+91 522 400 0000", wa_id="919812345678",
                   contact_name="\u202eRavi\u200b", timezone="UTC", lines=())
    assert slack_title(t) == f"Conversation with {FSI}Ravi{PDI} (+919812345678) on lucknow"
    assert t.title == "Conversation with \u202eRavi\u200b (+919812345678) on lucknow"  # the file keeps what was stored


def test_group_subjects_and_participants_in_notes_are_cleaned_and_isolated() -> None:
    env = ev.Envelope(waba_id="W1", field="group_lifecycle_update", phone_number_id="1", display_phone_number="+91")
    created = ev.GroupEvent(envelope=env, group_id="G1", type="group_create", timestamp=None,
                            subject="\u202eSales\u200b")
    assert group_note(created, []) == f":busts_in_silhouette: Group created: *{FSI}Sales{PDI}*."
    joined = ev.GroupEvent(envelope=env, group_id="G1", type="group_participants_add", timestamp=None,
                           added=[ev.GroupMember(wa_id="919812345678"),
                                  ev.GroupMember(wa_id=None, username="@\u2066x")])
    known = [{"wa_id": "919812345678", "name": "\u2067Ravi\u2069\u200b"}]
    assert group_note(joined, known) == f":inbox_tray: {FSI}Ravi{PDI} (+91 98123 45678), {FSI}@x{PDI} joined the group"
    renamed = ev.GroupEvent(envelope=env, group_id="G1", type="group_settings_update", timestamp=None,
                            settings={"group_subject": {"text": "\u202eNew\u2060"}})
    assert f"*{FSI}New{PDI}*" in str(group_note(renamed, []))
