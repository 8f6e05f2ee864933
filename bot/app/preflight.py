"""Checks `serve` makes before starting, each failing as one line that says what to fix."""

from __future__ import annotations

import asyncio
import errno
import socket
from urllib.parse import urlsplit

from sqlalchemy import text

from storage.db import is_sqlite, make_engine

DATABASE_TIMEOUT = 10.0


def where(url: str) -> str:
    """A database URL without its credentials, for messages."""
    if is_sqlite(url):
        return url.split("://", 1)[-1].lstrip("/") or "(memory)"
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 5432}{parts.path}"


def port_problem(host: str, port: int, *, reuse_port: bool = False) -> str | None:
    """Why host:port cannot be listened on (in use, not permitted, no such address), or None.

    reuse_port: the port may already be held by other processes listening with SO_REUSEPORT (web processes
    of one set)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's server does
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return bind_error(host, port, exc)
    return None


def bind_error(host: str, port: int, exc: OSError) -> str:
    """One line for a failed bind."""
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is in use (another serve, or pick one with --port)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


async def database_problem(url: str) -> str | None:
    """Why the database does not answer `SELECT 1` within DATABASE_TIMEOUT, in one line, or None."""
    engine = make_engine(url)
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return f"database at {where(url)} did not answer within {DATABASE_TIMEOUT:.0f} s"
    except Exception as exc:  # every driver has its own errors; the first line of any of them is the point
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"cannot reach the database at {where(url)}: {detail[0] if detail else type(exc).__name__}"
    finally:
        await engine.dispose()
    return None


async def connections_problem(url: str, processes: int, pool_size: int) -> str | None:
    """One line when `processes` processes, each opening up to twice `pool_size` connections while busy, could
    ask PostgreSQL for more connections than its max_connections allows (None otherwise, and on SQLite)."""
    if is_sqlite(url):
        return None
    engine = make_engine(url)
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), engine.connect() as conn:
            allowed = int(await conn.scalar(text("SHOW max_connections")) or 0)
    except Exception:  # the database check before this one says what is wrong with the database itself
        return None
    finally:
        await engine.dispose()
    wanted = processes * 2 * pool_size
    if wanted <= allowed:
        return None
    return (f"{processes} process{'es' if processes > 1 else ''} x 2 x database_pool_size ({pool_size}) = {wanted} "
            f"connections while busy, more than max_connections ({allowed}) at {where(url)}: lower "
            "database_pool_size, raise max_connections, or put PgBouncer in between")
