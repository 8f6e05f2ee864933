"""The Home tab's blocks (pure): limits Slack sets on a Home view, escaping, marks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.ops.home_view import ROWS_PER_LIST, CampaignLine, HomeData, manager_view, member_view, shown
from bot.ops.insights import PHONE_APP, ConversationInput, Event, Kind, figures

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def data(convs: list[ConversationInput], channels: list[str], **extra: object) -> HomeData:
    f = figures(convs, since=NOW - timedelta(days=1), now=NOW)
    return HomeData(NOW, "UTC", f, f, channels, **extra)  # type: ignore[arg-type]


def waiting_in(channel: str, cid: int, minutes: int, name: str = "Ravi") -> ConversationInput:
    return ConversationInput(cid, channel, name, (Event(NOW - timedelta(minutes=minutes), Kind.CUSTOMER, ref=cid),))


def test_many_channels_and_waits_stay_within_slacks_100_blocks() -> None:
    channels = [f"ch{i}" for i in range(120)]
    convs = [waiting_in(ch, i * 100 + j, 60 * 23 + j) for i, ch in enumerate(channels) for j in range(15)]
    view = manager_view(data(convs, [*channels, "quiet"]))
    assert len(view["blocks"]) <= 100
    text = json.dumps(view)
    assert "more channels with customers waiting" in text
    assert f"_and {15 - ROWS_PER_LIST} more_" in text
    assert "Nobody waiting :white_check_mark: in quiet" in text
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])


def test_only_the_listed_conversations_need_a_link() -> None:
    convs = [waiting_in("a", i, 100 - i) for i in range(25)] + [waiting_in("b", 100, 5)]
    listed = shown(figures(convs, since=NOW - timedelta(days=1), now=NOW))
    assert sorted(w.conversation_id for w in listed) == [*range(ROWS_PER_LIST), 100]


def test_names_are_escaped_and_overdue_waits_marked() -> None:
    convs = [waiting_in("lucknow", 1, 45, "<!here> & <b>"), waiting_in("lucknow", 2, 10, "Sita")]
    view = manager_view(data(convs, ["lucknow"], limits={"lucknow": timedelta(minutes=30)},
                             links={2: "https://x.slack.com/archives/C1/p1"},
                             campaigns=[CampaignLine("Offer <3", "lucknow", "running", 40, 100)]))
    text = json.dumps(view, ensure_ascii=False)
    assert "&lt;!here&gt; &amp; &lt;b&gt;: waiting 45 min :warning:" in text
    assert "<https://x.slack.com/archives/C1/p1|Sita>: waiting 10 min" in text
    assert "10 min :warning:" not in text
    assert "*Offer &lt;3* (lucknow, running): 40/100 sent" in text
    assert "<!here>" not in text


def test_member_view_shows_only_their_figures() -> None:
    convs = [ConversationInput(1, "lucknow", "Ravi", (Event(NOW - timedelta(minutes=30), Kind.CUSTOMER),
                                                      Event(NOW - timedelta(minutes=25), Kind.REPLY, "U1"),
                                                      Event(NOW - timedelta(minutes=20), Kind.REPLY, PHONE_APP)))]
    text = json.dumps(member_view("U1", data(convs, ["lucknow"])))
    assert "1 today, 1 this week" in text and "p50 5 min" in text and "Ravi" not in text
    assert "0 today" in json.dumps(member_view("U2", data(convs, ["lucknow"])))
