"""/metrics is off by default and protects itself (bearer token, own port); its database gauges are cached;
serve's log says where it listens and where /metrics is, and stays quiet."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.exc import OperationalError

from bot.app.bolt import build_bolt_app
from bot.app.factory import create_app
from bot.app.metrics_endpoint import CachedRefresh, Exposure, authorised, exposure, exposure_line
from bot.core.config import ServerSettings
from bot.core.logs import configure
from bot.deps import Deps
from bot.handlers import appkeys
from tests import services
from tests.helpers import make_settings

TOKEN = "metrics-secret-1"


def test_bearer_token_check() -> None:
    assert authorised(None, "") and authorised("anything", "")
    assert authorised(f"Bearer {TOKEN}", TOKEN) and authorised(f"bearer  {TOKEN}", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "):
        assert not authorised(header, TOKEN), header


async def _raw_get(port: int, path: str, headers: str = "") -> tuple[int, bytes]:
    """A GET sent byte for byte, so the path reaches the server exactly as an attacker wrote it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def test_metrics_token_is_required_whatever_the_path_spelling(aiohttp_client: Any, db_url: str) -> None:
    settings = make_settings(db_url, server={"metrics_token": TOKEN})
    client = await aiohttp_client(create_app(settings, workers=False))
    port = client.server.port
    assert port is not None
    for path in ("/metrics", "/%6detrics", "/%6D%65trics"):
        status, _ = await _raw_get(port, path)
        assert status == 401, path
    status, body = await _raw_get(port, "/%6detrics", f"Authorization: Bearer {TOKEN}\r\n")
    assert status == 200 and b"wabridge_webhooks_received" in body
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401


async def test_metrics_on_their_own_port_are_not_on_the_main_one(aiohttp_client: Any, db_url: str) -> None:
    port = services.free_port()
    settings = make_settings(db_url, server={"metrics_port": port, "metrics_token": TOKEN})
    client = await aiohttp_client(create_app(settings, workers=False))
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 404
    assert (await _raw_get(port, "/metrics"))[0] == 401
    status, body = await _raw_get(port, "/metrics", f"Authorization: Bearer {TOKEN}\r\n")
    assert status == 200 and b"wabridge_webhooks_received" in body
    assert (await _raw_get(port, "/healthz"))[0] == 404


def test_metrics_are_off_unless_a_token_a_port_or_public_asks_for_them() -> None:
    cases = [({}, Exposure.OFF, "is off; set server.metrics_token"),
             ({"metrics_token": TOKEN}, Exposure.TOKEN, "on the main port, behind server.metrics_token"),
             ({"metrics_port": 9464}, Exposure.OWN_PORT, "http://127.0.0.1:9464/metrics only, with no token"),
             ({"metrics_port": 9464, "metrics_token": TOKEN}, Exposure.OWN_PORT, "only, behind server.metrics_token"),
             ({"metrics_public": True}, Exposure.PUBLIC, "on the main port is public (server.metrics_public: true)")]
    for server, where, line in cases:
        settings = ServerSettings.model_validate(server)
        assert exposure(settings) is where and line in exposure_line(settings), server
        assert len(exposure_line(settings).splitlines()) == 1


async def test_metrics_by_default_are_not_served_and_the_log_says_so(aiohttp_client: Any, db_url: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.app.metrics_endpoint")
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    assert (await client.get("/metrics")).status == 404
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("metrics: ")]
    assert lines == ["metrics: /metrics is off; set server.metrics_token (bearer token), server.metrics_port "
                     "(own port) or server.metrics_public: true to serve it"]


async def test_public_metrics_scrapes_do_not_each_query_the_database(aiohttp_client: Any, db_url: str) -> None:
    settings = make_settings(db_url, server={"metrics_public": True})
    client = await aiohttp_client(create_app(settings, workers=False, webhooks=False))
    statements = client.app[appkeys.METRICS].db_statements
    first = await client.get("/metrics")
    assert first.status == 200 and "wabridge_meta_throughput_errors_24h" in await first.text()
    before = statements._value.get()
    for _ in range(5):
        assert (await client.get("/metrics")).status == 200
    assert statements._value.get() == before  # the gauges came from the cache


async def test_cached_refresh_runs_once_per_period_and_survives_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    calls: list[float] = []
    failing = [False]

    async def refresh(_app: web.Application) -> None:
        calls.append(now[0])
        if failing[0]:
            raise OperationalError("SELECT", {}, ConnectionRefusedError())

    cached = CachedRefresh(refresh, seconds=5.0, clock=lambda: now[0])
    app = web.Application()
    await asyncio.gather(*(cached(app) for _ in range(4)))
    assert calls == [100.0]
    now[0] = 104.9
    await cached(app)
    assert calls == [100.0]
    now[0], failing[0] = 105.0, True
    await cached(app)  # the database is down: one line, no exception, the last values stay
    await cached(app)
    assert calls == [100.0, 105.0]
    assert [r.getMessage() for r in caplog.records if "not refreshed" in r.getMessage()] == [
        "metrics: database gauges not refreshed (OperationalError); serving the last values"]
    now[0], failing[0] = 110.0, False
    await cached(app)
    assert calls == [100.0, 105.0, 110.0]


def test_bolt_says_nothing_about_an_unused_token(db_url: str, caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-environment")
    settings = make_settings(db_url)
    deps = Deps(settings=settings, sessions=None, graph=None, slack=AsyncWebClient(token="xoxb-1"),  # type: ignore[arg-type]
                throttle=None, metrics=None, channel_ids={})  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    build_bolt_app(deps)
    assert [r for r in caplog.records if "unused" in r.getMessage()] == []


def test_scheduler_job_runs_are_debug_lines() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("INFO")
        assert not logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.INFO)
        assert logging.getLogger("apscheduler.scheduler").isEnabledFor(logging.WARNING)
        configure("DEBUG")
        assert logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("apscheduler.executors").setLevel(logging.NOTSET)


class _Counted(str):
    """A string that counts how often its repr is taken (slack_sdk's debug lines repr the call's parameters)."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return super().__repr__()


async def test_slack_calls_format_no_debug_lines_unless_debug_is_asked_for(aiohttp_server: Any) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "ts": "1.1"})

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", ok)
    server = await aiohttp_server(app)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        seen: dict[str, int] = {}
        for asked in ("INFO", "DEBUG"):
            configure(asked)
            client = AsyncWebClient(token="xoxb-1", base_url=str(server.make_url("/api/")))
            before = _Counted.reprs
            await client.api_call("chat.postMessage", json={"channel": "C1", "text": _Counted("hello")})
            seen[asked] = _Counted.reprs - before
        assert seen["INFO"] == 0
        assert seen["DEBUG"] > 0  # the debug lines are still there for whoever asks for them
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("slack_sdk.web.async_base_client", "slack_sdk.web.base_client", "apscheduler"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_serve_logs_where_it_listens_and_no_start_up_noise(tmp_path: Path) -> None:
    port = services.free_port()
    config = tmp_path / "app.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
database_url: "sqlite:///{tmp_path}/wa.db"
meta: {{app_secret: s, verify_token: v, graph_url: "http://127.0.0.1:9"}}
slack: {{bot_token: xoxb-1, signing_secret: s, api_url: "http://127.0.0.1:9/api/"}}
channels: []
""")
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-env", "WABRIDGE_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "serve"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert any(f"listening on http://127.0.0.1:{port}" in line for line in lines), lines
    assert len([line for line in lines if "metrics: /metrics is off" in line]) == 1, lines
    assert not [line for line in lines if "will be unused" in line or "Traceback" in line]


def test_a_started_server_freezes_its_heap_and_collects_young_objects_less_often() -> None:
    # In a process of its own: the thresholds and the frozen heap are the process's for good.
    code = ("import asyncio, gc\n"
            "from bot.cli.entry import GC_THRESHOLDS, _freeze_heap\n"
            "assert gc.get_threshold() != GC_THRESHOLDS and gc.get_freeze_count() == 0\n"
            "asyncio.run(_freeze_heap(None))\n"
            "assert gc.get_threshold() == GC_THRESHOLDS and GC_THRESHOLDS[0] > 700, gc.get_threshold()\n"
            "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
