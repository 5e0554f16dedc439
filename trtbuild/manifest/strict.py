"""The base of every manifest model: unknown keys are errors, and a loaded manifest never changes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """``extra="forbid"`` (a typo is an error naming the key, not a silent default) and ``frozen``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
