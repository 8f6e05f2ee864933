"""What every sub-command shares: its parser, its settings, its exit codes, running async bodies."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable

from bot.core.config import Need, Settings, load_settings

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a port or the database the config names cannot be used

Command = Callable[[argparse.Namespace], int]
NO_SECRETS: frozenset[Need] = frozenset()


def settings_from(args: argparse.Namespace, needs: frozenset[Need] = NO_SECRETS) -> Settings:
    """The settings for one command, refusing to start only when a secret in `needs` is unset."""
    return load_settings(args.config, needs=needs)


def add_command(sub: argparse._SubParsersAction, name: str, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command parser with its one-line help (in the parent's list) and a description (in its own
    --help); it also accepts --config after the sub-command's name."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description or help[:1].upper() + help[1:] + ".")
    p.add_argument("--config", default=argparse.SUPPRESS, help="path to app.yaml (default: app.yaml or "
                                                               "$WABRIDGE_CONFIG)")
    return p


def add_group(sub: argparse._SubParsersAction, name: str, help: str, description: str | None = None
              ) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A command made of sub-commands (`campaign create`, `templates sync`); given alone, it lists them."""
    parser = add_command(sub, name, help, description)
    dest = f"{name}_command"
    group = parser.add_subparsers(dest=dest, metavar="COMMAND", title="commands")
    parser.set_defaults(group_parser=parser, group_dest=dest)
    return parser, group


def missing_sub_command(args: argparse.Namespace) -> argparse.ArgumentParser | None:
    """The group's parser when a command of sub-commands was given without one."""
    parser: argparse.ArgumentParser | None = getattr(args, "group_parser", None)
    if parser is not None and getattr(args, args.group_dest, None) is None:
        return parser
    return None


def database_line(exc: BaseException) -> str | None:
    """One line for a database that has no schema yet or cannot be reached; None for anything else."""
    from sqlalchemy.exc import DBAPIError

    text = str(getattr(exc, "orig", None) or exc).strip()
    if isinstance(exc, DBAPIError) and ("no such table" in text or
                                        ("relation" in text and "does not exist" in text)):
        return "the database has no Wabridge tables yet: run `wabridge migrate` first"
    if isinstance(exc, ConnectionError | OSError) and not isinstance(exc, FileNotFoundError):
        return f"cannot reach the database: {text.splitlines()[0] if text else type(exc).__name__} " \
               "(check database_url and that the server runs)"
    return None


def run_async(coro: object) -> int:
    """Run an async sub-command body and return its exit code."""
    return int(asyncio.run(coro))  # type: ignore[arg-type]


async def slack_names(settings: Settings, users: Iterable[str]) -> dict[str, str]:
    """Slack users' names for the report; without Slack (no token, or no answer) the ids stay."""
    from bot.slack.client import slack_client
    from bot.slack.names import UserNames

    if not settings.slack.bot_token:
        return {}
    return await UserNames(slack_client(settings.slack)).of(users)
