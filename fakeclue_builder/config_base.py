"""What every config module shares: the error type the CLI turns into exit 2, and the strict base model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """A configuration problem the user must fix; the message names the key and the fix (CLI exit 2)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
