"""Satisfaction on the Home tab: managers see each staff member's surveys of the last 7 and 30 days, a member
sees their own line; a tab whose surveys cannot be read goes out without them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from bot.handlers import appkeys
from storage.models import AutoReply, utcnow
from tests.harness import eventually
from tests.helpers import PNID
from tests.insights_seed import Msg, seed
from tests.test_home import AGENT, MANAGER, Home
from tests.test_home import home as home  # the fixture

BILAL = "U0BILAL"  # no Slack profile the stand-in knows: shown by mention


async def _surveys(h: Home) -> None:
    sessions = h.client.app[appkeys.SESSIONS]
    now = utcnow()
    conv = await seed(sessions, h.client.app[appkeys.CHANNEL_IDS][PNID], "919800000001", "Ravi",
                      now - timedelta(days=20), [Msg(0, "customer")])
    rows = [(AGENT, 3, 1), (AGENT, 2, 3), (AGENT, None, 5), (AGENT, 1, 12), (BILAL, 3, 20), (BILAL, 3, 40)]
    async with sessions() as s, s.begin():
        for n, (staff, score, days_ago) in enumerate(rows):
            at = now - timedelta(days=days_ago)
            s.add(AutoReply(conversation_id=conv, kind="csat", period_key=f"r{n}", state="sent", staff=staff,
                            score=score, trigger_at=at, created_at=at))
        s.add(AutoReply(conversation_id=conv, kind="csat", period_key="skipped", state="skipped", staff=AGENT,
                        trigger_at=now, created_at=now))  # never sent: not counted


async def test_managers_see_satisfaction_per_staff_member_for_7_and_30_days(home: Home) -> None:
    await _surveys(home)
    await home.open(MANAGER)
    shown = await eventually(lambda: home.text(MANAGER))
    assert "*Satisfaction* (surveys after a resolve, credited to the owner)" in shown
    assert ("• Asha Verma: last 7 days 2 of 3 answered, average 2.5/3, 50% best · last 30 days 3 of 4 answered, "
            "average 2.0/3, 33% best") in shown
    # Bilal's survey of 40 days ago is out of both spans.
    assert f"• <@{BILAL}>: last 7 days none sent · last 30 days 1 of 1 answered, average 3.0/3, 100% best" in shown


async def test_a_member_sees_their_own_surveys(home: Home) -> None:
    await _surveys(home)
    await home.open(AGENT)
    shown = await eventually(lambda: home.text(AGENT))
    assert "*Your satisfaction surveys*: last 7 days 2 of 3 answered" in shown
    assert "*Satisfaction* (surveys" not in shown and BILAL not in shown


async def test_the_tab_goes_out_when_the_surveys_cannot_be_read(home: Home) -> None:
    await _surveys(home)
    async with home.client.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(text("DROP TABLE auto_replies"))  # this test's own database
    await home.open(MANAGER)
    shown = await eventually(lambda: home.text(MANAGER))
    assert "Who is waiting" in shown and "Satisfaction" not in shown
