"""The version of Wabridge that runs, as installed (pyproject.toml's `version`, tagged vX.Y.Z)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "wabridge"


def installed_version() -> str:
    """The installed package's version; "unknown" when the code runs from a tree that was never installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
