"""Imports every module that adds sub-commands to the CLI, so `main` sees them all."""
from bot import ops_cli  # noqa: F401  (templates, doctor, export, spend)
