"""The demo plays end to end against the stand-ins and shows what the README promises."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from bot.cli.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


async def test_demo_transcript_shows_every_step_of_the_scenario() -> None:
    out = io.StringIO()
    result = await run_demo(out, recipients=8)
    text = result.transcript
    ravi = text.split("● Wabridge: :speech_balloon: *Ravi*")[1].split("● Wabridge")[0]
    assert "Ravi (+91 98123 45678): Hi! Is the Monday JEE batch full? <!channel>" in ravi
    assert "via phone app" in ravi and "3 seats left" in ravi
    assert "Priya: Booked! See you Monday at 9am, Ravi." in ravi
    assert ":eyes:" in ravi  # read receipt on the Slack reply
    assert "Priya: note: paid by UPI" in ravi and ":lock:" in ravi
    assert "Window closed" in text.split("*Asha*")[1].split("● Wabridge")[0]
    assert "Not sent: the 24-hour window closed" in text
    assert result.refused_reply_sent is False
    assert result.campaign_sends == 8
    assert result.max_sends_in_one_second <= 5
    assert "Reply to campaign *Monday schedule*" in text
    assert "20 of 20" not in text and "8 of 8" in text
    assert result.progress_lines and "8/8" in result.progress_lines[-1]
    assert "unprocessed webhooks: 0" in out.getvalue()


def test_demo_command_runs_as_the_readme_says(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bot", "demo", "--recipients", "5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "━━ #lucknow ━━" in proc.stdout
    assert "reply outside the window not sent" in proc.stdout
    assert "Traceback" not in proc.stderr
