"""Command line: `python -m bot <command>` (also installed as `wabridge`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from bot.config import ConfigError, Settings, load_settings

log = logging.getLogger("bot.serve")

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a port or the database the config names cannot be used
ROLES = ("all", "web", "worker")

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return register


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.app import create_app
    from bot.logging_setup import configure
    from bot.preflight import bind_error, database_problem, port_problem

    settings = settings_from(args)
    configure(os.environ.get("WABRIDGE_LOG_LEVEL", "INFO"))
    from bot.components import default_components

    role = args.role
    host, port = args.host or settings.server.host, args.port or settings.server.port
    problem = port_problem(host, port) or asyncio.run(database_problem(settings.database_url))
    if problem:
        print(f"serve: {problem}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    app = create_app(settings, run_migrations=not args.no_migrate, workers=role != "web",
                     webhooks=role != "worker", components=default_components(settings, role=role))
    try:
        web.run_app(app, host=host, port=port,
                    print=lambda _: log.info("listening on http://%s:%s (role %s)", host, port, role))
    except OSError as exc:
        if exc.errno is None:
            raise
        print(f"serve: {bind_error(host, port, exc)}", file=sys.stderr)  # taken between the check and now
        return EXIT_UNAVAILABLE
    return 0


@command("migrate")
def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.db import migrate_sync

    settings = settings_from(args)
    migrate_sync(settings.database_url)
    print(f"database at head: {settings.database_url.split('@')[-1]}")
    return 0


def add_command(sub: argparse._SubParsersAction, name: str, help: str = "") -> argparse.ArgumentParser:
    """A sub-command parser that also accepts --config after the sub-command's name."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.add_argument("--config", default=argparse.SUPPRESS, help="path to app.yaml")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wabridge", description="WhatsApp <-> Slack bridge")
    parser.add_argument("--config", default=os.environ.get("WABRIDGE_CONFIG", "app.yaml"),
                        help="path to app.yaml (default: app.yaml or $WABRIDGE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = add_command(sub, "serve", help="run the server (webhooks, Slack, scheduler, campaign runner)")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--host", default=None)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    serve.add_argument("--role", choices=ROLES, default="all",
                       help="all (default); web: HTTP endpoints only; worker: background workers only")
    add_command(sub, "migrate", help="apply database migrations and exit")
    for extend in _PARSER_EXTENSIONS:
        extend(sub)
    return parser


# Other modules add their sub-commands here (campaign, templates, doctor, demo, …).
_PARSER_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    from bot import commands  # noqa: F401  (registers the sub-commands)

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"config error: {exc.key}: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def run_async(coro: object) -> int:
    """Run an async sub-command body and return its exit code."""
    return int(asyncio.run(coro))  # type: ignore[arg-type]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = add_command(sub, "demo", help="play the bridge against local stand-ins for Meta and Slack")
    demo.add_argument("--recipients", type=int, default=20, help="campaign audience size (default 20)")


_PARSER_EXTENSIONS.append(_add_demo)


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    import logging

    from bot.demo import run_demo
    from bot.logging_setup import configure

    configure(os.environ.get("WABRIDGE_LOG_LEVEL", "WARNING"))
    logging.getLogger("bot").setLevel(os.environ.get("WABRIDGE_LOG_LEVEL", "WARNING"))
    result = asyncio.run(run_demo(sys.stdout, recipients=args.recipients))
    ok = (not result.refused_reply_sent and result.campaign_sends == args.recipients
          and result.max_sends_in_one_second <= 5)
    return 0 if ok else 1
