"""One finding of `doctor`: ok, a warning with its fix, or a failure with its fix (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One check: ok, or what is wrong (detail) and how to fix it (fix)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: Severity | None = None

    @property
    def level(self) -> Severity:
        if self.severity is not None:
            return self.severity
        return Severity.OK if self.ok else Severity.FAIL


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def warned(name: str, detail: str, fix: str) -> CheckResult:
    """A problem worth a look that does not fail the run."""
    return CheckResult(name, True, detail, fix, Severity.WARN)


def all_passed(results: Iterable[CheckResult]) -> bool:
    """True when no check failed (warnings allowed)."""
    return all(r.ok for r in results)
