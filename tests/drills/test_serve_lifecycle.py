"""`serve` starts and stops cleanly: one line when it is ready (version, address, role, database without its
password, what the migrations did) and one when it has stopped, and no traceback or ERROR when SIGTERM lands
in the middle of traffic (scheduler jobs, workers, pools and clients closed in order)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import pytest

from tests.drills.conftest import PORT_IN_USE, Delivery, ServeProcess, Serves, Standins, load, write_config
from tests.helpers import inbound_text

pytestmark = pytest.mark.timeout(240)


def _deliveries(n: int, tag: str) -> list[Delivery]:
    out = []
    for i in range(n):
        token = f"{tag}-{i}"
        body = json.dumps(inbound_text(f"wamid.{token}", f"hello {token}", wa_id=f"9198100{i % 20:05d}",
                                       name=f"Customer {i % 20}")).encode()
        out.append(Delivery(f"wamid.{token}", token, body))
    return out


async def test_sigterm_in_the_middle_of_traffic_leaves_one_line_and_no_traceback(
        tmp_path: Path, db_url: str, standins: Standins, serves: Serves) -> None:
    config = write_config(tmp_path / "app.yaml", standins, db_url)
    serve = await serves.start(config, "lifecycle")
    traffic = asyncio.create_task(load(_deliveries(60, "stop"), lambda: serve.url, rate=40))
    for _ in range(100):  # until the bridge is busy posting to Slack
        if standins.slack.calls_to("chat.postMessage"):
            break
        await asyncio.sleep(0.05)
    await serve.stop()
    await traffic
    assert serve.proc is not None and serve.proc.returncode == 0
    log = serve.log_text()
    assert "Traceback" not in log and " ERROR " not in log and "Task was destroyed" not in log, log[-4000:]

    started = [line for line in log.splitlines() if " bot.serve " in line and "wabridge " in line and
               " listening on " in line]
    assert len(started) == 1, log
    line = started[0]
    assert re.search(r"wabridge \d+\.\d+\.\d+ listening on http://127\.0\.0\.1:\d+ \(role all\)", line), line
    assert "migrations applied: none → " in line, line  # an empty database brought to the head
    if db_url.startswith("postgresql"):
        assert "postgresql+asyncpg://postgres@127.0.0.1:5432/" in line  # no password even if there were one
    else:
        assert "sqlite+aiosqlite:///" in line
    stopped = [line for line in log.splitlines() if " bot.serve " in line and "stopped" in line]
    assert len(stopped) == 1 and stopped[0] == log.strip().splitlines()[-1], log[-2000:]
    assert not [line for line in log.splitlines() if " INFO apscheduler" in line], log  # its chatter is gone

    again = await serves.start(config, "lifecycle-again")  # the second start finds nothing to apply
    await again.stop()
    line = next(line for line in again.log_text().splitlines() if " listening on " in line)
    assert "migrations: at " in line and "nothing to apply" in line, line


async def test_a_port_taken_before_serve_binds_it_starts_serve_on_another(
        tmp_path: Path, standins: Standins, serves: Serves) -> None:
    """The drills' harness: a port found free, then taken by someone else, costs a restart, not the drill."""
    config = write_config(tmp_path / "app.yaml", standins, f"sqlite+aiosqlite:///{tmp_path / 'wa.db'}")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        serve = ServeProcess(config, tmp_path, "port-taken")
        serve.port, serve.url = taken, f"http://127.0.0.1:{taken}"
        serves.started.append(serve)
        await serve.start()
    assert serve.port != taken and serve.alive
    assert PORT_IN_USE in serve.log_text()
