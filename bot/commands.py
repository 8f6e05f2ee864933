"""Imports every module that adds sub-commands to the CLI, so `main` sees them all."""
from bot import (
    campaign_cli,  # noqa: F401  (campaign create|list|show|pause|resume|cancel)
    ops_cli,  # noqa: F401  (templates, doctor, export, spend)
    report_cli,  # noqa: F401  (report)
)
from bot.onboarding import cli as _onboarding_cli  # noqa: F401  (connect)
