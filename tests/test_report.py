"""`wabridge report`: the managers' figures from stored messages, in text, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.cli.entry import main
from bot.ops.report import parse_since
from bot.standins.slack import SlackStandin
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import AutoReply, utcnow
from storage.repository import sync_channels
from tests.helpers import BOT_TOKEN, make_settings
from tests.insights_seed import Msg, seed

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", NOW - timedelta(days=7)), ("24h", NOW - timedelta(hours=24)), ("90m", NOW - timedelta(minutes=90)),
    ("2w", NOW - timedelta(weeks=2)), ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T10:00+05:30", datetime(2026, 11, 1, 4, 30, tzinfo=UTC)),
])
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["0d", "seven days", "2027-01-01", "-3d", ""])
def test_parse_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(text, NOW)


async def _scenario(tmp_path: Path, db_url: str, slack: SlackStandin) -> Path:
    """Three conversations in the last hours; returns an app.yaml pointing at them."""
    settings = make_settings(db_url, slack_url=slack.api_url,
                             channels=[{"name": "lucknow", "phone_number_id": "1001", "waba_id": "2001",
                                        "access_token": "t", "slack_channel": "C0LUCKNOW"},
                                       {"name": "kanpur", "phone_number_id": "1002", "waba_id": "2002",
                                        "access_token": "t", "slack_channel": "C0KANPUR"}])
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    ids = await sync_channels(sessions, settings.channels)
    start = utcnow() - timedelta(hours=3)
    ravi = await seed(sessions, ids["1001"], "919800000001", "Ravi", start, [
        Msg(0, "customer"), Msg(1, "slack", "U0ASHA", note=True), Msg(4, "slack", "U0ASHA"),  # 4 min
        Msg(30, "customer"), Msg(40, "phone_app"),  # 10 min
        Msg(50, "campaign"),
    ])
    await seed(sessions, ids["1001"], "919800000002", "=cmd()", start, [
        Msg(60, "campaign"), Msg(70, "customer"), Msg(75, "customer")])  # waiting since 70
    kanpur = await seed(sessions, ids["1002"], "919800000003", None, start, [
        Msg(0, "customer"), Msg(20, "slack", "U0ASHA", status="failed"), Msg(30, "slack", "U0BILAL")])  # 30
    async with sessions() as s, s.begin():  # satisfaction surveys: answered, unanswered, one never sent
        s.add_all([AutoReply(conversation_id=ravi, kind="csat", period_key="r1", state="sent", staff="U0ASHA",
                             score=3, answer="Great", trigger_at=start, created_at=start + timedelta(minutes=45)),
                   AutoReply(conversation_id=kanpur, kind="csat", period_key="r2", state="sent", staff="U0BILAL",
                             trigger_at=start, created_at=start + timedelta(minutes=35)),
                   AutoReply(conversation_id=kanpur, kind="csat", period_key="r3", state="skipped",
                             staff="U0BILAL", trigger_at=start, created_at=start + timedelta(minutes=36))])
    await engine.dispose()
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return config


@pytest.fixture
async def slack() -> object:
    async with SlackStandin(bot_token=BOT_TOKEN, strict=True) as standin:
        standin.add_user("U0ASHA", "asha", real_name="Asha Verma")
        yield standin


async def test_report_json_has_percentiles_unanswered_and_replies_with_names(
        tmp_path: Path, db_url: str, slack: SlackStandin, capsys: pytest.CaptureFixture[str]) -> None:
    config = await _scenario(tmp_path, db_url, slack)
    assert await _run(["--config", str(config), "report", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["first_response"] == {"answered": 3, "p50_minutes": 10.0, "p90_minutes": 30.0}
    assert [(u["channel"], u["customer"]) for u in data["unanswered"]] == [("lucknow", "=cmd() (+91 98000 00002)")]
    assert 100 <= data["unanswered"][0]["waiting_minutes"] <= 115
    # U0BILAL is unknown to Slack: the id stays
    assert data["replies"] == [
        {"responder": "Asha Verma", "id": "U0ASHA", "replies": 1},
        {"responder": "U0BILAL", "id": "U0BILAL", "replies": 1},
        {"responder": "phone app", "id": None, "replies": 1},
    ]
    assert data["satisfaction"] == [
        {"staff": "Asha Verma", "id": "U0ASHA", "sent": 1, "answered": 1, "average": 3.0, "best_share": 1.0},
        {"staff": "U0BILAL", "id": "U0BILAL", "sent": 1, "answered": 0, "average": None, "best_share": None},
    ]


async def test_report_for_one_channel_as_csv(tmp_path: Path, db_url: str, slack: SlackStandin,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = await _scenario(tmp_path, db_url, slack)
    assert await _run(["--config", str(config), "report", "--channel", "lucknow", "--format", "csv",
                       "--since", "1d"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_section: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    assert [(r["name"], r["minutes"], r["count"]) for r in by_section["first_response"]] == [
        ("p50", "4.0", "2"), ("p90", "10.0", "2")]
    # a name that a spreadsheet would run as a formula is quoted
    assert [r["name"] for r in by_section["unanswered"]] == ["'=cmd() (+91 98000 00002)"]
    assert {(r["name"], r["count"]) for r in by_section["replies"]} == {("Asha Verma", "1"), ("phone app", "1")}
    assert [(r["name"], r["minutes"], r["count"]) for r in by_section["satisfaction"]] == [("Asha Verma", "3.0", "1")]


async def test_report_as_text(tmp_path: Path, db_url: str, slack: SlackStandin,
                              capsys: pytest.CaptureFixture[str]) -> None:
    config = await _scenario(tmp_path, db_url, slack)
    assert await _run(["--config", str(config), "report", "--channel", "kanpur"]) == 0
    out = capsys.readouterr().out
    assert "in kanpur" in out
    assert "First response: p50 30 min, p90 30 min (1 answered)" in out
    assert "Unanswered: 0" in out
    assert "  U0BILAL: 1" in out and "Asha" not in out  # her failed send is not a reply
    assert "Satisfaction surveys" in out and "  U0BILAL: 0 of 1 answered" in out


async def test_report_times_are_in_the_configured_timezone(tmp_path: Path, db_url: str, slack: SlackStandin,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = await _scenario(tmp_path, db_url, slack)  # timezone: Asia/Kolkata
    assert await _run(["--config", str(config), "report"]) == 0
    text = capsys.readouterr().out
    assert "+00:00" not in text
    assert text.startswith("Report from ") and text.split("\n")[0].endswith(" IST")
    assert " IST)" in text  # since when the unanswered customer waits
    assert await _run(["--config", str(config), "report", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["timezone"] == "Asia/Kolkata"
    assert data["since"].endswith("+05:30") and data["unanswered"][0]["waiting_since"].endswith("+05:30")
    assert "." not in data["until"]  # whole seconds


async def test_report_refuses_bad_arguments_with_a_message(tmp_path: Path, db_url: str, slack: SlackStandin,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = await _scenario(tmp_path, db_url, slack)
    assert await _run(["--config", str(config), "report", "--since", "yesterday"]) == 2
    assert "report: --since 'yesterday'" in capsys.readouterr().err
    assert await _run(["--config", str(config), "report", "--channel", "nowhere"]) == 2
    assert "no channel named 'nowhere'" in capsys.readouterr().err


async def _run(argv: list[str]) -> int:
    import asyncio

    # main() runs its own event loop; keep it off the test's.
    return await asyncio.to_thread(main, argv)


async def test_names_fall_back_to_ids_when_slack_cannot_be_reached() -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.slack.names import UserNames

    unreachable = AsyncWebClient(token=BOT_TOKEN, base_url="http://127.0.0.1:9/api/", timeout=2)
    assert await UserNames(unreachable).of(["U0ASHA", "phone app"]) == {}
