"""`serve --processes N`: several processes of one role on one port, each 200 after its own row; processes
that also work (role all) apply what any of them stored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.cli.entry import build_parser
from bot.cli.serve_processes import child_args
from storage.db import make_engine
from storage.models import WebhookLog
from tests import services
from tests.harness import eventually
from tests.helpers import APP_SECRET, VERIFY_TOKEN, inbound_text, signed

START_TIMEOUT = 180.0  # starting the processes includes migrations and imports: slow on a busy machine


def _config(tmp_path: Path, db_url: str, port: int) -> Path:
    config = tmp_path / "app.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
database_url: "{db_url}"
meta: {{app_secret: {APP_SECRET}, verify_token: {VERIFY_TOKEN}, graph_url: "http://127.0.0.1:9"}}
slack: {{bot_token: xoxb-1, signing_secret: s, api_url: "http://127.0.0.1:9/api/"}}
channels: []
""")
    return config


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the supervisor exited before its processes answered"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the processes did not answer")


async def _post_each_on_its_own_connection(port: int, n: int) -> list[int]:
    async def one(i: int) -> int:
        body, headers = signed(inbound_text(f"wamid.WP{i}", f"hello {i}"))
        # A connection per delivery: the kernel spreads new connections over the processes' sockets.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
                session.post(f"http://127.0.0.1:{port}/webhooks/meta", data=body, headers=headers) as resp:
            return resp.status

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _stored(db_url: str, *, processed: bool = False) -> int:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).select_from(WebhookLog)
            if processed:
                query = query.where(WebhookLog.processed_at.is_not(None))
            return int(await conn.scalar(query) or 0)
    finally:
        await engine.dispose()


async def test_two_web_processes_share_the_port_and_every_200_has_its_row(tmp_path: Path, pg_url: str) -> None:
    port = services.free_port()
    config = _config(tmp_path, pg_url, port)
    env = {**os.environ, "WABRIDGE_LOG_LEVEL": "WARNING"}
    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "bot", "--config", str(config), "serve", "--role", "web",
                           "--processes", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(_wait_healthy, port, proc)
        assert len(_children(proc.pid)) == 2
        statuses = await _post_each_on_its_own_connection(port, 40)
        assert statuses == [200] * 40
        assert await _stored(pg_url) == 40
        # One web process dies: the supervisor stops the other and exits with a failure, for a restart.
        victim = _children(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        code = await asyncio.to_thread(proc.wait, 60)
        assert code != 0
        assert _children(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_sigterm_stops_every_web_process_and_exits_zero(tmp_path: Path) -> None:
    port = services.free_port()
    config = _config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'wa.db'}", port)
    env = {**os.environ, "WABRIDGE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "serve", "--role", "web",
                             "--processes", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(port, proc)
        children = _children(proc.pid)
        assert len(children) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
                   for pid in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def _stored_and_processed(db_url: str, n: int) -> bool:
    return await _stored(db_url, processed=True) == n


async def test_two_processes_of_the_default_role_share_the_port_and_apply_every_delivery(tmp_path: Path,
                                                                                      pg_url: str) -> None:
    port = services.free_port()
    config = _config(tmp_path, pg_url, port)
    env = {**os.environ, "WABRIDGE_LOG_LEVEL": "WARNING"}
    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "bot", "--config", str(config), "serve", "--processes", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(_wait_healthy, port, proc)
        assert len(_children(proc.pid)) == 2
        assert await _post_each_on_its_own_connection(port, 40) == [200] * 40
        assert await _stored(pg_url) == 40
        # The workers of the set applied them all.
        await eventually(lambda: _stored_and_processed(pg_url, 40), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.mark.parametrize("role", ["all", "worker"])
def test_processes_that_apply_deliveries_need_postgresql(tmp_path: Path, role: str) -> None:
    config = _config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'wa.db'}", services.free_port())
    done = subprocess.run([sys.executable, "-m", "bot", "--config", str(config), "serve", "--role", role,
                           "--processes", "2"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "needs PostgreSQL" in done.stderr and "database_url" in done.stderr


@pytest.mark.parametrize("role", ["all", "web", "worker"])
def test_each_child_listens_with_reuse_port_on_the_same_address_without_migrating(role: str) -> None:
    args = build_parser().parse_args(["--config", "x.yaml", "serve", "--role", role, "--processes", "3"])
    cmd = child_args(args, "127.0.0.1", 8081, 2)
    assert cmd[cmd.index("--role") + 1] == role
    assert cmd[cmd.index("--port") + 1] == "8081" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--reuse-port" in cmd and "--no-migrate" in cmd
    assert cmd[cmd.index("--process-index") + 1] == "2"
    assert cmd[cmd.index("--config") + 1] == "x.yaml"
