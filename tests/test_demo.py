"""The demo plays end to end against the stand-ins and shows what the README promises."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.cli.demo import run_demo, story_minute
from bot.slack.display_names import isolate

ROOT = Path(__file__).resolve().parents[1]


def test_the_story_stays_within_today_just_after_local_midnight() -> None:
    noon = datetime(2026, 12, 7, 6, 30, tzinfo=UTC)  # Monday 12:00 in Kolkata
    assert story_minute(noon, "Asia/Kolkata") == timedelta(minutes=1)
    just_after = datetime(2026, 12, 6, 18, 35, tzinfo=UTC)  # Monday 00:05 in Kolkata
    minute = story_minute(just_after, "Asia/Kolkata")
    assert just_after - 12 * minute > datetime(2026, 12, 6, 18, 30, tzinfo=UTC)


async def test_demo_transcript_shows_every_step_of_the_scenario() -> None:
    out = io.StringIO()
    result = await run_demo(out, recipients=8, page=True)
    text = result.transcript
    ravi = text.split(f"● Wabridge: 💬 {isolate('Ravi')}")[1].split("● Wabridge")[0]
    # Customer text is escaped in what Slack received, so it never reads as a real @channel, and shown as
    # Slack shows it: the characters the customer typed.
    assert "Hi! Is the Monday JEE batch full? <!channel>" in ravi
    parent = next(m for m in result.slack_messages if "Is the Monday JEE batch full?" in str(m.get("blocks")))
    assert "&lt;!channel&gt;" in str(parent["blocks"]) and "<!channel>" not in str(parent["blocks"])
    assert "3 seats left" in ravi and ravi.count("via phone app") == 1  # one echo, named once
    assert "Priya: Booked! See you Monday at 9am, Ravi." in ravi
    assert "👀" in ravi  # read receipt on the Slack reply
    assert "Priya: note: paid by UPI" in ravi and "🔒" in ravi
    assert "Window closed" in text.split(f"💬 {isolate('Asha')}")[1].split("● Wabridge")[0]
    assert "Not sent: the 24-hour window closed" in text and "[Send a template]" in text
    asha = text.split(f"💬 {isolate('Asha')}")[1].split("● Wabridge")[0]
    assert "Yes, Saturdays at 10am!   🚫" in asha  # the refused reply is marked for everyone
    assert result.refused_reply_sent is False
    assert result.campaign_sends == 8
    assert result.max_sends_in_one_second <= 5
    assert "📢 Reply to campaign Monday schedule" in text
    # The reply quotes what the student received: the template filled with their row, not "an earlier message".
    assert "│ Hi Student 1, your JEE class schedule for this week is ready." in text
    assert "an earlier message" not in text
    assert "Reactions: " in text and "👀 read" in text and "🚫 not sent" in text and "🔒 internal note" in text
    # No raw Slack markup: no *bold* markers, no :shortcodes:, no entities, no <…|…> links.
    assert not re.search(r"(?<![\w*])\*[^*\s][^*\n]*\*(?!\w)", text), text
    assert not re.search(r":[a-z0-9_+-]+:", text) and "&lt;" not in text and "&gt;" not in text
    assert not re.search(r"<[^<>]*\|[^<>]*>", text)
    page = result.html
    assert page.startswith("<!doctype html>") and "<b>" in page and "👀" in page and "Reactions:" in page
    assert "Hi Student 1, your JEE class schedule" in page and ":speech_balloon:" not in page
    assert "20 of 20" not in text and "8 of 8" in text
    assert result.progress_lines and "8/8" in result.progress_lines[-1]
    assert "(cap 5/s)" in result.progress_lines[-1]
    assert "unprocessed webhooks: 0" in out.getvalue()
    manager, staff = result.home.split("━━ Home tab, as Priya sees it ━━")
    assert "Home tab, as Meera (manager) sees it" in manager
    waiting = manager.split("lucknow: 2 waiting")[1].split("─────")[0]
    assert waiting.index("Asha") < waiting.index("Student 1")  # oldest wait first
    assert "p50 2 min" in manager  # Ravi: answered from the phone app 2 minutes after he wrote
    assert "• Priya: 1 today" in manager and "phone app: 1 today" in manager
    assert "Your replies: 1 today" in staff and "Unassigned and waiting: 2" in staff  # everyone's inbox
    assert "• Priya: 1 today" not in staff  # the team's figures are the managers'
    assert result.home in text


def test_demo_command_runs_as_the_readme_says(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bot", "demo", "--recipients", "5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "━━ #lucknow ━━" in proc.stdout
    assert "reply outside the window not sent" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert "\x1b[" not in proc.stdout  # not a terminal: no escape codes in a pipe or a file


def test_slack_markup_is_drawn_as_slack_shows_it() -> None:
    from bot.cli import slack_view as view

    names = view.Names({"U1": "Asha Verma"}, {"C1": "lucknow"})
    text = "*Ravi* said _hi_ ~old~ `code` to <@U1> in <#C1> :eyes: <https://x.example/a_b|the site> &lt;!here&gt;"
    assert view.mrkdwn(text, names, view.PLAIN) == (
        "Ravi said hi old code to @Asha Verma in #lucknow 👀 the site (https://x.example/a_b) <!here>")
    assert view.mrkdwn("*Ravi* &amp; co", names, view.HTML) == "<b>Ravi</b> &amp; co"
    assert view.mrkdwn("> quoted\nnot", names, view.PLAIN) == "│ quoted\nnot"
    assert view.mrkdwn("&gt; typed by a customer", names, view.PLAIN) == "> typed by a customer"
    assert view.mrkdwn("*bold*", names, view.ANSI) == "\x1b[1mbold\x1b[22m"
    assert view.legend(["eyes", "lock"]) == "👀 read · 🔒 internal note, kept in Slack"
