"""The demo plays end to end against the stand-ins and shows what the README promises."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from bot.cli.demo import run_demo
from bot.slack.display_names import isolate

ROOT = Path(__file__).resolve().parents[1]


async def test_demo_transcript_shows_every_step_of_the_scenario() -> None:
    out = io.StringIO()
    result = await run_demo(out, recipients=8)
    text = result.transcript
    ravi = text.split(f"● Wabridge: :speech_balloon: *{isolate('Ravi')}*")[1].split("● Wabridge")[0]
    # Printed as Slack received it: escaped, so it never reads as a real @channel; the parent carries it.
    assert "Hi! Is the Monday JEE batch full? &lt;!channel&gt;" in ravi
    assert "<!channel>" not in text
    assert "3 seats left" in ravi and ravi.count("via phone app") == 1  # one echo, named once
    assert "Priya: Booked! See you Monday at 9am, Ravi." in ravi
    assert ":eyes:" in ravi  # read receipt on the Slack reply
    assert "Priya: note: paid by UPI" in ravi and ":lock:" in ravi
    assert "Window closed" in text.split(f"*{isolate('Asha')}*")[1].split("● Wabridge")[0]
    assert "Not sent: the 24-hour window closed" in text and "[Send a template]" in text
    asha = text.split(f"*{isolate('Asha')}*")[1].split("● Wabridge")[0]
    assert "Yes, Saturdays at 10am!  [:no_entry_sign:]" in asha  # the refused reply is marked for everyone
    assert result.refused_reply_sent is False
    assert result.campaign_sends == 8
    assert result.max_sends_in_one_second <= 5
    assert "Reply to campaign *Monday schedule*" in text
    assert "20 of 20" not in text and "8 of 8" in text
    assert result.progress_lines and "8/8" in result.progress_lines[-1]
    assert "(cap 5/s)" in result.progress_lines[-1]
    assert "unprocessed webhooks: 0" in out.getvalue()
    manager, staff = result.home.split("━━ Home tab, as Priya sees it ━━")
    assert "Home tab, as Meera (manager) sees it" in manager
    waiting = manager.split("*lucknow*: 2 waiting")[1].split("─────")[0]
    assert waiting.index("Asha") < waiting.index("Student 1")  # oldest wait first
    assert "p50 2 min" in manager  # Ravi: answered from the phone app 2 minutes after he wrote
    assert "• Priya: 1 today" in manager and "phone app: 1 today" in manager
    assert "*Your replies*: 1 today" in staff and "Asha" not in staff
    assert result.home in text


def test_demo_command_runs_as_the_readme_says(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bot", "demo", "--recipients", "5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "━━ #lucknow ━━" in proc.stdout
    assert "reply outside the window not sent" in proc.stdout
    assert "Traceback" not in proc.stderr
