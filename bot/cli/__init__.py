"""Command line: `python -m bot <command>` (also installed as `wabridge`); see `bot.cli.entry`."""
