"""Command line: `python -m bot <command>` (also installed as `wabridge`).

The sub-commands are listed here, explicitly: each module contributes `add_parsers` and `COMMANDS`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from bot.cli import campaign, contact, onboarding, ops, report, serve_processes, tenants
from bot.cli.base import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    Command,
    add_command,
    database_line,
    missing_sub_command,
    settings_from,
)
from bot.core.config import EVERY_SECRET, ConfigError
from bot.core.logs import configure
from bot.core.version import installed_version

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("bot.serve")

ROLES = ("all", "web", "worker")


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.app.components import default_components
    from bot.app.factory import create_app
    from bot.app.preflight import bind_error, connections_problem, database_problem, port_problem
    from storage.db import is_sqlite

    settings = settings_from(args, EVERY_SECRET)
    configure(os.environ.get("WABRIDGE_LOG_LEVEL", "INFO"))
    role = args.role
    host, port = args.host or settings.server.host, args.port or settings.server.port
    processes = args.processes if args.processes > 0 else serve_processes.default_processes()
    if processes > 1 and role != "web" and is_sqlite(settings.database_url):
        print(f"serve: --processes {processes} with --role {role} needs PostgreSQL: database_url is SQLite, which "
              "one process writes at a time (set database_url to PostgreSQL, or run one process)", file=sys.stderr)
        return EXIT_CONFIG
    reuse_port = args.reuse_port or processes > 1
    problem = (port_problem(host, port, reuse_port=reuse_port)
               or asyncio.run(database_problem(settings.database_url)))
    if problem:
        print(f"serve: {problem}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.process_index is None:  # said once: by the supervisor of a set, or by a process on its own
        crowded = asyncio.run(connections_problem(settings.database_url, processes, settings.database_pool_size))
        if crowded:
            # A warning, not a refusal: the pool opens its second half only under load, and PgBouncer may be
            # in between.
            print(f"serve: warning: {crowded}", file=sys.stderr)
    if processes > 1:
        if not args.no_migrate:
            from storage.db import migrate_sync

            migrate_sync(settings.database_url)  # once, before the processes start
        return serve_processes.supervise([serve_processes.child_args(args, host, port, i) for i in range(processes)])
    if args.process_index and settings.server.metrics_port:
        # Each process of a set serves its own figures: metrics_port, metrics_port + 1, …
        server = settings.server.model_copy(update={"metrics_port": settings.server.metrics_port
                                                    + args.process_index})
        settings = settings.model_copy(update={"server": server})
    app = create_app(settings, run_migrations=not args.no_migrate, workers=role != "web",
                     webhooks=role != "worker", components=default_components(settings, role=role))
    app.on_startup.append(_freeze_heap)
    stopping: list[float] = []
    app.on_shutdown.append(lambda _app: _note(stopping))
    try:
        web.run_app(app, host=host, port=port, reuse_port=reuse_port or None,
                    print=lambda _: log.info("%s", startup_line(app, host, port, role)))
    except OSError as exc:
        if exc.errno is None:
            raise
        print(f"serve: {bind_error(host, port, exc)}", file=sys.stderr)  # taken between the check and now
        return EXIT_UNAVAILABLE
    took = f" in {time.monotonic() - stopping[0]:.1f} s" if stopping else ""
    log.info("wabridge stopped%s: workers finished, database and Redis connections closed", took)
    return 0


async def _note(stopping: list[float]) -> None:
    stopping.append(time.monotonic())


def startup_line(app: web.Application, host: str, port: int, role: str) -> str:
    """`wabridge 0.10.0 listening on http://HOST:PORT (role all); database …; migrations …; redis …`."""
    from bot.handlers import appkeys

    settings = app[appkeys.SETTINGS]
    redis = safe_url(settings.redis_url) if settings.redis_url else "none (in-process throttle, one process only)"
    return (f"wabridge {installed_version()} listening on http://{host}:{port} (role {role}); database "
            f"{safe_url(settings.database_url)}; {app.get(appkeys.MIGRATIONS, 'migrations: unknown')}; "
            f"redis {redis}")


def safe_url(url: str) -> str:
    """A database or Redis URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    netloc = f"{user}{'[' + host + ']' if ':' in host else host}{f':{parts.port}' if parts.port else ''}"
    return urlunsplit(parts._replace(netloc=netloc))


# Collection thresholds of a started server (CPython's are 700, 10, 10). A message's mirroring allocates
# thousands of short-lived objects (rows, payloads, responses), so at the defaults the collector ran about 100
# times a second and took about 9 % of serve's CPU in bench.mirror_latency's backlog (0.96-1.0 s of 10.5-11 s);
# at these, 0.25 s, each young collection a few milliseconds. What lives on is still collected, only less often.
GC_THRESHOLDS = (20_000, 50, 100)


async def _freeze_heap(_app: object) -> None:
    """What is alive once the server has started lives as long as the process: keep the garbage collector
    from scanning it again (a full collection of a started server's heap stops the event loop for about
    100 ms, in the middle of a campaign or a customer's message), and collect what comes after less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.db import migrate_sync

    settings = settings_from(args)
    migrate_sync(settings.database_url)
    print(f"database at head: {settings.database_url.split('@')[-1]}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.cli.demo import DemoStalled

    try:
        return _demo(args)
    except DemoStalled as exc:
        # A stall is the bridge's own failure: its logs above say why; never blamed on the database.
        logging.getLogger("bot.cli").error("demo stalled", exc_info=True)
        print(f"demo: {exc}; the log above shows what the bridge was doing (please report it)", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from bot.cli import slack_view
    from bot.cli.demo import run_demo

    configure(os.environ.get("WABRIDGE_LOG_LEVEL", "WARNING"))
    logging.getLogger("bot").setLevel(os.environ.get("WABRIDGE_LOG_LEVEL", "WARNING"))
    # Bold as bold in a terminal; plain text when piped or when NO_COLOR asks for it (no-color.org).
    style = slack_view.ANSI if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else slack_view.PLAIN
    if args.workspaces > 1:
        from bot.cli.demo_workspaces import run_workspaces_demo

        shown = asyncio.run(run_workspaces_demo(sys.stdout, args.workspaces))
        return 0 if (len(shown.installed) == args.workspaces and not shown.leaks and not shown.forged_reply_sent
                     and shown.held_then_delivered) else 1
    result = asyncio.run(run_demo(sys.stdout, recipients=args.recipients, style=style, page=bool(args.html)))
    if args.html:
        Path(args.html).write_text(result.html, encoding="utf-8")
        print(f"the #lucknow channel as Slack draws it: {args.html}", file=sys.stderr)
    ok = (not result.refused_reply_sent and result.campaign_sends == args.recipients
          and result.max_sends_in_one_second <= 5)
    return 0 if ok else 1


def _add_core_parsers(sub: argparse._SubParsersAction) -> None:
    serve = add_command(
        sub, "serve", help="run the server (webhooks, Slack, scheduler, campaign runner)",
        description="Run Wabridge: receive Meta's webhooks and Slack's events, mirror conversations into Slack, "
                    "send staff replies and campaigns. Needs every secret (Meta, Slack, each channel's token); "
                    "applies pending database migrations at start unless --no-migrate.")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default: server.port, 8080)")
    serve.add_argument("--host", default=None,
                       help="address to listen on (default: server.host, 0.0.0.0 = every interface)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    serve.add_argument("--role", choices=ROLES, default="all",
                       help="all (default); web: HTTP endpoints only; worker: background workers only")
    serve.add_argument("--processes", type=int, default=1, metavar="N",
                       help="N processes of the role sharing the port, one supervisor (0: one per core; default 1; "
                            "more than one needs PostgreSQL unless --role web)")
    serve.add_argument("--reuse-port", action="store_true",
                       help="listen with SO_REUSEPORT, so that several `serve` processes share one port")
    serve.add_argument("--process-index", type=int, default=None, help=argparse.SUPPRESS)  # a child of a set
    add_command(sub, "migrate", help="apply database migrations and exit",
                description="Bring the database at database_url to the newest schema and exit. Needs only "
                            "database_url: no Meta or Slack secret.")
    demo = add_command(sub, "demo", help="play the bridge against local stand-ins for Meta and Slack",
                       description="Run the whole bridge on SQLite against built-in stand-ins for Meta and "
                                   "Slack, and print what Slack shows. Needs no app.yaml and no secret.")
    demo.add_argument("--recipients", type=int, default=20, help="campaign audience size (default 20)")
    demo.add_argument("--workspaces", type=int, default=1,
                      help="2 or more: that many businesses, each its own Slack workspace installed through "
                           "/slack/install, side by side and isolated (default 1: the one-business scenario)")
    demo.add_argument("--html", default=None, metavar="FILE",
                      help="also write the #lucknow channel as an HTML page drawn like Slack (for a screenshot)")


CORE_COMMANDS: dict[str, Command] = {"serve": cmd_serve, "migrate": cmd_migrate, "demo": cmd_demo}

# (parser builder, commands) per group; a name claimed twice is refused when the table is built.
GROUPS: tuple[tuple[Callable[[argparse._SubParsersAction], None], dict[str, Command]], ...] = (
    (_add_core_parsers, CORE_COMMANDS),
    (campaign.add_parsers, campaign.COMMANDS),
    (ops.add_parsers, ops.COMMANDS),
    (contact.add_parsers, contact.COMMANDS),
    (onboarding.add_parsers, onboarding.COMMANDS),
    (report.add_parsers, report.COMMANDS),
    (tenants.add_parsers, tenants.COMMANDS),
)


def command_table() -> dict[str, Command]:
    table: dict[str, Command] = {}
    for _, commands in GROUPS:
        for name, fn in commands.items():
            if name in table:
                raise ValueError(f"sub-command {name!r} is defined twice")
            table[name] = fn
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wabridge", description="Wabridge: a WhatsApp Business number bridged to a Slack workspace.",
        epilog="`wabridge COMMAND --help` describes a command and its options. Secrets come from the "
               "environment variables app.yaml names; each command asks only for those it uses.")
    parser.add_argument("--version", action="version", version=f"wabridge {installed_version()}",
                        help="print the installed version and exit")
    parser.add_argument("--config", default=os.environ.get("WABRIDGE_CONFIG", "app.yaml"),
                        help="path to app.yaml (default: app.yaml or $WABRIDGE_CONFIG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add_parsers, _ in GROUPS:
        add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    group = missing_sub_command(args)
    if group is not None:
        group.print_help()
        return 0
    try:
        return command_table()[args.command](args)
    except ConfigError as exc:
        print(f"config error: {exc.key}: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        line = database_line(exc) if args.command != "serve" else None  # serve checks before it starts
        if line is None:
            raise
        print(f"{args.command}: {line}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
