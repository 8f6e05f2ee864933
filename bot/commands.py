"""Imports every module that adds sub-commands to the CLI, so `main` sees them all."""
