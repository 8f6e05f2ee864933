"""The campaign progress message: counts from recipients and webhook statuses, rate, ETA, spend, final report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from scheduler.campaigns import jobs, progress
from scheduler.campaigns.progress import bar, render, snapshot
from storage.models import Campaign, CampaignRecipient, CampaignRun, SlackOutbox
from tests.helpers import PNID
from tests.test_campaign_support import campaign_settings, make_campaign, numbers, open_db

PRICING = {"currency": "INR", "platform_fee": 0.2, "rates": {"IN": {"marketing": 0.86, "utility": 0.115}}}


def test_bar_fills_with_progress() -> None:
    assert bar(0, 10, width=10) == "░" * 10 + " 0%"
    assert bar(4, 10, width=10) == "████" + "░" * 6 + " 40%"
    assert bar(10, 10, width=10) == "█" * 10 + " 100%"
    assert bar(0, 0, width=4) == "████ 100%"


async def test_snapshot_counts_statuses_rate_eta_and_spend(db_url: str) -> None:
    settings = campaign_settings(db_url, mps=5, pricing=PRICING)
    db = await open_db(settings)
    audience = numbers(10)
    cid = await make_campaign(db, audience, category="MARKETING", name="Exam <reminder>")
    async with db.sessions() as s:
        at = (await s.get(Campaign, cid)).run_at  # type: ignore[union-attr]
    run_id = await jobs.fire(db.sessions, cid, at)  # type: ignore[arg-type]
    assert run_id is not None
    now = datetime.now(UTC)
    # 2 read, 2 delivered (billable marketing), 1 sent, 1 failed, 1 skipped, 1 unknown, 2 pending.
    states = ["read", "read", "delivered", "delivered", "sent", "failed", "skipped", "unknown", "pending", "pending"]
    async with db.sessions() as s, s.begin():
        recs = (await s.scalars(select(CampaignRecipient).where(CampaignRecipient.run_id == run_id)
                                .order_by(CampaignRecipient.wa_id))).all()
        for rec, state in zip(recs, states, strict=True):
            rec.status = state
            if state in ("read", "delivered", "sent", "unknown"):
                rec.wamid = f"wamid.{rec.wa_id}" if state != "unknown" else None
                rec.sent_at = now - timedelta(seconds=2)
            if state in ("read", "delivered"):
                rec.billable, rec.pricing_category = True, "marketing"

    async with db.sessions() as s:
        found = await snapshot(s, run_id, settings, now)
    assert found is not None
    snap, reason = found
    assert (snap.total, snap.pending, snap.accepted, snap.delivered, snap.read, snap.failed, snap.skipped,
            snap.unknown) == (10, 2, 5, 4, 2, 1, 1, 1)
    assert snap.slack_channel == "C0LUCKNOW"
    assert snap.rate == 0.6  # 6 sends in the last 10 s
    assert snap.spend is not None and snap.spend.text() == "4.24 INR"  # 4 x (0.86 + 0.20)

    message = render(snap, now, reason)
    text = message["text"] + str(message["blocks"])
    assert "Exam &lt;reminder&gt;" in text  # names are escaped
    assert "8 of 10" in text and "Sent *5*" in text and "Delivered *4*" in text and "Read *2*" in text
    assert "Rate 0.6/s (cap 5/s)" in text and "ETA 3 s" in text
    assert "Spend so far 4.24 INR" in text

    async with db.sessions() as s, s.begin():
        run = await s.get(CampaignRun, run_id)
        assert run is not None
        run.status, run.finished_at = "done", run.started_at + timedelta(minutes=2, seconds=5)
    async with db.sessions() as s:
        found = await snapshot(s, run_id, settings, now)
    assert found is not None
    final = str(render(found[0], now)["blocks"])
    assert "finished" in final and "Took 2 min" in final and "ETA" not in final
    assert "1 in flight during a restart" in final
    await db.close()


async def test_progress_refreshes_are_owed_once_per_key(db_url: str) -> None:
    db = await open_db(campaign_settings(db_url))
    cid = await make_campaign(db, numbers(1))
    async with db.sessions() as s:
        at = (await s.get(Campaign, cid)).run_at  # type: ignore[union-attr]
    run_id = await jobs.fire(db.sessions, cid, at)  # type: ignore[arg-type]
    async with db.sessions() as s, s.begin():
        assert run_id is not None
        assert not await progress.enqueue(s, run_id, "start")  # firing already owed it
        assert await progress.enqueue(s, run_id, "final")
    async with db.sessions() as s:
        items = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == progress.KIND))).all()
    assert [(i.thread_key, i.payload) for i in items] == [(f"campaign:{run_id}", {"run_id": run_id})] * 2
    await db.close()


async def test_statuses_after_the_final_report_keep_the_counts_and_the_message_moving(db_url: str) -> None:
    import json

    from bot.bridge.meta_events import EventContext
    from bot.bridge.webhook_worker import WebhookWorker
    from bot.core.metrics import Metrics
    from bot.meta.parser import event_type_of
    from storage import webhook_logs
    from tests.helpers import inbound_text, status

    settings = campaign_settings(db_url)
    db = await open_db(settings)
    audience = numbers(20)
    cid = await make_campaign(db, audience)
    async with db.sessions() as s:
        at = (await s.get(Campaign, cid)).run_at  # type: ignore[union-attr]
    run_id = await jobs.fire(db.sessions, cid, at)  # type: ignore[arg-type]
    assert run_id is not None
    async with db.sessions() as s, s.begin():
        for rec in (await s.scalars(select(CampaignRecipient).where(CampaignRecipient.run_id == run_id))).all():
            rec.status, rec.wamid, rec.sent_at = "sent", f"wamid.{rec.wa_id}", datetime.now(UTC)
        run = await s.get(CampaignRun, run_id)
        assert run is not None
        run.status, run.finished_at = "done", datetime.now(UTC)
        await progress.enqueue(s, run_id, "final")
        # The final report has been posted by now (the run ended before its statuses came in).
        for item in (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == progress.KIND))).all():
            item.done_at = datetime.now(UTC)

    async def deliver_statuses(state: str, wa_ids: list[str]) -> None:
        rows = [(json.dumps(p).encode(), event_type_of(p))
                for p in (status(f"wamid.{w}", state, recipient=w) for w in wa_ids)]
        async with db.engine.begin() as conn:
            await webhook_logs.store_many(conn, rows)
        worker = WebhookWorker(db.sessions, lambda: EventContext(settings, {PNID: db.channel_id}), Metrics())
        while await worker.process_available():
            pass

    async def owed() -> int:
        async with db.sessions() as s:
            return len((await s.scalars(select(SlackOutbox).where(
                SlackOutbox.kind == progress.KIND, SlackOutbox.done_at.is_(None)))).all())

    await deliver_statuses("delivered", audience)
    assert await owed() == 1  # the finished message is edited again
    await deliver_statuses("read", audience[:5])
    assert await owed() == 1  # the refresh still owed will show these too: no second one
    async with db.sessions() as s:
        found = await snapshot(s, run_id, settings)
    assert found is not None
    snap = found[0]
    assert (snap.run_status, snap.delivered, snap.read) == ("done", 20, 5)

    # A status that travels with a customer's message (one delivery, applied by its handlers) counts too.
    async with db.sessions() as s, s.begin():
        for item in (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == progress.KIND))).all():
            item.done_at = datetime.now(UTC)
    mixed = inbound_text("wamid.answer", "Thanks!", wa_id=audience[6])
    value = mixed["entry"][0]["changes"][0]["value"]
    value["statuses"] = status(f"wamid.{audience[5]}", "read", recipient=audience[5])[
        "entry"][0]["changes"][0]["value"]["statuses"]
    async with db.engine.begin() as conn:
        await webhook_logs.store_many(conn, [(json.dumps(mixed).encode(), event_type_of(mixed))])
    worker = WebhookWorker(db.sessions, lambda: EventContext(settings, {PNID: db.channel_id}), Metrics())
    assert await worker.process_available() == 1
    assert await owed() == 1
    async with db.sessions() as s:
        found = await snapshot(s, run_id, settings)
    assert found is not None and found[0].read == 6
    await db.close()
