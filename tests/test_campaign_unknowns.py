"""`unknown` campaign recipients: who may become one, status webhooks settling them by their callback data,
recovery from a silent sender, and sending them again (CLI, the "Resend N" button, automatically) once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from scheduler.campaigns.records import RecipientStatus
from scheduler.campaigns.recovery import take_back_orphans
from scheduler.campaigns.unknown_notice import (
    RESEND_ACTION,
    check_unknowns,
    parse_button_value,
    render_notice,
)
from scheduler.campaigns.unknown_store import UnknownRun, resend_unknown
from scheduler.campaigns.unknowns import (
    callback_data,
    orphan_fate,
    quiet_enough,
    recipient_of,
    settles_unknown,
)
from storage import liveness
from storage.models import CampaignRecipient, CampaignRun, SlackOutbox, WebhookLog, utcnow
from tests.harness import bridges, eventually
from tests.helpers import SLACK_CHANNEL, inbound_text, make_settings, status
from tests.test_campaign_support import Db, make_campaign, numbers, open_db, start_run

R = CampaignRecipient
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


# ---- the rules ----------------------------------------------------------------------------------------


def test_only_a_recipient_whose_request_may_have_left_becomes_unknown() -> None:
    assert orphan_fate("sending", None, None) is RecipientStatus.PENDING  # claimed, never attempted
    assert orphan_fate("sending", T0, None) is RecipientStatus.UNKNOWN  # attempted, no answer recorded
    assert orphan_fate("sending", T0, "wamid.x") is RecipientStatus.SENT  # Meta already named its message
    for settled in ("pending", "sent", "failed", "unknown", "skipped"):
        assert orphan_fate(settled, T0, None) is None


def test_a_status_settles_unknown_and_resent_recipients_but_not_one_its_sender_is_recording() -> None:
    assert settles_unknown("unknown", "sent") is RecipientStatus.SENT
    assert settles_unknown("unknown", "delivered") is RecipientStatus.SENT
    assert settles_unknown("unknown", "failed") is RecipientStatus.FAILED
    assert settles_unknown("pending", "read") is RecipientStatus.SENT  # offered again, but the first went out
    assert settles_unknown("sending", "sent") is None
    assert settles_unknown("sent", "failed") is None
    assert settles_unknown("unknown", "deleted") is None


def test_callback_data_names_the_recipient_and_nothing_else_is_taken_for_it() -> None:
    assert recipient_of(callback_data(42)) == 42
    assert len(callback_data(10**17)) <= 512
    for junk in (None, "", "campaign:42:recipient:7", "wabridge:recipient:", "wabridge:recipient:4x",
                 "wabridge:recipient:1 ", "wabridge:recipient:" + "9" * 40):
        assert recipient_of(junk) is None


def test_quiet_period_and_button_values() -> None:
    assert not quiet_enough(T0, T0 + timedelta(seconds=59), timedelta(minutes=1))
    assert quiet_enough(T0, T0 + timedelta(seconds=60), timedelta(minutes=1))
    assert not quiet_enough(None, T0)
    assert parse_button_value("12:345") == (12, 345)
    for junk in ("", "12", "x:1", "1:y", "1:2:3", "-1:2"):
        assert parse_button_value(junk) is None


def test_the_notice_escapes_the_campaign_name_and_offers_to_resend_exactly_the_unknown_ones() -> None:
    post = render_notice(UnknownRun(3, 7, "<!channel> & fees", "C1", "UMANAGER", 2, 99, T0))
    assert "&lt;!channel&gt; &amp; fees" in post.text and "<!channel>" not in post.text
    button = post.blocks[1]["elements"][0]
    assert button["action_id"] == RESEND_ACTION and button["value"] == "7:99"
    assert button["text"]["text"] == "Resend 2" and "<@UMANAGER>" in post.text


# ---- with a database ----------------------------------------------------------------------------------


async def _run_with(db: Db, n: int) -> tuple[int, int, list[int]]:
    cid = await make_campaign(db, numbers(n))
    run_id = await start_run(db, cid)
    async with db.sessions() as s:
        ids = sorted((await s.scalars(select(R.id).where(R.run_id == run_id))).all())
    return cid, run_id, ids


async def _set(db: Db, ids: list[int], **values: Any) -> None:
    async with db.sessions() as s, s.begin():
        await s.execute(update(R).where(R.id.in_(ids)).values(**values))


async def _states(db: Db, ids: list[int]) -> list[str]:
    async with db.sessions() as s:
        rows = dict((await s.execute(select(R.id, R.status).where(R.id.in_(ids)))).tuples().all())
    return [rows[i] for i in ids]


async def test_recipients_of_a_silent_sender_return_to_pending_unless_their_request_may_have_left(
        db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        _, _, ids = await _run_with(db, 5)
        dead = await liveness.register(db.sessions, "dead", now=utcnow() - timedelta(seconds=30))
        alive = await liveness.register(db.sessions, "alive")
        await _set(db, ids[:4], status="sending", owner_id=dead, fence=1, attempts=1, claimed_at=utcnow())
        await _set(db, ids[1:2], attempted_at=utcnow())
        await _set(db, ids[2:3], attempted_at=utcnow(), wamid="wamid.known")
        await _set(db, ids[3:4], owner_id=alive)
        async with db.sessions() as s, s.begin():
            done = await take_back_orphans(s)
        assert dict(done) == {"pending": 1, "unknown": 1, "sent": 1}
        assert await _states(db, ids) == ["pending", "unknown", "sent", "sending", "pending"]
        async with db.sessions() as s:
            first = await s.get(R, ids[0])
            assert first is not None and first.attempts == 0 and first.owner_id is None and first.fence == 2
    finally:
        await db.close()


async def test_status_webhooks_settle_unknown_recipients_by_their_callback_data(
        aiohttp_client: Any, db_url: str) -> None:
    async with bridges(aiohttp_client, db_url) as build:
        b = await build(with_slack=False)
        db = await open_db(make_settings(db_url))
        try:
            _, _, ids = await _run_with(db, 4)
            wa = numbers(4)
            await _set(db, ids, status="unknown", attempted_at=utcnow())
            with_cb = [_with_callback(status(f"wamid.cb{i}", st, recipient=wa[i],
                                             error_code=131047 if st == "failed" else None), callback_data(ids[i]))
                       for i, st in ((0, "sent"), (1, "failed"), (2, "delivered"))]
            for payload in with_cb:
                await b.webhook(payload)
            # Callback data naming a recipient but another number: not taken for it.
            await b.webhook(_with_callback(status("wamid.cb3", "sent", recipient=wa[0]), callback_data(ids[3])))
            states = await eventually(lambda: _settled(db, ids, 3))
            assert states == ["sent", "failed", "delivered", "unknown"]
            async with db.sessions() as s:
                rows = {r.id: r for r in (await s.scalars(select(R).where(R.id.in_(ids)))).all()}
            assert [rows[i].wamid for i in ids] == ["wamid.cb0", "wamid.cb1", "wamid.cb2", None]
            assert rows[ids[1]].error_code == 131047
        finally:
            await db.close()


FOREIGN_PNID = "109999999999999"  # another business's number, subscribed to the same app


def _from_number(payload: dict[str, Any], phone_number_id: str) -> dict[str, Any]:
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = phone_number_id
    return payload


async def test_a_status_from_another_number_never_settles_our_recipient(aiohttp_client: Any, db_url: str) -> None:
    async with bridges(aiohttp_client, db_url) as build:
        b = await build(with_slack=False)
        db = await open_db(make_settings(db_url))
        try:
            _, _, ids = await _run_with(db, 2)
            wa = numbers(2)
            await _set(db, ids, status="unknown", attempted_at=utcnow())
            # Signed by Meta (same app), right recipient, our callback data: but sent from another number.
            forged = _from_number(_with_callback(status("wamid.OTHER0", "delivered", recipient=wa[0]),
                                                 callback_data(ids[0])), FOREIGN_PNID)
            await b.webhook(forged)
            # The same with a customer message next to it (applied by the handlers, not set-based).
            mixed = _from_number(_with_callback(status("wamid.OTHER1", "failed", recipient=wa[1],
                                                       error_code=131047), callback_data(ids[1])), FOREIGN_PNID)
            mixed["entry"][0]["changes"][0]["value"]["messages"] = inbound_text(
                "wamid.MIXED", "hi")["entry"][0]["changes"][0]["value"]["messages"]
            await b.webhook(mixed)
            # Then a status from the campaign's own number: the first report that counts.
            await b.webhook(_with_callback(status("wamid.OURS", "sent", recipient=wa[0]), callback_data(ids[0])))
            await eventually(lambda: _settled(db, ids, 1))

            async def all_applied() -> bool:
                return await b.count(WebhookLog, WebhookLog.processed_at.is_(None)) == 0

            await eventually(all_applied)
            assert await _states(db, ids) == ["sent", "unknown"]
            async with db.sessions() as s:
                rows = {r.id: r for r in (await s.scalars(select(R).where(R.id.in_(ids)))).all()}
            assert [rows[i].wamid for i in ids] == ["wamid.OURS", None]
            assert rows[ids[1]].status == "unknown" and rows[ids[1]].error_code is None
        finally:
            await db.close()


async def _settled(db: Db, ids: list[int], n: int) -> list[str] | None:
    states = await _states(db, ids)
    return states if sum(st != "unknown" for st in states) >= n else None


def _with_callback(payload: dict[str, Any], data: str) -> dict[str, Any]:
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = data
    return payload


async def test_resend_unknown_reopens_the_run_once_and_a_late_status_stops_the_second_send(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        cid, run_id, ids = await _run_with(db, 3)
        await _set(db, ids[:2], status="unknown", attempted_at=utcnow())
        await _set(db, ids[2:], status="sent", wamid="wamid.ok")
        async with db.sessions() as s, s.begin():
            await s.execute(update(CampaignRun).where(CampaignRun.id == run_id).values(status="done"))
        async with db.sessions() as s, s.begin():
            assert await resend_unknown(s, cid, up_to=ids[0]) == 1  # only those the manager was shown
        async with db.sessions() as s, s.begin():
            assert await resend_unknown(s, cid) == 1
        async with db.sessions() as s, s.begin():
            assert await resend_unknown(s, cid) == 0  # a second click sends nobody
        assert await _states(db, ids) == ["pending", "pending", "sent"]
        async with db.sessions() as s:
            assert await s.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id)) == "running"
    finally:
        await db.close()


async def test_quiet_unknowns_are_shown_once_or_resent_when_configured(db_url: str) -> None:
    settings = make_settings(db_url)
    db = await open_db(settings)
    try:
        _, run_id, ids = await _run_with(db, 2)
        async with db.sessions() as s, s.begin():
            await s.execute(update(CampaignRun).where(CampaignRun.id == run_id).values(slack_channel=SLACK_CHANNEL))
        await _set(db, ids, status="unknown", attempted_at=utcnow() - timedelta(seconds=90))
        async with db.sessions() as s, s.begin():
            assert await check_unknowns(s, settings, utcnow()) == (1, 0)
        async with db.sessions() as s, s.begin():
            assert await check_unknowns(s, settings, utcnow()) == (0, 0)  # one notice per set of unknowns
        async with db.sessions() as s:
            notice = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "campaign_unknown"))).one()
        assert notice.payload["count"] == 2 and notice.payload["newest_id"] == ids[-1]

        auto = make_settings(db_url, campaigns={"resend_unknown_after": 60})
        async with db.sessions() as s, s.begin():
            assert await check_unknowns(s, auto, utcnow()) == (0, 2)
        assert await _states(db, ids) == ["pending", "pending"]
    finally:
        await db.close()


def test_resend_unknown_after_is_opt_in_and_bounded() -> None:
    assert make_settings("sqlite+aiosqlite://").campaigns.resend_unknown_after is None
    from bot.core.config import ConfigError

    with pytest.raises(ConfigError, match="resend_unknown_after"):
        make_settings("sqlite+aiosqlite://", campaigns={"resend_unknown_after": 1})


async def _click(b: Any, user: str, value: str) -> list[str]:
    before = len(b.slack.calls_to("response_url"))
    await b.interaction({"type": "block_actions", "user": {"id": user}, "channel": {"id": SLACK_CHANNEL},
                         "actions": [{"action_id": RESEND_ACTION, "value": value, "type": "button",
                                      "action_ts": "1.0", "block_id": "b"}],
                         "response_url": f"{b.slack.base_url}/response-url/x"})
    # bolt answers Slack first and runs the listener after: wait for its answer through response_url.
    await eventually(lambda: len(b.slack.calls_to("response_url")) > before)
    return [str(c.args.get("text") or "") for c in b.slack.calls_to("response_url")]


async def test_the_resend_button_is_for_campaign_managers_and_acts_once(aiohttp_client: Any, db_url: str) -> None:
    async with bridges(aiohttp_client, db_url) as build:
        b = await build()
        db = await open_db(make_settings(db_url))
        try:
            cid, _, ids = await _run_with(db, 2)
            await _set(db, ids, status="unknown", attempted_at=utcnow())
            answers = await _click(b, "USTRANGER", f"{cid}:{ids[-1]}")
            assert "Only campaign managers" in answers[-1]
            assert await _states(db, ids) == ["unknown", "unknown"]

            answers = await _click(b, "UMANAGER", f"{cid}:{ids[-1]}")
            assert "sent 2 unknown recipients again" in answers[-1]
            assert await _states(db, ids) == ["pending", "pending"]
            answers = await _click(b, "UMANAGER", f"{cid}:{ids[-1]}")  # a second click, or Slack retrying
            assert "nothing left to send again" in answers[-1]
            answers = await _click(b, "UMANAGER", "<script>")
            assert "not valid" in answers[-1]
        finally:
            await db.close()
