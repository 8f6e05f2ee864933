"""Slack markup → WhatsApp text: a table of what staff type (as Slack's event text has it) and what the
customer must read, plus the emoji lookup, reply splitting, and Slack names through the Slack stand-in."""

from __future__ import annotations

import emoji
import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.name_cache import NameCache
from bot.slack.names import resolve_names, user_name
from bot.slack.reply_parts import CAPTION_LIMIT, TEXT_LIMIT, caption_and_rest, split_message
from bot.slack.shortcodes import to_unicode, with_skin_tone
from bot.slack.to_whatsapp import NO_NAMES, Converted, Names, References, references, to_whatsapp
from bot.standins.slack import SlackStandin

NAMES = Names(users={"U0STAFF1": "Asha Rao", "W0GRID1": "Ravi"}, groups={"S0DESK": "front-desk"},
              channels={"C0FEES": "fees"})

# (Slack event text, WhatsApp text, whether the customer sees something other than Slack shows)
CASES: list[tuple[str, str, bool]] = [
    # the report in the issue
    ("Hi <@U0STAFF1>, see *bold* _it_ ~strike~ `code` :smile: :+1: <https://example.com/fees|fee page> "
     "&amp; &lt;3", "Hi @Asha Rao, see *bold* _it_ ~strike~ `code` 😄 👍 fee page (https://example.com/fees) "
     "& <3", True),
    # plain text and entities
    ("Thank you", "Thank you", False),
    ("Fish &amp; chips &lt;today&gt;", "Fish & chips <today>", False),
    ("&amp;lt; stays an entity as typed", "&lt; stays an entity as typed", False),
    ("  spaced out  \n", "spaced out", False),
    # emoji: standard names, aliases, skin tones, Slack-only names, custom emoji
    (":smile:", "😄", False),
    (":+1: :-1: :thumbsup:", "👍 👎 👍", False),
    (":simple_smile:", "🙂", False),
    (":slightly_smiling_face: :heart: :tada:", "🙂 ❤️ 🎉", False),
    (":+1::skin-tone-3:", "👍🏼", False),
    (":wave::skin-tone-6: bye", "👋🏿 bye", False),
    (":wave::skin-tone-1:", "👋", False),
    (":man-shrugging::skin-tone-4:", "🤷🏽\u200d♂️", False),
    (":heart::skin-tone-2:", "❤️", False),  # hearts take no skin tone: the heart stays
    (":flag-in: :flag-gb:", "🇮🇳 🇬🇧", False),
    (":woman-raising-hand:", "🙋\u200d♀️", False),
    (":the_horns: :spock-hand: :knife_fork_plate:", "🤘 🖖 🍽️", False),
    (":party_parrot: thanks", ":party_parrot: thanks", True),
    (":shipit::skin-tone-3:", "🐿️", False),
    ("at 10:30:45 sharp", "at 10:30:45 sharp", False),
    ("ratio 2:1:", "ratio 2:1:", False),
    # formatting, nested
    ("*bold* _italic_ ~strike~", "*bold* _italic_ ~strike~", False),
    ("*_bold italic_*", "*_bold italic_*", False),
    ("*bold with ~strike~ and _italic_ inside*", "*bold with ~strike~ and _italic_ inside*", False),
    ("_italic :smile: emoji_", "_italic 😄 emoji_", False),
    ("*<https://example.com/a|bold link>*", "*bold link (https://example.com/a)*", True),
    # code: shown as typed
    ("`:smile: &lt;b&gt;`", "`:smile: <b>`", False),
    ("```\nline 1 :smile:\n• not a list\n```", "```\nline 1 :smile:\n• not a list\n```", False),
    ("before ```<https://example.com>``` after :ok_hand:", "before ```https://example.com``` after 👌", False),
    # quotes and lists
    ("&gt; quoted line\nreply", "> quoted line\nreply", False),
    ("&gt;&gt;&gt; all of\nthis is quoted", "> all of\n> this is quoted", False),
    ("• one\n• two :smile:", "- one\n- two 😄", False),
    ("• one\n    ◦ nested\n        ▪︎ deeper", "- one\n    - nested\n        - deeper", False),
    ("1. first\n2. second", "1. first\n2. second", False),
    # links
    ("<https://example.com>", "https://example.com", False),
    ("<https://example.com|example.com>", "https://example.com", False),
    ("<https://example.com/|https://example.com/>", "https://example.com/", False),
    ("<https://example.com/q?a=1&amp;b=2|fees &amp; charges>", "fees & charges (https://example.com/q?a=1&b=2)", True),
    ("<https://example.com/fees|:moneybag: fees>", "💰 fees (https://example.com/fees)", True),
    ("<mailto:help@example.com|help@example.com>", "help@example.com", False),
    ("<mailto:help@example.com|write to us>", "write to us (help@example.com)", True),
    ("<tel:+919812345678|+919812345678>", "+919812345678", False),
    # mentions, groups, channels, broadcasts
    ("<@U0STAFF1> will call", "@Asha Rao will call", False),
    ("<@W0GRID1>", "@Ravi", False),
    ("<@U0GONE>", "@U0GONE", True),
    ("<@U0GONE|old name>", "@old name", False),
    ("ask <!subteam^S0DESK>", "ask @front-desk", False),
    ("ask <!subteam^S0OTHER|@billing>", "ask @billing", False),
    ("ask <!subteam^S0UNKNOWN>", "ask @S0UNKNOWN", True),
    ("see <#C0FEES|fees>", "see #fees", False),
    ("see <#C0FEES|>", "see #fees", False),
    ("see <#C0NOPE>", "see #C0NOPE", True),
    ("<!here> the customer is waiting", "the customer is waiting", True),
    ("Hi <!channel>, thanks", "Hi thanks", True),
    ("<!everyone>: closing at 6", "closing at 6", True),
    ("<!here>", "", True),
    ("due <!date^1700000000^{date_short}|Nov 14, 2023>", "due Nov 14, 2023", False),
    ("due <!date^1700000000^{date_short}>", "due 14 Nov 2023 22:13 UTC", False),
]


@pytest.mark.parametrize(("slack", "whatsapp", "differs"), CASES, ids=[c[0][:40] for c in CASES])
def test_slack_markup_reaches_whatsapp_as_meant(slack: str, whatsapp: str, differs: bool) -> None:
    converted = to_whatsapp(slack, NAMES)
    assert converted.text == whatsapp
    assert converted.differs is differs


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_without_names_mentions_fall_back_to_ids_and_say_so() -> None:
    converted = to_whatsapp("Hi <@U0STAFF1>", NO_NAMES)
    assert converted.text == "Hi @U0STAFF1" and converted.differs


@given(st.text(alphabet=st.characters(blacklist_characters="<>&:`•◦▪▫‣\ufe0e\ufe0f"), max_size=80))
def test_text_without_markup_reaches_the_customer_unchanged(text: str) -> None:
    converted = to_whatsapp(text, NAMES)
    assert converted == Converted(text.strip(), differs=False)


def test_references_lists_what_needs_a_name() -> None:
    refs = references("<@U1> <@W2|x> <!subteam^S3> <!subteam^S4|@a> <#C5|> <#C6|named> <#G7> <!here>")
    assert refs == References(users=frozenset({"U1", "W2"}), groups=frozenset({"S3", "S4"}),
                              channels=frozenset({"C5", "G7"}))
    assert not references("no ids here, <https://example.com>")


PIECES = [*"ab :*_~`<>|&;@!#^\n+-", "&amp;", "&lt;", "&gt;", ":+1:", "<@U1>", "<!here>", "```", "•"]


@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_any_slack_text_converts_without_error(text: str) -> None:
    converted = to_whatsapp(text, NAMES)
    assert converted.text == converted.text.strip()


# ---- emoji --------------------------------------------------------------------------------------------


def test_every_known_shortcode_is_a_real_emoji() -> None:
    for name in ("+1", "smile", "simple_smile", "flag-in", "man-shrugging", "female-doctor", "the_horns"):
        found = to_unicode(name)
        assert found is not None and emoji.is_emoji(found), name


def test_custom_and_unknown_names_are_not_emoji() -> None:
    assert to_unicode("party_parrot") is None
    assert to_unicode("flag-zz") is None
    assert to_unicode("flag-") is None


def test_skin_tones_apply_only_where_unicode_allows_them() -> None:
    assert with_skin_tone("👍", 5) == "👍🏾"
    assert with_skin_tone("❤️", 5) == "❤️"
    assert with_skin_tone("🙋\u200d♀️", 2) == "🙋🏻\u200d♀️"
    assert with_skin_tone("👍", 9) == "👍"


# ---- splitting ---------------------------------------------------------------------------------------


def test_long_replies_split_at_paragraphs_then_words() -> None:
    para = "word " * 600  # 3,000 characters
    parts = split_message(f"{para.strip()}\n\n{para.strip()}")
    assert [len(p) for p in parts] == [2999, 2999]
    words = split_message("word " * 1000)
    assert all(len(p) <= TEXT_LIMIT for p in words) and len(words) == 2
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in words)
    assert " ".join(words).split() == ["word"] * 1000


def test_a_cut_never_splits_an_emoji_sequence() -> None:
    family = "👨\u200d👩\u200d👧"
    text = family * 20
    parts = split_message(text, 16)
    assert "".join(parts) == text
    assert all(len(p) <= 16 and p.startswith("👨") and p.endswith("👧") for p in parts)
    flags = split_message("🇮🇳" * 20, 17)
    assert all(len(p) % 2 == 0 for p in flags)


def test_a_cut_code_block_is_closed_and_reopened() -> None:
    code = "```\n" + "\n".join(f"line {i:03d}" for i in range(60)) + "\n```"
    parts = split_message(code, 200)
    assert len(parts) > 1
    assert all(p.count("```") == 2 and len(p) <= 200 for p in parts)


def test_captions_over_the_limit_become_caption_and_follow_up() -> None:
    text = "Here is your invoice. " * 80  # 1,760 characters
    caption, rest = caption_and_rest(text)
    assert len(caption) <= CAPTION_LIMIT and caption.endswith("invoice.")
    assert (caption + " " + rest).split() == text.split()
    assert caption_and_rest("short") == ("short", "")


@given(st.lists(st.sampled_from([*"ab \n`", "👍🏼", "🇮🇳", "\u200d", "é"]), max_size=200).map("".join),
       st.integers(min_value=16, max_value=80))
def test_split_parts_fit_and_keep_every_word(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    def letters(s: str) -> str:
        return "".join(s.replace("```", "").split())

    assert letters("".join(parts)) == letters(text)


def test_limits_too_small_for_a_code_block_are_refused() -> None:
    with pytest.raises(ValueError):
        split_message("x" * 40, 8)


# ---- names through Slack (the stand-in) -----------------------------------------------------------------


async def test_names_are_looked_up_once_and_cached() -> None:
    async with SlackStandin(strict=True) as slack:
        slack.add_user("U0STAFF1", "asha", real_name="Asha Rao")
        slack.add_usergroup("S0DESK", "front-desk", ["U0STAFF1"])
        slack.add_channel("C0FEES", "fees")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        cache = NameCache()
        refs = references("<@U0STAFF1> <@U0NOBODY> <!subteam^S0DESK> <#C0FEES|> <#C0NOPE|>")
        first = await resolve_names(client, cache, refs)
        assert first == Names(users={"U0STAFF1": "asha"}, groups={"S0DESK": "front-desk"},
                              channels={"C0FEES": "fees"})
        calls = len(slack.calls)
        again = await resolve_names(client, cache, references("<@U0STAFF1> <!subteam^S0DESK> <#C0FEES|>"))
        assert again == first
        assert len(slack.calls) == calls  # every name came from the cache
        await resolve_names(client, cache, references("<@U0NOBODY>"))
        assert [c.method for c in slack.calls[calls:]] == ["users.info"]  # a failed lookup is tried again


async def test_a_slack_outage_leaves_ids_unnamed() -> None:
    async with SlackStandin() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        slack.set_down(True)
        names = await resolve_names(client, NameCache(), references("<@U0STAFF1> <!subteam^S1>"))
        assert names.users == {} and names.groups == {}


def test_user_name_prefers_the_display_name() -> None:
    assert user_name({"name": "asha", "real_name": "Asha Rao", "profile": {"display_name": "Asha"}}) == "Asha"
    assert user_name({"name": "asha", "profile": {"display_name": " ", "real_name": "Asha Rao"}}) == "Asha Rao"
    assert user_name({"name": "asha", "profile": {}}) == "asha"
    assert user_name({}) is None


def test_reply_conversion_bench_runs_at_its_smallest_size(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import reply_conversion

    assert reply_conversion.main(["--rounds", "2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in out.splitlines()
            if line.startswith("|")}
    assert rows["issue example"] == "1" and rows["long, emoji-heavy (12k chars)"] == "2"  # messages out
    assert "target: p50 under" in out
