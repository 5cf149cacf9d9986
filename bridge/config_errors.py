"""Config validation errors as one plain line each, in the file's own words.

pydantic reports a mistyped key as "Extra inputs are not permitted" and prefixes its
validators' messages with "Value error, ".  A person editing a TOML file needs the
section and key as written, what is wrong, and for a typo the name that was probably
meant: `agent.alowed_roots: unknown key (did you mean allowed_roots?)`, `[telegramm]:
unknown section (did you mean [telegram]?)`.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError


def plain_lines(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per problem in `error`, raised validating `model`."""
    return [_line(e, model) for e in error.errors()]


def _line(err: Any, model: type[BaseModel]) -> str:
    loc = tuple(str(p) for p in err["loc"])
    where = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        if len(loc) == 1:
            hint = f" (did you mean [{guess[0]}]?)" if guess else f"; sections: {', '.join(known)}"
            return f"[{loc[0]}]: unknown section{hint}"
        hint = f" (did you mean {guess[0]}?)" if guess else f"; keys: {', '.join(known)}"
        return f"{where}: unknown key{hint}"
    message = str(err["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("missing",):
        return f"{where}: required"
    given = err.get("input")
    if kind not in ("value_error", "assertion_error") and isinstance(given, str | int | float):
        message += f" (got {given!r})"
    return f"{where}: {message}"


def _fields_at(model: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    """The keys the section at `path` of `model` accepts (empty when not a section)."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))
