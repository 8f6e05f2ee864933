"""Many businesses on one deployment: workspaces install through bolt's OAuth flow, each number's traffic
reaches only its own workspace with that workspace's token, and an uninstall pauses that workspace's work
(nothing tried with the dead token, nothing dropped) until it installs again."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.app.factory import create_app
from bot.app.slack_component import make_slack_component
from bot.cli.tenants import _tenants
from bot.core.config import parse_settings
from bot.handlers import appkeys
from bot.ops.doctor_workspaces import check_workspaces, workspace_rows
from bot.standins import GraphStandin, SlackStandin
from storage.models import Conversation, SlackOutbox, SlackWorkspace
from tests.harness import FAST_OUTBOX, eventually
from tests.helpers import SIGNING_SECRET, signed
from tests.workspaces_harness import ALPHA, BETA, Deployment, deployment_of, settings_raw


@pytest.fixture
async def deployment(aiohttp_client: Any, db_url: str) -> AsyncIterator[Deployment]:
    async with deployment_of(aiohttp_client, db_url) as d:
        yield d


async def _states(d: Deployment) -> dict[str, str]:
    async with d.client.app[appkeys.SESSIONS]() as s:
        return dict((await s.execute(select(SlackWorkspace.team, SlackWorkspace.state))).tuples().all())


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_two_workspaces_install_and_each_number_reaches_only_its_own(deployment: Deployment) -> None:
    d = deployment
    assert await d.install("T0ALPHA") == 200
    assert await d.install("T0BETA") == 200
    assert await _states(d) == {"T0ALPHA": "active", "T0BETA": "active"}
    async with d.client.app[appkeys.ENGINE].connect() as conn:
        stored = (await conn.execute(text("SELECT team_id, bot_token FROM slack_bots"))).all()
    assert sorted(t for t, _ in stored) == ["T0ALPHA", "T0BETA"]
    assert not any(token.startswith("xox") for _, token in stored)  # sealed at rest

    await d.customer_writes(ALPHA, "wamid.A1", "Namaste from Alpha's customer")
    await d.customer_writes(BETA, "wamid.B1", "Hello from Beta's customer")
    await eventually(lambda: any("Alpha's customer" in str(m) for m in d.posts(ALPHA)))
    await eventually(lambda: any("Beta's customer" in str(m) for m in d.posts(BETA)))
    assert not any("Beta's customer" in str(m) for m in d.posts(ALPHA))
    assert not any("Alpha's customer" in str(m) for m in d.posts(BETA))
    # Each channel was written with its own workspace's token (the stand-in refuses any other).
    assert {c.args.get("channel") for c in d.calls_by("T0ALPHA")} == {ALPHA[1]}
    assert {c.args.get("channel") for c in d.calls_by("T0BETA")} == {BETA[1]}
    assert not [c for c in d.slack.calls if c.error in ("channel_not_found", "invalid_auth", "not_authed")]
    async with d.client.app[appkeys.SESSIONS]() as s:
        teams = dict((await s.execute(select(Conversation.slack_channel, Conversation.slack_team))).tuples().all())
    assert teams == {ALPHA[1]: "T0ALPHA", BETA[1]: "T0BETA"}


async def test_uninstall_pauses_that_workspace_and_reinstall_resumes_with_nothing_lost(
        deployment: Deployment, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    await d.install("T0ALPHA")
    await d.install("T0BETA")
    await d.customer_writes(ALPHA, "wamid.A1", "first before uninstall")
    await eventually(lambda: any("first before uninstall" in str(m) for m in d.posts(ALPHA)))

    status, _ = await d.slack.uninstall(d.events_url, "T0ALPHA", SIGNING_SECRET)
    assert status == 200
    async def alpha_state() -> str:
        return (await _states(d))["T0ALPHA"]

    await eventually(lambda: _is(alpha_state(), "uninstalled"))
    async with d.client.app[appkeys.ENGINE].connect() as conn:
        left = (await conn.execute(text("SELECT team_id FROM slack_bots"))).scalars().all()
    assert left == ["T0BETA"]  # Alpha's tokens are deleted

    calls_before = len(d.slack.calls)
    await d.customer_writes(ALPHA, "wamid.A2", "second while uninstalled")
    await d.customer_writes(BETA, "wamid.B2", "Beta carries on")
    await eventually(lambda: any("Beta carries on" in str(m) for m in d.posts(BETA)))

    async def alpha_held() -> bool:
        async with d.client.app[appkeys.SESSIONS]() as s:
            pending = (await s.scalars(select(SlackOutbox.id).join(Conversation, Conversation.id ==
                                                                  SlackOutbox.conversation_id)
                                       .where(Conversation.slack_team == "T0ALPHA",
                                              SlackOutbox.done_at.is_(None)))).all()
        return bool(pending)

    await eventually(alpha_held)
    async with d.client.app[appkeys.SESSIONS]() as s:
        findings = check_workspaces(await workspace_rows(s), d.client.app[appkeys.SETTINGS])
    assert [(f.name, f.ok) for f in findings] == [("slack workspace T0ALPHA (T0Alpha)", False),
                                                  ("slack workspace T0BETA (T0Beta)", True)]
    assert re.search(r"uninstalled the app .*: its work is paused, [1-9]\d* Slack post\(s\) held", findings[0].detail)
    assert "uninstalled the app" in caplog.text and "T0ALPHA" in caplog.text
    async def metrics() -> str:
        text = await (await d.client.get("/metrics")).text()
        held = re.search(r'wabridge_workspace_slack_posts_owed\{workspace="T0ALPHA"\} [1-9]', text)
        return text if held and 'wabridge_workspaces{state="uninstalled"} 1.0' in text else ""

    await eventually(metrics)  # /metrics: the paused workspace and what it is owed
    async with d.client.app[appkeys.SESSIONS]() as s:
        only_beta = check_workspaces(await workspace_rows(s), d.client.app[appkeys.SETTINGS], "T0BETA")
    assert [(f.name, f.ok) for f in only_beta] == [("slack workspace T0BETA (T0Beta)", True)]  # doctor --team
    capsys.readouterr()
    assert await _tenants(d.client.app[appkeys.SETTINGS]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"T0ALPHA \(T0Alpha\): uninstalled; numbers: alpha; Slack posts owed: [1-9]\d*", lines[0])
    assert len(lines) == 2 and re.fullmatch(r"T0BETA \(T0Beta\): active; numbers: beta; Slack posts owed: \d+",
                                            lines[1])
    # Nothing was tried with Alpha's dead token (the stand-in would have answered token_revoked).
    assert not [c for c in d.slack.calls[calls_before:] if c.error in ("token_revoked", "invalid_auth", "not_authed")]
    assert not any("second while uninstalled" in str(m) for m in d.posts(ALPHA))

    assert await d.install("T0ALPHA") == 200
    assert (await _states(d))["T0ALPHA"] == "active"
    await eventually(lambda: any("second while uninstalled" in str(m) for m in d.posts(ALPHA)))
    assert sum("first before uninstall" in str(m) for m in d.posts(ALPHA)) == 1


async def test_a_numbers_alerts_go_to_its_own_workspace(deployment: Deployment) -> None:
    d = deployment
    await d.install("T0ALPHA")
    await d.install("T0BETA")
    payload = json.loads((Path(__file__).parent / "fixtures" / "meta" / "message_template_status_update.json")
                         .read_text())
    payload["entry"][0]["id"] = BETA[3]  # a template of Beta's WABA was rejected
    body, headers = signed(payload)
    assert (await d.client.post("/webhooks/meta", data=body, headers=headers)).status == 200
    alert = await eventually(lambda: [m for m in d.posts(BETA) if "visit_reminder" in json.dumps(m)])
    assert len(alert) == 1
    assert {c.team for c in d.slack.calls_to("chat.postMessage") if "visit_reminder" in json.dumps(c.args)} \
        == {"T0BETA"}
    assert not [m for m in d.posts(ALPHA) if "visit_reminder" in json.dumps(m)]


async def test_a_token_due_to_expire_is_rotated_before_the_outbox_uses_it(aiohttp_client: Any, db_url: str) -> None:
    # Tokens living an hour are inside the two hours before expiry in which they are rotated: every use rotates.
    async with deployment_of(aiohttp_client, db_url, token_expires_in=3600) as d:
        assert await d.install("T0ALPHA") == 200
        first = [c for c in d.slack.calls_to("oauth.v2.access") if c.ok]
        assert len(first) == 1  # the code exchange
        await d.customer_writes(ALPHA, "wamid.R1", "a message after rotation")
        await eventually(lambda: any("a message after rotation" in str(m) for m in d.posts(ALPHA)))
        refreshes = [c for c in d.slack.calls_to("oauth.v2.access") if c.args.get("grant_type") == "refresh_token"]
        assert refreshes and all(c.ok for c in refreshes)
        assert {c.team for c in d.calls_by("T0ALPHA")} == {"T0ALPHA"}
        assert not [c for c in d.slack.calls if c.error in ("token_expired", "invalid_refresh_token")]


async def test_an_enterprise_grid_org_install_is_keyed_by_its_enterprise(aiohttp_client: Any, db_url: str) -> None:
    slack, graph = SlackStandin(strict=True), GraphStandin()
    await slack.start()
    await graph.start()
    try:
        slack.oauth.add_workspace("E0ORG", "Org", is_org=True)
        slack.add_channel(BETA[1], "org-channel", team_id="E0ORG")
        raw = settings_raw(db_url, slack, graph)
        raw["channels"] = [dict(raw["channels"][1], slack_team="E0ORG")]  # Beta's number, in the org
        client = await aiohttp_client(create_app(parse_settings(raw, env={}),
                                                 components=[make_slack_component(**FAST_OUTBOX)]))
        slack.oauth.redirect_uri = str(client.make_url("/slack/oauth_redirect"))
        d = Deployment(client, slack, graph)
        assert await d.install("E0ORG") == 200
        async with client.app[appkeys.ENGINE].connect() as conn:
            rows = (await conn.execute(text("SELECT enterprise_id, team_id, is_enterprise_install FROM slack_bots"))
                    ).all()
        assert [tuple(r) for r in rows] == [("E0ORG", None, True)]
        async with client.app[appkeys.SESSIONS]() as s:
            assert (await s.scalars(select(SlackWorkspace.team))).all() == ["E0ORG"]
        await d.customer_writes(BETA, "wamid.E1", "hello from the org's customer")
        await eventually(lambda: any("org's customer" in str(m) for m in d.posts(BETA)))
        assert {c.team for c in d.slack.calls_to("chat.postMessage")} == {"E0ORG"}
    finally:
        await slack.stop()
        await graph.stop()
