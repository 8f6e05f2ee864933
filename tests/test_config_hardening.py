"""Careless configuration stops start-up with one line naming every problem it can; `serve` refuses a port in
use or a database that does not answer in one line and a non-zero exit."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from bot.app.preflight import connections_problem, database_problem, port_problem
from bot.cli.entry import EXIT_UNAVAILABLE, main
from bot.core.config import ConfigError, normalize_database_url, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def _raw(**top: Any) -> dict[str, Any]:
    ch = {"name": "a", "phone_number_id": "100000000000001", "waba_id": "2", "access_token": "t",
          "slack_channel": "C1"}
    return {"meta": {"app_secret": "s", "verify_token": "v"}, "slack": {"bot_token": "b", "signing_secret": "s"},
            "channels": [ch], **top}


def test_every_empty_or_missing_secret_is_named_in_one_message() -> None:
    raw = {"meta": {"app_secret": "${META_APP_SECRET}", "verify_token": ""},
           "slack": {"bot_token": "  ", "signing_secret": "sig"},
           "channels": [{"name": "a", "phone_number_id": "1", "waba_id": "2", "access_token": "${WA_A:-}",
                         "slack_channel": "C1"},
                        {"name": "b", "phone_number_id": "3", "waba_id": "2", "access_token": "tok",
                         "slack_channel": "C2"}]}
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, {})
    assert err.value.key == "secrets"
    assert err.value.message == ("not set or empty: meta.app_secret (export META_APP_SECRET), meta.verify_token, "
                                 "slack.bot_token, channels[0].access_token (export WA_A)")


@pytest.mark.parametrize("value", ["+91 522 400 0000", "91522-4000", "١٢٣", ""])
def test_phone_number_id_must_be_digits(value: str) -> None:
    raw = _raw()
    raw["channels"][0]["phone_number_id"] = value
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, {})
    assert err.value.key == "channels[0].phone_number_id" and "digits only" in err.value.message


def test_timezone_is_checked() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw(timezone="Asia/Kolkatta"), {})
    assert err.value.key == "timezone" and "unknown time zone 'Asia/Kolkatta'" in err.value.message
    assert parse_settings(_raw(timezone="Europe/Berlin"), {}).timezone == "Europe/Berlin"


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://u:p@db/wa", "postgresql+asyncpg://u:p@db/wa"),
    ("postgres://u:p@db:5433/wa", "postgresql+asyncpg://u:p@db:5433/wa"),
    ("postgresql+asyncpg://u@db/wa", "postgresql+asyncpg://u@db/wa"),
    ("sqlite:///wabridge.db", "sqlite+aiosqlite:///wabridge.db"),
    ("sqlite+aiosqlite:////var/lib/wa.db", "sqlite+aiosqlite:////var/lib/wa.db"),
])
def test_database_urls_get_the_async_driver(given: str, used: str) -> None:
    assert normalize_database_url(given) == used
    assert parse_settings(_raw(database_url=given), {}).database_url == used


@pytest.mark.parametrize("url", ["postgresql+psycopg2://u@db/wa", "mysql://u@db/wa", "wabridge.db"])
def test_other_database_urls_are_refused_with_the_fix(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw(database_url=url), {})
    assert err.value.key == "database_url" and "postgresql://user:password@host/db" in err.value.message


def _config(tmp_path: Path, database_url: str, port: int) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
database_url: "{database_url}"
meta: {{app_secret: s, verify_token: v}}
slack: {{bot_token: xoxb-1, signing_secret: s}}
channels: []
""")
    return path


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_problem("127.0.0.1", port) is not None
        code = main(["--config", str(_config(tmp_path, f"sqlite:///{tmp_path}/wa.db", port)), "serve"])
    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE
    assert err.strip() == f"serve: cannot listen on 127.0.0.1:{port}: the port is in use (another serve, or pick " \
                          "one with --port)"


def test_serve_with_an_unreachable_database_says_so_in_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        code = main(["--config", str(_config(tmp_path, f"postgresql://u:secret@127.0.0.1:{dead_port}/wa", port)),
                     "serve", "--no-migrate"])
    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"serve: cannot reach the database at 127.0.0.1:{dead_port}/wa")
    assert "secret" not in err and "Traceback" not in err


async def test_a_reachable_database_has_no_problem(db_url: str) -> None:
    assert await database_problem(db_url) is None


async def test_more_connections_than_postgresql_allows_is_said_in_one_line(pg_url: str, tmp_path: Path) -> None:
    from sqlalchemy import text

    from storage.db import make_engine

    engine = make_engine(pg_url)
    try:
        async with engine.connect() as conn:
            allowed = int(await conn.scalar(text("SHOW max_connections")) or 0)
    finally:
        await engine.dispose()
    assert await connections_problem(pg_url, 1, max(1, allowed // 2)) is None
    crowded = await connections_problem(pg_url, allowed, 1)  # each process opens up to two while busy
    assert crowded is not None and "\n" not in crowded
    assert f"= {2 * allowed} connections" in crowded and f"max_connections ({allowed})" in crowded
    assert "database_pool_size" in crowded and "PgBouncer" in crowded
    assert await connections_problem(f"sqlite+aiosqlite:///{tmp_path / 'wa.db'}", 64, 200) is None
