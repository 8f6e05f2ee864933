"""Firing campaigns: cron at the right local time (on a fake clock), once across schedulers, misfires, and
a running scheduler picking up what the CLI creates."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select, update

from bot.cli.entry import main
from scheduler.campaigns import records as campaigns
from scheduler.campaigns.jobs import CampaignScheduler
from scheduler.campaigns.records import CampaignStatus, RunStatus
from scheduler.campaigns.schedule import Schedule, weekly
from storage.models import Campaign, CampaignRecipient, CampaignRun, SlackOutbox
from tests.helpers import PNID, WABA
from tests.test_campaign_support import campaign_settings, make_campaign, numbers, open_db


class Clock:
    """A settable clock: the scheduler's idea of now, moved by the test instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _runs(db: Any, cid: int) -> list[CampaignRun]:
    async with db.sessions() as s:
        return list((await s.scalars(select(CampaignRun).where(CampaignRun.campaign_id == cid)
                                     .order_by(CampaignRun.scheduled_for))).all())


async def test_weekly_campaign_fires_at_nine_local_time_and_once(db_url: str) -> None:
    db = await open_db(campaign_settings(db_url))
    sunday = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # Sunday evening in India
    clock = Clock(sunday)
    cid = await make_campaign(db, numbers(3), schedule=Schedule("cron", "Asia/Kolkata",
                                                                cron=weekly(["mon"], time(9, 0))), now=sunday)
    sched = CampaignScheduler(db.sessions, clock=clock)

    clock.now = datetime(2026, 3, 2, 3, 29, 59, tzinfo=UTC)  # Monday 08:59:59 IST
    assert await sched.sync() == []
    clock.now = datetime(2026, 3, 2, 3, 30, 0, tzinfo=UTC)  # Monday 09:00:00 IST
    fired = await sched.sync()
    assert len(fired) == 1
    clock.now += timedelta(seconds=30)
    assert await sched.sync() == []

    runs = await _runs(db, cid)
    assert [r.scheduled_for for r in runs] == [datetime(2026, 3, 2, 3, 30, tzinfo=UTC)]
    async with db.sessions() as s:
        n = await s.scalar(select(func.count()).select_from(CampaignRecipient)
                           .where(CampaignRecipient.run_id == runs[0].id))
        assert n == 3
        assert (await s.get(Campaign, cid)).status == CampaignStatus.SCHEDULED  # type: ignore[union-attr]
        await s.execute(update(CampaignRun).values(status=RunStatus.DONE.value))
        await s.commit()

    clock.now = datetime(2026, 3, 9, 3, 30, 1, tzinfo=UTC)  # the next Monday
    assert len(await sched.sync()) == 1
    assert len(await _runs(db, cid)) == 2
    await db.close()


async def test_several_schedulers_fire_a_campaign_once(db_url: str) -> None:
    db = await open_db(campaign_settings(db_url))
    at = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
    cid = await make_campaign(db, numbers(5), schedule=Schedule("at", "UTC", run_at=at),
                              now=at - timedelta(hours=1))
    clock = Clock(at + timedelta(milliseconds=300))
    schedulers = [CampaignScheduler(db.sessions, clock=clock) for _ in range(4)]
    results = await asyncio.gather(*(s.sync() for s in schedulers))
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    runs = await _runs(db, cid)
    assert len(runs) == 1 and runs[0].status == RunStatus.RUNNING
    async with db.sessions() as s:
        assert (await s.get(Campaign, cid)).status == CampaignStatus.RUNNING  # type: ignore[union-attr]
    await db.close()


async def test_one_off_missed_during_downtime_is_reported_and_resume_sends_it(db_url: str) -> None:
    db = await open_db(campaign_settings(db_url))
    at = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
    cid = await make_campaign(db, numbers(2), schedule=Schedule("at", "UTC", run_at=at), now=at - timedelta(days=1))
    clock = Clock(at + timedelta(hours=7))  # down for longer than the grace period
    sched = CampaignScheduler(db.sessions, clock=clock)
    assert await sched.sync() == []
    runs = await _runs(db, cid)
    assert [r.status for r in runs] == [RunStatus.MISSED]
    async with db.sessions() as s:
        assert (await s.get(Campaign, cid)).status == CampaignStatus.MISSED  # type: ignore[union-attr]
        alerts = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "alert"))).all()
    assert len(alerts) == 1 and "was not sent" in alerts[0].payload["text"]
    assert await sched.sync() == []  # reported once

    await campaigns.resume(db.sessions, cid)
    real = CampaignScheduler(db.sessions)  # real clock: resuming sends it now
    assert len(await real.sync()) == 1
    assert [r.status for r in await _runs(db, cid)] == [RunStatus.RUNNING]
    await db.close()


async def test_cron_firings_during_a_pause_are_not_replayed_on_resume(db_url: str) -> None:
    db = await open_db(campaign_settings(db_url))
    now = datetime.now(UTC).replace(microsecond=0)
    cid = await make_campaign(db, numbers(2), schedule=Schedule("cron", "UTC", cron="* * * * *"),
                              now=now - timedelta(minutes=10))
    await campaigns.pause(db.sessions, cid, "holiday")
    await campaigns.resume(db.sessions, cid)
    sched = CampaignScheduler(db.sessions)
    assert await sched.sync() == []  # the minutes that passed while paused are not owed
    await db.close()


def _write_config(tmp_path: Path, db_url: str) -> Path:
    config = {
        "database_url": db_url,
        "meta": {"app_secret": "s", "verify_token": "v"},
        "slack": {"bot_token": "xoxb-t", "signing_secret": "s"},
        "channels": [{"name": "lucknow", "phone_number_id": PNID, "waba_id": WABA, "access_token": "t",
                      "slack_channel": "C0LUCKNOW", "mode": "coexistence"}],
        "pricing": {"currency": "INR", "platform_fee": 0.2, "rates": {"IN": {"marketing": 0.86, "utility": 0.115}}},
    }
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _audience(tmp_path: Path) -> Path:
    path = tmp_path / "students.csv"
    path.write_text("Name,Mobile,Batch\nRavi,098100 00001,A\nSita,+91 98100 00002,B\nBad,12345,C\n"
                    "Dup,9810000001,A\n")
    return path


async def test_cli_created_campaign_is_picked_up_by_a_running_scheduler_in_time(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = await open_db(campaign_settings(db_url))
    sched = CampaignScheduler(db.sessions)
    await sched.start()
    try:
        start_at = datetime.now(UTC) + timedelta(seconds=2)
        argv = ["--config", str(_write_config(tmp_path, db_url)), "campaign", "create", "--channel", "lucknow",
                "--template", "class_schedule", "--language", "en", "--audience", str(_audience(tmp_path)),
                "--at", start_at.isoformat(), "--var", "1=Name", "--var", "2=text:Monday"]
        assert await asyncio.to_thread(main, argv) == 0
        cid = int(capsys.readouterr().out.split("campaign #")[1].split()[0])
        runs: list[CampaignRun] = []
        for _ in range(80):
            runs = await _runs(db, cid)
            if runs:
                break
            await asyncio.sleep(0.05)
        found_at = datetime.now(UTC)
        assert len(runs) == 1, "the running scheduler did not pick the campaign up"
        assert runs[0].scheduled_for == start_at
        assert found_at - start_at < timedelta(seconds=2)
        assert sched.job_ids() == []  # one-off: its job is gone once it fired
    finally:
        await sched.stop()
    await db.close()


async def test_cli_create_reports_bad_rows_and_controls_the_campaign(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    config = str(_write_config(tmp_path, db_url))
    audience = str(_audience(tmp_path))

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, ["--config", config, "campaign", *args])

    assert (await cli("create", "--channel", "lucknow", "--template", "fees", "--language", "en",
                 "--audience", audience, "--cron", "0 10 1 * *", "--var", "1=Batch")) == 0
    out = capsys.readouterr()
    cid = int(out.out.split("campaign #")[1].split()[0])
    assert "monthly on day 1 at 10:00 (Asia/Kolkata)" in out.out
    assert "2 recipients imported from 4 rows (1 duplicates, 1 bad rows)" in out.out
    assert "INR" in out.out
    assert f"{audience}:4: '12345' is not a valid phone number" in out.err
    assert "not in the synced list" in out.err

    assert (await cli("list")) == 0
    listing = capsys.readouterr().out
    assert f"{cid:>5}  scheduled" in listing
    assert re.search(r" 1 [A-Z][a-z]{2} \d{4} 10:00 IST ", listing), listing  # next firing in the configured zone
    assert (await cli("pause", str(cid))) == 0
    assert (await cli("pause", str(cid))) == 1
    assert "only a scheduled or running one can be paused" in capsys.readouterr().err
    assert (await cli("resume", str(cid))) == 0
    assert (await cli("show", str(cid))) == 0
    assert "scheduled" in capsys.readouterr().out
    assert (await cli("cancel", str(cid))) == 0
    assert (await cli("show", "999")) == 1

    # A mapped column the file lacks, and a file without phones, are refused with the reason.
    assert (await cli("create", "--channel", "lucknow", "--template", "fees", "--language", "en",
                 "--audience", audience, "--var", "1=Fees")) == 1
    assert "column(s) not in the file: Fees" in capsys.readouterr().err
    assert (await cli("create", "--channel", "lucknow", "--template", "fees", "--language", "en",
                 "--audience", audience, "--at", "2020-01-01T09:00")) == 1
    assert "in the past" in capsys.readouterr().err
