"""The inbox's audit outside Slack: `wabridge report` lists a period's changes (text, CSV, JSON, by channel), and
`wabridge contact export` includes the changes to the customer's conversations."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli.entry import main
from bot.standins.slack import SlackStandin
from storage import inbox
from storage.db import make_engine, make_sessionmaker
from storage.inbox import Change, InboxAction, Outcome
from storage.models import Contact, Conversation, utcnow
from tests.test_privacy_cli import RAVI as RAVI_NUMBER
from tests.test_privacy_cli import _config, _seed
from tests.test_report import _run, _scenario
from tests.test_report import slack as slack  # the fixture

ASHA, BILAL = "U0ASHA", "U0BILAL"


async def _change(db_url: str, wa_id: str, action: InboxAction, actor: str, minutes_ago: float,
                  assignee: str | None = None) -> None:
    """One inbox change through storage.inbox, as the Slack listeners make it."""
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            conv_id, team = (await s.execute(select(Conversation.id, Conversation.slack_team).join(
                Contact, Contact.id == Conversation.contact_id).where(Contact.wa_id == wa_id))).one()
            at = utcnow() - timedelta(minutes=minutes_ago)
            key = f"test:{conv_id}:{action.value}:{actor}:{minutes_ago}"
            assert await inbox.apply(s, Change(conv_id, team, action, actor, at, key, assignee)) is Outcome.DONE
    finally:
        await engine.dispose()


async def test_report_lists_the_periods_inbox_changes(tmp_path: Path, db_url: str, slack: SlackStandin,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = await _scenario(tmp_path, db_url, slack)  # Asha is known to Slack, Bilal is not
    await _change(db_url, "919800000001", InboxAction.TAKE, ASHA, 60 * 30)  # before the period
    await _change(db_url, "919800000001", InboxAction.ASSIGN, ASHA, 50, BILAL)
    await _change(db_url, "919800000001", InboxAction.RESOLVE, BILAL, 40)
    await _change(db_url, "919800000001", InboxAction.REOPEN, "customer", 30)
    await _change(db_url, "919800000003", InboxAction.TAKE, BILAL, 20)  # on kanpur
    await _change(db_url, "919800000003", InboxAction.UNASSIGN, ASHA, 10, BILAL)

    assert await _run(["--config", str(config), "report", "--since", "1d", "--format", "json"]) == 0
    changes = json.loads(capsys.readouterr().out)["inbox_changes"]
    assert [(c["channel"], c["action"], c["by"], c["by_id"], c["assignee"]) for c in changes] == [
        ("lucknow", "assign", "Asha Verma", ASHA, BILAL), ("lucknow", "resolve", BILAL, BILAL, None),
        ("lucknow", "reopen", "the customer", None, None), ("kanpur", "take", BILAL, BILAL, None),
        ("kanpur", "unassign", "Asha Verma", ASHA, BILAL)]
    assert changes[0]["customer"] == "Ravi (+91 98000 00001)" and changes[0]["at"].endswith("+05:30")

    assert await _run(["--config", str(config), "report", "--since", "1d", "--channel", "kanpur"]) == 0
    text = capsys.readouterr().out
    assert "Inbox changes: 2" in text
    assert "kanpur: +91 98000 00003: U0BILAL took it" in text
    assert "kanpur: +91 98000 00003: Asha Verma unassigned U0BILAL" in text and "lucknow:" not in text

    assert await _run(["--config", str(config), "report", "--since", "1d", "--channel", "lucknow",
                       "--format", "csv"]) == 0
    rows = [r for r in csv.DictReader(io.StringIO(capsys.readouterr().out)) if r["section"] == "inbox"]
    assert [(r["action"], r["by"], r["assignee"]) for r in rows] == [
        ("assign", "Asha Verma", BILAL), ("resolve", BILAL, ""), ("reopen", "the customer", "")]


def test_contact_export_includes_the_inbox_changes(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    asyncio.run(_seed(db_url))
    asyncio.run(_change(db_url, RAVI_NUMBER, InboxAction.TAKE, ASHA, 5))
    asyncio.run(_change(db_url, RAVI_NUMBER, InboxAction.RESOLVE, ASHA, 1))
    out = tmp_path / "ravi.json"
    assert main(["--config", _config(tmp_path, db_url), "contact", "export", RAVI_NUMBER, "--out", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert [(c["action"], c["actor"]) for c in doc["inbox_changes"]] == [("take", ASHA), ("resolve", ASHA)]
    assert "dedupe_key" not in doc["inbox_changes"][0]
    page = tmp_path / "ravi.html"
    assert main(["--config", _config(tmp_path, db_url), "contact", "export", RAVI_NUMBER, "--out", str(page)]) == 0
    assert "<h2>Inbox changes</h2>" in page.read_text(encoding="utf-8")


async def test_report_for_one_label(tmp_path: Path, db_url: str, slack: SlackStandin,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from storage.models import ConversationLabel

    config = await _scenario(tmp_path, db_url, slack)
    raw = yaml.safe_load(config.read_text())
    raw["inbox"] = {**(raw.get("inbox") or {}), "labels": ["fees", "admissions"]}
    config.write_text(yaml.safe_dump(raw))
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            for wa_id in ("919800000001", "919800000002"):
                conv_id = (await s.execute(select(Conversation.id).join(Contact, Contact.id == Conversation.contact_id)
                                           .where(Contact.wa_id == wa_id))).scalar_one()
                s.add(ConversationLabel(conversation_id=conv_id, label="fees"))
    finally:
        await engine.dispose()
    await _change(db_url, "919800000001", InboxAction.TAKE, ASHA, 50)
    await _change(db_url, "919800000003", InboxAction.TAKE, BILAL, 40)  # not labelled

    assert await _run(["--config", str(config), "report", "--since", "1d", "--label", "fees", "--format",
                       "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["label"] == "fees"
    assert data["first_response"]["answered"] == 2  # Ravi's two waits; kanpur's customer is not labelled
    assert [u["customer"] for u in data["unanswered"]] == ["=cmd() (+91 98000 00002)"]
    assert [(c["action"], c["by_id"]) for c in data["inbox_changes"]] == [("take", ASHA)]
    # The surveys too: Ravi's (Asha's) only, not the one sent to kanpur's customer (Bilal's)
    assert [(c["id"], c["sent"], c["answered"]) for c in data["satisfaction"]] == [(ASHA, 1, 1)]
    assert await _run(["--config", str(config), "report", "--since", "1d", "--label", "fees", "--channel",
                       "kanpur", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["first_response"]["answered"], data["replies"], data["satisfaction"]) == (0, [], [])
    assert await _run(["--config", str(config), "report", "--label", "admissions"]) == 0
    out = capsys.readouterr().out
    assert "(conversations labelled admissions)" in out and "Inbox changes: 0" in out
    assert "U0BILAL" not in out and "Asha" not in out  # no survey, reply or change of theirs is labelled so
    assert await _run(["--config", str(config), "report", "--label", "vip"]) == 2
    assert "report: no label 'vip'; the labels: fees, admissions" in capsys.readouterr().err
