"""The strictness every app.yaml section shares: unknown keys are errors, settings never change once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A section of app.yaml: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
