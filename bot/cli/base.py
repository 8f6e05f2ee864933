"""What every sub-command shares: its parser, its settings, its exit codes, running async bodies."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from bot.core.config import Settings, load_settings

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a port or the database the config names cannot be used

Command = Callable[[argparse.Namespace], int]


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def add_command(sub: argparse._SubParsersAction, name: str, help: str = "") -> argparse.ArgumentParser:
    """A sub-command parser that also accepts --config after the sub-command's name."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.add_argument("--config", default=argparse.SUPPRESS, help="path to app.yaml")
    return p


def run_async(coro: object) -> int:
    """Run an async sub-command body and return its exit code."""
    return int(asyncio.run(coro))  # type: ignore[arg-type]
