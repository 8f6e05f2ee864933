"""Versions and release notes: `wabridge --version`, CHANGELOG.md, CONTRIBUTING.md's tags, LICENSE."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.cli.entry import main
from bot.core.version import installed_version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.MULTILINE)


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"wabridge {PYPROJECT['project']['version']}"


def test_version_of_the_console_script() -> None:
    script = Path(sys.executable).with_name("wabridge")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == f"wabridge {installed_version()}"
    assert installed_version() == PYPROJECT["project"]["version"]  # the install is not stale


def test_changelog_has_unreleased_above_every_release_newest_first() -> None:
    assert CHANGELOG.index("## [Unreleased]") < RELEASE.search(CHANGELOG).start()  # type: ignore[union-attr]
    releases = RELEASE.findall(CHANGELOG)
    versions = [tuple(int(p) for p in v.split(".")) for v, _ in releases]
    assert versions == sorted(versions, reverse=True) and versions[-1] == (0, 1, 0)
    assert [d for _, d in releases] == sorted((d for _, d in releases), reverse=True)


def test_pyproject_version_is_the_newest_release_in_the_changelog() -> None:
    newest = RELEASE.search(CHANGELOG)
    assert newest is not None and newest.group(1) == PYPROJECT["project"]["version"]


def test_changelog_names_no_commits() -> None:
    assert not re.search(r"\b[0-9a-f]{7,40}\b", CHANGELOG)


def test_contributing_states_the_tag_convention() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert "`vX.Y.Z`" in text and "git tag -a vX.Y.Z" in text and "## [Unreleased]" in text


def test_license_is_mit_as_an_spdx_expression() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    # PEP 639 expressions need setuptools 77 or newer; older ones reject a string here.
    requires = PYPROJECT["build-system"]["requires"]
    floor = next(r for r in requires if r.startswith("setuptools"))
    assert tuple(int(p) for p in floor.split(">=")[1].split(".")) >= (77,)
