"""pydantic's validation errors as one line per problem, each naming the dotted key as params.yaml spells it."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

_OPERATORS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _field(model: type[BaseModel] | None, key: str) -> Any:
    """The FieldInfo of `model` spelled `key` in the YAML (its alias or its name), or None."""
    return next((info for name, info in (model.model_fields.items() if model else ()) if key in (name, info.alias)),
                None)


def _model_at(root: type[BaseModel], location: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in location:
        annotation = getattr(_field(model, part), "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _range(info: Any, context: dict[str, Any]) -> str:
    """'must be in (0, 1]', 'must be in 1..65535' or 'must be >= 1': the field's own bounds where it declares
    them (a nullable field keeps them inside its union: then the error's)."""
    declared = info.metadata if info else ()
    bounds = {name: getattr(m, name) for m in declared for name in _OPERATORS if hasattr(m, name)}
    bounds = bounds or {name: value for name, value in context.items() if name in _OPERATORS}
    low = next(((name, bounds[name]) for name in ("ge", "gt") if name in bounds), None)
    high = next(((name, bounds[name]) for name in ("le", "lt") if name in bounds), None)
    if low and high and (low[0], high[0]) == ("ge", "le") and all(isinstance(v, int) for v in bounds.values()):
        return f"must be in {low[1]}..{high[1]}"
    if low and high:
        return f"must be in {'[('[low[0] == 'gt']}{low[1]}, {high[1]}{'])'[high[0] == 'lt']}"
    name, value = low or high
    return f"must be {_OPERATORS[name]} {value}"


def format_errors(error: ValidationError, root: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[str]:
    """One line per problem (`prefix` places a section model's errors in the file, e.g. ("train",))."""
    lines = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        key, parent, given = ".".join((*prefix, *loc)), _model_at(root, loc[:-1]), item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            names = [info.alias or name for name, info in parent.model_fields.items()] if parent else []
            guess = difflib.get_close_matches(loc[-1], names, n=1)
            lines.append(f"{key}: unknown key" + (f" (did you mean {guess[0]!r}?)" if guess else ""))
        elif item["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif item["type"] == "value_error" and isinstance(given, dict):
            lines.append(message)  # a whole-section check names its own keys
        elif item["type"] == "value_error" and "{key}" in message:
            lines.append(f"{message.replace('{key}', key)}, got {given!r}")
        elif item["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            lines.append(f"{key} {_range(_field(parent, loc[-1]), item.get('ctx') or {})}, got {given!r}")
        else:
            lines.append(f"{key}: {message} (got {given!r})")
    return lines
