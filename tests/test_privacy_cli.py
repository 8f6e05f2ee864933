"""`wabridge contact export|forget` from the command line: files written, a missing salt named in one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli.entry import main
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Channel, Contact, ContactIdentity, Conversation, Message, utcnow
from tests.helpers import APP_SECRET, BOT_TOKEN, PNID, SIGNING_SECRET, VERIFY_TOKEN, WA_TOKEN, WABA

RAVI = "919812345678"


def _config(tmp_path: Path, db_url: str, **extra: Any) -> str:
    raw = {"database_url": db_url,
           "meta": {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
           # No Slack answers here: the threads are left for the server's retention pass (--no-slack).
           "slack": {"api_url": "http://127.0.0.1:9/api/", "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET},
           "channels": [{"name": "lucknow", "phone_number_id": PNID, "waba_id": WABA, "access_token": WA_TOKEN,
                         "slack_channel": "C0LUCKNOW"}], **extra}
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


async def _seed(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            channel = Channel(name="lucknow", phone_number_id=PNID, waba_id=WABA, mode="coexistence", mps=5)
            contact = Contact(wa_id=RAVI, profile_name="Ravi")
            s.add_all([channel, contact])
            await s.flush()
            s.add(ContactIdentity(contact_id=contact.id, kind="phone", value=RAVI))
            conv = Conversation(channel_id=channel.id, contact_id=contact.id, slack_channel="C0LUCKNOW",
                                slack_thread_ts="1700000000.000100")
            s.add(conv)
            await s.flush()
            s.add(Message(conversation_id=conv.id, direction="inbound", source="customer", type="text",
                          text="my address", wamid="wamid.R1", wa_timestamp=utcnow()))
    finally:
        await engine.dispose()


def test_export_then_forget_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    asyncio.run(_seed(db_url))
    no_salt = _config(tmp_path, db_url)
    out = tmp_path / "ravi.json"
    assert main(["--config", no_salt, "contact", "export", "+91 98123 45678", "--out", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["messages"][0]["text"] == "my address" and doc["contacts"][0]["wa_id"] == RAVI
    capsys.readouterr()

    assert main(["--config", no_salt, "contact", "forget", RAVI, "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: privacy.salt: not set;") and err.count("\n") == 1

    salted = _config(tmp_path, db_url, privacy={"salt": "cli-salt-0123456789"})
    assert main(["--config", salted, "contact", "forget", RAVI]) == 2  # without --yes: only what would go
    assert "would erase 1 contact(s), 1 conversation(s), 1 message(s)" in capsys.readouterr().out
    assert main(["--config", salted, "contact", "forget", RAVI, "--yes", "--no-slack"]) == 0
    assert "(redacting)" in capsys.readouterr().out  # the thread waits for a pass that can reach Slack
    assert main(["--config", salted, "contact", "export", RAVI]) == 1
    assert "no contact matches" in capsys.readouterr().err
