"""doctor on a machine that cannot reach Meta or Slack, with secrets unset, and with nobody allowed to run
/campaign: each finding names the right fix (the network, the variable to export, the managers' list)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli.entry import main
from bot.core.config import load_settings, parse_settings
from bot.meta.graph import GraphClient
from bot.ops.checks import CheckResult, Severity
from bot.ops.doctor import DoctorEnv, render_text, run_doctor
from bot.ops.doctor_config import campaign_managers_check
from bot.standins.slack import SlackStandin
from storage.db import make_engine, make_sessionmaker, migrate
from tests.helpers import APP_SECRET, BOT_TOKEN, make_settings

ROOT = Path(__file__).resolve().parents[1]
TOKEN_OR_SUBSCRIPTION = ("generate a token", "subscribed_apps", "Webhook fields: subscribe", "install")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connections are refused


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


async def _doctor_against(db_url: str, meta_url: str, slack_url: str, wait: float = 5) -> list[CheckResult]:
    settings = make_settings(db_url, graph_url=meta_url, slack_url=slack_url)
    await migrate(db_url)
    engine = make_engine(db_url)
    slack = AsyncWebClient(token=BOT_TOKEN, base_url=slack_url, timeout=int(max(wait, 1)))
    try:
        async with GraphClient(meta_url, "v23.0", timeout=wait) as graph:
            return await run_doctor(DoctorEnv(settings, make_sessionmaker(engine), graph, slack))
    finally:
        await engine.dispose()


def _network_findings(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results if r.name.startswith("lucknow:") or r.name in ("webhook fields", "slack auth")}


@pytest.mark.parametrize(("where", "cause"), [("refused", "the connection was refused"),
                                              ("dns", "could not be resolved (DNS)")])
async def test_an_unreachable_meta_and_slack_are_blamed_on_the_network_not_the_tokens(
        db_url: str, where: str, cause: str) -> None:
    base = f"http://127.0.0.1:{_closed_port()}" if where == "refused" else "http://graph.wabridge-test.invalid"
    results = await _doctor_against(db_url, base, base + "/api/")
    remote = _network_findings(results)
    assert set(remote) == {"lucknow: access token", "lucknow: app subscribed to WABA", "lucknow: throughput",
                           "webhook fields", "slack auth"}
    for r in remote.values():
        assert r.level is Severity.FAIL and cause in r.detail, r
        assert r.fix.startswith("the network, not the token or the subscription"), r
        assert not any(word in r.fix for word in TOKEN_OR_SUBSCRIPTION), r


async def test_a_timeout_is_a_network_failure(db_url: str, silent_port: int) -> None:
    base = f"http://127.0.0.1:{silent_port}"
    results = await _doctor_against(db_url, base, base + "/api/", wait=0.5)
    for r in _network_findings(results).values():
        assert "timeout" in r.detail and r.fix.startswith("the network"), r


async def test_an_answer_from_meta_still_blames_the_token(db_url: str) -> None:
    from bot.standins.graph import GraphStandin

    async with GraphStandin(app_secret=APP_SECRET, tokens={}) as graph:  # knows no channel token
        results = await _doctor_against(db_url, graph.base_url, f"http://127.0.0.1:{_closed_port()}/api/")
    token = next(r for r in results if r.name == "lucknow: access token")
    assert token.level is Severity.FAIL and "generate a token" in token.fix


def test_unset_secrets_are_findings_and_the_app_id_fix_names_its_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("META_APP_SECRET", "META_VERIFY_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET",
                "WA_TOKEN_LUCKNOW", "META_APP_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("META_GRAPH_URL", f"http://127.0.0.1:{_closed_port()}")
    code = main(["--config", str(ROOT / "app.yaml"), "doctor"])
    out, err = capsys.readouterr()
    assert code == 1 and "config error" not in err and "Traceback" not in err
    assert "[FAIL] secret meta.app_secret: not set or empty" in out
    assert "fix: export WA_TOKEN_LUCKNOW (app.yaml reads channels[0].access_token from ${WA_TOKEN_LUCKNOW})" in out
    assert "fix: export META_APP_ID (app.yaml reads meta.app_id from ${META_APP_ID})" in out
    assert "set meta.app_id" not in out
    assert "lucknow: access token" not in out  # no Graph call with an empty token
    assert "[FAIL] campaign managers: slack.campaign_managers is empty" in out


async def test_nobody_may_run_campaign_when_the_managers_list_is_empty_or_its_groups_are() -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    assert (await campaign_managers_check(settings, None)).level is Severity.OK
    empty = _with_managers([])
    result = await campaign_managers_check(empty, None)
    assert result.level is Severity.FAIL and "nobody may create or control campaigns" in result.detail
    assert "slack.campaign_managers" in result.fix
    names = await campaign_managers_check(_with_managers(["@asha"]), None)
    assert names.level is Severity.FAIL and "not Slack ids: @asha" in names.detail
    async with SlackStandin(bot_token=BOT_TOKEN) as slack:
        slack.add_usergroup("S0EMPTY", "nobody", [])
        slack.add_usergroup("S0SHOP", "shop", ["U0ASHA"])
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        nobody = await campaign_managers_check(_with_managers(["S0EMPTY"]), client)
        somebody = await campaign_managers_check(_with_managers(["S0EMPTY", "S0SHOP"]), client)
    assert nobody.level is Severity.FAIL and "have no members" in nobody.detail
    assert somebody.level is Severity.OK and "1 member(s)" in somebody.detail


def _with_managers(managers: list[str]) -> Any:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    raw = settings.model_dump(mode="json")
    raw["slack"]["campaign_managers"] = managers
    return parse_settings(raw, env={})


def test_render_keeps_one_line_per_finding() -> None:
    text = render_text([CheckResult("a", False, "down", "the network")])
    assert "fix: the network" in text


def test_example_config_loads_for_doctor_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(ROOT / "app.yaml", {}, needs=frozenset())
    assert "slack.bot_token" in settings.unset_secrets
