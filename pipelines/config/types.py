"""The building blocks of the params sections: a frozen section base and constrained value types.

A rule's message is a sentence about the key: `{key}` is replaced by its dotted name when the error is shown
(pipelines.config.errors), so every refusal names the key as it is spelled in params.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A params section: unknown keys refused, values frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def rule(test: Callable[[Any], bool], message: str, before: bool = False) -> AfterValidator | BeforeValidator:
    """A check whose failure message is `message`; `before` checks the raw value (one message for a union,
    rather than one per member)."""

    def check(value: Any) -> Any:
        if not test(value):
            raise ValueError(message)
        return value

    return BeforeValidator(check) if before else AfterValidator(check)


def ordered(section: str) -> Any:
    """A section check that `end` is after `start`, naming the section's keys."""

    def check(self: Any) -> Any:
        if self.end <= self.start:
            raise ValueError(f"{section}.end ({self.end:%Y-%m-%d}) must be after {section}.start "
                             f"({self.start:%Y-%m-%d})")
        return self

    return model_validator(mode="after")(check)


def _utc(value: Any) -> datetime:
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def doc(text: str, **constraints: Any) -> Any:
    """The field's one description (shown by `python -m pipelines params --explain KEY`) and its bounds."""
    return Field(description=text, **constraints)


AtLeast1 = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
UTCDatetime = Annotated[datetime, BeforeValidator(_utc)]

NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]*"  # what BentoML accepts as a model or service name
BentoName = Annotated[str, rule(lambda v: re.fullmatch(NAME_PATTERN, v) is not None,
                                "{key} must be lowercase letters, digits, '-', '_' or '.' (a BentoML name)")]
Noun = Annotated[str, rule(lambda v: re.fullmatch(r"[a-z][a-z0-9_]*", v) is not None,
                           "{key} must be a lowercase identifier (it is the request's JSON key)")]
